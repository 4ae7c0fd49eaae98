"""Stage ``lifter`` (optional, not part of ``all``): train and score the residual lifting baseline on the export.

``python -m build_h3wb stage=lifter`` reads ``export/json/`` and, for every task of ``lifter.tasks`` (``2Dto3D``,
``I2Dto3D``), trains a residual lifter (``build_h3wb.leaderboard.baseline``, ``build_h3wb.leaderboard.lifter``) on
``lifter.device`` and writes:

- ``lifter/<task>/model.pt``: weights, lifter config, normalisation statistics and history (``load_lifter``);
- ``lifter/<task>/learning_curve.png``: train and validation (test split, monitoring only) MPJPE per epoch;
- ``lifter/<task>/predictions.h5``: ``ids`` (N,) and ``keypoints_3d`` (N, J, 3) mm camera axes, mid-hip at the
  origin, for the task's test split (I2D inputs hidden with ``export/json/I2Dto3D_test_masks.npz``);
- ``lifter/<task>/result.json``: sizes, times, scores and the mean-pose reference; written last, it marks the task
  finished, so a rerun with the same configuration does not train it again;
- a row ``<lifter.method> (<task>)`` in ``benchmark/scores.{json,md,csv}``, scored as ``stage=benchmark`` scores a
  predictions file, and ``lifter/manifest.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, StageDir, finished_manifest, read_json, write_json
from build_h3wb.leaderboard.baseline import (
    check_tasks,
    lifter_config,
    load_test,
    load_train,
    mean_pose,
    missing_files,
    train_task,
)
from build_h3wb.leaderboard.lifter import plot_learning_curve, save_lifter
from build_h3wb.leaderboard.metrics import OFFICIAL_KEYS, UNOFFICIAL_KEYS, score_all
from build_h3wb.leaderboard.scoring import add_scores, format_table, save_predictions, score_predictions
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
    base = lifter_config(int(lcfg.epochs), int(lcfg.batch_size), width=None if lcfg.large else int(lcfg.width),
                         large=bool(lcfg.large), lr_decay=float(lcfg.lr_decay))
    base_dict = {k: v for k, v in dataclasses.asdict(base).items() if k != "i2d"}  # i2d follows the task
    sd = StageDir(root, "lifter", {"lifter": base_dict, "seed": int(lcfg.seed), "export_hash": export["config_hash"]},
                  overwrite=cfg.build.overwrite)
    sd.check_compatible()
    device = resolve_device(str(lcfg.device))

    todo = [t for t in tasks if not _task_done(sd, t)]
    train_2d, train_3d = load_train(folder) if todo else (None, None)
    results: dict[str, dict] = {}
    table: dict = {}
    for task in tasks:
        tdir = sd.root / task
        if task in todo:
            test = load_test(folder, task)
            trained = train_task(train_2d, train_3d, test, base, device=device, seed=int(lcfg.seed),
                                 progress=sys.stderr.isatty())
            save_lifter(tdir / "model.pt", trained.model, trained.cfg, trained.stats, trained.history)
            plot_learning_curve(trained.history, tdir / "learning_curve.png",
                                title=f"residual lifter {task}, width {trained.cfg.width} (validation: test split)")
            save_predictions(tdir / "predictions.h5", test.ids, trained.pred,
                             attrs={"config_hash": sd.hash, "config": sd.config, "task": task})
            reference = score_all(np.broadcast_to(mean_pose(train_3d), test.kp3d.shape), test.kp3d)
            info = {"config_hash": sd.hash, "task": task, "device": device, "train_samples": len(train_2d),
                    "test_samples": len(test.ids), "epochs": trained.cfg.epochs, "params": trained.num_params,
                    "train_seconds": trained.train_s, "predict_seconds": trained.predict_s,
                    "final_train_mpjpe": trained.history["train_mpjpe"][-1] if trained.cfg.epochs else None,
                    "final_val_mpjpe": trained.history["val_mpjpe"][-1] if trained.cfg.epochs else None,
                    "mean_pose": {k: reference[k] for k in _SCORE_KEYS}}
            write_json(tdir / "result.json", info)  # last: marks the task finished
        else:
            info = read_json(tdir / "result.json")
            log.info("lifter %s: reusing the finished model in %s (same configuration)", task, tdir)
        scores = score_predictions(tdir / "predictions.h5", folder, task)
        table = add_scores(root / "benchmark", f"{lcfg.method} ({task})", scores)
        log.info("lifter %s: whole-body MPJPE %.1f mm on %d test samples (mean pose: %.1f mm)", task,
                 scores["whole"], scores["num_samples"], info["mean_pose"]["whole"])
        results[task] = {**{k: info[k] for k in ("train_samples", "test_samples", "epochs", "params",
                                                 "train_seconds")},
                         "trained": task in todo, "scores": {k: scores[k] for k in _SCORE_KEYS},
                         "mean_pose": info["mean_pose"]}
    counts = {"device": device, "trained": todo, "seconds": time.perf_counter() - t_start, "tasks": results}
    sd.write_manifest(counts, units=tasks)
    log.info("lifter: %s scored; benchmark table %s:\n%s", ", ".join(tasks), root / "benchmark" / "scores.md",
             format_table(table))
    return counts


def _task_done(sd: StageDir, task: str) -> bool:
    """True when ``task``'s model, predictions and result (written last) exist for the current configuration."""
    tdir = sd.root / task
    if not all((tdir / n).is_file() for n in ("model.pt", "predictions.h5", "result.json")):
        return False
    try:
        return read_json(tdir / "result.json").get("config_hash") == sd.hash
    except BuildDirError as err:
        log.warning("%s; %s will be trained again", err, task)
        return False
