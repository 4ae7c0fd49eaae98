"""Stage ``triangulate``: 3D keypoints from the detections of all views.

Reads ``detect/`` and writes ``triangulate/<subject>/<sequence>.h5`` per sequence:
- ``keypoints_3d`` (T, J, 3) float32 world millimetres, NaN where not reconstructed;
- ``views_used`` (T, J) uint16 bitmask over the camera order in ``cameras`` (bit c = view c used);
- ``num_views`` (T, J) uint8; ``rejected_views`` (T, J) uint8 views dropped as outliers;
- ``reprojection_error`` (T, J) float32 mean pixels over the views used (NaN where not reconstructed);
- ``seen_any`` (T, J) bool: detected with enough confidence in at least one view;
- ``swapped`` (C, T) uint8 bits of the parts whose left/right labels were swapped back in that view (bit g is the
  g-th of ``build_h3wb.geometry.sequence_check.SWAP_GROUPS``: body, hands, face);
- ``sequence_check`` (T, J) int8: 0 as triangulated, 1 re-solved from another set of views, 2 dropped, 3 recovered
  (left out by the per-point rule, confirmed by the neighbouring bones and frames);
- ``threshold_px`` (C, T) float32: the agreement threshold used per view and frame;
- ``frames`` (T,) int64 and ``cameras`` (C,); per-view datasets are views first, as in ``detect/``;
and ``triangulate/summary.json`` with the counts the H3WB paper reports (complete poses, poses with every
keypoint seen in at least one view, per-part completeness), the counts of the robust rule's steps, and per camera
its residual against the other views and whether shifting it by a few frames lowers it (a rig out of sync).
The rule is described in ``build_h3wb.geometry.triangulation`` and ``build_h3wb.geometry.sequence_check``.
"""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
from omegaconf import DictConfig

from build_h3wb import skeleton
from build_h3wb.artifacts import (
    BuildDirError,
    atomic_h5,
    open_h5,
    require_dataset,
    write_json,
)
from build_h3wb.build import Build, read_rig, source_fps
from build_h3wb.geometry import kernels
from build_h3wb.geometry.sequence_check import (
    SWAP_GROUPS,
    agreement_threshold_px,
    camera_agreement,
    check_sequence,
    fix_left_right_swaps,
    hold_bone_lengths,
    person_size_px,
    reprojection_error_px,
    resolve_with_views,
    smooth_in_time,
    sync_report,
)
from build_h3wb.geometry.triangulation import triangulate
from build_h3wb.parallel import map_sequences

log = logging.getLogger(__name__)

#: The artifact's layout, part of its configuration hash, so a build written in an earlier layout is not read as this
#: one (2: per-view datasets ``swapped`` and ``threshold_px`` views first, (C, T)).
LAYOUT = 2


def run(cfg: DictConfig) -> dict:
    """Triangulate every detected sequence not yet done; returns the summary counts."""
    build = Build.from_config(cfg)
    root = build.root
    inputs = build.inputs("triangulate")
    det = inputs["detect"]
    tcfg = cfg.triangulate
    params = {
        "min_score": tcfg.min_score,
        "opposing_angle_deg": tcfg.opposing_angle_deg,
        "min_ray_angle_deg": tcfg.min_ray_angle_deg,
        "robust": tcfg.robust,
        "outlier_threshold_px": tcfg.outlier_threshold_px,
        "undistort_iterations": tcfg.undistort_iterations,
    }
    rules = {
        "person_threshold": tcfg.person_threshold,
        "min_threshold_px": tcfg.min_threshold_px,
        "fix_swaps": tcfg.fix_swaps and tcfg.robust,
        "sequence_check": tcfg.sequence_check and tcfg.robust,
        "bone_tolerance": tcfg.bone_tolerance,
        "bone_tolerance_mm": tcfg.bone_tolerance_mm,
        "max_speed_mm_s": tcfg.max_speed_mm_s,
        "recover_relax": tcfg.recover_relax,
        "sync_max_shift": tcfg.sync_max_shift,
        "smooth_sigma_s": tcfg.smooth_sigma_s,
        "bone_strength": tcfg.bone_strength,
        "video_fps": _video_fps(det),
    }
    sd = build.stage_dir("triangulate", {"params": params, "rules": rules, "layout": LAYOUT,
                                         "detect_assembly": det["counts"].get("assembly_hash")}, inputs)
    J = skeleton.NUM_KEYPOINTS
    todo = [u for u in det["units"] if not sd.is_done(sd.sequence_path(u["subject"], u["sequence"]))]
    jobs = [(root / "detect" / u["subject"] / f"{u['sequence']}.h5", sd.sequence_path(u["subject"], u["sequence"]),
             sd.unit_attrs(u), params, rules, tcfg.chunk_frames) for u in todo]
    if todo:
        if kernels.available():
            log.info("triangulate: compiled kernels (numba %s)", kernels.numba.__version__)
        else:
            log.warning("triangulate: %s; the numpy code runs instead (same results, 2-4x slower)",
                        kernels.unavailable_reason())
    map_sequences(_triangulate_sequence, jobs, tcfg.workers, "triangulate")
    computed = len(todo)
    stats = _Counts()
    cameras: dict[str, dict] = {}
    for u in det["units"]:
        out_path = sd.sequence_path(u["subject"], u["sequence"])
        with open_h5(out_path) as f:
            step = tcfg.chunk_frames
            for s in range(0, f["frames"].shape[0], step):
                stats.add(f["keypoints_3d"][s : s + step], f["seen_any"][s : s + step],
                          f["swapped"][:, s : s + step], f["sequence_check"][s : s + step])
            sync = json.loads(f.attrs["camera_agreement"])
            cameras[f"{u['subject']}/{u['sequence']}"] = sync
            stats.add_sync(sync)
    summary = stats.summary()
    summary.update(sequences=len(det["units"]), computed=computed)
    summary["cameras_by_sequence"] = cameras
    write_json(sd.root / "summary.json", summary)
    _log_summary(summary, J)
    sd.write_manifest(summary, units=det["units"])
    return summary


def _video_fps(det: dict) -> float:
    """The source's frame rate from the detect manifest (0.0 when the source does not know it)."""
    fps = source_fps(det)
    if fps <= 0:
        log.warning("triangulate: the source reports no frame rate; the jump check and the temporal smoothing are "
                    "off (set the source's frame rate, e.g. data.fps for data=detections)")
    return fps


def frame_dt_s(frames: np.ndarray, fps: float) -> float:
    """Seconds between consecutive selected frames: the usual frame-number step over the frame rate (0: unknown)."""
    step = np.diff(np.asarray(frames, dtype=np.int64))
    step = step[step > 0]
    return float(np.median(step)) / fps if fps > 0 and len(step) else 0.0


def _triangulate_chunk(kp: np.ndarray, rig, params: dict, rules: dict) -> dict:
    """One chunk of consecutive frames, every step of the rule: (C, t, J, 3) detections -> the output arrays."""
    uv = kp[..., :2].astype(np.float64)  # (C, t, J, 2)
    score = kp[..., 2].astype(np.float64)  # (C, t, J)
    C, t, J = score.shape
    if rules["person_threshold"] > 0:
        thr = agreement_threshold_px(person_size_px(uv, score, rig, params["min_score"]), rules["person_threshold"],
                                     rules["min_threshold_px"])  # (C, t)
    else:
        thr = np.full((C, t), params["outlier_threshold_px"])
    p = dict(params, outlier_threshold_px=thr[:, :, None])  # per view and frame, for every keypoint
    res = triangulate(uv, score, rig, **p)
    swapped = np.zeros((C, t), dtype=np.uint8)
    if rules["fix_swaps"]:
        uv, score, sw = fix_left_right_swaps(uv, score, rig, res.points, thr, params["min_score"])
        swapped = (sw * (1 << np.arange(len(SWAP_GROUPS)))).sum(-1).astype(np.uint8)
        if sw.any():
            res = triangulate(uv, score, rig, **p)
    out = {"points": res.points, "views": res.views.astype(np.int64), "num_views": res.num_views,
           "rejected": res.rejected, "reprojection_error": res.reprojection_error, "swapped": swapped,
           "sequence_check": np.zeros((t, J), dtype=np.int8), "threshold_px": thr.astype(np.float32)}
    if rules["sequence_check"]:
        X, status, views = check_sequence(
            out["points"], uv, score, rig, thr, frame_dt_s=rules["frame_dt_s"],
            bone_tolerance=rules["bone_tolerance"], bone_tolerance_mm=rules["bone_tolerance_mm"],
            max_speed_mm_s=rules["max_speed_mm_s"], recover_relax=rules["recover_relax"],
            min_score=params["min_score"],
            opposing_angle_deg=params["opposing_angle_deg"], min_ray_angle_deg=params["min_ray_angle_deg"])
        out["sequence_check"] = status
        ti, ji = np.nonzero((status == 1) | (status == 3))
        if len(ti):
            r = resolve_with_views(uv[:, ti, ji], score[:, ti, ji], rig, views[ti, ji], params["min_score"])
            out["points"][ti, ji] = r.points
            out["views"][ti, ji] = r.views
            out["num_views"][ti, ji] = r.num_views
            out["reprojection_error"][ti, ji] = r.reprojection_error
            cand = ((score[:, ti, ji] >= params["min_score"]) & np.isfinite(uv[:, ti, ji, 0])).sum(0)
            out["rejected"][ti, ji] = cand - r.num_views
        ti, ji = np.nonzero(status == 2)
        out["points"][ti, ji] = np.nan
        out["views"][ti, ji] = 0
        out["num_views"][ti, ji] = 0
        out["reprojection_error"][ti, ji] = np.nan
        out["rejected"][ti, ji] = 0
    if rules["sequence_check"] and (rules["smooth_sigma_s"] > 0 or rules["bone_strength"] > 0):
        smoothed = smooth_in_time(out["points"], rules["frame_dt_s"], rules["smooth_sigma_s"])
        smoothed = hold_bone_lengths(smoothed, rules["bone_strength"])
        if not np.array_equal(smoothed, out["points"], equal_nan=True):
            out["points"] = smoothed
            out["reprojection_error"] = reprojection_error_px(smoothed, uv, out["views"], rig)
    out["camera_hist"] = camera_agreement(uv, score, rig, out["views"], rules["sync_max_shift"],
                                          params["min_score"])
    return out


def _triangulate_sequence(in_path, out_path, attrs: dict, params: dict, rules: dict, chunk: int) -> None:
    """One sequence's artifact (``attrs``: its identity and configuration, from ``StageDir.unit_attrs``)."""
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
        seq_rules = dict(rules, frame_dt_s=frame_dt_s(frames, rules["video_fps"]))  # from the real frame spacing
        with atomic_h5(out_path, attrs) as out:
            out.create_dataset("frames", data=frames)
            out.create_dataset("cameras", data=np.array(rig.names, dtype=h5py.string_dtype()))
            d3 = out.create_dataset("keypoints_3d", (T, J, 3), np.float32)
            dviews = out.create_dataset("views_used", (T, J), np.uint16)
            dnum = out.create_dataset("num_views", (T, J), np.uint8)
            drej = out.create_dataset("rejected_views", (T, J), np.uint8)
            derr = out.create_dataset("reprojection_error", (T, J), np.float32)
            dseen = out.create_dataset("seen_any", (T, J), bool)
            dswap = out.create_dataset("swapped", (C, T), np.uint8)
            dcheck = out.create_dataset("sequence_check", (T, J), np.int8)
            dthr = out.create_dataset("threshold_px", (C, T), np.float32)
            hist = None
            for s in range(0, T, chunk):
                block = kp[:, s : s + chunk]  # (C, t, J, 3)
                t = block.shape[1]
                with np.errstate(invalid="ignore"):
                    seen = (np.nan_to_num(block[..., 2], nan=0.0) >= params["min_score"]).any(0)  # (t, J)
                r = _triangulate_chunk(block, rig, params, seq_rules)
                d3[s : s + t] = r["points"]
                dviews[s : s + t] = r["views"]
                dnum[s : s + t] = r["num_views"]
                drej[s : s + t] = r["rejected"]
                derr[s : s + t] = r["reprojection_error"]
                dseen[s : s + t] = seen
                dswap[:, s : s + t] = r["swapped"]
                dcheck[s : s + t] = r["sequence_check"]
                dthr[:, s : s + t] = r["threshold_px"]
                hist = r["camera_hist"] if hist is None else hist + r["camera_hist"]
            sync = sync_report(hist, tuple(rig.names), rules["sync_max_shift"]) if hist is not None else {}
            out.attrs["camera_agreement"] = json.dumps(sync)


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
        self.swapped = {g: 0 for g in SWAP_GROUPS}
        self.resolved = 0
        self.dropped = 0
        self.recovered = 0
        self.views_seen = 0
        self.sync: dict[str, dict] = {}

    def add(self, kp3d: np.ndarray, seen: np.ndarray, swapped: np.ndarray, check: np.ndarray) -> None:
        """Count a block of poses: kp3d (T, J, 3) mm, seen (T, J) bool, swapped (C, T) bits, check (T, J)."""
        for g, name in enumerate(SWAP_GROUPS):
            self.swapped[name] += int(((swapped >> g) & 1).sum())
        self.views_seen += swapped.size
        self.resolved += int((check == 1).sum())
        self.dropped += int((check == 2).sum())
        self.recovered += int((check == 3).sum())
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

    def add_sync(self, sync: dict) -> None:
        """Gather one sequence's per-camera report: the median residual per sequence, and suspect shifts."""
        for cam, r in sync.items():
            d = self.sync.setdefault(cam, {"median_px": [], "out_of_sync_sequences": 0, "shifts": []})
            if r["median_px"] is not None:
                d["median_px"].append(r["median_px"])
            if r["out_of_sync"]:
                d["out_of_sync_sequences"] += 1
                d["shifts"].append(r["best_shift_frames"])

    def summary(self) -> dict:
        cams = {cam: {"median_px": round(float(np.median(d["median_px"])), 2) if d["median_px"] else None,
                      "out_of_sync_sequences": d["out_of_sync_sequences"],
                      "typical_shift_frames": int(np.median(d["shifts"])) if d["shifts"] else 0}
                for cam, d in self.sync.items()}
        return {
            "views_with_swaps_fixed": dict(self.swapped),
            "view_frames": self.views_seen,
            "keypoints_resolved_by_sequence_check": self.resolved,
            "keypoints_dropped_by_sequence_check": self.dropped,
            "keypoints_recovered_by_sequence_check": self.recovered,
            "cameras": cams,
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
    log.info("  left/right labels swapped back in %s of %d view-frames; sequence check: %d keypoints re-solved, "
             "%d dropped, %d recovered", ", ".join(f"{k} {v}" for k, v in s["views_with_swaps_fixed"].items()),
             s["view_frames"], s["keypoints_resolved_by_sequence_check"], s["keypoints_dropped_by_sequence_check"],
             s["keypoints_recovered_by_sequence_check"])
    for cam, r in s["cameras"].items():
        log.info("  camera %s: median body residual against the other views %s px; out of sync in %d sequence(s)%s",
                 cam, r["median_px"], r["out_of_sync_sequences"],
                 f" (typical shift {r['typical_shift_frames']:+d} frames)" if r["out_of_sync_sequences"] else "")
