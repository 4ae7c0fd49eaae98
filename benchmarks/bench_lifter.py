"""The residual lifter baseline (Martinez et al. 2017) on an exported build's H3WB 2D->3D and I2D->3D tasks.

A thin wrapper around :mod:`build_h3wb.leaderboard.baseline` (the code ``python -m build_h3wb stage=lifter`` runs):
trains on ``2Dto3D_train.json`` and scores with :func:`build_h3wb.leaderboard.metrics.score_all`: 2D->3D on
``2Dto3D_test_2d.json`` / ``2Dto3D_test_3d.json``; I2D->3D on the masked ``I2Dto3D_test_2d.json`` (confidence 0 =
hidden) / ``I2Dto3D_test_3d.json``, with a model trained on freshly masked inputs every epoch.
The learning curves plot the test error after every epoch for monitoring only: the last epoch's model is scored,
nothing is selected on the test set. A mean-pose row (the training set's mean root-relative pose for every sample)
gives the trivial reference.

    python benchmarks/bench_lifter.py [--export outputs/default/export/json] [--out benchmarks/results/lifter]
        [--epochs N] [--width 1024 | --large] [--tasks 2d i2d] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from build_h3wb.config import LifterStageConfig, option_values
from build_h3wb.leaderboard.baseline import (
    lifter_config,
    load_test,
    load_train,
    mean_pose,
    missing_files,
    train_task,
)
from build_h3wb.leaderboard.lifter import plot_learning_curve, save_lifter
from build_h3wb.leaderboard.metrics import OFFICIAL_KEYS, UNOFFICIAL_KEYS, score_all

log = logging.getLogger("bench_lifter")
STAGE = option_values("lifter", "default", LifterStageConfig)  # the defaults of stage=lifter (conf/lifter)
TASKS = {"2d": "2Dto3D", "i2d": "I2Dto3D"}  # --tasks choice -> H3WB task
ROW_NAMES = {"2Dto3D": "2D->3D", "I2Dto3D": "I2D->3D"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=Path("outputs/default/export/json"),
                    help="folder of the exported H3WB JSON files")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lifter"),
                    help="folder for the learning-curve PNGs (and the models with --save-models)")
    ap.add_argument("--tasks", nargs="+", choices=tuple(TASKS), default=list(TASKS))
    ap.add_argument("--epochs", type=int, default=STAGE["epochs"])
    ap.add_argument("--width", type=int, default=None, help=f"hidden width (default {STAGE['width']})")
    ap.add_argument("--large", action="store_true", help="the large variant (width 2048)")
    ap.add_argument("--batch-size", type=int, default=STAGE["batch_size"])
    ap.add_argument("--lr-decay", type=float, default=STAGE["lr_decay"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=STAGE["seed"])
    ap.add_argument("--save-models", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    tasks = [task for choice, task in TASKS.items() if choice in args.tasks]
    missing = missing_files(args.export, tasks)
    if missing:
        print(f"No exported build at {args.export} (missing {', '.join(missing)}).\n"
              "Make one with:  python -m build_h3wb stage=all\n"
              "or point --export at the json folder of an existing build.", file=sys.stderr)
        raise SystemExit(2)
    width = args.width or (None if args.large else STAGE["width"])  # as the stage: large means 2048 unless given
    base = lifter_config(args.epochs, args.batch_size, width=width, large=args.large, lr_decay=args.lr_decay)

    train_2d, train_3d = load_train(args.export)
    reference = mean_pose(train_3d)  # (J, 3) mm
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    histories: dict[str, dict] = {}
    for task in tasks:
        test = load_test(args.export, task)
        run = train_task(train_2d, train_3d, test, base, device=args.device, seed=args.seed)
        slug = "i2d" if run.cfg.i2d else "2d"
        name = ROW_NAMES[task]
        plot_learning_curve(run.history, args.out / f"lifter_{slug}_curve.png",
                            title=f"residual lifter {name} (width {run.cfg.width}; test error for monitoring)")
        if args.save_models:
            save_lifter(args.out / f"lifter_{slug}.pt", run.model, run.cfg, run.stats, run.history)
        rows[f"lifter {name}"] = {**score_all(run.pred, test.kp3d), "n_test": len(test.ids), "train_s": run.train_s,
                                  "predict_s": run.predict_s, "epochs": run.cfg.epochs, "params": run.num_params}
        rows[f"mean pose {name}"] = {**score_all(np.broadcast_to(reference, test.kp3d.shape), test.kp3d),
                                     "n_test": len(test.ids), "train_s": 0.0, "predict_s": 0.0, "epochs": 0,
                                     "params": 0}
        histories[name] = run.history

    print(f"\nTrain {len(train_2d)} samples from {args.export}; width {base.width}, {base.num_blocks} blocks, "
          f"batch {base.batch_size}, lr {base.lr} x {base.lr_decay}/epoch, {base.epochs} epochs on {args.device} "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads). MPJPE in mm (pa_whole is not an official H3WB metric).\n")
    keys = OFFICIAL_KEYS + UNOFFICIAL_KEYS
    print("| method | N test | " + " | ".join(keys) + " | train (s) | epochs |")
    print("|---|---|" + "---|" * len(keys) + "---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['n_test']} | " + " | ".join(f"{r[k]:.1f}" for k in keys)
              + f" | {r['train_s']:.0f} | {r['epochs']} |")
    print(f"\nLearning curves in {args.out}")
    if args.json:
        out = {"rows": rows, "histories": histories, "config": dataclasses.asdict(base)}
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
