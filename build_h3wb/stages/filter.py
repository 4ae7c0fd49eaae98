"""Stage ``filter``: assess every built pose and select the final ones.

Reads the pose stage ``build.poses`` (default ``refine``), plus ``triangulate`` (reprojection errors, views),
``complete`` (what the network filled) and ``detect`` (the person's size in each view, which the reprojection
error is judged against). Writes ``filter/<subject>/<sequence>.h5`` with ``selected`` (T,) bool,
``reason`` (T,) int8 (-1 kept, 0 incomplete, k rejected by the k-th filter, ``len(filters) + 1`` beyond the target
size), ``quality`` (T,) float (lower is better) and every measure of ``build_h3wb.quality``; and
``filter/counts.json``: rejections by reason, poses kept, their estimated quality, how much of each part the
completion filled (``filled_share``: over all poses and over the kept ones; one log line per part) and, where the
source knows the truth, their true error. A part never triangulated anywhere in the build (a face the detector never
found) is filled in every pose; it is listed in ``parts_never_triangulated`` and does not count against each pose's
``filled_share``, so such a build still yields a dataset (its keypoints exported as completed). In a Hydra multirun
the output of each job goes to ``filter/sweep/<overrides>/`` and ``filter/sweep/summary.{md,csv,png}`` gathers the
jobs (see :class:`SweepSummary`).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_h5, atomic_path, open_h5, read_json, require_dataset, write_json
from build_h3wb.build import Build, read_rig, source_fps
from build_h3wb.geometry.sequence_check import person_size_px
from build_h3wb.quality import (
    Filter,
    apply_filters,
    bone_lengths,
    pose_measures,
    quality_score,
    select_balanced,
    size_in_views_used,
)
from build_h3wb.sources.base import Recording
from build_h3wb.stages.common import make_source, plain, progress
from build_h3wb.viz.figures import new_figure, save_figure

log = logging.getLogger(__name__)


def make_filters(fcfg: DictConfig) -> list[Filter]:
    """The configured filters, in the order they are applied."""
    return [
        Filter("reprojection", "reprojection_share", max_value=fcfg.max_reprojection_share),
        Filter("few_views", "views", min_value=fcfg.min_views),
        Filter("filled", "filled_share", max_value=fcfg.max_filled_share),
        Filter("bone_length", "bone_deviation", max_value=fcfg.max_bone_deviation),
        Filter("asymmetry", "asymmetry", max_value=fcfg.max_asymmetry),
        Filter("temporal_jump", "jump_mm_s", max_value=fcfg.max_jump_mm_s),
    ]


def _sweep_name() -> str | None:
    """This job's override string when running inside a Hydra multirun, else None."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    swept = [o for o in hc.overrides.task if o.startswith("filter.")]
    name = ",".join(swept).replace("/", "_") if swept else f"job{hc.job.num}"
    return name


def run(cfg: DictConfig) -> dict:
    """Measure, filter and select; returns the counts."""
    build = Build.from_config(cfg)
    root = build.root
    inputs = build.inputs("filter")
    pose_stage = build.poses
    poses_m = inputs[pose_stage]
    fcfg = cfg.filter
    settings = plain(fcfg)
    sweep = _sweep_name()
    stage_name = f"filter/sweep/{sweep}" if sweep else "filter"
    sd = build.stage_dir("filter", {"filter": settings, "poses": pose_stage}, inputs, folder=stage_name)
    units = poses_m["units"]
    det_manifest = read_json(root / "detect" / "manifest.json")
    fps, stride = source_fps(det_manifest), int(det_manifest["config"]["source"].get("stride", 1))
    if fps <= 0:
        log.warning("filter: the source reports no frame rate; the temporal jump test is off (set the source's frame "
                    "rate, e.g. data.fps for data=detections)")
    min_score = float(read_json(root / "triangulate" / "manifest.json")["config"]["params"]["min_score"])

    # pass 1: each subject's own bone lengths (median over its complete poses), and which keypoints the build saw
    lengths: dict[str, list[np.ndarray]] = {}
    seen = np.zeros(skeleton.NUM_KEYPOINTS, dtype=bool)  # (J,) triangulated at least once in the build
    for u in units:
        kp = _read(root, pose_stage, u, "keypoints_3d")
        lengths.setdefault(u["subject"], []).append(bone_lengths(kp[np.isfinite(kp).all((1, 2))]))
        seen |= (np.isfinite(kp[..., 0]) & ~_filled(root, pose_stage, u, kp)).any(0)
    reference = {s: np.nanmedian(np.concatenate(v), axis=0) for s, v in lengths.items()}
    # a part the detector never saw anywhere in the build (a face under a cap) is filled in every pose: it is exported
    # as completed and reported, but does not count against the filled share of each pose
    unseen = [p for p, sl in skeleton.REPORT_PARTS.items() if not seen[sl].any()]
    judged = np.ones(skeleton.NUM_KEYPOINTS, dtype=bool)
    for p in unseen:
        judged[skeleton.REPORT_PARTS[p]] = False
        log.warning("filter: the %s was never triangulated in this build; the completion filled all of it, which "
                    "does not count against filter.max_filled_share", p.replace("_", " "))

    # pass 2: measures, threshold filters and (with ground truth) each pose's true error, per sequence
    filters = make_filters(fcfg)
    source = make_source(cfg) if fcfg.true_error else None
    results = []
    for u in progress(units, desc="filter", unit="seq"):
        kp = _read(root, pose_stage, u, "keypoints_3d")
        with open_h5(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") as f:
            reproj, nviews, frames = f["reprojection_error"][:], f["num_views"][:], f["frames"][:]
            views_used = f["views_used"][:]
        filled = _filled(root, pose_stage, u, kp)
        size = size_in_views_used(_person_size(root, u, min_score), views_used)  # (T, J) px
        m = pose_measures(kp, reproj, nviews, filled & judged, frames, reference[u["subject"]], fps, stride,
                          person_size_px=size)
        keep, reason = apply_filters(filters, m, np.isfinite(kp).all((1, 2)))
        err_sum, err_n = _true_error(source, u, kp, frames)
        results.append(_SequenceResult(u, m, quality_score(m), keep, reason, frames, err_sum, err_n,
                                       filled.astype(bool)))

    # optional target size: the best poses, balanced over subject x action
    target = fcfg.target_size
    beyond = 0
    if target > 0:
        scores = np.concatenate([np.where(r.keep, r.quality, np.inf) for r in results])
        group_of: dict[tuple[str, str], int] = {}
        groups = np.concatenate([np.full(len(r.quality), group_of.setdefault((r.unit["subject"], r.unit["action"]),
                                                                              len(group_of))) for r in results])
        sel = select_balanced(scores, groups, target)
        offset = 0
        for r in results:
            s = sel[offset : offset + len(r.quality)]
            offset += len(r.quality)
            r.reason = np.where(r.keep & ~s, len(filters) + 1, r.reason)
            beyond += int((r.keep & ~s).sum())
            r.keep = r.keep & s

    for r in results:
        out = sd.sequence_path(r.unit["subject"], r.unit["sequence"])
        with atomic_h5(out, sd.unit_attrs(r.unit, poses=pose_stage)) as g:
            g.create_dataset("selected", data=r.keep)
            g.create_dataset("reason", data=r.reason.astype(np.int8))
            g.create_dataset("quality", data=r.quality.astype(np.float32))
            g.create_dataset("frames", data=r.frames)
            for name, v in r.measures.items():
                g.create_dataset(f"measures/{name}", data=v.astype(np.float32))

    total = sum(len(r.quality) for r in results)
    counts: dict[str, Any] = {"poses": total, "rejected": {"incomplete": sum(int((r.reason == 0).sum())
                                                                              for r in results)}}
    counts["rejected"].update({f.name: f.rejected for f in filters})
    if target > 0:
        counts["rejected"]["beyond_target_size"] = beyond
    counts.update(_kept_summary(results, with_truth=source is not None))
    counts["filled_share"] = filled_shares(results)
    counts["parts_never_triangulated"] = unseen
    counts["settings"] = settings
    write_json(sd.root / "counts.json", counts)
    log.info("filter: kept %d of %d poses (%d images); rejected: %s", counts["kept"], total, 4 * counts["kept"],
             ", ".join(f"{k} {v}" for k, v in counts["rejected"].items()))
    for part, share in counts["filled_share"]["all"].items():
        log.info("filter: %s filled by the completion in %.1f%% of keypoints (%.1f%% in the kept poses)", part,
                 100 * share, 100 * (counts["filled_share"]["kept"][part] or 0.0))
    if counts.get("true_error_mm") is not None:
        log.info("filter: kept poses' estimated quality %.2f (mean score), true error %.1f mm (mean, world)",
                 counts["mean_quality"], counts["true_error_mm"])
    sd.write_manifest(counts, units=units)
    return counts


def _filled(root: Path, pose_stage: str, u: dict, kp: np.ndarray) -> np.ndarray:
    """(T, J) bool keypoints the completion filled (none after ``triangulate`` alone: the missing ones)."""
    return _read(root, "complete", u, "filled") if pose_stage != "triangulate" else np.isnan(kp[..., 0])


def _person_size(root: Path, u: dict, min_score: float) -> np.ndarray:
    """(C, T) the person's size in every view and frame, pixels, from the detections (as triangulation measures it)."""
    path = root / "detect" / u["subject"] / f"{u['sequence']}.h5"
    with open_h5(path) as f:
        rig = read_rig(dict(f.attrs), str(path))
        kp = require_dataset(f, "keypoints", (skeleton.NUM_KEYPOINTS, 3))[:]  # (C, T, J, 3)
    return person_size_px(kp[..., :2], kp[..., 2], rig, min_score)


def _read(root: Path, stage: str, u: dict, name: str) -> np.ndarray:
    with open_h5(root / stage / u["subject"] / f"{u['sequence']}.h5") as f:
        return f[name][:]


@dataclass
class _SequenceResult:
    """One sequence's filter outcome: per-pose (T,) arrays, and per-pose sums of true keypoint errors."""

    unit: dict
    measures: dict[str, np.ndarray]
    quality: np.ndarray
    keep: np.ndarray
    reason: np.ndarray
    frames: np.ndarray
    err_sum: np.ndarray  # (T,) summed world error of the pose's keypoints, mm (0 without ground truth)
    err_n: np.ndarray  # (T,) number of keypoints in err_sum
    filled: np.ndarray  # (T, J) bool keypoints the completion filled


def _true_error(source, u: dict, kp: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,) summed keypoint errors against ground truth and their counts; zeros where the source has none."""
    zeros = (np.zeros(len(kp)), np.zeros(len(kp), dtype=np.int64))
    if source is None:
        return zeros
    gt = source.ground_truth(Recording(u["subject"], u["action"], u["sequence"]), frames)
    if gt is None:
        return zeros
    e = np.linalg.norm(kp - gt, axis=-1)  # (T, J)
    return np.nansum(e, axis=1), np.isfinite(e).sum(1)


def filled_shares(results: list[_SequenceResult]) -> dict[str, dict[str, float | None]]:
    """Share of each part's keypoints that the completion filled, over all poses (``all``) and the kept ones."""
    out: dict[str, dict[str, float | None]] = {"all": {}, "kept": {}}
    for part, sl in skeleton.REPORT_PARTS.items():
        for which in ("all", "kept"):
            rows = [r.filled[:, sl] if which == "all" else r.filled[r.keep][:, sl] for r in results]
            n = sum(x.size for x in rows)
            out[which][part] = round(sum(int(x.sum()) for x in rows) / n, 4) if n else None
    return out


def _kept_summary(results: list[_SequenceResult], with_truth: bool) -> dict:
    """Size, estimated quality and (with ground truth) true error of the kept poses."""
    kept = sum(int(r.keep.sum()) for r in results)
    by_subject: dict[str, int] = {}
    for r in results:
        by_subject[r.unit["subject"]] = by_subject.get(r.unit["subject"], 0) + int(r.keep.sum())
    q_sum = sum(float(r.quality[r.keep].sum()) for r in results)
    err_sum = sum(float(r.err_sum[r.keep].sum()) for r in results)
    err_n = sum(int(r.err_n[r.keep].sum()) for r in results)
    return {
        "kept": kept,
        "kept_by_subject": by_subject,
        "mean_quality": round(q_sum / kept, 3) if kept else None,
        "true_error_mm": round(err_sum / err_n, 2) if with_truth and err_n else None,
    }


class SweepSummary(Callback):
    """Hydra callback: after a multirun, gather the filter jobs into one table (Markdown, CSV) and a plot."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write ``filter/sweep/summary.{md,csv,png}`` when the sweep ran the filter stage."""
        root = Path(config.build.dir).expanduser().resolve() / "filter" / "sweep"
        rows = []
        for f in sorted(root.glob("*/counts.json")):
            c = read_json(f)
            rows.append({"job": f.parent.name, "kept": c["kept"], "mean_quality": c["mean_quality"],
                         "true_error_mm": c["true_error_mm"]})
        if not rows:
            return
        rows.sort(key=lambda r: r["kept"])
        with atomic_path(root / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        lines = ["| job | kept poses | mean quality score | true error (mm) |", "|---|---|---|---|"]
        lines += [f"| {r['job']} | {r['kept']} | {r['mean_quality']} | {r['true_error_mm']} |" for r in rows]
        with atomic_path(root / "summary.md") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        _plot(rows, root / "summary.png")
        log.info("filter sweep summary (%s):\n%s", root, "\n".join(lines))


def _plot(rows: list[dict], path: Path) -> None:
    """Kept poses against estimated quality and true error."""
    fig = new_figure((6, 4))
    ax = fig.subplots()
    kept = [r["kept"] for r in rows]
    ax.plot(kept, [r["mean_quality"] for r in rows], "o-", label="mean quality score (estimated)")
    ax.set_xlabel("poses kept")
    ax.set_ylabel("quality score (lower is better)")
    handles = ax.get_lines()
    if all(r["true_error_mm"] is not None for r in rows):
        ax2 = ax.twinx()
        ax2.plot(kept, [r["true_error_mm"] for r in rows], "s--", color="tab:red", label="true error (mm)")
        ax2.set_ylabel("true mean error of kept poses (mm)")
        handles = handles + ax2.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    ax.set_title("filter sweep")
    fig.tight_layout()
    save_figure(fig, path)
