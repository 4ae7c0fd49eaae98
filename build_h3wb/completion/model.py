"""The completion network: a linear pose prior plus a residual MLP that fills the missing keypoints of a pose.

Two stages in one module, both seeing the normalised pose with its holes (missing keypoints set to 0) and the
visibility mask:

1. **Linear prior.** A probabilistic-PCA model of normalised poses (mean, ``prior_rank`` components; Tipping and
   Bishop, "Probabilistic principal component analysis", 1999) gives the conditional mean of the missing
   coordinates given the observed ones, a small ridge solve per pose. It is fitted once, in closed form, on the
   training poses (:meth:`CompletionNet.fit_prior`) and stored as buffers. It already explains most of a whole-body
   pose: a face is nearly rigid on the head, the body is close to linear in its joints.
2. **Residual MLP** on the flattened pose: input the prior's completion, the observed coordinates and the mask;
   output a correction added to the prior's completion (the last layer starts at zero, so training starts from the
   linear model and learns only what it misses: finger articulation, the arm and neck kinematics).

Why not a transformer over keypoint tokens (the original H3WB completion model): the keypoint layout is fixed, so a
dense layer on the flattened pose sees every keypoint at once and learns any correlation (fingers with wrist and
forearm, jaw with head, one hand with the other) directly, where attention needs several rounds over one token per
keypoint; the MLP is also far cheaper: at the defaults (width 128, three blocks, 0.27 M parameters, 40 epochs;
on the default build and an independent capture, width 256 and 80 epochs fill body and hands within 0.2 mm of it,
the face 0.2-1.1 mm better (whole body 0.2-0.8 mm), in about twice the training time; width 512 loses nothing
measurable against 256 at equal epochs and a training step costs 2.3x more, ``benchmarks/bench_completion.py`` and
``bench_completion_step.py``). Why the linear prior: on its own, an MLP
of that budget stays well behind the linear model on body and face (which it must learn from scratch to
sub-centimetre precision), while with the prior it starts there. ``prior_rank = 0`` gives the plain MLP. Residual
blocks follow Martinez et al., "A simple yet effective baseline for 3d human pose estimation" (ICCV 2017), in
pre-norm form.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from build_h3wb import skeleton
from build_h3wb.completion.config import CompletionConfig


class _ResBlock(nn.Module):
    """Pre-norm residual block: x + Linear(Dropout(GELU(Linear(LayerNorm(x)))))."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W) -> (B, W)."""
        return x + self.net(x)


def fit_ppca(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Fit probabilistic PCA (Tipping and Bishop, 1999) by SVD.

    Args:
        x: (M, D) samples.
        rank: number of components, 1..min(M, D).

    Returns:
        mean (D,), basis (D, rank) orthonormal columns, variances (rank,) along them, and the residual variance per
        dimension (the mean variance of the discarded directions; its maximum-likelihood estimate).
    """
    if x.ndim != 2 or not 0 < rank <= min(x.shape):
        raise ValueError(f"expected (M, D) samples with 0 < rank <= min(M, D), got shape {x.shape} and rank {rank}")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s**2 / max(len(x) - 1, 1)
    rest = var[rank:]
    noise = float(rest.sum() / max(x.shape[1] - rank, 1)) if len(rest) else 1e-12
    return mean, vt[:rank].T.copy(), var[:rank], max(noise, 1e-12)


class CompletionNet(nn.Module):
    """Linear (PPCA) prior plus residual MLP, from a normalised pose with holes and its mask to the complete pose.

    Args:
        cfg: the configuration (only the architecture fields are used here).
    """

    def __init__(self, cfg: CompletionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        j = skeleton.NUM_KEYPOINTS
        d, r = 3 * j, cfg.prior_rank
        # Prior buffers (float64: the per-pose solve can be ill-conditioned), filled by fit_prior.
        self.register_buffer("prior_mean", torch.zeros(d, dtype=torch.float64))  # (D,)
        self.register_buffer("prior_basis", torch.zeros(d, r, dtype=torch.float64))  # (D, r)
        self.register_buffer("prior_ridge", torch.ones(r, dtype=torch.float64))  # (r,) noise / component variance
        n_in = (2 * d if r > 0 else d) + j  # [prior completion], observed coordinates, mask
        self.inp = nn.Linear(n_in, cfg.width)
        self.blocks = nn.Sequential(*[_ResBlock(cfg.width, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, d)
        if r > 0:  # start from the prior's completion
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    @torch.no_grad()
    def fit_prior(self, poses: np.ndarray) -> None:
        """Fit the linear prior on complete normalised poses (M, J, 3); a no-op when ``prior_rank`` is 0."""
        r = self.cfg.prior_rank
        if r == 0:
            return
        mean, basis, var, noise = fit_ppca(np.asarray(poses, dtype=np.float64).reshape(len(poses), -1), r)
        self.prior_mean.copy_(torch.from_numpy(mean))
        self.prior_basis.copy_(torch.from_numpy(basis))
        self.prior_ridge.copy_(torch.from_numpy(noise / np.maximum(var, 1e-12)))

    def prior_completion(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """PPCA conditional mean of every coordinate given the observed ones: x (B, J, 3), visible (B, J) -> (B, J, 3).

        Solves ``(B_o^T B_o + diag(ridge)) c = B_o^T (x_o - mean_o)`` per pose, then returns ``mean + B c``.
        """
        basis = self.prior_basis  # (D, r)
        j, r = visible.shape[1], basis.shape[1]
        per_kp = basis.view(j, 3, r)  # (J, 3, r): a keypoint's three coordinates
        outer = torch.einsum("jkr,jks->jrs", per_kp, per_kp).reshape(j, r * r)  # (J, r*r) sum_k b_jk b_jk^T
        w = visible.repeat_interleave(3, dim=1).to(basis.dtype)  # (B, D)
        y = (x.flatten(1).to(basis.dtype) - self.prior_mean) * w  # (B, D)
        # B_o^T B_o as a sum of per-keypoint outer products: (B, J) @ (J, r*r), not (B, r, D) @ (D, r)
        a = (visible.to(basis.dtype) @ outer).view(-1, r, r) + torch.diag(self.prior_ridge)  # (B, r, r)
        c = torch.cholesky_solve((y @ basis)[..., None], torch.linalg.cholesky(a))[..., 0]  # (B, r); a is SPD
        return (self.prior_mean + c @ basis.T).to(x.dtype).view(x.shape)

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Predict every keypoint.

        Args:
            x: (B, J, 3) normalised coordinates (root-centred, divided by ``scale_mm``); values at hidden keypoints
                are ignored (zeroed here).
            visible: (B, J) bool, True where the keypoint is observed.

        Returns:
            (B, J, 3) predicted normalised coordinates of all keypoints.
        """
        vis = visible.to(x.dtype)  # (B, J)
        x = x * vis[..., None]  # (B, J, 3)
        feats = [x.flatten(1), vis]
        base = None
        if self.cfg.prior_rank > 0:
            base = self.prior_completion(x, visible)  # (B, J, 3)
            feats.insert(0, base.flatten(1))
        h = self.norm(self.blocks(self.inp(torch.cat(feats, dim=1))))  # (B, W)
        out = self.out(h).view(x.shape)  # (B, J, 3)
        return out if base is None else out + base
