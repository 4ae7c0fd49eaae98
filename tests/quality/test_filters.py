import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.geometry.sequence_check import person_size_px
from build_h3wb.geometry.triangulation import triangulate
from build_h3wb.quality import (
    Filter,
    apply_filters,
    bone_lengths,
    pose_measures,
    quality_score,
    select_balanced,
    size_in_views_used,
    symmetric_bone_pairs,
)
from build_h3wb.sources.synthetic import ring_rig
from build_h3wb.synthetic.motion import generate_motion

J = skeleton.NUM_KEYPOINTS


def _poses(n=20):
    frames = np.arange(0, 5 * n, 5)
    return frames, generate_motion("S1", "Walking", frames / 50.0)


def _measures(kp, frames, **kw):
    T = len(kp)
    args = dict(reprojection_error=np.full((T, J), 2.0), num_views=np.full((T, J), 4), filled=np.zeros((T, J), bool),
                person_size_px=np.full((T, J), 400.0))
    args.update(kw)
    ref = np.nanmedian(bone_lengths(kp), axis=0)
    return pose_measures(kp, args["reprojection_error"], args["num_views"], args["filled"], frames, ref, 50.0, 5,
                         person_size_px=args["person_size_px"])


def test_symmetric_pairs_are_left_right_twins():
    pairs = symmetric_bone_pairs()
    b = skeleton.RIGID_BONES
    assert len(pairs) > 20
    for i, j in pairs:
        assert sorted(skeleton.FLIP_INDEX[b[i]].tolist()) == sorted(b[j].tolist())


def test_measures_of_a_clean_pose_sequence():
    frames, kp = _poses()
    m = _measures(kp, frames)
    assert np.allclose(m["reprojection_px"], 2.0) and np.allclose(m["views"], 4)
    assert np.allclose(m["reprojection_share"], 2.0 / 400.0)
    assert (m["filled_share"] == 0).all()
    assert m["bone_deviation"].max() < 1e-6  # the generator keeps bones constant
    assert m["asymmetry"].max() < 0.2
    assert np.isnan(m["jump_mm_s"][0]) and (m["jump_mm_s"][1:] < 5000).all()


def test_measures_catch_bad_poses():
    frames, kp = _poses()
    bad = kp.copy()
    bad[5, skeleton.LEFT_WRIST] += [1000.0, 0, 0]  # a broken forearm and a 1 m jump in 0.1 s
    filled = np.zeros((len(kp), J), bool)
    filled[7, skeleton.PARTS["face"]] = True
    m = _measures(bad, frames, filled=filled)
    assert m["bone_deviation"][5] > 0.02 and m["bone_deviation"][4] < 1e-6
    assert m["jump_mm_s"][5] > 8000 and m["jump_mm_s"][6] > 8000
    assert m["filled_share"][7] == pytest.approx(68 / J)
    q = quality_score(m)
    assert q[5] > q[4] and q[7] > q[4]
    # non-consecutive frames have no jump measure
    gap = frames.copy()
    gap[10:] += 100
    assert np.isnan(_measures(kp, gap)["jump_mm_s"][10])


def test_filters_count_rejections_by_first_reason():
    m = {"a": np.array([1.0, 5.0, 9.0, np.nan]), "b": np.array([0.0, 0.0, 9.0, 0.0])}
    fa = Filter("too_big_a", "a", max_value=4.0)
    fb = Filter("too_big_b", "b", max_value=1.0)
    keep, reason = apply_filters([fa, fb], m, complete=np.array([True, True, True, False]))
    assert keep.tolist() == [True, False, False, False]
    assert reason.tolist() == [-1, 1, 1, 0]
    assert fa.rejected == 2 and fb.rejected == 0  # pose 2 is counted once, by the first filter
    assert Filter("nan", "a", max_value=4.0, reject_nan=True)(m).tolist() == [True, False, False, False]


def test_select_balanced_takes_the_best_of_every_group():
    score = np.array([1.0, 2.0, 3.0, 10.0, 11.0, np.inf, 0.5])
    groups = np.array([0, 0, 0, 1, 1, 1, 2])
    sel = select_balanced(score, groups, 3)
    assert sel.tolist() == [True, False, False, True, False, False, True]
    sel = select_balanced(score, groups, 5)
    assert sel.sum() == 5 and not sel[5]
    assert select_balanced(score, groups, 100).sum() == 6


def test_an_unknown_frame_rate_measures_no_jump():
    frames, kp = _poses()
    kp = kp.copy()
    kp[7] += 500.0  # a 0.5 m jump between consecutive frames
    T = len(kp)
    ref = np.nanmedian(bone_lengths(kp), axis=0)
    args = (np.full((T, J), 2.0), np.full((T, J), 4), np.zeros((T, J), bool), frames, ref)
    known = pose_measures(kp, *args, 50.0, 5, person_size_px=np.full((T, J), 400.0))
    unknown = pose_measures(kp, *args, 0.0, 5, person_size_px=np.full((T, J), 400.0))
    assert known["jump_mm_s"][7] > 4000  # 866 mm in 0.1 s
    assert np.isnan(unknown["jump_mm_s"]).all()  # no rate assumed: the jump test cannot reject anything


def test_size_in_views_used_averages_the_views_of_each_keypoint():
    size = np.array([[400.0, 800.0, 600.0], [100.0, 200.0, 300.0]]).T  # (C=3, T=2)
    views = np.array([[0b011, 0b100, 0], [0b111, 0b001, 0b110]], dtype=np.uint16)  # (T, J=3) bitmasks
    out = size_in_views_used(size, views)
    assert out.shape == (2, 3)
    assert out[0, :2].tolist() == [600.0, 600.0] and np.isnan(out[0, 2])
    assert out[1].tolist() == [200.0, 100.0, 250.0]
    with pytest.raises(ValueError, match="views_used"):
        size_in_views_used(size, views[:1])


def _reprojection_measures(rig, noise_px, frames=20, seed=0):
    """Measures of a walk seen by ``rig`` with detector noise ``noise_px``, triangulated by the real rule."""
    vol = rig.capture_volume
    fr = np.arange(0, 5 * frames, 5)
    X = generate_motion("S1", "Walking", fr / 50.0, center_xy_mm=vol["center_xy"],
                        half_extent_xy_mm=vol["half_extent_xy"])  # (T, J, 3)
    rng = np.random.default_rng(seed)
    noise = np.moveaxis(rng.normal(0, noise_px, (frames, len(rig), J, 2)), 1, 0)  # drawn frames first (seeded)
    uv = np.stack([cam.project(X) for cam in rig]) + noise  # (C, T, J, 2)
    score = np.full(uv.shape[:3], 0.9)
    size = person_size_px(uv, score, rig)  # (C, T)
    res = triangulate(uv, score, rig, outlier_threshold_px=0.03 * size[:, :, None])
    m = pose_measures(X, res.reprojection_error, res.num_views, np.zeros((frames, J), bool), fr,
                      np.nanmedian(bone_lengths(X), axis=0), 50.0, 5,
                      person_size_px=size_in_views_used(size, res.views))
    return m, float(np.median(size))


def test_reprojection_share_holds_for_a_person_twice_as_large_in_the_image():
    # the same walk seen by Human3.6M's cameras (person about 400 px) and by a portrait rig close to the subject
    # (about twice as large); the detector's noise grows with the person's size in the image, as real detectors' does
    small, size_small = _reprojection_measures(h36m_rig("S1"), 2.0)
    _, size_large = _reprojection_measures(ring_rig(), 2.0)
    ratio = size_large / size_small
    assert ratio > 1.7
    large, _ = _reprojection_measures(ring_rig(), 2.0 * ratio)
    px_small, px_large = np.median(small["reprojection_px"]), np.median(large["reprojection_px"])
    share_small, share_large = np.median(small["reprojection_share"]), np.median(large["reprojection_share"])
    assert px_large > 1.5 * px_small  # in pixels the larger person looks worse...
    assert share_large == pytest.approx(share_small, rel=0.25)  # ...relative to its size it is as good
    # one share keeps both people's poses, where a pixel bound that keeps the small one drops the large one
    assert Filter("reprojection", "reprojection_share", max_value=1.5 * share_small)(large).all()
    assert Filter("reprojection", "reprojection_share", max_value=1.5 * share_small)(small).all()
    assert Filter("pixels", "reprojection_px", max_value=1.5 * px_small)(small).all()
    assert not Filter("pixels", "reprojection_px", max_value=1.5 * px_small)(large).any()
