"""One HDF5 file with every exported pose (:func:`write_hdf5`, schema in :mod:`build_h3wb.export`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.export.sequences import (
    SPLITS,
    UNASSIGNED,
    ExportSequence,
    Provenance,
    check_sequences,
    quality_order,
    subject_rigs,
)
from build_h3wb.export.views import LazyViews, Views, check_views, sequence_views, view_blocks

log = logging.getLogger(__name__)

HDF5_FORMAT = "build_h3wb.export.h5/1"


def write_hdf5(
    path: str | os.PathLike,
    sequences: Sequence[ExportSequence],
    split: Mapping[str, str],
    bbox_margin: float = 0.1,
    views: Views | LazyViews | None = None,
) -> dict[str, Any]:
    """Write every pose of ``sequences`` to one HDF5 file (schema in :mod:`build_h3wb.export`), atomically.

    Args:
        path: output file.
        sequences: the recordings; rows follow their order, frames ascending within each.
        split: subject -> ``"train"`` or ``"test"``; other subjects are written with split ``"unassigned"``.
        bbox_margin: see :func:`~build_h3wb.export.views.keypoint_bbox`; ignored when ``views`` is given.
        views: :func:`~build_h3wb.export.views.sequence_views` of ``sequences`` (computed here when None).

    Returns:
        Counts: ``poses`` (N) and poses per split name.
    """
    path = Path(path)
    C = check_sequences(sequences)
    views = sequence_views(sequences, bbox_margin) if views is None else views
    check_views(views, sequences)
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
            # The float keypoints are stored uncompressed: gzip (level 4 or 1, with shuffle) saved only about 20% of
            # their size and cost 4.3-4.6 s per 220 MB on the default build (lzf: 15%, 1.7 s, and h5py-only);
            # written plain they take 0.2 s. The small integer datasets stay gzip-compressed.
            packed = {} if np.issubdtype(dtype, np.floating) else {"compression": "gzip", "compression_opts": 4,
                                                                   "shuffle": True}
            return f.create_dataset(name, shape=(N, *tail), maxshape=(None, *tail), dtype=dtype,
                                    chunks=(max(1, min(N, 256)), *tail), **packed)

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
            rows = slice(row, row + seq.num_frames)
            for at, X, v in view_blocks(views, sequences, i, by_frame):  # projected a block at a time when lazy
                block = slice(rows.start + at.start, rows.start + at.stop)
                for name in ("keypoints_2d", "keypoints_2d_distorted", "keypoints_3d_camera", "bbox"):
                    ds[name][block] = v[name]
                ds["keypoints_3d"][block] = X
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
        for subject, rig in subject_rigs(sequences).items():
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

