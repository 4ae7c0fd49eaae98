"""Export formats for the finished dataset: one HDF5 file, the official H3WB JSON files, a VideoPose3D-style npz.

Every writer takes a list of :class:`ExportSequence` (the selected, complete poses of one recording with its rig)
and writes atomically (temporary file + ``os.replace``): an interrupted export leaves no partial file. ``C`` below is
the number of cameras of the rigs (4 for Human3.6M; all sequences must share it), ``J`` is
``skeleton.NUM_KEYPOINTS`` (COCO-WholeBody order) and ``N`` the number of exported poses.

Projections (all from the final world pose ``X``, millimetres, through :class:`~build_h3wb.cameras.Camera`):
plain pinhole ``K (R X + t) / z`` (what H3WB publishes as 2D), the same with lens distortion (where the keypoint
lies in the video frame), the camera frame ``R X + t`` (mm), and H3WB's 3D ``R X`` (world pose rotated into the
camera's axes, not translated, mm). Bounding boxes ``[x_min, y_min, x_max, y_max]`` are integer pixels around both
the pinhole and the distorted projections, widened by ``bbox_margin`` times the larger side of the keypoints' box
on every side and clipped to the image ``[0, W - 1] x [0, H - 1]`` (:func:`keypoint_bbox`).

Order of poses. The H3WB JSON files are ordered by quality (lower = better; ties keep input order) within each
split: the pose of rank ``k`` gets the sample ids ``C k .. C k + C - 1``, one per camera in rig order. The HDF5 file
and the npz keep recordings in input order and frames in ascending frame order (for temporal models); the HDF5
dataset ``h3wb_pose_index`` links each row to its rank ``k`` in its split's JSON files.

HDF5 schema (:func:`write_hdf5`; gzip-compressed; strings are UTF-8 ``h5py.string_dtype``)::

    keypoints_3d            (N, J, 3)    float64  world millimetres
    keypoints_2d            (N, C, J, 2) float64  pixels, pinhole K (R X + t) / z, no distortion (as H3WB)
    keypoints_2d_distorted  (N, C, J, 2) float64  pixels, with the camera's lens distortion (video frame)
    keypoints_3d_camera     (N, C, J, 3) float64  camera frame R X + t, millimetres
    bbox                    (N, C, 4)    int32    x_min, y_min, x_max, y_max pixels (see above)
    provenance              (N, J)       uint8    Provenance codes: 0 triangulated, 1 completed, 2 refined
    quality                 (N,)         float64  lower = better
    subject, action, sequence, split  (N,) str    split: "train", "test" or "unassigned" (subject not in split)
    frame                   (N,)         int64    video frame, counted from 0 as OpenCV reads it
    h3wb_pose_index         (N,)         int64    rank k in the split's H3WB JSON files (ids C k + c), -1 unassigned
    keypoint_names          (J,)         str
    cameras/<subject>/names (C,) str, K (C, 3, 3), dist (C, 5) [k1, k2, p1, p2, k3], R (C, 3, 3) world-to-camera,
                      t (C, 3) mm, image_size (C, 2) int32 (W, H); attribute distortion_model
    attributes: format, units, num_keypoints, num_cameras, bbox_margin, provenance_codes (JSON)

The camera axis ``C`` of a row follows ``cameras/<subject>/names`` of the row's subject. Reading it (a README can
copy this; the test suite runs it)::

    import h5py

    with h5py.File("h3wb_export.h5", "r") as f:
        kp3d = f["keypoints_3d"][:]            # (N, J, 3) world mm
        kp2d = f["keypoints_2d"][:]            # (N, C, J, 2) pinhole pixels
        subject = f["subject"].asstr()[:]      # (N,) e.g. "S1"
        frame = f["frame"][:]                  # (N,) video frame from 0
        cams = f["cameras"][subject[0]]
        K, R, t = cams["K"][:], cams["R"][:], cams["t"][:]  # (C, 3, 3), (C, 3, 3), (C, 3) mm
        names = cams["names"].asstr()[:]       # (C,) camera ids: the order of the C axis
        print(kp3d.shape, kp2d.shape, subject[0], frame[0], list(names))

H3WB JSON files (:func:`write_h3wb_json`), official layout ``{"<id>": {"image_path", "bbox": {"x_min", "y_min",
"x_max", "y_max"}, "keypoints_2d": {"0".."J-1": {"x", "y"}}, "keypoints_3d": {"0".."J-1": {"x", "y", "z"}}}}``
with ids ``"0", "1", ...``, 2D = pinhole pixels, 3D = ``R X`` mm, image path
``<subject>/Images/<sequence>.<camera>/frame_<frame, 4 digits>.jpg``:

- ``2Dto3D_train.json`` and ``RGBto3D_train.json``: train split, identical content, every sample with all four
  fields (the official 2D-to-3D loader reads only the keypoints, the RGB-to-3D loader image_path, bbox and 3D);
- ``2Dto3D_test_2d.json`` / ``2Dto3D_test_3d.json``: test ranks k = 0, 2, 4, ... (ids 0-3, 8-11, ... for C = 4),
  inputs keypoints_2d only / ground truth keypoints_3d only;
- ``I2Dto3D_test_2d.json`` / ``I2Dto3D_test_3d.json``: test ranks k = 1, 3, 5, ... (ids 4-7, 12-15, ...), the
  complete 2D (masking the inputs is left to the user, as the official README prescribes) / ground truth 3D;
- ``RGBto3D_test_img.json`` / ``RGBto3D_test_3d.json``: every test sample, image_path and bbox / ground truth 3D,
  ids ``0 .. C K - 1`` (the global test ids unless ``rgb_test_seed`` permutes them, as the official release does).

VideoPose3D-style npz (:func:`write_videopose3d_npz`; ``np.savez_compressed``, no pickled objects)::

    positions_3d/<subject>/<sequence>/global_3d                  (N, J, 3) float64 world mm
    positions_3d/<subject>/<sequence>/frame_id                   (N,) int64 video frame from 0
    positions_3d/<subject>/<sequence>/camera_3d/<camera>         (N, J, 3) float64 camera frame R X + t, mm
    positions_3d/<subject>/<sequence>/pose_2d/<camera>           (N, J, 2) float64 pinhole pixels
    positions_3d/<subject>/<sequence>/pose_2d_distorted/<camera> (N, J, 2) float64 pixels with lens distortion
    metadata                                                     (1,) str: JSON (format, keypoint names, flip
        index, parts, per-sequence action and frame count, per subject the camera order and per camera: id,
        res_w, res_h, K_over_1000 (K / 1000), R (world-to-camera), T (metres, X_cam = R X + T), center (camera
        position, world metres), distortion [k1, k2, p1, p2, k3], distortion_model)
"""

from __future__ import annotations

import enum
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.cameras import Rig

log = logging.getLogger(__name__)

HDF5_FORMAT = "build_h3wb.export.h5/1"
NPZ_FORMAT = "build_h3wb.videopose3d/1"
SPLITS = ("train", "test")
UNASSIGNED = "unassigned"

#: The H3WB JSON files :func:`write_h3wb_json` writes.
H3WB_FILES = (
    "2Dto3D_train.json",
    "RGBto3D_train.json",
    "2Dto3D_test_2d.json",
    "2Dto3D_test_3d.json",
    "I2Dto3D_test_2d.json",
    "I2Dto3D_test_3d.json",
    "RGBto3D_test_img.json",
    "RGBto3D_test_3d.json",
)


class Provenance(enum.IntEnum):
    """How a keypoint of an exported pose was obtained (stored as uint8)."""

    TRIANGULATED = 0
    COMPLETED = 1
    REFINED = 2


@dataclass(frozen=True, eq=False)
class ExportSequence:
    """The selected, complete poses of one recording, ready for export.

    Attributes:
        subject: subject name, e.g. ``"S1"``.
        action: canonical action, e.g. ``"Walking"``.
        sequence: recording name, e.g. ``"Walking 1"``; camera ``c``'s video is ``"<sequence>.<c>.mp4"``.
        frames: (T,) int64 distinct video frame numbers, from 0 as OpenCV reads the video.
        keypoints_3d: (T, J, 3) float64 world millimetres, finite (only complete poses are exported).
        provenance: (T, J) uint8 :class:`Provenance` codes.
        quality: (T,) float64, lower = better; the H3WB JSON files are ordered by it.
        rig: the subject's calibrated cameras (their order is the view order of every export).
    """

    subject: str
    action: str
    sequence: str
    frames: np.ndarray
    keypoints_3d: np.ndarray
    provenance: np.ndarray
    quality: np.ndarray
    rig: Rig

    def __post_init__(self) -> None:
        where = f"sequence {self.subject}/{self.sequence}"
        for attr in ("subject", "action", "sequence"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"{where}: {attr} must be a non-empty string without '/', got {value!r}")
        if not isinstance(self.rig, Rig):
            raise ValueError(f"{where}: rig must be a build_h3wb.cameras.Rig, got {type(self.rig).__name__}")
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
        kp = np.asarray(self.keypoints_3d, dtype=np.float64)
        if kp.shape != (T, J, 3):
            raise ValueError(f"{where}: keypoints_3d has shape {kp.shape}, expected (T, J, 3) = {(T, J, 3)}")
        if not np.all(np.isfinite(kp)):
            bad = frames[~np.isfinite(kp).all(axis=(1, 2))]
            raise ValueError(f"{where}: keypoints_3d must be finite (complete poses only); frames {bad[:10].tolist()}")
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
            value.setflags(write=False)
            object.__setattr__(self, attr, value)

    @property
    def num_frames(self) -> int:
        """Number of poses T."""
        return len(self.frames)


# ----------------------------------------------------------------------------------------------------------------
# Geometry shared by the writers
# ----------------------------------------------------------------------------------------------------------------


def image_relpath(subject: str, sequence: str, camera: str, frame: int) -> str:
    """H3WB image path of one video frame: ``<subject>/Images/<sequence>.<camera>/frame_<frame:04d>.jpg``.

    Frames count from 0 as OpenCV reads the video (the official extraction script names them with
    ``str(count).zfill(4)``), e.g. ``image_relpath("S1", "Walking 1", "54138969", 5)`` is
    ``"S1/Images/Walking 1.54138969/frame_0005.jpg"``.
    """
    frame = int(frame)
    if frame < 0:
        raise ValueError(f"frame must be >= 0, got {frame}")
    return f"{subject}/Images/{sequence}.{camera}/frame_{frame:04d}.jpg"


def keypoint_bbox(uv: np.ndarray, image_size: tuple[int, int], margin: float = 0.1) -> np.ndarray:
    """Integer bounding boxes of keypoints with a margin, clipped to the image.

    Args:
        uv: (..., K, 2) finite pixel coordinates.
        image_size: (W, H) pixels.
        margin: fraction of the larger side of the keypoints' box added on every side.

    Returns:
        (..., 4) int32 ``[x_min, y_min, x_max, y_max]``: floor of the widened minimum and ceiling of the widened
        maximum, clipped to ``[0, W - 1] x [0, H - 1]``.
    """
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim < 2 or uv.shape[-1] != 2:
        raise ValueError(f"uv must have shape (..., K, 2), got {uv.shape}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    lo, hi = uv.min(axis=-2), uv.max(axis=-2)  # (..., 2)
    pad = margin * (hi - lo).max(axis=-1, keepdims=True)  # (..., 1)
    w, h = image_size
    top = np.array([w - 1, h - 1], dtype=np.float64)
    lo = np.clip(np.floor(lo - pad), 0, top)
    hi = np.clip(np.ceil(hi + pad), 0, top)
    return np.concatenate([lo, hi], axis=-1).astype(np.int32)


def view_arrays(keypoints_3d: np.ndarray, rig: Rig, bbox_margin: float = 0.1) -> dict[str, np.ndarray]:
    """Per-view quantities of world poses.

    Args:
        keypoints_3d: (T, J, 3) world millimetres.
        rig: C cameras.
        bbox_margin: see :func:`keypoint_bbox`.

    Returns:
        ``keypoints_2d`` (T, C, J, 2) pinhole pixels ``K (R X + t) / z``; ``keypoints_2d_distorted`` (T, C, J, 2)
        pixels with lens distortion; ``keypoints_3d_camera`` (T, C, J, 3) mm ``R X + t``; ``keypoints_3d_rotated``
        (T, C, J, 3) mm ``R X`` (H3WB's 3D); ``bbox`` (T, C, 4) int32 around both projections. Points at or behind
        a camera give NaN projections (and boxes from the remaining points).
    """
    X = np.asarray(keypoints_3d, dtype=np.float64)
    if X.ndim != 3 or X.shape[-1] != 3:
        raise ValueError(f"keypoints_3d must have shape (T, J, 3), got {X.shape}")
    uv = np.stack([cam.project(X, distort_points=False) for cam in rig], axis=1)  # (T, C, J, 2)
    uv_d = np.stack([cam.project(X, distort_points=True) for cam in rig], axis=1)  # (T, C, J, 2)
    cam3d = np.stack([cam.world_to_camera(X) for cam in rig], axis=1)  # (T, C, J, 3)
    rotated = np.stack([X @ cam.R.T for cam in rig], axis=1)  # (T, C, J, 3) R X, no translation
    both = np.concatenate([uv, uv_d], axis=-2)  # (T, C, 2J, 2)
    bbox = np.stack([_nan_safe_bbox(both[:, c], cam.image_size, bbox_margin) for c, cam in enumerate(rig)], axis=1)
    return {
        "keypoints_2d": uv,
        "keypoints_2d_distorted": uv_d,
        "keypoints_3d_camera": cam3d,
        "keypoints_3d_rotated": rotated,
        "bbox": bbox,
    }


def _nan_safe_bbox(uv: np.ndarray, image_size: tuple[int, int], margin: float) -> np.ndarray:
    """:func:`keypoint_bbox` ignoring NaN points; (T, K, 2) -> (T, 4), a zero box where no point is finite."""
    ok = np.isfinite(uv).all(axis=-1)  # (T, K)
    if ok.all():
        return keypoint_bbox(uv, image_size, margin)
    out = np.zeros(uv.shape[:-2] + (4,), dtype=np.int32)
    for i in np.nonzero(ok.any(axis=-1))[0]:
        out[i] = keypoint_bbox(uv[i][ok[i]], image_size, margin)
    return out


def _views(seq: ExportSequence, bbox_margin: float) -> dict[str, np.ndarray]:
    """:func:`view_arrays` of a sequence, with an error naming the frames and cameras that cannot see the pose."""
    views = view_arrays(seq.keypoints_3d, seq.rig, bbox_margin)
    bad = ~np.isfinite(views["keypoints_2d"]).all(axis=(2, 3))  # (T, C)
    if bad.any():
        t, c = np.nonzero(bad)
        raise ValueError(
            f"sequence {seq.subject}/{seq.sequence}: keypoints at or behind camera {seq.rig.names[c[0]]} "
            f"in frame {int(seq.frames[t[0]])} ({int(bad.sum())} views in all); they cannot be exported"
        )
    return views


def _check_sequences(sequences: Sequence[ExportSequence]) -> int:
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
        if s.subject in rigs and not _same_rig(rigs[s.subject], s.rig):
            raise ValueError(f"subject {s.subject}: sequences {s.sequence!r} and others use different calibrations; "
                             "exports store one rig per subject")
        rigs.setdefault(s.subject, s.rig)
    if len(counts) > 1:
        raise ValueError(f"all rigs must have the same number of cameras, got {sorted(counts)}")
    return counts.pop()


def _same_rig(a: Rig, b: Rig) -> bool:
    if a is b:
        return True
    if a.names != b.names:
        return False
    return all(
        ca.image_size == cb.image_size and ca.distortion_model == cb.distortion_model
        and all(np.array_equal(getattr(ca, k), getattr(cb, k)) for k in ("K", "dist", "R", "t"))
        for ca, cb in zip(a, b)
    )


def _subject_rigs(sequences: Sequence[ExportSequence]) -> dict[str, Rig]:
    rigs: dict[str, Rig] = {}
    for s in sequences:
        rigs.setdefault(s.subject, s.rig)
    return rigs


def _check_split(split: Mapping[str, str]) -> None:
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
    _check_split(split)
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


def _skipped(sequences: Sequence[ExportSequence], split: Mapping[str, str]) -> dict[str, int]:
    skipped: dict[str, int] = {}
    for s in sequences:
        if s.subject not in split:
            skipped[s.subject] = skipped.get(s.subject, 0) + s.num_frames
    if skipped:
        log.warning("subjects not in the split, left out of the H3WB files: %s (poses)", skipped)
    return skipped


# ----------------------------------------------------------------------------------------------------------------
# HDF5
# ----------------------------------------------------------------------------------------------------------------


def write_hdf5(
    path: str | os.PathLike, sequences: Sequence[ExportSequence], split: Mapping[str, str], bbox_margin: float = 0.1
) -> dict[str, Any]:
    """Write every pose of ``sequences`` to one HDF5 file (schema in the module docstring), atomically.

    Args:
        path: output file.
        sequences: the recordings; rows follow their order, frames ascending within each.
        split: subject -> ``"train"`` or ``"test"``; other subjects are written with split ``"unassigned"``.
        bbox_margin: see :func:`keypoint_bbox`.

    Returns:
        Counts: ``poses`` (N) and poses per split name.
    """
    path = Path(path)
    C = _check_sequences(sequences)
    order = quality_order(sequences, split)
    pose_index = [np.full(s.num_frames, -1, dtype=np.int64) for s in sequences]
    for ranked in order.values():
        for i in range(len(sequences)):
            mine = ranked[:, 0] == i
            pose_index[i][ranked[mine, 1]] = np.nonzero(mine)[0]
    N, J = sum(s.num_frames for s in sequences), skeleton.NUM_KEYPOINTS
    str_dt = h5py.string_dtype("utf-8")
    counts: dict[str, Any] = {"poses": N} | {name: 0 for name in (*SPLITS, UNASSIGNED)}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = HDF5_FORMAT
        f.attrs["units"] = "mm (3D), px (2D)"
        f.attrs["num_keypoints"] = J
        f.attrs["num_cameras"] = C
        f.attrs["bbox_margin"] = bbox_margin
        f.attrs["provenance_codes"] = json.dumps({int(p): p.name.lower() for p in Provenance})

        def make(name: str, tail: tuple[int, ...], dtype: Any) -> h5py.Dataset:
            return f.create_dataset(name, shape=(N, *tail), maxshape=(None, *tail), dtype=dtype,
                                    chunks=(max(1, min(N, 256)), *tail), compression="gzip", compression_opts=4,
                                    shuffle=True)

        ds = {
            "keypoints_3d": make("keypoints_3d", (J, 3), np.float64),
            "keypoints_2d": make("keypoints_2d", (C, J, 2), np.float64),
            "keypoints_2d_distorted": make("keypoints_2d_distorted", (C, J, 2), np.float64),
            "keypoints_3d_camera": make("keypoints_3d_camera", (C, J, 3), np.float64),
            "bbox": make("bbox", (C, 4), np.int32),
            "provenance": make("provenance", (J,), np.uint8),
            "quality": make("quality", (), np.float64),
            "frame": make("frame", (), np.int64),
            "h3wb_pose_index": make("h3wb_pose_index", (), np.int64),
        }
        labels: dict[str, list[str]] = {"subject": [], "action": [], "sequence": [], "split": []}
        row = 0
        for i, seq in enumerate(sequences):
            by_frame = np.argsort(seq.frames, kind="stable")  # (T,)
            views = _views(seq, bbox_margin)
            rows = slice(row, row + seq.num_frames)
            for name in ("keypoints_2d", "keypoints_2d_distorted", "keypoints_3d_camera", "bbox"):
                ds[name][rows] = views[name][by_frame]
            ds["keypoints_3d"][rows] = seq.keypoints_3d[by_frame]
            ds["provenance"][rows] = seq.provenance[by_frame]
            ds["quality"][rows] = seq.quality[by_frame]
            ds["frame"][rows] = seq.frames[by_frame]
            ds["h3wb_pose_index"][rows] = pose_index[i][by_frame]
            part = split.get(seq.subject, UNASSIGNED)
            counts[part] += seq.num_frames
            for key, value in (("subject", seq.subject), ("action", seq.action), ("sequence", seq.sequence),
                               ("split", part)):
                labels[key] += [value] * seq.num_frames
            row += seq.num_frames
        for key, values in labels.items():
            f.create_dataset(key, data=np.array(values, dtype=object), dtype=str_dt, compression="gzip")
        f.create_dataset("keypoint_names", data=np.array(skeleton.NAMES, dtype=object), dtype=str_dt)
        cams = f.create_group("cameras")
        for subject, rig in _subject_rigs(sequences).items():
            g = cams.create_group(subject)
            g.attrs["distortion_model"] = rig.cameras[0].distortion_model
            g.create_dataset("names", data=np.array(rig.names, dtype=object), dtype=str_dt)
            for key in ("K", "dist", "R", "t"):
                g.create_dataset(key, data=np.stack([getattr(c, key) for c in rig]))
            g.create_dataset("image_size", data=np.array([c.image_size for c in rig], dtype=np.int32))
    log.info("wrote %s: %d poses x %d views (%s)", path, N, C,
             ", ".join(f"{k} {counts[k]}" for k in (*SPLITS, UNASSIGNED)))
    return counts


def read_hdf5(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file of :func:`write_hdf5` back into memory.

    Returns:
        Every dataset of the schema by name as numpy arrays (string datasets as ``str`` arrays), ``cameras`` as
        ``{subject: {"names", "K", "dist", "R", "t", "image_size", "distortion_model"}}`` and ``attrs``.
    """
    path = Path(path)
    out: dict[str, Any] = {}
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err
    with f:
        if f.attrs.get("format") != HDF5_FORMAT:
            raise ValueError(f"{path}: attribute 'format' is {f.attrs.get('format')!r}, expected {HDF5_FORMAT!r}")
        out["attrs"] = dict(f.attrs)
        for key, item in f.items():
            if isinstance(item, h5py.Dataset):
                out[key] = item.asstr()[:].astype(str) if h5py.check_string_dtype(item.dtype) else item[:]
        out["cameras"] = {}
        for subject, g in f["cameras"].items():
            cam = {k: g[k][:] for k in ("K", "dist", "R", "t", "image_size")}
            cam["names"] = g["names"].asstr()[:].astype(str)
            cam["distortion_model"] = g.attrs["distortion_model"]
            out["cameras"][subject] = cam
    return out


# ----------------------------------------------------------------------------------------------------------------
# H3WB JSON
# ----------------------------------------------------------------------------------------------------------------

_JOINT_KEYS = tuple(f'"{j}":' for j in range(skeleton.NUM_KEYPOINTS))


def _kp_text(a: np.ndarray) -> str:
    """(J, 2) or (J, 3) finite floats -> the official ``{"0": {"x": .., "y": ..[, "z": ..]}, ...}`` JSON text."""
    rows = a.tolist()
    if a.shape[-1] == 2:
        return "{" + ",".join(f'{k}{{"x":{x!r},"y":{y!r}}}' for k, (x, y) in zip(_JOINT_KEYS, rows)) + "}"
    return "{" + ",".join(f'{k}{{"x":{x!r},"y":{y!r},"z":{z!r}}}' for k, (x, y, z) in zip(_JOINT_KEYS, rows)) + "}"


def _sample_text(fields: Mapping[str, Any]) -> str:
    """One sample's JSON object; ``fields`` holds any of image_path (str), bbox (4,), keypoints_2d, keypoints_3d."""
    parts = []
    if "image_path" in fields:
        parts.append(f'"image_path":{json.dumps(fields["image_path"])}')
    if "bbox" in fields:
        x0, y0, x1, y1 = (int(v) for v in fields["bbox"])
        parts.append(f'"bbox":{{"x_min":{x0},"y_min":{y0},"x_max":{x1},"y_max":{y1}}}')
    for key in ("keypoints_2d", "keypoints_3d"):
        if key in fields:
            parts.append(f'"{key}":{_kp_text(fields[key])}')
    return "{" + ",".join(parts) + "}"


class _SampleWriter:
    """Stream ``{"<id>": sample, ...}`` into a temporary file that replaces ``path`` when closed without error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ctx = atomic_path(path)
        self._fh = open(self._ctx.__enter__(), "w", encoding="utf-8")
        self._fh.write("{")
        self.count = 0

    def add(self, sample_id: int, text: str) -> None:
        self._fh.write(f'{"," if self.count else ""}\n"{sample_id}":{text}')
        self.count += 1

    def __enter__(self) -> _SampleWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._fh.write("\n}\n")
        finally:
            self._fh.close()
            self._ctx.__exit__(exc_type, exc, tb)


def write_h3wb_json(
    out_dir: str | os.PathLike,
    sequences: Sequence[ExportSequence],
    split: Mapping[str, str],
    bbox_margin: float = 0.1,
    rgb_test_seed: int | None = None,
    decimals: int | None = None,
) -> dict[str, Any]:
    """Write the H3WB annotation files (:data:`H3WB_FILES`, layout in the module docstring) into ``out_dir``.

    Within each split the poses are ranked by quality (:func:`quality_order`); the pose of rank ``k`` seen by
    camera ``c`` (rig order) is sample ``C k + c``. Keypoints are written at full float64 precision (about 120 kB
    per pose in the eight files) unless ``decimals`` rounds them.

    Args:
        out_dir: output folder (created).
        sequences: the recordings, each with C cameras (4 for H3WB).
        split: subject -> ``"train"`` or ``"test"`` (H3WB: S1, S5, S6, S7 train and S8 test); poses of subjects
            not in it are left out and counted.
        bbox_margin: see :func:`keypoint_bbox`.
        rgb_test_seed: None keeps the RGB-to-3D test ids equal to the global test ids; an int permutes them with
            ``np.random.default_rng(rgb_test_seed)`` (the official test ids are permuted, so that they do not line
            up with the 2D tasks).
        decimals: None writes exact float64 values; an int rounds keypoints to that many decimals (px and mm).

    Returns:
        Counts: ``poses`` per split, ``samples`` per file, ``skipped_poses`` per subject not in the split.
    """
    out_dir = Path(out_dir)
    C = _check_sequences(sequences)
    order = quality_order(sequences, split)
    skipped = _skipped(sequences, split)
    cache: dict[int, dict[str, np.ndarray]] = {}

    def sample(i: int, t: int, c: int) -> dict[str, Any]:
        if i not in cache:
            cache[i] = _views(sequences[i], bbox_margin)
            if decimals is not None:
                for key in ("keypoints_2d", "keypoints_3d_rotated"):
                    cache[i][key] = np.round(cache[i][key], decimals)
        seq, views = sequences[i], cache[i]
        return {
            "image_path": image_relpath(seq.subject, seq.sequence, seq.rig.names[c], int(seq.frames[t])),
            "bbox": views["bbox"][t, c],
            "keypoints_2d": views["keypoints_2d"][t, c],
            "keypoints_3d": views["keypoints_3d_rotated"][t, c],
        }

    def only(fields: dict[str, Any], keys: tuple[str, ...]) -> str:
        return _sample_text({k: fields[k] for k in keys})

    samples: dict[str, int] = {}
    train = out_dir / "2Dto3D_train.json"
    with _SampleWriter(train) as w:
        for k, (i, t) in enumerate(order["train"].tolist()):
            for c in range(C):
                w.add(C * k + c, _sample_text(sample(i, t, c)))
    samples[train.name] = w.count
    cache.clear()
    with atomic_path(out_dir / "RGBto3D_train.json") as tmp:
        shutil.copyfile(train, tmp)
    samples["RGBto3D_train.json"] = w.count

    test = order["test"].tolist()
    n_test = C * len(test)
    perm = np.arange(n_test) if rgb_test_seed is None else np.random.default_rng(rgb_test_seed).permutation(n_test)
    rgb: list[str] = [""] * n_test  # RGB test samples by their new id
    rgb_gt: list[str] = [""] * n_test
    names = ("2Dto3D_test_2d.json", "2Dto3D_test_3d.json", "I2Dto3D_test_2d.json", "I2Dto3D_test_3d.json")
    with (_SampleWriter(out_dir / names[0]) as in2d, _SampleWriter(out_dir / names[1]) as gt2d,
          _SampleWriter(out_dir / names[2]) as ini2d, _SampleWriter(out_dir / names[3]) as gti2d):
        for k, (i, t) in enumerate(test):
            inputs, truth = (in2d, gt2d) if k % 2 == 0 else (ini2d, gti2d)
            for c in range(C):
                sid = C * k + c
                fields = sample(i, t, c)
                inputs.add(sid, only(fields, ("keypoints_2d",)))
                gt3d = only(fields, ("keypoints_3d",))
                truth.add(sid, gt3d)
                rgb[perm[sid]] = only(fields, ("image_path", "bbox"))
                rgb_gt[perm[sid]] = gt3d
    for w in (in2d, gt2d, ini2d, gti2d):
        samples[w.path.name] = w.count
    for name, texts in (("RGBto3D_test_img.json", rgb), ("RGBto3D_test_3d.json", rgb_gt)):
        with _SampleWriter(out_dir / name) as w:
            for sid, text in enumerate(texts):
                w.add(sid, text)
        samples[name] = w.count
    counts = {"poses": {name: len(order[name]) for name in SPLITS}, "samples": samples, "skipped_poses": skipped}
    log.info("wrote H3WB JSON to %s: %s train poses, %s test poses (%d views each)", out_dir,
             counts["poses"]["train"], counts["poses"]["test"], C)
    return counts


def load_h3wb_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read an H3WB annotation file (official layout, or one written by :func:`write_h3wb_json`).

    Reads ``keypoints_2d`` / ``keypoints_3d`` keyed ``"0".."J-1"`` (the README's spelling ``keypont_*`` too),
    ``bbox`` as ints and ``image_path``. A field is returned only when every sample has it.

    Returns:
        ``ids`` (N,) int64 ascending; ``keypoints_2d`` (N, J, 2) float64 pixels or None; ``keypoints_3d``
        (N, J, 3) float64 mm or None; ``bbox`` (N, 4) int64 ``[x_min, y_min, x_max, y_max]`` or None;
        ``image_path`` list of N str or None.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of sample id -> sample, got {type(data).__name__}")
    try:
        ids = sorted(int(k) for k in data)
    except ValueError as err:
        raise ValueError(f"{path}: sample ids must be integers in strings ('0', '1', ...): {err}") from err
    samples = [data[str(i)] for i in ids]
    J = skeleton.NUM_KEYPOINTS
    joint_keys = [str(j) for j in range(J)]

    def field(names: tuple[str, ...]) -> list[Any] | None:
        have = [next((s[n] for n in names if n in s), None) for s in samples]
        present = [v is not None for v in have]
        if not any(present):
            return None
        if not all(present):
            missing = ids[present.index(False)]
            raise ValueError(f"{path}: sample {missing!r} lacks {names[0]!r}, which other samples have")
        return have

    def keypoints(names: tuple[str, ...], axes: tuple[str, ...]) -> np.ndarray | None:
        values = field(names)
        if values is None:
            return None
        out = np.empty((len(values), J, len(axes)), dtype=np.float64)
        for n, kp in enumerate(values):
            try:
                out[n] = [[kp[j][a] for a in axes] for j in joint_keys]
            except (KeyError, TypeError) as err:
                raise ValueError(f"{path}: sample {ids[n]!r} field {names[0]!r} lacks joint/axis {err} "
                                 f"(expected keys '0'..'{J - 1}' with {axes})") from err
        return out

    bbox = field(("bbox",))
    if bbox is not None:
        try:
            bbox = np.array([[int(b[k]) for k in ("x_min", "y_min", "x_max", "y_max")] for b in bbox], dtype=np.int64)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: a bbox lacks {err} (expected x_min, y_min, x_max, y_max)") from err
    return {
        "ids": np.asarray(ids, dtype=np.int64),
        "keypoints_2d": keypoints(("keypoints_2d", "keypont_2d"), ("x", "y")),
        "keypoints_3d": keypoints(("keypoints_3d", "keypont_3d"), ("x", "y", "z")),
        "bbox": bbox,
        "image_path": field(("image_path",)),
    }


# ----------------------------------------------------------------------------------------------------------------
# VideoPose3D-style npz
# ----------------------------------------------------------------------------------------------------------------


def write_videopose3d_npz(
    path: str | os.PathLike, sequences: Sequence[ExportSequence]
) -> dict[str, int]:
    """Write the VideoPose3D-style archive (key scheme in the module docstring), atomically, without pickles.

    Args:
        path: output ``.npz`` file.
        sequences: the recordings (all subjects; no split); frames ascending within each.

    Returns:
        Counts: ``poses`` and ``sequences``.
    """
    path = Path(path)
    _check_sequences(sequences)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": NPZ_FORMAT,
        "units": {"global_3d": "mm", "camera_3d": "mm", "pose_2d": "px", "T": "m", "center": "m"},
        "num_keypoints": skeleton.NUM_KEYPOINTS,
        "keypoint_names": list(skeleton.NAMES),
        "flip_index": skeleton.FLIP_INDEX.tolist(),
        "parts": {name: [s.start, s.stop] for name, s in skeleton.PARTS.items()},
        "sequences": {},
        "camera_order": {},
        "cameras": {},
    }
    for seq in sequences:
        by_frame = np.argsort(seq.frames, kind="stable")
        views = _views(seq, 0.0)
        base = f"positions_3d/{seq.subject}/{seq.sequence}"
        arrays[f"{base}/global_3d"] = seq.keypoints_3d[by_frame]
        arrays[f"{base}/frame_id"] = seq.frames[by_frame]
        for c, cam in enumerate(seq.rig.names):
            arrays[f"{base}/camera_3d/{cam}"] = views["keypoints_3d_camera"][by_frame, c]
            arrays[f"{base}/pose_2d/{cam}"] = views["keypoints_2d"][by_frame, c]
            arrays[f"{base}/pose_2d_distorted/{cam}"] = views["keypoints_2d_distorted"][by_frame, c]
        meta["sequences"].setdefault(seq.subject, {})[seq.sequence] = {"action": seq.action,
                                                                       "num_frames": seq.num_frames}
    for subject, rig in _subject_rigs(sequences).items():
        meta["camera_order"][subject] = list(rig.names)
        meta["cameras"][subject] = {
            cam.name: {
                "id": cam.name,
                "res_w": cam.image_size[0],
                "res_h": cam.image_size[1],
                "K_over_1000": (cam.K / 1000.0).tolist(),
                "R": cam.R.tolist(),
                "T": (cam.t / 1000.0).tolist(),
                "center": (cam.center / 1000.0).tolist(),
                "distortion": cam.dist.tolist(),
                "distortion_model": cam.distortion_model,
            }
            for cam in rig
        }
    arrays["metadata"] = np.array([json.dumps(meta)])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    counts = {"poses": sum(s.num_frames for s in sequences), "sequences": len(sequences)}
    log.info("wrote %s: %d sequences, %d poses", path, counts["sequences"], counts["poses"])
    return counts


def load_videopose3d_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read an archive of :func:`write_videopose3d_npz` (with ``allow_pickle=False``).

    Returns:
        ``{"metadata": dict, "positions_3d": {subject: {sequence: {"global_3d", "frame_id", "camera_3d": {camera:
        array}, "pose_2d": {...}, "pose_2d_distorted": {...}}}}}``.
    """
    path = Path(path)
    out: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as z:
        if "metadata" not in z.files:
            raise ValueError(f"{path}: key 'metadata' is missing (found {sorted(z.files)[:5]} ...)")
        for key in z.files:
            if key == "metadata":
                out["metadata"] = json.loads(str(z[key][0]))
                continue
            node = out
            *parents, leaf = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = z[key]
    if out["metadata"].get("format") != NPZ_FORMAT:
        raise ValueError(f"{path}: metadata format is {out['metadata'].get('format')!r}, expected {NPZ_FORMAT!r}")
    out.setdefault("positions_3d", {})
    return out


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------


def write_images(source, sequences: list[ExportSequence], directory: Path, jpeg_quality: int = 95,
                 batch_size: int = 16) -> dict[str, Any]:
    """Cut every exported frame of every view out of its video, at the H3WB path (:func:`image_relpath`).

    Images already present are kept (an interrupted export resumes); each is written atomically. A view whose video
    cannot be read is reported and skipped.

    Args:
        source: the capture source (``build_h3wb.sources``); one without pixels (the synthetic capture) writes none.
        sequences: the exported poses.
        directory: the images root (``export/images``).
        jpeg_quality: OpenCV JPEG quality, 0-100.
        batch_size: frames decoded at once.

    Returns:
        Counts: ``written``, ``present`` (kept from before), ``failed_views`` (``"S1/Walking 1.54138969: why"``) and
        ``no_pixels`` (True when the source has no images).
    """
    import cv2  # noqa: PLC0415

    from build_h3wb.sources.base import Sequence as Recording  # noqa: PLC0415
    from build_h3wb.sources.video import VideoError  # noqa: PLC0415

    counts: dict[str, Any] = {"written": 0, "present": 0, "failed_views": [], "no_pixels": False}
    for es in sequences:
        seq = Recording(es.subject, es.action, es.sequence)
        for cam in es.rig.names:
            paths = {int(f): directory / image_relpath(es.subject, es.sequence, cam, f) for f in es.frames}
            todo = np.array(sorted(f for f, p in paths.items() if not p.exists()), dtype=np.int64)
            counts["present"] += len(paths) - len(todo)
            if not len(todo):
                continue
            try:
                for batch in source.batches(seq, cam, todo, batch_size):
                    if batch.images is None:
                        counts["no_pixels"] = True
                        return counts
                    for f, image in zip(batch.frames, batch.images):
                        path = paths[int(f)]
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tmp = path.with_name(f".{path.name}.tmp.jpg")
                        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
                            raise OSError(f"{tmp}: OpenCV could not write the image")
                        os.replace(tmp, path)
                        counts["written"] += 1
            except VideoError as err:
                log.warning("export: images of %s camera %s: %s", seq.key, cam, err)
                counts["failed_views"].append(f"{seq.key}.{cam}: {err}")
    return counts
