"""Which reading of a Qualisys calibration's distortion fits the cameras: as written, or divided by 64 (Pose2Sim)?

Pose2Sim's wheel ships, beside the demo's ``Calib.qca.txt``, the checkerboard images of the same four cameras
(``Demo_SinglePerson/calibration/intrinsics/int_camXX_img/*.jpg``, a 4 x 7 inner-corner board of 60 mm squares).
Per camera this finds the corners (OpenCV), then

- reprojects them with the file's intrinsics and each distortion reading (the board's pose per image fitted by
  ``cv2.solvePnP`` + ``solvePnPRefineLM``): the RMS corner error in pixels;
- recalibrates the camera with OpenCV (k3 fixed at 0, started from the file's intrinsics) and prints its k1, k2
  beside the file's and the divided ones.

    python benchmarks/bench_qualisys_distortion.py [--cache ~/.cache/build_h3wb]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

from build_h3wb.geometry.calibration_formats import load_qualisys

BOARD = (4, 7)  # inner corners (Pose2Sim's Config.toml: intrinsics_corners_nb)
SQUARE_MM = 60.0
PREFIX = "Pose2Sim/Demo_SinglePerson/calibration/"


def fetch(cache: Path) -> Path:
    """The demo's calibration folder (the wheel downloaded with ``pip download --no-deps`` if not cached)."""
    wheels = sorted((cache / "pose2sim_wheel").glob("pose2sim-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "pose2sim==0.10.49", "-d",
                        str(cache / "pose2sim_wheel")], check=True)
        wheels = sorted((cache / "pose2sim_wheel").glob("pose2sim-*.whl"))
    out = cache / "pose2sim" / PREFIX
    if not (out / "Calib.qca.txt").exists():
        with zipfile.ZipFile(wheels[-1]) as z:
            z.extractall(cache / "pose2sim", [n for n in z.namelist() if n.startswith(PREFIX)])
    return out


def main() -> None:
    """Print, per camera, the corner RMS for both readings and the recalibrated coefficients."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("BUILD_H3WB_CACHE", "~/.cache/build_h3wb")))
    args = ap.parse_args()
    base = fetch(args.cache.expanduser().resolve())
    as_written = load_qualisys(base / "Calib.qca.txt")
    divided = load_qualisys(base / "Calib.qca.txt", divide_distortion=True)
    board = np.zeros((BOARD[0] * BOARD[1], 3), np.float32)
    board[:, :2] = np.mgrid[0 : BOARD[0], 0 : BOARD[1]].T.reshape(-1, 2) * SQUARE_MM
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
    print("| camera | boards | corner RMS px, as written | corner RMS px, divided by 64 | recalibrated k1, k2 | "
          "file k1, k2 | divided k1, k2 |\n|---|---|---|---|---|---|---|")
    for cam, cam64 in zip(as_written, divided):
        corners = []
        for f in sorted((base / "intrinsics" / f"int_{cam.name}_img").glob("*.jpg")):
            grey = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2GRAY)
            ok, c = cv2.findChessboardCorners(grey, BOARD)
            if ok:
                corners.append(cv2.cornerSubPix(grey, c, (11, 11), (-1, -1), criteria))
        rms = []
        for c_ in (cam, cam64):
            err = []
            for c in corners:
                _, rvec, tvec = cv2.solvePnP(board, c, c_.K, c_.dist)
                rvec, tvec = cv2.solvePnPRefineLM(board, c, c_.K, c_.dist, rvec, tvec)
                err.append(np.linalg.norm(cv2.projectPoints(board, rvec, tvec, c_.K, c_.dist)[0] - c, axis=-1).ravel())
            rms.append(float(np.sqrt(np.mean(np.concatenate(err) ** 2))) if err else float("nan"))
        _, _, dist, *_ = cv2.calibrateCamera([board] * len(corners), corners, cam.image_size, cam.K.copy(), None,
                                             flags=cv2.CALIB_FIX_K3 | cv2.CALIB_USE_INTRINSIC_GUESS)
        d = dist.ravel()
        print(f"| {cam.name} | {len(corners)} | {rms[0]:.3f} | {rms[1]:.3f} | {d[0]:.4f}, {d[1]:.4f} | "
              f"{cam.dist[0]:.4f}, {cam.dist[1]:.4f} | {cam64.dist[0]:.5f}, {cam64.dist[1]:.5f} |")


if __name__ == "__main__":
    main()
