"""Other tools' keypoint layouts, each mapped to the 133 COCO-WholeBody keypoints by one table.

A table row is ``(source index, COCO-WholeBody name or None, note)``. ``None`` means the 133 layout has no
counterpart: the keypoint is dropped, and a COCO-WholeBody keypoint no row names stays missing (NaN), never invented.
The note says where a counterpart is only close. A layout has one or more *sections*: the arrays a tool writes
separately (OpenPose's ``pose_keypoints_2d``, ``hand_left_keypoints_2d``, ``hand_right_keypoints_2d``,
``face_keypoints_2d``); layouts written as one array have a single section, ``keypoints``.

Sources of the definitions (checked when this module was written):

- OpenPose BODY_25 and COCO-18: CMU-Perceptual-Computing-Lab/openpose ``doc/02_output.md`` and
  ``include/openpose/pose/poseParameters.hpp`` (``POSE_BODY_25_BODY_PARTS``, ``POSE_COCO_BODY_PARTS``); hands
  (21 points: wrist, thumb 1-4, index 1-4, middle 1-4, ring 1-4, pinky 1-4, the COCO-WholeBody hand order) and the
  70-point face (the 68 iBUG points, then the right and the left pupil) from the same document's figures.
- HALPE-26 and HALPE-136: Fang-Haoshu/Halpe-FullBody ``README.md`` (AlphaPose) and open-mmlab/mmpose
  ``configs/_base_/datasets/halpe.py`` (body 0-25, face 26-93 in iBUG-68 order, left hand 94-114, right hand
  115-135, hands in the COCO-WholeBody order).
- COCO-17 and COCO-WholeBody: open-mmlab/mmpose ``configs/_base_/datasets/coco.py`` / ``coco_wholebody.py`` (the
  source of ``data/coco_wholebody_133.json``).

OpenPose's foot keypoints and COCO-WholeBody's are the same six definitions (COCO-WholeBody's feet came from the
OpenPose foot annotation), as are HALPE's; they are mapped one to one, with a note. Joints some layouts add between
others (OpenPose's and HALPE's neck, mid-hip, HALPE's head top) have no COCO-WholeBody counterpart; the ones a
lifting model of another joint set needs are derived from the 133 keypoints by :func:`derived_joints`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from build_h3wb import skeleton

Row = tuple[int, "str | None", str]

_SIDES = (("L", "left"), ("R", "right"))
_HAND = ["hand_root"] + [f"{finger}{k}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger",
                                                          "pinky_finger") for k in range(1, 5)]


def _hand_names(side: str) -> list[str]:
    """The 21 COCO-WholeBody names of one hand, in the shared hand order."""
    return [f"{side}_{n}" for n in _HAND]


def _check_names() -> None:
    """The hand names built above are the skeleton's (fails at import if the layout file differs)."""
    for side in ("left", "right"):
        names = list(skeleton.NAMES[skeleton.PARTS[f"{side}_hand"]])
        if names != _hand_names(side):
            raise RuntimeError(f"{side} hand names in data/coco_wholebody_133.json differ from layouts.py: {names}")


_check_names()

# ---------------------------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------------------------

#: OpenPose BODY_25 (``pose_keypoints_2d``, 25 points).
OPENPOSE_BODY25: tuple[Row, ...] = (
    (0, "nose", ""),
    (1, None, "Neck: no counterpart (about the mean of the shoulders)"),
    (2, "right_shoulder", ""),
    (3, "right_elbow", ""),
    (4, "right_wrist", ""),
    (5, "left_shoulder", ""),
    (6, "left_elbow", ""),
    (7, "left_wrist", ""),
    (8, None, "MidHip: no counterpart (the mean of the hips is the build's root)"),
    (9, "right_hip", ""),
    (10, "right_knee", ""),
    (11, "right_ankle", ""),
    (12, "left_hip", ""),
    (13, "left_knee", ""),
    (14, "left_ankle", ""),
    (15, "right_eye", ""),
    (16, "left_eye", ""),
    (17, "right_ear", ""),
    (18, "left_ear", ""),
    (19, "left_big_toe", "same definition (OpenPose foot data set)"),
    (20, "left_small_toe", "same definition"),
    (21, "left_heel", "same definition"),
    (22, "right_big_toe", "same definition"),
    (23, "right_small_toe", "same definition"),
    (24, "right_heel", "same definition"),
)

#: OpenPose COCO-18 (``pose_keypoints_2d``, 18 points; ``--model_pose COCO``).
OPENPOSE_COCO18: tuple[Row, ...] = (
    (0, "nose", ""),
    (1, None, "Neck: no counterpart (about the mean of the shoulders)"),
    (2, "right_shoulder", ""),
    (3, "right_elbow", ""),
    (4, "right_wrist", ""),
    (5, "left_shoulder", ""),
    (6, "left_elbow", ""),
    (7, "left_wrist", ""),
    (8, "right_hip", ""),
    (9, "right_knee", ""),
    (10, "right_ankle", ""),
    (11, "left_hip", ""),
    (12, "left_knee", ""),
    (13, "left_ankle", ""),
    (14, "right_eye", ""),
    (15, "left_eye", ""),
    (16, "right_ear", ""),
    (17, "left_ear", ""),
)


def _hand_rows(side: str) -> tuple[Row, ...]:
    """A 21-point hand in the shared order (OpenPose, HALPE and COCO-WholeBody agree)."""
    return tuple((k, name, "") for k, name in enumerate(_hand_names(side)))


#: OpenPose hands (``hand_left_keypoints_2d``, ``hand_right_keypoints_2d``, 21 points each).
OPENPOSE_HAND_LEFT: tuple[Row, ...] = _hand_rows("left")
OPENPOSE_HAND_RIGHT: tuple[Row, ...] = _hand_rows("right")

_FACE68: tuple[Row, ...] = tuple((k, f"face-{k}", "") for k in range(68))  # iBUG-68 order in every layout here

#: OpenPose face (``face_keypoints_2d``, 70 points): iBUG 68, then the two pupils.
OPENPOSE_FACE70: tuple[Row, ...] = _FACE68 + (
    (68, None, "right pupil: no counterpart"),
    (69, None, "left pupil: no counterpart"),
)

#: COCO-17 body (any COCO body model, e.g. RTMPose body); identical to COCO-WholeBody 0-16.
COCO17: tuple[Row, ...] = tuple((k, name, "") for k, name in enumerate(skeleton.NAMES[skeleton.PARTS["body"]]))

#: HALPE-26 (AlphaPose, RTMPose/RTMLib ``body8-halpe26`` models, Pose2Sim's default).
HALPE26: tuple[Row, ...] = COCO17 + (
    (17, None, "Head (top of the head): no counterpart"),
    (18, None, "Neck: no counterpart"),
    (19, None, "Hip (mid-hip): no counterpart"),
    (20, "left_big_toe", "same definition"),
    (21, "right_big_toe", "same definition"),
    (22, "left_small_toe", "same definition"),
    (23, "right_small_toe", "same definition"),
    (24, "left_heel", "same definition"),
    (25, "right_heel", "same definition"),
)

#: HALPE-136 (AlphaPose full body, RTMPose ``halpe136``): HALPE-26, face 26-93, left hand 94-114, right 115-135.
HALPE136: tuple[Row, ...] = (
    HALPE26
    + tuple((26 + k, name, note) for k, name, note in _FACE68)
    + tuple((94 + k, name, "the hand's wrist point" if k == 0 else note)
            for k, name, note in _hand_rows("left"))
    + tuple((115 + k, name, "the hand's wrist point" if k == 0 else note) for k, name, note in _hand_rows("right"))
)

#: COCO-WholeBody itself (MMPose / RTMLib / RTMW / DWPose / OpenPifPaf whole-body): the identity.
COCO_WHOLEBODY: tuple[Row, ...] = tuple((k, name, "") for k, name in enumerate(skeleton.NAMES))


# ---------------------------------------------------------------------------------------------------------------
# Layouts built from the tables
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One array of a layout: ``key`` (its JSON key where the tool names it), its keypoints and their targets."""

    key: str
    rows: tuple[Row, ...]

    @property
    def size(self) -> int:
        """Number of keypoints of this array."""
        return len(self.rows)


@dataclass(frozen=True)
class Layout:
    """A tool's keypoint layout: one or more sections, each mapped to COCO-WholeBody by its table.

    Attributes:
        name: the name used in ``detector.layout``.
        description: what writes it.
        sections: the arrays; the first is the body (OpenPose's ``pose_keypoints_2d``) or the only one.
    """

    name: str
    description: str
    sections: tuple[Section, ...]

    @property
    def size(self) -> int:
        """Keypoints of all sections together."""
        return sum(s.size for s in self.sections)

    def targets(self) -> np.ndarray:
        """(K,) int: the COCO-WholeBody index of every source keypoint (sections concatenated), -1 for none."""
        out = [skeleton.index(name) if name is not None else -1 for s in self.sections for _, name, _ in s.rows]
        return np.asarray(out, dtype=np.int64)


_OPENPOSE_PARTS = (Section("hand_left_keypoints_2d", OPENPOSE_HAND_LEFT),
                   Section("hand_right_keypoints_2d", OPENPOSE_HAND_RIGHT),
                   Section("face_keypoints_2d", OPENPOSE_FACE70))

#: Every supported layout by name.
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("openpose_body25", "OpenPose BODY_25 (+ 21-point hands, 70-point face)",
               (Section("pose_keypoints_2d", OPENPOSE_BODY25), *_OPENPOSE_PARTS)),
        Layout("openpose_coco18", "OpenPose COCO-18 (+ 21-point hands, 70-point face)",
               (Section("pose_keypoints_2d", OPENPOSE_COCO18), *_OPENPOSE_PARTS)),
        Layout("coco17", "COCO-17 body", (Section("keypoints", COCO17),)),
        Layout("halpe26", "HALPE-26 (AlphaPose, RTMPose halpe26)", (Section("keypoints", HALPE26),)),
        Layout("halpe136", "HALPE-136 (AlphaPose full body)", (Section("keypoints", HALPE136),)),
        Layout("coco_wholebody", "COCO-WholeBody 133 (MMPose, RTMLib, RTMW, DWPose)",
               (Section("keypoints", COCO_WHOLEBODY),)),
    )
}


def layout(name: str) -> Layout:
    """The layout called ``name``, or an error listing the supported ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown keypoint layout {name!r}; supported: {', '.join(LAYOUTS)} (or auto)") from None


def layout_for_count(count: int) -> Layout | None:
    """The layout whose body (first) section has ``count`` keypoints, if exactly one has (for ``layout=auto``)."""
    hits = [lay for lay in LAYOUTS.values() if lay.sections[0].size == count]
    return hits[0] if len(hits) == 1 else None


def to_wholebody(kp: np.ndarray, lay: Layout) -> np.ndarray:
    """Map keypoints of a layout to the COCO-WholeBody 133.

    Args:
        kp: (..., K, 3) ``[x, y, score]`` pixels in ``lay``'s order (its sections concatenated, K = ``lay.size``),
            NaN where missing.
        lay: the source layout.

    Returns:
        (..., 133, 3) float32 ``[x, y, score]``; NaN for every keypoint ``lay`` has no row for.
    """
    if kp.shape[-2:] != (lay.size, 3):
        raise ValueError(f"expected (..., {lay.size}, 3) keypoints of layout {lay.name}, got shape {kp.shape}")
    targets = lay.targets()
    keep = targets >= 0
    out = np.full((*kp.shape[:-2], skeleton.NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
    out[..., targets[keep], :] = kp[..., keep, :]
    return out


def from_wholebody(kp: np.ndarray, lay: Layout) -> np.ndarray:
    """The inverse where it exists: (..., 133, D) -> (..., K, D) in ``lay``'s order.

    NaN where ``lay`` has a keypoint the 133 layout lacks (a tool's own neck or mid-hip is not reconstructed here);
    used to write files in a foreign layout, e.g. in tests.
    """
    if kp.shape[-2] != skeleton.NUM_KEYPOINTS:
        raise ValueError(f"expected (..., {skeleton.NUM_KEYPOINTS}, D) keypoints, got shape {kp.shape}")
    targets = lay.targets()
    out = np.full((*kp.shape[:-2], lay.size, kp.shape[-1]), np.nan, dtype=np.float64)
    out[..., targets >= 0, :] = kp[..., targets[targets >= 0], :]
    return out


def mapped(lay: Layout) -> np.ndarray:
    """(133,) bool: the COCO-WholeBody keypoints ``lay`` provides."""
    out = np.zeros(skeleton.NUM_KEYPOINTS, dtype=bool)
    t = lay.targets()
    out[t[t >= 0]] = True
    return out


def derived_joints(kp: np.ndarray) -> dict[str, np.ndarray]:
    """Joints other skeletons (Human3.6M-17, OpenPose) have that COCO-WholeBody lacks, from the 133 keypoints.

    ``pelvis`` is the mean of the two hips (the build's root, :func:`build_h3wb.skeleton.root`), ``neck`` the mean of
    the shoulders, ``head`` the mean of whichever of the eyes and ears are present (a lifting model with one head
    joint takes this). Each needs its inputs: a missing hip or shoulder makes the joint missing; the head needs at
    least one of the four points.

    Args:
        kp: (..., 133, D) keypoints, any units (D = 2 or 3 coordinates; a score column, if any, is averaged too).

    Returns:
        ``{"pelvis", "neck", "head"}`` -> (..., D), NaN where missing.
    """
    if kp.shape[-2] != skeleton.NUM_KEYPOINTS:
        raise ValueError(f"expected (..., {skeleton.NUM_KEYPOINTS}, D) keypoints, got shape {kp.shape}")
    kp = np.asarray(kp, dtype=np.float64)
    missing = ~np.isfinite(kp).all(-1, keepdims=True)  # (..., J, 1)
    kp = np.where(missing, np.nan, kp)
    head = [skeleton.index(f"{s}_{p}") for p in ("eye", "ear") for _, s in _SIDES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no eye or ear: NaN head
        head_pt = np.nanmean(kp[..., head, :], axis=-2)
    return {
        "pelvis": skeleton.root(kp),
        "neck": 0.5 * (kp[..., skeleton.LEFT_SHOULDER, :] + kp[..., skeleton.RIGHT_SHOULDER, :]),
        "head": head_pt,
    }


def table_markdown(lay: Layout) -> str:
    """The layout's tables as Markdown (``| section | source index | COCO-WholeBody | note |``), for the docs."""
    lines = ["| section | source index | COCO-WholeBody index (name) | note |", "|---|---|---|---|"]
    for s in lay.sections:
        for k, name, note in s.rows:
            target = f"{skeleton.index(name)} ({name})" if name is not None else "none"
            lines.append(f"| {s.key} | {k} | {target} | {note} |")
    return "\n".join(lines)
