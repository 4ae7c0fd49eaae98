"""Stage ``benchmark``: score a predictions file on one task of the exported test split.

``python -m build_h3wb stage=benchmark benchmark.predictions=PATH benchmark.task=2Dto3D benchmark.method=NAME``
reads the ground truth ``export/json/<task>_test_3d.json``, scores the predictions (official H3WB MPJPE variants
plus an unofficial Procrustes-aligned column; ``build_h3wb.leaderboard.metrics``), and adds the result to
``benchmark/scores.json``; ``benchmark/scores.{md,csv}`` hold the table of every method and task scored so far. The
fixed I2D test masks that every method must use are ``export/json/I2Dto3D_test_masks.npz``
(``build_h3wb.leaderboard.masking.load_masks``; row i masks the i-th sample of ``I2Dto3D_test_2d.json`` in id order).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from build_h3wb.artifacts import finished_manifest
from build_h3wb.leaderboard.scoring import TASKS, add_scores, format_table, score_predictions
from build_h3wb.stages.common import build_dir

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Score ``benchmark.predictions``; returns the scores."""
    root = build_dir(cfg)
    finished_manifest(root, "export")
    bcfg = cfg.benchmark
    if not bcfg.predictions:
        raise ValueError("benchmark.predictions is empty: pass the predictions file to score, e.g. "
                         "benchmark.predictions=preds.json benchmark.task=2Dto3D")
    if bcfg.task not in TASKS:
        raise ValueError(f"benchmark.task={bcfg.task!r}; choose one of {list(TASKS)}")
    pred = Path(bcfg.predictions).expanduser().resolve()
    scores = score_predictions(pred, root / "export" / "json", bcfg.task)
    table = add_scores(root / "benchmark", f"{bcfg.method} ({bcfg.task})", scores)
    log.info("benchmark: %s on %s (%d samples):\n%s", bcfg.method, bcfg.task, scores["num_samples"],
             format_table(table))
    return scores
