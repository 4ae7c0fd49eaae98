"""Convert the published Human3.6M calibration (h36m_cameras.json) into build_h3wb rig files.

Usage: python scripts/convert_h36m_cameras.py path/to/h36m_cameras.json build_h3wb/data/rigs/h36m

A development-time step: the package ships the converted files and never reads the source at run time.
Resolutions follow the video files (54138969 and 60457274 are 1000 x 1002, the other two 1000 x 1000), not the
metadata table, which claims 1002 rows for all of S7's cameras.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from build_h3wb.geometry.cameras import Camera, Rig, save_rig

#: Capture volume on the floor (world mm), 0-1.95 m high: the largest box (found by search) whose every point lands
#: inside all four images of every subject (10 px margin).
CAPTURE_VOLUME = {"center_xy": (100.0, 550.0), "half_extent_xy": (1150.0, 1150.0)}
VIDEO_SIZE_WH = {"54138969": (1000, 1002), "55011271": (1000, 1000), "58860488": (1000, 1000), "60457274": (1000, 1002)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    data = json.loads(args.source.read_text())
    for subject, extr in data["extrinsics"].items():
        cams = []
        for cam_id in data["camera_ids"]:
            intr = data["intrinsics"][cam_id]
            cams.append(
                Camera(
                    name=cam_id,
                    image_size=VIDEO_SIZE_WH[cam_id],
                    K=intr["K"],
                    dist=intr["dist_opencv_order_k1_k2_p1_p2_k3"],
                    R=extr[cam_id]["R_world_to_cam"],
                    t=extr[cam_id]["t_world_to_cam_mm"],
                    distortion_model="h36m",
                )
            )
        save_rig(Rig(f"h36m_{subject}", tuple(cams), CAPTURE_VOLUME), args.out_dir / f"{subject}.json")
        print(f"wrote {args.out_dir / f'{subject}.json'}")


if __name__ == "__main__":
    main()
