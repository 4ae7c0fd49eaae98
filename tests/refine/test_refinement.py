import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.detectors.simulated import default_simulated_detector
from build_h3wb.evaluation import keypoint_errors
from build_h3wb.geometry.alignment import umeyama
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.geometry.triangulation import triangulate
from build_h3wb.refine.refinement import (
    REFINED_PARTS,
    PartModel,
    fit_part_models,
    frame_segments,
    refine_sequence,
)
from build_h3wb.sources.base import FrameBatch, Recording
from build_h3wb.synthetic.motion import generate_motion

RIG = h36m_rig("S1")
VOLUME = {"center_xy_mm": tuple(RIG.capture_volume["center_xy"]),
          "half_extent_xy_mm": tuple(RIG.capture_volume["half_extent_xy"])}
J = skeleton.NUM_KEYPOINTS
PART_KP = np.concatenate([np.arange(skeleton.PARTS[p].start, skeleton.PARTS[p].stop) for p in REFINED_PARTS])
BODY = np.setdiff1d(np.arange(J), PART_KP)


def detect(gt: np.ndarray, seq: Recording, frames: np.ndarray, detector) -> np.ndarray:
    """(C, T, J, 3) detections of every view."""
    return np.stack([detector(FrameBatch(sequence=seq, camera=cam, frames=frames, world_keypoints=gt))
                     for cam in RIG])


def build(det: np.ndarray):
    """Triangulate (C, T, J, 3) detections like the triangulate stage: kp3d (T, J, 3), views_used, num_views."""
    res = triangulate(det[..., :2], det[..., 2], RIG)  # views first, like the detect artifact
    return res.points.astype(np.float32), res.views, res.num_views


@pytest.fixture(scope="module")
def capture():
    """A small real build: 2 actions of S1, training poses from triangulation, a test sequence with ground truth."""
    detector = default_simulated_detector()
    train = []
    for action in ("Phoning", "Greeting", "Eating"):
        frames = np.arange(0, 1000, 5)
        seq = Recording("S1", action, f"{action} 1")
        gt = generate_motion("S1", action, frames / 50.0, **VOLUME)
        kp, _, _ = build(detect(gt, seq, frames, detector))
        train.append(kp)
    train = np.concatenate(train)
    frames = np.arange(0, 500, 5)
    seq = Recording("S1", "Discussion", "Discussion 1")
    gt = generate_motion("S1", "Discussion", frames / 50.0, **VOLUME)
    det = detect(gt, seq, frames, detector)
    kp, views, num = build(det)
    return {"train": train, "gt": gt, "det": det, "kp3d": kp, "views_used": views, "num_views": num, "frames": frames}


@pytest.fixture(scope="module")
def models(capture):
    train = capture["train"]
    complete = np.isfinite(train).all((1, 2))
    return fit_part_models(train[complete], subject="S1")


# ---------------------------------------------------------------------------------------------------------------
# umeyama and fit_part_models


def test_kabsch_recovers_a_similarity(rng):
    S = rng.normal(0, 50, (6, 10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(6, 3, 3)))
    R = q * np.sign(np.linalg.det(q))[:, None, None]
    s = rng.uniform(0.8, 1.2, 6)
    t = rng.normal(0, 100, (6, 3))
    Y = s[:, None, None] * np.einsum("bij,bkj->bki", R, S) + t[:, None]
    w = np.ones((6, 10))
    Y[0, 3] = np.nan  # a missing target point is ignored
    R2, t2, s2 = umeyama(S, Y, w, scale=True)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(s2, s, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-6)
    R3, _, s3 = umeyama(S, Y, np.zeros((6, 10)))
    assert np.isnan(R3).all() and np.isnan(s3).all()


def test_fit_part_models_recovers_a_low_rank_shape(rng):
    K = skeleton.PARTS["left_hand"].stop - skeleton.PARTS["left_hand"].start
    mean = rng.normal(0, 40, (K, 3))
    basis, _ = np.linalg.qr(rng.normal(size=(3 * K, 3)))  # 3 true components
    coeffs = rng.normal(0, [30.0, 20.0, 10.0], (400, 3))
    shapes = mean + (coeffs @ basis.T).reshape(400, K, 3)
    q, _ = np.linalg.qr(rng.normal(size=(400, 3, 3)))
    R = q * np.sign(np.linalg.det(q))[:, None, None]
    poses = np.full((400, J, 3), np.nan)
    poses[:, skeleton.PARTS["left_hand"]] = np.einsum("nij,nkj->nki", R, shapes) + rng.normal(0, 500, (400, 1, 3))
    m = fit_part_models(poses, parts=("left_hand",), ranks={"left_hand": 3})["left_hand"]
    assert isinstance(m, PartModel) and m.rank == 3 and m.num_poses == 400
    assert m.mean.shape == (K, 3) and m.basis.shape == (3, K, 3) and m.variances.shape == (3,)
    # every training shape is reconstructed by the rank-3 model up to the second-order effect of the alignment,
    # a rank-2 model misses the third component
    assert m.residual_rms.max() < 0.5
    m2 = fit_part_models(poses, parts=("left_hand",), ranks={"left_hand": 2})["left_hand"]
    assert m2.residual_rms.mean() > 1.0  # 10 mm spread over 21 keypoints: ~2 mm each
    np.testing.assert_allclose(np.sort(m.variances)[::-1], m.variances)
    # the learned subspace is the true one (rotated into the model frame): a generic shape projects exactly
    one = poses[7, skeleton.PARTS["left_hand"]]
    R1, t1, _ = umeyama(m.mean[None], one[None], np.ones((1, K)))
    local = np.einsum("ji,kj->ki", R1[0], one - t1[0])  # into the model frame
    c = np.einsum("rkd,kd->r", m.basis, local - m.mean)
    assert np.abs(m.shape(c) - local).max() < 1.0  # one Procrustes step, the shape change is small


def test_fit_part_models_errors():
    with pytest.raises(ValueError, match=r"expected poses \(N, 133, 3\)"):
        fit_part_models(np.zeros((5, 10, 3)))
    with pytest.raises(ValueError, match="unknown part"):
        fit_part_models(np.zeros((5, J, 3)), parts=("tail",))
    with pytest.raises(ValueError, match="at least 3 complete poses"):
        fit_part_models(np.full((5, J, 3), np.nan))


# ---------------------------------------------------------------------------------------------------------------
# refine_sequence


def test_shapes_body_untouched_and_nan_handling(capture, models):
    kp = capture["kp3d"].copy()
    kp[3, skeleton.PARTS["left_hand"]] = np.nan  # a whole hand missing
    kp[4, skeleton.PARTS["face"].start + 5] = np.nan  # one face keypoint missing
    out, mask = refine_sequence(kp, capture["det"], RIG, models, views_used=capture["views_used"],
                                frames=capture["frames"])
    T = kp.shape[0]
    assert out.shape == (T, J, 3) and out.dtype == kp.dtype and mask.shape == (T, J) and mask.dtype == bool
    assert np.array_equal(out[:, BODY], kp[:, BODY], equal_nan=True)
    assert not mask[:, BODY].any()
    # the missing face keypoint gets the model's position; the hand without any 3D keypoint stays NaN
    assert np.isfinite(out[4, skeleton.PARTS["face"].start + 5]).all()
    assert mask[4, skeleton.PARTS["face"].start + 5]
    assert np.isnan(out[3, skeleton.PARTS["left_hand"]]).all()
    # mask = moved or newly built
    moved = np.linalg.norm(out - kp, axis=-1) > 0.01
    assert np.array_equal(mask, moved | (np.isfinite(out[..., 0]) & np.isnan(kp[..., 0])))
    # parts without a model stay unchanged
    out2, mask2 = refine_sequence(kp, capture["det"], RIG, {"face": models["face"]},
                                  views_used=capture["views_used"])
    assert np.array_equal(out2[:, skeleton.PARTS["hands"]], kp[:, skeleton.PARTS["hands"]], equal_nan=True)


def test_shape_errors(capture, models):
    kp, det = capture["kp3d"], capture["det"]
    with pytest.raises(ValueError, match=r"expected kp3d"):
        refine_sequence(kp[:, :10], det, RIG, models)
    with pytest.raises(ValueError, match=r"expected detections \(C, T, J, 3\)"):
        refine_sequence(kp, det[:2], RIG, models)
    with pytest.raises(ValueError, match="expected views_used"):
        refine_sequence(kp, det, RIG, models, views_used=capture["views_used"][:5])
    with pytest.raises(ValueError, match="expected frames"):
        refine_sequence(kp, det, RIG, models, frames=np.arange(3))
    with pytest.raises(ValueError, match="expected segments"):
        refine_sequence(kp, det, RIG, models, segments=np.zeros(3, dtype=np.int64))


def _refine_in_chunks(capture, models, frames, chunk, context, window=2):
    """refine_sequence over ``chunk`` frames at a time, each read with ``context`` frames on either side."""
    from build_h3wb.stages.common import frame_chunks  # noqa: PLC0415

    kp, det, views = capture["kp3d"], capture["det"], capture["views_used"]
    segments = frame_segments(frames, len(frames))
    out, mask = np.full(kp.shape, np.nan, np.float32), np.zeros(kp.shape[:2], bool)
    for read, write, keep in frame_chunks(len(frames), chunk, context, context):
        o, m = refine_sequence(kp[read], det[:, read], RIG, models, views_used=views[read],
                               segments=segments[read], temporal_window=window)
        out[write], mask[write] = o[keep], m[keep]
    return out, mask


@pytest.mark.parametrize("chunk", [7, 30, 99])
def test_refined_in_chunks_with_the_temporal_window_as_context_is_the_same_bit_for_bit(capture, models, chunk):
    """Chunks shorter than the sequence, chunk boundaries inside the temporal windows, frames with gaps and a run
    whose own usual step differs from the recording's (the segments come from the whole recording)."""
    frames = capture["frames"].copy()  # 100 frames, every 5th
    frames[40:] += 50  # a gap
    frames[60:75] = frames[60] + 10 * np.arange(15)  # 15 frames 10 apart: not consecutive at the usual 5
    frames[75:] = frames[74] + 5 * np.arange(1, 26)
    whole, whole_mask = refine_sequence(capture["kp3d"], capture["det"], RIG, models,
                                        views_used=capture["views_used"], frames=frames, temporal_window=2)
    out, mask = _refine_in_chunks(capture, models, frames, chunk, context=2)
    np.testing.assert_array_equal(out, whole)
    np.testing.assert_array_equal(mask, whole_mask)


def test_refined_in_chunks_needs_the_temporal_window_as_context(capture, models):
    """Too little context changes the frames next to the chunk boundaries: the context above is what it takes."""
    frames = capture["frames"]
    whole, _ = refine_sequence(capture["kp3d"], capture["det"], RIG, models, views_used=capture["views_used"],
                               frames=frames, temporal_window=2)
    out, _ = _refine_in_chunks(capture, models, frames, 7, context=1)
    differs = ~np.all((out == whole) | (np.isnan(out) & np.isnan(whole)), axis=(1, 2))  # (T,)
    assert differs.any()
    assert set(np.flatnonzero(differs) % 7) <= {0, 6}  # only the first and last frames of a chunk
    no_window, _ = _refine_in_chunks(capture, models, frames, 7, context=0, window=0)
    reference, _ = refine_sequence(capture["kp3d"], capture["det"], RIG, models, views_used=capture["views_used"],
                                   frames=frames, temporal_window=0)
    np.testing.assert_array_equal(no_window, reference)  # without the temporal pass, frames are independent


def test_noise_free_detections_stay_put(models):
    frames = np.arange(0, 200, 5)
    seq = Recording("S1", "Directions", "Directions 1")
    gt = generate_motion("S1", "Directions", frames / 50.0, **VOLUME)
    clean = default_simulated_detector(
        noise_px={p: 1e-9 for p in ("body", "feet", "face", "left_hand", "right_hand")},
        swap_prob=0.0, hand_swap_prob=0.0, outlier_prob={}, part_outlier_prob={}, occluded_report_prob={},
        miss_prob={}, part_miss_prob={})
    det = detect(gt, seq, frames, clean)
    det[..., 2] = np.where(np.isfinite(det[..., 2]), 1.0, np.nan)
    kp, views, num = build(det)
    out, _ = refine_sequence(kp, det, RIG, models, views_used=views, frames=frames)
    well = (num >= 3)[:, PART_KP]
    assert well.mean() > 0.5
    moved = np.linalg.norm(out[:, PART_KP] - kp[:, PART_KP], axis=-1)[well]
    assert moved.max() < 0.1


def test_refinement_lowers_hand_and_face_error(capture, models):
    kp, gt, det, views = capture["kp3d"], capture["gt"], capture["det"], capture["views_used"]
    out, mask = refine_sequence(kp, det, RIG, models, views_used=views, frames=capture["frames"])
    before = keypoint_errors(kp.astype(np.float64), gt)
    after = keypoint_errors(out.astype(np.float64), gt)
    for variant, part, gain in (("absolute", "face", 0.85), ("absolute", "hands", 0.85),
                                ("root_relative", "face", 0.9), ("root_relative", "hands", 0.9),
                                ("hands_aligned", "hands", 0.85)):
        sl = skeleton.REPORT_PARTS[part]
        both = np.isfinite(before[variant][:, sl]) & np.isfinite(after[variant][:, sl])
        b = before[variant][:, sl][both].mean()
        a = after[variant][:, sl][both].mean()
        assert a < gain * b, (variant, part, b, a)
    # the well-seen keypoints keep their reprojection error
    C = len(RIG)
    used = ((views[None].astype(np.int64) >> np.arange(C)[:, None, None]) & 1).astype(bool)  # (C, T, J)
    score = np.nan_to_num(det[..., 2])
    well = (capture["num_views"] >= 3) & np.where(used, score >= 0.6, True).all(0)
    well[:, BODY] = False

    def reprojection(X):
        tot = sum(np.where(used[c], np.hypot(*(np.stack(cam.project_uv(X.astype(np.float64))) -
                                                np.moveaxis(det[c, ..., :2], -1, 0))), 0.0)
                  for c, cam in enumerate(RIG))
        return (tot / np.maximum(used.sum(0), 1))[well].mean()

    assert well.sum() > 1000
    assert reprojection(out) < 1.05 * reprojection(kp)


def test_completed_keypoints_and_no_views_used(capture, models):
    kp, det = capture["kp3d"].copy(), capture["det"]
    filled = np.zeros(kp.shape[:2], bool)
    hole = ~np.isfinite(kp[..., 0])
    filled[hole] = True
    kp[hole] = capture["gt"][hole] + np.random.default_rng(0).normal(0, 15.0, (hole.sum(), 3))  # a noisy completion
    out, mask = refine_sequence(kp, det, RIG, models, filled=filled, frames=capture["frames"])
    assert np.isfinite(out[:, PART_KP]).all()
    sel = filled[:, PART_KP]
    e_before = np.linalg.norm(kp[:, PART_KP] - capture["gt"][:, PART_KP], axis=-1)[sel]
    e_after = np.linalg.norm(out[:, PART_KP] - capture["gt"][:, PART_KP], axis=-1)[sel]
    assert e_after.mean() < 0.8 * e_before.mean()


def test_keep_views_leaves_well_seen_keypoints_exactly_as_triangulated(capture, models):
    kp, gt, det, views = capture["kp3d"], capture["gt"], capture["det"], capture["views_used"]
    out, _ = refine_sequence(kp, det, RIG, models, views_used=views, frames=capture["frames"], keep_views=3)
    C = len(RIG)
    used = ((views[None].astype(np.int64) >> np.arange(C)[:, None, None]) & 1).astype(bool)  # (C, T, J)
    score = np.nan_to_num(det[..., 2])
    well = (capture["num_views"] >= 3) & np.where(used, score >= 0.6, True).all(0)
    assert well[:, PART_KP].sum() > 1000
    assert np.array_equal(out[well], kp[well])  # unchanged, so their reprojection error is too
    # and the hands and face still improve
    before = keypoint_errors(kp.astype(np.float64), gt)["absolute"]
    after = keypoint_errors(out.astype(np.float64), gt)["absolute"]
    for part in ("face", "hands"):
        sl = skeleton.REPORT_PARTS[part]
        both = np.isfinite(before[:, sl]) & np.isfinite(after[:, sl])
        assert after[:, sl][both].mean() < 0.9 * before[:, sl][both].mean()
