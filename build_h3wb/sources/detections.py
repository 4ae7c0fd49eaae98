"""A calibrated rig known only by its detections: another tool's 2D files and a calibration, no videos.

``data=detections detector=files detector.root=DIR data.calibration=FILE`` builds from a folder laid out as
:mod:`build_h3wb.detectors.files` reads it (``<root>/<sequence>/<camera>/`` per-frame files, or
``<root>/<sequence>/<camera>.json`` per video; or the cameras directly in ``<root>`` for a single recording). The
data settings ``root``, ``pattern`` and ``first_frame`` default to the detector's. A view's frames are the frames
its files hold (after ``first_frame``), selected by ``start``/``stop``/``stride``; views of a sequence may differ
(the detect stage aligns them by frame number). The videos are not needed: stages that draw or cut images
(``pictures`` over images, ``export.images``) draw on a neutral background or have nothing to cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb.detectors.files import open_view, view_exists
from build_h3wb.sources.base import FrameBatch, Recording, frame_number_batches
from build_h3wb.sources.rig import RigSource


class DetectionsSource(RigSource):
    """Sequences, calibration and frame numbers of a capture given as detection files (see the module docstring).

    Args:
        root: the detections folder.
        calibration: the calibration file or folder (as for ``data=rig``).
        pattern: a view's path below ``root``: ``{sequence}/`` then a path naming ``{camera}`` (several
            recordings), or a path naming ``{camera}`` (one recording, the cameras directly in ``root``).
        first_frame: the number the tool gave the first frame.
        fps: the frame rate of the recording the files were detected on (0: unknown; triangulate's jump check and
            temporal smoothing then stay off, since the time between frames is not known).
        **rig: the other settings of :class:`~build_h3wb.sources.rig.RigSource` (``calibration_format``, ``units``,
            ``subject``, ``sequences``, ``cameras``, ``stride``, ``start``, ``stop``), passed on as they are.
    """

    name = "detections"

    def __init__(self, root: str, calibration: str, pattern: str = "{sequence}/{camera}", first_frame: int = 0,
                 fps: float = 0.0, **rig: Any) -> None:
        super().__init__(root, calibration, **rig)
        if "{camera}" not in pattern or not (pattern.startswith("{sequence}/") or "{sequence}" not in pattern):
            raise ValueError(f"data.pattern={pattern!r}: data=detections reads <root>/{{sequence}}/...{{camera}}... "
                             "(or, for one recording, <root>/...{camera}...)")
        self.pattern, self.first_frame, self.fps = pattern, int(first_frame), float(fps)

    def describe(self) -> dict[str, Any]:
        """Settings that determine the frames (the calibration itself is stored with the detections)."""
        return {**super().describe(), "source": self.name, "pattern": self.pattern, "first_frame": self.first_frame,
                "video_fps": self.fps}

    def _base(self, folder: Path, view: str) -> Path:
        """A view's detections path, ``folder`` being the sequence folder (or ``root`` for a single recording)."""
        rest = self.pattern.split("{sequence}", 1)[-1].lstrip("/")
        return folder / rest.format(camera=view, subject=self.subject)

    def _has_views(self, folder: Path) -> bool:
        return any(view_exists(self._base(folder, cam)) for cam in self._load_rig().names)

    def view_frames(self, seq: Recording, view: str) -> np.ndarray:
        """(T,) the frames this view's files hold, every ``stride``-th from ``start``, before ``stop``.

        Raises:
            VideoError: the view has no detections (reported by the detect stage as a failed view).
        """
        if not hasattr(self, "_folders"):
            self.sequences()
        found = np.array(sorted(open_view(self._base(self._folders[seq.name], view), self.first_frame, "auto",
                                          (seq.key, view)).numbers()), dtype=np.int64)
        found = found[(found >= self.start) & ((found < self.stop) if self.stop else True)]
        return found[(found - self.start) % self.stride == 0]

    def video_info(self, seq: Recording, view: str) -> dict:
        """No video: nothing to record."""
        return {}

    def batches(self, seq: Recording, view: str, frames: np.ndarray, batch_size: int) -> Iterator[FrameBatch]:
        """Frame numbers only: there are no pixels."""
        yield from frame_number_batches(seq, self.rig(seq)[view], frames, batch_size)
