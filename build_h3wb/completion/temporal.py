"""What the completion network should not believe in a sequence: hands found at the wrong place, told by their wrist.

Where triangulation loses part of a hand, what it still finds of it is often found at the wrong place. On the
default synthetic capture (10,000 incomplete poses) 13% of the left and 17% of the right hands with holes have their
observed keypoints more than 100 mm from the truth on average, and those are shifted as one piece, wrist included
(median wrist error 130-145 mm; the views disagree, and the ones that saw the hand saw something else). The
network follows such a hand (its holes filled 215-230 mm off, where the nearest-pose baseline, which rigidly fits a
whole pose, is 120-130 mm off), and the rest of the pose cannot tell it apart: the forearm may point anywhere (the
network predicts a hidden wrist from the rest of the body with a median error of about 90 mm). The neighbouring
frames can: such a wrist lies a median 130-145 mm from the median of the same wrist in the two frames on each side,
where a hand with holes that is in place lies 22 mm from it (90% within 53 mm).

:func:`anchor_displaced_hands` gives the network, for such a hand, the neighbours' wrist instead of the observed one
and none of the hand's observed keypoints; the network then fills the hand's holes from the body and that wrist.
The output still holds the observed keypoints as triangulated (see
:func:`build_h3wb.completion.train.complete_poses`, ``inputs``).
"""

from __future__ import annotations

import numpy as np

from build_h3wb import skeleton


def anchor_displaced_hands(
    poses: np.ndarray, frames: np.ndarray, max_jump_mm: float, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """The network's input for one sequence: hands whose wrist jumps away from its neighbours not trusted.

    A hand counts as displaced in a frame when it has holes (some, not all, of its keypoints missing or all of
    them: the rule is the same) and its observed wrist lies more than ``max_jump_mm`` from the median of the same
    wrist over the frames within ``window`` frame steps on either side (the sequence's median step between frame
    numbers; at least two of them with the wrist observed). For a displaced hand the wrist is replaced by that
    median and the hand's observed keypoints are set missing.

    Args:
        poses: (T, J, 3) one sequence's poses in frame order, world mm, NaN where missing.
        frames: (T,) their frame numbers, increasing.
        max_jump_mm: distance above which a wrist is taken as displaced (0 or less: nothing is).
        window: neighbouring frame steps on each side.

    Returns:
        inputs (T, J, 3) float64 world mm (a copy of ``poses`` with the displaced hands changed as above) and
        displaced (T, 2) bool, per frame the left and the right hand taken as displaced.

    Raises:
        ValueError: shapes that do not fit, or frame numbers that do not increase.
    """
    poses = np.asarray(poses, dtype=np.float64)
    frames = np.asarray(frames)
    if poses.ndim != 3 or poses.shape[1:] != (skeleton.NUM_KEYPOINTS, 3) or frames.shape != poses.shape[:1]:
        raise ValueError(f"expected poses (T, {skeleton.NUM_KEYPOINTS}, 3) and frames (T,), got shapes "
                         f"{poses.shape} and {frames.shape}")
    if np.any(np.diff(frames) <= 0):
        raise ValueError("frames must increase")
    inputs = poses.copy()
    displaced = np.zeros((len(poses), 2), dtype=bool)
    if max_jump_mm <= 0 or window < 1 or len(poses) < 3:
        return inputs, displaced
    step = np.median(np.diff(frames))
    missing = ~np.isfinite(poses).all(-1)  # (T, J)
    for k, side in enumerate(("left", "right")):
        hand = skeleton.PARTS[f"{side}_hand"]
        w = skeleton.index(f"{side}_wrist")
        wrist = poses[:, w]  # (T, 3)
        suspect = np.flatnonzero(missing[:, hand].any(1) & ~missing[:, w])
        lo = np.searchsorted(frames, frames[suspect] - window * step, side="left")  # the window's rows, (S,)
        hi = np.searchsorted(frames, frames[suspect] + window * step, side="right")
        for t, a, b in zip(suspect.tolist(), lo.tolist(), hi.tolist()):
            near = ~missing[a:b, w]  # the neighbours within the window that see the wrist
            near[t - a] = False
            if near.sum() < 2:
                continue
            anchor = np.median(wrist[a:b][near], axis=0)
            if np.linalg.norm(wrist[t] - anchor) > max_jump_mm:
                displaced[t, k] = True
                inputs[t, hand] = np.nan
                inputs[t, w] = anchor
    return inputs, displaced
