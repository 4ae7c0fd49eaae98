"""Completion accuracy and training time: network variants against the nearest-pose and low-rank baselines.

Two kinds of data:

- default (ground-truth poses): the synthetic source's motion (:func:`build_h3wb.synthetic.motion.generate_motion`),
  train on S1, S5, S6, S7 and test on S8, every action, 20 s at 10 fps each; holes in the test poses from
  :func:`build_h3wb.completion.train.make_masks`.
- ``--build DIR`` (a build's triangulated poses, what ``stage=complete`` sees): train on the build's complete
  triangulated poses with the stage's split and mask bank (``complete.seed`` 0, 10% held out), fill the real holes
  of every incomplete pose with the stage's robust input rule, and score the filled keypoints against the synthetic
  ground truth (the build must use the default synthetic capture, ``data.*`` at its defaults). The baselines run on
  a random subset of ``--baseline-poses`` incomplete poses, with the network again on the same subset.

Errors are mean Euclidean errors (mm) over the filled keypoints, by report part. Each variant (``--variant
NAME:key=value,key=value`` over :class:`~build_h3wb.completion.config.CompletionConfig`, repeatable; default: the
default configuration) is trained ``--repeats`` times with seeds 0, 1, ... in one process, variants interleaved; the
table gives medians (training time, epochs run, errors) and the error range over the seeds.

    python benchmarks/bench_completion.py [--build outputs/default] [--variant fast:epochs=40,patience=8]
        [--variant tuned:init=prior,epochs=20,prior_epochs=40] [--repeats 3] [--threads N] [--device auto]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import torch

from build_h3wb import skeleton
from build_h3wb.completion.baselines import lowrank_completion, mean_pose_completion, nearest_pose_completion
from build_h3wb.completion.config import CompletionConfig
from build_h3wb.completion.prior import SyntheticPriorData, synthetic_prior
from build_h3wb.completion.train import complete_poses, make_masks, resolve_device, train_completion
from build_h3wb.config import CompleteConfig, option_values
from build_h3wb.sources.base import Recording
from build_h3wb.sources.synthetic import SyntheticSource
from build_h3wb.synthetic.motion import ACTIONS, generate_motion

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7")
TEST_SUBJECT = "S8"


def motion(subjects, duration_s: float, fps: float) -> np.ndarray:
    t = np.arange(0.0, duration_s, 1.0 / fps)
    return np.concatenate([generate_motion(s, a, t) for s in subjects for a in ACTIONS])


def part_errors(pred: np.ndarray, gt: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    e = np.linalg.norm(pred - gt, axis=-1)  # (N, J) mm
    out = {}
    for p, sl in skeleton.REPORT_PARTS.items():
        v = e[:, sl][hidden[:, sl]]
        v = v[np.isfinite(v)]
        out[p] = float(v.mean()) if v.size else float("nan")
    return out


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value,key=value' -> (name, overrides) with values typed like the CompletionConfig defaults.

    Two more keys: ``init=prior`` fine-tunes the synthetic prior (``build_h3wb.completion.prior``, default
    ``complete.prior`` data, trained with the variant's configuration and ``prior_epochs`` epochs, cached in
    ``--prior-cache``) instead of training from scratch.
    """
    name, _, rest = text.partition(":")
    model = CompletionConfig.from_conf()
    defaults = model.to_dict() | {"init": "scratch", "prior_epochs": model.epochs}
    over = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise SystemExit(f"--variant {text!r}: unknown CompletionConfig key {key!r}")
        kind = type(defaults[key])
        over[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return name, over


def ground_truth_data(args):
    train = motion(TRAIN_SUBJECTS, args.duration, args.fps)
    test = motion((TEST_SUBJECT,), args.duration, args.fps)
    hidden = make_masks(len(test), np.random.default_rng([0, 99]))
    holes = test.copy()
    holes[hidden] = np.nan
    desc = (f"ground-truth poses: train {len(train)} ({', '.join(TRAIN_SUBJECTS)}), test {len(test)} "
            f"({TEST_SUBJECT}) with simulated holes")
    return {"train": train, "val": None, "bank": None, "holes": holes, "gt": test, "robust_mm": None,
            "sub": np.arange(len(test)), "baseline_train": train, "desc": desc}


def build_data(args):
    from build_h3wb.stages.complete import _per_keypoint, _training_poses

    root = Path(args.build)
    manifest = json.loads((root / "triangulate" / "manifest.json").read_text())
    units = manifest["units"]
    ccfg = option_values("complete", "default", CompleteConfig)
    train, val, bank = _training_poses(root, units, ccfg["max_train_poses"], ccfg["val_share"], ccfg["seed"])
    described = json.loads((root / "detect" / "manifest.json").read_text())["config"]["source"]
    if described.get("source") != "synthetic":
        raise SystemExit(f"--build {root}: needs a build of the synthetic capture (ground truth), got {described}")
    source = SyntheticSource(**{k: v for k, v in described.items() if k != "source"})
    holes, gts = [], []
    for u in units:
        with h5py.File(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5", "r") as f:
            kp = f["keypoints_3d"][:].astype(np.float64)
            frames = f["frames"][:]
        vis = np.isfinite(kp).all(-1)
        sel = ~vis.all(1) & vis[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]].all(1)
        holes.append(kp[sel])
        gts.append(source.ground_truth(Recording(u["subject"], u["action"], u["sequence"]), frames[sel]))
    holes, gt = np.concatenate(holes), np.concatenate(gts)
    sub = np.random.default_rng(0).permutation(len(holes))[: args.baseline_poses]
    desc = (f"build {root}: train {len(train)} complete triangulated poses ({len(val)} held out), "
            f"{len(holes)} incomplete poses filled (baselines on {len(sub)})")
    return {"train": train, "val": val, "bank": bank, "holes": holes, "gt": gt,
            "robust_mm": _per_keypoint(ccfg["robust_fill_mm"]), "sub": sub,
            "baseline_train": np.concatenate([train, val]), "desc": desc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=None, help="a build directory (triangulate/ done) instead of ground truth")
    ap.add_argument("--variant", action="append", default=[], help="NAME:key=value,... (repeatable)")
    ap.add_argument("--epochs", type=int, default=None, help="override the number of epochs of every variant")
    ap.add_argument("--repeats", type=int, default=1, help="seeds per variant")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per sequence (ground-truth mode)")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--baseline-poses", type=int, default=2000)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--prior-cache", default=str(Path(tempfile.gettempdir()) / "bench_completion_priors"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    p = option_values("complete", "default", CompleteConfig)["prior"]
    prior_data = SyntheticPriorData(tuple(p["subjects"]), tuple(p["actions"]), p["seed"], p["duration_s"], p["fps"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = build_data(args) if args.build else ground_truth_data(args)
    holes, gt, sub = data["holes"], data["gt"], data["sub"]
    hidden = np.isnan(holes).any(-1)
    device = resolve_device(args.device)
    variants = [parse_variant(v) for v in args.variant] or [("default", {})]
    if args.epochs is not None:
        variants = [(n, {**o, "epochs": args.epochs}) for n, o in variants]

    runs: dict[str, list[dict]] = {n: [] for n, _ in variants}
    for seed in range(args.repeats):
        for name, over in variants:
            over = dict(over)
            init_mode, prior_epochs = over.pop("init", "scratch"), over.pop("prior_epochs", None)
            cfg = CompletionConfig.from_conf(**over)
            init, prior_s = None, None
            if init_mode == "prior":
                t = time.perf_counter()
                init, info = synthetic_prior(prior_data, replace(cfg, epochs=prior_epochs or cfg.epochs),
                                             args.prior_cache, seed=seed, device=device)
                prior_s = None if info["cached"] else time.perf_counter() - t
            t = time.perf_counter()
            cpu = time.process_time()
            model, history = train_completion(data["train"], cfg, device=device, seed=seed, progress=False,
                                              val_poses=data["val"], mask_bank=data["bank"], init=init)
            train_s, train_cpu = time.perf_counter() - t, time.process_time() - cpu
            t = time.perf_counter()
            filled, _ = complete_poses(model, holes, device=device, robust_mm=data["robust_mm"])
            fill_s = time.perf_counter() - t
            runs[name].append({"seed": seed, "train_s": train_s, "train_cpu_s": train_cpu, "fill_s": fill_s,
                               "prior_train_s": prior_s,
                               "epochs_run": len(history["epoch"]), "best_epoch": history.get("best_epoch"),
                               "num_params": history["num_params"], "all": part_errors(filled, gt, hidden),
                               "subset": part_errors(filled[sub], gt[sub], hidden[sub]),
                               "val_hidden_mm": history.get("val_hidden_mm")})
            r = runs[name][-1]
            logging.info("%s seed %d: %.1f s, %d epochs, whole %.2f body %.2f face %.2f hands %.2f", name, seed,
                         train_s, r["epochs_run"], *(r["all"][p] for p in ("whole", "body", "face", "hands")))

    baselines: dict[str, dict] = {}
    if not args.no_baselines:
        train_b = data["baseline_train"]
        for bname, fn in [
            ("nearest pose", nearest_pose_completion),
            ("low-rank (rank 40)", lowrank_completion),
            ("mean pose", mean_pose_completion),
        ]:
            t = time.perf_counter()
            out = fn(train_b, holes[sub])
            baselines[bname] = {**part_errors(out, gt[sub], hidden[sub]), "fill_s": time.perf_counter() - t}

    parts = ("body", "face", "hands", "whole")
    print(f"\n{data['desc']}; device {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads), {args.repeats} seed(s) per variant\n")
    print("| variant | parameters | epochs run | training s (median) | " + " | ".join(parts)
          + " | subset: " + " | ".join(parts) + " |")
    print("|---" * (5 + 2 * len(parts)) + "|")
    for name, rs in runs.items():
        def med(key, part=None, rs=rs):
            v = [r[key][part] if part else r[key] for r in rs]
            return float(np.median(v)), float(np.min(v)), float(np.max(v))

        def cell(key, part, rs=rs):
            m, lo, hi = med(key, part)
            return f"{m:.2f}" + (f" ({lo:.2f}-{hi:.2f})" if len(rs) > 1 else "")

        print(f"| {name} | {rs[0]['num_params']:,} | {med('epochs_run')[0]:.0f} | {med('train_s')[0]:.1f} | "
              + " | ".join(cell("all", p) for p in parts) + " | " + " | ".join(cell("subset", p) for p in parts)
              + " |")
    for bname, r in baselines.items():
        print(f"| {bname} | | | | | | | | " + " | ".join(f"{r[p]:.2f}" for p in parts) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"description": data["desc"], "threads": torch.get_num_threads(), "device": device,
                       "variants": dict(variants), "runs": runs, "baselines": baselines}, f, indent=1)


if __name__ == "__main__":
    main()
