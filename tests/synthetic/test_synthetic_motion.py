"""Tests of the synthetic subject bodies and the closed-form Human3.6M-like motion generator."""

from __future__ import annotations

import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.synthetic.body import HEAD_BODY_NAMES, face_template, head_points, subject_shape
from build_h3wb.synthetic.motion import ACTION_POSTURE, ACTIONS, generate_motion

SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
FPS = 50.0
FACE = skeleton.PARTS["face"]


def _times(seconds: float, fps: float = FPS, start: float = 0.0) -> np.ndarray:
    return start + np.arange(int(round(seconds * fps))) / fps


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (deg) between vectors a and b (..., 3)."""
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _flexion(kp: np.ndarray, a: str, b: str, c: str) -> np.ndarray:
    """Flexion (deg) at joint b of the chain a-b-c: 0 when straight."""
    ia, ib, ic = (skeleton.index(n) for n in (a, b, c))
    return _angle_deg(kp[:, ib] - kp[:, ia], kp[:, ic] - kp[:, ib])


def _forward(kp: np.ndarray, left: str, right: str) -> np.ndarray:
    """Horizontal unit facing direction (T, 3) from a left/right keypoint pair (x forward, y left, z up)."""
    lat = kp[:, skeleton.index(left)] - kp[:, skeleton.index(right)]
    fwd = np.cross(lat, np.array([0.0, 0.0, 1.0]))
    return fwd / np.linalg.norm(fwd, axis=-1, keepdims=True)


def _rigid_bones() -> np.ndarray:
    return skeleton.RIGID_BONES


def _bone_lengths(kp: np.ndarray, bones: np.ndarray) -> np.ndarray:
    return np.linalg.norm(kp[:, bones[:, 0]] - kp[:, bones[:, 1]], axis=-1)  # (T, B)


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_generates_finite_float64(action):
    kp = generate_motion("S1", action, _times(6.0))
    assert kp.shape == (300, skeleton.NUM_KEYPOINTS, 3)
    assert kp.dtype == np.float64
    assert np.all(np.isfinite(kp))


def test_actions_are_the_human36m_fifteen():
    assert len(ACTIONS) == 15 and len(set(ACTIONS)) == 15
    assert {"Directions", "Phoning", "SittingDown", "WalkDog", "WalkTogether"} <= set(ACTIONS)
    assert set(ACTION_POSTURE) == set(ACTIONS)


def test_deterministic():
    t = _times(4.0)
    a = generate_motion("S9", "Discussion", t, seed=3)
    b = generate_motion("S9", "Discussion", t, seed=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("action", ["Walking", "Greeting", "SittingDown", "Eating"])
def test_chunks_concatenate_to_the_whole(action):
    t = _times(12.0, start=3.7)
    whole = generate_motion("S7", action, t, seed=1)
    for cuts in ([50], [1, 333, 334], [17, 250, 400]):
        parts = np.split(t, cuts)
        joined = np.concatenate([generate_motion("S7", action, p, seed=1) for p in parts])
        assert np.array_equal(joined, whole)
    # Any frame alone, and frames in another order.
    single = generate_motion("S7", action, t[123:124], seed=1)
    assert np.array_equal(single[0], whole[123])
    rev = generate_motion("S7", action, t[::-1], seed=1)
    assert np.array_equal(rev[::-1], whole)


def test_seeds_and_subjects_change_the_motion():
    t = _times(4.0)
    base = generate_motion("S1", "Directions", t, seed=0)
    other_seed = generate_motion("S1", "Directions", t, seed=1)
    other_subject = generate_motion("S5", "Directions", t, seed=0)
    assert np.abs(base - other_seed).max() > 100.0
    assert np.abs(base - other_subject).max() > 100.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown action"):
        generate_motion("S1", "Dancing", _times(1.0))
    with pytest.raises(ValueError, match="1-D"):
        generate_motion("S1", "Walking", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="half extents"):
        generate_motion("S1", "Walking", _times(1.0), half_extent_xy_mm=(0.0, 100.0))


def test_rigid_bones_exclude_the_neck_crossing_links():
    pairs = {tuple(b) for b in skeleton.RIGID_BONES.tolist()}
    for side in ("left", "right"):
        assert (skeleton.index(f"{side}_ear"), skeleton.index(f"{side}_shoulder")) not in pairs
    assert (skeleton.index("left_knee"), skeleton.index("left_hip")) in pairs or (
        skeleton.index("left_hip"), skeleton.index("left_knee")) in pairs


def test_subject_heights_vary_like_adults():
    heights = np.array([subject_shape(s).height for s in SUBJECTS])
    assert np.all((heights >= 1500.0) & (heights <= 1950.0))
    assert heights.max() - heights.min() > 100.0
    assert subject_shape("S1") == subject_shape("S1")
    assert subject_shape("S1", seed=1) != subject_shape("S1")


def test_standing_stature_matches_the_body_height():
    shape = subject_shape("S8")
    kp = generate_motion("S8", "Waiting", _times(10.0))
    eye_height = kp[:, skeleton.index("left_eye"), 2]
    assert np.all(np.abs(eye_height / shape.height - 0.935) < 0.04)


@pytest.mark.parametrize("action", ACTIONS)
def test_knee_and_elbow_flexion_in_human_range(action):
    kp = generate_motion("S6", action, _times(20.0))
    for side in ("left", "right"):
        knee = _flexion(kp, f"{side}_hip", f"{side}_knee", f"{side}_ankle")
        elbow = _flexion(kp, f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist")
        assert knee.min() >= 0.0 and knee.max() <= 155.0
        assert elbow.min() >= 0.0 and elbow.max() <= 155.0
        # The knee bends backwards only: the ankle never passes in front of the thigh-shin plane's "forward".
        hip, kn, an = (kp[:, skeleton.index(f"{side}_{j}")] for j in ("hip", "knee", "ankle"))
        fwd = _forward(kp, "left_hip", "right_hip")
        bent = knee > 10.0
        behind = np.sum((an - kn) * fwd, axis=-1) < np.sum((kn - hip) * fwd, axis=-1) / np.linalg.norm(
            kn - hip, axis=-1) * np.linalg.norm(an - kn, axis=-1)
        assert np.all(behind[bent])


@pytest.mark.parametrize("action", ACTIONS)
def test_finger_joints_flex_within_range(action):
    kp = generate_motion("S5", action, _times(10.0))
    for side in ("left", "right"):
        hand = kp[:, skeleton.PARTS[f"{side}_hand"]]  # (T, 21, 3)
        chains = hand[:, 1:].reshape(len(kp), 5, 4, 3)  # (T, finger, joint 1-4, 3)
        seg = np.diff(chains, axis=2)  # (T, 5, 3, 3) three segments per finger
        flex = _angle_deg(seg[:, :, :-1], seg[:, :, 1:])  # the two distal joints
        assert flex.max() <= 100.0 + 1e-6
        root_to_wrist = np.linalg.norm(hand[:, 0] - kp[:, skeleton.index(f"{side}_wrist")], axis=-1)
        assert root_to_wrist.max() < 20.0


@pytest.mark.parametrize("action", ACTIONS)
def test_head_turn_within_neck_range(action):
    kp = generate_motion("S9", action, _times(20.0))
    head = _forward(kp, "left_ear", "right_ear")
    torso = _forward(kp, "left_shoulder", "right_shoulder")
    assert _angle_deg(head, torso).max() < 85.0


@pytest.mark.parametrize(
    ("center", "half"), [((0.0, 0.0), (1500.0, 1500.0)), ((500.0, -300.0), (1300.0, 1000.0))]
)
@pytest.mark.parametrize("action", ACTIONS)
def test_whole_body_stays_in_the_capture_box(action, center, half):
    kp = generate_motion("S11", action, _times(30.0, fps=10.0), center_xy_mm=center, half_extent_xy_mm=half)
    lo, hi = np.asarray(center) - half, np.asarray(center) + half
    assert np.all(kp[..., :2] >= lo - 1e-6) and np.all(kp[..., :2] <= hi + 1e-6)


@pytest.mark.parametrize("action", ACTIONS)
def test_feet_on_the_floor(action):
    kp = generate_motion("S7", action, _times(20.0))
    feet = kp[:, skeleton.PARTS["feet"], 2]  # (T, 6)
    assert feet.min() >= -5.0
    if ACTION_POSTURE[action] in ("stand", "walk"):
        lowest = feet.min(axis=1)
        assert np.all(lowest <= 30.0)
    assert kp[..., 2].min() >= -5.0  # nothing below the floor


def test_standing_feet_both_near_the_floor():
    kp = generate_motion("S1", "Directions", _times(20.0))
    for side in ("left", "right"):
        feet = kp[:, [skeleton.index(f"{side}_{n}") for n in ("big_toe", "small_toe", "heel")], 2]
        assert feet.min(axis=1).max() < 60.0


@pytest.mark.parametrize("subject", SUBJECTS)
def test_sitting_pelvis_at_chair_height_with_level_thighs(subject):
    kp = generate_motion(subject, "Sitting", _times(20.0))
    pelvis = skeleton.root(kp)[:, 2]
    assert np.all((pelvis > 400.0) & (pelvis < 600.0))
    for side in ("left", "right"):
        rise = kp[:, skeleton.index(f"{side}_knee"), 2] - kp[:, skeleton.index(f"{side}_hip"), 2]
        assert np.abs(rise).max() < 80.0


def test_sitting_down_both_sits_and_stands():
    kp = generate_motion("S5", "SittingDown", _times(60.0, fps=10.0))
    pelvis = skeleton.root(kp)[:, 2]
    assert pelvis.min() < 600.0 and pelvis.max() > 800.0


def test_phoning_holds_a_hand_at_the_head():
    kp = generate_motion("S8", "Phoning", _times(30.0))
    head = np.concatenate([kp[:, _ear_idx()], kp[:, FACE]], axis=1)  # (T, 70, 3)
    near = np.zeros(len(kp), dtype=bool)
    for w in (skeleton.LEFT_WRIST, skeleton.RIGHT_WRIST):
        near |= np.linalg.norm(head - kp[:, w, None], axis=-1).min(axis=1) < 150.0
    assert near.mean() > 0.6


def _ear_idx() -> list[int]:
    return [skeleton.index("left_ear"), skeleton.index("right_ear")]


@pytest.mark.parametrize("action", ["Eating", "Smoking"])
def test_eating_and_smoking_bring_a_hand_to_the_mouth(action):
    kp = generate_motion("S1", action, _times(40.0))
    mouth = kp[:, FACE][:, list(skeleton.FACE_REGIONS["mouth_outer"])].mean(axis=1)  # (T, 3)
    d = np.min([np.linalg.norm(kp[:, w] - mouth, axis=-1) for w in (skeleton.LEFT_WRIST, skeleton.RIGHT_WRIST)], 0)
    assert (d < 160.0).mean() > 0.1  # at the mouth now and then
    assert (d > 300.0).mean() > 0.1  # and away from it too


@pytest.mark.parametrize("action", ["Walking", "WalkDog", "WalkTogether"])
def test_walking_travels_and_faces_its_way(action):
    t = _times(10.0)
    kp = generate_motion("S9", action, t)
    root = skeleton.root(kp)
    step = np.diff(root[:, :2], axis=0)
    assert np.linalg.norm(step, axis=-1).sum() > 2000.0
    fwd = _forward(kp, "left_hip", "right_hip")[1:, :2]
    travel = step / np.linalg.norm(step, axis=-1, keepdims=True)
    assert np.median(np.sum(fwd * travel, axis=-1)) > 0.9


@pytest.mark.parametrize("action", ["Directions", "Discussion", "Waiting", "Walking", "Phoning"])
def test_body_faces_every_direction_over_a_sequence(action):
    kp = generate_motion("S1", action, _times(60.0, fps=10.0))
    fwd = _forward(kp, "left_shoulder", "right_shoulder")
    sector = np.floor(np.degrees(np.arctan2(fwd[:, 1], fwd[:, 0])) % 360.0 / 45.0).astype(int)
    assert set(sector) == set(range(8))


def test_face_template_is_mirror_symmetric_under_flip_index():
    shape = subject_shape("S6")
    face = face_template(shape)  # (68, 3)
    flip = skeleton.FLIP_INDEX[FACE] - FACE.start
    mirrored = face * np.array([1.0, -1.0, 1.0])
    assert np.allclose(mirrored[flip], face, atol=1e-9)
    # The subject's right landmarks have y < 0 (head frame y points to the subject's left).
    r = skeleton.FACE_REGIONS
    assert face[r["jaw"][0], 1] < 0 < face[r["jaw"][-1], 1]
    assert np.all(face[r["right_eye"], 1] < 0) and np.all(face[r["left_eye"], 1] > 0)
    assert face[r["mouth_outer"][0], 1] < 0
    width = face[r["jaw"], 1].max() - face[r["jaw"], 1].min()
    assert 120.0 < width / shape.head_scale < 160.0
    # Head body keypoints mirror too, and the eyes sit at the eye-contour centres.
    body, face_t = head_points(shape, np.zeros(1), np.zeros(1))
    idx = [skeleton.index(n) for n in HEAD_BODY_NAMES]
    flip_body = [idx.index(skeleton.FLIP_INDEX[i]) for i in idx]
    assert np.allclose((body[0] * np.array([1.0, -1.0, 1.0]))[flip_body], body[0], atol=1e-9)
    left_eye = body[0, HEAD_BODY_NAMES.index("left_eye")]
    assert np.linalg.norm(left_eye - face_t[0, r["left_eye"]].mean(axis=0)) < 1e-9
    nose = body[0, HEAD_BODY_NAMES.index("nose")]
    ears = body[0, [HEAD_BODY_NAMES.index("left_ear"), HEAD_BODY_NAMES.index("right_ear")]]
    assert nose[0] > face[:, 0].mean() > ears[:, 0].max()  # nose tip forward, face in front of the ears


def test_mouth_opens_with_the_jaw():
    shape = subject_shape("S1")
    _, face = head_points(shape, np.array([0.0, 20.0]), np.zeros(2))
    r = skeleton.FACE_REGIONS
    inner = list(r["mouth_inner"])
    gap = face[:, inner[len(inner) // 2 + 2], 2] - face[:, inner[len(inner) // 2 - 2], 2]  # lower - upper lip
    assert gap[1] < gap[0] - 10.0
    rigid = list(r["nose_bridge"]) + list(r["right_eye"]) + list(r["left_brow"])
    assert np.allclose(face[0, rigid], face[1, rigid])


@pytest.mark.parametrize("action", ACTIONS)
def test_nose_in_front_of_the_ears(action):
    kp = generate_motion("S5", action, _times(10.0, fps=10.0))
    fwd = _forward(kp, "left_ear", "right_ear")
    nose = np.sum(kp[:, skeleton.NOSE] * fwd, axis=-1)
    ears = np.sum(kp[:, _ear_idx()].mean(axis=1) * fwd, axis=-1)
    assert np.all(nose - ears > 50.0)


@pytest.mark.parametrize("action", ACTIONS)
def test_motion_is_smooth_at_50_fps(action):
    for subject in ("S1", "S5", "S9"):
        kp = generate_motion(subject, action, _times(30.0))
        step = np.linalg.norm(np.diff(kp, axis=0), axis=-1)
        assert step.max() < 100.0, (subject, step.max())
