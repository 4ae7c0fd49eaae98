"""Stage ``lifter`` (optional, not part of ``all``): train and score the residual lifting baseline on the export.

``python -m build_h3wb stage=lifter`` reads ``export/json/`` and, for every task of ``lifter.tasks`` (``2Dto3D``,
``I2Dto3D``), trains a residual lifter (``build_h3wb.leaderboard.baseline``, ``build_h3wb.leaderboard.lifter``) on
``lifter.device`` and writes:

- ``lifter/<task>/model.pt``: weights, lifter config, normalisation statistics and history (``load_lifter``);
- ``lifter/<task>/learning_curve.png``: train and validation (test split, monitoring only) MPJPE per epoch;
- ``lifter/<task>/predictions.h5``: ``ids`` (N,) and ``keypoints_3d`` (N, J, 3) mm camera axes, mid-hip at the
  origin, for the task's test split (I2D: the masked input of ``I2Dto3D_test_2d.json``, confidence 0 hidden);
- ``lifter/<task>/result.json``: sizes, times, scores and the mean-pose reference; written last, it marks the task
  finished, so a rerun with the same configuration does not train it again;
- a row ``<lifter.method> (<task>)`` in ``benchmark/scores.{json,md,csv}``, scored as ``stage=benchmark`` scores a
  predictions file, and ``lifter/manifest.json``.

``lifter.cross_validation=N`` (1..5) trains on the other four folds of ``2Dto3D_train.json`` and tests on fold N
(the official ``cvN`` protocol; folds of whole poses, ``build_h3wb.leaderboard.scoring.cv_fold``), writing to
``lifter/cv<N>/<task>/``; ``-1`` runs all five folds and writes the mean and standard deviation of every metric to
``lifter/cv_summary.{json,md}``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, StageDir, atomic_path, finished_manifest, read_json, write_json
from build_h3wb.leaderboard.baseline import (
    check_tasks,
    lifter_config,
    load_test,
    load_train,
    mean_pose,
    missing_files,
    split_fold,
    train_task,
)
from build_h3wb.leaderboard.lifter import plot_learning_curve, save_lifter
from build_h3wb.leaderboard.metrics import OFFICIAL_KEYS, UNOFFICIAL_KEYS, score_all
from build_h3wb.leaderboard.scoring import NUM_FOLDS, add_scores, format_table, save_predictions, score_predictions
from build_h3wb.stages.common import build_dir

log = logging.getLogger(__name__)

_SCORE_KEYS = (*OFFICIAL_KEYS, *UNOFFICIAL_KEYS)


def run(cfg: DictConfig) -> dict:
    """Train (or reuse) one lifter per task, predict and score the test splits; returns the counts."""
    from build_h3wb.completion.train import resolve_device

    t_start = time.perf_counter()
    root = build_dir(cfg)
    export = finished_manifest(root, "export")
    lcfg = cfg.lifter
    tasks = check_tasks(lcfg.tasks)
    folder = root / "export" / "json"
    missing = missing_files(folder, tasks)
    if missing:
        raise BuildDirError(f"{folder} lacks {', '.join(missing)}; run `python -m build_h3wb stage=export "
                            f"build.dir={root}` first")
    base = lifter_config(lcfg.epochs, lcfg.batch_size, width=None if lcfg.large else lcfg.width, large=lcfg.large,
                         lr_decay=lcfg.lr_decay, num_blocks=lcfg.num_blocks, dropout=lcfg.dropout, lr=lcfg.lr,
                         weight_decay=lcfg.weight_decay)
    base_dict = {k: v for k, v in dataclasses.asdict(base).items() if k != "i2d"}  # i2d follows the task
    sd = StageDir(root, "lifter", {"lifter": base_dict, "seed": lcfg.seed}, overwrite=cfg.build.overwrite,
                  upstream={"export": export["config_hash"]})
    sd.check_compatible()
    device = resolve_device(lcfg.device)
    cv = lcfg.cross_validation
    if not -1 <= cv <= NUM_FOLDS:
        raise ValueError(f"lifter.cross_validation={cv}; choose 0 (test split), 1..{NUM_FOLDS} (one fold) or -1 (all)")
    folds = [0] if cv == 0 else list(range(1, NUM_FOLDS + 1)) if cv == -1 else [cv]
    runs = [(fold, task) for fold in folds for task in tasks]
    todo = [(fold, task) for fold, task in runs if not _task_done(sd, _run_dir(sd, fold, task))]
    train = load_train(folder, with_ids=True) if todo else None
    results: dict[str, dict] = {}
    table: dict = {}
    for fold, task in runs:
        tdir = _run_dir(sd, fold, task)
        key = f"{task}, cv{fold}" if fold else task
        if (fold, task) in todo:
            ids, kp2d, kp3d = train
            if fold:
                train_2d, train_3d, test = split_fold(ids, kp2d, kp3d, task, fold, mask_seed=lcfg.seed)
            else:
                train_2d, train_3d, test = kp2d, kp3d, load_test(folder, task)
            trained = train_task(train_2d, train_3d, test, base, device=device, seed=lcfg.seed,
                                 progress=True)  # a bar on a terminal, log lines elsewhere
            save_lifter(tdir / "model.pt", trained.model, trained.cfg, trained.stats, trained.history)
            split_name = f"fold {fold} of the training file" if fold else "test split"
            plot_learning_curve(trained.history, tdir / "learning_curve.png",
                                title=f"residual lifter {task}, width {trained.cfg.width} (validation: {split_name})")
            save_predictions(tdir / "predictions.h5", test.ids, trained.pred,
                             attrs={"config_hash": sd.hash, "config": sd.config, "task": task, "fold": fold})
            reference = score_all(np.broadcast_to(mean_pose(train_3d), test.kp3d.shape), test.kp3d)
            info = {"config_hash": sd.hash, "task": task, "fold": fold, "device": device,
                    "train_samples": len(train_2d), "test_samples": len(test.ids), "epochs": trained.cfg.epochs,
                    "params": trained.num_params, "train_seconds": trained.train_s,
                    "predict_seconds": trained.predict_s,
                    "final_train_mpjpe": trained.history["train_mpjpe"][-1] if trained.cfg.epochs else None,
                    "final_val_mpjpe": trained.history["val_mpjpe"][-1] if trained.cfg.epochs else None,
                    "mean_pose": {k: reference[k] for k in _SCORE_KEYS}}
            write_json(tdir / "result.json", info)  # last: marks the run finished
        else:
            info = read_json(tdir / "result.json")
            log.info("lifter %s: reusing the finished model in %s (same configuration)", key, tdir)
        scores = score_predictions(tdir / "predictions.h5", folder, task, cross_validation=fold)
        table = add_scores(root / "benchmark", f"{lcfg.method} ({key})", scores)
        log.info("lifter %s: whole-body MPJPE %.1f mm on %d %s samples (mean pose: %.1f mm)", key, scores["whole"],
                 scores["num_samples"], f"fold-{fold}" if fold else "test", info["mean_pose"]["whole"])
        results[key] = {**{k: info[k] for k in ("train_samples", "test_samples", "epochs", "params",
                                                "train_seconds")},
                        "fold": fold, "trained": (fold, task) in todo, "scores": {k: scores[k] for k in _SCORE_KEYS},
                        "mean_pose": info["mean_pose"]}
    counts = {"device": device, "trained": [f"{t}, cv{f}" if f else t for f, t in todo],
              "seconds": time.perf_counter() - t_start, "tasks": results}
    if cv == -1:
        counts["cv_summary"] = cv_summary(results, tasks)
        _write_cv_summary(sd.root, counts["cv_summary"], len(train[0]) if train else None)
    sd.write_manifest(counts, units=list(results))
    log.info("lifter: %s scored; benchmark table %s:\n%s", ", ".join(results), root / "benchmark" / "scores.md",
             format_table(table))
    return counts


def _run_dir(sd: StageDir, fold: int, task: str) -> Path:
    """Folder of one run: ``lifter/<task>`` (test split) or ``lifter/cv<fold>/<task>``."""
    return sd.root / task if fold == 0 else sd.root / f"cv{fold}" / task


def cv_summary(results: dict[str, dict], tasks: list[str]) -> dict[str, dict]:
    """Mean and standard deviation (population, over the folds) of every metric, per task.

    Args:
        results: run key (``"<task>, cv<N>"``) -> ``{"fold", "scores": {metric: mm}}``.
        tasks: the tasks.

    Returns:
        task -> metric -> ``{"mean", "std", "folds"}`` (mm; ``folds`` the per-fold values in fold order).
    """
    out: dict[str, dict] = {}
    for task in tasks:
        runs = sorted((r for k, r in results.items() if k.startswith(f"{task}, cv")), key=lambda r: r["fold"])
        out[task] = {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}
                     for m in _SCORE_KEYS for v in [[r["scores"][m] for r in runs]]}
    return out


def _write_cv_summary(folder: Path, summary: dict[str, dict], train_samples: int | None) -> None:
    """``cv_summary.json`` and a Markdown table ``cv_summary.md`` (mean ± std over the five folds, mm)."""
    write_json(folder / "cv_summary.json", {"train_samples": train_samples, "tasks": summary})
    lines = ["| task | " + " | ".join(_SCORE_KEYS) + " |", "|---|" + "---:|" * len(_SCORE_KEYS)]
    for task, metrics in summary.items():
        lines.append(f"| {task} | " + " | ".join(f"{metrics[m]['mean']:.1f} ± {metrics[m]['std']:.1f}"
                                                 for m in _SCORE_KEYS) + " |")
    text = ("Residual lifter, 5-fold cross-validation on the training file: mean ± std over the folds, MPJPE mm "
            "(pa_whole: not official).\n\n" + "\n".join(lines) + "\n")
    with atomic_path(folder / "cv_summary.md") as tmp:
        tmp.write_text(text)
    log.info("lifter cross-validation:\n%s", text)


def _task_done(sd: StageDir, tdir: Path) -> bool:
    """True when a run's model, predictions and result (written last) exist for the current configuration."""
    if not all((tdir / n).is_file() for n in ("model.pt", "predictions.h5", "result.json")):
        return False
    try:
        return read_json(tdir / "result.json").get("config_hash") == sd.hash
    except BuildDirError as err:
        log.warning("%s; %s will be trained again", err, tdir)
        return False
