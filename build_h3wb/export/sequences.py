"""The poses an export writes (:class:`ExportSequence`), their checks, and the quality order of the H3WB files.

``C`` is the number of cameras of the rigs (all sequences must share it), ``J`` is ``skeleton.NUM_KEYPOINTS``
(COCO-WholeBody order) and ``T`` the number of poses of one recording.
"""

from __future__ import annotations

import enum
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import h5py
import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import Rig

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
UNASSIGNED = "unassigned"


class Provenance(enum.IntEnum):
    """How a keypoint of an exported pose was obtained (stored as uint8)."""

    TRIANGULATED = 0
    COMPLETED = 1
    REFINED = 2


class StoredPoses:
    """Chosen rows of a (N, J, 3) dataset of an HDF5 file, read when indexed and never kept: (T, J, 3) float64.

    What the export stage gives an :class:`ExportSequence` instead of an array, so an export holds one
    recording's poses at a time, not every selected pose (its memory stays flat in the size of the dataset). Indexing
    (an int, a slice, an integer or boolean array over the T rows) returns a new float64 array. The file is opened
    on first use and kept open, but at most :attr:`MAX_OPEN` files are open at once across all instances (the least
    recently used is closed), so the open files do not grow with the number of recordings either.

    Args:
        path: the HDF5 file.
        dataset: the dataset's name in it, (N, J, 3).
        rows: (T,) increasing row numbers of the dataset.
    """

    def __init__(self, path: str | os.PathLike, dataset: str, rows: np.ndarray) -> None:
        self.path, self.dataset = str(path), dataset
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.ndim != 1 or np.any(np.diff(self.rows) <= 0):
            raise ValueError(f"{path}: rows of {dataset!r} must be a (T,) increasing array, got {self.rows[:10]}")
        self._file: h5py.File | None = None
        self._ds: h5py.Dataset | None = None
        with h5py.File(self.path, "r") as f:
            tail = f[dataset].shape[1:]
        self.shape = (len(self.rows), *tail)

    ndim = 3
    dtype = np.dtype(np.float64)
    #: Files open at once across all instances: each costs HDF5 about 0.2 MB; a quality-ordered JSON block touches
    #: nearly every recording, so fewer open files than recordings means reopening them for every block.
    MAX_OPEN = 256
    _open: OrderedDict[int, StoredPoses] = OrderedDict()  # id -> instance with an open file, least recent first

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        want = self.rows[index]  # the file rows asked for, in the order asked
        flat = np.atleast_1d(want)
        if self._ds is None:
            while len(StoredPoses._open) >= self.MAX_OPEN:
                StoredPoses._open.popitem(last=False)[1].close()
            self._file = h5py.File(self.path, "r", rdcc_nbytes=1 << 16)
            self._ds = self._file[self.dataset]
        StoredPoses._open[id(self)] = self
        StoredPoses._open.move_to_end(id(self))
        if flat.size == 0:
            return np.empty((*np.shape(want), *self.shape[1:]))
        lo, hi = int(flat.min()), int(flat.max()) + 1
        if hi - lo <= 4 * flat.size:  # dense (a whole recording, a run of rows): one contiguous read
            out = self._ds[lo:hi].astype(np.float64)[flat - lo]
        else:  # a few rows spread over the recording (a block of the quality-ordered JSON files)
            uniq, inverse = np.unique(flat, return_inverse=True)
            out = self._ds[uniq].astype(np.float64)[inverse]
        return out[0] if np.ndim(want) == 0 else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def close(self) -> None:
        """Close the file (indexing again reopens it)."""
        StoredPoses._open.pop(id(self), None)
        if self._file is not None:
            self._file.close()
            self._file = self._ds = None


@dataclass(frozen=True, eq=False)
class ExportSequence:
    """The selected, complete poses of one recording, ready for export.

    Attributes:
        subject: subject name, e.g. ``"S1"``.
        action: canonical action, e.g. ``"Walking"``.
        sequence: recording name, e.g. ``"Walking 1"``; camera ``c``'s video is ``"<sequence>.<c>.mp4"``.
        frames: (T,) int64 distinct video frame numbers, from 0 as OpenCV reads the video.
        keypoints_3d: (T, J, 3) float64 world millimetres, finite (only complete poses are exported): an array, or
            a :class:`StoredPoses` that reads them from the build when indexed.
        provenance: (T, J) uint8 :class:`Provenance` codes.
        quality: (T,) float64, lower = better; the H3WB JSON files are ordered by it.
        rig: the subject's calibrated cameras (their order is the view order of every export).
    """

    subject: str
    action: str
    sequence: str
    frames: np.ndarray
    keypoints_3d: np.ndarray | StoredPoses
    provenance: np.ndarray
    quality: np.ndarray
    rig: Rig

    #: Stored poses are checked this many rows at a time (memory does not grow with the recording).
    CHECK_ROWS: ClassVar[int] = 512

    def __post_init__(self) -> None:
        where = f"sequence {self.subject}/{self.sequence}"
        for attr in ("subject", "action", "sequence"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"{where}: {attr} must be a non-empty string without '/', got {value!r}")
        if not isinstance(self.rig, Rig):
            raise ValueError(f"{where}: rig must be a build_h3wb.geometry.cameras.Rig, got {type(self.rig).__name__}")
        for name in self.rig.names:
            if "/" in name:
                raise ValueError(f"{where}: camera name {name!r} contains '/'")
        frames = np.asarray(self.frames)
        if frames.ndim != 1 or (frames.size and not np.issubdtype(frames.dtype, np.integer)):
            raise ValueError(f"{where}: frames must be a (T,) integer array, got shape {frames.shape} {frames.dtype}")
        frames = frames.astype(np.int64)
        T, J = len(frames), skeleton.NUM_KEYPOINTS
        if np.any(frames < 0) or len(np.unique(frames)) != T:
            raise ValueError(f"{where}: frames must be distinct and >= 0")
        stored = isinstance(self.keypoints_3d, StoredPoses)
        kp = self.keypoints_3d if stored else np.asarray(self.keypoints_3d, dtype=np.float64)
        if kp.shape != (T, J, 3):
            raise ValueError(f"{where}: keypoints_3d has shape {kp.shape}, expected (T, J, 3) = {(T, J, 3)}")
        step = self.CHECK_ROWS if stored else max(T, 1)  # stored poses are read (once) a block at a time
        for s in range(0, T, step):
            block = kp[s : s + step]  # (b, J, 3)
            if not np.all(np.isfinite(block)):
                bad = frames[s : s + step][~np.isfinite(block).all(axis=(1, 2))]
                raise ValueError(f"{where}: keypoints_3d must be finite (complete poses only); frames "
                                 f"{bad[:10].tolist()}")
        prov = np.asarray(self.provenance)
        if prov.shape != (T, J):
            raise ValueError(f"{where}: provenance has shape {prov.shape}, expected (T, J) = {(T, J)}")
        if not np.isin(prov, [int(p) for p in Provenance]).all():
            raise ValueError(f"{where}: provenance holds codes outside {[int(p) for p in Provenance]}")
        quality = np.asarray(self.quality, dtype=np.float64)
        if quality.shape != (T,):
            raise ValueError(f"{where}: quality has shape {quality.shape}, expected (T,) = {(T,)}")
        if np.any(np.isnan(quality)):
            raise ValueError(f"{where}: quality contains NaN")
        for attr, value in (("frames", frames), ("keypoints_3d", kp), ("provenance", prov.astype(np.uint8)),
                            ("quality", quality)):
            if attr == "keypoints_3d" and stored:
                continue  # kept on disk, read when indexed
            value.setflags(write=False)
            object.__setattr__(self, attr, value)

    @property
    def num_frames(self) -> int:
        """Number of poses T."""
        return len(self.frames)



def check_sequences(sequences: Sequence[ExportSequence]) -> int:
    """Validate a list of sequences for export; return the common number of cameras C."""
    if not sequences:
        raise ValueError("no sequences to export (an empty list)")
    if not all(isinstance(s, ExportSequence) for s in sequences):
        raise ValueError("sequences must be a list of ExportSequence")
    seen: set[tuple[str, str]] = set()
    rigs: dict[str, Rig] = {}
    counts = set()
    for s in sequences:
        key = (s.subject, s.sequence)
        if key in seen:
            raise ValueError(f"sequence {s.subject}/{s.sequence} is given twice")
        seen.add(key)
        counts.add(len(s.rig))
        if s.subject in rigs and not same_rig(rigs[s.subject], s.rig):
            raise ValueError(f"subject {s.subject}: sequences {s.sequence!r} and others use different calibrations; "
                             "exports store one rig per subject")
        rigs.setdefault(s.subject, s.rig)
    if len(counts) > 1:
        raise ValueError(f"all rigs must have the same number of cameras, got {sorted(counts)}")
    return counts.pop()


def same_rig(a: Rig, b: Rig) -> bool:
    """True when two rigs have the same camera names, sizes, distortion model and parameters."""
    if a is b:
        return True
    if a.names != b.names:
        return False
    return all(
        ca.image_size == cb.image_size and ca.distortion_model == cb.distortion_model
        and all(np.array_equal(getattr(ca, k), getattr(cb, k)) for k in ("K", "dist", "R", "t"))
        for ca, cb in zip(a, b)
    )


def subject_rigs(sequences: Sequence[ExportSequence]) -> dict[str, Rig]:
    """Subject -> its rig (the first sequence's; :func:`check_sequences` ensures they agree)."""
    rigs: dict[str, Rig] = {}
    for s in sequences:
        rigs.setdefault(s.subject, s.rig)
    return rigs


def check_split(split: Mapping[str, str]) -> None:
    """Raise ValueError when a split value is not one of :data:`SPLITS`."""
    bad = {k: v for k, v in split.items() if v not in SPLITS}
    if bad:
        raise ValueError(f"split values must be one of {SPLITS}, got {bad}")


def quality_order(sequences: Sequence[ExportSequence], split: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Rank the poses of each split by quality, as the H3WB JSON files order them.

    Args:
        sequences: the recordings.
        split: subject -> ``"train"`` or ``"test"``; subjects not in it are left out.

    Returns:
        split name -> (K, 2) int64 ``[index into sequences, row of that sequence]``, best (lowest) quality first;
        ties keep input order. Every name of :data:`SPLITS` is present.
    """
    check_split(split)
    out = {}
    for name in SPLITS:
        members = [i for i, s in enumerate(sequences) if split.get(s.subject) == name]
        if not members:
            out[name] = np.zeros((0, 2), dtype=np.int64)
            continue
        idx = np.concatenate([np.stack([np.full(sequences[i].num_frames, i), np.arange(sequences[i].num_frames)], 1)
                              for i in members]).astype(np.int64)  # (K, 2)
        quality = np.concatenate([sequences[i].quality for i in members])  # (K,)
        out[name] = idx[np.argsort(quality, kind="stable")]
    return out


def skipped_poses(sequences: Sequence[ExportSequence], split: Mapping[str, str]) -> dict[str, int]:
    """Poses per subject that is not in ``split`` (left out of the H3WB files), with a warning."""
    skipped: dict[str, int] = {}
    for s in sequences:
        if s.subject not in split:
            skipped[s.subject] = skipped.get(s.subject, 0) + s.num_frames
    if skipped:
        log.warning("subjects not in the split, left out of the H3WB files: %s (poses)", skipped)
    return skipped

