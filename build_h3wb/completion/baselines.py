"""Simple completion baselines the network must beat: nearest training pose, low-rank (PCA) model, mean pose.

All work on poses normalised like the network's input (root-centred, yaw-aligned; see
:func:`build_h3wb.completion.train.normalize_poses`), keep the observed keypoints bitwise, and leave poses whose
root (either hip) is missing unfilled.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from build_h3wb.completion.model import fit_ppca
from build_h3wb.completion.train import check_poses, fill_missing, normalize_poses

_CHUNK = 512  # query poses per distance block in the nearest-pose search


def _train_matrix(train_poses: np.ndarray) -> np.ndarray:
    """(M, J, 3) complete world poses, mm -> (M, 3J) normalised (mm units, root-centred, yaw-aligned)."""
    train_poses = check_poses(train_poses, "train_poses")
    if not np.isfinite(train_poses).all() or len(train_poses) == 0:
        raise ValueError(f"train_poses must be complete (no NaN) and non-empty, got shape {train_poses.shape}")
    return normalize_poses(train_poses, scale_mm=1.0)[0].reshape(len(train_poses), -1)


def _kabsch(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rigid fit dst ~ R src + t (Kabsch, 1976): src, dst (n, J, 3), w (n, J) -> R (n, 3, 3), t (n, 3)."""
    ws = w / w.sum(1, keepdims=True)  # (n, J)
    cs = np.einsum("nj,njk->nk", ws, src)
    cd = np.einsum("nj,njk->nk", ws, dst)
    h = np.einsum("nj,nja,njb->nab", ws, src - cs[:, None], dst - cd[:, None])  # (n, 3, 3) cross-covariance
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("nba,ncb->nac", vt, u)))  # det(V U^T)
    d = np.where(d == 0, 1.0, d)
    fix = np.ones((len(src), 3))
    fix[:, 2] = d
    r = np.einsum("nba,nb,ncb->nac", vt, fix, u)  # V diag(1, 1, d) U^T
    return r, cd - np.einsum("nab,nb->na", r, cs)


def nearest_pose_completion(train_poses: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Fill each incomplete pose from the nearest complete training pose.

    Both are root-centred and yaw-aligned; the nearest training pose minimises the squared distance over the query's
    observed keypoints, and is then rigidly fitted (rotation and translation, Kabsch) to those keypoints before its
    other keypoints fill the holes.

    Args:
        train_poses: (M, J, 3) complete poses, world mm.
        poses: (N, J, 3) world mm, NaN where missing.

    Returns:
        (N, J, 3) mm, observed keypoints as given; poses with a missing root stay unfilled.
    """
    poses = check_poses(poses)
    train = _train_matrix(train_poses)  # (M, 3J)
    train_sq = train**2

    def predict(x: np.ndarray, visible: np.ndarray) -> np.ndarray:
        n = len(x)
        q = x.reshape(n, -1)  # (n, 3J), zero where missing
        w = np.repeat(visible, 3, axis=1).astype(np.float64)  # (n, 3J)
        best = np.empty(n, dtype=np.int64)
        for b in range(0, n, _CHUNK):
            sl = slice(b, b + _CHUNK)
            d = -2.0 * q[sl] @ train.T + w[sl] @ train_sq.T  # (chunk, M); the query's own norm is constant
            best[b:b + _CHUNK] = np.argmin(d, axis=1)
        cand = train[best].reshape(x.shape)  # (n, J, 3)
        r, t = _kabsch(cand, x, visible.astype(np.float64))
        return np.einsum("nab,njb->nja", r, cand) + t[:, None]

    return fill_missing(poses, predict, scale_mm=1.0)[0]


# many small (rank x rank) solves: one BLAS thread is 3-10x faster than OpenBLAS's threads (same result to 1e-10 mm)
@threadpool_limits.wrap(limits=1, user_api="blas")
def lowrank_completion(
    train_poses: np.ndarray, poses: np.ndarray, rank: int = 40, noise_var: float | None = None
) -> np.ndarray:
    """Fill holes with a linear low-rank (PCA) model of normalised poses.

    The missing coordinates are the model's conditional mean given the observed ones: coefficients ``c`` solve the
    ridge problem ``min |B_o c - (x_o - mu_o)|^2 + noise_var * sum_k c_k^2 / var_k`` (probabilistic PCA, Tipping and
    Bishop 1999), then ``x_m = mu_m + B_m c``.

    Args:
        train_poses: (M, J, 3) complete poses, world mm.
        poses: (N, J, 3) world mm, NaN where missing.
        rank: number of principal components kept.
        noise_var: residual variance per coordinate (mm^2) that sets the ridge; None: the mean variance of the
            discarded components (the PPCA maximum-likelihood estimate).

    Returns:
        (N, J, 3) mm, observed keypoints as given; poses with a missing root stay unfilled.
    """
    poses = check_poses(poses)
    train = _train_matrix(train_poses)  # (M, D), D = 3J
    if not 0 < rank <= min(train.shape):
        raise ValueError(f"rank must be in 1..{min(train.shape)} for train_poses of shape {np.shape(train_poses)}, "
                         f"got {rank}")
    mu, basis, var, ml_noise = fit_ppca(train, rank)  # (D,), (D, r), (r,)
    noise_var = ml_noise if noise_var is None else noise_var
    prior = noise_var / np.maximum(var, 1e-12)  # (r,)
    outer = np.einsum("dk,dl->dkl", basis, basis).reshape(len(basis), rank * rank)  # (D, r*r)

    def predict(x: np.ndarray, visible: np.ndarray) -> np.ndarray:
        n = len(x)
        w = np.repeat(visible, 3, axis=1).astype(np.float64)  # (n, D)
        y = (x.reshape(n, -1) - mu) * w
        a = (w @ outer).reshape(n, rank, rank) + np.diag(prior)  # (n, r, r) = B^T diag(w) B + prior
        c = np.linalg.solve(a, (y @ basis)[..., None])[..., 0]  # (n, r)
        return (mu + c @ basis.T).reshape(x.shape)

    return fill_missing(poses, predict, scale_mm=1.0)[0]


def mean_pose_completion(train_poses: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Fill holes with the mean normalised training pose (trivial reference): (M, J, 3), (N, J, 3) -> (N, J, 3) mm."""
    poses = check_poses(poses)
    mean = _train_matrix(train_poses).mean(0).reshape(poses.shape[1:])

    def predict(x: np.ndarray, visible: np.ndarray) -> np.ndarray:
        return np.broadcast_to(mean, x.shape)

    return fill_missing(poses, predict, scale_mm=1.0)[0]
