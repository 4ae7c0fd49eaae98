"""Point-set alignment: one weighted Umeyama fit (rigid or similarity), batched, NaN-aware.

Umeyama, *Least-squares estimation of transformation parameters between two point patterns*, IEEE TPAMI 13(4),
1991: the rotation from the SVD of the weighted cross-covariance with a reflection guard, the scale from the
singular values over the source variance. Used by the part models of ``refine``, the nearest-pose baseline of
``complete`` and the Procrustes-aligned metrics of the leaderboard.
"""

from __future__ import annotations

import numpy as np


def umeyama(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray, *, scale: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched weighted rigid (or similarity) alignment of ``source`` onto ``target`` (Umeyama 1991).

    Args:
        source: (B, K, 3) points.
        target: (B, K, 3) points; NaN allowed where the weight is 0.
        weights: (B, K) non-negative weights.
        scale: also estimate a scale factor.

    Returns:
        ``R`` (B, 3, 3), ``t`` (B, 3), ``s`` (B,) minimising ``sum_k w_k |s R source_k + t - target_k|^2``; NaN for
        batch entries whose weights sum to zero.
    """
    if source.ndim != 3 or source.shape[-1] != 3 or target.shape != source.shape or weights.shape != source.shape[:2]:
        raise ValueError(f"expected source and target (B, K, 3) and weights (B, K); got {source.shape}, "
                         f"{target.shape}, {weights.shape}")
    w = np.where(np.isfinite(target).all(-1), weights, 0.0)  # (B, K)
    tgt = np.where(w[..., None] > 0, target, 0.0)
    wsum = w.sum(-1)  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        ws = w / wsum[:, None]  # (B, K)
    mu_s = np.einsum("bk,bkd->bd", ws, source)  # (B, 3)
    mu_t = np.einsum("bk,bkd->bd", ws, tgt)
    S = source - mu_s[:, None]
    Y = tgt - mu_t[:, None]
    H = np.einsum("bk,bki,bkj->bij", ws, S, Y)  # (B, 3, 3) cross-covariance
    H = np.where(np.isfinite(H), H, 0.0)
    U, sig, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.einsum("bij,bjk->bik", U, Vt)))  # (B,) reflection guard
    d = np.where(d == 0, 1.0, d)
    D = np.ones((len(d), 3))
    D[:, 2] = d
    R = np.einsum("bji,bj,bkj->bik", Vt, D, U)  # V diag(D) U^T
    if scale:
        var_s = np.einsum("bk,bkd->b", ws, S * S)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = (sig * D).sum(-1) / var_s
    else:
        s = np.ones(len(d))
    t = mu_t - s[:, None] * np.einsum("bij,bj->bi", R, mu_s)
    bad = ~(wsum > 0)
    R[bad], t[bad], s[bad] = np.nan, np.nan, np.nan
    return R, t, s


def align(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *, scale: bool = False
          ) -> np.ndarray:
    """``source`` moved onto ``target`` by :func:`umeyama` (B, K, 3); weights default to 1 where both are finite."""
    if weights is None:
        weights = np.isfinite(source).all(-1) & np.isfinite(target).all(-1)
    src = np.where(np.isfinite(source), source, 0.0)
    R, t, s = umeyama(src, target, np.asarray(weights, dtype=np.float64), scale=scale)
    return s[:, None, None] * np.einsum("bij,bkj->bki", R, source) + t[:, None]
