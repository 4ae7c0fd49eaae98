"""Do the measures without ground truth rank builds the way the true error does? On the synthetic capture.

Several builds of the same small synthetic capture differ in how good their detections are (the simulated
detector's noise and gross outliers scaled down or up) and in the triangulation (the robust rule on or off). For
each build this prints the true mean error of the body keypoints (world mm, against the ground truth) beside the
measures ``stage=evaluate`` writes without it (:mod:`build_h3wb.quality.measures`), and, per measure, the Spearman
rank correlation with the true error over the builds (1: the measure orders the builds exactly as the error does).
Coverage is not an error measure and is printed only.

    python benchmarks/bench_measures_ranking.py [--subjects S1] [--actions Walking Greeting] [--duration 10]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from build_h3wb import skeleton
from build_h3wb.config import SimulatedDetectorConfig, option_values
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.simulated import SimulatedDetector
from build_h3wb.geometry.triangulation import triangulate
from build_h3wb.quality import measures as qm
from build_h3wb.sources.synthetic import SyntheticSource

#: (name, noise scale, outlier scale, robust)
VARIANTS = (
    ("clean detector, robust", 0.5, 0.0, True),
    ("default detector, robust", 1.0, 1.0, True),
    ("default detector, plain DLT", 1.0, 1.0, False),
    ("noisy detector, robust", 2.0, 2.0, True),
    ("noisy detector, plain DLT", 2.0, 2.0, False),
    ("very noisy detector, robust", 4.0, 4.0, True),
)
MEASURES = ("bone_cv_median", "frames_bone_off_share", "reprojection_px_median_body", "jitter_mm_body")


def detector(noise: float, outliers: float, seed: int = 0) -> SimulatedDetector:
    """The simulated detector with its pixel noise and its gross-outlier probabilities scaled."""
    s = option_values("detector", "simulated", SimulatedDetectorConfig)
    s["noise_px"] = {k: v * noise for k, v in s["noise_px"].items()}
    for key in ("outlier_prob", "part_outlier_prob"):
        s[key] = {k: min(v * outliers, 0.5) for k, v in s[key].items()}
    s["swap_prob"] = min(s["swap_prob"] * outliers, 0.5)
    s["seed"] = seed
    return SimulatedDetector(**s)


def build_variant(source: SyntheticSource, det: SimulatedDetector, robust: bool) -> dict:
    """Detect, triangulate and measure every sequence of ``source``; returns the pooled measures and true error."""
    per_sequence, lengths, built = [], {}, []
    for seq in source.sequences():
        rig = source.rig(seq)
        frames = source.frames(seq)
        kp = np.stack([np.concatenate([check_detections(det(b), len(b.frames), det.name)[:, 0]
                                       for b in source.batches(seq, cam, frames, 256)]) for cam in rig.names])
        X = triangulate(kp[..., :2].astype(np.float64), np.nan_to_num(kp[..., 2]).astype(np.float64), rig,
                        robust=robust).points  # (C, T, J) views first -> (T, J, 3)
        built.append((seq, rig, frames, kp.astype(np.float64), X))
        lengths.setdefault(seq.subject, []).append(qm.bone_lengths(X))
    err_sum, err_n = 0.0, 0
    body = skeleton.REPORT_PARTS["body"]
    for seq, rig, frames, kp, X in built:
        ref = qm.subject_reference(lengths[seq.subject])
        per_sequence.append(qm.sequence_measures(X, frames, ref, kp, rig))
        e = np.linalg.norm(X[:, body] - source.ground_truth(seq, frames)[:, body], axis=-1)
        err_sum += float(np.nansum(e))
        err_n += int(np.isfinite(e).sum())
    pooled = qm.pool(per_sequence)
    return {"true_body_error_mm": err_sum / max(err_n, 1), "bone_cv_median": pooled["bone_cv_median"],
            "frames_bone_off_share": pooled["frames_bone_off_share"],
            "reprojection_px_median_body": pooled["reprojection_px_median"]["body"],
            "jitter_mm_body": pooled["jitter_mm"]["body"], "coverage_body": pooled["coverage"]["body"]}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (n,) arrays (average ranks for ties)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    """Build every variant, print the table and the rank correlations."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", nargs="+", default=["S1"])
    ap.add_argument("--actions", nargs="+", default=["Walking", "Greeting"])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    source = SyntheticSource(subjects=args.subjects, actions=args.actions, duration_s=args.duration)
    rows = {}
    for name, noise, outliers, robust in VARIANTS:
        rows[name] = build_variant(source, detector(noise, outliers), robust)
    truth = np.array([r["true_body_error_mm"] for r in rows.values()])
    corr = {m: round(spearman(truth, np.array([r[m] for r in rows.values()])), 3) for m in MEASURES}
    print("| build | true body error mm | bone CV (median) | frames with a bone off | body reproj. px (median) | "
          "body jitter mm | body coverage |\n|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['true_body_error_mm']:.1f} | {r['bone_cv_median']} | {r['frames_bone_off_share']} | "
              f"{r['reprojection_px_median_body']} | {r['jitter_mm_body']} | {r['coverage_body']} |")
    print("\nSpearman rank correlation with the true error over the builds: "
          + ", ".join(f"{m} {v}" for m, v in corr.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"builds": rows, "spearman": corr, "settings": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
