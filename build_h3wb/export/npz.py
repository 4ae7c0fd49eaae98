"""VideoPose3D-style archives: the official H3WB layout (pickled) and a flat pickle-free one.

:func:`write_official_npz` writes what the official ``Human3WBDataset`` (wholebody3d/wholebody3d,
``utils/prepare_data_h3wb.py``) loads with ``np.load(path, allow_pickle=True)``: ``train_data`` and ``metadata``, each
a pickled dict. Writing a pickle is safe; reading one runs whatever the file says, so read only files you trust
(or use the flat file). :func:`write_flat_npz` writes the same poses (and every subject) as plain arrays under
``/``-joined keys that ``np.load(..., allow_pickle=False)`` reads. Key schemes and units: :mod:`build_h3wb.export`.

Both are written one sequence at a time, so their memory does not grow with the export: the flat archive one zip
member per array (what ``np.savez`` does with all of them at once), the pickled ``train_data`` as one pickle
stream (:class:`_NpzWriter`): its nested dicts are opened with pickle opcodes and each sequence's entry is pickled
and written on its own. ``pickle.load`` reads the same dict of arrays as from ``np.savez`` of the whole dict.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.export.sequences import ExportSequence, check_sequences, quality_order, subject_rigs
from build_h3wb.export.views import (
    LazyViews,
    Views,
    camera_view,
    check_in_view,
    check_views,
    pose_blocks,
    sequence_views,
)
from build_h3wb.geometry.cameras import Camera

log = logging.getLogger(__name__)

OFFICIAL_FORMAT = "build_h3wb.h3wb_npz/1"
FLAT_FORMAT = "build_h3wb.videopose3d/1"


class _NpzWriter:
    """An ``.npz`` archive written member by member: the layout of ``np.savez`` (stored zip, zip64, ``<key>.npy``).

    :meth:`add` writes one array; :meth:`add_pickled_dict` writes a 0-d object array holding a two-level dict
    ``{key: {key: value}}`` as one pickle stream, pickling one value at a time (protocol 3, what ``np.save`` uses).
    """

    def __init__(self, fh: Any) -> None:
        self.zip = zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def add(self, key: str, array: np.ndarray, allow_pickle: bool = False) -> None:
        """Write ``array`` as member ``<key>.npy`` (an object array only with ``allow_pickle``)."""
        with self.zip.open(f"{key}.npy", "w", force_zip64=True) as fid:
            np.lib.format.write_array(fid, np.asanyarray(array), allow_pickle=allow_pickle)

    def add_blocks(self, key: str, shape: tuple[int, ...], blocks: Any) -> None:
        """Write member ``<key>.npy`` of an array of ``shape`` from its consecutive row blocks (C order).

        The same bytes as :meth:`add` of the whole array (``np.save``'s 1.0 header), one block in memory at a time.

        Args:
            key: member name.
            shape: the whole array's shape; the blocks' rows add up to ``shape[0]``.
            blocks: iterable of arrays (b, ...) of one dtype, consumed once.
        """
        with self.zip.open(f"{key}.npy", "w", force_zip64=True) as fid:
            rows, header = 0, False
            for b in blocks:
                b = np.ascontiguousarray(b)
                if not header:
                    d = np.lib.format.header_data_from_array_1_0(b)
                    np.lib.format.write_array_header_1_0(fid, d | {"shape": tuple(shape)})
                    header = True
                fid.write(b.tobytes())
                rows += len(b)
            if not header or rows != shape[0]:
                raise AssertionError(f"member {key}: blocks of {rows} rows for shape {shape}")

    def add_pickled_dict(self, key: str, items: Any) -> None:
        """Write member ``<key>.npy``: ``np.array(d, dtype=object)`` of ``d = {outer: {inner: value}}``.

        Args:
            key: member name.
            items: iterable of ``(outer key, iterable of (inner key, value))``, consumed once; each value is pickled
                and written before the next is asked for, a :class:`BlockArray` in it a block at a time.
        """
        head, tail = _object_array_pickle_halves()
        with self.zip.open(f"{key}.npy", "w", force_zip64=True) as fid:
            np.lib.format.write_array_header_1_0(fid, np.lib.format.header_data_from_array_1_0(
                np.array({}, dtype=object)))
            fid.write(head)  # ... the empty outer dict on the stack
            for outer, inner_items in items:
                fid.write(_pickle_fragment(outer) + pickle.EMPTY_DICT)
                for inner, value in inner_items:
                    fid.write(_pickle_fragment(inner))
                    _StreamingPickler(fid, protocol=3).save(value)  # the value's fragment, its BlockArrays streamed
                    fid.write(pickle.SETITEM)  # into the inner dict
                fid.write(pickle.SETITEM)  # the inner dict into the outer one
            fid.write(tail)

    def close(self) -> None:
        self.zip.close()


class BlockArray:
    """A C-order array of ``shape`` and ``dtype`` known by its row blocks: pickled as that array, never held whole.

    In a value of :meth:`_NpzWriter.add_pickled_dict` it is written as the pickle of the ndarray (the same bytes, as
    ``np.ndarray.__reduce__`` gives them) with its data streamed from ``blocks()``, one block in memory at a time.

    Args:
        shape: the whole array's shape.
        dtype: its dtype; every block is converted to it.
        blocks: a callable returning an iterable of consecutive (b, ...) row blocks (called once, when pickled).
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, blocks: Any) -> None:
        self.shape, self.dtype, self.blocks = tuple(shape), np.dtype(dtype), blocks

    def __reduce__(self) -> tuple:
        func, args, (version, _, dtype, fortran, _) = np.empty((0, *self.shape[1:]), self.dtype).__reduce__()
        return func, args, (version, self.shape, dtype, fortran, _StreamedBytes(self))


class _StreamedBytes:
    """The data of a :class:`BlockArray`: pickled as the ``bytes`` of the whole array, written block by block."""

    def __init__(self, array: BlockArray) -> None:
        self.array = array
        self.nbytes = int(np.prod(array.shape, dtype=np.int64)) * array.dtype.itemsize

    def chunks(self) -> Any:
        rows = 0
        for b in self.array.blocks():
            b = np.ascontiguousarray(b, dtype=self.array.dtype)
            if b.shape[1:] != self.array.shape[1:]:
                raise AssertionError(f"a block of shape {b.shape} for an array of shape {self.array.shape}")
            rows += len(b)
            yield b.tobytes()
        if rows != self.array.shape[0]:
            raise AssertionError(f"blocks of {rows} rows for an array of shape {self.array.shape}")


class _StreamingPickler(pickle._Pickler):
    """Python's own pickler, which writes :class:`_StreamedBytes` as ``bytes`` of their length, a block at a time.

    ``save(obj)`` writes the fragment of :func:`_pickle_fragment` (no PROTO header, no STOP) to the file.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_streamed(self, obj: _StreamedBytes) -> None:
        n = obj.nbytes  # what pickle's save_bytes writes for a bytes object of n bytes (protocol 3)
        if n == 0:  # b"" is one object, memoised once for every empty array: pickle it as itself
            for _ in obj.chunks():  # (their rows are checked)
                pass
            self.save(b"")
            return
        head = pickle.SHORT_BINBYTES + struct.pack("<B", n) if n <= 0xFF else pickle.BINBYTES + struct.pack("<I", n)
        self.write(head)
        for chunk in obj.chunks():
            self.write(chunk)
        self.memoize(obj)

    dispatch[_StreamedBytes] = _save_streamed


def _pickle_fragment(obj: Any) -> bytes:
    """``obj`` pickled (protocol 3) without its PROTO header and STOP: opcodes that push ``obj`` on the stack.

    A fragment memoises under indices from 0 and reads back only what it stored itself, so fragments can follow
    one another in one stream (a later one overwrites memo entries no one reads again).
    """
    data = pickle.dumps(obj, protocol=3)
    if data[:2] != pickle.PROTO + bytes([3]) or data[-1:] != pickle.STOP:
        raise AssertionError("unexpected pickle framing")
    return data[2:-1]


def _object_array_pickle_halves() -> tuple[bytes, bytes]:
    """The pickle of ``np.array({}, dtype=object)`` cut after its empty dict (and its memo put).

    What goes between the halves must leave the dict's content on it (SETITEMs) and the stack as it found it.
    """
    data = pickle.dumps(np.array({}, dtype=object), protocol=3)
    ops = list(pickletools.genops(data))
    gets = [op.name for op, _, _ in ops if op.name.endswith("GET")]
    at = next(n for n, (op, _, _) in enumerate(ops) if op.name == "EMPTY_DICT")
    if gets or ops[at + 1][0].name not in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
        raise AssertionError(f"unexpected pickle of an object array: {[op.name for op, _, _ in ops]}")
    cut = ops[at + 2][2]  # the position of the opcode after the memo put
    return data[:cut], data[cut:]


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
    views: Views | LazyViews | None = None,
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
    rank_in_train = [np.full(s.num_frames, -1, dtype=np.int64) for s in sequences]  # per sequence (T,) its ranks
    for i in np.unique(ranked[:, 0]).tolist():
        mine = ranked[:, 0] == i
        rank_in_train[i][ranked[mine, 1]] = np.flatnonzero(mine)
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
    by_subject: dict[str, list[int]] = {}  # train subject -> its sequences, in input order
    for i, seq in enumerate(sequences):
        if split.get(seq.subject) == "train":
            by_subject.setdefault(seq.subject, []).append(i)

    def entry(i: int) -> dict[str, Any]:
        seq = sequences[i]
        T, J = seq.num_frames, skeleton.NUM_KEYPOINTS
        by_frame = np.argsort(seq.frames, kind="stable")  # (T,)
        k = rank_in_train[i][by_frame]  # (T,)

        def poses() -> Any:
            return ((X / 1000.0).astype(np.float32) for _, X in pose_blocks(seq, by_frame))

        def camera(c: int, name: str, scale: float) -> Any:
            return lambda: ((b / scale).astype(np.float32) if scale != 1.0 else b.astype(np.float32)
                            for b in _camera_blocks(views, sequences, i, by_frame, c, name))

        # the big arrays are pickled from their blocks (projected then), so a sequence is never held whole
        out: dict[str, Any] = {"global_3d": BlockArray((T, J, 3), np.float32, poses), "frame_id": seq.frames[by_frame]}
        for c, cam in enumerate(seq.rig.names):
            out[cam] = {"camera_3d": BlockArray((T, J, 3), np.float32, camera(c, "keypoints_3d_camera", 1000.0)),
                        "pose_2d": BlockArray((T, J, 2), np.float32, camera(c, "keypoints_2d", 1.0)),
                        "sample_id": C * k + c}
        return out

    for subject, rig in subject_rigs(sequences).items():
        if subject in by_subject:
            meta["camera_order"][subject] = list(rig.names)
            meta[subject] = {cam.name: _camera_meta(cam) for cam in rig}
    train_data = ((subject, ((sequences[i].sequence, entry(i)) for i in mine)) for subject, mine in by_subject.items())
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        npz = _NpzWriter(fh)
        npz.add_pickled_dict("train_data", train_data)  # one sequence in memory at a time
        npz.add("metadata", np.array(meta, dtype=object), allow_pickle=True)
        npz.close()
    poses = sum(sequences[i].num_frames for mine in by_subject.values() for i in mine)
    counts = {"poses": poses, "sequences": sum(len(v) for v in by_subject.values())}
    log.info("wrote %s (official H3WB layout, pickled): %d sequences, %d poses", path, counts["sequences"], poses)
    return counts


def write_flat_npz(
    path: str | os.PathLike, sequences: Sequence[ExportSequence], views: Views | LazyViews | None = None
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
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        npz = _NpzWriter(fh)  # stored, not compressed: float keypoints barely compress (about 10%)
        for i, seq in enumerate(sequences):
            by_frame = np.argsort(seq.frames, kind="stable")
            base = f"positions_3d/{seq.subject}/{seq.sequence}"
            T, J = seq.num_frames, skeleton.NUM_KEYPOINTS
            # one zip member open at a time: each member's blocks are read (and projected) on their own
            npz.add_blocks(f"{base}/global_3d", (T, J, 3), (X for _, X in pose_blocks(seq, by_frame)))
            npz.add(f"{base}/frame_id", seq.frames[by_frame])
            for c, cam in enumerate(seq.rig.names):
                for member, name, dim in (("camera_3d", "keypoints_3d_camera", 3), ("pose_2d", "keypoints_2d", 2),
                                          ("pose_2d_distorted", "keypoints_2d_distorted", 2)):
                    npz.add_blocks(f"{base}/{member}/{cam}", (T, J, dim),
                                   _camera_blocks(views, sequences, i, by_frame, c, name))
            meta["sequences"].setdefault(seq.subject, {})[seq.sequence] = {"action": seq.action,
                                                                           "num_frames": seq.num_frames}
        for subject, rig in subject_rigs(sequences).items():
            meta["camera_order"][subject] = list(rig.names)
            meta["cameras"][subject] = {cam.name: _camera_meta(cam) for cam in rig}
        npz.add("metadata", np.array([json.dumps(meta)]))
        npz.close()
    counts = {"poses": sum(s.num_frames for s in sequences), "sequences": len(sequences)}
    log.info("wrote %s: %d sequences, %d poses", path, counts["sequences"], counts["poses"])
    return counts


def _camera_blocks(views: Views | LazyViews, sequences: Sequence[ExportSequence], i: int, rows: np.ndarray, c: int,
                   name: str) -> Any:
    """Blocks (B, J, 2|3) of camera ``c``'s view ``name`` of rows ``rows`` of sequence ``i`` (projected when lazy)."""
    seq = sequences[i]
    if not isinstance(views, LazyViews):
        for at, _ in pose_blocks(seq, rows):
            yield views[i][name][rows[at], c]
        return
    cam = seq.rig.cameras[c]
    for at, X in pose_blocks(seq, rows):
        out = camera_view(X, cam, name)
        if name == "keypoints_2d":
            check_in_view(out[:, None], seq, rows[at], cameras=[c])
        yield out


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
