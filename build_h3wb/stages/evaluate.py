"""Stage ``evaluate``: score what was built (after whichever stages ran) against the source's ground truth.

Writes ``evaluate/<stage>.json`` (errors by variant and part, coverage) and ``evaluate/<stage>.md``, and prints
the table. Sequences whose source has no ground truth are skipped and counted.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, atomic_path, finished_manifest, open_h5, write_json
from build_h3wb.evaluation import ErrorStats, format_table
from build_h3wb.sources.base import Sequence
from build_h3wb.stages import POSE_STAGES
from build_h3wb.stages.common import build_dir, make_source, progress

log = logging.getLogger(__name__)

CHUNK_FRAMES = 250


def latest_pose_stage(root) -> str:
    """The last pose-producing stage that has finished in a build directory."""
    done = [s for s in POSE_STAGES if (root / s / "manifest.json").exists()]
    if not done:
        raise BuildDirError(f"nothing to evaluate in {root}: none of {list(POSE_STAGES)} has finished")
    return done[-1]


def run(cfg: DictConfig) -> dict:
    """Evaluate the chosen stage's poses; returns the result table."""
    root = build_dir(cfg)
    stage = latest_pose_stage(root) if cfg.evaluate.stage == "latest" else cfg.evaluate.stage
    if stage not in POSE_STAGES:
        raise ValueError(f"evaluate.stage={stage!r} is not a pose stage; choose one of {['latest', *POSE_STAGES]}")
    manifest = finished_manifest(root, stage)
    source = make_source(cfg)
    stats = ErrorStats()
    skipped = []
    for u in progress(manifest["units"], desc="evaluate", unit="seq"):
        seq = Sequence(u["subject"], u["action"], u["sequence"])
        with open_h5(root / stage / u["subject"] / f"{u['sequence']}.h5") as f:
            frames = f["frames"][:]
            for s in range(0, len(frames), CHUNK_FRAMES):  # stream: memory stays flat with sequence length
                gt = source.ground_truth(seq, frames[s : s + CHUNK_FRAMES])
                if gt is None:
                    skipped.append(seq.key)
                    break
                stats.add(f["keypoints_3d"][s : s + CHUNK_FRAMES].astype(np.float64), gt)
    table = stats.table()
    table["stage"] = stage
    table["sequences_scored"] = len(manifest["units"]) - len(skipped)
    table["sequences_without_ground_truth"] = skipped
    write_json(root / "evaluate" / f"{stage}.json", table)
    text = format_table({k: v for k, v in table.items() if k not in ("stage", "sequences_scored",
                                                                       "sequences_without_ground_truth")})
    with atomic_path(root / "evaluate" / f"{stage}.md") as tmp:
        tmp.write_text(f"# Accuracy after `{stage}`\n\n{text}\n")
    log.info("evaluate (%s, %d sequences):\n%s", stage, table["sequences_scored"], text)
    if skipped:
        log.warning("evaluate: %d sequences have no ground truth and were skipped", len(skipped))
    return table
