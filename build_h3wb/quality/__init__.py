"""Quality assessment of built poses: per-pose measures, and small filters that count their rejections.

The measures need no ground truth, only what the build itself knows:

- ``reprojection_px``: mean reprojection error (pixels) of the triangulated keypoints;
- ``reprojection_share``: the same relative to the person's size in the image: each keypoint's error over the
  person's size (the diagonal of the body keypoints' box, as triangulation measures it) in the views that
  triangulated it, averaged over the keypoints. It is what the filter bounds, so one threshold holds for any rig,
  frame size and distance to the person (6 px on Human3.6M's person of about 400 px is 1.5%);
- ``views``: mean number of views supporting a triangulated keypoint;
- ``filled_share``: share of the keypoints filled by the completion network;
- ``bone_deviation``: how far the rigid bones are from the subject's own median lengths, ``sum |l - l_ref| /
  sum l_ref`` (length-weighted, so a 10 mm bone's noise does not dominate);
- ``asymmetry``: ``sum |l_left - l_right| / sum (l_left + l_right) / 2`` over the left/right twin bones;
- ``jump_mm_s``: largest keypoint speed (mm/s) to the previous frame where the frames are consecutive (NaN where
  the pose has no consecutive predecessor).

``quality_score`` combines them into one number (lower is better) used to rank poses when a target size is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.triangulation import view_mask

MEASURES = (
    "reprojection_px", "reprojection_share", "views", "filled_share", "bone_deviation", "asymmetry", "jump_mm_s",
)


def symmetric_bone_pairs() -> np.ndarray:
    """(P, 2) indices into ``skeleton.RIGID_BONES``: each left bone with its right twin (found by the flip index)."""
    bones = [tuple(b) for b in skeleton.RIGID_BONES.tolist()]
    where = {b: i for i, b in enumerate(bones)} | {b[::-1]: i for i, b in enumerate(bones)}
    pairs = []
    for i, (a, b) in enumerate(bones):
        fa, fb = int(skeleton.FLIP_INDEX[a]), int(skeleton.FLIP_INDEX[b])
        j = where.get((fa, fb))
        if j is not None and i < j and "left" in skeleton.NAMES[a] + skeleton.NAMES[b]:
            pairs.append((i, j))
    return np.asarray(pairs, dtype=np.int64)


def bone_lengths(kp3d: np.ndarray) -> np.ndarray:
    """(T, J, 3) mm -> (T, B) lengths of ``skeleton.RIGID_BONES`` in mm (NaN where an end is missing)."""
    b = skeleton.RIGID_BONES
    return np.linalg.norm(kp3d[:, b[:, 0]] - kp3d[:, b[:, 1]], axis=-1)


def size_in_views_used(size_px: np.ndarray, views_used: np.ndarray) -> np.ndarray:
    """The person's mean size over the views that triangulated each keypoint.

    Args:
        size_px: (C, T) the person's size in each view and frame, pixels, views first (e.g.
            :func:`build_h3wb.geometry.sequence_check.person_size_px`).
        views_used: (T, J) bitmask over the C views (bit c = view c used; 0 where not triangulated).

    Returns:
        (T, J) pixels, NaN where no view was used.
    """
    C, T = size_px.shape
    if views_used.shape[0] != T or views_used.ndim != 2:
        raise ValueError(f"expected views_used (T, J) with T = {T} for size_px {size_px.shape}, got {views_used.shape}")
    used = view_mask(views_used, C)  # (C, T, J)
    n = used.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (used * size_px[:, :, None]).sum(0) / n, np.nan)


def pose_measures(
    kp3d: np.ndarray,
    reprojection_error: np.ndarray,
    num_views: np.ndarray,
    filled: np.ndarray,
    frames: np.ndarray,
    reference_bones: np.ndarray,
    fps: float,
    stride: int,
    *,
    person_size_px: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-pose quality measures (see the module docstring).

    Args:
        kp3d: (T, J, 3) final keypoints, world mm (NaN where still missing).
        reprojection_error: (T, J) px from triangulation (NaN where not triangulated).
        num_views: (T, J) views used by triangulation (0 where not triangulated).
        filled: (T, J) bool, filled by the completion network.
        frames: (T,) video frame numbers.
        reference_bones: (B,) the subject's median bone lengths, mm.
        fps: video frame rate (0: unknown, no jump is measured).
        stride: frame step between consecutive selected frames.
        person_size_px: (T, J) the person's size in the views that triangulated each keypoint, pixels (see
            :func:`size_in_views_used`); ``reprojection_share`` divides each keypoint's error by it.

    Returns:
        measure name -> (T,) float.
    """
    T = kp3d.shape[0]
    J = skeleton.NUM_KEYPOINTS
    if kp3d.shape[1:] != (J, 3) or reprojection_error.shape != (T, J) or person_size_px.shape != (T, J):
        raise ValueError(f"expected kp3d (T, {J}, 3) and (T, J) reprojection error and person size, got "
                         f"{kp3d.shape}, {reprojection_error.shape}, {person_size_px.shape}")
    tri = num_views > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        reproj = np.where(tri, reprojection_error, 0.0).sum(1) / tri.sum(1)
        reproj_share = np.where(tri, reprojection_error / person_size_px, 0.0).sum(1) / tri.sum(1)
        views = np.where(tri, num_views, 0).sum(1) / tri.sum(1)
        lengths = bone_lengths(kp3d)  # (T, B)
        known = np.isfinite(lengths)
        dev = np.nansum(np.abs(lengths - reference_bones), axis=1) / np.where(known, reference_bones, 0.0).sum(1)
        pairs = symmetric_bone_pairs()
        left, right = lengths[:, pairs[:, 0]], lengths[:, pairs[:, 1]]
        asym = np.nansum(np.abs(left - right), axis=1) / np.nansum(0.5 * (left + right), axis=1)
        jump = np.full(T, np.nan)
        consecutive = np.diff(frames) == stride  # (T-1,)
        if T > 1 and fps > 0:  # an unknown frame rate (0) judges no jump
            speed = np.linalg.norm(kp3d[1:] - kp3d[:-1], axis=-1) * (fps / stride)  # (T-1, J) mm/s
            jump[1:] = np.where(consecutive, np.nanmax(speed, axis=1), np.nan)
    return {
        "reprojection_px": reproj,
        "reprojection_share": reproj_share,
        "views": views,
        "filled_share": filled.mean(1),
        "bone_deviation": dev,
        "asymmetry": asym,
        "jump_mm_s": jump,
    }


def quality_score(m: Mapping[str, np.ndarray]) -> np.ndarray:
    """One number per pose, lower is better: reprojection error scaled up by missing support and network filling.

    ``reprojection_px * (1 + filled_share * 4) * (4 / views) * (1 + 5 * bone_deviation)``: a pose seen well by all
    views with consistent bones scores its reprojection error; filled keypoints, fewer views and implausible bones
    make it worse. Poses without any triangulated keypoint score infinity.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        s = m["reprojection_px"] * (1 + 4 * m["filled_share"]) * (4 / m["views"]) * (1 + 5 * m["bone_deviation"])
    return np.where(np.isfinite(s), s, np.inf)


@dataclass
class Filter:
    """Reject poses whose measure passes a bound; counts every rejection.

    Attributes:
        name: the reason recorded for a rejection.
        measure: key into the measures.
        max_value: reject above this (NaN measures pass unless ``reject_nan``).
        min_value: reject below this.
        reject_nan: whether a missing measure is a rejection.
    """

    name: str
    measure: str
    max_value: float | None = None
    min_value: float | None = None
    reject_nan: bool = False
    rejected: int = field(default=0, init=False)

    def __call__(self, measures: Mapping[str, np.ndarray]) -> np.ndarray:
        """(T,) bool keep mask for these poses; adds its rejections to ``rejected``."""
        v = measures[self.measure]
        with np.errstate(invalid="ignore"):
            bad = np.zeros(v.shape, dtype=bool)
            if self.max_value is not None:
                bad |= v > self.max_value
            if self.min_value is not None:
                bad |= v < self.min_value
        bad |= np.isnan(v) & self.reject_nan
        self.rejected += int(bad.sum())
        return ~bad


def apply_filters(filters: list[Filter], measures: Mapping[str, np.ndarray], complete: np.ndarray) -> tuple:
    """Run filters in order; a pose is counted only by the first filter that rejects it.

    Args:
        filters: the filters (their counters are updated).
        measures: per-pose measures (T,) each.
        complete: (T,) bool, every keypoint has a value (incomplete poses are rejected first, as ``incomplete``).

    Returns:
        (keep (T,) bool, reason (T,) int: -1 kept, 0 incomplete, k+1 rejected by filters[k]).
    """
    reason = np.where(complete, -1, 0)
    for k, f in enumerate(filters):
        alive = reason == -1
        keep = np.ones_like(alive)
        keep[alive] = f({m: v[alive] for m, v in measures.items()})
        reason = np.where(alive & ~keep, k + 1, reason)
    return reason == -1, reason


def select_balanced(score: np.ndarray, groups: np.ndarray, target: int) -> np.ndarray:
    """Pick ``target`` candidates, best (lowest) score first, balanced over groups (subject x action).

    Every group gets an equal share (round-robin over groups in score order); groups with fewer candidates give
    their share to the others.

    Args:
        score: (N,) lower is better; ``inf`` never selected.
        groups: (N,) int group id.
        target: how many to select.

    Returns:
        (N,) bool selection.
    """
    ok = np.isfinite(score)
    order = np.lexsort((score, groups))  # by group, then score
    order = order[ok[order]]
    g = groups[order]
    # rank within the group: 0 for each group's best, 1 for the next...
    first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    pick = order[np.lexsort((score[order], rank))][:target]
    sel = np.zeros(len(score), dtype=bool)
    sel[pick] = True
    return sel
