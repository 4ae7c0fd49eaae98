"""Time and peak memory of every stage of an H3WB-size build (``experiment=h3wb``), at 1x, 2x and 4x its capture.

Each stage runs as its own ``python -m build_h3wb stage=NAME`` process on one build directory per scale, so a
stage's peak resident memory is that process's own (``os.wait4``'s ``ru_maxrss``) and its time includes the
interpreter's start. Scale k multiplies the preset's sequence length (``data.duration_s``), so k x the poses
with the same sequences and the same filter share (``filter.target_size`` scales with it). Memory should stay flat
in the number of poses (stages stream per sequence and per chunk); time should grow linearly.

    nice -n 10 python benchmarks/bench_h3wb.py [--scales 1 2 4] [--experiment h3wb] [--root /tmp/h3wb]
        [--json benchmarks/results/h3wb.json] [-- extra overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("detect", "triangulate", "complete", "refine", "filter", "export", "evaluate")
#: Environment variables that set the stages' thread counts (recorded with the results; unset = the libraries' own
#: choice, one thread per core). On a loaded machine ``OMP_NUM_THREADS=1`` keeps PyTorch's and OpenBLAS's threads from
#: spinning against other jobs.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def preset_values(experiment: str, overrides: list[str]) -> tuple[float, int]:
    """The preset's sequence length (s) and filter target size, as composed with ``overrides`` (the 1x values)."""
    from hydra import compose, initialize_config_dir

    from build_h3wb.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])
    return float(cfg.data.duration_s), int(cfg.filter.target_size)


def run_stage(stage: str, build_dir: Path, overrides: list[str], log) -> dict:
    """One stage in a fresh process: wall and CPU seconds, peak RSS (MB), exit code and the machine's load.

    ``load_before`` / ``load_after``: ``os.getloadavg()`` (1, 5, 15 minute) around the stage; other work on the
    machine slows the wall time (CPU seconds, user + system of the stage's process, less so).
    """
    cmd = [sys.executable, "-m", "build_h3wb", f"stage={stage}", f"build.dir={build_dir}", *overrides]
    load_before = [round(x, 2) for x in os.getloadavg()]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(seconds, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "rc": proc.returncode, "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4])
    ap.add_argument("--experiment", default="h3wb")
    ap.add_argument("--root", default=None, help="parent of the build directories (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*", help="more overrides for every stage (after --); data.duration_s and "
                    "filter.target_size given here are the 1x values that the scales multiply")
    args = ap.parse_args()
    duration, target = preset_values(args.experiment, args.overrides)
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_h3wb_"))
    results = {}
    for scale in args.scales:
        build_dir = root / f"x{scale:g}"
        overrides = [f"experiment={args.experiment}", *args.overrides, f"data.duration_s={duration * scale:g}",
                     f"filter.target_size={int(round(target * scale))}"]
        build_dir.mkdir(parents=True, exist_ok=True)
        stages = {}
        with open(build_dir / "bench.log", "w") as log:
            for stage in STAGES:
                stages[stage] = run_stage(stage, build_dir, overrides, log)
                print(f"x{scale:g} {stage}: {stages[stage]}", flush=True)
                if stages[stage]["rc"] != 0:
                    raise SystemExit(f"stage {stage} failed at scale {scale:g}; see {build_dir / 'bench.log'}")
        dataset = json.loads((build_dir / "evaluate" / "dataset.json").read_text())
        results[f"{scale:g}"] = {"overrides": overrides, "stages": stages, "dataset": dataset,
                                 "total_s": round(sum(s["seconds"] for s in stages.values()), 1),
                                 "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
                                 "machine": {"cpus": os.cpu_count(), "nice": os.nice(0),
                                             "threads": {k: os.environ.get(k) for k in THREAD_VARS}}}
        _write_partial(args.json, results)
    base = results[f"{args.scales[0]:g}"]
    print(f"\n{args.experiment}: time (s) / peak RSS (MB) per stage, one run per scale, {os.cpu_count()} CPUs\n")
    print("| stage | " + " | ".join(f"{s:g}x" for s in args.scales) + " |")
    print("|---" * (len(args.scales) + 1) + "|")
    for stage in STAGES:
        cells = [f"{r['stages'][stage]['seconds']:.0f} s / {r['stages'][stage]['peak_rss_mb']:.0f} MB"
                 for r in results.values()]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| all | " + " | ".join(f"{r['total_s']:.0f} s ({r['total_s'] / base['total_s']:.2f}x) / "
                                   f"{r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x)"
                                   for r in results.values()) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _write_partial(path: str | None, results: dict) -> None:
    """Save the scales finished so far (a long series that is stopped keeps them)."""
    if path:
        Path(path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
