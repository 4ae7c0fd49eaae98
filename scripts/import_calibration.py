"""Convert a camera calibration (anipose / Pose2Sim TOML, EasyMocap YAML, rig JSON) into a build_h3wb rig file.

Usage:
    python scripts/import_calibration.py calibration.toml rig.json                  # anipose, millimetres
    python scripts/import_calibration.py Calib_scene.toml rig.json --units m        # Pose2Sim writes metres
    python scripts/import_calibration.py easymocap_dir/ rig.json --image-size 1920 1080

Prints one line per camera (name, image size, focal lengths, distance of the optical centre from the world origin)
and writes OUTPUT with ``build_h3wb.geometry.cameras.save_rig`` (world millimetres). Exits with status 2 and a message
naming the file, camera and key when the calibration is invalid.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from build_h3wb.geometry.calibration_formats import FORMATS, UNITS, load_calibration
from build_h3wb.geometry.cameras import CalibrationError, save_rig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="calibration file or EasyMocap folder")
    parser.add_argument("output", type=Path, help="rig file to write (.json)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: from the path)")
    parser.add_argument(
        "--units",
        choices=UNITS,
        default=None,
        help="unit of the input's translations (default: anipose [metadata] units or mm; EasyMocap m)",
    )
    parser.add_argument(
        "--image-size", type=int, nargs=2, metavar=("W", "H"), help="image size of every camera (EasyMocap)"
    )
    parser.add_argument("--no-scale-check", action="store_true", help="accept a rig spanning outside 0.1-100 m")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    kwargs: dict = {}
    if args.units is not None:
        kwargs["units"] = args.units
    if args.image_size is not None:
        kwargs["image_size"] = tuple(args.image_size)
    if args.no_scale_check:
        kwargs["check_scale"] = False
    try:
        rig = load_calibration(args.input, format=args.format, **kwargs)
    except (CalibrationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for cam in rig:
        w, h = cam.image_size
        print(
            f"{cam.name}: {w}x{h} px, focal {cam.K[0, 0]:.1f}/{cam.K[1, 1]:.1f} px, "
            f"centre {np.linalg.norm(cam.center) / 1000.0:.3f} m from the origin"
        )
    save_rig(rig, args.output)
    print(f"wrote {args.output} ({len(rig)} cameras, rig {rig.name!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
