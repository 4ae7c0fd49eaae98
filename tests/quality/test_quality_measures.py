"""Measures without ground truth, on poses from the synthetic motion."""

import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.quality import measures as qm
from build_h3wb.synthetic.motion import generate_motion


@pytest.fixture
def poses():
    t = np.arange(40) / 50.0
    return generate_motion("S1", "Walking", t, seed=0, center_xy_mm=(0, 500), half_extent_xy_mm=(700, 700))


def test_rigid_bones_have_no_variation_and_none_is_off(poses):
    lengths = qm.bone_lengths(poses)
    assert lengths.shape == (len(poses), len(qm.BODY_BONES))
    cv = qm.bone_length_cv(lengths)
    assert np.all(cv < 0.02)  # the synthetic skeleton keeps its bones (up to its soft-tissue model)
    ref = qm.subject_reference([lengths])
    assert not qm.bones_off(lengths, ref).any()


def test_a_stretched_bone_is_counted_and_raises_the_cv(poses):
    bad = poses.copy()
    elbow, shoulder = skeleton.index("left_elbow"), skeleton.index("left_shoulder")
    bad[5, elbow] = bad[5, shoulder] + 2.0 * (bad[5, elbow] - bad[5, shoulder])  # upper arm twice as long
    ref = qm.subject_reference([qm.bone_lengths(poses)])
    m = qm.sequence_measures(bad, np.arange(len(bad)), ref)
    assert m["frames_bone_off"] == 1 and m["frames_bone_off_share"] == pytest.approx(1 / len(bad), abs=1e-4)
    assert m["bone_cv"]["left_upper_arm"] > 0.1 and m["bone_cv"]["right_upper_arm"] < 0.02
    # and the forearm, which shares the moved elbow
    assert m["bone_cv"]["left_forearm"] > 0.03


def test_jitter_is_zero_for_uniform_motion_and_sees_a_spike():
    X = np.zeros((10, skeleton.NUM_KEYPOINTS, 3))
    X[..., 0] = 7.0 * np.arange(10)[:, None]  # constant velocity
    assert np.nanmax(qm.jitter(X, np.arange(10))) == pytest.approx(0.0)
    X[4, 0, 1] += 10.0  # one keypoint 10 mm off in one frame
    acc = qm.jitter(X, np.arange(10))
    assert acc.shape == (8, skeleton.NUM_KEYPOINTS)
    np.testing.assert_allclose(acc[2:5, 0], [10.0, 20.0, 10.0])
    # a gap in the frame numbers: the triples across it are not measured
    frames = np.r_[np.arange(5), np.arange(6, 11)]
    assert np.isnan(qm.jitter(X, frames)[3:5]).all()


def test_reprojection_error_and_coverage(rig, poses, rng):
    kp = []
    for cam in rig:
        uv = cam.project(poses) + np.array([3.0, 4.0])  # 5 px off in every view
        kp.append(np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9)], -1))
    kp = np.stack(kp)
    kp[0, :, skeleton.PARTS["face"], 2] = 0.1  # not trusted: not compared
    err = qm.reprojection_errors(poses, kp, rig)
    assert err.shape == kp.shape[:-1]
    np.testing.assert_allclose(err[1], 5.0, atol=1e-6)
    assert np.isnan(err[0][:, skeleton.PARTS["face"]]).all()
    built = poses.copy()
    built[:, skeleton.PARTS["left_hand"]] = np.nan
    m = qm.sequence_measures(built, np.arange(len(built)), qm.subject_reference([qm.bone_lengths(poses)]), kp, rig)
    assert m["coverage"]["hands"] == pytest.approx(0.5) and m["coverage"]["body"] == 1.0
    assert m["reprojection_px"]["median"]["body"] == pytest.approx(5.0)
    pooled = qm.pool([m, m])
    assert pooled["frames"] == 2 * len(built) and pooled["coverage"]["hands"] == pytest.approx(0.5)


def test_shape_errors(poses, rig):
    with pytest.raises(ValueError, match="expected poses"):
        qm.bone_lengths(poses[..., :2])
    with pytest.raises(ValueError, match="expected detections"):
        qm.reprojection_errors(poses, np.zeros((2, len(poses), skeleton.NUM_KEYPOINTS, 3)), rig)
    with pytest.raises(ValueError, match="expected frames"):
        qm.jitter(poses, np.arange(3))
