"""The residual lifting baseline on an exported build: H3WB train/test pairs in, one lifter per task, test predictions.

Shared by ``stage=lifter`` (:mod:`build_h3wb.stages.lifter`) and ``benchmarks/bench_lifter.py``. The lifters train on
``2Dto3D_train.json`` (2D and 3D keypoints of the training subjects). The 2D->3D task is tested on
``2Dto3D_test_2d.json`` / ``2Dto3D_test_3d.json``; the I2D->3D task on ``I2Dto3D_test_2d.json`` hidden with the stored
``I2Dto3D_test_masks.npz`` (row i = i-th sample in ascending id order) / ``I2Dto3D_test_3d.json``, with a lifter that
saw freshly masked inputs every epoch. The per-epoch validation error is measured on the test split for monitoring
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

import numpy as np
import torch

from build_h3wb import skeleton
from build_h3wb.export import load_h3wb_json
from build_h3wb.leaderboard.lifter import LifterConfig, LifterStats, ResidualLifter, predict, train_lifter
from build_h3wb.leaderboard.masking import load_masks

log = logging.getLogger(__name__)

#: The tasks a 2D-to-3D lifter answers (RGB-to-3D needs images).
LIFTER_TASKS: tuple[str, ...] = ("2Dto3D", "I2Dto3D")
TRAIN_FILE = "2Dto3D_train.json"
MASKS_FILE = "I2Dto3D_test_masks.npz"


@dataclass
class TestSplit:
    """One task's test split.

    Attributes:
        task: ``2Dto3D`` or ``I2Dto3D``.
        ids: (N,) int64 sample ids, ascending.
        kp2d: (N, J, 2) pixels, every keypoint present (I2D hides some with ``masks``).
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
        if task == "I2Dto3D":
            names.append(MASKS_FILE)
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


def load_train(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The training pairs of ``<folder>/2Dto3D_train.json``: (N, J, 2) pixels and (N, J, 3) mm camera axes."""
    t = time.perf_counter()
    _, kp2d, kp3d = load_pair(folder, TRAIN_FILE, TRAIN_FILE)
    log.info("lifter: loaded %d training samples from %s in %.1f s", len(kp2d), Path(folder) / TRAIN_FILE,
             time.perf_counter() - t)
    return kp2d, kp3d


def load_test(folder: str | os.PathLike, task: str) -> TestSplit:
    """The test split of ``task`` from an ``export/json`` folder (I2D: with the stored masks)."""
    check_tasks([task])
    folder = Path(folder)
    ids, kp2d, kp3d = load_pair(folder, f"{task}_test_2d.json", f"{task}_test_3d.json")
    masks = None
    if task == "I2Dto3D":
        masks, seed = load_masks(folder / MASKS_FILE)
        if masks.shape[0] != len(ids):
            raise ValueError(f"{folder / MASKS_FILE} holds {masks.shape[0]} rows for {len(ids)} samples of "
                             f"{task}_test_2d.json; export again")
        log.info("lifter: I2D test masks: seed %d, %.1f%% of keypoints hidden", seed, 100 * masks.mean())
    return TestSplit(task=task, ids=ids, kp2d=kp2d, kp3d=kp3d, masks=masks)


def mean_pose(train_3d: np.ndarray) -> np.ndarray:
    """The training set's mean root-relative pose: (N, J, 3) mm -> (J, 3) mm, mid-hip at the origin."""
    train_3d = np.asarray(train_3d, dtype=np.float64)
    if train_3d.ndim != 3 or train_3d.shape[1:] != (skeleton.NUM_KEYPOINTS, 3) or len(train_3d) == 0:
        raise ValueError(f"train_3d must have shape (N, J, 3) = (N, {skeleton.NUM_KEYPOINTS}, 3) with N >= 1, "
                         f"got {train_3d.shape}")
    return (train_3d - skeleton.root(train_3d)[:, None]).mean(axis=0)


def lifter_config(
    epochs: int, batch_size: int = 256, width: int | None = None, large: bool = False, lr_decay: float | None = None
) -> LifterConfig:
    """The lifter's settings from the few knobs the stage and the script expose.

    Args:
        epochs: training epochs.
        batch_size: samples per step.
        width: hidden width; None: 1024, or 2048 when ``large``.
        large: start from :meth:`LifterConfig.large` (an explicit ``width`` still wins).
        lr_decay: learning rate factor per epoch; None: the default.
    """
    overrides: dict = {"epochs": int(epochs), "batch_size": int(batch_size)}
    if width is not None:
        overrides["width"] = int(width)
    if lr_decay is not None:
        overrides["lr_decay"] = float(lr_decay)
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
             "the %d test samples, for monitoring only", test.task, len(train_2d), cfg.width, cfg.num_blocks,
             cfg.epochs, cfg.batch_size, device, len(test.ids))
    t = time.perf_counter()
    model, stats, history = train_lifter(train_2d, train_3d, cfg, device=device, seed=seed, val=val,
                                         progress=progress)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = predict(model, stats, test.kp2d, test.masks, device=device)
    predict_s = time.perf_counter() - t
    return TaskRun(task=test.task, cfg=cfg, model=model, stats=stats, history=history, pred=pred, train_s=train_s,
                   predict_s=predict_s)
