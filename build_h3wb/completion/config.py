"""The completion network's settings: architecture, normalisation and training.

Kept apart from ``model.py`` so that the configuration schema loads without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

#: The fields that define the network and its input (the rest only shape the training): a network can be
#: fine-tuned with another training setting, never with other values of these.
ARCHITECTURE_FIELDS: tuple[str, ...] = ("width", "num_blocks", "dropout", "prior_rank", "scale_mm", "yaw_normalize")


@dataclass
class CompletionConfig:
    """Architecture, normalisation and training hyper-parameters of the completion network (plain types only).

    Attributes:
        width: hidden width of the MLP.
        num_blocks: number of residual blocks.
        dropout: dropout rate inside the residual blocks.
        prior_rank: principal components of the linear prior (0: no prior, a plain MLP).
        scale_mm: poses are divided by this after root-centring (mm per normalised unit).
        yaw_normalize: rotate each pose about the vertical (world z) so the right-to-left hip line points along +x.
        epochs: passes over the training poses (each with freshly drawn masks and augmentations); the most, with
            ``patience``.
        patience: stop when the validation error (hidden keypoints, fixed masks) has not improved for this many
            epochs and keep the weights of the best epoch (0: train all ``epochs`` and keep the last; needs
            validation poses).
        batch_size: poses per optimisation step.
        lr: peak learning rate of AdamW (linear warm-up, then cosine decay to 1% of it).
        weight_decay: AdamW weight decay.
        warmup_epochs: epochs of linear learning-rate warm-up.
        visible_loss_weight: weight of the error on the observed keypoints relative to the hidden ones.
        flip_augment: mirror half of the training poses left-right (labels swapped, x negated).
        scale_augment: poses are scaled about the root by a factor drawn uniformly in 1 +- this.
        input_noise_mm: standard deviation of Gaussian noise added to the observed input keypoints in training.
        mask_probs: mode -> probability of the training masks (see ``train.make_masks``); None: its defaults.
        real_mask_share: share of the training masks drawn from the hole patterns really met (the incomplete
            triangulated poses), when the caller provides them.
    """

    width: int = 256
    num_blocks: int = 3
    dropout: float = 0.0
    prior_rank: int = 60
    scale_mm: float = 1000.0
    yaw_normalize: bool = True
    epochs: int = 80
    patience: int = 0
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    visible_loss_weight: float = 0.1
    flip_augment: bool = True
    scale_augment: float = 0.1
    input_noise_mm: float = 0.0
    mask_probs: dict[str, float] | None = None
    real_mask_share: float = 0.5

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
