"""Stage ``evaluate``: score what was built, after whichever stages ran, against the source's ground truth.

For every finished pose stage (``triangulate``, ``complete``, ``refine``; or the one named by ``evaluate.stage``)
writes ``evaluate/<stage>.{json,md}`` (errors by variant and part, coverage), and, once ``filter`` has run,
``evaluate/dataset.{json,md}`` for the selected poses only: the accuracy of the dataset itself. A comparison of
the stages goes to ``evaluate/summary.md`` and ends the log. Sequences without ground truth are skipped and counted.

For every build, with or without ground truth, each evaluated stage also gets ``evaluate/<stage>_measures.{json,md}``:
the measures that need none (:mod:`build_h3wb.quality.measures`: bone-length CV, frames with a bone off, reprojection
error against the detections, jitter and coverage per part), pooled and per sequence.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, atomic_path, finished_manifest, open_h5, read_json, write_json
from build_h3wb.build import POSE_STAGES
from build_h3wb.evaluation import ErrorStats, format_table
from build_h3wb.quality import measures as qm
from build_h3wb.sources.base import Recording
from build_h3wb.stages.common import build_dir, make_source, progress
from build_h3wb.viz.figures import new_figure, save_figure

log = logging.getLogger(__name__)

CHUNK_FRAMES = 250
_META = ("stage", "sequences_scored", "sequences_without_ground_truth", "poses", "histogram")


def finished_pose_stages(root: Path) -> list[str]:
    """The pose-producing stages that have finished in a build directory, in pipeline order."""
    return [s for s in POSE_STAGES if (root / s / "manifest.json").exists()]


def run(cfg: DictConfig) -> dict:
    """Evaluate the chosen stages; returns stage -> result table."""
    root = build_dir(cfg)
    done = finished_pose_stages(root)
    if not done:
        raise BuildDirError(f"nothing to evaluate in {root}: none of {list(POSE_STAGES)} has finished")
    choice = cfg.evaluate.stage
    if choice == "all":
        stages = done
    elif choice == "latest":
        stages = done[-1:]
    elif choice in POSE_STAGES:
        stages = [choice]
    else:
        raise ValueError(f"evaluate.stage={choice!r}; choose one of {['all', 'latest', *POSE_STAGES]}")
    measures = {s: measure_stage(root, s, cfg.triangulate.min_score) for s in stages}
    _write_measures_summary(root, measures)
    source = make_source(cfg)
    assessed = None
    if (root / "filter" / "manifest.json").exists():
        assessed = finished_manifest(root, "filter")["config"].get("poses", done[-1])  # the poses filter selected
    results = evaluate_stages(root, stages, source, assessed)
    _write_summary(root, results)
    plot_statistics(root, results)
    return results


def measure_stage(root: Path, stage: str, min_score: float) -> dict:
    """The measures without ground truth of one stage's poses; writes ``evaluate/<stage>_measures.{json,md}``.

    The reprojection error compares with the detections of ``detect/`` (the frames both have), counting those
    scoring at least ``min_score`` (``triangulate.min_score``); the bone reference of a subject is its median over
    all its sequences.
    """
    from build_h3wb.build import read_rig

    manifest = finished_manifest(root, stage)
    lengths: dict[str, list[np.ndarray]] = {}
    for u in manifest["units"]:
        with open_h5(root / stage / u["subject"] / f"{u['sequence']}.h5") as f:
            lengths.setdefault(u["subject"], []).append(qm.bone_lengths(f["keypoints_3d"][:].astype(np.float64)))
    reference = {s: qm.subject_reference(v) for s, v in lengths.items()}
    per_sequence = {}
    for u in progress(manifest["units"], desc=f"measure {stage}", unit="seq"):
        with open_h5(root / stage / u["subject"] / f"{u['sequence']}.h5") as f:
            frames, X = f["frames"][:], f["keypoints_3d"][:].astype(np.float64)
        det_path = root / "detect" / u["subject"] / f"{u['sequence']}.h5"
        kp2d, rig = None, None
        if det_path.exists():
            with open_h5(det_path) as f:
                det_frames, det = f["frames"][:], f["keypoints"][:]
                attrs = dict(f.attrs)
            rig = read_rig(attrs, str(det_path))
            kp2d = np.full((len(rig),) + X.shape, np.nan)
            pos = np.searchsorted(det_frames, frames)
            ok = (pos < len(det_frames)) & (det_frames[np.minimum(pos, len(det_frames) - 1)] == frames)
            kp2d[:, ok] = det[:, pos[ok]]
        per_sequence[f"{u['subject']}/{u['sequence']}"] = qm.sequence_measures(
            X, frames, reference[u["subject"]], kp2d, rig, min_score)
    result = {"stage": stage, **qm.pool(list(per_sequence.values())), "per_sequence": per_sequence}
    write_json(root / "evaluate" / f"{stage}_measures.json", result)
    with atomic_path(root / "evaluate" / f"{stage}_measures.md") as tmp:
        tmp.write_text(f"# Measures without ground truth, all poses after `{stage}`\n\n{format_measures(result)}\n")
    return result


def format_measures(m: dict) -> str:
    """A pooled measures dictionary (:func:`build_h3wb.quality.measures.pool`) as markdown."""
    if not m.get("frames"):
        return "no poses"
    parts = list(m["coverage"])
    lines = [f"{m['sequences']} sequences, {m['frames']} frames. Body bones: median length CV "
             f"{m['bone_cv_median']}, frames with a bone more than {qm.OFF_TOLERANCE:.0%} off the subject's median: "
             f"{m['frames_bone_off_share']}", "", "| part | " + " | ".join(parts) + " |",
             "|---|" + "---|" * len(parts)]

    def row(label: str, values: dict) -> str:
        return f"| {label} | " + " | ".join("-" if values.get(p) is None else f"{values[p]:.4g}" for p in parts) + " |"

    lines.append(row("coverage", m["coverage"]))
    if "reprojection_px_mean" in m:
        lines.append(row("reprojection px, mean", m["reprojection_px_mean"]))
        lines.append(row("reprojection px, median", m["reprojection_px_median"]))
    lines.append(row("jitter mm/frame^2, mean", m["jitter_mm"]))
    lines += ["", "| bone | length CV |", "|---|---|"]
    lines += [f"| {b} | {'-' if v is None else v} |" for b, v in m["bone_cv"].items()]
    return "\n".join(lines)


def _write_measures_summary(root: Path, measures: dict) -> None:
    lines = ["| poses | bone CV (median) | frames with a bone off | body reproj. px (median) | body jitter mm | "
             "body coverage | hands coverage | face coverage |", "|---|---|---|---|---|---|---|---|"]
    for name, m in measures.items():
        if not m.get("frames"):
            continue
        rep = m.get("reprojection_px_median", {}).get("body")
        lines.append(f"| after {name} | {m['bone_cv_median']} | {m['frames_bone_off_share']} | "
                     f"{'-' if rep is None else rep} | {m['jitter_mm']['body']} | {m['coverage']['body']} | "
                     f"{m['coverage']['hands']} | {m['coverage']['face']} |")
    text = "Measures without ground truth (evaluate/<stage>_measures.md):\n\n" + "\n".join(lines)
    with atomic_path(root / "evaluate" / "measures.md") as tmp:
        tmp.write_text(text + "\n")
    log.info("evaluate:\n%s", text)


def plot_statistics(root: Path, results: dict) -> None:
    """``evaluate/statistics.png``: per-part completeness after triangulation, and error distributions by part."""
    fig = new_figure((15, 4))
    axes = fig.subplots(1, 3)
    summary = root / "triangulate" / "summary.json"
    if summary.exists():
        s = read_json(summary)
        parts = list(s["keypoints_reconstructed_share"])
        x = np.arange(len(parts))
        axes[0].bar(x - 0.2, [100 * s["keypoints_reconstructed_share"][p] for p in parts], 0.4, label="keypoints")
        axes[0].bar(x + 0.2, [100 * s["part_complete_poses_share"][p] for p in parts], 0.4, label="poses complete")
        axes[0].set_xticks(x, parts)
        axes[0].set_ylabel("% after triangulation")
        axes[0].set_title("completeness by part")
        axes[0].legend(fontsize=8)
    for ax, name in zip(axes[1:], (list(results)[0], list(results)[-1])):
        h = results[name]["histogram"]
        for p in ("body", "face", "hands"):
            counts = np.asarray(h[p], dtype=float)
            if counts.sum():
                edges = np.arange(len(counts)) * h["bin_mm"]
                ax.plot(edges, np.cumsum(counts) / counts.sum(), label=p)
        ax.set_xlabel("world error (mm)")
        ax.set_ylabel("share of keypoints below")
        ax.set_title(f"error distribution: {'selected poses' if name == 'dataset' else 'after ' + name}")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, root / "evaluate" / "statistics.png")


def evaluate_stages(root: Path, stages: list[str], source, selected_stage: str | None = None) -> dict:
    """Score stages' poses against the source's ground truth in one pass, and write each one's report.

    Every sequence is read once for all stages, and its ground truth made once per chunk of frames for all of them
    (for the synthetic capture, making it is the costly part).

    Args:
        root: the build directory.
        stages: pose stages to score on all their poses (reports ``evaluate/<stage>.{json,md}``).
        source: the recording source (its ``ground_truth(sequence, frames)`` gives (T, J, 3) mm or None).
        selected_stage: also score this stage's poses that ``filter`` selected (report ``evaluate/dataset.*``);
            None: no dataset report.

    Returns:
        name -> result table (the stages' names, then ``dataset``).
    """
    targets = [(s, s, False) for s in stages] + ([("dataset", selected_stage, True)] if selected_stage else [])
    manifests = {stage: finished_manifest(root, stage) for _, stage, _ in targets}
    units: dict[tuple[str, str], dict] = {}
    for m in manifests.values():
        for u in m["units"]:
            units.setdefault((u["subject"], u["sequence"]), u)
    has = {stage: {(u["subject"], u["sequence"]) for u in m["units"]} for stage, m in manifests.items()}
    stats = {name: ErrorStats() for name, _, _ in targets}
    poses = dict.fromkeys(stats, 0)
    skipped: dict[str, list[str]] = {name: [] for name in stats}
    for key, u in progress(list(units.items()), desc="evaluate", unit="seq"):
        seq = Recording(u["subject"], u["action"], u["sequence"])
        with ExitStack() as files:
            reads = {}  # name -> (open file, frames, rows to score)
            for name, stage, selected_only in targets:
                if key not in has[stage]:
                    continue
                path = root / stage / u["subject"] / f"{u['sequence']}.h5"
                f = files.enter_context(open_h5(path))
                frames = f["frames"][:]
                if np.any(np.diff(frames) <= 0):
                    raise BuildDirError(f"{path}: dataset 'frames' is not strictly increasing; rebuild `{stage}`")
                keep = np.ones(len(frames), bool)
                if selected_only:
                    with open_h5(root / "filter" / u["subject"] / f"{u['sequence']}.h5") as g:
                        keep = g["selected"][:]
                reads[name] = (f, frames, keep)
            wanted = np.unique(np.concatenate([fr[k] for _, fr, k in reads.values()]))
            for s in range(0, len(wanted), CHUNK_FRAMES):  # stream: memory stays flat with sequence length
                chunk = wanted[s:s + CHUNK_FRAMES]
                gt = source.ground_truth(seq, chunk)
                if gt is None:
                    for name in reads:
                        skipped[name].append(seq.key)
                    break
                for name, (f, frames, keep) in reads.items():
                    lo, hi = np.searchsorted(frames, chunk[0]), np.searchsorted(frames, chunk[-1], side="right")
                    mask = keep[lo:hi]
                    if not mask.any():
                        continue
                    rows = np.searchsorted(chunk, frames[lo:hi][mask])
                    stats[name].add(f["keypoints_3d"][lo:hi][mask].astype(np.float64), gt[rows])
                    poses[name] += int(mask.sum())
    results = {}
    for name, stage, selected_only in targets:
        table = stats[name].table()
        table["histogram"] = stats[name].histogram()
        table.update(stage=stage, poses=poses[name], sequences_scored=len(manifests[stage]["units"]) - len(
            skipped[name]), sequences_without_ground_truth=skipped[name])
        write_json(root / "evaluate" / f"{name}.json", table)
        text = format_table({k: v for k, v in table.items() if k not in _META})
        title = f"the selected poses (after `{stage}` and `filter`)" if selected_only else f"all poses after `{stage}`"
        with atomic_path(root / "evaluate" / f"{name}.md") as tmp:
            tmp.write_text(f"# Accuracy of {title}: {poses[name]} poses\n\n{text}\n")
        if skipped[name]:
            log.warning("evaluate %s: %d sequences have no ground truth and were skipped", name, len(skipped[name]))
        results[name] = table
    return results


def _write_summary(root: Path, results: dict) -> None:
    """Stages side by side (mean mm; median in brackets), and the dataset's size and accuracy."""
    head = "| poses | n | whole | body | face | hands | face (nose-aligned) | hands (wrist-aligned) | built |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name, t in results.items():
        def cell(variant: str, part: str, t: dict = t) -> str:
            r = t[variant][part]
            return "-" if r["mean_mm"] is None else f"{r['mean_mm']:.1f} ({r['median_mm']:.1f})"

        label = "selected (dataset)" if name == "dataset" else f"after {name}"
        lines.append(f"| {label} | {t['poses']} | " + " | ".join(cell("absolute", p) for p in
                                                              ("whole", "body", "face", "hands"))
                     + f" | {cell('face_aligned', 'face')} | {cell('hands_aligned', 'hands')} | "
                     f"{100 * t['coverage']['whole']:.1f}% |")
    text = "World error in mm, mean (median), over the keypoints built:\n\n" + "\n".join(lines)
    if "dataset" in results:
        d = results["dataset"]
        text += (f"\n\nDataset: {d['poses']} poses ({4 * d['poses']} images), whole-body error "
                 f"{d['absolute']['whole']['mean_mm']} mm mean, {d['absolute']['whole']['median_mm']} mm median "
                 f"(mid-hip centred: {d['root_relative']['whole']['mean_mm']} mm mean)")
    with atomic_path(root / "evaluate" / "summary.md") as tmp:
        tmp.write_text(text + "\n")
    log.info("evaluate:\n%s", text)
