import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.geometry.sequence_check import (
    SWAP_GROUPS,
    attachment_swaps,
    camera_agreement,
    check_sequence,
    fix_left_right_swaps,
    person_size_px,
    sync_report,
)
from build_h3wb.geometry.triangulation import triangulate
from build_h3wb.sources.synthetic import ring_rig
from build_h3wb.synthetic.motion import generate_motion

RIG = h36m_rig("S1")
J = skeleton.NUM_KEYPOINTS


def _capture(rig, action="Walking", frames=40, noise=1.0, seed=0):
    vol = rig.capture_volume
    X = generate_motion("S1", action, np.arange(frames) / 10.0, center_xy_mm=vol["center_xy"],
                        half_extent_xy_mm=vol["half_extent_xy"])  # (T, J, 3)
    rng = np.random.default_rng(seed)
    noise_px = np.moveaxis(rng.normal(0, noise, (frames, len(rig), J, 2)), 1, 0)  # drawn frames first (seeded cases)
    uv = np.stack([cam.project(X) for cam in rig]) + noise_px  # (C, T, J, 2)
    return X, uv, np.full(uv.shape[:3], 0.9)


def _tri(uv, score, rig, thr):
    """(C, T, J, 2), (C, T, J), (C, T) thresholds -> (T, J, 3)."""
    return triangulate(uv, score, rig, outlier_threshold_px=thr[:, :, None]).points


@pytest.mark.parametrize("rig", [RIG, ring_rig()], ids=["h36m", "portrait"])
def test_person_size_follows_the_rig(rig):
    X, uv, score = _capture(rig)
    size = person_size_px(uv, score, rig)
    assert size.shape == (len(rig), 40) and np.isfinite(size).all()
    # the portrait rig sees the person about twice as large as Human3.6M's cameras
    expected = (350, 650) if rig is RIG else (700, 1500)
    assert expected[0] < np.median(size) < expected[1]
    # a single gross outlier does not stretch the box (running median)
    uv2 = uv.copy()
    uv2[0, 5, 0] += 2000
    assert abs(person_size_px(uv2, score, rig)[0, 5] - size[0, 5]) < 0.05 * size[0, 5]


def test_swapped_views_are_swapped_back_and_agree():
    X, uv, score = _capture(RIG, "Greeting")
    thr = np.full((4, 40), 15.0)
    bad = uv.copy()
    bad[1, 10:25] = bad[1, 10:25][:, skeleton.FLIP_INDEX]  # view 1: whole body swapped for 15 frames
    lh, rh = skeleton.PARTS["left_hand"], skeleton.PARTS["right_hand"]
    bad[2, 30:33, lh], bad[2, 30:33, rh] = uv[2, 30:33, rh], uv[2, 30:33, lh]  # view 2: hands swapped
    first = _tri(bad, score, RIG, thr)
    fixed, _, swapped = fix_left_right_swaps(bad, score, RIG, first, thr)
    g = list(SWAP_GROUPS)
    assert swapped.shape == (4, 40, len(g))
    assert swapped[1, 10:25, g.index("body")].mean() > 0.9
    assert swapped[2, 30:33, g.index("hands")].all()
    wrong = swapped.copy()
    wrong[1, 10:25, [g.index("body"), g.index("hands"), g.index("face")]] = False
    wrong[2, 30:33, g.index("hands")] = False
    assert wrong.sum() <= 2  # hardly any clean view touched
    ok = swapped[..., g.index("body")]
    assert np.abs(fixed[ok] - uv[ok])[..., skeleton.REPORT_PARTS["body"], :].max() < 1e-9


def test_sequence_check_resolves_a_wrong_limb_and_counts():
    X, uv, score = _capture(RIG, "Posing", noise=1.5)
    thr = np.full((4, 40), 15.0)
    e = skeleton.index("left_elbow")
    bad = uv.copy()
    # a wrong elbow in two views (frame 20), 120 px off in each, the other two views right; a loose threshold lets
    # the per-point rule keep all four views, so only the bone lengths show it
    bad[0, 20, e] += [120.0, 0.0]
    bad[1, 20, e] += [0.0, -120.0]
    first = _tri(bad, score, RIG, np.full((4, 40), 400.0))
    err_before = np.linalg.norm(first[20, e] - X[20, e])
    Xc, status, views = check_sequence(first, bad, score, RIG, thr, frame_dt_s=0.1)
    assert err_before > 100.0
    assert status[20, e] == 1 and views[20, e] == 0b1100
    assert np.linalg.norm(Xc[20, e] - X[20, e]) < 10.0
    assert (status == 2).sum() == 0 and (status == 1).sum() < 10  # nothing else disturbed


def test_sequence_check_checks_shapes():
    with pytest.raises(ValueError, match="expected X"):
        check_sequence(np.zeros((5, J, 3)), np.zeros((4, 5, J, 2)), np.zeros((4, 5, J)), RIG, np.ones((5, 4)),
                       frame_dt_s=0.1)  # thresholds frames first: refused


def test_camera_out_of_sync_is_reported():
    X, uv, score = _capture(RIG, "Walking", frames=60)
    late = uv.copy()
    late[3, 2:] = uv[3, :-2]  # camera 3 shows every frame two frames late
    views = triangulate(late, score, RIG).views.astype(np.int64)  # (T, J): the late moving keypoints are outliers
    report = sync_report(camera_agreement(late, score, RIG, views, max_shift=3), RIG.names, 3)
    assert report[RIG.names[3]]["out_of_sync"] and report[RIG.names[3]]["best_shift_frames"] == 2
    assert not any(report[n]["out_of_sync"] for n in RIG.names[:3])


def test_smoothing_is_a_fixed_duration():
    from build_h3wb.geometry.sequence_check import smooth_in_time
    rng = np.random.default_rng(0)
    t = np.arange(120) / 60.0
    truth = np.stack([np.sin(2 * np.pi * 1.0 * t) * 300, np.zeros_like(t), np.zeros_like(t)], -1)[:, None]  # (T, 1, 3)
    noisy = truth + rng.normal(0, 10, truth.shape)
    noisy[50] = np.nan
    sm = smooth_in_time(noisy, 1 / 60, 0.02)
    assert np.isnan(sm[50]).all() and np.isfinite(sm[51]).all()
    ok = np.isfinite(noisy[:, 0, 0])
    assert np.abs(sm - truth)[ok].std() < 0.7 * np.abs(noisy - truth)[ok].std()
    # at 10 fps the same 20 ms leaves the points as they are
    assert np.array_equal(smooth_in_time(noisy[::6], 0.1, 0.02), noisy[::6], equal_nan=True)


def test_holding_bone_lengths_pulls_towards_the_median_and_can_be_off():
    from build_h3wb.geometry.sequence_check import bone_lengths, hold_bone_lengths
    X, uv, score = _capture(RIG, "Posing", frames=30)
    rng = np.random.default_rng(3)
    noisy = X + rng.normal(0, 15, X.shape)
    noisy[4, 7] = np.nan  # a missing elbow stays missing
    held = hold_bone_lengths(noisy, strength=0.5)
    assert np.isnan(held[4, 7]).all() and np.array_equal(hold_bone_lengths(noisy, 0.0), noisy, equal_nan=True)
    long = np.nanmedian(bone_lengths(X), 0) >= 100.0
    cv = lambda Y: np.nanmedian((np.nanstd(bone_lengths(Y), 0) / np.nanmedian(bone_lengths(Y), 0))[long])  # noqa: E731
    assert cv(held) < 0.5 * cv(noisy)
    ok = np.isfinite(noisy[..., 0])
    assert np.linalg.norm(held - X, axis=-1)[ok].mean() < np.linalg.norm(noisy - X, axis=-1)[ok].mean()


def test_undo_swaps_reads_the_swapped_parts_from_their_twins():
    from build_h3wb import skeleton
    from build_h3wb.geometry.sequence_check import SWAP_GROUPS, undo_swaps

    C, T, J = 4, 3, skeleton.NUM_KEYPOINTS
    det = np.random.default_rng(0).normal(size=(C, T, J, 3))
    swapped = np.zeros((C, T), dtype=np.uint8)
    swapped[2, 1] = 1 << list(SWAP_GROUPS).index("hands")  # the hands of view 2 in frame 1
    out = undo_swaps(det, swapped)
    hands = SWAP_GROUPS["hands"]
    flip = skeleton.FLIP_INDEX
    np.testing.assert_array_equal(out[2, 1, hands], det[2, 1, flip[hands]])
    rest = np.ones((C, T, J), dtype=bool)
    rest[2, 1, hands] = False
    np.testing.assert_array_equal(out[rest], det[rest])  # everything else untouched
    assert out is not det
    with pytest.raises(ValueError, match=r"expected swapped \(C, T\)"):
        undo_swaps(det, swapped.T)


def test_a_mirrored_face_seen_by_two_views_is_swapped_back_by_where_it_attaches():
    # view 1 shows the whole person mirrored (body, face and hands, as a detector that confuses front and back does)
    # and only views 0 and 1 see the face: no third view can outvote the mirrored one, but in view 1's own image the
    # face's "left eye" sits on the body's right eye
    X, uv, score = _capture(RIG, "Greeting")
    bad, sc = uv.copy(), score.copy()
    bad[1, 10:25] = uv[1, 10:25][:, skeleton.FLIP_INDEX]
    sc[2:, :, skeleton.PARTS["face"]] = 0.0
    thr = np.full((4, 40), 12.0)
    first = _tri(bad, sc, RIG, thr)
    fixed, _, swapped = fix_left_right_swaps(bad, sc, RIG, first, thr)
    g = list(SWAP_GROUPS)
    face, hands = g.index("face"), g.index("hands")
    assert swapped[1, 10:25, g.index("body")].mean() > 0.9
    # (a few frames are too close to call: the view sees the face nearly in profile, its eyes overlap)
    assert swapped[1, 10:25, face].mean() > 0.75 and swapped[1, 10:25, hands].mean() > 0.9
    others = np.ones((4, 40), bool)
    others[1, 10:25] = False
    assert swapped[others][:, [face, hands]].sum() <= 2  # hardly any clean view touched
    f = skeleton.PARTS["face"]
    ok = swapped[..., face]
    assert np.abs(fixed[ok] - uv[ok])[..., f, :].max() < 1e-9
    # attachment alone: the mirrored view says "swapped", the clean ones "as labelled" or undecided
    body_fixed = bad.copy()
    body_fixed[1, 10:25, :23] = uv[1, 10:25, :23]
    att = attachment_swaps(body_fixed, sc, "face", thr)
    assert (att[1, 10:25] == 1).mean() > 0.75 and (att[2:] == 0).all()  # views 2 and 3 see no face
    assert (att[others] == 1).sum() <= 1
    with pytest.raises(ValueError, match="part must be"):
        attachment_swaps(body_fixed, sc, "feet", thr)
