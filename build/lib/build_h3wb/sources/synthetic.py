"""The synthetic Human3.6M-like capture: real Human3.6M calibration, generated whole-body motion, ground truth.

Frames are numbered like a Human3.6M video (``video_fps``, counted from 0) and every ``stride``-th one is
selected, so sequence files, frame numbers and the later export look exactly as they would on the real dataset.
The motion at a frame depends only on (seed, subject, sequence, time): any frame range can be generated alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence as SequenceT
from typing import Any

import numpy as np

from build_h3wb.geometry.cameras import Rig, h36m_rig
from build_h3wb.sources.base import FrameBatch, Sequence
from build_h3wb.sources.h36m import check_h36m_selection
from build_h3wb.synthetic.motion import generate_motion


class SyntheticSource:
    """Synthetic subjects performing Human3.6M actions in front of the Human3.6M cameras.

    Args:
        subjects: Human3.6M subject ids whose calibration to use (S1, S5, S6, S7, S8, S9, S11).
        actions: canonical action names (see ``build_h3wb.synthetic.motion.ACTIONS``).
        repeats: sub-actions per action, named ``"<action> 1"``, ``"<action> 2"``, ...
        duration_s: length of every sequence in seconds.
        video_fps: frame rate of the simulated video.
        stride: every ``stride``-th frame is selected.
        seed: motion seed.
    """

    name = "synthetic"

    def __init__(
        self,
        subjects: SequenceT[str],
        actions: SequenceT[str],
        repeats: int = 1,
        duration_s: float = 20.0,
        video_fps: float = 50.0,
        stride: int = 5,
        seed: int = 0,
    ) -> None:
        check_h36m_selection(subjects, actions)
        if repeats < 1 or duration_s <= 0 or video_fps <= 0 or stride < 1:
            raise ValueError("data: repeats and stride must be >= 1, duration_s and video_fps > 0")
        self.subjects = list(subjects)
        self.actions = list(actions)
        self.repeats = int(repeats)
        self.duration_s = float(duration_s)
        self.video_fps = float(video_fps)
        self.stride = int(stride)
        self.seed = int(seed)
        self._rigs: dict[str, Rig] = {}

    def describe(self) -> dict[str, Any]:
        """Settings that determine the capture."""
        return {
            "source": self.name,
            "subjects": self.subjects,
            "actions": self.actions,
            "repeats": self.repeats,
            "duration_s": self.duration_s,
            "video_fps": self.video_fps,
            "stride": self.stride,
            "seed": self.seed,
        }

    def sequences(self) -> list[Sequence]:
        """Every (subject, action, repeat) in configuration order."""
        return [
            Sequence(subject=s, action=a, name=f"{a} {r + 1}")
            for s in self.subjects
            for a in self.actions
            for r in range(self.repeats)
        ]

    def rig(self, seq: Sequence) -> Rig:
        """The subject's Human3.6M cameras."""
        if seq.subject not in self._rigs:
            self._rigs[seq.subject] = h36m_rig(seq.subject)
        return self._rigs[seq.subject]

    def frames(self, seq: Sequence) -> np.ndarray:
        """(T,) selected frame numbers of the simulated video."""
        return np.arange(0, int(round(self.duration_s * self.video_fps)), self.stride, dtype=np.int64)

    def view_frames(self, seq: Sequence, view: str) -> np.ndarray:
        """(T,) selected frame numbers: every simulated view has the same frames."""
        if view not in self.rig(seq).names:
            raise ValueError(f"{seq.key}: no camera {view!r} (cameras: {', '.join(self.rig(seq).names)})")
        return self.frames(seq)

    def ground_truth(self, seq: Sequence, frames: np.ndarray) -> np.ndarray:
        """(T, J, 3) world millimetres at the given frame numbers."""
        rig = self.rig(seq)
        volume = rig.capture_volume or {"center_xy": (0.0, 0.0), "half_extent_xy": (1500.0, 1500.0)}
        repeat = int(seq.name.rsplit(" ", 1)[1]) - 1
        return generate_motion(
            seq.subject,
            seq.action,
            np.asarray(frames, dtype=np.float64) / self.video_fps,
            seed=self.seed * 1000 + repeat,
            center_xy_mm=tuple(volume["center_xy"]),
            half_extent_xy_mm=tuple(volume["half_extent_xy"]),
        )

    def batches(self, seq: Sequence, view: str, frames: np.ndarray, batch_size: int) -> Iterator[FrameBatch]:
        """Batches with the ground truth the simulated detector needs (no pixels)."""
        cam = self.rig(seq)[view]
        gt = self.ground_truth(seq, frames)
        for s in range(0, len(frames), batch_size):
            yield FrameBatch(sequence=seq, camera=cam, frames=frames[s : s + batch_size],
                             world_keypoints=gt[s : s + batch_size])
