"""The synthetic Human3.6M-like capture: real Human3.6M calibration, generated whole-body motion, ground truth.

Frames are numbered like a Human3.6M video (``video_fps``, counted from 0) and every ``stride``-th one is
selected, so sequence files, frame numbers and the later export look exactly as they would on the real dataset.
The motion at a frame depends only on (seed, subject, sequence, time): any frame range can be generated alone.

``rig`` (``data.rig=FILE``) replaces the Human3.6M cameras by any calibration (a rig .json, an anipose/Pose2Sim
.toml, an EasyMocap folder or a Qualisys .qca.txt, as ``data=rig`` reads them) for every subject, so the
ground-truth benchmark covers other rigs: e.g. four portrait 1088x1920 cameras. The subject walks within the rig's
capture volume when the file gives one, else within 1.5 m of the point on the floor the cameras look at.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from build_h3wb.geometry.cameras import Camera, Rig, h36m_rig
from build_h3wb.sources.base import FrameBatch, Recording
from build_h3wb.sources.h36m import check_h36m_selection
from build_h3wb.synthetic.motion import generate_motion


def load_any_rig(path: str) -> Rig:
    """A rig from any calibration format ``data=rig`` reads (see ``build_h3wb.geometry.calibration_formats``)."""
    from build_h3wb.geometry.calibration_formats import load_calibration

    return load_calibration(path)


def ring_rig(
    num_cameras: int = 4,
    image_size: tuple[int, int] = (1088, 1920),
    focal_px: float = 1700.0,
    radius_mm: float = 3800.0,
    height_mm: float = 1200.0,
    aim_height_mm: float = 950.0,
    name: str = "ring",
) -> Rig:
    """A rig of cameras evenly spaced on a circle around the origin, all aimed at a point above it.

    The default is a portrait four-camera lab rig (1088x1920, a person about 950 px tall at the centre).

    Args:
        num_cameras: how many cameras.
        image_size: (W, H) pixels.
        focal_px: focal length in pixels (principal point at the image centre, no distortion).
        radius_mm: distance of the cameras from the vertical axis through the origin.
        height_mm: camera height above the floor (z = 0, z up).
        aim_height_mm: height of the point on the axis they look at.
        name: the rig's name; cameras are named ``cam01``, ``cam02``, ...

    Returns:
        The rig, with a 1.2 m capture volume around the origin.
    """
    w, h = image_size
    K = np.array([[focal_px, 0.0, (w - 1) / 2], [0.0, focal_px, (h - 1) / 2], [0.0, 0.0, 1.0]])
    cams = []
    for k in range(num_cameras):
        a = 2 * np.pi * k / num_cameras
        c = np.array([radius_mm * np.cos(a), radius_mm * np.sin(a), height_mm])
        fwd = np.array([0.0, 0.0, aim_height_mm]) - c
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        R = np.stack([right, down, fwd])  # camera x right, y down, z forward
        cams.append(Camera(f"cam{k + 1:02d}", (w, h), K, np.zeros(5), R, -R @ c))
    return Rig(name, tuple(cams), {"center_xy": (0.0, 0.0), "half_extent_xy": (1200.0, 1200.0)})


def looked_at_xy(rig: Rig) -> np.ndarray:
    """(2,) world mm: the point on the floor plane nearest to every camera's optical axis (least squares)."""
    A = np.zeros((2, 2))
    b = np.zeros(2)
    for cam in rig:
        d = cam.optical_axis[:2]
        n = np.linalg.norm(d)
        if n < 1e-6:
            continue
        d = d / n
        P = np.eye(2) - np.outer(d, d)  # distance to the axis's ground projection
        A += P
        b += P @ cam.center[:2]
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return np.mean([cam.center[:2] for cam in rig], axis=0)


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
        rig: calibration file of the cameras to use instead of Human3.6M's (empty: Human3.6M's, per subject).
    """

    name = "synthetic"

    def __init__(
        self,
        subjects: Sequence[str],
        actions: Sequence[str],
        repeats: int = 1,
        duration_s: float = 20.0,
        video_fps: float = 50.0,
        stride: int = 5,
        seed: int = 0,
        rig: str = "",
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
        self.rig_file = str(rig)
        self._rigs: dict[str, Rig] = {}
        self._custom: Rig | None = load_any_rig(self.rig_file) if self.rig_file else None

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
            **({"rig": self.rig_file, "rig_content": self._custom.to_dict()} if self._custom is not None else {}),
        }

    def sequences(self) -> list[Recording]:
        """Every (subject, action, repeat) in configuration order."""
        return [
            Recording(subject=s, action=a, name=f"{a} {r + 1}")
            for s in self.subjects
            for a in self.actions
            for r in range(self.repeats)
        ]

    def rig(self, seq: Recording) -> Rig:
        """The subject's Human3.6M cameras, or the rig of ``rig``."""
        if self._custom is not None:
            return self._custom
        if seq.subject not in self._rigs:
            self._rigs[seq.subject] = h36m_rig(seq.subject)
        return self._rigs[seq.subject]

    def frames(self, seq: Recording) -> np.ndarray:
        """(T,) selected frame numbers of the simulated video."""
        return np.arange(0, int(round(self.duration_s * self.video_fps)), self.stride, dtype=np.int64)

    def view_frames(self, seq: Recording, view: str) -> np.ndarray:
        """(T,) selected frame numbers: every simulated view has the same frames."""
        if view not in self.rig(seq).names:
            raise ValueError(f"{seq.key}: no camera {view!r} (cameras: {', '.join(self.rig(seq).names)})")
        return self.frames(seq)

    def ground_truth(self, seq: Recording, frames: np.ndarray) -> np.ndarray:
        """(T, J, 3) world millimetres at the given frame numbers."""
        rig = self.rig(seq)
        volume = rig.capture_volume or {"center_xy": tuple(looked_at_xy(rig)), "half_extent_xy": (1500.0, 1500.0)}
        repeat = int(seq.name.rsplit(" ", 1)[1]) - 1
        return generate_motion(
            seq.subject,
            seq.action,
            np.asarray(frames, dtype=np.float64) / self.video_fps,
            seed=self.seed * 1000 + repeat,
            center_xy_mm=tuple(volume["center_xy"]),
            half_extent_xy_mm=tuple(volume["half_extent_xy"]),
        )

    def batches(self, seq: Recording, view: str, frames: np.ndarray, batch_size: int) -> Iterator[FrameBatch]:
        """Batches with the ground truth the simulated detector needs (no pixels)."""
        cam = self.rig(seq)[view]
        gt = self.ground_truth(seq, frames)
        for s in range(0, len(frames), batch_size):
            yield FrameBatch(sequence=seq, camera=cam, frames=frames[s : s + batch_size],
                             world_keypoints=gt[s : s + batch_size])
