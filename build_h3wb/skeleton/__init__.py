"""The COCO-WholeBody keypoint layout: the one place that knows joint names, indices and parts.

Every other module asks this one for indices (``PARTS["face"]``, ``index("left_wrist")``, ``NUM_KEYPOINTS``);
no joint index or keypoint count is written anywhere else.

Layout (0-based): body 0-16, feet 17-22, face 23-90 (iBUG-68 order), left hand 91-111, right hand 112-132.
Hand order: root, thumb 1-4, index 1-4, middle 1-4, ring 1-4, pinky 1-4. Root of the pose: mid-hip.
Source of names, flip index and limb skeleton: ``data/coco_wholebody_133.json`` (copied from mmpose's dataset
description; see its ``source`` field).
"""

from __future__ import annotations

import json
import warnings
from importlib import resources

import numpy as np

_LAYOUT = json.loads(resources.files("build_h3wb").joinpath("data/coco_wholebody_133.json").read_text())

NAMES: tuple[str, ...] = tuple(_LAYOUT["names"])
NUM_KEYPOINTS: int = len(NAMES)
_INDEX = {name: i for i, name in enumerate(NAMES)}


def index(name: str) -> int:
    """Return the 0-based index of a keypoint by its COCO-WholeBody name (e.g. ``"left_wrist"``)."""
    try:
        return _INDEX[name]
    except KeyError:
        msg = f"unknown keypoint name {name!r}; expected one of the {NUM_KEYPOINTS} COCO-WholeBody names"
        raise KeyError(msg) from None


#: Part name -> slice into the keypoint axis. ``hands`` spans both hands.
PARTS: dict[str, slice] = {
    name: slice(lo, hi + 1) for name, (lo, hi) in _LAYOUT["groups_0based"].items()
}
PARTS["hands"] = slice(PARTS["left_hand"].start, PARTS["right_hand"].stop)

#: Parts used in reports, in order; ``body`` here means body and feet (joints 0-22), as H3WB scores it.
REPORT_PARTS: dict[str, slice] = {
    "whole": slice(0, NUM_KEYPOINTS),
    "body": slice(PARTS["body"].start, PARTS["feet"].stop),
    "face": PARTS["face"],
    "hands": PARTS["hands"],
}

FLIP_INDEX: np.ndarray = np.asarray(_LAYOUT["flip_index"], dtype=np.int64)

# Named joints the rest of the package needs.
NOSE = index("nose")
LEFT_SHOULDER, RIGHT_SHOULDER = index("left_shoulder"), index("right_shoulder")
LEFT_WRIST, RIGHT_WRIST = index("left_wrist"), index("right_wrist")
LEFT_HIP, RIGHT_HIP = index("left_hip"), index("right_hip")
LEFT_HAND_ROOT, RIGHT_HAND_ROOT = PARTS["left_hand"].start, PARTS["right_hand"].start

#: iBUG-68 sub-parts of the face, as offsets into the face part (0..67).
FACE_REGIONS: dict[str, range] = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_lower": range(31, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "mouth_outer": range(48, 60),
    "mouth_inner": range(60, 68),
}


def _face_bones() -> list[tuple[int, int]]:
    """Contours of the iBUG-68 face: open chains for jaw, brows and nose, closed loops for eyes and lips."""
    off = PARTS["face"].start
    bones: list[tuple[int, int]] = []
    closed = {"right_eye", "left_eye", "mouth_outer", "mouth_inner"}
    for region, idx in FACE_REGIONS.items():
        pts = [off + i for i in idx]
        bones += list(zip(pts[:-1], pts[1:]))
        if region in closed:
            bones.append((pts[-1], pts[0]))
    bones.append((off + 30, off + 33))  # nose tip to the lower nose centre
    return bones


#: Bones as (parent, child) index pairs: mmpose's limb skeleton, wrist to hand root, and the face contours.
BONES: np.ndarray = np.asarray(
    [tuple(b) for b in _LAYOUT["skeleton_mmpose_0based"]]
    + [(LEFT_WRIST, LEFT_HAND_ROOT), (RIGHT_WRIST, RIGHT_HAND_ROOT)]
    + _face_bones(),
    dtype=np.int64,
)

#: Bones whose length is constant for a subject: limbs, feet, head points and finger segments. Left out: the
#: ear-shoulder links (the head turns on the neck) and the face contours (the mouth opens).
_NECK_CROSSING = {(index(f"{s}_ear"), index(f"{s}_shoulder")) for s in ("left", "right")}
RIGID_BONES: np.ndarray = np.asarray(
    [b for b in BONES[: len(_LAYOUT["skeleton_mmpose_0based"]) + 2].tolist()
     if tuple(b) not in _NECK_CROSSING and tuple(b[::-1]) not in _NECK_CROSSING],
    dtype=np.int64,
)



def part_of(j: int) -> str:
    """Return the part name (body, feet, face, left_hand, right_hand) of keypoint ``j``."""
    for name in ("body", "feet", "face", "left_hand", "right_hand"):
        if PARTS[name].start <= j < PARTS[name].stop:
            return name
    raise IndexError(f"keypoint index {j} outside 0..{NUM_KEYPOINTS - 1}")


def part_ids() -> np.ndarray:
    """Return an int array (J,) numbering each keypoint's part: 0 body, 1 feet, 2 face, 3 left hand, 4 right hand."""
    ids = np.empty(NUM_KEYPOINTS, dtype=np.int64)
    for k, name in enumerate(("body", "feet", "face", "left_hand", "right_hand")):
        ids[PARTS[name]] = k
    return ids


def root(kp: np.ndarray) -> np.ndarray:
    """Return the pose root, the mid-hip.

    Args:
        kp: (..., J, D) keypoints, any units.

    Returns:
        (..., D) midpoint of the left and right hips (NaN where either hip is missing).
    """
    if kp.shape[-2] != NUM_KEYPOINTS:
        raise ValueError(f"expected (..., {NUM_KEYPOINTS}, D) keypoints, got shape {kp.shape}")
    return 0.5 * (kp[..., LEFT_HIP, :] + kp[..., RIGHT_HIP, :])


def flip_left_right(kp: np.ndarray) -> np.ndarray:
    """Swap left and right keypoints (labels only, coordinates untouched): (..., J, D) -> (..., J, D)."""
    if kp.shape[-2] != NUM_KEYPOINTS:
        raise ValueError(f"expected (..., {NUM_KEYPOINTS}, D) keypoints, got shape {kp.shape}")
    return kp[..., FLIP_INDEX, :]


def box_diagonal(uv: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The diagonal of the box around each pose's valid keypoints: a person's size in an image.

    Args:
        uv: (..., K, 2) pixels; any K, e.g. a part's keypoints ``uv[..., PARTS["body"], :]``.
        valid: (..., K) bool, the keypoints to count (False wherever ``uv`` is NaN).

    Returns:
        (...,) pixels, NaN where no keypoint is valid.
    """
    if uv.shape[-1] != 2 or valid.shape != uv.shape[:-1]:
        raise ValueError(f"expected uv (..., K, 2) and valid (..., K), got shapes {uv.shape} and {valid.shape}")
    u = np.where(valid, uv[..., 0], np.nan)  # (..., K)
    v = np.where(valid, uv[..., 1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no valid keypoint: NaN
        return np.hypot(np.nanmax(u, -1) - np.nanmin(u, -1), np.nanmax(v, -1) - np.nanmin(v, -1))


def left_right_sides() -> tuple[list[int], list[int]]:
    """The keypoints of the subject's left and of the right side, from the flip pairs (centre keypoints in neither).

    Body, feet and hands are sided by their names; a face pair's lower index is the subject's right (iBUG-68:
    the jaw, brows and eyes are numbered from the subject's right).

    Returns:
        ``(left, right)``: ascending 0-based indices, ``right[i]`` is not necessarily ``FLIP_INDEX[left[i]]``.
    """
    left, right = [], []
    face = PARTS["face"]
    for j, mate in enumerate(FLIP_INDEX.tolist()):
        if mate == j:
            continue
        if face.start <= j < face.stop:
            (right if j < mate else left).append(j)
        else:
            (left if NAMES[j].startswith("left") else right).append(j)
    return left, right
