"""Completion accuracy: the network against the nearest-pose and low-rank baselines on a held-out subject.

Ground truth from the synthetic source (:func:`build_h3wb.synthetic.motion.generate_motion`): train on S1, S5, S6,
S7 and test on S8, every action, 20 s at 10 fps each (what the synthetic source gives); holes in the test poses from
:func:`build_h3wb.completion.train.make_masks`. Errors are mean Euclidean errors (mm) over the filled keypoints, by
report part. The network is trained at the default configuration unless overridden.

    python benchmarks/bench_completion.py [--epochs N] [--device auto] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import numpy as np
import torch

from build_h3wb import skeleton
from build_h3wb.completion.baselines import lowrank_completion, mean_pose_completion, nearest_pose_completion
from build_h3wb.completion.config import CompletionConfig
from build_h3wb.completion.train import complete_poses, make_masks, resolve_device, train_completion
from build_h3wb.synthetic.motion import ACTIONS, generate_motion

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7")
TEST_SUBJECT = "S8"


def motion(subjects, duration_s: float, fps: float) -> np.ndarray:
    t = np.arange(0.0, duration_s, 1.0 / fps)
    return np.concatenate([generate_motion(s, a, t) for s in subjects for a in ACTIONS])


def part_errors(pred: np.ndarray, gt: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    e = np.linalg.norm(pred - gt, axis=-1)  # (N, J) mm
    return {p: float(e[:, sl][hidden[:, sl]].mean()) for p, sl in skeleton.REPORT_PARTS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="override the default number of epochs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per sequence")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    train = motion(TRAIN_SUBJECTS, args.duration, args.fps)
    test = motion((TEST_SUBJECT,), args.duration, args.fps)
    hidden = make_masks(len(test), np.random.default_rng([args.seed, 99]))
    holes = test.copy()
    holes[hidden] = np.nan

    cfg = CompletionConfig() if args.epochs is None else CompletionConfig(epochs=args.epochs)
    device = resolve_device(args.device)
    model, history = train_completion(train, cfg, device=device, seed=args.seed)

    rows: dict[str, dict] = {}
    t = time.perf_counter()
    filled, _ = complete_poses(model, holes, device=device)
    rows["network"] = {**part_errors(filled, test, hidden), "fill_s": time.perf_counter() - t}
    for name, fn in [
        ("nearest pose", nearest_pose_completion),
        ("low-rank (rank 40)", lowrank_completion),
        ("low-rank (rank 60)", lambda a, b: lowrank_completion(a, b, rank=60)),
        ("mean pose", mean_pose_completion),
    ]:
        t = time.perf_counter()
        out = fn(train, holes)
        rows[name] = {**part_errors(out, test, hidden), "fill_s": time.perf_counter() - t}

    hid = {p: int(hidden[:, sl].sum()) for p, sl in skeleton.REPORT_PARTS.items()}
    print(f"Train {len(train)} poses ({', '.join(TRAIN_SUBJECTS)}), test {len(test)} poses ({TEST_SUBJECT}), "
          f"hidden keypoints: " + ", ".join(f"{p} {n}" for p, n in hid.items()))
    print(f"Network: {history['num_params']:,} parameters, {cfg.epochs} epochs, trained in "
          f"{history['train_time_s']:.1f} s on {device} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads)\n")
    print("| method | body | face | hands | whole | fill time (s) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['body']:.1f} | {r['face']:.1f} | {r['hands']:.1f} | {r['whole']:.1f} | "
              f"{r['fill_s']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "history": history, "config": cfg.to_dict(), "hidden": hid}, f, indent=1)


if __name__ == "__main__":
    main()
