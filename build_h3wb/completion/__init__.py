"""Completion of the keypoints triangulation missed: a small network trained on complete poses, and baselines."""

from build_h3wb.completion.baselines import lowrank_completion, mean_pose_completion, nearest_pose_completion
from build_h3wb.completion.model import CompletionConfig, CompletionNet
from build_h3wb.completion.train import (
    complete_poses,
    load_checkpoint,
    make_masks,
    resolve_device,
    save_checkpoint,
    train_completion,
)

__all__ = [
    "CompletionConfig",
    "CompletionNet",
    "complete_poses",
    "load_checkpoint",
    "lowrank_completion",
    "make_masks",
    "mean_pose_completion",
    "nearest_pose_completion",
    "resolve_device",
    "save_checkpoint",
    "train_completion",
]
