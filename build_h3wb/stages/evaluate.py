"""Stage ``evaluate``: score what was built, after whichever stages ran, against the source's ground truth.

For every finished pose stage (``triangulate``, ``complete``, ``refine``; or the one named by ``evaluate.stage``)
writes ``evaluate/<stage>.{json,md}`` (errors by variant and part, coverage), and, once ``filter`` has run,
``evaluate/dataset.{json,md}`` for the selected poses only: the accuracy of the dataset itself. A comparison of
the stages goes to ``evaluate/summary.md`` and ends the log. Sequences without ground truth are skipped and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, atomic_path, finished_manifest, open_h5, read_json, write_json
from build_h3wb.build import POSE_STAGES
from build_h3wb.evaluation import ErrorStats, format_table
from build_h3wb.sources.base import Sequence
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
    choice = str(cfg.evaluate.stage)
    if choice == "all":
        stages = done
    elif choice == "latest":
        stages = done[-1:]
    elif choice in POSE_STAGES:
        stages = [choice]
    else:
        raise ValueError(f"evaluate.stage={choice!r}; choose one of {['all', 'latest', *POSE_STAGES]}")
    source = make_source(cfg)
    results = {s: evaluate_stage(root, s, source) for s in stages}
    if (root / "filter" / "manifest.json").exists():
        assessed = finished_manifest(root, "filter")["config"].get("poses", done[-1])  # the poses filter selected
        results["dataset"] = evaluate_stage(root, assessed, source, selected_only=True)
    _write_summary(root, results)
    plot_statistics(root, results)
    return results


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


def evaluate_stage(root: Path, stage: str, source, selected_only: bool = False) -> dict:
    """Score one stage's poses (all, or only those the filter selected) and write its report."""
    manifest = finished_manifest(root, stage)
    stats = ErrorStats()
    skipped = []
    poses = 0
    name = "dataset" if selected_only else stage
    for u in progress(manifest["units"], desc=f"evaluate {name}", unit="seq"):
        seq = Sequence(u["subject"], u["action"], u["sequence"])
        keep = None
        if selected_only:
            with open_h5(root / "filter" / u["subject"] / f"{u['sequence']}.h5") as f:
                keep = f["selected"][:]
        with open_h5(root / stage / u["subject"] / f"{u['sequence']}.h5") as f:
            frames = f["frames"][:]
            for s in range(0, len(frames), CHUNK_FRAMES):  # stream: memory stays flat with sequence length
                sel = slice(s, s + CHUNK_FRAMES)
                mask = np.ones(len(frames[sel]), bool) if keep is None else keep[sel]
                if not mask.any():
                    continue
                gt = source.ground_truth(seq, frames[sel][mask])
                if gt is None:
                    skipped.append(seq.key)
                    break
                stats.add(f["keypoints_3d"][sel][mask].astype(np.float64), gt)
                poses += int(mask.sum())
    table = stats.table()
    table["histogram"] = stats.histogram()
    table.update(stage=stage, poses=poses, sequences_scored=len(manifest["units"]) - len(skipped),
                 sequences_without_ground_truth=skipped)
    write_json(root / "evaluate" / f"{name}.json", table)
    text = format_table({k: v for k, v in table.items() if k not in _META})
    title = f"the selected poses (after `{stage}` and `filter`)" if selected_only else f"all poses after `{stage}`"
    with atomic_path(root / "evaluate" / f"{name}.md") as tmp:
        tmp.write_text(f"# Accuracy of {title}: {poses} poses\n\n{text}\n")
    if skipped:
        log.warning("evaluate: %d sequences have no ground truth and were skipped", len(skipped))
    return table


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
