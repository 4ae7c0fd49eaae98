"""Time and peak memory of detect + triangulate + evaluate at 1x and 10x the default synthetic capture.

The 10x capture has the same sequences, each ten times longer (``data.duration_s``), so the stages' streaming by
chunk is what keeps memory flat. Each scale runs in a fresh Python process (peak RSS is that process's own);
scales alternate over ``--repeats`` rounds and the medians are reported, with the time ratio (ideal: 10).

    python benchmarks/bench_scaling.py [--scales 1 10] [--repeats 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_DURATION_S = 20.0


def child(scale: float, build_dir: str) -> None:
    """Run the stages in this process and print time and peak RSS as JSON."""
    from hydra import compose, initialize_config_dir

    from build_h3wb.config import register_configs
    from build_h3wb.stages import run_stage

    register_configs()
    overrides = [f"build.dir={build_dir}", f"data.duration_s={BASE_DURATION_S * scale}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    times = {}
    for stage in ("detect", "triangulate", "evaluate"):
        cfg.stage = stage
        t = time.perf_counter()
        run_stage(cfg)
        times[stage] = round(time.perf_counter() - t, 2)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"scale": scale, "seconds": times, "total_s": round(sum(times.values()), 2),
                      "peak_rss_mb": round(peak_mb, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.dir)
        return
    runs: dict[float, list[dict]] = {s: [] for s in args.scales}
    for _ in range(args.repeats):
        for s in args.scales:
            with tempfile.TemporaryDirectory() as d:
                out = subprocess.run([sys.executable, __file__, "--child", str(s), "--dir", d], check=True,
                                     capture_output=True, text=True, cwd=REPO)
                runs[s].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(runs[s][-1], flush=True)
    summary = {str(s): {"total_s_median": statistics.median(r["total_s"] for r in rs),
                        "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in rs),
                        "runs": rs} for s, rs in runs.items()}
    if len(args.scales) >= 2:
        a, b = str(args.scales[0]), str(args.scales[-1])
        summary["time_ratio"] = round(summary[b]["total_s_median"] / summary[a]["total_s_median"], 2)
        summary["memory_ratio"] = round(summary[b]["peak_rss_mb_median"] / summary[a]["peak_rss_mb_median"], 2)
        summary["scale_ratio"] = args.scales[-1] / args.scales[0]
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict) or k == "x"}, indent=1))
    for s in args.scales:
        r = summary[str(s)]
        print(f"scale {s:g}x: {r['total_s_median']:.1f} s, peak RSS {r['peak_rss_mb_median']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
