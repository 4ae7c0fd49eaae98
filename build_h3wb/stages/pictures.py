"""Stage ``pictures``: figures of one frame of a build.

``python -m build_h3wb stage=pictures pictures.subject=S1 pictures.sequence="Walking 1" pictures.frame=100``
writes ``pictures/<subject>/<sequence>/frame_<frame>_views.png`` (every view: the detections and the final 3D
keypoints reprojected, coloured by provenance: triangulated, completed, refined) and ``..._3d.png`` (the 3D
skeleton in world coordinates). The final keypoints are those of the last pose stage that has run.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, finished_manifest, open_h5
from build_h3wb.pictures import draw_skeleton_3d, draw_views, view_layers
from build_h3wb.stages.common import build_dir
from build_h3wb.stages.detect import read_rig
from build_h3wb.stages.evaluate import finished_pose_stages

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Draw the configured frame; returns the paths written."""
    root = build_dir(cfg)
    pcfg = cfg.pictures
    stages = finished_pose_stages(root)
    if not stages:
        raise BuildDirError(f"nothing to draw in {root}: run the stages up to triangulate first")
    det_m = finished_manifest(root, "detect")
    units = {(u["subject"], u["sequence"]) for u in det_m["units"]}
    subject, sequence = str(pcfg.subject), str(pcfg.sequence)
    if (subject, sequence) not in units:
        raise ValueError(f"pictures.subject/sequence {subject}/{sequence!r} is not in the build; e.g. "
                         f"{sorted(units)[:3]}")
    name = f"{sequence}.h5"
    with open_h5(root / "detect" / subject / name) as f:
        frames = f["frames"][:]
        hit = np.flatnonzero(frames == int(pcfg.frame))
        if not len(hit):
            raise ValueError(f"frame {pcfg.frame} is not a selected frame of {subject}/{sequence}; selected frames "
                             f"run {frames[0]}..{frames[-1]} every {frames[1] - frames[0] if len(frames) > 1 else 1}")
        t = int(hit[0])
        det = f["keypoints"][:, t]  # (C, J, 3)
        rig = read_rig(dict(f.attrs), str(f.filename))
    final_stage = stages[-1]
    with open_h5(root / final_stage / subject / name) as f:
        kp = f["keypoints_3d"][t].astype(np.float64)  # (J, 3)
        refined = f["refined"][t] if "refined" in f else np.zeros(len(kp), bool)
    filled = np.zeros(len(kp), bool)
    if (root / "complete" / subject / name).exists():
        with open_h5(root / "complete" / subject / name) as f:
            filled = f["filled"][t]
    prov = np.where(refined, 2, np.where(filled, 1, 0)).astype(np.uint8)
    out = root / "pictures" / subject / sequence
    title = f"{subject} / {sequence} / frame {pcfg.frame} (after {final_stage})"
    views = out / f"frame_{int(pcfg.frame):04d}_views.png"
    sk3d = out / f"frame_{int(pcfg.frame):04d}_3d.png"
    draw_views(rig, view_layers(rig, det, kp, prov), views, title)
    draw_skeleton_3d(kp, prov, sk3d, title)
    log.info("pictures: wrote %s and %s", views, sk3d)
    return {"views": str(views), "skeleton_3d": str(sk3d)}
