"""Peak memory and time of ``stage=export`` against the number of exported poses, at a fixed recording length.

    python benchmarks/bench_export_memory.py --build outputs/default --scales 1 2 4 [--root /tmp/export_memory]

Makes, for each scale K, a copy of a finished build in which every recording appears K times (the copies are named
``<sequence> #2``, ``#3``...; their HDF5 files are hard links where the filesystem allows, so the copy costs no disk)
and runs ``stage=export`` on it in a fresh process, reporting its wall time and peak resident memory (the
child's own ``getrusage``). The selection, qualities and poses are those of the build, repeated: K times the poses,
the same recording length. Memory that is flat in the number of poses stays the same at every K; time should grow
linearly. Prints one JSON object (``--json`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("detect", "triangulate", "complete", "refine", "filter")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def scaled_build(build: Path, root: Path, k: int) -> Path:
    """A copy of ``build`` whose filter manifest lists every recording ``k`` times (files linked); returns it."""
    out = root / f"x{k}"
    if out.exists():
        shutil.rmtree(out)
    for stage in STAGES:
        manifest = json.loads((build / stage / "manifest.json").read_text())
        units = []
        for u in manifest.get("units", []):
            for copy in range(k):
                name = u["sequence"] if copy == 0 else f"{u['sequence']} #{copy + 1}"
                src = build / stage / u["subject"] / f"{u['sequence']}.h5"
                _link_or_copy(src, out / stage / u["subject"] / f"{name}.h5")
                units.append(u | {"sequence": name})
        manifest["units"] = units
        (out / stage).mkdir(parents=True, exist_ok=True)
        (out / stage / "manifest.json").write_text(json.dumps(manifest))
        for extra in (build / stage).glob("*.json"):  # the stage's other reports (summaries, model cards)
            if extra.name != "manifest.json":
                shutil.copy2(extra, out / stage / extra.name)
    return out


_CHILD = """
import resource, runpy, sys
sys.argv = ["build_h3wb", "stage=export", "build.dir=" + sys.argv[1]]
try:
    runpy.run_module("build_h3wb", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_export(build: Path) -> dict:
    """Run ``stage=export`` in a child process; its wall time and its own peak RSS."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(build)], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"export failed in {build}:\n{proc.stderr[-3000:]}")
    peak_kb = int(proc.stdout.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    counts = json.loads((build / "export" / "manifest.json").read_text())["counts"]
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024, 1), "poses": counts["hdf5"]["poses"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=Path, required=True, help="a build where stage=filter has finished")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--root", type=Path, default=Path("/tmp/export_memory"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
              "build": str(args.build), "scales": {}}
    for k in args.scales:
        result["scales"][str(k)] = run_export(scaled_build(args.build.resolve(), args.root, k))
        print(k, result["scales"][str(k)], flush=True)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
