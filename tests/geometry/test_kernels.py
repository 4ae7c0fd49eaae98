"""The compiled triangulation kernels against the numpy code they replace (the reference)."""

import numpy as np
import pytest
from conftest import points_in_volume

from build_h3wb.geometry import kernels
from build_h3wb.geometry.cameras import Camera, Rig, h36m_rig
from build_h3wb.geometry.triangulation import _Views, triangulate, triangulate_min_exclusion, view_set_hypotheses
from build_h3wb.sources.synthetic import ring_rig


def test_numba_is_used():
    # numba is a core dependency: without it every build falls back to the numpy code, 2-4x slower
    assert kernels.available(), kernels.unavailable_reason()
    assert _Views(h36m_rig("S1"), None, None, None, 0.3, 5).compiled


def test_switching_the_kernels_off(monkeypatch):
    monkeypatch.setenv("BUILD_H3WB_COMPILED", "0")
    assert not kernels.available()
    assert kernels.unavailable_reason() == "BUILD_H3WB_COMPILED=0"
    assert not _Views(h36m_rig("S1"), None, None, None, 0.3, 5).compiled


def _opencv(rig: Rig) -> Rig:
    cams = tuple(Camera(c.name, c.image_size, c.K, c.dist, c.R, c.t, distortion_model="opencv") for c in rig)
    return Rig(rig.name + "_opencv", cams, rig.capture_volume)


def _skewed(rig: Rig) -> Rig:
    """The rig with a pixel skew and strong distortion, so that every term of the kernels matters."""
    cams = []
    for c in rig:
        K = c.K.copy()
        K[0, 1] = 2.5
        cams.append(Camera(c.name, c.image_size, K, np.array([-0.25, 0.08, 1e-3, -2e-3, 0.01]), c.R, c.t))
    return Rig(rig.name + "_skewed", tuple(cams), rig.capture_volume)


def _detections(rig: Rig, n: int, rng: np.random.Generator):
    """Noisy pixels of n points with the faults the robust rule handles: gross outliers, NaN, low scores."""
    X = points_in_volume(rig, n, rng)
    C = len(rig)
    uv = np.stack([cam.project(X) for cam in rig]) + rng.normal(0, 1.5, (C, n, 2))
    bad = rng.random((C, n)) < 0.12
    angle = rng.uniform(0, 2 * np.pi, bad.sum())
    uv[bad] += rng.uniform(30, 300, bad.sum())[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    uv[rng.random((C, n)) < 0.05] = np.nan
    score = rng.uniform(0.1, 1.0, (C, n))
    score[rng.random((C, n)) < 0.03] = np.nan
    return uv, score


def _both(monkeypatch, fn):
    monkeypatch.setenv("BUILD_H3WB_COMPILED", "0")
    ref = fn()
    monkeypatch.setenv("BUILD_H3WB_COMPILED", "1")
    return ref, fn()


def _assert_same(ref, out):
    # the decisions are the same; the points differ only by the order the normal equations are summed in
    np.testing.assert_array_equal(ref.views, out.views)
    np.testing.assert_array_equal(ref.num_views, out.num_views)
    np.testing.assert_array_equal(ref.rejected, out.rejected)
    np.testing.assert_array_equal(np.isnan(ref.points), np.isnan(out.points))
    np.testing.assert_allclose(out.points, ref.points, rtol=0, atol=1e-7)
    np.testing.assert_allclose(out.reprojection_error, ref.reprojection_error, rtol=1e-5, atol=1e-5)


RIGS = {
    "h36m": lambda: h36m_rig("S1"),
    "opencv": lambda: _opencv(h36m_rig("S9")),
    "skewed": lambda: _skewed(h36m_rig("S5")),
    "ring5_pinhole": lambda: ring_rig(5),
    "ring8_drop_worst": lambda: ring_rig(8),
}


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("rig_name", list(RIGS))
def test_compiled_triangulation_matches_numpy(monkeypatch, rng, rig_name, robust):
    rig = RIGS[rig_name]()
    uv, score = _detections(rig, 6000, rng)
    thr = rng.uniform(8.0, 30.0, (len(rig), 6000))  # per view and point, as the stage passes them
    ref, out = _both(monkeypatch, lambda: triangulate(uv, score, rig, robust=robust, outlier_threshold_px=thr,
                                                      block_size=2500))
    _assert_same(ref, out)
    ok = np.isfinite(out.points[:, 0])
    assert 0.5 < ok.mean() < 0.999  # most points are reconstructed, some are not
    if robust:  # every branch of the rule was taken: one view dropped, two or more dropped
        assert (out.rejected == 1).sum() > 200 and (out.rejected >= 2).sum() > 20


@pytest.mark.parametrize("min_ray_angle_deg", [0.0, 35.0])
def test_compiled_ray_conditioning_matches_numpy(monkeypatch, rng, min_ray_angle_deg):
    rig = h36m_rig("S1")
    uv, score = _detections(rig, 4000, rng)
    ref, out = _both(monkeypatch, lambda: triangulate(uv, score, rig, min_ray_angle_deg=min_ray_angle_deg))
    _assert_same(ref, out)


def test_compiled_comparison_rules_match_numpy(monkeypatch, rng):
    rig = _opencv(h36m_rig("S1"))
    uv, score = _detections(rig, 3000, rng)
    ref, out = _both(monkeypatch, lambda: triangulate_min_exclusion(uv, score, rig, threshold_px=15.0))
    _assert_same(ref, out)
    ref, out = _both(monkeypatch, lambda: view_set_hypotheses(uv[:, :500], score[:, :500], rig))
    for a, b in zip(ref, out):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)


def test_points_behind_a_camera_and_degenerate_inputs(monkeypatch, rng):
    # every view missing, every score zero, a point behind one camera, two views only: the same as numpy
    rig = h36m_rig("S1")
    X = points_in_volume(rig, 50, rng)
    uv = np.stack([cam.project(X) for cam in rig])
    score = np.ones((4, 50))
    uv[:, 0] = np.nan
    score[:, 1] = 0.0
    uv[2:, 2] = np.nan
    behind = rig[0].center + 2.0 * (rig[0].center - X[3])  # behind camera 0, seen by the others
    uv[1:, 3] = np.stack([cam.project(behind[None])[0] for cam in list(rig)[1:]])
    for robust in (False, True):
        ref, out = _both(monkeypatch, lambda r=robust: triangulate(uv, score, rig, robust=r))
        _assert_same(ref, out)
        assert np.isnan(out.points[:2]).all() and out.num_views[2] == 2
