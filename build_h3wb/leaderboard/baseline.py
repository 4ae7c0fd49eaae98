"""The residual lifting baseline on an exported build: H3WB train/test pairs in, one lifter per task, test predictions.

Shared by ``stage=lifter`` (:mod:`build_h3wb.stages.lifter`) and ``benchmarks/bench_lifter.py``. The lifters train on
``2Dto3D_train.json`` (2D and 3D keypoints of the training subjects). The 2D->3D task is tested on
``2Dto3D_test_2d.json`` / ``2Dto3D_test_3d.json``; the I2D->3D task on the masked ``I2Dto3D_test_2d.json`` (a
keypoint of confidence 0 is hidden: exactly what the file gives every method) / ``I2Dto3D_test_3d.json``, with a
lifter that saw freshly masked inputs every epoch. Cross-validation (:func:`split_fold`) trains on four folds of the
training file and tests on the fifth (:func:`build_h3wb.leaderboard.scoring.cv_fold`), I2D inputs of the held-out
fold masked with a fixed seed. The per-epoch validation error is measured on the test split for monitoring
only: the last epoch's model is kept, nothing is selected on the test set. :func:`mean_pose` (the training set's mean
root-relative pose for every sample) is the trivial reference a lifter has to beat.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from build_h3wb import skeleton
from build_h3wb.export import load_h3wb_json
from build_h3wb.leaderboard.lifter import LifterConfig, LifterStats, ResidualLifter, predict, train_lifter
from build_h3wb.leaderboard.masking import i2d_masks
from build_h3wb.leaderboard.scoring import cv_fold

log = logging.getLogger(__name__)

#: The tasks a 2D-to-3D lifter answers (RGB-to-3D needs images).
LIFTER_TASKS: tuple[str, ...] = ("2Dto3D", "I2Dto3D")
TRAIN_FILE = "2Dto3D_train.json"


@dataclass
class TestSplit:
    """One task's test split.

    Attributes:
        task: ``2Dto3D`` or ``I2Dto3D``.
        ids: (N,) int64 sample ids, ascending.
        kp2d: (N, J, 2) pixels (I2D: a hidden keypoint is 0, as the file gives it).
        kp3d: (N, J, 3) ground truth, mm, camera axes.
        masks: (N, J) bool, True = hidden from the method (I2D), or None (2D->3D).
    """

    task: str
    ids: np.ndarray
    kp2d: np.ndarray
    kp3d: np.ndarray
    masks: np.ndarray | None


@dataclass
class TaskRun:
    """A lifter trained for one task and its test predictions.

    Attributes:
        task: ``2Dto3D`` or ``I2Dto3D``.
        cfg: the lifter's settings (``i2d`` set for the task).
        model: the trained network, eval mode.
        stats: its normalisation statistics.
        history: per-epoch ``epoch``, ``lr``, ``train_mpjpe``, ``val_mpjpe`` (mm, test split), ``seconds``.
        pred: (N, J, 3) test predictions, mm, camera axes, mid-hip at the origin (rows of ``TestSplit.ids``).
        train_s: training wall time, seconds.
        predict_s: prediction wall time, seconds.
    """

    task: str
    cfg: LifterConfig
    model: ResidualLifter
    stats: LifterStats
    history: dict[str, list[float]]
    pred: np.ndarray
    train_s: float
    predict_s: float

    @property
    def num_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.model.parameters())


def check_tasks(tasks: Sequence[str]) -> list[str]:
    """The tasks as a list, with a clear error for an empty list, an unknown task or a repeated one."""
    tasks = list(tasks)
    bad = [t for t in tasks if t not in LIFTER_TASKS]
    if not tasks or bad or len(set(tasks)) != len(tasks):
        raise ValueError(f"lifter tasks {tasks}: expected one or more distinct tasks of {list(LIFTER_TASKS)}")
    return tasks


def required_files(tasks: Sequence[str]) -> list[str]:
    """Names of the exported files that training and testing ``tasks`` read."""
    names = [TRAIN_FILE]
    for task in check_tasks(tasks):
        names += [f"{task}_test_2d.json", f"{task}_test_3d.json"]
    return names


def missing_files(folder: str | os.PathLike, tasks: Sequence[str]) -> list[str]:
    """The :func:`required_files` that ``folder`` (an ``export/json`` folder) lacks."""
    return [n for n in required_files(tasks) if not (Path(folder) / n).is_file()]


def load_pair(folder: str | os.PathLike, name_2d: str, name_3d: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D keypoints from one exported file and 3D keypoints from another (or both from one), matched by id.

    Returns:
        ``ids`` (N,) int64 ascending, ``kp2d`` (N, J, 2) pixels, ``kp3d`` (N, J, 3) mm camera axes.

    Raises:
        ValueError: a file lacks the field, or the two files hold different sample ids.
    """
    folder = Path(folder)
    d2 = load_h3wb_json(folder / name_2d)
    d3 = d2 if name_3d == name_2d else load_h3wb_json(folder / name_3d)
    for d, name, key in ((d2, name_2d, "keypoints_2d"), (d3, name_3d, "keypoints_3d")):
        if d[key] is None:
            raise ValueError(f"{folder / name}: no {key!r} field")
    if not np.array_equal(d2["ids"], d3["ids"]):
        raise ValueError(f"{folder}: {name_2d} and {name_3d} hold different sample ids "
                         f"({len(d2['ids'])} vs {len(d3['ids'])})")
    return d2["ids"], d2["keypoints_2d"], d3["keypoints_3d"]


def load_train(folder: str | os.PathLike, with_ids: bool = False) -> tuple[np.ndarray, ...]:
    """The training pairs of ``<folder>/2Dto3D_train.json``: (N, J, 2) pixels and (N, J, 3) mm camera axes.

    With ``with_ids`` the (N,) int64 ids come first.
    """
    t = time.perf_counter()
    ids, kp2d, kp3d = load_pair(folder, TRAIN_FILE, TRAIN_FILE)
    log.info("lifter: loaded %d training samples from %s in %.1f s", len(kp2d), Path(folder) / TRAIN_FILE,
             time.perf_counter() - t)
    return (ids, kp2d, kp3d) if with_ids else (kp2d, kp3d)


def load_test(folder: str | os.PathLike, task: str) -> TestSplit:
    """The test split of ``task`` from an ``export/json`` folder (I2D: the masks are the keypoints of confidence 0).

    Raises:
        ValueError: a file lacks a field, the files' ids differ, or the I2D input has no confidences (an export
            from before the masked I2D input: export again).
    """
    check_tasks([task])
    folder = Path(folder)
    ids, kp2d, kp3d = load_pair(folder, f"{task}_test_2d.json", f"{task}_test_3d.json")
    masks = None
    if task == "I2Dto3D":
        confidence = load_h3wb_json(folder / f"{task}_test_2d.json")["confidence_2d"]
        if confidence is None:
            raise ValueError(f"{folder / 'I2Dto3D_test_2d.json'}: keypoints carry no 'confidence' (the masked I2D "
                             "input); export again")
        masks = confidence == 0  # (N, J) True = hidden
        log.info("lifter: I2D test input: %.1f%% of keypoints hidden (confidence 0)", 100 * masks.mean())
    return TestSplit(task=task, ids=ids, kp2d=kp2d, kp3d=kp3d, masks=masks)


def split_fold(
    ids: np.ndarray, kp2d: np.ndarray, kp3d: np.ndarray, task: str, fold: int, mask_seed: int = 0
) -> tuple[np.ndarray, np.ndarray, TestSplit]:
    """Cross-validation fold ``fold`` (1..5) of the training pairs: training arrays and the held-out split.

    Args:
        ids: (N,) int64 ids of the training file, ``0 .. N-1``.
        kp2d: (N, J, 2) pixels.
        kp3d: (N, J, 3) mm camera axes.
        task: ``2Dto3D`` or ``I2Dto3D`` (the held-out 2D then masked with ``i2d_masks(L, mask_seed)``, hidden = 0).
        fold: 1..5 (:func:`~build_h3wb.leaderboard.scoring.cv_fold`: whole poses, multiples of 4 samples).
        mask_seed: seed of the held-out I2D masks.

    Returns:
        ``train_2d`` (N - L, J, 2), ``train_3d`` (N - L, J, 3) of the other folds and the held-out :class:`TestSplit`.
    """
    check_tasks([task])
    held = cv_fold(len(ids), fold)  # (L,) ids = rows of the training file
    if not np.array_equal(ids, np.arange(len(ids))):
        raise ValueError("cross-validation needs the ids 0 .. N-1 of a training file")
    rest = np.setdiff1d(np.arange(len(ids)), held)
    masks, val_2d = None, kp2d[held]
    if task == "I2Dto3D":
        masks = i2d_masks(len(held), mask_seed)  # (L, J)
        val_2d = np.where(masks[..., None], 0.0, val_2d)
    return kp2d[rest], kp3d[rest], TestSplit(task=task, ids=ids[held], kp2d=val_2d, kp3d=kp3d[held], masks=masks)


def mean_pose(train_3d: np.ndarray) -> np.ndarray:
    """The training set's mean root-relative pose: (N, J, 3) mm -> (J, 3) mm, mid-hip at the origin."""
    train_3d = np.asarray(train_3d, dtype=np.float64)
    if train_3d.ndim != 3 or train_3d.shape[1:] != (skeleton.NUM_KEYPOINTS, 3) or len(train_3d) == 0:
        raise ValueError(f"train_3d must have shape (N, J, 3) = (N, {skeleton.NUM_KEYPOINTS}, 3) with N >= 1, "
                         f"got {train_3d.shape}")
    return (train_3d - skeleton.root(train_3d)[:, None]).mean(axis=0)


def lifter_config(
    epochs: int, batch_size: int = 256, width: int | None = None, large: bool = False, lr_decay: float | None = None,
    **more: Any,
) -> LifterConfig:
    """The lifter's settings from the few knobs the stage and the script expose.

    Args:
        epochs: training epochs.
        batch_size: samples per step.
        width: hidden width; None: 1024, or 2048 when ``large``.
        large: start from :meth:`LifterConfig.large` (an explicit ``width`` still wins).
        lr_decay: learning rate factor per epoch; None: the default.
        **more: any other :class:`LifterConfig` field (``num_blocks``, ``dropout``, ``lr``, ``weight_decay``).
    """
    overrides: dict = {"epochs": int(epochs), "batch_size": int(batch_size)}
    if width is not None:
        overrides["width"] = int(width)
    if lr_decay is not None:
        overrides["lr_decay"] = float(lr_decay)
    overrides.update(more)
    return LifterConfig.large(**overrides) if large else LifterConfig(**overrides)


def train_task(
    train_2d: np.ndarray,
    train_3d: np.ndarray,
    test: TestSplit,
    base: LifterConfig,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> TaskRun:
    """Train a lifter for ``test.task`` and predict its test split.

    Args:
        train_2d: (N, J, 2) training 2D keypoints, pixels.
        train_3d: (N, J, 3) training 3D keypoints, mm camera axes.
        test: the task's test split; its error per epoch is logged (monitoring only, the last epoch is kept).
        base: lifter settings; ``i2d`` is set from the task.
        device: torch device.
        seed: training seed.
        progress: show a progress bar over the epochs.

    Returns:
        The trained model, its statistics, history and test predictions.
    """
    cfg = dataclasses.replace(base, i2d=test.task == "I2Dto3D")
    val = (test.kp2d, test.kp3d) if test.masks is None else (test.kp2d, test.kp3d, test.masks)
    log.info("lifter %s: training on %d samples (width %d, %d blocks, %d epochs, batch %d) on %s; validation = "
             "the %d samples it is scored on, for monitoring only", test.task, len(train_2d), cfg.width,
             cfg.num_blocks, cfg.epochs, cfg.batch_size, device, len(test.ids))
    t = time.perf_counter()
    model, stats, history = train_lifter(train_2d, train_3d, cfg, device=device, seed=seed, val=val,
                                         progress=progress)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = predict(model, stats, test.kp2d, test.masks, device=device)
    predict_s = time.perf_counter() - t
    return TaskRun(task=test.task, cfg=cfg, model=model, stats=stats, history=history, pred=pred, train_s=train_s,
                   predict_s=predict_s)
