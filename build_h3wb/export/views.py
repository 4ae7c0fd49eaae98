"""The per-view quantities of exported poses, computed once per sequence and shared by every writer.

Projections (all from the final world pose ``X``, millimetres, through :class:`~build_h3wb.geometry.cameras.Camera`):
plain pinhole ``K (R X + t) / z`` (what H3WB publishes as 2D), the same with lens distortion (where the keypoint
lies in the video frame), the camera frame ``R X + t`` (mm), and H3WB's 3D ``R X`` (world pose rotated into the
camera's axes, not translated, mm). Bounding boxes ``[x_min, y_min, x_max, y_max]`` are integer pixels around both
the pinhole and the distorted projections, widened by ``bbox_margin`` times the larger side of the keypoints' box
on every side and clipped to the image ``[0, W - 1] x [0, H - 1]`` (:func:`keypoint_bbox`).

:func:`sequence_views` computes them for every sequence once (about 43 kB of float64 per pose with 4 cameras);
the HDF5, JSON and npz writers take that list, so an export projects each pose once. :class:`LazyViews` holds none
of them: it projects a sequence, or the rows of a block of samples, when a writer asks, so an export's memory does
not grow with its size (the stage uses it; each pose is then projected once per file instead of once per export).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from build_h3wb import skeleton
from build_h3wb.export.sequences import ExportSequence
from build_h3wb.geometry.cameras import Camera, Rig

log = logging.getLogger(__name__)

#: One dict of :func:`view_arrays` per sequence, in the order of the sequences.
Views = list[dict[str, np.ndarray]]


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
    uv, uv_d, cam3d, rotated = (np.stack([camera_view(X, cam, name) for cam in rig], axis=1)  # (T, C, J, 2 or 3)
                                for name in CAMERA_VIEWS)
    both = np.concatenate([uv, uv_d], axis=-2)  # (T, C, 2J, 2)
    bbox = np.stack([_nan_safe_bbox(both[:, c], cam.image_size, bbox_margin) for c, cam in enumerate(rig)], axis=1)
    return {
        "keypoints_2d": uv,
        "keypoints_2d_distorted": uv_d,
        "keypoints_3d_camera": cam3d,
        "keypoints_3d_rotated": rotated,
        "bbox": bbox,
    }


#: The per-camera quantities of :func:`view_arrays` (all but the boxes), each computed by :func:`camera_view`.
CAMERA_VIEWS = ("keypoints_2d", "keypoints_2d_distorted", "keypoints_3d_camera", "keypoints_3d_rotated")


def camera_view(X: np.ndarray, cam: Camera, name: str) -> np.ndarray:
    """One camera's ``name`` of :func:`view_arrays` (one of :data:`CAMERA_VIEWS`): (T, J, 3) world mm -> (T, J, 2|3).

    What a writer that needs one camera at a time computes; :func:`view_arrays` stacks it over the rig.
    """
    if name == "keypoints_2d":
        return cam.project(X, distort_points=False)  # pinhole pixels
    if name == "keypoints_2d_distorted":
        return cam.project(X, distort_points=True)  # pixels with lens distortion
    if name == "keypoints_3d_camera":
        return cam.world_to_camera(X)  # mm, R X + t
    if name == "keypoints_3d_rotated":
        return X @ cam.R.T  # mm, R X, no translation
    raise ValueError(f"unknown view {name!r}; expected one of {CAMERA_VIEWS}")


def _nan_safe_bbox(uv: np.ndarray, image_size: tuple[int, int], margin: float) -> np.ndarray:
    """:func:`keypoint_bbox` ignoring NaN points; (T, K, 2) -> (T, 4), a zero box where no point is finite."""
    ok = np.isfinite(uv).all(axis=-1)  # (T, K)
    if ok.all():
        return keypoint_bbox(uv, image_size, margin)
    out = np.zeros(uv.shape[:-2] + (4,), dtype=np.int32)
    for i in np.nonzero(ok.any(axis=-1))[0]:
        out[i] = keypoint_bbox(uv[i][ok[i]], image_size, margin)
    return out


def views_of(seq: ExportSequence, bbox_margin: float = 0.1) -> dict[str, np.ndarray]:
    """:func:`view_arrays` of a sequence, with an error naming the frames and cameras that cannot see the pose."""
    views = view_arrays(np.asarray(seq.keypoints_3d), seq.rig, bbox_margin)
    check_in_view(views["keypoints_2d"], seq, np.arange(seq.num_frames))
    return views


def check_in_view(uv: np.ndarray, seq: ExportSequence, rows: np.ndarray, cameras: Sequence[int] | None = None) -> None:
    """Raise the error naming the frame and camera where pinhole pixels ``uv`` of poses of ``seq`` are NaN.

    Args:
        uv: (B, C', J, 2) the ``keypoints_2d`` of :func:`view_arrays` of rows ``rows`` (B,) of ``seq``.
        seq: the sequence.
        rows: (B,) its rows.
        cameras: the rig's camera index of each of the C' views of ``uv`` (default: all, in rig order).
    """
    bad = ~np.isfinite(uv).all(axis=(2, 3))  # (B, C')
    if bad.any():
        t, c = np.nonzero(bad)
        cam = c[0] if cameras is None else cameras[c[0]]
        raise ValueError(
            f"sequence {seq.subject}/{seq.sequence}: keypoints at or behind camera {seq.rig.names[cam]} "
            f"in frame {int(seq.frames[rows[t[0]]])} ({int(bad.sum())} views in all); they cannot be exported"
        )


#: Poses projected at once when a writer goes through a sequence (:func:`view_blocks`): about 43 kB of float64 each
#: with 4 cameras, so a block is about 11 MB whatever the length of the recording.
BLOCK_ROWS = 256


def pose_blocks(seq: ExportSequence, rows: np.ndarray,
                block: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """``(at, X)``: the poses (B, J, 3) float64 world mm of rows ``rows[at]`` of ``seq``, ``block`` rows at a time.

    ``block`` defaults to :data:`BLOCK_ROWS`; a sequence of :class:`~build_h3wb.export.sequences.StoredPoses` is
    read from its file a block at a time.
    """
    block = BLOCK_ROWS if block is None else block
    for s in range(0, len(rows), block):
        at = slice(s, min(s + block, len(rows)))
        yield at, np.asarray(seq.keypoints_3d[rows[at]], dtype=np.float64)


def view_blocks(views: Views | LazyViews, sequences: Sequence[ExportSequence], i: int, rows: np.ndarray,
                block: int | None = None) -> Iterator[tuple[slice, np.ndarray, dict[str, np.ndarray]]]:
    """The poses and views of rows ``rows`` of sequence ``i``, ``block`` rows at a time.

    Args:
        views: a list of :func:`sequence_views` (indexed) or :class:`LazyViews` (projected now, a block at a time,
            checked like :func:`views_of`).
        sequences: the recordings ``views`` belongs to.
        i: the sequence.
        rows: (T,) int rows of it, in the order to write them (e.g. by frame).
        block: rows per block (default :data:`BLOCK_ROWS`).

    Yields:
        ``(at, X, views)``: the block's positions in ``rows``, its poses (B, J, 3) float64 world mm and the
        :func:`view_arrays` dict of those poses (leading axis B).
    """
    seq = sequences[i]
    for at, X in pose_blocks(seq, rows, block):
        if isinstance(views, LazyViews):
            v = view_arrays(X, seq.rig, views.bbox_margin)
            check_in_view(v["keypoints_2d"], seq, rows[at])
        else:
            v = {k: a[rows[at]] for k, a in views[i].items()}
        yield at, X, v



def sequence_views(sequences: Sequence[ExportSequence], bbox_margin: float = 0.1) -> Views:
    """:func:`views_of` every sequence, once: the list every writer of the export package takes.

    Args:
        sequences: the recordings.
        bbox_margin: see :func:`keypoint_bbox`.

    Returns:
        One dict of :func:`view_arrays` per sequence, same order.

    Raises:
        ValueError: a pose lies at or behind a camera (the message names the sequence, camera and frame).
    """
    return [views_of(seq, bbox_margin) for seq in sequences]


class LazyViews:
    """The views of every sequence, computed when asked and never kept: what the writers take instead of a list.

    ``views[i]`` is :func:`views_of` ``sequences[i]`` (the whole sequence, checked); :meth:`rows` gives the views of
    chosen rows of several sequences at once (what the JSON writer formats, a block at a time). Both give the same
    numbers as :func:`sequence_views`: every projection is computed per point (row-subset invariant).
    """

    def __init__(self, sequences: Sequence[ExportSequence], bbox_margin: float = 0.1) -> None:
        self.sequences, self.bbox_margin = sequences, bbox_margin

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return views_of(self.sequences[i], self.bbox_margin)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[i] for i in range(len(self)))


def view_rows(views: Views | LazyViews, sequences: Sequence[ExportSequence], index: np.ndarray,
              rigs: Mapping[str, Rig]) -> dict[str, np.ndarray]:
    """The views of chosen poses of several sequences, stacked in the order asked.

    Args:
        views: a list of :func:`sequence_views` (indexed) or :class:`LazyViews` (projected now, one call per subject).
        sequences: the recordings ``views`` belongs to.
        index: (B, 2) int ``[sequence, row]``.
        rigs: subject -> rig (:func:`~build_h3wb.export.sequences.subject_rigs`; one calibration per subject).

    Returns:
        The :func:`view_arrays` dict with a leading axis of B.
    """
    index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
    if not isinstance(views, LazyViews):
        out = [{k: v[t] for k, v in views[i].items()} for i, t in index.tolist()]
        return {k: np.stack([o[k] for o in out]) for k in out[0]}
    subjects = np.array([sequences[i].subject for i in index[:, 0].tolist()])
    X = np.empty((len(index), skeleton.NUM_KEYPOINTS, 3))  # (B, J, 3) world mm, read once per sequence
    for i in np.unique(index[:, 0]).tolist():
        mine = index[:, 0] == i
        X[mine] = sequences[i].keypoints_3d[index[mine, 1]]
    out: dict[str, np.ndarray] = {}
    for subject in dict.fromkeys(subjects.tolist()):
        mine = subjects == subject
        part = view_arrays(X[mine], rigs[subject], views.bbox_margin)
        bad = ~np.isfinite(part["keypoints_2d"]).all(axis=(2, 3))  # (b, C)
        if bad.any():
            n, c = np.nonzero(bad)
            i, t = index[np.flatnonzero(mine)[n[0]]].tolist()
            raise ValueError(f"sequence {subject}/{sequences[i].sequence}: keypoints at or behind camera "
                             f"{rigs[subject].names[c[0]]} in frame {int(sequences[i].frames[t])}; they cannot be "
                             "exported")
        for k, v in part.items():
            if k not in out:
                out[k] = np.empty((len(index), *v.shape[1:]), dtype=v.dtype)
            out[k][mine] = v
    return out


def check_views(views: Views | LazyViews, sequences: Sequence[ExportSequence]) -> None:
    """Check that ``views`` (from :func:`sequence_views`) belongs to ``sequences``: one entry per sequence, shapes."""
    if isinstance(views, LazyViews):
        if views.sequences is not sequences:
            raise ValueError("LazyViews of other sequences; make it with LazyViews(sequences)")
        return
    if len(views) != len(sequences):
        raise ValueError(f"views holds {len(views)} entries for {len(sequences)} sequences; compute it with "
                         "sequence_views(sequences)")
    for seq, v in zip(sequences, views):
        want = (seq.num_frames, len(seq.rig))
        if v["keypoints_2d"].shape[:2] != want:
            raise ValueError(f"views of {seq.subject}/{seq.sequence} have shape {v['keypoints_2d'].shape[:2]}, "
                             f"expected (T, C) = {want}")
