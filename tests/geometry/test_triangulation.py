import itertools

import numpy as np
import pytest
from conftest import points_in_volume

from build_h3wb.geometry.triangulation import (
    bits_to_mask,
    mask_to_bits,
    triangulate,
    triangulate_linear,
    valid_view_sets,
)


def _observe(rig, X):
    return np.stack([cam.project(X) for cam in rig])  # (C, N, 2), views first


def test_linear_triangulation_is_exact_without_noise(rig, rng):
    X = points_in_volume(rig, 2000, rng)
    res = triangulate(_observe(rig, X), np.ones((4, 2000)), rig, robust=False, undistort_iterations=10)
    assert np.abs(res.points - X).max() < 1e-5
    assert (res.num_views == 4).all() and (res.views == 0b1111).all()
    assert np.nanmax(res.reprojection_error) < 1e-4


def test_every_non_opposing_pair_is_exact_and_opposing_pairs_are_refused(rig, rng):
    X = points_in_volume(rig, 200, rng)
    uv = _observe(rig, X)
    opposing = rig.opposing(140.0)
    for a, b in itertools.combinations(range(4), 2):
        score = np.zeros((4, 200))
        score[[a, b]] = 0.9
        res = triangulate(uv, score, rig, robust=False, undistort_iterations=10)
        if opposing[a, b]:
            assert np.isnan(res.points).all() and (res.num_views == 0).all()
        else:
            assert np.abs(res.points - X).max() < 1e-4


def test_opposing_rule_comes_from_geometry_not_indices(rig):
    # at a 100 degree threshold, the side pairs (124-129 degrees) count as opposing too
    table = valid_view_sets(rig.opposing(100.0))
    assert not table[0b0011] and not table[0b1001]  # 0-1 side pair, 0-3 diagonal
    assert table[0b0101]  # neighbours 0-2 (about 47 degrees)
    assert table[0b0111]
    # at 170 degrees nothing is opposing: every pair works
    assert all(table_ for m, table_ in enumerate(valid_view_sets(rig.opposing(170.0))) if bin(m).count("1") >= 2)


def test_valid_view_sets_counts():
    opp = np.zeros((4, 4), dtype=bool)
    opp[0, 3] = opp[3, 0] = opp[1, 2] = opp[2, 1] = True
    t = valid_view_sets(opp)
    assert t.shape == (16,)
    assert not t[0] and not t[0b0001] and not t[0b1001] and not t[0b0110]
    assert t[0b0011] and t[0b1111] and t[0b1011]
    with pytest.raises(ValueError, match="square"):
        valid_view_sets(np.zeros((3, 4), dtype=bool))


def test_bitmask_round_trip(rng):
    m = rng.random((50, 4)) < 0.5
    assert (bits_to_mask(mask_to_bits(m), 4) == m).all()


def test_low_scores_and_nan_are_not_used(rig, rng):
    X = points_in_volume(rig, 100, rng)
    uv = _observe(rig, X)
    score = np.full((4, 100), 0.9)
    score[0] = 0.1  # below min_score
    uv[1] = np.nan
    res = triangulate(uv, score, rig, min_score=0.3, robust=False)
    # left with views 2 and 3: a side pair, not opposing
    assert (res.views == 0b1100).all()
    assert np.abs(res.points - X).max() < 1e-3


def test_robust_removes_gross_outliers_and_swaps(rig, rng):
    n = 20000
    X = points_in_volume(rig, n, rng)
    uv = _observe(rig, X) + rng.normal(0, 1.5, (4, n, 2))
    clean = triangulate(uv, np.ones((4, n)), rig, robust=False)
    noise_floor = np.nanmedian(np.linalg.norm(clean.points - X, axis=1))
    bad = rng.random((4, n)) < 0.05
    uv_bad = uv.copy()
    off = rng.uniform(40, 300, bad.sum())[:, None] * np.stack(
        [np.cos(a := rng.uniform(0, 2 * np.pi, bad.sum())), np.sin(a)], 1)
    uv_bad[bad] += off
    plain = triangulate(uv_bad, np.ones((4, n)), rig, robust=False)
    robust = triangulate(uv_bad, np.ones((4, n)), rig, robust=True, outlier_threshold_px=15)
    e_plain = np.linalg.norm(plain.points - X, axis=1)
    e_rob = np.linalg.norm(robust.points - X, axis=1)
    assert np.nanpercentile(e_plain, 95) > 5 * np.nanpercentile(e_rob, 95)
    assert np.nanmedian(e_rob) < 1.2 * noise_floor
    assert np.nanpercentile(e_rob, 95) < 4 * noise_floor
    # the dropped views are the corrupted ones
    used = bits_to_mask(robust.views, 4)  # (n, C)
    one_bad = bad.sum(0) == 1
    assert (used[one_bad] & bad.T[one_bad]).sum() < 0.01 * one_bad.sum()
    assert robust.rejected[one_bad].mean() > 0.95


def test_shapes_are_checked(rig):
    with pytest.raises(ValueError, match=r"expected uv \(C, \.\.\., 2\)"):
        triangulate(np.zeros((4, 5, 3)), np.zeros((4, 5)), rig)
    with pytest.raises(ValueError, match="3 views .* but the rig"):
        triangulate(np.zeros((3, 5, 2)), np.zeros((3, 5)), rig)
    with pytest.raises(ValueError, match="5 views .* but the rig"):  # points first is refused, not misread
        triangulate(np.zeros((5, 4, 2)), np.zeros((5, 4)), rig)
    with pytest.raises(ValueError, match="extrinsics"):
        triangulate_linear(np.zeros((4, 5, 2)), np.zeros((4, 5)), np.zeros((3, 3, 4)))


def test_block_size_does_not_change_the_result(rig, rng):
    X = points_in_volume(rig, 1000, rng)
    uv = _observe(rig, X) + rng.normal(0, 3, (4, 1000, 2))
    uv[rng.random((4, 1000)) < 0.1] += 200
    a = triangulate(uv, np.ones((4, 1000)), rig, block_size=64, workers=1)
    b = triangulate(uv, np.ones((4, 1000)), rig, block_size=100000)
    c = triangulate(uv, np.ones((4, 1000)), rig, block_size=64, workers=3)  # blocks shared by threads
    # the same points up to rounding (the normal equations come out of a matrix product whose summation order
    # may depend on the block), the same views
    assert np.allclose(a.points, b.points, atol=1e-9, rtol=0, equal_nan=True) and np.array_equal(a.views, b.views)
    assert np.array_equal(a.points, c.points, equal_nan=True) and np.array_equal(a.views, c.views)
    assert np.array_equal(a.reprojection_error, c.reprojection_error, equal_nan=True)


def test_points_keep_their_shape_and_thresholds_broadcast(rig, rng):
    # (C, T, J, 2) detections as in the detect artifact give (T, J, ...) results; a (C, T, 1) threshold is per view
    # and frame for every keypoint, the same as the full (C, T, J) array
    T, J = 6, 7
    X = points_in_volume(rig, T * J, rng)
    uv = (_observe(rig, X) + rng.normal(0, 2, (4, T * J, 2))).reshape(4, T, J, 2)
    uv[2, 3, 4] += 150.0
    score = np.ones((4, T, J))
    thr = rng.uniform(8, 20, (4, T, 1))
    res = triangulate(uv, score, rig, outlier_threshold_px=thr)
    assert res.points.shape == (T, J, 3) and res.views.shape == res.num_views.shape == (T, J)
    flat = triangulate(uv.reshape(4, -1, 2), score.reshape(4, -1), rig,
                       outlier_threshold_px=np.broadcast_to(thr, (4, T, J)).reshape(4, -1))
    np.testing.assert_array_equal(res.points.reshape(-1, 3), flat.points)
    assert res.views[3, 4] & 0b0100 == 0  # the far-off view is not used
    per_point = triangulate(uv, score, rig, outlier_threshold_px=np.full((T, J), 12.0))  # (T, J): per point
    np.testing.assert_array_equal(per_point.points, triangulate(uv, score, rig, outlier_threshold_px=12.0).points)


def test_three_views_that_agree_beat_a_pair_and_thresholds_scale(rig, rng):
    from build_h3wb.geometry.triangulation import triangulate_min_exclusion
    n = 3000
    X = points_in_volume(rig, n, rng)
    uv = _observe(rig, X) + rng.normal(0, 6.0, (4, n, 2))  # a large person: views disagree by ~10-20 px
    uv[3] += 380.0  # view 3 far off
    score = np.ones((4, n))
    tight = triangulate(uv, score, rig, outlier_threshold_px=8.0)
    scaled = triangulate(uv, score, rig, outlier_threshold_px=np.full((4, n), 30.0))
    # with a threshold fitting the person, the three good views are kept together
    assert (scaled.views == 0b0111).mean() > 0.95
    assert (tight.num_views == 2).mean() > 0.2  # too tight: pairs (or nothing) remain
    e_scaled = np.linalg.norm(scaled.points - X, axis=1)
    e_tight = np.linalg.norm(tight.points - X, axis=1)
    assert np.nanmean(e_scaled) < np.nanmean(e_tight)
    # the minimal-exclusion rule drops the one bad view too
    mex = triangulate_min_exclusion(uv, score, rig, threshold_px=25.0)
    assert (mex.views == 0b0111).mean() > 0.9
    with pytest.raises(ValueError, match="outlier_threshold_px"):
        triangulate(uv, score, rig, outlier_threshold_px=np.ones((3, n)))


def test_rays_meeting_at_a_grazing_angle_are_refused(rig, rng):
    # two views whose rays nearly coincide at the point cannot fix its depth
    from build_h3wb.geometry.cameras import Camera, Rig
    base = rig[0]
    shifted = Camera("near", base.image_size, base.K, base.dist, base.R, base.t + np.array([80.0, 0.0, 0.0]))
    near = Rig("near", (base, shifted))
    X = points_in_volume(rig, 200, rng)
    uv = np.stack([cam.project(X) for cam in near])
    s = np.ones((2, 200))
    assert np.isnan(triangulate(uv, s, near, min_ray_angle_deg=10.0).points).all()
    assert np.isfinite(triangulate(uv, s, near, min_ray_angle_deg=0.0).points).all()
    assert np.isfinite(triangulate(uv, s, near, robust=False).points).all()  # plain DLT stays plain


def test_view_set_hypotheses_shapes(rig, rng):
    from build_h3wb.geometry.triangulation import view_set_hypotheses
    X = points_in_volume(rig, 10, rng)
    pts, sets, worst, usable = view_set_hypotheses(_observe(rig, X), np.ones((4, 10)), rig)
    assert pts.shape[0] == 10 and pts.shape[2] == 3 and sets.shape == (pts.shape[1], 4)
    assert (sets.sum(1)[:-1] >= sets.sum(1)[1:]).all()  # largest sets first
    assert worst.shape == usable.shape == pts.shape[:2]
    assert np.abs(pts[usable] - np.repeat(X[:, None], pts.shape[1], 1)[usable]).max() < 1e-3


def test_normal_equations_solve_to_the_linear_triangulation(rig, rng):
    from build_h3wb.geometry.triangulation import normal_equations, reprojection_residuals

    X = rng.normal(size=(50, 3)) * 300 + np.array([0.0, 500.0, 1000.0])
    extr = np.stack([c.extrinsic for c in rig])
    Xc = np.einsum("cij,nj->cni", extr[:, :, :3], X) + extr[:, None, :, 3]  # (C, N, 3)
    xy = Xc[..., :2] / Xc[..., 2:] + rng.normal(scale=1e-3, size=(len(rig), 50, 2))  # views first
    w = rng.uniform(0.5, 1.0, size=(len(rig), 50))
    M, v = normal_equations(xy, w, extr)  # (N, 3, 3), (N, 3)
    np.testing.assert_allclose(np.linalg.solve(M, v[..., None])[..., 0],
                               triangulate_linear(xy, w, extr), rtol=1e-9, atol=1e-6)
    res = reprojection_residuals(X, xy, extr)
    assert res.shape == (len(rig), 50) and res.max() < 0.01
    with pytest.raises(ValueError, match=r"expected xy \(C, \.\.\., 2\)"):
        normal_equations(xy[:, :10], w, extr)


def test_view_mask_is_bits_to_mask_views_first(rng):
    from build_h3wb.geometry.triangulation import view_mask
    bits = rng.integers(0, 16, (5, 7))
    np.testing.assert_array_equal(view_mask(bits, 4), np.moveaxis(bits_to_mask(bits, 4), -1, 0))
    assert view_mask(np.int64(0b0101), 4).tolist() == [True, False, True, False]


@pytest.mark.parametrize("num_views", [4, 10])
def test_rays_checked_pair_by_pair_agree_with_every_pair_at_once(rng, num_views):
    # rays_ok settles points pair by pair (the best-placed pairs first): it must say what checking every pair says
    from build_h3wb.geometry.triangulation import _Views
    from build_h3wb.sources.synthetic import ring_rig

    rig = ring_rig(num_views)
    n, min_angle = 3000, 40.0  # a wide angle, so that many points need more than one pair
    X = points_in_volume(rig, n, rng).T  # (3, n)
    members = rng.random((num_views, n)) < 0.4
    ok = _Views(rig, None, None, None, 0.3, 5).rays_ok(X, members, min_angle)
    rays = X[None] - np.stack([cam.center for cam in rig])[:, :, None]  # (C, 3, n)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    expected = np.zeros(n, dtype=bool)
    for a, b in itertools.combinations(range(num_views), 2):
        angle = np.degrees(np.arccos(np.clip((rays[a] * rays[b]).sum(0), -1, 1)))
        expected |= members[a] & members[b] & (angle >= min_angle) & (angle <= 180 - min_angle)
    assert 0.2 < expected.mean() < 0.9  # both outcomes are common
    assert np.array_equal(ok, expected)


def test_rigs_of_more_than_eight_views_keep_every_view_bit(rng):
    # bitmasks of up to 16 views (uint16) and the drop-the-worst rule of large rigs
    from build_h3wb.sources.synthetic import ring_rig

    rig = ring_rig(10)
    X = points_in_volume(rig, 300, rng)
    uv = _observe(rig, X) + rng.normal(0, 0.5, (10, 300, 2))
    uv[9, :100] += 80.0  # view 9 is far off for the first 100 points
    res = triangulate(uv, np.ones((10, 300)), rig)
    assert (res.views[100:] == 2**10 - 1).all() and (res.num_views[100:] == 10).all()
    assert (res.views[:100] == 2**9 - 1).all() and (res.rejected[:100] == 1).all()
    assert np.allclose(res.points, X, atol=5.0)
