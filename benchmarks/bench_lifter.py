"""The residual lifter baseline (Martinez et al. 2017) on an exported build's H3WB 2D->3D and I2D->3D tasks.

Trains on ``2Dto3D_train.json`` (2D and 3D keypoints) and scores with :func:`build_h3wb.benchmark.metrics.score_all`:
2D->3D on ``2Dto3D_test_2d.json`` / ``2Dto3D_test_3d.json``; I2D->3D on ``I2Dto3D_test_2d.json`` hidden with the stored
``I2Dto3D_test_masks.npz`` (row i = i-th sample in ascending id order) / ``I2Dto3D_test_3d.json``, with a model trained
on freshly masked inputs every epoch. The learning curves plot the test error after every epoch for monitoring only:
the last epoch's model is scored, nothing is selected on the test set. A mean-pose row (the training set's mean
root-relative pose for every sample) gives the trivial reference.

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
import time
from pathlib import Path

import numpy as np
import torch

from build_h3wb import skeleton
from build_h3wb.benchmark.lifter import LifterConfig, plot_learning_curve, predict, save_lifter, train_lifter
from build_h3wb.benchmark.masking import load_masks
from build_h3wb.benchmark.metrics import OFFICIAL_KEYS, UNOFFICIAL_KEYS, score_all
from build_h3wb.export import load_h3wb_json

log = logging.getLogger("bench_lifter")
DEFAULT_EPOCHS = 12


def load_split(folder: Path, name: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_h3wb_json(folder / name)
    if d[key] is None:
        raise SystemExit(f"{folder / name}: no {key!r} field")
    return d["ids"], d[key]


def load_pair(folder: Path, name_2d: str, name_3d: str) -> tuple[np.ndarray, np.ndarray]:
    if name_2d == name_3d:
        d = load_h3wb_json(folder / name_2d)
        if d["keypoints_2d"] is None or d["keypoints_3d"] is None:
            raise SystemExit(f"{folder / name_2d}: needs both keypoints_2d and keypoints_3d")
        return d["keypoints_2d"], d["keypoints_3d"]
    ids2, kp2d = load_split(folder, name_2d, "keypoints_2d")
    ids3, kp3d = load_split(folder, name_3d, "keypoints_3d")
    if not np.array_equal(ids2, ids3):
        raise SystemExit(f"{name_2d} and {name_3d} hold different sample ids ({len(ids2)} vs {len(ids3)})")
    return kp2d, kp3d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=Path("outputs/default/export/json"),
                    help="folder of the exported H3WB JSON files")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lifter"),
                    help="folder for the learning-curve PNGs (and the models with --save-models)")
    ap.add_argument("--tasks", nargs="+", choices=("2d", "i2d"), default=["2d", "i2d"])
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--width", type=int, default=None, help="hidden width (default 1024)")
    ap.add_argument("--large", action="store_true", help="the large variant (width 2048)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr-decay", type=float, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-models", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    needed = ["2Dto3D_train.json", "2Dto3D_test_2d.json", "2Dto3D_test_3d.json", "I2Dto3D_test_2d.json",
              "I2Dto3D_test_3d.json", "I2Dto3D_test_masks.npz"]
    missing = [n for n in needed if not (args.export / n).is_file()]
    if missing:
        print(f"No exported build at {args.export} (missing {', '.join(missing)}).\n"
              "Make one with:  python -m build_h3wb stage=all\n"
              "or point --export at the json folder of an existing build.", file=sys.stderr)
        raise SystemExit(2)

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size}
    if args.width is not None:
        overrides["width"] = args.width
    if args.lr_decay is not None:
        overrides["lr_decay"] = args.lr_decay
    base = LifterConfig.large(**overrides) if args.large else LifterConfig(**overrides)

    t = time.perf_counter()
    train_2d, train_3d = load_pair(args.export, "2Dto3D_train.json", "2Dto3D_train.json")
    log.info("loaded %d training samples in %.1f s", len(train_2d), time.perf_counter() - t)
    tests: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    if "2d" in args.tasks:
        tests["2D->3D"] = (*load_pair(args.export, "2Dto3D_test_2d.json", "2Dto3D_test_3d.json"), None)
    if "i2d" in args.tasks:
        kp2d, kp3d = load_pair(args.export, "I2Dto3D_test_2d.json", "I2Dto3D_test_3d.json")
        masks, mask_seed = load_masks(args.export / "I2Dto3D_test_masks.npz")
        if masks.shape[0] != kp2d.shape[0]:
            raise SystemExit(f"I2Dto3D_test_masks.npz holds {masks.shape[0]} rows for {kp2d.shape[0]} test samples")
        log.info("I2D test masks: seed %d, %.1f%% of keypoints hidden", mask_seed, 100 * masks.mean())
        tests["I2D->3D"] = (kp2d, kp3d, masks)

    rel = train_3d - skeleton.root(train_3d)[:, None]
    mean_pose = rel.mean(axis=0)  # (J, 3) mm
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    histories: dict[str, dict] = {}
    for task, (kp2d, kp3d, masks) in tests.items():
        cfg = dataclasses.replace(base, i2d=masks is not None)
        t = time.perf_counter()
        model, stats, history = train_lifter(train_2d, train_3d, cfg, device=args.device, seed=args.seed,
                                             val=(kp2d, kp3d, masks) if masks is not None else (kp2d, kp3d))
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = predict(model, stats, kp2d, masks, device=args.device)
        pred_s = time.perf_counter() - t
        slug = "i2d" if cfg.i2d else "2d"
        plot_learning_curve(history, args.out / f"lifter_{slug}_curve.png",
                            title=f"residual lifter {task} (width {cfg.width}; test error for monitoring)")
        if args.save_models:
            save_lifter(args.out / f"lifter_{slug}.pt", model, cfg, stats, history)
        n_params = sum(p.numel() for p in model.parameters())
        rows[f"lifter {task}"] = {**score_all(pred, kp3d), "n_test": len(kp2d), "train_s": train_s,
                                  "predict_s": pred_s, "epochs": cfg.epochs, "params": n_params}
        rows[f"mean pose {task}"] = {**score_all(np.broadcast_to(mean_pose, kp3d.shape), kp3d), "n_test": len(kp2d),
                                     "train_s": 0.0, "predict_s": 0.0, "epochs": 0, "params": 0}
        histories[task] = history

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
