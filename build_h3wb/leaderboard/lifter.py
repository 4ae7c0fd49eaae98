"""A simple residual 2D-to-3D lifter for the H3WB 2D->3D and I2D->3D tasks (whole body, J keypoints).

Martinez et al., "A simple yet effective baseline for 3d human pose estimation", ICCV 2017: a first linear layer to
``width``, residual blocks of (linear, batch norm, ReLU, dropout) x 2 with a skip connection, a last linear layer.

Normalisation. 2D input (N, J, 2) pixels: each sample is centred on its mid-hip (mean of the visible hips; the mean
of the visible body keypoints if both hips are hidden) and divided by a per-sample scale (RMS distance of the visible
body and feet keypoints from that centre), then standardised per coordinate with training-set mean/std. 3D target
(N, J, 3) mm in camera axes: made root-relative (mid-hip at the origin), then standardised per coordinate with
training-set mean/std. For I2D the mask (J,) bool (True = hidden) is a second input: hidden keypoints are zeroed
after normalisation; masks are drawn afresh every epoch during training (the H3WB rule of
:mod:`build_h3wb.leaderboard.masking`). The statistics travel with the model (:class:`LifterStats`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from build_h3wb import skeleton
from build_h3wb.checkpoints import load_weights_only, save_weights_only
from build_h3wb.leaderboard.masking import i2d_masks
from build_h3wb.progress import progress as progress_bar

log = logging.getLogger(__name__)

LIFTER_FORMAT = "build_h3wb.lifter/1"
_EPS = 1e-6


@dataclass(frozen=True)
class LifterConfig:
    """Network and training settings of the residual lifter (plain types only, saved with the model).

    Attributes:
        width: hidden width of the linear layers (1024; :meth:`large` gives 2048).
        num_blocks: number of residual blocks.
        dropout: dropout probability inside the blocks.
        epochs: training epochs.
        batch_size: samples per optimisation step.

    The defaults are for Python callers; they equal ``conf/lifter/default.yaml`` (tested), which the stage reads.
        lr: initial Adam learning rate.
        lr_decay: learning rate factor applied after every epoch (exponential decay).
        weight_decay: Adam weight decay.
        i2d: train for the I2D->3D task: random keypoints hidden (zeroed) and the mask given as input.
        mask_seed: seed of the numpy generator that draws the training masks (and default validation masks).
    """

    width: int = 1024
    num_blocks: int = 2
    dropout: float = 0.5
    epochs: int = 12
    batch_size: int = 256
    lr: float = 1e-3
    lr_decay: float = 0.9
    weight_decay: float = 0.0
    i2d: bool = False
    mask_seed: int = 0

    @classmethod
    def large(cls, **overrides: Any) -> LifterConfig:
        """The "large" variant (width 2048), with any other field overridden by keyword."""
        return cls(**{"width": 2048, **overrides})

    def __post_init__(self) -> None:
        if self.width < 1 or self.num_blocks < 0 or self.epochs < 0 or self.batch_size < 2:
            raise ValueError(f"invalid LifterConfig: width {self.width}, num_blocks {self.num_blocks}, "
                             f"epochs {self.epochs}, batch_size {self.batch_size} (batch norm needs >= 2)")
        if not 0.0 <= self.dropout < 1.0 or self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError(f"invalid LifterConfig: dropout {self.dropout} (in [0, 1)), lr {self.lr} (> 0), "
                             f"lr_decay {self.lr_decay} (in (0, 1])")


@dataclass
class LifterStats:
    """Training-set normalisation statistics (float32 numpy arrays).

    Attributes:
        mean_2d: (J, 2) mean of the centred, scaled 2D input.
        std_2d: (J, 2) its standard deviation.
        mean_3d: (J, 3) mean of the root-relative 3D target, mm.
        std_3d: (J, 3) its standard deviation, mm.
    """

    mean_2d: np.ndarray
    std_2d: np.ndarray
    mean_3d: np.ndarray
    std_3d: np.ndarray

    def to_dict(self) -> dict[str, list]:
        """Plain nested lists, for saving."""
        return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> LifterStats:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: np.asarray(d[f.name], dtype=np.float32) for f in dataclasses.fields(cls)})


class _Block(nn.Module):
    """(linear, batch norm, ReLU, dropout) x 2 with a skip connection."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ResidualLifter(nn.Module):
    """Normalised 2D keypoints (and the I2D mask) -> normalised root-relative 3D keypoints.

    Args:
        cfg: network settings (``width``, ``num_blocks``, ``dropout``, ``i2d``).
        num_keypoints: J.
    """

    def __init__(self, cfg: LifterConfig, num_keypoints: int = skeleton.NUM_KEYPOINTS) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_keypoints = num_keypoints
        in_dim = num_keypoints * (3 if cfg.i2d else 2)
        self.inp = nn.Sequential(nn.Linear(in_dim, cfg.width), nn.BatchNorm1d(cfg.width), nn.ReLU(),
                                 nn.Dropout(cfg.dropout))
        self.blocks = nn.Sequential(*[_Block(cfg.width, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.out = nn.Linear(cfg.width, num_keypoints * 3)

    def forward(self, x2d: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Lift a batch.

        Args:
            x2d: (B, J, 2) normalised 2D keypoints (hidden ones already zeroed).
            mask: (B, J) bool, True = hidden; required when ``cfg.i2d``, ignored otherwise.

        Returns:
            (B, J, 3) normalised root-relative 3D keypoints.
        """
        B, J = x2d.shape[0], self.num_keypoints
        x = x2d.reshape(B, J * 2)
        if self.cfg.i2d:
            if mask is None:
                raise ValueError("an I2D lifter needs the (B, J) mask as input")
            x = torch.cat([x, mask.to(x.dtype).reshape(B, J)], dim=1)  # (B, 3J)
        return self.out(self.blocks(self.inp(x))).reshape(B, J, 3)


# ----------------------------------------------------------------------------------------------------------------
# Normalisation (plain functions on arrays)
# ----------------------------------------------------------------------------------------------------------------


def _check_2d(kp2d: np.ndarray, name: str = "kp2d") -> np.ndarray:
    kp2d = np.asarray(kp2d, dtype=np.float64)
    J = skeleton.NUM_KEYPOINTS
    if kp2d.ndim != 3 or kp2d.shape[1:] != (J, 2) or kp2d.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, J, 2) = (N, {J}, 2) with N >= 1, got {kp2d.shape}")
    return kp2d


def _check_3d(kp3d: np.ndarray, n: int, name: str = "kp3d") -> np.ndarray:
    kp3d = np.asarray(kp3d, dtype=np.float64)
    J = skeleton.NUM_KEYPOINTS
    if kp3d.shape != (n, J, 3):
        raise ValueError(f"{name} must have shape (N, J, 3) = ({n}, {J}, 3) to match the 2D input, got {kp3d.shape}")
    if not np.isfinite(kp3d).all():
        raise ValueError(f"{name} has {int((~np.isfinite(kp3d)).sum())} non-finite values; the lifter needs "
                         "complete 3D targets")
    return kp3d


def _check_mask(mask: np.ndarray | None, n: int) -> np.ndarray:
    J = skeleton.NUM_KEYPOINTS
    if mask is None:
        return np.zeros((n, J), dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != (n, J) or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array of shape (N, J) = ({n}, {J}), got {mask.dtype} {mask.shape}")
    return mask


def centre_and_scale_2d(kp2d: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Centre each sample on its mid-hip and divide by its body scale, using visible keypoints only.

    Args:
        kp2d: (N, J, 2) pixels; values of hidden keypoints are ignored (may be NaN).
        hidden: (N, J) bool, True = hidden.

    Returns:
        (N, J, 2) centred, scaled coordinates (hidden keypoints set to 0).
    """
    vis = ~hidden  # (N, J)
    xy = np.where(vis[..., None], kp2d, 0.0)  # (N, J, 2)
    hips = [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]
    body = skeleton.REPORT_PARTS["body"]
    n_hip = vis[:, hips].sum(axis=1, keepdims=True)  # (N, 1)
    n_body = vis[:, body].sum(axis=1, keepdims=True)  # (N, 1)
    hip_c = xy[:, hips].sum(axis=1) / np.maximum(n_hip, 1)  # (N, 2)
    body_c = xy[:, body].sum(axis=1) / np.maximum(n_body, 1)  # (N, 2)
    centre = np.where(n_hip > 0, hip_c, body_c)  # (N, 2)
    d = xy[:, body] - centre[:, None]  # (N, Jb, 2)
    sq = np.where(vis[:, body, None], d**2, 0.0).sum(axis=(1, 2))  # (N,)
    scale = np.sqrt(sq / np.maximum(n_body[:, 0], 1))  # (N,) RMS distance, pixels
    scale = np.where(scale > _EPS, scale, 1.0)
    out = (xy - centre[:, None]) / scale[:, None, None]
    return np.where(vis[..., None], out, 0.0)


def root_relative_3d(kp3d: np.ndarray) -> np.ndarray:
    """(N, J, 3) mm -> (N, J, 3) mm with the mid-hip (``skeleton.root``) at the origin."""
    return kp3d - skeleton.root(kp3d)[:, None]


def fit_stats(kp2d: np.ndarray, kp3d: np.ndarray) -> LifterStats:
    """Normalisation statistics of a training set (all keypoints visible).

    Args:
        kp2d: (N, J, 2) pixels.
        kp3d: (N, J, 3) mm, camera axes.

    Returns:
        The per-coordinate mean/std of the centred, scaled 2D and of the root-relative 3D.
    """
    kp2d = _check_2d(kp2d)
    kp3d = _check_3d(kp3d, kp2d.shape[0])
    hidden = ~np.isfinite(kp2d).all(axis=-1)
    x = centre_and_scale_2d(kp2d, hidden)
    y = root_relative_3d(kp3d)
    f32 = np.float32
    return LifterStats(mean_2d=x.mean(0).astype(f32), std_2d=np.maximum(x.std(0), _EPS).astype(f32),
                       mean_3d=y.mean(0).astype(f32), std_3d=np.maximum(y.std(0), _EPS).astype(f32))


def normalise_2d(kp2d: np.ndarray, hidden: np.ndarray, stats: LifterStats) -> np.ndarray:
    """Network input: (N, J, 2) pixels -> (N, J, 2) float32 standardised coordinates, hidden keypoints zeroed."""
    x = (centre_and_scale_2d(kp2d, hidden) - stats.mean_2d) / stats.std_2d
    return np.where(hidden[..., None], 0.0, x).astype(np.float32)


def _mpjpe_rel(pred_rel: np.ndarray, gt_rel: np.ndarray) -> float:
    """Mean joint error (mm) of (N, J, 3) root-relative poses, both re-centred on the mid-hip."""
    return float(np.linalg.norm(root_relative_3d(pred_rel) - root_relative_3d(gt_rel), axis=-1).mean())


# ----------------------------------------------------------------------------------------------------------------
# Training and inference
# ----------------------------------------------------------------------------------------------------------------


def _epoch_masks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Fresh (n, J) bool I2D masks from the H3WB rule, seeded by the epoch's draw from ``rng``."""
    return i2d_masks(n, seed=int(rng.integers(2**63 - 1)))


def train_lifter(
    kp2d: np.ndarray,
    kp3d: np.ndarray,
    cfg: LifterConfig,
    device: str | torch.device = "cpu",
    seed: int = 0,
    val: tuple[np.ndarray, ...] | None = None,
    progress: bool = True,
) -> tuple[ResidualLifter, LifterStats, dict[str, list[float]]]:
    """Train a :class:`ResidualLifter` with MSE in normalised space, Adam and exponential LR decay per epoch.

    Args:
        kp2d: (N, J, 2) training 2D keypoints, pixels (complete; for I2D the masks are drawn here).
        kp3d: (N, J, 3) training 3D keypoints, mm, camera axes (root-relative or not).
        cfg: network and training settings.
        device: torch device.
        seed: seed of the weights' initialisation and of the batch order.
        val: ``(kp2d, kp3d)`` or ``(kp2d, kp3d, mask)`` validation set; for I2D without a mask, fixed masks
            ``i2d_masks(n, cfg.mask_seed)`` are used.
        progress: report the epochs (a bar on a terminal, log lines elsewhere: ``build_h3wb.progress``).

    Returns:
        ``(model, stats, history)``: the model in eval mode, the normalisation statistics, and a history with
        ``epoch``, ``lr``, ``train_mpjpe`` (mm, running over the epoch's batches in train mode), ``val_mpjpe``
        (mm, eval mode; empty without ``val``), ``seconds`` (cumulative wall time).
    """
    kp2d = _check_2d(kp2d)
    n = kp2d.shape[0]
    kp3d = _check_3d(kp3d, n)
    if n < 2:
        raise ValueError(f"need at least 2 training samples (batch norm), got {n}")
    if not np.isfinite(kp2d).all():
        raise ValueError(f"kp2d has {int((~np.isfinite(kp2d)).sum())} non-finite values; training 2D must be complete")
    val_set = None
    if val is not None:
        if len(val) not in (2, 3):
            raise ValueError(f"val must be (kp2d, kp3d) or (kp2d, kp3d, mask), got {len(val)} items")
        v2 = _check_2d(val[0], "val kp2d")
        v3 = _check_3d(val[1], v2.shape[0], "val kp3d")
        vm = val[2] if len(val) == 3 else (i2d_masks(v2.shape[0], cfg.mask_seed) if cfg.i2d else None)
        val_set = (v2, root_relative_3d(v3), vm)

    device = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, cfg.mask_seed])
    stats = fit_stats(kp2d, kp3d)
    y_rel = root_relative_3d(kp3d)
    y = torch.from_numpy(((y_rel - stats.mean_3d) / stats.std_3d).astype(np.float32))  # (N, J, 3)
    mean3 = torch.from_numpy(stats.mean_3d).to(device)
    std3 = torch.from_numpy(stats.std_3d).to(device)
    no_mask = np.zeros(kp2d.shape[:2], dtype=bool)
    x_full = torch.from_numpy(normalise_2d(kp2d, no_mask, stats))  # (N, J, 2), reused when not I2D

    model = ResidualLifter(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    history: dict[str, list[float]] = {"epoch": [], "lr": [], "train_mpjpe": [], "val_mpjpe": [], "seconds": []}
    t0 = time.perf_counter()
    bar = progress_bar(range(cfg.epochs), desc="lifter" + (" i2d" if cfg.i2d else ""), unit="epoch", enabled=progress)
    for epoch in bar:
        if cfg.i2d:
            m_np = _epoch_masks(rng, n)  # (N, J) fresh masks every epoch
            x_ep, m_ep = torch.from_numpy(normalise_2d(kp2d, m_np, stats)), torch.from_numpy(m_np)
        else:
            x_ep, m_ep = x_full, None
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        err_sum, count = 0.0, 0
        lr = opt.param_groups[0]["lr"]
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # batch norm cannot train on one sample
                continue
            xb, yb = x_ep[idx].to(device), y[idx].to(device)
            mb = m_ep[idx].to(device) if m_ep is not None else None
            out = model(xb, mb)  # (B, J, 3) normalised
            loss = torch.mean((out - yb) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                p_mm, g_mm = out * std3 + mean3, yb * std3 + mean3  # (B, J, 3) mm
                hips = [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]
                p_mm = p_mm - p_mm[:, hips].mean(dim=1, keepdim=True)
                g_mm = g_mm - g_mm[:, hips].mean(dim=1, keepdim=True)
                err_sum += float(torch.linalg.vector_norm(p_mm - g_mm, dim=-1).mean(dim=1).sum())
                count += len(idx)
        sched.step()
        history["epoch"].append(epoch + 1)
        history["lr"].append(lr)
        history["train_mpjpe"].append(err_sum / max(count, 1))
        if val_set is not None:
            pred = predict(model, stats, val_set[0], val_set[2], device=device)
            history["val_mpjpe"].append(_mpjpe_rel(pred, val_set[1]))
        history["seconds"].append(time.perf_counter() - t0)
        post = {"train": f"{history['train_mpjpe'][-1]:.1f}"}
        if history["val_mpjpe"]:
            post["val"] = f"{history['val_mpjpe'][-1]:.1f}"
        bar.set_postfix(**post)
        log.info("lifter%s epoch %d/%d: lr %.2e, train MPJPE %.1f mm, validation MPJPE %s mm (%.0f s)",
                 " i2d" if cfg.i2d else "", epoch + 1, cfg.epochs, lr, history["train_mpjpe"][-1],
                 post.get("val", "-"), history["seconds"][-1])
    model.eval()
    return model, stats, history


@torch.no_grad()
def predict(
    model: ResidualLifter,
    stats: LifterStats,
    kp2d: np.ndarray,
    mask: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
) -> np.ndarray:
    """Lift 2D keypoints with a trained lifter.

    Args:
        model: a trained :class:`ResidualLifter` (put in eval mode here).
        stats: its normalisation statistics.
        kp2d: (N, J, 2) pixels; non-finite keypoints count as hidden.
        mask: (N, J) bool, True = hidden (I2D); None = none hidden beyond the non-finite ones. A 2D->3D lifter
            (``cfg.i2d`` False) accepts no hidden keypoints.
        device: torch device.
        batch_size: samples per forward pass.

    Returns:
        (N, J, 3) float64 mm, camera axes, mid-hip at the origin.
    """
    kp2d = _check_2d(kp2d)
    n = kp2d.shape[0]
    hidden = _check_mask(mask, n) | ~np.isfinite(kp2d).all(axis=-1)
    if not model.cfg.i2d and hidden.any():
        raise ValueError(f"{int(hidden.sum())} keypoints are hidden (mask or non-finite) but the lifter was trained "
                         "for 2D->3D (cfg.i2d False); use an I2D lifter")
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.from_numpy(normalise_2d(kp2d, hidden, stats))  # (N, J, 2)
    m = torch.from_numpy(hidden)
    out = np.empty((n, skeleton.NUM_KEYPOINTS, 3), dtype=np.float32)
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        out[sl] = model(x[sl].to(device), m[sl].to(device)).cpu().numpy()
    return root_relative_3d(out.astype(np.float64) * stats.std_3d + stats.mean_3d)


# ----------------------------------------------------------------------------------------------------------------
# Saving, loading, plotting
# ----------------------------------------------------------------------------------------------------------------


def save_lifter(
    path: str | os.PathLike,
    model: ResidualLifter,
    cfg: LifterConfig,
    stats: LifterStats,
    history: dict[str, list[float]] | None = None,
) -> None:
    """Save weights, config, statistics and history in one torch file (atomic write, no pickled objects).

    Args:
        path: destination (e.g. ``lifter.pt``).
        model: the trained network.
        cfg: its config.
        stats: its normalisation statistics.
        history: its training history, or None.
    """
    save_weights_only(path, LIFTER_FORMAT, model, dataclasses.asdict(cfg), num_keypoints=model.num_keypoints,
                      stats=stats.to_dict(), history={k: [float(v) for v in vs] for k, vs in (history or {}).items()})


def load_lifter(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[ResidualLifter, LifterConfig, LifterStats, dict[str, list[float]]]:
    """Load a lifter written by :func:`save_lifter` (``torch.load(weights_only=True)``).

    Returns:
        ``(model, cfg, stats, history)``, the model in eval mode on ``device``.
    """
    payload = load_weights_only(path, LIFTER_FORMAT, "lifter")
    if payload["num_keypoints"] != skeleton.NUM_KEYPOINTS:
        raise ValueError(f"{path}: lifter is for {payload['num_keypoints']} keypoints, "
                         f"expected {skeleton.NUM_KEYPOINTS}")
    cfg = LifterConfig(**payload["config"])
    model = ResidualLifter(cfg)
    model.load_state_dict(payload["state_dict"])
    return model.to(torch.device(device)).eval(), cfg, LifterStats.from_dict(payload["stats"]), payload["history"]


def plot_learning_curve(history: dict[str, list[float]], path: str | os.PathLike, title: str = "") -> None:
    """Write a PNG of the train and validation MPJPE (mm) per epoch (atomic write).

    Args:
        history: as returned by :func:`train_lifter`.
        path: destination ``.png``.
        title: figure title.
    """
    from build_h3wb.viz.figures import new_figure, save_figure

    epochs = history.get("epoch", [])
    fig = new_figure((6, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(epochs, history.get("train_mpjpe", []), "o-", label="train (running, dropout on)")
    if history.get("val_mpjpe"):
        ax.plot(epochs, history["val_mpjpe"], "s-", label="validation")
        best = int(np.argmin(history["val_mpjpe"]))
        ax.annotate(f"{history['val_mpjpe'][best]:.1f} mm", (epochs[best], history["val_mpjpe"][best]),
                    textcoords="offset points", xytext=(0, 8), ha="center")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MPJPE, mid-hip centred (mm)")
    vals = [v for k in ("train_mpjpe", "val_mpjpe") for v in history.get(k, []) if math.isfinite(v)]
    if vals and max(vals) / max(min(vals), _EPS) > 5:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "residual lifter learning curve")
    fig.tight_layout()
    save_figure(fig, path)
