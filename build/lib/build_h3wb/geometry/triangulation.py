"""Multi-view triangulation: confidence-weighted linear triangulation, the view rules, and outlier rejection.

All functions are vectorised over points (any number of frames x keypoints flattened to N); the only Python loops
run over views or view pairs (at most a few dozen).

Linear triangulation follows Hartley and Zisserman, *Multiple View Geometry* (2nd ed., 2003), Sec. 12.2: each view
``c`` with undistorted normalised coordinates ``(x, y)`` and projection ``P = [R | t]`` contributes the rows
``x P3 - P1`` and ``y P3 - P2``; we solve its inhomogeneous form (the point is finite) as weighted least squares,
``sum_c w_c^2 (A_c^T A_c) X = -sum_c w_c^2 A_c^T b_c``, a 3x3 symmetric system solved in closed form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from build_h3wb.geometry.cameras import Rig

MAX_VIEWS = 16  # views-used masks are stored as uint16 bitmasks


def valid_view_sets(opposing: np.ndarray) -> np.ndarray:
    """Which sets of views may reconstruct a point: at least two views, and not all of them pairwise opposing.

    Args:
        opposing: (C, C) bool, True where two cameras face each other.

    Returns:
        (2**C,) bool indexed by the views-used bitmask (bit c set = view c used).
    """
    C = opposing.shape[0]
    if opposing.shape != (C, C) or C > MAX_VIEWS:
        raise ValueError(f"expected a square (C, C) opposing matrix with C <= {MAX_VIEWS}, got {opposing.shape}")
    masks = np.arange(2**C)
    bits = (masks[:, None] >> np.arange(C)) & 1  # (2**C, C)
    count = bits.sum(1)
    # a set is fine if some pair in it is not opposing
    good_pair = np.zeros(2**C, dtype=bool)
    for a, b in itertools.combinations(range(C), 2):
        if not opposing[a, b]:
            good_pair |= (bits[:, a] & bits[:, b]).astype(bool)
    return (count >= 2) & good_pair


def bits_to_mask(views: np.ndarray, num_views: int) -> np.ndarray:
    """Bitmask (...,) -> bool (..., C)."""
    return ((views[..., None].astype(np.int64) >> np.arange(num_views)) & 1).astype(bool)


def mask_to_bits(mask: np.ndarray) -> np.ndarray:
    """Bool (..., C) -> uint16 bitmask (...,)."""
    bits = np.zeros(mask.shape[:-1], dtype=np.uint16)
    for c in range(mask.shape[-1]):
        bits |= mask[..., c].astype(np.uint16) << np.uint16(c)
    return bits


def triangulate_linear(xy: np.ndarray, weights: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Weighted linear triangulation of N points from C views.

    Args:
        xy: (N, C, 2) undistorted normalised image coordinates; entries with zero weight are ignored (may be NaN).
        weights: (N, C) non-negative weights (confidence; 0 = view not used).
        extrinsics: (C, 3, 4) ``[R | t]`` per view, world millimetres.

    Returns:
        (N, 3) world millimetres; NaN where the system is singular (fewer than two usable views).
    """
    N, C = weights.shape
    if xy.shape != (N, C, 2) or extrinsics.shape != (C, 3, 4):
        raise ValueError(
            f"expected xy (N, C, 2), weights (N, C), extrinsics (C, 3, 4); got {xy.shape}, {weights.shape}, "
            f"{extrinsics.shape}"
        )
    # normal equations M X = v accumulated over views; M symmetric, kept as its 6 unique entries
    m00 = np.zeros(N)
    m01 = np.zeros(N)
    m02 = np.zeros(N)
    m11 = np.zeros(N)
    m12 = np.zeros(N)
    m22 = np.zeros(N)
    v0 = np.zeros(N)
    v1 = np.zeros(N)
    v2 = np.zeros(N)
    for c in range(C):
        w = weights[:, c]
        used = w > 0
        w2 = np.where(used, w * w, 0.0)  # (N,)
        P = extrinsics[c]
        for k in range(2):  # the x row and the y row
            coord = np.where(used, xy[:, c, k], 0.0)  # (N,)
            r0 = coord * P[2, 0] - P[k, 0]  # (N,) row of A
            r1 = coord * P[2, 1] - P[k, 1]
            r2 = coord * P[2, 2] - P[k, 2]
            b = P[k, 3] - coord * P[2, 3]  # (N,) right-hand side
            wr0, wr1, wr2 = w2 * r0, w2 * r1, w2 * r2
            m00 += wr0 * r0
            m01 += wr0 * r1
            m02 += wr0 * r2
            m11 += wr1 * r1
            m12 += wr1 * r2
            m22 += wr2 * r2
            v0 += wr0 * b
            v1 += wr1 * b
            v2 += wr2 * b
    # closed-form inverse of the symmetric 3x3 (adjugate / determinant)
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    c11 = m00 * m22 - m02 * m02
    c12 = m01 * m02 - m00 * m12
    c22 = m00 * m11 - m01 * m01
    det = m00 * c00 + m01 * c01 + m02 * c02
    scale = np.maximum(np.abs(m00) + np.abs(m11) + np.abs(m22), 1e-300)
    ok = np.abs(det) > 1e-12 * scale**3
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), np.nan)
    X = np.empty((N, 3))
    X[:, 0] = (c00 * v0 + c01 * v1 + c02 * v2) * inv_det
    X[:, 1] = (c01 * v0 + c11 * v1 + c12 * v2) * inv_det
    X[:, 2] = (c02 * v0 + c12 * v1 + c22 * v2) * inv_det
    return X


def normalized_residuals(X: np.ndarray, xy: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Distance between observed and reprojected undistorted normalised coordinates.

    Args:
        X: (N, 3) world millimetres.
        xy: (N, C, 2) observed undistorted normalised coordinates.
        extrinsics: (C, 3, 4).

    Returns:
        (N, C) residual in normalised units (multiply by a focal length for approximate pixels); NaN where a view
        has no observation or the point is behind the camera.
    """
    Xc = np.einsum("cij,nj->nci", extrinsics[:, :, :3], X) + extrinsics[None, :, :, 3]  # (N, C, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(Xc[..., 2] > 1e-6, Xc[..., 2], np.nan)
        dx = Xc[..., 0] / z - xy[..., 0]
        dy = Xc[..., 1] / z - xy[..., 1]
    return np.sqrt(dx * dx + dy * dy)


@dataclass(frozen=True)
class Triangulation:
    """Result of :func:`triangulate`, for N points.

    Attributes:
        points: (N, 3) world millimetres, NaN where not reconstructed.
        views: (N,) uint16 bitmask of the views used (0 where not reconstructed).
        num_views: (N,) uint8 number of views used.
        reprojection_error: (N,) mean reprojection error in pixels over the views used (with lens distortion),
            NaN where not reconstructed.
        rejected: (N,) uint8 number of candidate views dropped as outliers.
    """

    points: np.ndarray
    views: np.ndarray
    num_views: np.ndarray
    reprojection_error: np.ndarray
    rejected: np.ndarray


def triangulate(
    uv: np.ndarray,
    score: np.ndarray,
    rig: Rig,
    *,
    min_score: float = 0.3,
    opposing_angle_deg: float = 140.0,
    robust: bool = True,
    outlier_threshold_px: float = 15.0,
    undistort_iterations: int = 5,
    block_size: int = 16384,
) -> Triangulation:
    """Triangulate N keypoints seen by the rig's C views.

    A point is reconstructed from the views whose detection is finite and scores at least ``min_score``, only if
    at least two of them remain and they are not all pairwise opposing (optical axes more than
    ``opposing_angle_deg`` apart: such pairs see along nearly the same line and fix depth poorly).

    With ``robust=True``, points whose worst view reprojects further than ``outlier_threshold_px`` are solved
    again by hypothesis testing over view pairs (every pair is triangulated, the pair that agrees with the most
    views, then the lowest error, wins), keeping only the views within the threshold; this removes gross outliers
    and left/right swaps as long as two consistent views remain.

    Args:
        uv: (N, C, 2) detected keypoints in pixels (distorted, as in the image), NaN where missing.
        score: (N, C) detection confidence in [0, 1], NaN or 0 where missing.
        rig: the C calibrated cameras, in the order of the view axis.
        min_score: views below this confidence are not used.
        opposing_angle_deg: axis angle above which two cameras count as opposing.
        robust: reject outlier views (see above).
        outlier_threshold_px: reprojection error beyond which a view is an outlier.
        undistort_iterations: fixed-point iterations of the undistortion.
        block_size: points processed at once (small blocks stay in the CPU cache; the result does not depend on it).

    Returns:
        A :class:`Triangulation` for the N points.
    """
    N, C = score.shape
    if uv.shape != (N, C, 2):
        raise ValueError(f"expected uv (N, C, 2) and score (N, C); got uv {uv.shape}, score {score.shape}")
    if C != len(rig):
        raise ValueError(f"detections have {C} views but the rig {rig.name!r} has {len(rig)} cameras")
    valid_sets = valid_view_sets(rig.opposing(opposing_angle_deg))  # (2**C,)
    out = Triangulation(
        points=np.empty((N, 3)),
        views=np.empty(N, dtype=np.uint16),
        num_views=np.empty(N, dtype=np.uint8),
        reprojection_error=np.empty(N, dtype=np.float32),
        rejected=np.empty(N, dtype=np.uint8),
    )
    for s in range(0, N, block_size):
        e = min(s + block_size, N)
        part = _triangulate_block(
            uv[s:e], score[s:e], rig, valid_sets, min_score, robust, outlier_threshold_px, undistort_iterations
        )
        for name in ("points", "views", "num_views", "reprojection_error", "rejected"):
            getattr(out, name)[s:e] = getattr(part, name)
    return out


def _triangulate_block(
    uv: np.ndarray,
    score: np.ndarray,
    rig: Rig,
    valid_sets: np.ndarray,
    min_score: float,
    robust: bool,
    outlier_threshold_px: float,
    undistort_iterations: int,
) -> Triangulation:
    """:func:`triangulate` on one block of points (same arguments, ``valid_sets`` from :func:`valid_view_sets`)."""
    N, C = score.shape
    extr = np.stack([cam.extrinsic for cam in rig])  # (C, 3, 4)
    focal = np.array([0.5 * (cam.K[0, 0] + cam.K[1, 1]) for cam in rig])  # (C,) px per normalised unit
    uv = np.asarray(uv, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        candidate = np.isfinite(uv[..., 0]) & np.isfinite(uv[..., 1]) & (score >= min_score)  # (N, C); NaN fails
    weights = np.where(candidate, score, 0.0)  # (N, C)
    xy = np.empty((N, C, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        for c, cam in enumerate(rig):
            xy[:, c, 0], xy[:, c, 1] = cam.undistort_uv(uv[:, c, 0], uv[:, c, 1], undistort_iterations)

    used = candidate & valid_sets[mask_to_bits(candidate)][:, None]  # (N, C); points that cannot be solved drop
    X = triangulate_linear(xy, np.where(used, weights, 0.0), extr)
    if robust:
        with np.errstate(invalid="ignore"):
            err = normalized_residuals(X, xy, extr) * focal  # (N, C) approximate pixels
            bad = (used & (err > outlier_threshold_px)).any(1)
        if bad.any():
            idx = np.flatnonzero(bad)
            new_used = _best_consensus(xy[idx], weights[idx], candidate[idx], extr, focal, outlier_threshold_px)
            new_used &= valid_sets[mask_to_bits(new_used)][:, None]
            used[idx] = new_used
            X[idx] = triangulate_linear(xy[idx], np.where(new_used, weights[idx], 0.0), extr)
    bits = mask_to_bits(used)
    ok = valid_sets[bits] & np.isfinite(X[:, 0])
    X[~ok] = np.nan
    used &= ok[:, None]
    bits = np.where(ok, bits, 0).astype(np.uint16)
    n_used = used.sum(1)

    # reprojection error in real (distorted) pixels, averaged over the views used
    err_sum = np.zeros(N)
    for c, cam in enumerate(rig):
        pu, pv = cam.project_uv(X)
        du, dv = pu - uv[:, c, 0], pv - uv[:, c, 1]
        err_sum += np.where(used[:, c], np.sqrt(du * du + dv * dv), 0.0)
    mean_err = np.where(ok, err_sum / np.maximum(n_used, 1), np.nan)
    rejected = (candidate & ~used & ok[:, None]).sum(1)
    return Triangulation(
        points=X,
        views=bits,
        num_views=n_used.astype(np.uint8),
        reprojection_error=mean_err.astype(np.float32),
        rejected=rejected.astype(np.uint8),
    )


def _best_consensus(
    xy: np.ndarray,
    weights: np.ndarray,
    candidate: np.ndarray,
    extr: np.ndarray,
    focal: np.ndarray,
    threshold_px: float,
) -> np.ndarray:
    """Choose, per point, the largest set of views consistent with some pair of views (vectorised RANSAC).

    Args:
        xy: (M, C, 2) undistorted normalised coordinates.
        weights: (M, C) view weights.
        candidate: (M, C) bool views available.
        extr: (C, 3, 4) extrinsics.
        focal: (C,) focal lengths in pixels.
        threshold_px: inlier threshold in pixels.

    Returns:
        (M, C) bool inlier views (after one weighted re-solve and a final threshold check).
    """
    M, C = candidate.shape
    best_count = np.full(M, -1)
    best_err = np.full(M, np.inf)
    best_inliers = np.zeros((M, C), dtype=bool)
    for a, b in itertools.combinations(range(C), 2):
        has = candidate[:, a] & candidate[:, b]
        if not has.any():
            continue
        pair_w = np.zeros((M, C))
        pair_w[:, a] = np.where(has, weights[:, a], 0.0)
        pair_w[:, b] = np.where(has, weights[:, b], 0.0)
        Xp = triangulate_linear(xy, pair_w, extr)
        err = normalized_residuals(Xp, xy, extr) * focal  # (M, C)
        inl = candidate & (err <= threshold_px) & has[:, None]
        count = inl.sum(1)
        mean_err = np.where(count > 0, np.where(inl, err, 0.0).sum(1) / np.maximum(count, 1), np.inf)
        better = (count > best_count) | ((count == best_count) & (mean_err < best_err))
        better &= has
        best_count = np.where(better, count, best_count)
        best_err = np.where(better, mean_err, best_err)
        best_inliers[better] = inl[better]
    # re-solve on the consensus set and keep the views that still agree
    X = triangulate_linear(xy, np.where(best_inliers, weights, 0.0), extr)
    err = normalized_residuals(X, xy, extr) * focal
    return best_inliers & (err <= threshold_px)
