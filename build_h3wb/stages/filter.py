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

Every recording is read ``filter.chunk_frames`` frames at a time (with the frame before each chunk, which the
temporal jump compares with, and the person size's running median window), so memory does not grow with the
recording: the output is the same for any chunk length. What stays whole: the subjects' bone lengths over their
complete poses (the exact median needs them all, 65 float32 a pose), each recording's (C, T) box diagonals (the
person size's per-view median) and the per-pose results (a few dozen bytes a pose) until the target size is chosen.
"""

from __future__ import annotations

import csv
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from build_h3wb import skeleton
from build_h3wb.artifacts import (
    BuildDirError,
    atomic_h5,
    atomic_path,
    open_h5,
    read_json,
    require_dataset,
    write_json,
)
from build_h3wb.build import Build, read_rig, source_fps
from build_h3wb.geometry.sequence_check import body_diagonal_px, person_size_from_diagonal
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
from build_h3wb.stages.common import frame_chunks, make_source, plain, progress
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
    chunk = settings.pop("chunk_frames")  # how, not what: the output is the same for any chunk length (not hashed)
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
        with _Inputs(root, pose_stage, u) as inp:
            for read, _, _ in frame_chunks(inp.T, chunk):
                kp = inp.poses[read]
                lengths.setdefault(u["subject"], []).append(bone_lengths(kp[np.isfinite(kp).all((1, 2))]))
                seen |= (np.isfinite(kp[..., 0]) & ~inp.filled(read, kp)).any(0)
    reference = {s: np.nanmedian(np.concatenate(v), axis=0) for s, v in lengths.items()}
    del lengths
    # a part the detector never saw anywhere in the build (a face under a cap) is filled in every pose: it is exported
    # as completed and reported, but does not count against the filled share of each pose
    unseen = [p for p, sl in skeleton.REPORT_PARTS.items() if not seen[sl].any()]
    judged = np.ones(skeleton.NUM_KEYPOINTS, dtype=bool)
    for p in unseen:
        judged[skeleton.REPORT_PARTS[p]] = False
        log.warning("filter: the %s was never triangulated in this build; the completion filled all of it, which "
                    "does not count against filter.max_filled_share", p.replace("_", " "))

    # pass 2: measures, threshold filters and (with ground truth) each pose's true error, per sequence, a chunk of
    # frames at a time (with the frame before it, which the temporal jump compares with)
    filters = make_filters(fcfg)
    source = make_source(cfg) if fcfg.true_error else None
    results = []
    for u in progress(units, desc="filter", unit="seq"):
        with _Inputs(root, pose_stage, u) as inp:
            frames = inp.tri["frames"][:]
            sizes = _PersonSize(inp.det, inp.rig, min_score, chunk)
            parts: dict[str, list[np.ndarray]] = {}
            for read, write, keep in frame_chunks(inp.T, chunk, 1, 0):
                kp = inp.poses[read]
                filled = inp.filled(read, kp)
                views_used = inp.tri["views_used"][read]
                size = size_in_views_used(sizes[read], views_used)  # (t, J) px
                m = pose_measures(kp, inp.tri["reprojection_error"][read], inp.tri["num_views"][read],
                                  filled & judged, frames[read], reference[u["subject"]], fps, stride,
                                  person_size_px=size)
                m = {name: v[keep] for name, v in m.items()}
                kp, filled = kp[keep], filled[keep]
                ok, reason = apply_filters(filters, m, np.isfinite(kp).all((1, 2)))
                err_sum, err_n = _true_error(source, u, kp, frames[write])
                for name, v in (("quality", quality_score(m)), ("keep", ok), ("reason", reason.astype(np.int8)),
                                ("err_sum", err_sum), ("err_n", err_n), ("filled", _part_counts(filled)),
                                *((f"measures/{k}", v.astype(np.float32)) for k, v in m.items())):
                    parts.setdefault(name, []).append(v)
        whole = {name: np.concatenate(v) for name, v in parts.items()}
        measures = {k.split("/", 1)[1]: v for k, v in whole.items() if k.startswith("measures/")}
        results.append(_SequenceResult(u, measures, whole["quality"], whole["keep"], whole["reason"], frames,
                                       whole["err_sum"], whole["err_n"], whole["filled"]))

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


class _Inputs:
    """One sequence's input files, open for reading a chunk of frames at a time (a context manager).

    ``poses``: the pose stage's ``keypoints_3d`` (T, J, 3); ``tri``: the triangulate file; ``det``: the detections
    (C, T, J, 3); ``rig``; ``T``.
    """

    def __init__(self, root: Path, pose_stage: str, u: dict) -> None:
        name = f"{u['sequence']}.h5"
        self._files: list = []
        try:
            self._open(root, pose_stage, u["subject"], name)
        except BaseException:
            self.close()
            raise

    def _open(self, root: Path, pose_stage: str, subject: str, name: str) -> None:
        def open_one(stage: str):
            self._files.append(open_h5(root / stage / subject / name))
            return self._files[-1]

        self.poses = open_one(pose_stage)["keypoints_3d"]
        self.tri = open_one("triangulate")
        self._complete = open_one("complete") if pose_stage != "triangulate" else None
        det_file = open_one("detect")
        self.rig = read_rig(dict(det_file.attrs), str(det_file.filename))
        self.det = require_dataset(det_file, "keypoints", (skeleton.NUM_KEYPOINTS, 3))
        self.T = self.poses.shape[0]
        # read a chunk at a time, a dataset of another length would not be noticed: every one must hold T frames
        frames_of = [(self.tri, ds, 0) for ds in ("frames", "reprojection_error", "num_views", "views_used")]
        frames_of += [(det_file, "keypoints", 1)] + ([(self._complete, "filled", 0)] if self._complete else [])
        for f, ds, axis in frames_of:
            if f[ds].shape[axis] != self.T:
                raise BuildDirError(f"{f.filename}: dataset {ds!r} has {f[ds].shape[axis]} frames, the poses of "
                                    f"{self._files[0].filename} {self.T}; the build directory mixes outputs of "
                                    "different runs: rebuild it")

    def filled(self, read: slice, kp: np.ndarray) -> np.ndarray:
        """(t, J) bool keypoints the completion filled in frames ``read`` (``kp``: those frames' poses).

        After ``triangulate`` alone (no completion): the missing keypoints of ``kp``.
        """
        return self._complete["filled"][read] if self._complete is not None else np.isnan(kp[..., 0])

    def close(self) -> None:
        for f in self._files:
            f.close()

    def __enter__(self) -> _Inputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PersonSize:
    """The person's size in every view and frame, pixels, from the detections (as triangulation measures it).

    ``sizes[read]`` (C, t) is the same as those frames of ``person_size_px`` of the whole recording. The box
    diagonals of the whole recording are kept ((C, T) floats, for the running median's neighbours and each view's
    median); the detections are read ``chunk`` frames at a time.
    """

    WINDOW = 9  # frames of person_size_px's running median

    def __init__(self, det, rig, min_score: float, chunk: int) -> None:
        self.rig = rig
        diag = []
        for read, _, _ in frame_chunks(det.shape[1], chunk):
            kp = det[:, read]  # (C, t, J, 3)
            diag.append(body_diagonal_px(kp[..., :2], kp[..., 2], min_score))  # (C, t), the detections' float type
        self.diag = np.concatenate(diag, axis=1)  # (C, T)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a view without a body anywhere: NaN, the image's fallback
            self.per_view = np.nanmedian(self.diag, 1)  # (C,)

    def __getitem__(self, read: slice) -> np.ndarray:
        h = self.WINDOW // 2
        lo, hi = max(0, read.start - h), min(self.diag.shape[1], read.stop + h)  # the running median's neighbours
        size = person_size_from_diagonal(self.diag[:, lo:hi], self.rig, self.WINDOW, self.per_view)
        return size[:, read.start - lo : read.stop - lo]


def _part_counts(filled: np.ndarray) -> np.ndarray:
    """(T, P) int16 filled keypoints of each pose in each of ``skeleton.REPORT_PARTS``, from (T, J) bool."""
    return np.stack([filled[:, sl].sum(1) for sl in skeleton.REPORT_PARTS.values()], axis=1).astype(np.int16)


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
    filled: np.ndarray  # (T, P) keypoints the completion filled, per part of skeleton.REPORT_PARTS


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
    for p, (part, sl) in enumerate(skeleton.REPORT_PARTS.items()):
        size = len(range(skeleton.NUM_KEYPOINTS)[sl])
        for which in ("all", "kept"):
            rows = [r.filled[:, p] if which == "all" else r.filled[r.keep][:, p] for r in results]
            n = sum(len(x) * size for x in rows)
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
