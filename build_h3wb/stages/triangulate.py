"""Stage ``triangulate``: 3D keypoints from the detections of all views.

Reads ``detect/`` and writes ``triangulate/<subject>/<sequence>.h5`` per sequence:
- ``keypoints_3d`` (T, J, 3) float32 world millimetres, NaN where not reconstructed;
- ``views_used`` (T, J) uint16 bitmask over the camera order in ``cameras`` (bit c = view c used);
- ``num_views`` (T, J) uint8; ``rejected_views`` (T, J) uint8 views dropped as outliers;
- ``reprojection_error`` (T, J) float32 mean pixels over the views used (NaN where not reconstructed);
- ``seen_any`` (T, J) bool: detected with enough confidence in at least one view;
- ``frames`` (T,) int64 and ``cameras`` (C,);
and ``triangulate/summary.json`` with the counts the H3WB paper reports (complete poses, poses with every
keypoint seen in at least one view, per-part completeness).
"""

from __future__ import annotations

import logging

import h5py
import numpy as np
from omegaconf import DictConfig

from build_h3wb import skeleton
from build_h3wb.artifacts import (
    BuildDirError,
    StageDir,
    atomic_h5,
    open_h5,
    require_dataset,
    write_json,
)
from build_h3wb.build import Build, read_rig
from build_h3wb.geometry.triangulation import triangulate
from build_h3wb.stages.common import progress

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Triangulate every detected sequence not yet done; returns the summary counts."""
    build = Build.from_config(cfg)
    root = build.root
    inputs = build.inputs("triangulate")
    det = inputs["detect"]
    tcfg = cfg.triangulate
    params = {
        "min_score": float(tcfg.min_score),
        "opposing_angle_deg": float(tcfg.opposing_angle_deg),
        "robust": bool(tcfg.robust),
        "outlier_threshold_px": float(tcfg.outlier_threshold_px),
        "undistort_iterations": int(tcfg.undistort_iterations),
    }
    sd = build.stage_dir("triangulate", {"params": params, "detect_assembly": det["counts"].get("assembly_hash")},
                         inputs)
    J = skeleton.NUM_KEYPOINTS
    stats = _Counts()
    computed = 0
    for u in progress(det["units"], desc="triangulate", unit="seq"):
        out_path = sd.sequence_path(u["subject"], u["sequence"])
        if not sd.is_done(out_path):
            _triangulate_sequence(root / "detect" / u["subject"] / f"{u['sequence']}.h5", out_path, u, params,
                                  sd, int(tcfg.chunk_frames))
            computed += 1
        with open_h5(out_path) as f:
            step = int(tcfg.chunk_frames)
            for s in range(0, f["frames"].shape[0], step):
                stats.add(f["keypoints_3d"][s : s + step], f["seen_any"][s : s + step])
    summary = stats.summary()
    summary.update(sequences=len(det["units"]), computed=computed)
    write_json(sd.root / "summary.json", summary)
    _log_summary(summary, J)
    sd.write_manifest(summary, units=det["units"])
    return summary


def _triangulate_sequence(in_path, out_path, unit: dict, params: dict, sd: StageDir, chunk: int) -> None:
    J = skeleton.NUM_KEYPOINTS
    with open_h5(in_path) as src:
        rig = read_rig(dict(src.attrs), str(in_path))
        kp = require_dataset(src, "keypoints", (J, 3))
        frames = src["frames"][:]
        cameras = [c.decode() if isinstance(c, bytes) else c for c in src["cameras"][:]]
        C, T = kp.shape[0], kp.shape[1]
        if kp.ndim != 4 or C != len(rig) or T != len(frames):
            raise BuildDirError(f"{in_path}: keypoints {kp.shape} do not match {len(rig)} cameras x {len(frames)} "
                                f"frames x {J} keypoints x 3")
        if list(cameras) != list(rig.names):
            raise BuildDirError(f"{in_path}: camera order {cameras} differs from the rig's {list(rig.names)}")
        with atomic_h5(out_path, sd.unit_attrs(unit)) as out:
            out.create_dataset("frames", data=frames)
            out.create_dataset("cameras", data=np.array(rig.names, dtype=h5py.string_dtype()))
            d3 = out.create_dataset("keypoints_3d", (T, J, 3), np.float32)
            dviews = out.create_dataset("views_used", (T, J), np.uint16)
            dnum = out.create_dataset("num_views", (T, J), np.uint8)
            drej = out.create_dataset("rejected_views", (T, J), np.uint8)
            derr = out.create_dataset("reprojection_error", (T, J), np.float32)
            dseen = out.create_dataset("seen_any", (T, J), bool)
            for s in range(0, T, chunk):
                block = kp[:, s : s + chunk]  # (C, t, J, 3)
                t = block.shape[1]
                flat = np.moveaxis(block, 0, 2).reshape(t * J, C, 3)  # (t*J, C, 3)
                with np.errstate(invalid="ignore"):
                    seen = (np.nan_to_num(flat[..., 2], nan=0.0) >= params["min_score"]).any(1)
                res = triangulate(flat[..., :2], flat[..., 2], rig, **params)
                d3[s : s + t] = res.points.reshape(t, J, 3)
                dviews[s : s + t] = res.views.reshape(t, J)
                dnum[s : s + t] = res.num_views.reshape(t, J)
                drej[s : s + t] = res.rejected.reshape(t, J)
                derr[s : s + t] = res.reprojection_error.reshape(t, J)
                dseen[s : s + t] = seen.reshape(t, J)


class _Counts:
    """Running totals for the triangulation summary (streamed over sequences)."""

    def __init__(self) -> None:
        self.poses = 0
        self.complete = 0
        self.all_seen = 0
        self.complete_of_all_seen = 0
        self.part_done = {p: 0 for p in skeleton.REPORT_PARTS}
        self.part_total = {p: 0 for p in skeleton.REPORT_PARTS}
        self.part_complete_poses = {p: 0 for p in skeleton.REPORT_PARTS}

    def add(self, kp3d: np.ndarray, seen: np.ndarray) -> None:
        """Count a block of poses: kp3d (T, J, 3) mm, seen (T, J) bool."""
        ok = np.isfinite(kp3d[:, :, 0])  # (T, J)
        complete = ok.all(1)
        all_seen = seen.all(1)
        self.poses += len(ok)
        self.complete += int(complete.sum())
        self.all_seen += int(all_seen.sum())
        self.complete_of_all_seen += int((complete & all_seen).sum())
        for p, sl in skeleton.REPORT_PARTS.items():
            self.part_done[p] += int(ok[:, sl].sum())
            self.part_total[p] += ok[:, sl].size
            self.part_complete_poses[p] += int(ok[:, sl].all(1).sum())

    def summary(self) -> dict:
        return {
            "poses": self.poses,
            "complete_poses": self.complete,
            "poses_every_keypoint_seen": self.all_seen,
            "complete_among_every_keypoint_seen": self.complete_of_all_seen,
            "complete_share_among_every_keypoint_seen": round(self.complete_of_all_seen / max(self.all_seen, 1), 4),
            "keypoints_reconstructed_share": {p: round(self.part_done[p] / max(self.part_total[p], 1), 4)
                                              for p in self.part_done},
            "part_complete_poses_share": {p: round(self.part_complete_poses[p] / max(self.poses, 1), 4)
                                          for p in self.part_done},
        }


def _log_summary(s: dict, J: int) -> None:
    log.info("triangulate: %d poses; %d complete in all %d keypoints; %d with every keypoint seen in >= 1 view, "
             "of which %d (%.1f%%) complete (H3WB on Human3.6M: 11,426 of 37,759, 30.3%%)",
             s["poses"], s["complete_poses"], J, s["poses_every_keypoint_seen"],
             s["complete_among_every_keypoint_seen"], 100 * s["complete_share_among_every_keypoint_seen"])
    for p, share in s["keypoints_reconstructed_share"].items():
        log.info("  %-6s keypoints reconstructed %5.1f%%, poses with the part complete %5.1f%%", p, 100 * share,
                 100 * s["part_complete_poses_share"][p])
