"""The completion network: a residual MLP that fills the missing keypoints of a normalised whole-body pose.

Why a residual MLP on the flattened pose rather than a transformer over keypoint tokens (the original H3WB completion
model): the keypoint layout is fixed, so a dense layer on the flattened pose sees every keypoint at once and can
learn any correlation directly (fingers with the wrist and forearm, jaw with the head, one hand with the other) in
one step, where attention needs several rounds over 133 tokens. It is also much cheaper: a few dense layers of
width 1024 train in a couple of minutes on two CPU cores, and any hole pattern is handled by one network because the
visibility mask is part of the input. The inputs are the normalised coordinates with missing keypoints set to 0 and
the mask (1 = observed); the output is every keypoint's coordinates, of which the caller keeps the missing ones.
Pre-norm residual blocks (LayerNorm, Linear, GELU, Dropout, Linear) as in Martinez et al., "A simple yet effective
baseline for 3d human pose estimation" (ICCV 2017), which lifts 2D to 3D with the same kind of network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from build_h3wb import skeleton


@dataclass
class CompletionConfig:
    """Architecture, normalisation and training hyper-parameters of the completion network (plain types only).

    Attributes:
        width: hidden width of the MLP.
        num_blocks: number of residual blocks.
        dropout: dropout rate inside the residual blocks.
        scale_mm: poses are divided by this after root-centring (mm per normalised unit).
        yaw_normalize: rotate each pose about the vertical (world z) so the right-to-left hip line points along +x.
        epochs: passes over the training poses (each with freshly drawn masks and augmentations).
        batch_size: poses per optimisation step.
        lr: peak learning rate of AdamW (linear warm-up, then cosine decay to 1% of it).
        weight_decay: AdamW weight decay.
        warmup_epochs: epochs of linear learning-rate warm-up.
        visible_loss_weight: weight of the error on the observed keypoints relative to the hidden ones.
        flip_augment: mirror half of the training poses left-right (labels swapped, x negated).
        scale_augment: poses are scaled about the root by a factor drawn uniformly in 1 +- this.
        input_noise_mm: standard deviation of Gaussian noise added to the observed input keypoints in training.
        mask_probs: mode -> probability of the training masks (see ``train.make_masks``); None: its defaults.
    """

    width: int = 1024
    num_blocks: int = 3
    dropout: float = 0.1
    scale_mm: float = 1000.0
    yaw_normalize: bool = True
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    visible_loss_weight: float = 0.1
    flip_augment: bool = True
    scale_augment: float = 0.1
    input_noise_mm: float = 0.0
    mask_probs: dict[str, float] | None = None

    def to_dict(self) -> dict:
        """The configuration as a plain dict (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CompletionConfig:
        """Build from a plain dict; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CompletionConfig keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)


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


class CompletionNet(nn.Module):
    """Residual MLP from (normalised pose with holes, visibility mask) to the complete normalised pose.

    Args:
        cfg: the configuration (only the architecture fields are used here).
    """

    def __init__(self, cfg: CompletionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        j = skeleton.NUM_KEYPOINTS
        self.inp = nn.Linear(4 * j, cfg.width)  # 3 coordinates and the mask per keypoint
        self.blocks = nn.Sequential(*[_ResBlock(cfg.width, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, 3 * j)

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
        h = torch.cat([(x * vis[..., None]).flatten(1), vis], dim=1)  # (B, 4J)
        h = self.norm(self.blocks(self.inp(h)))  # (B, W)
        return self.out(h).view(x.shape)  # (B, J, 3)
