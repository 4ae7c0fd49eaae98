"""The triangulation rule's steps measured one by one on the synthetic capture, against ground truth.

Detections come from the simulated detector on the synthetic capture (any rig: ``--rig h36m`` for Human3.6M's S1
cameras or a calibration file, e.g. a portrait 1088x1920 four-camera rig), with today's faults only or with the
plausible-but-wrong-limb faults as well (``--limb-faults``). Every variant triangulates the same detections:

- plain DLT; the rule before issue 13 (fixed 15 px, the view pair with the most inliers);
- a Pose2Sim-style minimal-exclusion rule (25 px);
- the new per-point rule, and the new rule with one step left out at a time, and with the pose-level steps added
  (left/right swaps fixed, the sequence check): the row "all steps" is what ``stage=triangulate`` does; the last
  row adds the optional soft bone-length constraint (``triangulate.bone_strength``).

It prints, per variant, the true error of the triangulated keypoints (mean / median / p95, mm) for body (+feet) and
hands, the share reconstructed, and the two measures that need no ground truth: the median over the 10 body bones
of the bone-length coefficient of variation per sequence, and the share of frames with one of them > 30% off.

    python benchmarks/bench_triangulation_rules.py [--rig h36m|FILE] [--limb-faults 0.3] [--subjects S1 S5]
        [--actions Posing Greeting Directions] [--duration 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from build_h3wb import skeleton
from build_h3wb.detectors.simulated import default_simulated_detector
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.geometry.sequence_check import person_size_px
from build_h3wb.geometry.triangulation import (
    reprojection_residuals,
    triangulate,
    triangulate_linear,
    triangulate_min_exclusion,
)
from build_h3wb.sources.synthetic import SyntheticSource
from build_h3wb.stages.triangulate import _triangulate_chunk

_i = skeleton.index
BODY_BONES = [(_i(f"{s}_{a}"), _i(f"{s}_{b}")) for s in ("left", "right")
              for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))]
BODY_BONES += [(_i("left_shoulder"), _i("right_shoulder")), (_i("left_hip"), _i("right_hip"))]


def normalized_residuals(X: np.ndarray, xy: np.ndarray, extr: np.ndarray) -> np.ndarray:
    """Points-first residuals, as the old rule was written: (N, 3), (N, C, 2) -> (N, C)."""
    return reprojection_residuals(X, np.moveaxis(xy, 1, 0), extr).T


def linear_points_first(xy: np.ndarray, w: np.ndarray, extr: np.ndarray) -> np.ndarray:
    """Points-first linear triangulation, as the old rule was written: (N, C, 2), (N, C) -> (N, 3)."""
    return triangulate_linear(np.moveaxis(xy, 1, 0), w.T, extr)


def rule_before_issue_13(uv: np.ndarray, score: np.ndarray, rig, threshold_px: float = 15.0) -> np.ndarray:
    """The robust rule as it was: fixed threshold; the view pair agreeing with the most views (then the lowest
    error) wins; one weighted re-solve. (N, C, 2) px, (N, C) -> (N, 3) mm (points first, as it was written)."""
    N, C = score.shape
    extr = np.stack([c.extrinsic for c in rig])
    focal = np.array([0.5 * (c.K[0, 0] + c.K[1, 1]) for c in rig])
    with np.errstate(invalid="ignore"):
        cand = np.isfinite(uv[..., 0]) & (score >= 0.3)
    w = np.where(cand, score, 0.0)
    xy = np.stack([np.stack(c.undistort_uv(uv[:, k, 0], uv[:, k, 1]), -1) for k, c in enumerate(rig)], 1)
    res = triangulate(np.moveaxis(uv, 1, 0), score.T, rig, robust=False)
    X = res.points.copy()
    used = np.stack([(res.views >> k) & 1 for k in range(C)], 1).astype(bool)
    with np.errstate(invalid="ignore"):
        err = normalized_residuals(X, xy, extr) * focal
        bad = (used & (err > threshold_px)).any(1)
    idx = np.flatnonzero(bad)
    xb, wb, cb = xy[idx], w[idx], cand[idx]
    M = len(idx)
    best_count, best_err = np.full(M, -1), np.full(M, np.inf)
    best = np.zeros((M, C), dtype=bool)
    opposing = rig.opposing(140.0)
    for a, b in itertools.combinations(range(C), 2):
        if opposing[a, b]:
            continue
        has = cb[:, a] & cb[:, b]
        pw = np.zeros((M, C))
        pw[:, a], pw[:, b] = np.where(has, wb[:, a], 0), np.where(has, wb[:, b], 0)
        Xp = linear_points_first(xb, pw, extr)
        with np.errstate(invalid="ignore"):
            e = normalized_residuals(Xp, xb, extr) * focal
            inl = cb & (e <= threshold_px) & has[:, None]
        count = inl.sum(1)
        me = np.where(count > 0, np.where(inl, e, 0).sum(1) / np.maximum(count, 1), np.inf)
        better = has & ((count > best_count) | ((count == best_count) & (me < best_err)))
        best_count, best_err = np.where(better, count, best_count), np.where(better, me, best_err)
        best[better] = inl[better]
    Xn = linear_points_first(xb, np.where(best, wb, 0.0), extr)
    with np.errstate(invalid="ignore"):
        keep = best & (normalized_residuals(Xn, xb, extr) * focal <= threshold_px)
    Xn = linear_points_first(xb, np.where(keep, wb, 0.0), extr)
    Xn[keep.sum(1) < 2] = np.nan
    X[idx] = Xn
    return X


def measures(X: np.ndarray, gt: np.ndarray, seq_of_frame: np.ndarray) -> dict:
    out = {}
    for part in ("body", "hands", "whole"):
        sl = skeleton.REPORT_PARTS[part]
        e = np.linalg.norm(X[:, sl] - gt[:, sl], axis=-1)
        ok = np.isfinite(e)
        out[part] = {"mean_mm": round(float(e[ok].mean()), 1), "median_mm": round(float(np.median(e[ok])), 1),
                     "p95_mm": round(float(np.percentile(e[ok], 95)), 1), "built": round(float(ok.mean()), 4)}
    cvs, off = [], []
    for s in np.unique(seq_of_frame):
        f = seq_of_frame == s
        L = np.stack([np.linalg.norm(X[f, a] - X[f, b], axis=-1) for a, b in BODY_BONES], 1)  # (t, 10)
        med = np.nanmedian(L, 0)
        cvs.append(np.nanstd(L, 0) / med)
        with np.errstate(invalid="ignore"):
            off.append((np.abs(L / med - 1) > 0.3).any(1))
    out["bone_cv_median"] = round(float(np.nanmedian(np.nanmedian(np.stack(cvs), 0))), 4)
    out["frames_bone_off_30pct"] = round(float(np.concatenate(off).mean()), 4)
    out["body_complete_frames"] = round(float(np.isfinite(X[:, skeleton.REPORT_PARTS["body"], 0]).all(1).mean()), 4)
    out["complete_poses"] = round(float(np.isfinite(X[..., 0]).all(1).mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rig", default="h36m")
    ap.add_argument("--limb-faults", type=float, default=0.0, help="detector.limb_fault_prob (0: today's faults)")
    ap.add_argument("--subjects", nargs="+", default=["S1", "S5", "S8"])
    ap.add_argument("--actions", nargs="+", default=["Posing", "Greeting", "Directions", "Photo", "Walking"])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    src = SyntheticSource(args.subjects, args.actions, duration_s=args.duration,
                          rig="" if args.rig == "h36m" else args.rig)
    seqs = src.sequences()
    # the person's size in this rig relative to Human3.6M's, for the detector's pixel quantities
    gt0 = src.ground_truth(seqs[0], src.frames(seqs[0]))
    ref = SyntheticSource(args.subjects[:1], args.actions[:1], duration_s=args.duration)
    size = lambda rig, g: np.nanmedian(person_size_px(np.stack([c.project(g) for c in rig]),  # noqa: E731
                                                      np.ones((len(rig), len(g), skeleton.NUM_KEYPOINTS)), rig))
    scale = 1.0 if args.rig == "h36m" else size(src.rig(seqs[0]), gt0) / size(h36m_rig("S1"), gt0)
    det = default_simulated_detector(limb_fault_prob=args.limb_faults, pixel_scale=scale)
    del ref

    base = {"min_score": 0.3, "opposing_angle_deg": 140.0, "min_ray_angle_deg": 10.0, "robust": True,
            "outlier_threshold_px": 15.0, "undistort_iterations": 5}
    full = {"person_threshold": 0.03, "min_threshold_px": 6.0, "fix_swaps": True, "sequence_check": True,
            "bone_tolerance": 0.2, "bone_tolerance_mm": 25.0, "max_speed_mm_s": 10000.0, "recover_relax": 2.0,
            "bone_strength": 0.0, "sync_max_shift": 0,
            "smooth_sigma_s": 0.03, "frame_dt_s": src.stride / src.video_fps}
    per_point = dict(full, fix_swaps=False, sequence_check=False, smooth_sigma_s=0.0)
    variants = {
        "plain DLT": None,
        "rule before issue 13 (15 px, best pair)": "before",
        "minimal exclusion (Pose2Sim-style, 25 px)": "minex",
        "new per-point rule": (base, per_point),
        "  - person-scaled threshold (fixed 15 px)": (base, dict(per_point, person_threshold=0.0)),
        "  - ray-angle conditioning": (dict(base, min_ray_angle_deg=0.0), per_point),
        "  + left/right swaps fixed": (base, dict(per_point, fix_swaps=True)),
        "  + sequence check (no swap fix)": (base, dict(per_point, sequence_check=True)),
        "  + swaps + sequence check, no smoothing": (base, dict(full, smooth_sigma_s=0.0)),
        "new rule, all steps (stage=triangulate)": (base, full),
        "  + bone lengths held (bone_strength=0.3, off by default)": (base, dict(full, bone_strength=0.3)),
    }
    gts, frames_seq, kps = [], [], []
    for k, seq in enumerate(seqs):
        frames = src.frames(seq)
        rig = src.rig(seq)
        kp = np.stack([np.concatenate([det(b) for b in src.batches(seq, cam, frames, 64)]) for cam in rig.names])
        kps.append(kp)
        gts.append(src.ground_truth(seq, frames))
        frames_seq.append(np.full(len(frames), k))
    gt, seq_of_frame = np.concatenate(gts), np.concatenate(frames_seq)
    J = skeleton.NUM_KEYPOINTS
    results = {"rig": args.rig, "pixel_scale": round(float(scale), 3), "limb_fault_prob": args.limb_faults,
               "sequences": len(seqs), "poses": len(gt), "variants": {}}
    for name, how in variants.items():
        t0 = time.perf_counter()
        Xs = []
        for kp, seq in zip(kps, seqs):
            rig = src.rig(seq)
            C, T = kp.shape[:2]
            kp = kp.astype(np.float64)  # (C, T, J, 3) views first
            if how is None:
                X = triangulate(kp[..., :2], kp[..., 2], rig, robust=False).points
            elif how == "before":
                flat = np.moveaxis(kp, 0, 2).reshape(T * J, C, 3)  # the old rule is points first
                X = rule_before_issue_13(flat[..., :2], flat[..., 2], rig)
            elif how == "minex":
                X = triangulate_min_exclusion(kp[..., :2], kp[..., 2], rig, threshold_px=25.0 * scale).points
            else:
                X = _triangulate_chunk(kp, rig, how[0], how[1])["points"]
            Xs.append(X.reshape(T, J, 3))
        m = measures(np.concatenate(Xs), gt, seq_of_frame)
        m["seconds"] = round(time.perf_counter() - t0, 2)
        results["variants"][name] = m
        b, h = m["body"], m["hands"]
        print(f"{name:58s} body {b['mean_mm']:6.1f} / {b['median_mm']:5.1f} / {b['p95_mm']:6.1f}"
              f" built {100 * b['built']:5.1f}%  hands {h['mean_mm']:6.1f} / {h['p95_mm']:6.1f}"
              f" built {100 * m['hands']['built']:5.1f}%  bone CV {m['bone_cv_median']:.3f}"
              f" off {100 * m['frames_bone_off_30pct']:4.1f}%  body complete {100 * m['body_complete_frames']:5.1f}%"
              f"  complete poses {100 * m['complete_poses']:5.1f}%",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
