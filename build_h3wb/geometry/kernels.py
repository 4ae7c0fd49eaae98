"""Compiled per-point loops of :func:`build_h3wb.geometry.triangulation.triangulate` (numba).

The numpy formulation in :mod:`~build_h3wb.geometry.triangulation` makes one pass over memory per arithmetic
operation; the hot part of a triangulation (pixels to undistorted rays, the all-views solve, the agreement check
and the reprojection error with lens distortion) is a few hundred operations per point, so it is bound by memory
traffic. These kernels do each part in one loop over the points, with every intermediate in registers, and release
the GIL so the blocks of a large input still share the cores.

They compute the same formulas, written in the same order, as the numpy code (no fast-math, no fused
multiply-add), so pixels to rays, the agreement check and the reprojection errors are the same bit for bit; the
solve sums the normal equations in another order than the matrix product does, so points differ by rounding (about
1e-12 mm; tested). The numpy code stays the reference, and the fallback where numba is missing, cannot be
imported (a numpy release newer than numba supports) or is switched off with ``BUILD_H3WB_COMPILED=0``.

Compiled code is cached on disk (numba's ``cache=True``: next to this file, or numba's user cache where that is
read-only), so only the first call after an install pays the compilation (a few seconds).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

log = logging.getLogger(__name__)

#: Distortion model codes as the kernels take them (the order of ``distortion.DISTORTION_MODELS``).
MODEL_CODES = {"opencv": 0, "h36m": 1}

try:  # numba refuses to import beside a numpy release newer than it supports: then the numpy code runs
    import numba
except ImportError as err:  # pragma: no cover - exercised only where numba is absent
    numba = None
    _IMPORT_ERROR: str | None = f"{type(err).__name__}: {err}"
else:
    _IMPORT_ERROR = None


def available() -> bool:
    """Whether the compiled kernels are used: numba imports and ``BUILD_H3WB_COMPILED`` is not ``0``."""
    return numba is not None and os.environ.get("BUILD_H3WB_COMPILED", "1") != "0"


def unavailable_reason() -> str | None:
    """Why the kernels are not used (None when they are)."""
    if numba is None:
        return f"numba could not be imported ({_IMPORT_ERROR})"
    if os.environ.get("BUILD_H3WB_COMPILED", "1") == "0":
        return "BUILD_H3WB_COMPILED=0"
    return None


def _jit(fn):
    return numba.njit(nogil=True, cache=True, error_model="numpy")(fn) if numba is not None else fn


@_jit
def prepare_views(u, v, score, intrinsics, dist, model, min_score, iterations, xd, yd, x, y, w, cand, coef):
    """Pixels to normalised rays, per view and point (what ``_Views.__init__`` computes).

    Args:
        u: (C, n) pixel columns (float64, NaN where missing).
        v: (C, n) pixel rows.
        score: (C, n) confidence.
        intrinsics: (C, 5) ``fx, skew, cx, fy, cy``.
        dist: (C, 5) ``k1, k2, p1, p2, k3``.
        model: (C,) :data:`MODEL_CODES`.
        min_score: views below it are not candidates.
        iterations: fixed-point iterations of the undistortion.
        xd: (C, n) output: distorted normalised x.
        yd: (C, n) output: distorted normalised y.
        x: (C, n) output: undistorted normalised x (0 for non-candidates).
        y: (C, n) output: undistorted normalised y (0 for non-candidates).
        w: (C, n) output: weights (0 = not a candidate).
        cand: (C, n) bool output: candidate views (finite and confident).
        coef: (C, 4, n) output: ``(w^2 (x^2 + y^2), w^2 x, w^2 y, w^2)``.

    Returns:
        Whether every view of every point is a candidate.
    """
    C, n = u.shape
    every = True
    B = 256  # points per pass: the iteration's operands stay in the CPU cache and its loop is vectorised
    for c in range(C):
        fx, s, cx, fy, cy = intrinsics[c, 0], intrinsics[c, 1], intrinsics[c, 2], intrinsics[c, 3], intrinsics[c, 4]
        k1, k2, p1, p2, k3 = dist[c, 0], dist[c, 1], dist[c, 2], dist[c, 3], dist[c, 4]
        plain = k1 == 0.0 and k2 == 0.0 and k3 == 0.0 and p1 == 0.0 and p2 == 0.0
        h36m = model[c] == 1
        xdc, ydc, xc, yc = xd[c], yd[c], x[c], y[c]
        for s0 in range(0, n, B):
            s1 = min(s0 + B, n)
            for i in range(s0, s1):
                ny = (v[c, i] - cy) / fy
                nx = (u[c, i] - cx - s * ny) / fx
                xdc[i] = nx
                ydc[i] = ny
                xc[i] = nx
                yc[i] = ny
            if not plain:
                for _ in range(iterations):
                    if h36m:
                        for i in range(s0, s1):
                            px, py = xc[i], yc[i]
                            r2 = px * px + py * py
                            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
                            cross = radial + p1 * py + p2 * px
                            xc[i] = (xdc[i] - p2 * r2) / cross
                            yc[i] = (ydc[i] - p1 * r2) / cross
                    else:
                        for i in range(s0, s1):
                            px, py = xc[i], yc[i]
                            x2, y2 = px * px, py * py
                            r2 = x2 + y2
                            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
                            xy2 = px * py
                            xy2 += xy2
                            xc[i] = (xdc[i] - p1 * xy2 - p2 * (r2 + (x2 + x2))) / radial
                            yc[i] = (ydc[i] - p1 * (r2 + (y2 + y2)) - p2 * xy2) / radial
            for i in range(s0, s1):
                sc = score[c, i]
                ok = math.isfinite(u[c, i]) and math.isfinite(v[c, i]) and sc >= min_score
                cand[c, i] = ok
                if not ok:
                    every = False
                    xc[i] = 0.0
                    yc[i] = 0.0
                    sc = 0.0
                px, py = xc[i], yc[i]
                w[c, i] = sc
                w2 = sc * sc
                a, b = w2 * px, w2 * py
                coef[c, 0, i] = a * px + b * py
                coef[c, 1, i] = a
                coef[c, 2, i] = b
                coef[c, 3, i] = w2
    return every


@_jit
def _solve3(m00, m01, m02, m11, m12, m22, v0, v1, v2):
    """The closed-form solution of ``_solve_rows`` for one point (NaN where singular)."""
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    c11 = m00 * m22 - m02 * m02
    c12 = m01 * m02 - m00 * m12
    c22 = m00 * m11 - m01 * m01
    det = m00 * c00 + m01 * c01 + m02 * c02
    scale = max(abs(m00) + abs(m11) + abs(m22), 1e-300)
    if not abs(det) > 1e-12 * scale**3:
        return np.nan, np.nan, np.nan
    inv = 1.0 / det
    return ((c00 * v0 + c01 * v1 + c02 * v2) * inv, (c01 * v0 + c11 * v1 + c12 * v2) * inv,
            (c02 * v0 + c12 * v1 + c22 * v2) * inv)


@_jit
def solve_candidates(coef, basis, cand, valid_sets, X, valid):
    """Every point from all its candidate views (``_Views.solve()``), NaN where the set of views is not allowed.

    Args:
        coef: (C, 4, n) from :func:`prepare_views`.
        basis: (C, 4, 9) ``_normal_basis`` of the rig.
        cand: (C, n) bool candidate views.
        valid_sets: (2**C,) bool allowed view sets by bitmask.
        X: (3, n) output world mm.
        valid: (n,) bool output: the candidates form an allowed set.
    """
    C, _, n = coef.shape
    g = np.empty(9)
    for i in range(n):
        bits = 0
        for c in range(C):
            if cand[c, i]:
                bits |= 1 << c
        ok = valid_sets[bits]
        valid[i] = ok
        if not ok:
            X[0, i] = np.nan
            X[1, i] = np.nan
            X[2, i] = np.nan
            continue
        g[:] = 0.0
        for c in range(C):
            if not cand[c, i]:
                continue
            for k in range(4):
                a = coef[c, k, i]
                for j in range(9):
                    g[j] += basis[c, k, j] * a
        X[0, i], X[1, i], X[2, i] = _solve3(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8])


@_jit
def _relative(X0, X1, X2, c, xo, yo, scale, R, t):
    """Residual of view ``c`` at a point, in pixels over its threshold; NaN at or behind the camera plane."""
    zc = R[c, 2, 0] * X0 + R[c, 2, 1] * X1 + R[c, 2, 2] * X2 + t[c, 2]
    inv = 1.0 / zc
    dx = (R[c, 0, 0] * X0 + R[c, 0, 1] * X1 + R[c, 0, 2] * X2 + t[c, 0]) * inv - xo
    dy = (R[c, 1, 0] * X0 + R[c, 1, 1] * X1 + R[c, 1, 2] * X2 + t[c, 1]) * inv - yo
    r = math.sqrt(dx * dx + dy * dy) * scale
    return r if zc > 1e-6 else np.nan


@_jit
def _view_shares(coef, basis, i, share):
    """Each view's part of point ``i``'s normal equations into ``share`` (C, 9)."""
    for c in range(coef.shape[0]):
        for j in range(9):
            acc = 0.0
            for k in range(4):
                acc += basis[c, k, j] * coef[c, k, i]
            share[c, j] = acc


@_jit
def _rays_cross(X0, X1, X2, members, centers, pairs, s2_min):
    """Two member views' rays cross at the point at a conditioned angle (``_Views.rays_ok`` for one point)."""
    for p in range(pairs.shape[0]):
        a, b = pairs[p, 0], pairs[p, 1]
        if not (members[a] and members[b]):
            continue
        ax, ay, az = X0 - centers[a, 0], X1 - centers[a, 1], X2 - centers[a, 2]
        bx, by, bz = X0 - centers[b, 0], X1 - centers[b, 1], X2 - centers[b, 2]
        dot = ax * bx + ay * by + az * bz
        nn = (ax * ax + ay * ay + az * az) * (bx * bx + by * by + bz * bz)
        if nn - dot * dot >= s2_min * nn:
            return True
    return False


@_jit
def _members_cost(X0, X1, X2, members, i, x, y, scale, R, t):
    """Sum of the members' squared relative residuals at point ``i``; NaN when one of them disagrees (or is NaN)."""
    cost = 0.0
    for c in range(members.shape[0]):
        if not members[c]:
            continue
        r = _relative(X0, X1, X2, c, x[c, i], y[c, i], scale[c, i], R, t)
        if not r <= 1.0:
            return np.nan
        cost += r * r
    return cost


@_jit
def disagreeing(X, x, y, used, valid, scale, R, t, centers, pairs, s2_min, check_rays, bad):
    """The robust rule's first test (``_robust_block``): a used view disagrees, or no pair of rays is conditioned.

    Args:
        X: (3, n) points from all candidates.
        x: (C, n) undistorted normalised observations.
        y: (C, n) the same, y.
        used: (C, n) bool views used.
        valid: (n,) bool: the views used form an allowed set.
        scale: (C, n) pixels per normalised unit over the threshold.
        R: (C, 3, 3) rotations.
        t: (C, 3) translations (mm).
        centers: (C, 3) camera centres (mm).
        pairs: (P, 2) view pairs in ``_pair_order``.
        s2_min: squared sine of the smallest ray angle.
        check_rays: apply the ray test.
        bad: (n,) bool output.
    """
    C, n = x.shape
    for i in range(n):
        if not valid[i]:
            bad[i] = False
            continue
        X0, X1, X2 = X[0, i], X[1, i], X[2, i]
        b = False
        for c in range(C):
            # behind the camera the residual is NaN, which never disagrees here (as in the numpy code)
            if used[c, i] and _relative(X0, X1, X2, c, x[c, i], y[c, i], scale[c, i], R, t) > 1.0:
                b = True
                break
        if not b and check_rays:
            b = not _rays_cross(X0, X1, X2, used[:, i], centers, pairs, s2_min)
        bad[i] = b


@_jit
def finish(X, used, cand, xd, yd, R, t, intrinsics, dist, model, points, views, num_views, error, rejected):
    """Write a block's result (``_finish``): points, views used, counts, mean reprojection error in real pixels.

    Args:
        X: (3, n) points.
        used: (C, n) bool views used.
        cand: (C, n) bool candidate views.
        xd: (C, n) observed distorted normalised x.
        yd: (C, n) observed distorted normalised y.
        R: (C, 3, 3) rotations.
        t: (C, 3) translations.
        intrinsics: (C, 5) as in :func:`prepare_views`.
        dist: (C, 5) as in :func:`prepare_views`.
        model: (C,) as in :func:`prepare_views`.
        points: (n, 3) float64 output (NaN where not reconstructed).
        views: (n,) uint16 output: bitmask of the views used.
        num_views: (n,) uint8 output.
        error: (n,) float32 output: mean reprojection error in pixels.
        rejected: (n,) uint8 output: candidates not used.
    """
    C, n = used.shape
    for i in range(n):
        X0, X1, X2 = X[0, i], X[1, i], X[2, i]
        k = 0
        for c in range(C):
            if used[c, i]:
                k += 1
        ok = math.isfinite(X0) and k >= 2
        if not ok:
            points[i, 0] = np.nan
            points[i, 1] = np.nan
            points[i, 2] = np.nan
            views[i] = 0
            num_views[i] = 0
            error[i] = np.nan
            rejected[i] = 0
            continue
        points[i, 0], points[i, 1], points[i, 2] = X0, X1, X2
        total = 0.0
        bits = 0
        lost = 0
        for c in range(C):
            if not used[c, i]:
                if cand[c, i]:
                    lost += 1
                continue
            bits |= 1 << c
            zc = R[c, 2, 0] * X0 + R[c, 2, 1] * X1 + R[c, 2, 2] * X2 + t[c, 2]
            inv = 1.0 / zc
            px = (R[c, 0, 0] * X0 + R[c, 0, 1] * X1 + R[c, 0, 2] * X2 + t[c, 0]) * inv
            py = (R[c, 1, 0] * X0 + R[c, 1, 1] * X1 + R[c, 1, 2] * X2 + t[c, 1]) * inv
            k1, k2, p1, p2, k3 = dist[c, 0], dist[c, 1], dist[c, 2], dist[c, 3], dist[c, 4]
            x2, y2 = px * px, py * py
            r2 = x2 + y2
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            if model[c] == 1:
                cross = radial + p1 * py + p2 * px
                qx = px * cross + p2 * r2
                qy = py * cross + p1 * r2
            else:
                xy2 = px * py
                xy2 += xy2
                qx = px * radial + p1 * xy2 + p2 * (r2 + (x2 + x2))
                qy = py * radial + p1 * (r2 + (y2 + y2)) + p2 * xy2
            qx -= xd[c, i]
            qy -= yd[c, i]
            skew = intrinsics[c, 1]
            du = intrinsics[c, 0] * qx + skew * qy if skew != 0.0 else intrinsics[c, 0] * qx
            dv = intrinsics[c, 3] * qy
            total += math.sqrt(du * du + dv * dv)
        views[i] = bits
        num_views[i] = k
        error[i] = total / k
        rejected[i] = lost


@_jit
def leave_one_out(idx, coef, basis, cand, x, y, scale, R, t, centers, pairs, s2_min, valid_sets, used, X, found):
    """The best agreeing set of all candidates but one, for the points ``idx`` (``_leave_one_out``).

    For each point and each candidate view k, the point is solved from the other candidates; the set agrees when
    every member's residual is at most its threshold (a NaN residual, behind a camera, does not agree), the set
    is allowed and two of its rays are conditioned; of the agreeing sets the one with the lowest sum of squared
    relative residuals wins (the first on ties).

    Args:
        idx: (m,) int64 points of the block.
        coef: (C, 4, n) as in :func:`solve_candidates`.
        basis: (C, 4, 9) as in :func:`solve_candidates`.
        cand: (C, n) bool candidate views.
        x: (C, n) undistorted normalised observations.
        y: (C, n) the same, y.
        scale: (C, n) as in :func:`disagreeing`.
        R: (C, 3, 3) rotations.
        t: (C, 3) translations.
        centers: (C, 3) camera centres.
        pairs: (P, 2) view pairs.
        s2_min: squared sine of the smallest ray angle.
        valid_sets: (2**C,) bool allowed view sets by bitmask.
        used: (C, n) bool: columns ``idx`` are overwritten with the members found.
        X: (3, n) float64: columns ``idx`` are overwritten (NaN where no set agrees).
        found: (m,) bool output.
    """
    C = cand.shape[0]
    share = np.empty((C, 9))
    total = np.empty(9)
    members = np.empty(C, dtype=np.bool_)
    for q in range(idx.shape[0]):
        i = idx[q]
        _view_shares(coef, basis, i, share)
        total[:] = 0.0
        for c in range(C):
            for j in range(9):
                total[j] += share[c, j]
        best, best_cost = -1, np.inf
        bX0 = bX1 = bX2 = np.nan
        for k in range(C):
            if not cand[k, i]:
                continue
            bits = 0
            for c in range(C):
                if c != k and cand[c, i]:
                    bits |= 1 << c
            if not valid_sets[bits]:
                continue
            X0, X1, X2 = _solve3(total[0] - share[k, 0], total[1] - share[k, 1], total[2] - share[k, 2],
                                 total[3] - share[k, 3], total[4] - share[k, 4], total[5] - share[k, 5],
                                 total[6] - share[k, 6], total[7] - share[k, 7], total[8] - share[k, 8])
            if not math.isfinite(X0):
                continue
            for c in range(C):
                members[c] = c != k and cand[c, i]
            cost = _members_cost(X0, X1, X2, members, i, x, y, scale, R, t)
            if not cost < best_cost:  # NaN: a member disagrees
                continue
            if _rays_cross(X0, X1, X2, members, centers, pairs, s2_min):
                best, best_cost = k, cost
                bX0, bX1, bX2 = X0, X1, X2
        found[q] = best >= 0
        for c in range(C):
            used[c, i] = best >= 0 and c != best and cand[c, i]
        X[0, i], X[1, i], X[2, i] = bX0, bX1, bX2


@_jit
def largest_agreeing(idx, coef, basis, cand, x, y, scale, R, t, centers, pairs, s2_min, subsets, used, X):
    """The largest set of views whose members all agree, for the points ``idx`` (``_largest_agreeing``).

    The sets are tried in the order of ``subsets`` (largest first); a set is usable when all its views are
    candidates, its system is regular and two of its rays are conditioned, and it agrees when every member's
    residual is at most its threshold. The first size with an agreeing set wins, and within it the lowest mean
    squared relative residual (the first on ties).

    Args:
        idx: (m,) int64 points of the block.
        coef: (C, 4, n) as in :func:`solve_candidates`.
        basis: (C, 4, 9) as in :func:`solve_candidates`.
        cand: (C, n) bool candidate views.
        x: (C, n) undistorted normalised observations.
        y: (C, n) the same, y.
        scale: (C, n) as in :func:`disagreeing`.
        R: (C, 3, 3) rotations.
        t: (C, 3) translations.
        centers: (C, 3) camera centres.
        pairs: (P, 2) view pairs.
        s2_min: squared sine of the smallest ray angle.
        subsets: (S, C) bool the allowed sets, largest first (``subset_table``).
        used: (C, n) bool: columns ``idx`` are overwritten with the members found.
        X: (3, n) float64: columns ``idx`` are overwritten (NaN where no set agrees).
    """
    C = cand.shape[0]
    S = subsets.shape[0]
    share = np.empty((C, 9))
    g = np.empty(9)
    for q in range(idx.shape[0]):
        i = idx[q]
        _view_shares(coef, basis, i, share)
        best, best_cost, best_size = -1, np.inf, 0
        bX0 = bX1 = bX2 = np.nan
        for s in range(S):
            size = 0
            complete = True
            for c in range(C):
                if subsets[s, c]:
                    size += 1
                    if not cand[c, i]:
                        complete = False
            if best >= 0 and size < best_size:
                break  # a larger set agreed
            if not complete:
                continue
            g[:] = 0.0
            for c in range(C):
                if subsets[s, c]:
                    for j in range(9):
                        g[j] += share[c, j]
            X0, X1, X2 = _solve3(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8])
            if not math.isfinite(X0):
                continue
            cost = _members_cost(X0, X1, X2, subsets[s], i, x, y, scale, R, t) / size
            if not cost < best_cost:  # NaN: a member disagrees
                continue
            if _rays_cross(X0, X1, X2, subsets[s], centers, pairs, s2_min):
                best, best_cost, best_size = s, cost, size
                bX0, bX1, bX2 = X0, X1, X2
        for c in range(C):
            used[c, i] = best >= 0 and subsets[best, c]
        X[0, i], X[1, i], X[2, i] = bX0, bX1, bX2
