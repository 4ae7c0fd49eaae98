"""Hand and face refinement on a built capture: error against ground truth and reprojection error, before and after.

Needs the detect and triangulate artifacts of a synthetic build (CPU, about 15 s for the default capture)::

    python -m build_h3wb stage=all build.dir=/tmp/refine_build
    python benchmarks/bench_refinement.py --build /tmp/refine_build [--prior-weight 1.0] [--temporal-window 0]
        [--rank-face 4] [--rank-hand 10] [--train 500] [--json out.json]

Shape models are learned, per subject (pooled with scale where a subject has fewer than ``--min-subject`` complete
poses), from that subject's ``--train`` complete triangulated poses with the lowest mean reprojection error; no
ground truth is used to build or run the refinement. Errors use ``build_h3wb.evaluation.keypoint_errors`` on the
keypoints present both before and after (keypoints only built by the refinement are reported apart). "Well seen":
keypoints of the refined parts triangulated from >= 3 views, every one of them with score >= 0.6; their reprojection
error is the mean pixel distance (with lens distortion) to the detections of the views the triangulation used.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import h5py
import numpy as np

from build_h3wb import skeleton
from build_h3wb.build import read_rig
from build_h3wb.config import SyntheticDataConfig, option_values
from build_h3wb.evaluation import keypoint_errors
from build_h3wb.geometry.triangulation import view_mask
from build_h3wb.refine.refinement import DEFAULT_RANKS, REFINED_PARTS, fit_part_models, refine_sequence
from build_h3wb.sources.base import Recording
from build_h3wb.sources.synthetic import SyntheticSource

VARIANTS = (("absolute", "face"), ("absolute", "hands"), ("root_relative", "face"), ("root_relative", "hands"),
            ("face_aligned", "face"), ("hands_aligned", "hands"))


def load(build: Path) -> list[dict]:
    """Every sequence's detections, triangulation and rig."""
    out = []
    for tri_path in sorted((build / "triangulate").glob("*/*.h5")):
        det_path = build / "detect" / tri_path.parent.name / tri_path.name
        with h5py.File(tri_path, "r") as t, h5py.File(det_path, "r") as d:
            out.append({
                "subject": t.attrs["subject"], "action": t.attrs["action"], "sequence": t.attrs["sequence"],
                "kp3d": t["keypoints_3d"][:], "views_used": t["views_used"][:], "num_views": t["num_views"][:],
                "reproj": t["reprojection_error"][:], "frames": t["frames"][:],
                "det": d["keypoints"][:], "rig": read_rig(dict(d.attrs), str(det_path)),
            })
    return out


def training_poses(seqs: list[dict], n: int) -> np.ndarray:
    """The n complete poses with the lowest mean reprojection error among the sequences: (n, J, 3) mm."""
    kp = np.concatenate([s["kp3d"] for s in seqs])
    err = np.concatenate([s["reproj"] for s in seqs])
    complete = np.isfinite(kp).all((1, 2))
    order = np.argsort(np.where(complete, np.nanmean(np.where(complete[:, None], err, 0.0), 1), np.inf))
    return kp[order[: min(n, int(complete.sum()))]]


def build_models(data: list[dict], args) -> tuple[dict, float]:
    ranks = {"face": args.rank_face, "left_hand": args.rank_hand, "right_hand": args.rank_hand}
    t0 = time.perf_counter()
    by_subject = {}
    for s in data:
        by_subject.setdefault(s["subject"], []).append(s)
    pooled = None
    models = {}
    for subject, seqs in by_subject.items():
        poses = training_poses(seqs, args.train)
        if len(poses) >= args.min_subject:
            models[subject] = fit_part_models(poses, REFINED_PARTS, ranks, subject=subject)
        else:
            if pooled is None:
                pooled = fit_part_models(training_poses(data, args.train * 2), REFINED_PARTS, ranks, similarity=True)
            models[subject] = pooled
            logging.info("subject %s: %d complete poses, pooled model", subject, len(poses))
    return models, time.perf_counter() - t0


def well_seen(s: dict, min_views: int = 3, min_score: float = 0.6) -> np.ndarray:
    """(T, J) bool keypoints of the refined parts seen well: >= min_views used, each with score >= min_score."""
    C = s["det"].shape[0]
    used = view_mask(s["views_used"], C)  # (C, T, J)
    score = np.nan_to_num(s["det"][..., 2], nan=0.0)
    good = (s["num_views"] >= min_views) & np.where(used, score >= min_score, True).all(0)
    part = np.zeros(good.shape[1], bool)
    for p in REFINED_PARTS:
        part[skeleton.PARTS[p]] = True
    return good & part


def reprojection(X: np.ndarray, s: dict, sel: np.ndarray) -> np.ndarray:
    """Mean pixel distance (over the views used) of the selected keypoints X (T, J, 3) to their detections."""
    C = s["det"].shape[0]
    used = view_mask(s["views_used"], C)  # (C, T, J)
    tot = np.zeros(X.shape[:2])
    for c, cam in enumerate(s["rig"]):
        u, v = cam.project_uv(X)
        d = np.hypot(u - s["det"][c, ..., 0], v - s["det"][c, ..., 1])
        tot += np.where(used[c], d, 0.0)
    return (tot / np.maximum(used.sum(0), 1))[sel]


def run(args) -> dict:
    data = load(Path(args.build))
    cfg = SyntheticDataConfig(**option_values("data", "synthetic", SyntheticDataConfig))
    source = SyntheticSource(cfg.subjects, cfg.actions, repeats=cfg.repeats, duration_s=cfg.duration_s,
                             video_fps=cfg.video_fps, stride=cfg.stride, seed=cfg.seed)
    models, t_fit = build_models(data, args)
    acc = {k: {"before": [], "after": []} for k in VARIANTS}
    new_err = {"face": [], "hands": []}
    rep_before, rep_after, rep_gt = [], [], []
    ws_err = ([], [])
    moved = {"face": 0, "hands": 0}
    total = {"face": 0, "hands": 0}
    t_ref = 0.0
    for s in data:
        gt = source.ground_truth(Recording(s["subject"], s["action"], s["sequence"]), s["frames"])
        t0 = time.perf_counter()
        out, mask = refine_sequence(s["kp3d"], s["det"], s["rig"], models[s["subject"]], views_used=s["views_used"],
                                    frames=s["frames"], prior_weight=args.prior_weight,
                                    temporal_window=args.temporal_window, noise_mm=args.noise_mm,
                                    temporal_weight=args.temporal_weight, trust_views=args.trust_views,
                                    trust_power=args.trust_power, keep_views=args.keep_views)
        t_ref += time.perf_counter() - t0
        before = keypoint_errors(s["kp3d"].astype(np.float64), gt)
        after = keypoint_errors(out.astype(np.float64), gt)
        for v, p in VARIANTS:
            sl = skeleton.REPORT_PARTS[p]
            both = np.isfinite(before[v][:, sl]) & np.isfinite(after[v][:, sl])
            acc[(v, p)]["before"].append(before[v][:, sl][both])
            acc[(v, p)]["after"].append(after[v][:, sl][both])
        for p in ("face", "hands"):
            sl = skeleton.REPORT_PARTS[p]
            new = ~np.isfinite(s["kp3d"][:, sl, 0]) & np.isfinite(out[:, sl, 0])
            new_err[p].append(after["absolute"][:, sl][new])
            moved[p] += int(mask[:, sl].sum())
            total[p] += mask[:, sl].size
        sel = well_seen(s)
        rep_before.append(reprojection(s["kp3d"].astype(np.float64), s, sel))
        rep_after.append(reprojection(out.astype(np.float64), s, sel))
        rep_gt.append(reprojection(gt, s, sel))
        ws_err[0].append(before["absolute"][sel])
        ws_err[1].append(after["absolute"][sel])
    result = {"errors": {}, "new_keypoints": {}, "settings": vars(args).copy()}
    for (v, p), d in acc.items():
        b, a = np.concatenate(d["before"]), np.concatenate(d["after"])
        result["errors"][f"{v}/{p}"] = {"n": int(b.size), "before_mean": float(b.mean()),
                                         "before_median": float(np.median(b)), "after_mean": float(a.mean()),
                                         "after_median": float(np.median(a))}
    for p, e in new_err.items():
        e = np.concatenate(e)
        result["new_keypoints"][p] = {"n": int(e.size), "mean_mm": float(e.mean()) if e.size else None,
                                      "median_mm": float(np.median(e)) if e.size else None,
                                      "refined_share": moved[p] / max(total[p], 1)}
    rb, ra = np.concatenate(rep_before), np.concatenate(rep_after)
    result["reprojection_well_seen"] = {"n": int(rb.size), "before_px": float(rb.mean()), "after_px": float(ra.mean()),
                                        "ground_truth_px": float(np.concatenate(rep_gt).mean()),
                                        "before_mm": float(np.concatenate(ws_err[0]).mean()),
                                        "after_mm": float(np.concatenate(ws_err[1]).mean())}
    poses = sum(len(s["frames"]) for s in data)
    result["runtime"] = {"fit_s": t_fit, "refine_s": t_ref, "poses": poses, "poses_per_s": poses / t_ref,
                         "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    return result


def markdown(r: dict) -> str:
    lines = ["| error (mm) | part | keypoints | before mean | after mean | before median | after median |",
             "|---|---|---|---|---|---|---|"]
    for k, e in r["errors"].items():
        v, p = k.split("/")
        lines.append(f"| {v} | {p} | {e['n']} | {e['before_mean']:.2f} | **{e['after_mean']:.2f}** | "
                     f"{e['before_median']:.2f} | **{e['after_median']:.2f}** |")
    rp = r["reprojection_well_seen"]
    lines.append(f"\nReprojection error of well-seen hand/face keypoints (>= 3 views, all scores >= 0.6; n={rp['n']}): "
                 f"{rp['before_px']:.3f} px before, {rp['after_px']:.3f} px after "
                 f"(the ground truth: {rp['ground_truth_px']:.3f} px); "
                 f"their absolute error {rp['before_mm']:.2f} mm before, {rp['after_mm']:.2f} mm after.")
    for p, e in r["new_keypoints"].items():
        if e["n"]:
            lines.append(f"Newly built {p} keypoints: {e['n']}, absolute error mean {e['mean_mm']:.1f} / median "
                         f"{e['median_mm']:.1f} mm; keypoints refined: {100 * e['refined_share']:.1f}%.")
        else:
            lines.append(f"Newly built {p} keypoints: 0; keypoints refined: {100 * e['refined_share']:.1f}%.")
    rt = r["runtime"]
    lines.append(f"Runtime: models {rt['fit_s']:.2f} s, refinement {rt['refine_s']:.2f} s for {rt['poses']} poses "
                 f"({rt['poses_per_s']:.0f} poses/s, {rt['machine']}).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="/tmp/refine_build")
    ap.add_argument("--prior-weight", type=float, default=4.0)
    ap.add_argument("--temporal-window", type=int, default=2)
    ap.add_argument("--temporal-weight", type=float, default=1.0)
    ap.add_argument("--noise-mm", type=float, default=10.0)
    ap.add_argument("--trust-views", type=float, default=1.0, help="inf: never fade the prior")
    ap.add_argument("--trust-power", type=float, default=8.0)
    ap.add_argument("--keep-views", type=int, default=0, help="keep well-seen keypoints (>= N views) as triangulated")
    ap.add_argument("--rank-face", type=int, default=DEFAULT_RANKS["face"])
    ap.add_argument("--rank-hand", type=int, default=DEFAULT_RANKS["left_hand"])
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--min-subject", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = run(args)
    print(markdown(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
