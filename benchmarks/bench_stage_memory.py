"""Peak memory and time of ``stage=refine``, ``stage=filter`` and ``stage=export`` against the recording length.

    OMP_NUM_THREADS=1 python benchmarks/bench_stage_memory.py [--scales 1 2 4] [--duration 120]
        [--root /tmp/stage_memory] [--code NAME=DIR ...] [--json benchmarks/results/stage_memory.json] [-- overrides]

A small synthetic build (``experiment=smoke`` with one action, ``data.duration_s=120``: two recordings of 1200 poses)
is made once per scale k with the recordings k times as long (``data.duration_s`` times k: k times the frames per
recording, the same recordings), up to ``complete`` (reused when its manifest is there). For every ``--code``
tree (default: this checkout) the three stages then run on hard-linked copies of that build, each as its own
``python -m build_h3wb stage=NAME`` process with the tree on ``PYTHONPATH``, so two versions of the code are measured
in one run on the same inputs. A stage's peak resident memory is that process's own (``os.wait4``'s ``ru_maxrss``,
the largest of the process and its children); each stage runs ``--repeat`` times per tree and scale, alternating the
trees, and the medians are reported (the runs too). Memory that does not grow with the recording length stays the
same at every k; time should grow linearly. Prints a table; ``--json`` writes the results with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = ("detect", "triangulate", "complete")
MEASURED = ("refine", "filter", "export")
#: The 1x build: two recordings (S1 and S8 walking) of ``--duration`` seconds at 10 poses per second.
BASE = ["experiment=smoke", "data.actions=[Walking]"]


def run_stage(stage: str, build_dir: Path, overrides: list[str], code: Path, log) -> dict:
    """One stage in a fresh process on ``code``'s package: wall and CPU seconds, peak RSS (MB), exit code."""
    env = dict(os.environ, PYTHONPATH=str(code))
    cmd = [sys.executable, "-m", "build_h3wb", f"stage={stage}", f"build.dir={build_dir}", *overrides]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc:
        raise SystemExit(f"stage {stage} failed in {build_dir} (code {code}); see {log.name}")
    return {"seconds": round(time.perf_counter() - t, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_1min": round(os.getloadavg()[0], 2)}


def linked_copy(src: Path, dst: Path, stages: tuple[str, ...]) -> None:
    """``dst`` holding ``src``'s folders of ``stages`` (files hard-linked where the filesystem allows)."""
    if dst.exists():
        shutil.rmtree(dst)
    for stage in stages:
        for f in (src / stage).rglob("*"):
            if f.is_file():
                out = dst / f.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, out)
                except OSError:
                    shutil.copy2(f, out)


def frames_per_recording(build_dir: Path) -> int:
    """Poses per recording of a finished ``triangulate`` (the mean over its recordings)."""
    counts = json.loads((build_dir / "triangulate" / "summary.json").read_text())
    return counts["poses"] // max(counts["sequences"], 1)


def _commit(tree: Path) -> str:
    """The tree's git commit (with ``+changes`` when its tracked files differ from it)."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "diff", "--quiet", "HEAD"]).returncode
    return head.stdout.strip() + ("+changes" if dirty else "")


def markdown(result: dict) -> str:
    """Peak RSS (MB) and wall time per stage, code and scale."""
    scales = list(result["scales"])
    lines = ["| stage | code | " + " | ".join(f"{s}x ({result['scales'][s]['frames_per_recording']} frames)"
                                            for s in scales) + f" | peak RSS {scales[-1]}x / {scales[0]}x |",
             "|---" * (len(scales) + 3) + "|"]
    for stage in MEASURED:
        for code in result["code"]:
            rows = [result["scales"][s]["stages"][code][stage] for s in scales]
            cells = [f"{r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s" for r in rows]
            ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
            lines.append(f"| {stage} | {code} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4])
    ap.add_argument("--duration", type=float, default=120.0, help="recording length at 1x, seconds")
    ap.add_argument("--root", type=Path, default=Path("/tmp/stage_memory"))
    ap.add_argument("--code", action="append", default=None, metavar="NAME=DIR",
                    help="a source tree to measure (repeatable; default: this checkout, as 'this')")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each stage per code and scale (medians reported)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="more overrides for every stage (after --)")
    args = ap.parse_args()
    codes = dict(c.split("=", 1) for c in args.code) if args.code else {"this": str(REPO)}
    codes = {name: Path(d).resolve() for name, d in codes.items()}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
              "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "base": [*BASE, *args.overrides, f"data.duration_s={args.duration:g} (1x)"],
              "numpy": np.__version__, "repeat": args.repeat,
              "code": {name: f"{d} ({_commit(d)})" for name, d in codes.items()}, "scales": {}}
    for scale in args.scales:
        overrides = [*BASE, *args.overrides, f"data.duration_s={args.duration * scale:g}"]
        up = args.root / f"x{scale:g}" / "upstream"
        up.mkdir(parents=True, exist_ok=True)
        entry: dict = {"overrides": overrides, "stages": {}}
        if not (up / "complete" / "manifest.json").exists():
            with open(up / "bench.log", "w") as log:
                entry["upstream"] = {s: run_stage(s, up, overrides, REPO, log) for s in UPSTREAM}
        entry["frames_per_recording"] = frames_per_recording(up)
        runs: dict[str, dict[str, list[dict]]] = {name: {stage: [] for stage in MEASURED} for name in codes}
        for name in codes:
            linked_copy(up, args.root / f"x{scale:g}" / name, UPSTREAM)
        for _ in range(args.repeat):  # the trees alternate, so a change of the machine's load hits both
            for name, code in codes.items():
                build_dir = args.root / f"x{scale:g}" / name
                for stage in MEASURED:  # a fresh output each time (a finished stage would skip its work)
                    shutil.rmtree(build_dir / stage, ignore_errors=True)
                with open(build_dir / "bench.log", "a") as log:
                    for stage in MEASURED:
                        runs[name][stage].append(run_stage(stage, build_dir, overrides, code, log))
                        print(f"x{scale:g} {name} {stage}: {runs[name][stage][-1]}", flush=True)
        entry["stages"] = {name: {stage: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"runs": rs}
                                  for stage, rs in by_stage.items()} for name, by_stage in runs.items()}
        result["scales"][f"{scale:g}"] = entry
    result["markdown"] = markdown(result)
    print("\n" + result["markdown"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
