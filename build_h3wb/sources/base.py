"""The small interface every capture source implements, and the batch of frames a detector receives."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from build_h3wb.geometry.cameras import Camera, Rig


@dataclass(frozen=True)
class Recording:
    """One multi-view recording.

    Attributes:
        subject: subject id, e.g. ``"S1"``.
        action: canonical action name, e.g. ``"Walking"``.
        name: the recording's own name, used for file names (e.g. ``"Walking 1"``; the Human3.6M video of camera
            ``c`` is ``"<name>.<c>.mp4"``).
    """

    subject: str
    action: str
    name: str

    @property
    def key(self) -> str:
        """``subject/name``: unique within a source."""
        return f"{self.subject}/{self.name}"


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive selected frames of one view, as a detector receives them.

    Attributes:
        sequence: the recording.
        camera: the calibrated camera of this view.
        frames: (B,) int frame numbers in the video (counted from 0, as OpenCV reads them).
        images: (B, H, W, 3) uint8 RGB, or None when the source has no pixels (the synthetic capture).
        world_keypoints: (B, J, 3) world millimetres ground truth, only for simulated detection; None otherwise.
    """

    sequence: Recording
    camera: Camera
    frames: np.ndarray
    images: np.ndarray | None = None
    world_keypoints: np.ndarray | None = None


@runtime_checkable
class Source(Protocol):
    """A capture: sequences, their calibration, their frames and, where known, their ground truth."""

    def sequences(self) -> list[Recording]:
        """All recordings selected by the configuration, in a stable order."""
        ...

    def rig(self, seq: Recording) -> Rig:
        """The calibrated cameras of a recording (its view order is the view axis of every array)."""
        ...

    def view_frames(self, seq: Recording, view: str) -> np.ndarray:
        """(T,) int selected frame numbers of one view's recording (views of a capture may differ in length).

        Raises:
            build_h3wb.sources.video.VideoError: the view's video is missing, unreadable or does not fit its
                calibration (the detect stage reports it and goes on with the other views).
        """
        ...

    def batches(self, seq: Recording, view: str, frames: np.ndarray, batch_size: int) -> Iterator[FrameBatch]:
        """The given frames of one view, ``batch_size`` at a time."""
        ...

    def ground_truth(self, seq: Recording, frames: np.ndarray) -> np.ndarray | None:
        """(T, J, 3) world millimetres at the given frames, NaN where unknown; None when the source has none."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings that determine the source's output (stored in manifests)."""
        ...


def frame_number_batches(seq: Recording, camera: Camera, frames: np.ndarray, batch_size: int) -> Iterator[FrameBatch]:
    """``FrameBatch``es of frame numbers only (no pixels, no ground truth), for detectors that need nothing else."""
    frames = np.asarray(frames, dtype=np.int64)
    for s in range(0, len(frames), batch_size):
        yield FrameBatch(sequence=seq, camera=camera, frames=frames[s : s + batch_size])
