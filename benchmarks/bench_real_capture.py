"""A real public capture end to end: Pose2Sim's two-person demo, MediaPipe, the Qualisys calibration imported directly.

Pose2Sim's wheel on PyPI ships ``Pose2Sim/Demo_MultiPerson/``: four synchronised 1088x1920 60 fps videos of two
people (100 frames) and ``calibration/Calib.qca.txt`` (Qualisys). This script

1. fetches it into a cache (``pip download --no-deps pose2sim==0.10.49``; nothing is downloaded when cached);
2. runs ``stage=all experiment=rig`` (``data=rig``, ``detector=mediapipe``) with ``detector.max_people=2``; when the
   build stops before the end, it says so and runs ``stage=triangulate`` and ``stage=evaluate`` so the measures
   exist;
3. prints the measures without ground truth that ``evaluate`` wrote (``evaluate/<stage>_measures.json``), the same
   triangulation measures on the same detections for plain DLT (the robust rule off) and for a Pose2Sim-style
   minimal-exclusion rule (``build_h3wb.geometry.triangulation.triangulate_min_exclusion``, 25 px), and the subject
   choice's consistency (:func:`build_h3wb.detectors.subject.subject_consistency`);
4. draws one frame (every view, detections and reprojections, as ``stage=pictures`` draws) to ``--picture``.

    python benchmarks/bench_real_capture.py [--cache ~/.cache/build_h3wb] [--build DIR] [--frame 30]
        [--picture docs/real_capture_frame.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np

from build_h3wb import skeleton
from build_h3wb.detectors.subject import subject_consistency
from build_h3wb.geometry.cameras import rig_from_dict
from build_h3wb.quality import measures as qm

log = logging.getLogger("bench_real_capture")
REPO = Path(__file__).resolve().parents[1]
POSE2SIM = "pose2sim==0.10.49"
DEMO = "Pose2Sim/Demo_MultiPerson/"
SUBJECT, SEQUENCE = "subject", "demo"


def fetch(cache: Path) -> tuple[Path, Path]:
    """The demo's video folder (``<cache>/realcap_capture/demo``) and calibration; downloads the wheel if needed."""
    wheels = sorted((cache / "pose2sim_wheel").glob("pose2sim-*.whl"))
    if not wheels:
        log.info("downloading %s (no dependencies) into %s", POSE2SIM, cache / "pose2sim_wheel")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", POSE2SIM, "-d",
                        str(cache / "pose2sim_wheel")], check=True)
        wheels = sorted((cache / "pose2sim_wheel").glob("pose2sim-*.whl"))
    demo = cache / "pose2sim" / DEMO
    if not (demo / "calibration" / "Calib.qca.txt").exists():
        with zipfile.ZipFile(wheels[-1]) as z:
            z.extractall(cache / "pose2sim", [n for n in z.namelist() if n.startswith(DEMO)])
    capture = cache / "realcap_capture" / SEQUENCE  # the sequence is named after this folder
    if not capture.exists():
        capture.parent.mkdir(parents=True, exist_ok=True)
        capture.symlink_to((demo / "videos").resolve(), target_is_directory=True)
    return capture, demo / "calibration" / "Calib.qca.txt"


def build(overrides: list[str], stage: str) -> subprocess.CompletedProcess:
    """``python -m build_h3wb stage=<stage> <overrides>`` in a subprocess (its log goes to the build's logs/)."""
    cmd = [sys.executable, "-m", "build_h3wb", f"stage={stage}", *overrides]
    log.info("running: %s", " ".join(cmd))
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def last_stage(output: str) -> str:
    """The stage a build's log last started (``=== stage NAME ===``)."""
    starts = [line.split("=== stage ")[1].split(" ")[0] for line in output.splitlines() if "=== stage " in line]
    return starts[-1] if starts else "?"


def read_sequence(root: Path) -> dict:
    """The detections, candidates, choice, rig and triangulated poses of the demo's one sequence."""
    with h5py.File(root / "detect" / SUBJECT / f"{SEQUENCE}.h5") as f:
        out = {"kp": f["keypoints"][:].astype(np.float64), "frames": f["frames"][:], "choice": f["choice"][:],
               "rig": rig_from_dict(json.loads(f.attrs["rig"])), "views": json.loads(f.attrs["views"])}
    cands = []
    for cam in out["rig"].names:
        with h5py.File(root / "detect" / "videos" / SUBJECT / SEQUENCE / f"{cam}.h5") as f:
            cands.append(f["candidates"][:])
    P = max(c.shape[1] for c in cands)
    out["candidates"] = np.full((len(cands), len(out["frames"]), P) + cands[0].shape[2:], np.nan, np.float32)
    for i, c in enumerate(cands):
        out["candidates"][i, :, : c.shape[1]] = c
    with h5py.File(root / "triangulate" / SUBJECT / f"{SEQUENCE}.h5") as f:
        out["robust"] = f["keypoints_3d"][:].astype(np.float64)
    tri = json.loads((root / "triangulate" / "manifest.json").read_text())["config"]
    out["params"], out["rules"] = tri["params"], tri["rules"]
    return out


def rule_measures(X: np.ndarray, seq: dict) -> dict:
    """The measures of one set of triangulated poses, the reference bones being its own median."""
    ref = qm.subject_reference([qm.bone_lengths(X)])
    m = qm.sequence_measures(X, seq["frames"], ref, seq["kp"], seq["rig"])
    body = skeleton.PARTS["body"]  # the 17 COCO body keypoints (MediaPipe has no small toes)
    m["body_frames_complete"] = round(float(np.isfinite(X[:, body]).all((1, 2)).mean()), 4)
    return m


def compare_rules(seq: dict) -> dict:
    """The stage's robust rule, plain DLT and the Pose2Sim-style rule on the same detections."""
    from build_h3wb.geometry import triangulation  # noqa: PLC0415

    uv = seq["kp"][..., :2]  # (C, T, J, 2) views first
    score = np.nan_to_num(seq["kp"][..., 2])
    out = {"robust rule (stage=triangulate)": rule_measures(seq["robust"], seq)}
    if seq["rules"].get("bone_strength", 0.0) > 0:  # the same rule without the soft bone-length constraint
        from build_h3wb.stages.triangulate import _triangulate_chunk  # noqa: PLC0415

        rules = dict(seq["rules"], bone_strength=0.0, frame_dt_s=1.0 / seq["rules"]["video_fps"])
        free = _triangulate_chunk(seq["kp"], seq["rig"], seq["params"], rules)["points"]
        out["robust rule, bone lengths not held (bone_strength=0)"] = rule_measures(free, seq)
    t0 = time.perf_counter()
    plain = triangulation.triangulate(uv, score, seq["rig"], robust=False).points
    out["plain DLT (robust off)"] = rule_measures(plain, seq) | {"seconds": round(time.perf_counter() - t0, 3)}
    if hasattr(triangulation, "triangulate_min_exclusion"):
        t0 = time.perf_counter()
        p2s = triangulation.triangulate_min_exclusion(uv, score, seq["rig"], threshold_px=25.0).points
        out["Pose2Sim-style minimal exclusion, 25 px"] = (rule_measures(p2s, seq)
                                                          | {"seconds": round(time.perf_counter() - t0, 3)})
    else:
        log.warning("build_h3wb.geometry.triangulation has no triangulate_min_exclusion: that comparison is left out")
    return out


def picture(overrides: list[str], root: Path, frame: int, target: Path | None) -> Path | None:
    """``stage=pictures`` of one frame; copied to ``target`` (at most 1600 px wide, 256 colours)."""
    res = build(overrides, "pictures")
    if res.returncode != 0:
        log.warning("stage=pictures failed:\n%s", res.stderr[-2000:])
        return None
    png = root / "pictures" / SUBJECT / SEQUENCE / f"frame_{frame:04d}_views.png"
    if target is None or not png.exists():
        return png if png.exists() else None
    from PIL import Image  # noqa: PLC0415 (matplotlib's dependency)

    img = Image.open(png).convert("RGB")
    if img.width > 1600:
        img = img.resize((1600, round(img.height * 1600 / img.width)), Image.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256, method=Image.MEDIANCUT).save(target, optimize=True)  # small enough to commit
    return target


def table(rows: dict) -> str:
    """Rule / stage name -> measures, as one markdown table."""
    lines = ["| poses | body bone CV (median) | frames with a bone > 30% off | frames with all 17 body keypoints "
             "| body / hands reproj. px (median) | body / hands jitter mm | body / hands / face coverage |",
             "|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        rep = m.get("reprojection_px", {}).get("median", m.get("reprojection_px_median", {}))
        cov, jit = m["coverage"], m["jitter_mm"]
        lines.append(f"| {name} | {m['bone_cv_median']} | {m['frames_bone_off_share']} | "
                     f"{m.get('body_frames_complete', '-')} | {rep.get('body')} / {rep.get('hands')} | "
                     f"{jit['body']} / {jit['hands']} | {cov['body']} / {cov['hands']} / {cov['face']} |")
    return "\n".join(lines)


def main() -> None:
    """Fetch, build, measure, compare, draw; print the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("BUILD_H3WB_CACHE", "~/.cache/build_h3wb")))
    ap.add_argument("--build", type=Path, default=None, help="build directory (default: <cache>/realcap_build)")
    ap.add_argument("--frame", type=int, default=30, help="frame of the picture")
    ap.add_argument("--picture", type=Path, default=None, help="copy the frame's picture here (PNG)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cache = args.cache.expanduser().resolve()
    root = (args.build or cache / "realcap_build").expanduser().resolve()
    capture, calibration = fetch(cache)
    overrides = ["experiment=rig", f"data.root={capture}", f"data.calibration={calibration}",  # data=rig, mediapipe
                 "detector.max_people=2", f"build.dir={root}", "build.overwrite=true", f"data.subject={SUBJECT}",
                 f"pictures.subject={SUBJECT}", f"pictures.sequence={SEQUENCE}", f"pictures.frame={args.frame}"]
    t0 = time.perf_counter()
    res = build(overrides, "all")
    result: dict = {"stage_all": {"returncode": res.returncode, "seconds": round(time.perf_counter() - t0, 1)}}
    if res.returncode != 0:
        stopped = last_stage(res.stdout + res.stderr)
        reason = [line for line in (res.stdout + res.stderr).splitlines() if "Error" in line or "error" in line]
        result["stage_all"].update(stopped_at=stopped, error=reason[-1] if reason else "")
        log.warning("stage=all stopped at stage %s: %s; running triangulate and evaluate for the measures", stopped,
                    reason[-1] if reason else "(see the build's logs/)")
        for stage in ("triangulate", "evaluate"):
            r = build(overrides, stage)
            if r.returncode != 0:
                raise SystemExit(f"stage={stage} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    detect = json.loads((root / "detect" / "manifest.json").read_text())["counts"]
    result["detect"] = {k: detect[k] for k in ("failed_videos", "skipped_sequences", "view_frames",
                                               "frames_per_second", "subject_chosen_view_frames")}
    result["export"] = (root / "export" / "manifest.json").exists()
    stages = {}
    for f in sorted((root / "evaluate").glob("*_measures.json")):
        m = json.loads(f.read_text())
        stages[f"after {m['stage']}"] = m
    seq = read_sequence(root)
    result["views_used"] = seq["views"]
    result["subject_consistency"] = subject_consistency(seq["candidates"], seq["choice"].astype(np.int64),
                                                        seq["rig"])
    rules = compare_rules(seq)
    result["measures_by_stage"] = {k: {kk: v for kk, v in m.items() if kk != "per_sequence"}
                                   for k, m in stages.items()}
    result["triangulation_rules"] = rules
    pic = picture(overrides, root, args.frame, args.picture)
    result["picture"] = str(pic) if pic else None

    sc = result["subject_consistency"]
    print(f"\nviews used: {seq['views']} (failed videos: {len(detect['failed_videos'])}); stage=all: "
          + ("finished with an export" if result["export"] and res.returncode == 0
             else f"stopped at {result['stage_all'].get('stopped_at')} ({result['stage_all'].get('error', '')})"))
    print(f"subject choice: {sc['chosen']} view-frames chosen, {sc['with_rival']} with a second person in view; "
          f"track switches {sc['track_switches']} of {sc['track_steps']} steps; cross-view mismatches "
          f"{sc['cross_view_mismatches']} of {sc['cross_view_checked']} checked (leave-one-view-out reprojection: "
          f"chosen {sc['chosen_px']:.1f} px, rival {sc['rival_px']:.1f} px, medians)")
    print("\nmeasures written by evaluate, per stage:\n" + table(result["measures_by_stage"]))
    print("\ntriangulation rules on the same detections:\n" + table(rules))
    if pic:
        print(f"\npicture: {pic}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
