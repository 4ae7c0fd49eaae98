"""Multi-view triangulation: confidence-weighted linear triangulation and a robust rule for any rig.

**Axis order: views first**, as in the detect artifact: detections are ``(C, ..., 2)`` pixels and ``(C, ...)``
scores for the rig's C views and any points' shape ``...`` (e.g. frames x keypoints), and results have the points'
shape. All functions are vectorised over points; the only Python loops run over views (at most a few dozen) and over
blocks of points, which large inputs share among threads (numpy releases the GIL), so a call uses every core.

Linear triangulation follows Hartley and Zisserman, *Multiple View Geometry* (2nd ed., 2003), Sec. 12.2: each view
``c`` with undistorted normalised coordinates ``(x, y)`` and projection ``P = [R | t]`` contributes the rows
``x P3 - P1`` and ``y P3 - P2``; we solve its inhomogeneous form (the point is finite) as weighted least squares,
``sum_c w_c^2 (A_c^T A_c) X = -sum_c w_c^2 A_c^T b_c``, a 3x3 symmetric system solved in closed form. A view's
share of that system is linear in ``(x^2 + y^2, x, y, 1)`` with constant coefficients, so the normal equations of
every point come out of one matrix product, and those of any subset of views are sums of the per-view shares.

The robust rule (``robust=True``), per point:

1. **Thresholds scale with the person.** A view agrees with a 3D point when its residual (observed vs reprojected,
   in pixels) is at most ``threshold_px`` for that view. The stage passes, per frame and view, a fraction of the
   person's size in that image (the diagonal of the body keypoints' box), so a 1920-pixel portrait camera close to
   the subject tolerates the larger pixel disagreement its detector shows, and a distant one is held tighter; a
   single number (the default 15 px) is used when nothing is known about the person.
2. **The largest agreeing set of views wins.** All views are tried first; if one disagrees, the sets with one view
   fewer, and where none of them agrees every smaller set, are solved (from the per-view shares, without
   re-reading the detections), and the largest set whose members all agree with its own solution is chosen;
   among sets of that size the one with the lowest mean squared residual (relative to the thresholds). A pair of
   views always "agrees" up to its one epipolar degree of freedom, so it is used only when no three views agree:
   two rays that happen to meet are no evidence against three views that agree a little less well. Rigs with more
   than ``max_exhaustive_views`` views drop the worst view until the rest agree instead.
3. **Depth conditioning per point.** A set of views is refused when no two of its rays cross at the point at an
   angle between ``min_ray_angle_deg`` and 180 degrees minus it (rays that are nearly parallel or nearly opposed fix
   the depth poorly); the older rule on the cameras' optical axes (``opposing_angle_deg``) is kept on top.

Pose-level and sequence-level checks that need the keypoint layout or time live in
:mod:`build_h3wb.geometry.sequence_check` (left/right swaps fixed per view, bone lengths and jumps, recovery, smoothing,
per-camera residuals and synchronisation); ``stage=triangulate`` runs them all. :func:`triangulate_min_exclusion`
is a Pose2Sim-style rule kept for comparison; ``robust=False`` is plain DLT. The effect of every step is measured
by ``benchmarks/bench_triangulation_rules.py`` (README, "The robust rule").
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from build_h3wb.geometry.cameras import Rig
from build_h3wb.geometry.distortion import distort_xy, undistort_xy
from build_h3wb.parallel import usable_cpus


def _kernels():
    """The compiled kernels (:mod:`build_h3wb.geometry.kernels`), imported when a triangulation first runs.

    Importing numba costs about 110 MB of memory and 0.2 s; the stages that import this module for its helpers
    (refine's normal equations, filter's and export's view masks) without triangulating do not pay it.
    """
    from build_h3wb.geometry import kernels  # noqa: PLC0415 (lazy on purpose, see above)

    return kernels


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


def view_mask(views: np.ndarray, num_views: int) -> np.ndarray:
    """Bitmask (...,) -> bool (C, ...), views first (as detections are): ``view_mask(b, C)[c]`` = view c used."""
    return ((views[None].astype(np.int64) >> np.arange(num_views).reshape((-1,) + (1,) * np.ndim(views))) & 1
            ).astype(bool)


def mask_to_bits(mask: np.ndarray) -> np.ndarray:
    """Bool (..., C) -> uint16 bitmask (...,)."""
    bits = np.zeros(mask.shape[:-1], dtype=np.uint16)
    for c in range(mask.shape[-1]):
        bits |= mask[..., c].astype(np.uint16) << np.uint16(c)
    return bits


def _normal_basis(extrinsics: np.ndarray) -> np.ndarray:
    """(C, 3, 4) ``[R | t]`` -> (C, 4, 9): per view, the normal-equation entries as a map of 4 coefficients.

    The coefficients are ``(w^2 (x^2 + y^2), w^2 x, w^2 y, w^2)``. The 9 entries are ``m00, m01, m02, m11, m12,
    m22`` (the symmetric 3x3 matrix) and ``v0, v1, v2`` (the right-hand side), in this order.
    """
    C = extrinsics.shape[0]
    out = np.empty((C, 4, 9))
    iu = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    for c in range(C):
        p1, p2, p3 = extrinsics[c]  # (4,) rows
        terms = (
            np.outer(p3, p3),  # x^2 + y^2
            -(np.outer(p3, p1) + np.outer(p1, p3)),  # x
            -(np.outer(p3, p2) + np.outer(p2, p3)),  # y
            np.outer(p1, p1) + np.outer(p2, p2),  # 1
        )
        for k, H in enumerate(terms):  # H: (4, 4) share of the homogeneous normal matrix
            out[c, k, :6] = [H[i, j] for i, j in iu]
            out[c, k, 6:] = -H[:3, 3]
    return out


def _coefficients(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """View-major (C, N) coordinates and weights -> (C, 4, N) ``(w^2 (x^2 + y^2), w^2 x, w^2 y, w^2)``; 0 unused.

    Coordinates where the weight is 0 may be NaN (they are zeroed first); weights must be finite.
    """
    out = np.empty((w.shape[0], 4) + w.shape[1:])
    w2 = w * w
    unused = ~(w > 0)
    if unused.any() and not (np.isfinite(x[unused]).all() and np.isfinite(y[unused]).all()):
        x, y = np.where(unused, 0.0, x), np.where(unused, 0.0, y)
    np.multiply(w2, x, out=out[:, 1])
    np.multiply(w2, y, out=out[:, 2])
    out[:, 0] = out[:, 1] * x + out[:, 2] * y
    out[:, 3] = w2
    return out


def _solve_rows(G: np.ndarray) -> np.ndarray:
    """(9, ...) normal-equation entries -> (3, ...) solution; NaN where the system is singular."""
    m00, m01, m02, m11, m12, m22, v0, v1, v2 = G
    # closed-form inverse of the symmetric 3x3 (adjugate / determinant)
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    c11 = m00 * m22 - m02 * m02
    c12 = m01 * m02 - m00 * m12
    c22 = m00 * m11 - m01 * m01
    det = m00 * c00 + m01 * c01 + m02 * c02
    scale = np.maximum(np.abs(m00) + np.abs(m11) + np.abs(m22), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ok = np.abs(det) > 1e-12 * scale**3
        inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), np.nan)
    X = np.empty((3,) + G.shape[1:])
    np.multiply(c00 * v0 + c01 * v1 + c02 * v2, inv_det, out=X[0])
    np.multiply(c01 * v0 + c11 * v1 + c12 * v2, inv_det, out=X[1])
    np.multiply(c02 * v0 + c12 * v1 + c22 * v2, inv_det, out=X[2])
    return X


def normal_equations(xy: np.ndarray, weights: np.ndarray, extrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted DLT normal equations ``M X = v`` of points seen by C views (views first).

    ``M = sum_c w_c^2 A_c^T A_c`` and ``v = sum_c w_c^2 A_c^T b_c``, where ``A_c X - b_c`` (the rows ``x P3 - P1``,
    ``y P3 - P2``) is the point's lateral offset from view c's ray at its depth. :func:`triangulate_linear` solves
    them; the refinement adds its shape prior to them first.

    Args:
        xy: (C, ..., 2) undistorted normalised coordinates; entries with zero weight are ignored (may be NaN).
        weights: (C, ...) finite non-negative weights (0 = view not used).
        extrinsics: (C, 3, 4) ``[R | t]`` per view, world millimetres.

    Returns:
        ``M`` (..., 3, 3) symmetric and ``v`` (..., 3).
    """
    C = extrinsics.shape[0]
    if weights.shape[0] != C or xy.shape != weights.shape + (2,) or extrinsics.shape != (C, 3, 4):
        raise ValueError(f"expected xy (C, ..., 2), weights (C, ...), extrinsics (C, 3, 4); got {xy.shape}, "
                         f"{weights.shape}, {extrinsics.shape}")
    lead = weights.shape[1:]
    coef = _coefficients(xy[..., 0].reshape(C, -1), xy[..., 1].reshape(C, -1),
                         np.asarray(weights, dtype=np.float64).reshape(C, -1))  # (C, 4, N)
    G = _normal_basis(extrinsics).reshape(4 * C, 9).T @ coef.reshape(4 * C, -1)  # (9, N)
    m00, m01, m02, m11, m12, m22, v0, v1, v2 = G
    M = np.stack([m00, m01, m02, m01, m11, m12, m02, m12, m22], -1).reshape(lead + (3, 3))
    v = np.stack([v0, v1, v2], -1).reshape(lead + (3,))
    return M, v


def reprojection_residuals(X: np.ndarray, xy: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Distance between observed and reprojected undistorted normalised coordinates, views first.

    Args:
        X: (..., 3) world millimetres.
        xy: (C, ..., 2) observed undistorted normalised coordinates.
        extrinsics: (C, 3, 4).

    Returns:
        (C, ...) residuals in normalised units (times a focal length: approximate pixels); NaN where a view has no
        observation or the point is behind the camera.
    """
    Xc = np.einsum("cij,...j->c...i", extrinsics[:, :, :3], X)  # (C, ..., 3)
    Xc = Xc + extrinsics[:, :, 3].reshape((extrinsics.shape[0],) + (1,) * (X.ndim - 1) + (3,))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(Xc[..., 2] > 1e-6, Xc[..., 2], np.nan)
        d = Xc[..., :2] / z[..., None] - xy
    return np.sqrt((d * d).sum(-1))


def triangulate_linear(xy: np.ndarray, weights: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Weighted linear triangulation of points seen by C views (views first).

    Args:
        xy: (C, ..., 2) undistorted normalised image coordinates; entries with zero weight are ignored (may be NaN).
        weights: (C, ...) non-negative weights (confidence; 0 = view not used).
        extrinsics: (C, 3, 4) ``[R | t]`` per view, world millimetres.

    Returns:
        (..., 3) world millimetres; NaN where the system is singular (fewer than two usable views).
    """
    C = extrinsics.shape[0]
    if weights.shape[:1] != (C,) or xy.shape != weights.shape + (2,) or extrinsics.shape != (C, 3, 4):
        raise ValueError(
            f"expected xy (C, ..., 2), weights (C, ...), extrinsics (C, 3, 4); got {xy.shape}, {weights.shape}, "
            f"{extrinsics.shape}"
        )
    lead = weights.shape[1:]
    coef = _coefficients(xy[..., 0].reshape(C, -1), xy[..., 1].reshape(C, -1),
                         np.asarray(weights, dtype=np.float64).reshape(C, -1))  # (C, 4, N)
    X = _solve_rows(_normal_basis(extrinsics).reshape(4 * C, 9).T @ coef.reshape(4 * C, -1))  # (3, N)
    return X.T.reshape(lead + (3,))


@dataclass(frozen=True)
class Triangulation:
    """Result of :func:`triangulate` for points of any leading shape ``...`` (e.g. frames x keypoints).

    Attributes:
        points: (..., 3) world millimetres, NaN where not reconstructed.
        views: (...) uint16 bitmask of the views used (bit c = view c; 0 where not reconstructed).
        num_views: (...) uint8 number of views used.
        reprojection_error: (...) mean reprojection error in pixels over the views used (with lens distortion),
            NaN where not reconstructed.
        rejected: (...) uint8 number of candidate views dropped as outliers.
    """

    points: np.ndarray
    views: np.ndarray
    num_views: np.ndarray
    reprojection_error: np.ndarray
    rejected: np.ndarray


def _bits(members: np.ndarray) -> np.ndarray:
    """View-major (C, ...) bool -> (...) bitmask (uint8 for up to 8 views, else uint16)."""
    dtype = np.uint8 if members.shape[0] <= 8 else np.uint16
    out = np.zeros(members.shape[1:], dtype=dtype)
    for c in range(members.shape[0]):
        out |= members[c].astype(dtype) << dtype(c)
    return out


def _count(members: np.ndarray) -> np.ndarray:
    """View-major (C, ...) bool -> (...) uint8 number of members (a sum of rows: much faster than ``sum(0)``)."""
    return members.view(np.uint8).sum(0, dtype=np.uint8)


class _Views:
    """A block of n points seen by C views, views first (every per-view array is (C, n), contiguous per view).

    Built from (C, n, 2) pixels, (C, n) scores and (C, n) thresholds in pixels.

    Attributes:
        xd, yd: distorted normalised coordinates (the pixels through the inverse intrinsics); x, y: undistorted
        normalised coordinates; w: weights (0 = not a candidate); cand: candidate views (finite and confident);
        thr: agreement threshold in pixels (may be a broadcast view); coef: (C, 4, n) each view's normal-equation
        coefficients (see :func:`_normal_basis`).
    """

    def __init__(self, rig: Rig, uv: np.ndarray, score: np.ndarray, thr: np.ndarray, min_score: float,
                 undistort_iterations: int) -> None:
        self.rig = rig
        extr = np.stack([cam.extrinsic for cam in rig])  # (C, 3, 4)
        self.R, self.t = extr[:, :, :3], extr[:, :, 3]
        self.centers = np.stack([cam.center for cam in rig])  # (C, 3)
        self.focal = np.array([0.5 * (cam.K[0, 0] + cam.K[1, 1]) for cam in rig])  # (C,) px per normalised unit
        self.basis = _normal_basis(extr)  # (C, 4, 9)
        self.C = len(rig)
        self._flat_basis = np.ascontiguousarray(self.basis.reshape(4 * self.C, 9).T)  # (9, 4C)
        self._pairs = _pair_order(rig)
        self._pair_array = np.asarray(self._pairs, dtype=np.int64).reshape(-1, 2)
        self._scale = None
        kernels = _kernels()
        self.compiled = kernels.available()
        if self.compiled:  # the cameras as the kernels take them
            self.intrinsics = np.array([[c.K[0, 0], c.K[0, 1], c.K[0, 2], c.K[1, 1], c.K[1, 2]] for c in rig])
            self.dist = np.array([np.asarray(c.dist, dtype=np.float64) for c in rig]).reshape(self.C, 5)
            self.model = np.array([kernels.MODEL_CODES[c.distortion_model] for c in rig], dtype=np.int8)
        if uv is None:
            return
        uv = np.asarray(uv, dtype=np.float64)  # (C, n, 2)
        u, v = uv[..., 0], uv[..., 1]  # (C, n) views, read once each
        sc = np.asarray(score, dtype=np.float64)  # (C, n)
        if self.compiled:
            shape = sc.shape
            self.xd, self.yd, self.x, self.y, self.w = (np.empty(shape) for _ in range(5))
            self.cand = np.empty(shape, dtype=bool)
            self.coef = np.empty((shape[0], 4) + shape[1:])
            kernels.prepare_views(u, v, sc, self.intrinsics, self.dist, self.model, float(min_score),
                                  int(undistort_iterations), self.xd, self.yd, self.x, self.y, self.w, self.cand,
                                  self.coef)
            self.thr = np.broadcast_to(thr, shape)
            return
        with np.errstate(invalid="ignore"):
            self.cand = np.isfinite(u) & np.isfinite(v) & (sc >= min_score)
        self.w = np.where(self.cand, sc, 0.0)
        shape = self.cand.shape
        self.xd, self.yd, self.x, self.y = (np.empty(shape) for _ in range(4))
        with np.errstate(invalid="ignore", divide="ignore"):
            for c, cam in enumerate(rig):
                self.xd[c], self.yd[c] = cam.pixels_to_normalized_uv(u[c], v[c])
                self.x[c], self.y[c] = undistort_xy(self.xd[c], self.yd[c], cam.dist, cam.distortion_model,
                                                    undistort_iterations)
        self.thr = np.broadcast_to(thr, shape)
        if not self.cand.all():  # non-candidates take no part: zero coordinates keep every sum finite
            self.x[~self.cand] = 0.0
            self.y[~self.cand] = 0.0
        self.coef = _coefficients(self.x, self.y, self.w)  # (C, 4, n)

    @property
    def n(self) -> int:
        return self.cand.shape[1]

    @property
    def scale(self) -> np.ndarray:
        """(C, n) pixels per normalised unit over the threshold: a normalised residual times this is ``relative``."""
        if self._scale is None:
            self._scale = self.focal[:, None] / self.thr
        return self._scale

    def take(self, idx: np.ndarray) -> _Views:
        """The same views for the points ``idx`` only (what the robust rule reads: no pixels, no weights)."""
        sub = _Views.__new__(_Views)
        sub.__dict__.update(self.__dict__)
        for name in ("xd", "yd", "w"):
            sub.__dict__.pop(name, None)
        for name in ("x", "y", "cand", "thr"):
            setattr(sub, name, getattr(self, name)[:, idx])
        sub._scale = None if self._scale is None else self._scale[:, idx]
        sub.coef = self.coef[:, :, idx]
        return sub

    def solve(self, members: np.ndarray | None = None) -> np.ndarray:
        """(C, n) bool views (None: every candidate) -> (3, n) points, NaN where singular."""
        coef = self.coef if members is None else self.coef * members[:, None, :]
        return _solve_rows(self._flat_basis @ coef.reshape(4 * self.C, -1))

    def shares(self) -> np.ndarray:
        """(C, 9, n): each view's part of the normal equations (0 for non-candidates)."""
        return np.stack([self.basis[c].T @ self.coef[c] for c in range(self.C)])

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(3, ...) points -> undistorted normalised projections ``xn``, ``yn`` and depths ``zc``, each (C, ...)."""
        xn, yn, zc = (np.empty((self.C,) + X.shape[1:]) for _ in range(3))
        for c in range(self.C):
            _project(self.R[c], self.t[c], X, out=(xn[c], yn[c], zc[c]))
        return xn, yn, zc

    def relative(self, X: np.ndarray, proj: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(3, ..., n) points -> (C, ..., n) residual in pixels over the threshold (NaN where not observed).

        ``proj`` is :meth:`project` of ``X`` where the caller has it already.
        """
        xn, yn, zc = self.project(X) if proj is None else proj
        out = np.empty((self.C,) + X.shape[1:])
        extra = (1,) * (X.ndim - 2)
        scale = self.scale
        for c in range(self.C):
            dx = xn[c] - self.x[c].reshape(extra + (-1,))
            dy = yn[c] - self.y[c].reshape(extra + (-1,))
            r = np.sqrt(dx * dx + dy * dy)
            r *= scale[c].reshape(extra + (-1,))
            np.copyto(out[c], np.where(zc[c] > 1e-6, r, np.nan))  # behind the camera: NaN
        return out

    def rays_ok(self, X: np.ndarray, members: np.ndarray, min_angle_deg: float) -> np.ndarray:
        """(3, ...) points, (C, ...) views -> (...) bool: two rays cross at an angle in [a, 180 - a] degrees.

        Pairs of views are tried in :func:`_pair_order`, each only on the points no earlier pair has settled.
        """
        shape = X.shape[1:]
        X, members = X.reshape(3, -1), members.reshape(self.C, -1)  # (3, m), (C, m)
        s2_min = max(np.sin(np.radians(min_angle_deg)) ** 2, 1e-18)
        ok = np.zeros(X.shape[1], dtype=bool)
        left = None  # indices of the points not settled yet (None: all)
        for a, b in self._pairs:
            P = X if left is None else X[:, left]
            ca, cb = self.centers[a], self.centers[b]
            ax, ay, az = P[0] - ca[0], P[1] - ca[1], P[2] - ca[2]  # rays from both centres to the point
            bx, by, bz = P[0] - cb[0], P[1] - cb[1], P[2] - cb[2]
            dot = ax * bx + ay * by + az * bz
            nn = (ax * ax + ay * ay + az * az) * (bx * bx + by * by + bz * bz)
            # sin^2 = 1 - cos^2 >= s2_min, without roots or divisions
            good = nn - dot * dot >= s2_min * nn
            if left is None:
                good &= members[a] & members[b]
                ok |= good
                left = np.flatnonzero(~good)
            else:
                good &= members[a, left] & members[b, left]
                ok[left[good]] = True
                left = left[~good]
            if not left.size:
                break
        return ok.reshape(shape)


def _min_sin2(min_angle_deg: float) -> float:
    """The squared sine two rays' angle must reach (see :meth:`_Views.rays_ok`)."""
    return max(np.sin(np.radians(min_angle_deg)) ** 2, 1e-18)


def _project(R: np.ndarray, t: np.ndarray, X: np.ndarray, out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(3, ...) world mm through one view's ``R``, ``t`` -> undistorted normalised ``xn``, ``yn`` and depth ``zc``.

    Written out: a (3, 3) matrix product is several times slower for so small an inner dimension.
    """
    xn, yn, zc = (np.empty(X.shape[1:]) for _ in range(3)) if out is None else out
    np.add(R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2], t[2], out=zc)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / zc
    np.multiply(R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t[0], inv, out=xn)
    np.multiply(R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t[1], inv, out=yn)
    return xn, yn, zc


def _pair_order(rig: Rig) -> list[tuple[int, int]]:
    """Every pair of views, those whose optical axes are closest to perpendicular first.

    :meth:`_Views.rays_ok` needs one pair whose rays cross well; such pairs settle most points at once.
    """
    cos = np.abs(np.cos(np.radians(rig.axis_angles_deg())))  # (C, C)
    return sorted(itertools.combinations(range(len(rig)), 2), key=lambda ab: (cos[ab], ab))


def subset_table(num_views: int, valid_sets: np.ndarray) -> np.ndarray:
    """(S, C) bool: every view set allowed by ``valid_sets`` (indexed by bitmask), largest sets first."""
    masks = [m for m in range(1, 2**num_views) if valid_sets[m]]
    masks.sort(key=lambda m: (-bin(m).count("1"), m))
    return bits_to_mask(np.asarray(masks, dtype=np.int64), num_views)


def _evaluate_sets(vw: _Views, subsets: np.ndarray, min_ray_angle_deg: float):
    """Solve every set for every point of ``vw``.

    Returns:
        X (3, S, n); members (C, S, n) bool; rel (C, S, n) relative residuals; usable (S, n) bool (every view of
        the set is a candidate, the system is regular and the rays are conditioned).
    """
    C, n = vw.cand.shape
    S = len(subsets)
    sh = vw.shares().reshape(C, 9 * n)  # (C, 9n)
    G = (subsets.astype(np.float64) @ sh).reshape(S, 9, n).transpose(1, 0, 2)  # (9, S, n)
    X = _solve_rows(G)  # (3, S, n)
    members = subsets.T[:, :, None] & vw.cand[:, None, :]  # (C, S, n)
    complete = ~(subsets.T[:, :, None] & ~vw.cand[:, None, :]).any(0)  # (S, n)
    rel = vw.relative(X)
    usable = complete & np.isfinite(X[0]) & vw.rays_ok(X, members, min_ray_angle_deg)
    return X, members, rel, usable


def _largest_agreeing(vw: _Views, subsets: np.ndarray, min_ray_angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The largest set whose views all agree, then the lowest mean squared relative residual.

    Returns:
        (C, n) members and (3, n) points (NaN where no two views agree).
    """
    X, members, rel, usable = _evaluate_sets(vw, subsets, min_ray_angle_deg)
    with np.errstate(invalid="ignore"):
        worst = np.where(members, rel, 0.0).max(0)  # (S, n)
        size = subsets.sum(1)[:, None]  # (S, 1)
        cost = np.where(members, rel * rel, 0.0).sum(0) / size
        key = np.where(usable & (worst <= 1.0), size * 1e6 - np.minimum(cost, 1e5), -np.inf)
    best = key.argmax(0)  # (n,)
    r = np.arange(vw.n)
    found = np.isfinite(key[best, r])
    return members[:, best, r] & found, np.where(found, X[:, best, r], np.nan)


def _leave_one_out(vw: _Views, valid_sets: np.ndarray, min_ray_angle_deg: float,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best agreeing set of all candidates but one: (C, n) members, (3, n) points, (n,) found."""
    C, n = vw.cand.shape
    sh = vw.shares()  # (C, 9, n)
    X = _solve_rows(sh.sum(0)[:, None, :] - sh.transpose(1, 0, 2))  # (3, C, n): set k leaves view k out
    members = vw.cand[:, None, :] & ~np.eye(C, dtype=bool)[:, :, None]  # (C views, C sets, n)
    rel = vw.relative(X)  # (C, C, n)
    with np.errstate(invalid="ignore"):
        worst = np.where(members, rel, 0.0).max(0)  # (C sets, n)
        agree = vw.cand & (worst <= 1.0) & valid_sets[_bits(members)] & np.isfinite(X[0])
        agree &= vw.rays_ok(X, members, min_ray_angle_deg)
        cost = np.where(members, rel * rel, 0.0).sum(0)
    best = np.where(agree, cost, np.inf).argmin(0)  # (n,)
    r = np.arange(n)
    found = agree[best, r]
    return members[:, best, r] & found, np.where(found, X[:, best, r], np.nan), found


def _drop_worst(vw: _Views, used: np.ndarray, valid_sets: np.ndarray, min_ray_angle_deg: float,
                ) -> tuple[np.ndarray, np.ndarray]:
    """For many views: drop the worst view until the rest agree; (C, n) members, (3, n) points."""
    used = used.copy()
    X = vw.solve(used)
    for _ in range(vw.C - 2):
        rel = np.where(used, vw.relative(X), -np.inf)  # (C, n)
        bad = (rel > 1.0).any(0) & (_count(used) > 2)
        if not bad.any():
            break
        used[rel.argmax(0)[bad], np.flatnonzero(bad)] = False
        X[:, bad] = vw.take(np.flatnonzero(bad)).solve(used[:, bad])
    with np.errstate(invalid="ignore"):
        ok = ~(used & (vw.relative(X) > 1.0)).any(0) & valid_sets[_bits(used)] & np.isfinite(X[0])
    ok &= vw.rays_ok(X, used, min_ray_angle_deg)
    return used & ok, np.where(ok, X, np.nan)


def triangulate(
    uv: np.ndarray,
    score: np.ndarray,
    rig: Rig,
    *,
    min_score: float = 0.3,
    opposing_angle_deg: float = 140.0,
    min_ray_angle_deg: float = 10.0,
    robust: bool = True,
    outlier_threshold_px: float | np.ndarray = 15.0,
    max_exhaustive_views: int = 6,
    undistort_iterations: int = 5,
    block_size: int = 65536,
    workers: int | None = None,
) -> Triangulation:
    """Triangulate keypoints seen by the rig's C views (the rule is described in the module docstring).

    A point is reconstructed from the views whose detection is finite and scores at least ``min_score``, only if
    at least two of them remain and they are not all pairwise opposing (optical axes more than
    ``opposing_angle_deg`` apart); with ``robust``, also only if two of the rays used cross at the point at an
    angle of at least ``min_ray_angle_deg`` (and at most 180 degrees minus it).

    Args:
        uv: (C, ..., 2) detected keypoints in pixels (distorted, as in the image), views first as in the detect
            artifact (e.g. (C, T, J, 2)), NaN where missing.
        score: (C, ...) detection confidence in [0, 1], NaN or 0 where missing.
        rig: the C calibrated cameras, in the order of the view axis.
        min_score: views below this confidence are not used.
        opposing_angle_deg: axis angle above which two cameras count as opposing.
        min_ray_angle_deg: per-point depth conditioning (see above; plain DLT stays plain).
        robust: keep only the largest set of views that agree (see the module docstring).
        outlier_threshold_px: residual in pixels up to which a view agrees: a number, an array of the points'
            shape ``(...)`` (per point), or one broadcastable to ``(C, ...)`` (per view and point, e.g. (C, T, 1) for
            a share of the person's size in each image).
        max_exhaustive_views: rigs with at most this many views try every subset; larger ones drop the worst view
            until the rest agree.
        undistort_iterations: fixed-point iterations of the undistortion.
        block_size: points processed at once (the result does not depend on it beyond rounding).
        workers: threads sharing the blocks (None: the CPUs this process may use; numpy releases the GIL, so
            large inputs use every core; inputs of one block stay on the calling thread).

    Returns:
        A :class:`Triangulation` with the points' leading shape ``(...)``.
    """
    C, lead = _check_shapes(uv, score, rig)
    N = int(np.prod(lead, dtype=np.int64))
    uv, score = uv.reshape(C, N, 2), score.reshape(C, N)
    thr = _threshold_array(outlier_threshold_px, C, lead).reshape(C, N)
    valid_sets = valid_view_sets(rig.opposing(opposing_angle_deg))  # (2**C,)
    subsets = subset_table(C, valid_sets) if C <= max_exhaustive_views else None
    out = _empty_result(N)

    def one_block(sl: slice) -> None:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN marks what is missing
            vw = _Views(rig, uv[:, sl], score[:, sl], thr[:, sl], min_score, undistort_iterations)
            _robust_block(out, sl, vw, robust, valid_sets, subsets, min_ray_angle_deg)

    _run_blocks(one_block, N, block_size, workers)
    return _shaped(out, lead)


def _run_blocks(fn, n: int, block_size: int, workers: int | None) -> None:
    """Call ``fn(slice)`` on consecutive blocks of ``n`` points, on up to ``workers`` threads."""
    blocks = [slice(s, min(s + block_size, n)) for s in range(0, n, block_size)]
    workers = min(usable_cpus() if workers is None else max(1, workers), len(blocks))
    if workers <= 1:
        for sl in blocks:
            fn(sl)
        return
    # one BLAS thread per worker: the threads already fill the cores
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(fn, sl) for sl in blocks]:
            f.result()


def _robust_block(out: Triangulation, sl: slice, vw: _Views, robust: bool, valid_sets: np.ndarray,
                  subsets: np.ndarray | None, min_ray_angle_deg: float) -> None:
    """:func:`triangulate` on one block of points."""
    kernels = _kernels()
    proj = None
    if vw.compiled:
        X, valid = np.empty((3, vw.n)), np.empty(vw.n, dtype=bool)
        kernels.solve_candidates(vw.coef, vw.basis, vw.cand, valid_sets, X, valid)
        used = vw.cand & valid
        if robust:
            bad = np.empty(vw.n, dtype=bool)
            kernels.disagreeing(X, vw.x, vw.y, used, valid, vw.scale, vw.R, vw.t, vw.centers, vw._pair_array,
                                _min_sin2(min_ray_angle_deg), min_ray_angle_deg > 0, bad)
    else:
        valid = valid_sets[_bits(vw.cand)]  # (n,)
        X = vw.solve()  # (3, n)
        X[:, ~valid] = np.nan
        used = vw.cand & valid
        if robust:
            proj = vw.project(X)  # (C, n) each, kept for the reprojection errors of the points not re-solved
            bad = (used & (vw.relative(X, proj) > 1.0)).any(0)
            if min_ray_angle_deg > 0:
                bad |= valid & ~vw.rays_ok(X, used, min_ray_angle_deg)
            bad &= valid
    if robust:
        if bad.any():
            idx = np.flatnonzero(bad)
            if subsets is not None:
                # one view fewer first (the largest sets left); the rest try every subset
                if vw.compiled:
                    found = np.empty(idx.size, dtype=bool)
                    kernels.leave_one_out(idx, vw.coef, vw.basis, vw.cand, vw.x, vw.y, vw.scale, vw.R, vw.t,
                                          vw.centers, vw._pair_array, _min_sin2(min_ray_angle_deg), valid_sets, used,
                                          X, found)
                    more = ~found & (_count(vw.cand[:, idx]) > 3)
                else:
                    sub = vw.take(idx)
                    used[:, idx], X[:, idx], found = _leave_one_out(sub, valid_sets, min_ray_angle_deg)
                    more = ~found & (_count(sub.cand) > 3)
                if more.any():
                    rest = idx[more]
                    if vw.compiled:
                        kernels.largest_agreeing(rest, vw.coef, vw.basis, vw.cand, vw.x, vw.y, vw.scale, vw.R, vw.t,
                                                 vw.centers, vw._pair_array, _min_sin2(min_ray_angle_deg), subsets,
                                                 used, X)
                    else:
                        used[:, rest], X[:, rest] = _largest_agreeing(vw.take(rest), subsets, min_ray_angle_deg)
            else:
                used[:, idx], X[:, idx] = _drop_worst(vw.take(idx), used[:, idx], valid_sets, min_ray_angle_deg)
            if proj is not None:
                for whole, part in zip(proj, vw.project(X[:, idx])):
                    whole[:, idx] = part
    _finish(out, sl, vw, X, used, proj)


def _check_shapes(uv: np.ndarray, score: np.ndarray, rig: Rig) -> tuple[int, tuple[int, ...]]:
    """(C, ..., 2) pixels and (C, ...) scores for the rig's C views -> (C, the points' shape ``(...)``)."""
    C = len(rig)
    if score.ndim < 1 or uv.shape != score.shape + (2,):
        raise ValueError(f"expected uv (C, ..., 2) and score (C, ...), views first; got uv {uv.shape}, "
                         f"score {score.shape}")
    if score.shape[0] != C:
        raise ValueError(f"detections have {score.shape[0]} views (first axis of {score.shape}) but the rig "
                         f"{rig.name!r} has {C} cameras")
    if C > MAX_VIEWS:
        raise ValueError(f"at most {MAX_VIEWS} views are supported, got {C}")
    return C, score.shape[1:]


def _threshold_array(value: float | np.ndarray, C: int, lead: tuple[int, ...]) -> np.ndarray:
    """A threshold given per point ``(...)`` or per view and point (broadcastable to (C, ...)) -> (C, ...)."""
    thr = np.asarray(value, dtype=np.float64)
    if thr.ndim and thr.ndim == len(lead):
        thr = thr[None]
    try:
        full = np.broadcast_to(thr, (C,) + lead)
    except ValueError:
        raise ValueError(f"outlier_threshold_px must be a number, {lead} per point or (C, ...) = "
                         f"{(C,) + lead} per view; got {thr.shape}") from None
    if full.size and not (np.isfinite(thr).all() and (thr > 0).all()):  # checked before broadcasting: cheaper
        raise ValueError("outlier_threshold_px must be finite and positive")
    return full


def _empty_result(N: int) -> Triangulation:
    return Triangulation(
        points=np.empty((N, 3)),
        views=np.empty(N, dtype=np.uint16),
        num_views=np.empty(N, dtype=np.uint8),
        reprojection_error=np.empty(N, dtype=np.float32),
        rejected=np.empty(N, dtype=np.uint8),
    )


def _shaped(res: Triangulation, lead: tuple[int, ...]) -> Triangulation:
    """A flat result given the points' leading shape."""
    return Triangulation(points=res.points.reshape(lead + (3,)), views=res.views.reshape(lead),
                         num_views=res.num_views.reshape(lead),
                         reprojection_error=res.reprojection_error.reshape(lead), rejected=res.rejected.reshape(lead))


def _finish(out: Triangulation, sl: slice, vw: _Views, X: np.ndarray, used: np.ndarray,
            proj: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
    """Write a block's result: views used, counts and the reprojection error in real (distorted) pixels.

    ``proj`` is :meth:`_Views.project` of ``X`` where the caller has it already.
    """
    kernels = _kernels()
    if vw.compiled:
        kernels.finish(X, used, vw.cand, vw.xd, vw.yd, vw.R, vw.t, vw.intrinsics, vw.dist, vw.model,
                       out.points[sl], out.views[sl], out.num_views[sl], out.reprojection_error[sl], out.rejected[sl])
        return
    n_used = _count(used)
    ok = np.isfinite(X[0]) & (n_used >= 2)
    used = used & ok  # the errors below are summed over these only: X need not be NaN where not ok
    n_used = np.where(ok, n_used, 0)
    err_sum = np.zeros(vw.n)
    for c, cam in enumerate(vw.rig):
        xn, yn, _ = _project(vw.R[c], vw.t[c], X) if proj is None else (proj[0][c], proj[1][c], None)
        xd, yd = distort_xy(xn, yn, cam.dist, cam.distortion_model)
        xd -= vw.xd[c]
        yd -= vw.yd[c]
        K = cam.K
        du = K[0, 0] * xd + K[0, 1] * yd if K[0, 1] else K[0, 0] * xd  # K (projected - observed), in pixels
        dv = K[1, 1] * yd
        with np.errstate(invalid="ignore"):
            np.add(err_sum, np.sqrt(du * du + dv * dv), out=err_sum, where=used[c])
    points = out.points[sl]  # (n, 3), written column by column (a transposed copy is several times slower)
    for i in range(3):
        points[:, i] = X[i]
    if not ok.all():
        points[~ok] = np.nan
    out.views[sl] = _bits(used)
    out.num_views[sl] = n_used
    with np.errstate(invalid="ignore", divide="ignore"):
        out.reprojection_error[sl] = np.where(ok, err_sum / np.maximum(n_used, 1), np.nan)
    out.rejected[sl] = np.where(ok, _count(vw.cand & ~used), 0)


def view_set_hypotheses(
    uv: np.ndarray,
    score: np.ndarray,
    rig: Rig,
    *,
    threshold_px: float | np.ndarray = 15.0,
    min_score: float = 0.3,
    opposing_angle_deg: float = 140.0,
    min_ray_angle_deg: float = 10.0,
    undistort_iterations: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every allowed set of views solved for each point (for re-solving a few points under other evidence).

    Args:
        uv: (C, ..., 2) pixels, views first, NaN where missing.
        score: (C, ...) confidence.
        rig: the C cameras.
        threshold_px: agreement threshold in pixels: a number, per point ``(...)`` or per view and point (C, ...).
        min_score: as in :func:`triangulate`.
        opposing_angle_deg: as in :func:`triangulate`.
        min_ray_angle_deg: as in :func:`triangulate`.
        undistort_iterations: as in :func:`triangulate`.

    Returns:
        points (..., S, 3) world mm (NaN where unusable); members (S, C) bool, the sets (largest first; rigs with
        more than 6 views get all views and every set of all but one); worst (..., S) the largest residual of a
        member over its threshold; usable (..., S) bool (all views of the set present, conditioned).
    """
    C, lead = _check_shapes(uv, score, rig)
    N = int(np.prod(lead, dtype=np.int64))
    valid_sets = valid_view_sets(rig.opposing(opposing_angle_deg))
    if C <= 6:
        subsets = subset_table(C, valid_sets)
    else:
        subsets = np.concatenate([np.ones((1, C), dtype=bool), ~np.eye(C, dtype=bool)])
        subsets = subsets[valid_sets[_bits(subsets.T)]]
    S = len(subsets)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN marks what is missing
        vw = _Views(rig, uv.reshape(C, N, 2), score.reshape(C, N),
                    _threshold_array(threshold_px, C, lead).reshape(C, N), min_score, undistort_iterations)
        X, members, rel, usable = _evaluate_sets(vw, subsets, min_ray_angle_deg)
        worst = np.where(members, rel, 0.0).max(0)  # (S, N)
    X = np.where(usable, X, np.nan)
    return (X.transpose(2, 1, 0).reshape(lead + (S, 3)), subsets, worst.T.reshape(lead + (S,)),
            usable.T.reshape(lead + (S,)))


def triangulate_min_exclusion(
    uv: np.ndarray,
    score: np.ndarray,
    rig: Rig,
    *,
    threshold_px: float = 25.0,
    min_score: float = 0.3,
    undistort_iterations: int = 5,
    block_size: int = 65536,
    workers: int | None = None,
) -> Triangulation:
    """A Pose2Sim-style rule, for comparison: drop the fewest views until the mean reprojection error is small.

    All candidate views first; while the mean reprojection error (approximate pixels) over the views used is at
    least ``threshold_px``, every set with one view fewer is solved and the one with the lowest mean error is kept,
    as Pose2Sim's triangulation tries every combination of excluded cameras. A point whose best pair still misses
    the threshold is dropped. No depth-conditioning or opposing-camera rule.

    Args:
        uv: (C, ..., 2) detected keypoints in pixels, views first, NaN where missing.
        score: (C, ...) detection confidence; views below ``min_score`` are not used.
        rig: the C calibrated cameras (at most 10: every subset is solved).
        threshold_px: mean reprojection error the kept views must stay under.
        min_score: confidence below which a view is not used.
        undistort_iterations: fixed-point iterations of the undistortion.
        block_size: points processed at once.
        workers: threads sharing the blocks, as in :func:`triangulate`.

    Returns:
        A :class:`Triangulation` with the points' leading shape.
    """
    C, lead = _check_shapes(uv, score, rig)
    if C > 10:
        raise ValueError(f"triangulate_min_exclusion solves every subset of views; {C} views are too many")
    N = int(np.prod(lead, dtype=np.int64))
    uv, score = uv.reshape(C, N, 2), score.reshape(C, N)
    sets = np.ones(2**C, dtype=bool)
    sets[[m for m in range(2**C) if bin(m).count("1") < 2]] = False
    subsets = subset_table(C, sets)  # (S, C)
    sizes = subsets.sum(1)[:, None]
    out = _empty_result(N)

    def one_block(sl: slice) -> None:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            n = sl.stop - sl.start
            vw = _Views(rig, uv[:, sl], score[:, sl], np.ones((C, n)), min_score, undistort_iterations)  # px
            X, members, px, usable = _evaluate_sets(vw, subsets, 0.0)
            mean = np.where(members, px, 0.0).sum(0) / sizes  # (S, n)
            key = np.where(usable & (mean < threshold_px), sizes * 1e6 - np.minimum(mean, 1e5), -np.inf)
            best = key.argmax(0)
            r = np.arange(n)
            found = np.isfinite(key[best, r])
            _finish(out, sl, vw, np.where(found, X[:, best, r], np.nan), members[:, best, r] & found)

    _run_blocks(one_block, N, block_size, workers)
    return _shaped(out, lead)
