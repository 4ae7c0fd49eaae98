"""Keep one subject when a detector finds several people: the same person in every view and frame.

Real captures have bystanders, reflections and false detections. Detectors return up to P candidates per image;
:func:`choose_subject` picks one candidate per view (or none) for every frame, jointly over the views, maximising

- ``agreement_weight`` x, for every pair of views, the fraction of body keypoints of the two chosen candidates that
  are epipolar-consistent (the subject is one person that all calibrated views see at one place), plus, per view,
- ``track_weight`` x closeness to the subject chosen in the previous frame of the view (tracking),
- ``centre_weight`` x closeness to the image centre (a rig's cameras look at the capture volume, where the subject
  performs; bystanders stand at its edges), and
- ``score_weight`` x the candidate's mean keypoint score.

Every combination is scored (at most ``max_combinations``; with many views only the best candidates per view take
part). A chosen candidate that agrees with no other view's choice is dropped (a false detection, or a bystander
seen where the subject was missed). A view's choice is *ambiguous* when the best combination choosing otherwise in
that view comes within ``margin`` points; the detect stage reports how often that happens.

Epipolar distances follow Hartley and Zisserman (2004), eq. 11.9 (the symmetric epipolar distance), on
undistorted coordinates, scaled to pixels by the mean focal length.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import Rig


def _cross_matrix(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def essential_matrix(rig: Rig, a: int, b: int) -> np.ndarray:
    """(3, 3) essential matrix E with ``x_b^T E x_a = 0`` for undistorted normalised points of views a and b."""
    ca, cb = rig[a], rig[b]
    R = cb.R @ ca.R.T
    t = cb.t - R @ ca.t
    return _cross_matrix(t) @ R


def pairwise_agreement(
    candidates: np.ndarray, rig: Rig, *, min_score: float = 0.3, epipolar_px: float = 20.0, min_joints: int = 4
) -> np.ndarray:
    """Epipolar agreement of every pair of candidates in every pair of views.

    Args:
        candidates: (C, T, P, J, 3) ``[x, y, score]`` pixels, NaN where missing.
        rig: the C calibrated views.
        min_score: keypoints below this confidence are ignored.
        epipolar_px: a keypoint pair agrees when its symmetric epipolar distance is below this many pixels.
        min_joints: a pair of candidates needs this many body keypoints seen in both views to agree at all.

    Returns:
        (C, C, T, P, P) float in [0, 1]: entry ``[a, b, t, p, q]`` is the fraction of body keypoints seen in both
        that agree, between candidate p of view a and candidate q of view b (0 on the diagonal a == b).
    """
    C, T, P, J, _ = candidates.shape
    if C != len(rig):
        raise ValueError(f"candidates have {C} views, the rig {len(rig)}")
    kp = candidates[..., skeleton.PARTS["body"], :]  # (C, T, P, Jb, 3)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(kp).all(-1) & (kp[..., 2] >= min_score)  # (C, T, P, Jb)
    homog = np.ones(kp.shape, dtype=np.float64)  # undistorted normalised, homogeneous
    for c, cam in enumerate(rig):
        homog[c, ..., :2] = cam.undistort_pixels(np.nan_to_num(kp[c, ..., :2]))
    focal = np.mean([0.5 * (cam.K[0, 0] + cam.K[1, 1]) for cam in rig])
    out = np.zeros((C, C, T, P, P))
    for a in range(C):
        for b in range(a + 1, C):
            E = essential_matrix(rig, a, b)
            lines_b = homog[a] @ E.T  # (T, P, Jb, 3): epipolar lines in view b of view a's points
            lines_a = homog[b] @ E  # (T, Q, Jb, 3): epipolar lines in view a of view b's points
            num = np.abs(np.einsum("tqjk,tpjk->tpqj", homog[b], lines_b))  # (T, P, Q, Jb)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv_b = 1.0 / np.linalg.norm(lines_b[..., :2], axis=-1)  # (T, P, Jb)
                inv_a = 1.0 / np.linalg.norm(lines_a[..., :2], axis=-1)  # (T, Q, Jb)
            dist = 0.5 * num * (inv_b[:, :, None] + inv_a[:, None]) * focal
            both = valid[a][:, :, None] & valid[b][:, None]  # (T, P, Q, Jb)
            n = both.sum(-1)
            good = (both & (dist < epipolar_px)).sum(-1)
            out[a, b] = np.where(n >= min_joints, good / np.maximum(n, 1), 0.0)
            out[b, a] = out[a, b].transpose(0, 2, 1)
    return out


def choose_subject(
    candidates: np.ndarray,
    rig: Rig,
    *,
    min_score: float = 0.3,
    epipolar_px: float = 20.0,
    agreement_weight: float = 2.0,
    track_weight: float = 1.0,
    centre_weight: float = 1.0,
    score_weight: float = 0.5,
    track_scale: float = 0.25,
    min_agreement: float = 0.5,
    margin: float = 0.5,
    max_combinations: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick the subject among each image's candidates, consistently across views and frames.

    Args:
        candidates: (C, T, P, J, 3) ``[x, y, score]`` pixels, NaN where missing; candidate 0 is the detector's best.
        rig: the C calibrated views.
        min_score: keypoints below this confidence are ignored.
        epipolar_px: pixel tolerance of the cross-view agreement (see :func:`pairwise_agreement`).
        agreement_weight: points per pair of views whose chosen candidates agree fully.
        track_weight: points for the tracking term ``exp(-d / (track_scale * size))``, with d the median keypoint
            distance to the previous choice in the view and size that pose's bounding-box diagonal.
        centre_weight: points for ``1 - d / (half the image diagonal)``, d the distance of the candidate's
            keypoint centroid from the image centre.
        score_weight: points for the candidate's mean keypoint score.
        track_scale: see ``track_weight``.
        min_agreement: a choice whose summed agreement with the other views' choices is below this is dropped
            (when another view has a choice at all).
        margin: a view's choice is ambiguous when choosing otherwise there costs less than this many points.
        max_combinations: the most joint choices scored per frame (fewer candidates per view take part beyond).

    Returns:
        ``(keypoints, choice, ambiguous)``: (C, T, J, 3) float32 the chosen candidate (NaN where a view has none),
        (C, T) int the chosen candidate index (-1: none), (C, T) bool ambiguous choices.
    """
    if candidates.ndim != 5 or candidates.shape[-2:] != (skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected candidates (C, T, P, {skeleton.NUM_KEYPOINTS}, 3), got {candidates.shape}")
    C, T, P = candidates.shape[:3]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(candidates).all(-1) & (candidates[..., 2] >= min_score)  # (C, T, P, J)
    present = valid.any(-1)  # (C, T, P)
    ambiguous = np.zeros((C, T), dtype=bool)
    if P == 1:  # nothing to choose: passed through as detected
        choice = np.where(np.isfinite(candidates[:, :, 0]).all(-1).any(-1), 0, -1)
        return _gather(candidates, choice), choice, ambiguous
    while P > 1 and (P + 1) ** C > max_combinations:
        P -= 1  # many views: only the best candidates per view take part
    candidates, valid, present = candidates[:, :, :P], valid[:, :, :P], present[:, :, :P]

    xy = np.where(valid[..., None], candidates[..., :2], np.nan)  # (C, T, P, J, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # absent candidates: NaN centroid
        centroid = np.nanmean(xy, axis=-2)  # (C, T, P, 2)
    half_size = np.array([cam.image_size for cam in rig], dtype=np.float64)[:, None, None] / 2  # (C, 1, 1, 2)
    off_centre = np.linalg.norm(centroid - half_size, axis=-1) / np.linalg.norm(half_size, axis=-1)
    scores = np.where(valid, candidates[..., 2], 0.0).sum(-1) / np.maximum(valid.sum(-1), 1)
    unary = centre_weight * (1.0 - np.clip(np.nan_to_num(off_centre, nan=1.0), 0.0, 1.0)) + score_weight * scores
    # option P = "none", allowed only where a view has no candidate
    unary = np.concatenate([np.where(present, unary, -np.inf),
                            np.where(present.any(-1), -np.inf, 0.0)[..., None]], axis=-1)  # (C, T, P + 1)
    agree = np.zeros((C, C, T, P + 1, P + 1))
    agree[..., :P, :P] = pairwise_agreement(candidates, rig, min_score=min_score, epipolar_px=epipolar_px)

    combos = np.array(list(itertools.product(range(P + 1), repeat=C)))  # (K, C)
    static = np.zeros((T, len(combos)))
    for a in range(C):
        static += unary[a][:, combos[:, a]]
        for b in range(a + 1, C):
            static += agreement_weight * agree[a, b][:, combos[:, a], combos[:, b]]
    choice = np.full((C, T), -1)
    prev: list[np.ndarray | None] = [None] * C  # the last chosen pose per view, (J, 2)
    for t in range(T):
        total = static[t].copy()
        for c in range(C):
            if prev[c] is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # candidates sharing no keypoint: NaN
                    d = np.nanmedian(np.linalg.norm(xy[c, t] - prev[c], axis=-1), axis=-1)  # (P,)
                    size = np.linalg.norm(np.nanmax(prev[c], 0) - np.nanmin(prev[c], 0))
                track = np.append(np.where(np.isfinite(d), np.exp(-d / max(track_scale * size, 1.0)), 0.0), 0.0)
                total += track_weight * track[combos[:, c]]
        k = int(np.argmax(total))
        best = combos[k]
        for c in range(C):
            other = total[combos[:, c] != best[c]]
            ambiguous[c, t] = bool(other.size and np.isfinite(other.max()) and total[k] - other.max() < margin)
        chosen = [int(p) if p < P else -1 for p in best]
        for c in range(C):  # drop choices no other view's choice agrees with
            if chosen[c] >= 0:
                support = sum(agree[c, b, t, best[c], best[b]] for b in range(C) if b != c and chosen[b] >= 0)
                if support < min_agreement and any(chosen[b] >= 0 for b in range(C) if b != c):
                    choice[c, t] = -1
                    continue
                choice[c, t] = chosen[c]
                prev[c] = xy[c, t, chosen[c]]
    return _gather(candidates, choice), choice, ambiguous & (choice >= 0)


def _gather(candidates: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """(C, T, P, J, 3), (C, T) -> (C, T, J, 3) float32, NaN where the choice is -1."""
    idx = np.clip(choice, 0, None)[:, :, None, None, None]
    chosen = np.take_along_axis(candidates, idx, axis=2)[:, :, 0]
    return np.where((choice >= 0)[..., None, None], chosen, np.nan).astype(np.float32)
