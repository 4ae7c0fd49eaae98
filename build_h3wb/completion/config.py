"""The completion network's settings: architecture, normalisation and training.

Kept apart from ``model.py`` so that the configuration schema loads without importing torch. The dataclass has
no values of its own: they live in ``conf/complete/default.yaml`` (``model``), which the stage composes and
:meth:`CompletionConfig.from_conf` reads for code outside a composed configuration (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: The fields that define the network and its input (the rest only shape the training): a network can be
#: fine-tuned with another training setting, never with other values of these.
ARCHITECTURE_FIELDS: tuple[str, ...] = ("width", "num_blocks", "dropout", "prior_rank", "scale_mm", "yaw_normalize")


@dataclass
class CompletionConfig:
    """Architecture, normalisation and training hyper-parameters of the completion network (plain types only).

    Every field is required; :meth:`from_conf` gives the configured values (``complete.model``).

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

    width: int
    num_blocks: int
    dropout: float
    prior_rank: int
    scale_mm: float
    yaw_normalize: bool
    epochs: int
    patience: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    visible_loss_weight: float
    flip_augment: bool
    scale_augment: float
    input_noise_mm: float
    mask_probs: dict[str, float] | None
    real_mask_share: float

    def to_dict(self) -> dict:
        """The configuration as a plain dict (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_conf(cls, **overrides: Any) -> CompletionConfig:
        """The configured values (``conf/complete/default.yaml``, ``model``) with ``overrides`` (unknown ones raise)."""
        return cls.from_dict(overrides)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompletionConfig:
        """Build from a plain dict (a checkpoint's); unknown keys raise ValueError.

        Keys ``d`` lacks (a checkpoint written before a setting existed) take the value of
        ``conf/complete/default.yaml``.
        """
        from build_h3wb.checkpoints import config_from_dict  # noqa: PLC0415 (torch, on use only)
        from build_h3wb.config import CompleteConfig, option_values  # noqa: PLC0415 (the schema imports this module)

        return config_from_dict(cls, d, defaults=option_values("complete", "default", CompleteConfig)["model"])
