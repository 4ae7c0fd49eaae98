"""Stage ``benchmark``: score a predictions file on one task of the exported test split.

``python -m build_h3wb stage=benchmark benchmark.predictions=PATH benchmark.task=2Dto3D benchmark.method=NAME``
reads the ground truth ``export/json/<task>_test_3d.json``, scores the predictions (official H3WB MPJPE variants
plus an unofficial Procrustes-aligned column; ``build_h3wb.leaderboard.metrics``), and adds the result to
``benchmark/scores.json``; ``benchmark/scores.{md,csv}`` hold the table of every method and task scored so far. A
predictions file may hold more ids than the task (they are ignored, with a log line); a missing id is an error.
``benchmark.cross_validation=N`` (1..5) scores fold N of the training file instead, as the official ``cvN`` mode.
The I2D input every method must use is the masked ``export/json/I2Dto3D_test_2d.json`` (confidence 0 = hidden; the
same masks as booleans in ``export/json/I2Dto3D_test_masks.npz``).
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
    fold = bcfg.cross_validation
    scores = score_predictions(pred, root / "export" / "json", bcfg.task, cross_validation=fold)
    row = f"{bcfg.method} ({bcfg.task}{f', cv{fold}' if fold else ''})"
    table = add_scores(root / "benchmark", row, scores)
    log.info("benchmark: %s on %s (%d samples):\n%s", bcfg.method, bcfg.task, scores["num_samples"],
             format_table(table))
    return scores
