"""Human3.6M on disk, as the dataset distributes it, with the calibration shipped in this package.

Layout read (per subject)::

    <root>/S1/Videos/<Sequence>.<CameraID>.mp4           e.g. "Directions 1.54138969.mp4", 50 fps
    <root>/S1/MyPoseFeatures/D3_Positions/<Sequence>.cdf  optional mocap: variable "Pose", (1, N, 96) -> (N, 32, 3)
                                                          world millimetres, the frame of the calibration

Recording names are irregular across subjects (``TakingPhoto 1`` / ``Photo``, ``WalkingDog 1`` / ``WalkDog``,
numbered and unnumbered repeats); :func:`canonical_action` maps them to the 15 canonical actions, and names that
map to none (the ``_ALL`` sessions) are left out with a log line. Frames are counted from 0 as OpenCV reads them
(H3WB's numbering; ffmpeg extractions count from 1) and every ``stride``-th is selected (H3WB: 5).

Where the mocap is present, :meth:`H36MSource.ground_truth` gives the 12 body joints both layouts share
(shoulders, elbows, wrists, hips, knees, ankles) and NaN for the rest, so every stage's evaluation reports how good
a real build is on those joints. Human3.6M's hip joints are joint centres, COCO's hips are surface landmarks, so
hip (and the mid-hip root) errors include a systematic offset of a few centimetres.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import H36M_SUBJECTS, Rig, h36m_rig
from build_h3wb.sources.base import Recording
from build_h3wb.sources.video import FrameReader, VideoError, VideoViews, check_frame_range, find_view
from build_h3wb.synthetic.motion import ACTIONS

log = logging.getLogger(__name__)

ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog", "WalkingTogether": "WalkTogether"}
NUM_MOCAP_JOINTS = 32
# Human3.6M mocap joint index -> COCO-WholeBody keypoint name (the joints both layouts have)
VIDEO_FPS = 50.0  # Human3.6M's videos
MOCAP_TO_WHOLEBODY = {
    17: "left_shoulder", 25: "right_shoulder", 18: "left_elbow", 26: "right_elbow", 19: "left_wrist",
    27: "right_wrist", 6: "left_hip", 1: "right_hip", 7: "left_knee", 2: "right_knee", 8: "left_ankle",
    3: "right_ankle",
}  # fmt: skip


def check_h36m_selection(subjects: Sequence[str], actions: Sequence[str]) -> None:
    """A clear error for a subject without shipped calibration or an action that is not one of the 15."""
    unknown = [s for s in subjects if s not in H36M_SUBJECTS]
    if unknown:
        raise ValueError(f"data.subjects: no Human3.6M calibration for {unknown}; choose from {H36M_SUBJECTS}")
    bad = [a for a in actions if a not in ACTIONS]
    if bad:
        raise ValueError(f"data.actions: unknown action(s) {bad}; choose from {list(ACTIONS)}")


def canonical_action(name: str) -> str | None:
    """The canonical action of a Human3.6M sequence name (``"TakingPhoto 1"`` -> ``"Photo"``), None if none."""
    base = re.sub(r"[\s_]*\d+$", "", name.strip())
    base = ACTION_ALIASES.get(base, base)
    return base if base in ACTIONS else None


def mocap_to_wholebody(pose: np.ndarray) -> np.ndarray:
    """(N, 32, 3) Human3.6M mocap joints -> (N, J, 3) whole-body keypoints, NaN where the layouts share none."""
    if pose.ndim != 3 or pose.shape[1:] != (NUM_MOCAP_JOINTS, 3):
        raise ValueError(f"expected mocap poses (N, {NUM_MOCAP_JOINTS}, 3), got {pose.shape}")
    out = np.full((len(pose), skeleton.NUM_KEYPOINTS, 3), np.nan)
    src = list(MOCAP_TO_WHOLEBODY)
    out[:, [skeleton.index(MOCAP_TO_WHOLEBODY[i]) for i in src]] = pose[:, src]
    return out


def read_mocap(path: str | os.PathLike) -> np.ndarray:
    """(N, 32, 3) world millimetres from a Human3.6M ``D3_Positions`` CDF file (variable ``Pose``)."""
    import cdflib  # noqa: PLC0415 (only Human3.6M needs it)

    try:
        pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"), dtype=np.float64)
    except Exception as err:  # noqa: BLE001 (cdflib raises many types for damaged files)
        raise VideoError(f"{path}: cannot read the mocap variable 'Pose' ({type(err).__name__}: {err})") from err
    if pose.size % (NUM_MOCAP_JOINTS * 3):
        raise VideoError(f"{path}: 'Pose' has shape {pose.shape}, expected (1, N, {NUM_MOCAP_JOINTS * 3})")
    return pose.reshape(-1, NUM_MOCAP_JOINTS, 3)


class H36MSource(VideoViews):
    """Human3.6M videos (and, where present, mocap) in the dataset's own tree.

    Args:
        root: the folder holding ``S1``, ``S5``, ...
        subjects: subject ids (calibrations ship for S1, S5, S6, S7, S8, S9, S11).
        actions: canonical actions to keep.
        cameras: camera ids to use (empty: all four).
        stride: every ``stride``-th frame, from ``start``.
        start: first frame (counted from 0).
        stop: frames before this one (0: to the end of each video).
        mocap: read the mocap ground truth when present.
        exclude: sequences to leave out, as ``"S11/Directions"`` (subject/name).
    """

    name = "h36m"

    def __init__(
        self,
        root: str,
        subjects: Sequence[str] = H36M_SUBJECTS,
        actions: Sequence[str] = ACTIONS,
        cameras: Sequence[str] = (),
        stride: int = 5,
        start: int = 0,
        stop: int = 0,
        mocap: bool = True,
        exclude: Sequence[str] = (),
    ) -> None:
        check_h36m_selection(subjects, actions)
        check_frame_range(stride, start, stop)
        self.root = Path(root).expanduser()
        self.subjects, self.actions, self.cameras = list(subjects), list(actions), list(cameras)
        self.stride, self.start, self.stop = int(stride), int(start), int(stop)
        self.mocap, self.exclude = bool(mocap), list(exclude)
        self._rigs: dict[str, Rig] = {}
        self._mocap: dict[str, np.ndarray | None] = {}

    def describe(self) -> dict[str, Any]:
        """Settings that determine the detections."""
        return {"source": self.name, "root": str(self.root.resolve()), "video_fps": VIDEO_FPS,
                "subjects": self.subjects, "actions": self.actions, "cameras": self.cameras, "stride": self.stride,
                "start": self.start, "stop": self.stop, "exclude": self.exclude}

    def sequences(self) -> list[Recording]:
        """Every sequence of the selected subjects and actions that has at least one video, sorted by name."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root={self.root}: no such folder (expected the Human3.6M tree: "
                                    f"<root>/S1/Videos/<Sequence>.<CameraID>.mp4)")
        out = []
        for subject in self.subjects:
            videos = self.root / subject / "Videos"
            if not videos.is_dir():
                raise FileNotFoundError(f"{videos}: missing (subject {subject} selected in data.subjects)")
            names = set()
            for p in videos.iterdir():
                stem, _, camera = p.stem.rpartition(".") if p.is_file() else ("", "", "")
                if stem and camera in self.rig_for(subject).names:
                    names.add(stem)
            for name in sorted(names):
                action = canonical_action(name)
                if action is None:
                    log.info("h36m: %s/%s is not one of the 15 actions; left out", subject, name)
                elif action in self.actions and f"{subject}/{name}" not in self.exclude:
                    out.append(Recording(subject=subject, action=action, name=name))
        if not out:
            raise FileNotFoundError(f"{self.root}: no videos of subjects {self.subjects} and actions {self.actions}")
        return out

    def rig_for(self, subject: str) -> Rig:
        """The shipped calibration of a subject, restricted to ``cameras``."""
        if subject not in self._rigs:
            rig = h36m_rig(subject)
            if self.cameras:
                missing = [c for c in self.cameras if c not in rig.names]
                if missing:
                    raise ValueError(f"data.cameras: {missing} are not Human3.6M cameras ({', '.join(rig.names)})")
                rig = Rig(name=rig.name, cameras=tuple(rig[c] for c in self.cameras),
                          capture_volume=rig.capture_volume)
            self._rigs[subject] = rig
        return self._rigs[subject]

    def _calibrated_rig(self, seq: Recording) -> Rig:
        """The subject's calibrated cameras."""
        return self.rig_for(seq.subject)

    def _open(self, seq: Recording, view: str) -> FrameReader:
        path = find_view(self.root / seq.subject / "Videos", f"{seq.name}.{view}")
        if path is None:
            raise VideoError(f"{self.root / seq.subject / 'Videos'}: no video '{seq.name}.{view}.mp4'")
        return FrameReader(path)

    def ground_truth(self, seq: Recording, frames: np.ndarray) -> np.ndarray | None:
        """(T, J, 3) world mm of the 12 shared body joints from the mocap (NaN elsewhere), or None without mocap."""
        if not self.mocap:
            return None
        if seq.key not in self._mocap:
            path = self.root / seq.subject / "MyPoseFeatures" / "D3_Positions" / f"{seq.name}.cdf"
            if not path.exists():
                log.info("h36m: no mocap for %s (%s); it is not evaluated", seq.key, path)
                self._mocap[seq.key] = None
            else:
                self._mocap[seq.key] = mocap_to_wholebody(read_mocap(path))
        gt = self._mocap[seq.key]
        if gt is None:
            return None
        frames = np.asarray(frames, dtype=np.int64)
        out = np.full((len(frames), skeleton.NUM_KEYPOINTS, 3), np.nan)
        ok = frames < len(gt)
        out[ok] = gt[frames[ok]]
        return out
