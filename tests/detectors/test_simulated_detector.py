import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.simulated import (
    body_occlusion,
    default_simulated_detector,
    face_facing_cos,
    palm_occlusion,
)
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.sources.base import FrameBatch, Recording
from build_h3wb.synthetic.motion import generate_motion

RIG = h36m_rig("S1")
VOL = dict(center_xy_mm=RIG.capture_volume["center_xy"], half_extent_xy_mm=RIG.capture_volume["half_extent_xy"])
SEQ = Recording("S1", "Walking", "Walking 1")
FACE = skeleton.PARTS["face"]


def _poses(action="Walking", seconds=20.0):
    frames = np.arange(0, int(seconds * 50), 5)
    return frames, generate_motion("S1", action, frames / 50.0, **VOL)


def _batch(view=0, action="Walking", seconds=20.0):
    frames, X = _poses(action, seconds)
    return FrameBatch(sequence=SEQ, camera=RIG[view], frames=frames, world_keypoints=X)


def test_output_format_and_determinism():
    det = default_simulated_detector()
    b = _batch()
    out = det(b)
    assert out.shape == (len(b.frames), skeleton.NUM_KEYPOINTS, 3) and out.dtype == np.float32
    missing = np.isnan(out[..., 0])
    assert (np.isnan(out[..., 1]) == missing).all() and (np.isnan(out[..., 2]) == missing).all()
    assert np.array_equal(out, det(b), equal_nan=True)
    assert not np.array_equal(out, default_simulated_detector(seed=1)(b), equal_nan=True)
    assert np.array_equal(check_detections(out, len(b.frames), "sim")[:, 0], out, equal_nan=True)  # one person
    # each frame has its own random stream: batching (or sharding) does not change the detections
    parts = [det(FrameBatch(sequence=b.sequence, camera=b.camera, frames=b.frames[s:e],
                            world_keypoints=b.world_keypoints[s:e])) for s, e in ((0, 7), (7, 8), (8, None))]
    assert np.array_equal(np.concatenate(parts), out, equal_nan=True)


def test_noise_free_settings_reproduce_the_projection():
    det = default_simulated_detector(
        noise_px={p: 1e-9 for p in ("body", "feet", "face", "left_hand", "right_hand")},
        swap_prob=0.0, hand_swap_prob=0.0, outlier_prob={}, part_outlier_prob={}, occluded_report_prob={},
        limb_fault_prob=0.0)
    b = _batch()
    out = det(b)
    uv = RIG[0].project(b.world_keypoints)
    ok = np.isfinite(out[..., 0])
    assert ok.mean() > 0.5
    assert np.abs(out[..., :2][ok] - uv[ok]).max() < 1e-3


def test_noise_differs_by_part_and_score_falls_with_noise():
    det = default_simulated_detector(swap_prob=0.0, hand_swap_prob=0.0, outlier_prob={}, part_outlier_prob={})
    b = _batch(seconds=40)
    out = det(b)
    err = np.linalg.norm(out[..., :2] - RIG[0].project(b.world_keypoints), axis=-1)
    med = {p: np.nanmedian(err[:, sl]) for p, sl in skeleton.PARTS.items()}
    assert med["hands"] > med["body"] > med["face"]
    score = out[..., 2].ravel()
    e = err.ravel()
    ok = np.isfinite(e)
    assert np.corrcoef(score[ok], e[ok])[0, 1] < -0.3


def test_face_disappears_when_it_turns_away():
    det = default_simulated_detector()
    b = _batch(seconds=60)
    out = det(b)
    cos = face_facing_cos(b.world_keypoints, RIG[0])
    found = np.isfinite(out[:, FACE, 0]).mean(1)
    assert found[cos > 0.7].mean() > 0.8
    assert (cos < -0.5).any() and found[cos < -0.5].max() == 0.0


def test_body_occlusion_hides_what_is_behind_the_torso():
    # a point 1 m behind the torso, on the camera's line of sight through the chest, is hidden
    _, X = _poses(seconds=1)
    cam = RIG[0]
    X = X[:1].copy()
    chest = 0.5 * (skeleton.root(X) + 0.5 * (X[:, skeleton.LEFT_SHOULDER] + X[:, skeleton.RIGHT_SHOULDER]))
    ray = chest[0] - cam.center
    wrist = skeleton.LEFT_WRIST
    X_behind = X.copy()
    X_behind[0, wrist] = chest[0] + 0.2 * ray
    X_front = X.copy()
    X_front[0, wrist] = cam.center + 0.7 * ray
    det = default_simulated_detector()
    excl = np.zeros_like(det._excl)
    assert body_occlusion(X_behind, cam, det.radii, excl)[0, wrist]
    assert not body_occlusion(X_front, cam, det.radii, excl)[0, wrist]


def test_palm_hides_fingers_behind_it():
    _, X = _poses(seconds=1)
    X = X[:1].copy()
    sl = skeleton.PARTS["right_hand"]
    knuckles = [skeleton.index(f"right_{f}1") for f in ("forefinger", "middle_finger", "ring_finger", "pinky_finger")]
    c = np.concatenate([X[:, [sl.start]], X[:, knuckles]], 1).mean(1)[0]
    cam = RIG[0]
    tip = skeleton.index("right_middle_finger4")
    X[0, tip] = c + 0.03 * (c - cam.center)  # right behind the palm centre, seen from this camera
    assert palm_occlusion(X, cam)[0, tip]


def test_occlusion_statistics_are_realistic():
    det = default_simulated_detector()
    found = []
    for action in ("Walking", "Phoning", "Sitting", "Greeting"):
        frames, X = _poses(action, 20)
        for c in range(4):
            b = FrameBatch(sequence=Recording("S1", action, f"{action} 1"), camera=RIG[c], frames=frames,
                           world_keypoints=X)
            found.append(np.nan_to_num(det(b)[..., 2]) >= 0.3)  # confidently found
    f = np.concatenate(found)
    share = {p: f[:, sl].mean() for p, sl in skeleton.PARTS.items()}
    # body nearly always found; face and hands lost far more often (turned away, occluded, undetected)
    assert share["body"] > 0.85
    assert share["face"] < share["body"] - 0.2 and share["hands"] < share["body"] - 0.05


def test_left_right_swaps_happen_at_the_configured_rate():
    det = default_simulated_detector(swap_prob=0.5, hand_swap_prob=0.0, outlier_prob={}, part_outlier_prob={})
    b = _batch(seconds=20)
    out = det(b)
    uv = RIG[0].project(b.world_keypoints)
    lw, rw = skeleton.LEFT_WRIST, skeleton.RIGHT_WRIST
    to_right = np.linalg.norm(out[:, lw, :2] - uv[:, rw], axis=-1)
    swapped = to_right < np.linalg.norm(out[:, lw, :2] - uv[:, lw], axis=-1)
    ok = np.isfinite(out[:, lw, 0])
    assert 0.3 < swapped[ok].mean() < 0.7


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="unknown part"):
        default_simulated_detector(noise_px={"tail": 1.0})
    det = default_simulated_detector()
    frames = np.arange(3)
    with pytest.raises(ValueError, match="ground-truth"):
        det(FrameBatch(sequence=SEQ, camera=RIG[0], frames=frames, images=np.zeros((3, 8, 8, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"returned shape \(3, 17, 3\)"):
        check_detections(np.zeros((3, 17, 3)), 3, "x")


def test_wrong_limbs_only_in_unusual_poses_and_in_several_views():
    from build_h3wb.detectors.simulated import unusual_limbs
    frames, X = _poses("Posing", 30.0)
    unusual = unusual_limbs(X)
    assert unusual[:, :2].any() and not unusual.all()
    plain = default_simulated_detector(limb_fault_prob=0.0)
    faulty = default_simulated_detector(limb_fault_prob=1.0, limb_fault_view_prob=0.75)
    wrist = [skeleton.index("left_wrist"), skeleton.index("right_wrist")]
    off = []
    for view in range(4):
        b = FrameBatch(sequence=SEQ, camera=RIG[view], frames=frames, world_keypoints=X)
        a, f = plain(b), faulty(b)
        d = np.linalg.norm(f[:, wrist, :2] - a[:, wrist, :2], axis=-1)  # (T, 2)
        # the other faults draw from their own streams: outside the faulty limbs nothing changes
        rest = np.setdiff1d(np.arange(skeleton.NUM_KEYPOINTS), np.r_[5:23, 91:133])
        assert np.array_equal(a[:, rest], f[:, rest], equal_nan=True)
        off.append(np.where(unusual[:, :2], np.nan_to_num(d), 0.0))
    off = np.stack(off)  # (4, T, 2)
    moved = off > 1e-6
    assert moved.any() and (off[moved] < 60.5).all() and (off[moved] > 14.5).all()
    # an event moves the limb in two or more views at once in most cases
    events = moved.any(0)
    assert (moved.sum(0)[events] >= 2).mean() > 0.85
    # nothing moves in usual poses
    d_all = np.stack([np.linalg.norm(default_simulated_detector(limb_fault_prob=1.0)(
        FrameBatch(sequence=SEQ, camera=RIG[v], frames=frames, world_keypoints=X))[:, wrist, :2]
        - plain(FrameBatch(sequence=SEQ, camera=RIG[v], frames=frames, world_keypoints=X))[:, wrist, :2], axis=-1)
        for v in range(4)])
    assert np.nan_to_num(d_all)[:, ~unusual[:, :2]].max() < 1e-6
