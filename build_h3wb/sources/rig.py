"""Any calibrated multi-view capture: synchronised videos (or image folders) plus a calibration file.

Layout read::

    <root>/<sequence>/<camera>.mp4     one video per camera (any OpenCV-readable container), or
    <root>/<sequence>/<camera>/        a folder of images per camera (frame i = the i-th image in name order)

or, for a single recording, the camera videos/folders directly in ``<root>`` (the sequence is then named after
``<root>``). Camera names are the calibration's. The calibration is a build_h3wb rig file (``.json``), an
anipose / Pose2Sim ``.toml`` or an EasyMocap / OpenCV ``intri.yml`` + ``extri.yml`` folder (see
``build_h3wb.geometry.calibration_formats``). The videos must be synchronised (frame i of every camera shows the same
instant). Such a capture has no ground truth: every stage runs, and only the geometric measures are reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb.artifacts import config_hash
from build_h3wb.geometry.cameras import Rig
from build_h3wb.sources.base import Recording
from build_h3wb.sources.video import FrameReader, VideoError, VideoViews, check_frame_range, find_view

log = logging.getLogger(__name__)


class RigSource(VideoViews):
    """Synchronised views of a calibrated rig.

    Args:
        root: the capture folder (see the module docstring).
        calibration: the calibration file or folder.
        calibration_format: ``auto``, ``rig`` (build_h3wb JSON), ``anipose`` (TOML) or ``easymocap`` (YAML).
        units: length unit of the calibration's translations (``mm``, ``cm``, ``m``; empty: the format's default).
        subject: the subject id given to every sequence.
        sequences: sequence folders to use (empty: all).
        cameras: cameras to use (empty: all in the calibration).
        stride: every ``stride``-th frame, from ``start``.
        start: first frame (counted from 0).
        stop: frames before this one (0: to the end).
    """

    name = "rig"

    def __init__(
        self,
        root: str,
        calibration: str,
        calibration_format: str = "auto",
        units: str = "",
        subject: str = "subject",
        sequences: Sequence[str] = (),
        cameras: Sequence[str] = (),
        stride: int = 1,
        start: int = 0,
        stop: int = 0,
    ) -> None:
        check_frame_range(stride, start, stop)
        self.root = Path(root).expanduser()
        self.calibration = Path(calibration).expanduser()
        self.calibration_format, self.units = calibration_format, units
        self.subject = subject
        self.selected = list(sequences)
        self.cameras = list(cameras)
        self.stride, self.start, self.stop = int(stride), int(start), int(stop)
        self._rig: Rig | None = None

    def describe(self) -> dict[str, Any]:
        """Settings that determine the detections, with a hash of the calibration's content (not only its path).

        Editing the calibration file in place changes ``calibration_hash``, so the detect stage reports the changed
        configuration instead of keeping detections assembled with the old cameras.
        """
        return {"source": self.name, "root": str(self.root.resolve()), "calibration": str(self.calibration.resolve()),
                "calibration_hash": self._calibration_hash(), "video_fps": self._video_fps(),
                "calibration_format": self.calibration_format, "units": self.units, "subject": self.subject,
                "sequences": self.selected, "cameras": self.cameras, "stride": self.stride, "start": self.start,
                "stop": self.stop}

    def _load_rig(self) -> Rig:
        if self._rig is None:
            from build_h3wb.geometry.calibration_formats import load_calibration  # noqa: PLC0415

            kwargs = {"units": self.units} if self.units else {}
            rig = load_calibration(self.calibration, format=self.calibration_format, **kwargs)
            if self.cameras:
                missing = [c for c in self.cameras if c not in rig.names]
                if missing:
                    raise ValueError(f"data.cameras: {missing} are not in {self.calibration} "
                                     f"(cameras: {', '.join(rig.names)})")
                rig = Rig(name=rig.name, cameras=tuple(rig[c] for c in self.cameras),
                          capture_volume=rig.capture_volume)
            self._rig = rig
        return self._rig

    def _has_views(self, folder: Path) -> bool:
        return any(find_view(folder, cam) is not None for cam in self._load_rig().names)

    def sequences(self) -> list[Recording]:
        """The recordings found under ``root``, sorted by name."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root={self.root}: no such folder")
        if self._has_views(self.root):
            found = {self.root.name: self.root}
        else:
            found = {p.name: p for p in sorted(self.root.iterdir()) if p.is_dir() and self._has_views(p)}
        if self.selected:
            missing = [s for s in self.selected if s not in found]
            if missing:
                raise FileNotFoundError(f"data.sequences: {missing} not found in {self.root} (found {sorted(found)})")
            found = {s: found[s] for s in self.selected}
        if not found:
            raise FileNotFoundError(f"{self.root}: no videos or image folders named after the calibration's cameras "
                                    f"({', '.join(self._load_rig().names)})")
        self._folders = found
        return [Recording(subject=self.subject, action=re.sub(r"[\s_-]*\d+$", "", name) or name, name=name)
                for name in found]

    def _calibration_hash(self) -> str | None:
        """Hash of the loaded calibration (None while the file is missing: loading it then says so)."""
        return config_hash(self._load_rig().to_dict()) if self.calibration.exists() else None

    def _video_fps(self) -> float:
        """The frame rate the first readable video reports (0.0 for image folders only, or no capture yet)."""
        if not (self.root.is_dir() and self.calibration.exists()):
            return 0.0
        for seq in self.sequences():
            for cam in self._load_rig().names:
                try:
                    fps = self._open(seq, cam).fps
                except VideoError:
                    continue
                if fps > 0:
                    return round(float(fps), 3)
        return 0.0

    def _calibrated_rig(self, seq: Recording) -> Rig:
        """The calibration's cameras (one rig for every sequence)."""
        return self._load_rig()

    def _open(self, seq: Recording, view: str) -> FrameReader:
        if not hasattr(self, "_folders"):
            self.sequences()
        folder = self._folders[seq.name]
        path = find_view(folder, view)
        if path is None:
            raise VideoError(f"{folder}: no video or image folder for camera {view!r}")
        return FrameReader(path)

    def ground_truth(self, seq: Recording, frames: np.ndarray) -> None:
        """A real rig has no ground truth."""
        return None
