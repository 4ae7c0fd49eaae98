"""Time ``stage=export`` on a finished build: the whole stage and its largest file, medians of several runs.

``python benchmarks/bench_export.py --build outputs/smoke --repeat 5`` reruns the export stage in process
(``build.overwrite=true``; any other ``key=value`` after ``--`` is passed to Hydra, e.g. the build's experiment) and
reports the median wall time of the stage, the size of ``export/json/2Dto3D_train.json`` and its write rate, and how
``RGBto3D_train.json`` was made (a hard link is no second write). ``--writers`` also times each part of the export
on the build's sequences (views, HDF5, JSON, both npz; the JSON's MB/s), in a scratch folder under the build. The
result is written to
``benchmarks/results/export.json`` unless ``--out`` says otherwise. Compare two versions of the code by running the
script with each on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from build_h3wb.config import register_configs
from build_h3wb.stages import run_stage

CONF = Path(__file__).resolve().parents[1] / "conf"


def time_export(build: Path, overrides: list[str], repeat: int) -> dict:
    """Run the export stage ``repeat`` times; return the per-run seconds and the file facts of the last run."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config",
                      overrides=["stage=export", f"build.dir={build}", "build.overwrite=true", *overrides])
    seconds = []
    for _ in range(repeat):
        t = time.perf_counter()
        run_stage(cfg)
        seconds.append(time.perf_counter() - t)
    folder = build / "export" / "json"
    train, rgb = folder / "2Dto3D_train.json", folder / "RGBto3D_train.json"
    same = rgb.is_symlink() or os.stat(train).st_ino == os.stat(rgb).st_ino
    sizes = {p.name: p.stat().st_size for p in sorted((build / "export").rglob("*")) if p.is_file()}
    return {"seconds": seconds, "median_s": statistics.median(seconds), "train_json_mb": sizes[train.name] / 1e6,
            "rgb_train_shares_content": same, "files_mb": {k: round(v / 1e6, 2) for k, v in sizes.items()}}


def time_writers(build: Path, repeat: int) -> dict:
    """Median seconds of each export step on the build's selected poses, written to ``<build>/bench_export_tmp``."""
    import shutil  # noqa: PLC0415

    from build_h3wb import export  # noqa: PLC0415
    from build_h3wb.artifacts import read_json  # noqa: PLC0415
    from build_h3wb.stages.export import read_sequences  # noqa: PLC0415

    units = read_json(build / "filter" / "manifest.json")["units"]
    pose_stage = "refine" if (build / "refine" / "manifest.json").exists() else "complete"
    sequences = read_sequences(build, units, pose_stage)
    split = {s.subject: "train" for s in sequences} | {"S8": "test"}
    tmp = build / "bench_export_tmp"
    steps = {
        "views": lambda: export.sequence_views(sequences, 0.1),
        "hdf5": lambda v: export.write_hdf5(tmp / "h3wb.h5", sequences, split, views=v),
        "json": lambda v: export.write_h3wb_json(tmp / "json", sequences, split, decimals=2, views=v),
        "official_npz": lambda v: export.write_official_npz(tmp / "o.npz", sequences, split, views=v),
        "flat_npz": lambda v: export.write_flat_npz(tmp / "f.npz", sequences, views=v),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            views = steps["views"]()
            times["views"].append(time.perf_counter() - t)
            for name in list(steps)[1:]:
                t = time.perf_counter()
                steps[name](views)
                times[name].append(time.perf_counter() - t)
        json_mb = sum(p.stat().st_size for p in (tmp / "json").glob("*.json")
                      if p.name != "RGBto3D_train.json") / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"poses": sum(s.num_frames for s in sequences), "median_s": med, "json_mb_written": json_mb,
            "json_mb_per_s": json_mb / med["json"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=Path, required=True, help="a build directory where stage=filter has finished")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--label", default="current", help="name of this measurement in the results file")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "export.json")
    ap.add_argument("--writers", action="store_true", help="also time each export step")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the build (e.g. experiment=smoke)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = time_export(args.build.resolve(), args.overrides, args.repeat)
    if args.writers:
        res["writers"] = time_writers(args.build.resolve(), args.repeat)
    res.update(build=str(args.build), overrides=args.overrides, machine=f"{platform.machine()}, "
               f"{os.cpu_count()} CPUs, {platform.python_version()}")
    table = json.loads(args.out.read_text()) if args.out.exists() else {}
    table[args.label] = res
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{args.label}: export median {res['median_s']:.2f} s over {args.repeat} runs "
          f"({', '.join(f'{s:.2f}' for s in res['seconds'])}); 2Dto3D_train.json {res['train_json_mb']:.1f} MB, "
          f"RGBto3D_train.json shares it: {res['rgb_train_shares_content']}")
    if args.writers:
        w = res["writers"]
        print(f"  {w['poses']} poses: " + ", ".join(f"{k} {v:.2f} s" for k, v in w["median_s"].items())
              + f"; JSON {w['json_mb_written']:.1f} MB at {w['json_mb_per_s']:.0f} MB/s")


if __name__ == "__main__":
    main()
