"""Time and peak memory of every stage of an H3WB-size build (``experiment=h3wb``), at 1x, 2x and 4x its capture.

Each stage runs as its own ``python -m build_h3wb stage=NAME`` process on one build directory per scale, so a
stage's peak resident memory is that process's own (``os.wait4``'s ``ru_maxrss``) and its time includes the
interpreter's start. Scale k multiplies the preset's sequence length (``data.duration_s``), so k x the poses
with the same sequences and the same filter share (``filter.target_size`` scales with it). Memory should stay flat
in the number of poses (stages stream per sequence and per chunk); time should grow linearly. Each stage's CPU time
and the load average around it are recorded too (on a shared machine the wall time says more about the other jobs),
and the results file gets a Markdown table (``markdown``) that ``scripts/render_docs.py`` puts in docs/results.md.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_h3wb.py [--scales 1 2 4] [--experiment h3wb]
        [--root /tmp/h3wb] [--json benchmarks/results/h3wb.json] [-- extra overrides, e.g. data.duration_s=5]
    python benchmarks/bench_h3wb.py --render --json FILE [--root ROOT] [--log OUTPUT]   # rewrite a results file
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
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
    ap.add_argument("--render", action="store_true", help="only rewrite --json with its table (and the build sizes "
                    "from --root, the unfinished stages from --log)")
    ap.add_argument("--log", default=None, help="with --render: the output this script printed")
    ap.add_argument("overrides", nargs="*", help="more overrides for every stage (after --); data.duration_s and "
                    "filter.target_size given here are the 1x values that the scales multiply")
    args = ap.parse_args()
    if args.render:
        render(Path(args.json), Path(args.root) if args.root else None, Path(args.log) if args.log else None)
        return
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
                                 "build": build_facts(build_dir),
                                 "total_s": round(sum(s["seconds"] for s in stages.values()), 1),
                                 "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
                                 "machine": {"cpus": os.cpu_count(), "nice": os.nice(0),
                                             "threads": {k: os.environ.get(k) for k in THREAD_VARS}}}
        _write_partial(args.json, results)
    _write_partial(args.json, results)
    print("\n" + markdown(results))


def build_facts(build_dir: Path) -> dict:
    """Sizes of a finished build: capture poses, complete poses, poses the network trained on, exported poses."""
    def manifest(stage: str) -> dict:
        path = build_dir / stage / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    facts = {}
    tri = manifest("triangulate").get("counts", {})
    if tri:
        facts |= {"capture_poses": tri.get("poses"), "complete_poses": tri.get("complete_poses")}
    model = build_dir / "complete" / "model.json"
    if model.exists():  # its complete_poses: those drawn (at most complete.max_train_poses), train + validation
        info = json.loads(model.read_text())
        facts |= {"train_poses": info.get("train_poses"), "val_poses": info.get("val_poses"),
                  "train_time_s": round(info.get("history", {}).get("train_time_s", 0.0), 1)}
    hdf5 = manifest("export").get("counts", {}).get("hdf5", {})
    if hdf5:
        facts |= {"exported_poses": hdf5["poses"], "train_split_poses": hdf5.get("train"),
                  "test_split_poses": hdf5.get("test")}
    return facts


def markdown(results: dict) -> str:
    """The table of a series: time (CPU time) and peak RSS per stage and scale, sizes, error, load."""
    scales = list(results)
    base = results[scales[0]]
    lines = ["| stage | " + " | ".join(f"{s}x" for s in scales) + " |", "|---" * (len(scales) + 1) + "|"]
    for stage in STAGES:
        cells = []
        for r in results.values():
            st = r["stages"].get(stage)
            cpu = f" (CPU {st['cpu_s']:.0f} s)" if st and "cpu_s" in st else ""
            cells.append(f"{st['seconds']:.0f} s{cpu} / {st['peak_rss_mb']:.0f} MB" if st else "not run")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    finished = [r for r in results.values() if len(r["stages"]) == len(STAGES)]
    lines.append("| **all** | " + " | ".join(
        f"{r['total_s']:.0f} s ({r['total_s'] / base['total_s']:.2f}x) / {r['peak_rss_mb']:.0f} MB "
        f"({r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x)" if r in finished else "unfinished"
        for r in results.values()) + " |")
    for key, label in (("capture_poses", "poses in the capture"), ("complete_poses", "complete triangulated poses"),
                       ("train_poses", "network trained on (+ held out)"), ("exported_poses", "poses exported")):
        cells = [r.get("build", {}).get(key, "") for r in results.values()]
        if key == "train_poses":
            cells = [f"{c} (+ {r['build'].get('val_poses')}), {r['build'].get('train_time_s')} s" if c != "" else c
                     for c, r in zip(cells, results.values())]
        lines.append(f"| {label} | " + " | ".join(str(c) for c in cells) + " |")
    lines.append("| whole-body error, mean / median mm | " + " | ".join(
        f"{r['dataset']['absolute']['whole']['mean_mm']} / {r['dataset']['absolute']['whole']['median_mm']}"
        if r.get("dataset") else "" for r in results.values()) + " |")
    loads = [x for r in results.values() for st in r["stages"].values() for x in (st.get("load_before", [None])[0],
                                                                                  st.get("load_after", [None])[0])
             if x is not None]
    if loads:
        lines.append(f"\nLoad average (1 min) around the stages: {min(loads):.1f} to {max(loads):.1f} on "
                     f"{os.cpu_count()} CPUs.")
    return "\n".join(lines)


def render(path: Path, root: Path | None, log: Path | None) -> None:
    """Rewrite a results file as ``{machine, date, command, markdown, scales}`` (scripts/render_docs.py shows it).

    Reads a file in this layout or the plain ``{scale: result}`` one; adds the build sizes from ``root/x<scale>``
    and, from the ``log`` this script printed, the stages of a scale that did not finish.
    """
    data = json.loads(path.read_text())
    scales = data.get("scales", data)
    if log is not None and log.exists():
        for line in log.read_text().splitlines():
            head, _, rest = line.partition(": ")
            if head.startswith("x") and " " in head and rest.startswith("{"):
                scale, stage = head[1:].split(" ")
                entry = scales.setdefault(scale, {"stages": {}, "unfinished": True})
                entry["stages"].setdefault(stage, ast.literal_eval(rest))
    for scale, r in scales.items():
        if root is not None and (root / f"x{scale}").is_dir():
            r["build"] = build_facts(root / f"x{scale}")
    first = next(iter(scales.values()))
    out = {"machine": data.get("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, shared; threads "
                                          f"{first.get('machine', {}).get('threads')}, nice "
                                          f"{first.get('machine', {}).get('nice')}"),
           "date": data.get("date", time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime))),
           "command": data.get("command", "benchmarks/bench_h3wb.py --scales " + " ".join(scales)),
           "markdown": markdown(scales), "scales": scales}
    path.write_text(json.dumps(out, indent=1))


def _write_partial(path: str | None, results: dict) -> None:
    """Save the scales finished so far (a long series that is stopped keeps them), with their table."""
    if path:
        Path(path).write_text(json.dumps(results, indent=1))
        render(Path(path), None, None)


if __name__ == "__main__":
    main()
