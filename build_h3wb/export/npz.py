"""VideoPose3D-style archives: the official H3WB layout (pickled) and a flat pickle-free one.

:func:`write_official_npz` writes what the official ``Human3WBDataset`` (wholebody3d/wholebody3d,
``utils/prepare_data_h3wb.py``) loads with ``np.load(path, allow_pickle=True)``: ``train_data`` and ``metadata``, each
a pickled dict. Writing a pickle is safe; reading one runs whatever the file says, so read only files you trust
(or use the flat file). :func:`write_flat_npz` writes the same poses (and every subject) as plain arrays under
``/``-joined keys that ``np.load(..., allow_pickle=False)`` reads. Key schemes and units: :mod:`build_h3wb.export`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.export.sequences import ExportSequence, check_sequences, quality_order, subject_rigs
from build_h3wb.export.views import Views, check_views, sequence_views
from build_h3wb.geometry.cameras import Camera

log = logging.getLogger(__name__)

OFFICIAL_FORMAT = "build_h3wb.h3wb_npz/1"
FLAT_FORMAT = "build_h3wb.videopose3d/1"


def _camera_meta(cam: Camera) -> dict[str, Any]:
    """One camera's metadata: ``K_over_1000``, ``R`` world-to-camera, ``T`` and ``center`` in metres, distortion."""
    return {
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


def _parts() -> dict[str, list[int]]:
    """The keypoint groups the official metadata names: body, left_foot, right_foot, face, left_hand, right_hand."""
    feet = range(skeleton.PARTS["feet"].start, skeleton.PARTS["feet"].stop)
    return {
        "body": list(range(skeleton.PARTS["body"].start, skeleton.PARTS["body"].stop)),
        "left_foot": [j for j in feet if skeleton.NAMES[j].startswith("left")],
        "right_foot": [j for j in feet if skeleton.NAMES[j].startswith("right")],
        "face": list(range(skeleton.PARTS["face"].start, skeleton.PARTS["face"].stop)),
        "left_hand": list(range(skeleton.PARTS["left_hand"].start, skeleton.PARTS["left_hand"].stop)),
        "right_hand": list(range(skeleton.PARTS["right_hand"].start, skeleton.PARTS["right_hand"].stop)),
    }


def write_official_npz(
    path: str | os.PathLike,
    sequences: Sequence[ExportSequence],
    split: Mapping[str, str],
    views: Views | None = None,
) -> dict[str, int]:
    """Write the official H3WB npz layout (``train_data``, ``metadata``; pickled dicts), atomically.

    ``train_data[subject][sequence]`` holds ``global_3d`` (T, J, 3) float32 world metres, ``frame_id`` (T,) int64,
    and per camera id ``camera_3d`` (T, J, 3) float32 metres ``R X + T``, ``pose_2d`` (T, J, 2) float32 pinhole
    pixels and ``sample_id`` (T,) int64, the pose's id in ``2Dto3D_train.json``; frames ascending. Only the train
    split's subjects are in it, as in the official release (the test subject's poses are the test files').
    ``metadata`` holds ``left_side``, ``right_side``, the keypoint groups (``body``, ``left_foot``, ``right_foot``,
    ``face``, ``left_hand``, ``right_hand``: 0-based indices), ``keypoint_names``, ``units``, ``format``,
    ``camera_order[subject]`` and ``metadata[subject][camera id]`` (:func:`_camera_meta`: ``T`` in metres).

    Args:
        path: output ``.npz`` file.
        sequences: the recordings.
        split: subject -> ``"train"`` or ``"test"``.
        views: :func:`~build_h3wb.export.views.sequence_views` of ``sequences`` (computed here when None).

    Returns:
        Counts: ``poses`` and ``sequences`` written.
    """
    path = Path(path)
    C = check_sequences(sequences)
    views = sequence_views(sequences) if views is None else views
    check_views(views, sequences)
    ranked = quality_order(sequences, split)["train"]  # (K, 2) [sequence, row], rank k = JSON ids C k + c
    rank = {(int(i), int(t)): k for k, (i, t) in enumerate(ranked.tolist())}
    left, right = skeleton.left_right_sides()
    meta: dict[str, Any] = {
        "format": OFFICIAL_FORMAT,
        "units": {"global_3d": "m", "camera_3d": "m", "pose_2d": "px", "T": "m", "center": "m"},
        "left_side": left,
        "right_side": right,
        **_parts(),
        "keypoint_names": list(skeleton.NAMES),
        "camera_order": {},
    }
    train_data: dict[str, dict[str, Any]] = {}
    poses = 0
    for i, seq in enumerate(sequences):
        if split.get(seq.subject) != "train":
            continue
        by_frame = np.argsort(seq.frames, kind="stable")  # (T,)
        k = np.array([rank[(i, int(t))] for t in by_frame], dtype=np.int64)  # (T,)
        entry: dict[str, Any] = {"global_3d": (seq.keypoints_3d[by_frame] / 1000.0).astype(np.float32),
                                 "frame_id": seq.frames[by_frame]}
        for c, cam in enumerate(seq.rig.names):
            entry[cam] = {"camera_3d": (views[i]["keypoints_3d_camera"][by_frame, c] / 1000.0).astype(np.float32),
                          "pose_2d": views[i]["keypoints_2d"][by_frame, c].astype(np.float32),
                          "sample_id": C * k + c}
        train_data.setdefault(seq.subject, {})[seq.sequence] = entry
        poses += seq.num_frames
    for subject, rig in subject_rigs(sequences).items():
        if subject in train_data:
            meta["camera_order"][subject] = list(rig.names)
            meta[subject] = {cam.name: _camera_meta(cam) for cam in rig}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, train_data=np.array(train_data, dtype=object), metadata=np.array(meta, dtype=object))
    counts = {"poses": poses, "sequences": sum(len(v) for v in train_data.values())}
    log.info("wrote %s (official H3WB layout, pickled): %d sequences, %d poses", path, counts["sequences"], poses)
    return counts


def write_flat_npz(
    path: str | os.PathLike, sequences: Sequence[ExportSequence], views: Views | None = None
) -> dict[str, int]:
    """Write the flat pickle-free archive (key scheme in :mod:`build_h3wb.export`), atomically.

    Args:
        path: output ``.npz`` file.
        sequences: the recordings (all subjects; no split); frames ascending within each.
        views: :func:`~build_h3wb.export.views.sequence_views` of ``sequences`` (computed here when None).

    Returns:
        Counts: ``poses`` and ``sequences``.
    """
    path = Path(path)
    check_sequences(sequences)
    views = sequence_views(sequences) if views is None else views
    check_views(views, sequences)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": FLAT_FORMAT,
        "units": {"global_3d": "mm", "camera_3d": "mm", "pose_2d": "px", "T": "m", "center": "m"},
        "num_keypoints": skeleton.NUM_KEYPOINTS,
        "keypoint_names": list(skeleton.NAMES),
        "flip_index": skeleton.FLIP_INDEX.tolist(),
        "parts": {name: [s.start, s.stop] for name, s in skeleton.PARTS.items()},
        "sequences": {},
        "camera_order": {},
        "cameras": {},
    }
    for seq, v in zip(sequences, views):
        by_frame = np.argsort(seq.frames, kind="stable")
        base = f"positions_3d/{seq.subject}/{seq.sequence}"
        arrays[f"{base}/global_3d"] = seq.keypoints_3d[by_frame]
        arrays[f"{base}/frame_id"] = seq.frames[by_frame]
        for c, cam in enumerate(seq.rig.names):
            arrays[f"{base}/camera_3d/{cam}"] = v["keypoints_3d_camera"][by_frame, c]
            arrays[f"{base}/pose_2d/{cam}"] = v["keypoints_2d"][by_frame, c]
            arrays[f"{base}/pose_2d_distorted/{cam}"] = v["keypoints_2d_distorted"][by_frame, c]
        meta["sequences"].setdefault(seq.subject, {})[seq.sequence] = {"action": seq.action,
                                                                       "num_frames": seq.num_frames}
    for subject, rig in subject_rigs(sequences).items():
        meta["camera_order"][subject] = list(rig.names)
        meta["cameras"][subject] = {cam.name: _camera_meta(cam) for cam in rig}
    arrays["metadata"] = np.array([json.dumps(meta)])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # float keypoints barely compress (about 10%): not worth the time
    counts = {"poses": sum(s.num_frames for s in sequences), "sequences": len(sequences)}
    log.info("wrote %s: %d sequences, %d poses", path, counts["sequences"], counts["poses"])
    return counts


def load_flat_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read an archive of :func:`write_flat_npz` (with ``allow_pickle=False``).

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
    if out["metadata"].get("format") != FLAT_FORMAT:
        raise ValueError(f"{path}: metadata format is {out['metadata'].get('format')!r}, expected {FLAT_FORMAT!r}")
    out.setdefault("positions_3d", {})
    return out
