"""Stage ``refine``: hands and faces refined with part shape models and all views' detections.

Reads ``complete/`` (poses with the holes filled), ``triangulate/`` (views used, reprojection errors) and
``detect/`` (every view's 2D keypoints). Part models (face, each hand) are learned per subject from its best
complete triangulated poses (lowest mean reprojection error; pooled over subjects when a subject has too few), then
every hand and face keypoint is re-triangulated from the detections with the model fit as a prior (see
``build_h3wb.refinement``). Writes ``refine/<subject>/<sequence>.h5``: ``keypoints_3d`` (T, J, 3) float32 world mm,
``refined`` (T, J) bool (moved by the refinement), ``frames``.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import StageDir, atomic_h5, finished_manifest, open_h5
from build_h3wb.refinement import fit_part_models, refine_sequence
from build_h3wb.stages.common import build_dir, plain, progress
from build_h3wb.stages.detect import read_rig

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Refine every completed sequence not yet done; returns the counts."""
    root = build_dir(cfg)
    comp = finished_manifest(root, "complete")
    rcfg = plain(cfg.refine)
    sd = StageDir(root, "refine", {"refine": rcfg, "complete_hash": comp["config_hash"]},
                  overwrite=cfg.build.overwrite)
    sd.check_compatible()
    units = comp["units"]
    models = _part_models(root, units, int(rcfg["best_poses"]), int(rcfg["min_subject_poses"]), rcfg["ranks"] or None)
    options = {k: rcfg[k] for k in ("min_score", "prior_weight", "temporal_window", "noise_mm", "trust_views",
                                    "trust_power", "filled_weight", "keep_views", "keep_score")}
    moved = 0
    total = 0
    for u in progress(units, desc="refine", unit="seq"):
        out = sd.sequence_path(u["subject"], u["sequence"])
        if sd.is_done(out):
            continue
        name = f"{u['sequence']}.h5"
        with open_h5(root / "complete" / u["subject"] / name) as f:
            kp = f["keypoints_3d"][:].astype(np.float64)
            filled = f["filled"][:]
            frames = f["frames"][:]
        with open_h5(root / "triangulate" / u["subject"] / name) as f:
            views = f["views_used"][:]
        with open_h5(root / "detect" / u["subject"] / name) as f:
            det = f["keypoints"][:]
            rig = read_rig(dict(f.attrs), str(f.filename))
        refined, mask = refine_sequence(kp, det, rig, models[u["subject"]], views_used=views, filled=filled,
                                        frames=frames, **options)
        with atomic_h5(out, sd.unit_attrs(u)) as g:
            g.create_dataset("keypoints_3d", data=refined.astype(np.float32))
            g.create_dataset("refined", data=mask)
            g.create_dataset("frames", data=frames)
        moved += int(mask.sum())
        total += mask.size
    counts = {"sequences": len(units), "refined_keypoints": moved, "keypoints": total}
    log.info("refine: %d keypoints refined in %d sequences", moved, len(units))
    sd.write_manifest(counts, units=units)
    return counts


def _part_models(root, units, best_poses: int, min_poses: int, ranks) -> dict:
    """Subject -> part models, from the subject's best complete triangulated poses (pooled if too few)."""
    cand: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for u in units:
        with open_h5(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") as f:
            kp = f["keypoints_3d"][:].astype(np.float64)
            err = f["reprojection_error"][:]
        complete = np.isfinite(kp).all((1, 2))
        if complete.any():
            cand.setdefault(u["subject"], []).append((kp[complete], np.nanmean(err[complete], axis=1)))
    best = {}
    for subject, items in cand.items():
        poses = np.concatenate([p for p, _ in items])
        score = np.concatenate([s for _, s in items])
        best[subject] = poses[np.argsort(score, kind="stable")[:best_poses]]
    if sum(len(p) for p in best.values()) < 10:
        raise RuntimeError(f"too few complete triangulated poses in {root} to learn hand and face models")
    pooled = None
    models = {}
    for subject in sorted({u["subject"] for u in units}):
        poses = best.get(subject)
        if poses is not None and len(poses) >= min_poses:
            models[subject] = fit_part_models(poses, ranks=ranks, subject=subject)
            continue
        log.warning("refine: %s has %d complete poses (< %d): using part models pooled over subjects", subject,
                    0 if poses is None else len(poses), min_poses)
        if pooled is None:
            pooled = fit_part_models(np.concatenate(list(best.values())), ranks=ranks, similarity=True)
        models[subject] = pooled
    return models
