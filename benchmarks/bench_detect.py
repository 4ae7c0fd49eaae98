"""Detect throughput: frames per second of each detector, with OpenCV decoding, on this machine.

A 1000x1000 video (Human3.6M's size) is written with OpenCV, showing a real photograph of a person
(``skimage.data.astronaut()``, scaled into the frame and moving a little), and read back through the project's
``FrameReader`` as the detect stage does. Every detector runs on the same decoded frames; the simulated detector
runs on the synthetic capture's ground truth at the same frame count. Each measurement is repeated and the median
is reported, together with decoding alone (every frame, and every 5th as H3WB selects them).

OpenPifPaf is measured with a whole-body network with random weights built locally (no weights can be downloaded
here): the network's cost is that of the real model of the same architecture, but the decoder's cost depends on
what the fields contain, so its numbers are the network's plus a random-field decode, not a trained model's.

    python benchmarks/bench_detect.py [--frames 40] [--repeats 3]
        [--detectors simulated,mediapipe,openpifpaf:shufflenetv2k16,openpifpaf:shufflenetv2k16:641]
                                      [--device auto] [--json benchmarks/results/detect.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import skimage.transform

from build_h3wb.detectors.simulated import default_simulated_detector
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.sources.base import FrameBatch, Recording
from build_h3wb.sources.synthetic import SyntheticSource
from build_h3wb.sources.video import FrameReader

SIZE = 1000
SEQ = Recording("S1", "Walking", "Walking 1")


def write_video(path: Path, n: int) -> None:
    person = (skimage.transform.rescale(skimage.data.astronaut(), 1.4, channel_axis=-1) * 255).astype(np.uint8)
    h, w = person.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (SIZE, SIZE))
    for f in range(n):
        frame = np.full((SIZE, SIZE, 3), 90, np.uint8)
        x = 100 + (3 * f) % 150
        frame[150 : 150 + h, x : x + w] = person
        out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out.release()


def decode(path: Path, frames: np.ndarray) -> list[np.ndarray]:
    return [img for _, img in FrameReader(path).read(frames)]


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def image_detector(name: str, device: str, workdir: Path, base: str = "shufflenetv2k16", long_edge: int = 0):
    if name == "mediapipe":
        from build_h3wb.detectors.mediapipe import MediaPipeHolisticDetector

        return MediaPipeHolisticDetector()
    if name == "openpifpaf":
        import openpifpaf
        import torch
        from openpifpaf.plugins.wholebody import Wholebody

        from build_h3wb.detectors.openpifpaf import OpenPifPafDetector

        ckpt = workdir / f"random-{base}-wholebody.pkl"
        net, _ = openpifpaf.network.Factory(base_name=base).factory(head_metas=Wholebody().head_metas)
        torch.save({"model": net, "epoch": 0}, ckpt)  # OpenPifPaf's checkpoint layout, random weights
        return OpenPifPafDetector(checkpoint=str(ckpt), device=device, long_edge=long_edge)
    raise ValueError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--detectors", default="simulated,mediapipe,openpifpaf:shufflenetv2k16:641,"
                    "openpifpaf:shufflenetv2k30:641,openpifpaf:shufflenetv2k16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/detect.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                     "frames": args.frames, "repeats": args.repeats, "image_size": [SIZE, SIZE],
                     "frames_per_second": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "video.mp4"
        write_video(video, 5 * args.frames)
        every = np.arange(5 * args.frames)
        fps = results["frames_per_second"]
        fps["decode_every_frame"] = len(every) / timed(lambda: decode(video, every), args.repeats)
        fps["decode_every_5th"] = args.frames / timed(lambda: decode(video, every[::5]), args.repeats)
        images = np.stack(decode(video, every[::5]))
        cam = h36m_rig("S1")["54138969"]
        batch = FrameBatch(sequence=SEQ, camera=cam, frames=every[::5], images=images)
        for spec in args.detectors.split(","):
            name, _, variant = spec.partition(":")  # openpifpaf:shufflenetv2k30:641 = base net and long edge
            base, _, edge = variant.partition(":")
            if name == "simulated":
                src = SyntheticSource(["S1"], ["Walking"], duration_s=args.frames / 10.0)
                det = default_simulated_detector()
                (sim_batch,) = src.batches(SEQ, cam.name, src.frames(SEQ), args.frames)
                fps[name] = args.frames / timed(lambda: det(sim_batch), args.repeats)  # noqa: B023
                continue
            det = image_detector(name, args.device, tmp, base or "shufflenetv2k16", int(edge or 0))
            det(FrameBatch(sequence=SEQ, camera=cam, frames=every[:1], images=images[:1]))  # warm-up
            fps[spec] = args.frames / timed(lambda: det(batch), args.repeats)  # noqa: B023
            fps[f"{spec}_with_decoding"] = 1.0 / (1.0 / fps[spec] + 1.0 / fps["decode_every_5th"])
            results[f"{spec}_settings"] = det.describe()
    for k, v in results["frames_per_second"].items():
        results["frames_per_second"][k] = round(v, 1)
        print(f"{k:32s} {v:9.1f} frames/s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
