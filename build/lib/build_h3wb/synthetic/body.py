"""Subject body model of the synthetic capture: proportions and the rigid templates of face, hands and feet.

Segment frames are right-handed with x forward, y to the subject's left and z up when the subject stands in the
neutral pose. Limb templates (hand, foot) are given for the LEFT side; the right side is their mirror image
(y -> -y). All lengths are millimetres.

Segment-length fractions of body height follow Drillis and Contini (1966) as tabulated in Winter, "Biomechanics
and Motor Control of Human Movement", fig. 4.1. The face is a hand-made 3D iBUG-68 template.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from build_h3wb import skeleton

#: Reference height (mm) at which the face and hand templates below have their nominal size.
REFERENCE_HEIGHT_MM = 1750.0

#: Body keypoints that are rigid points of the head, in the order :func:`head_points` returns them.
HEAD_BODY_NAMES: tuple[str, ...] = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")

#: Foot keypoints per foot, in the order :func:`foot_template` returns them (COCO-WholeBody order).
FOOT_POINT_NAMES: tuple[str, ...] = ("big_toe", "small_toe", "heel")

# Hand template for a reference hand (wrist crease to middle fingertip 189 mm), left hand, hand frame at the
# hand root: fingers extend along -z, the palm faces -y (towards the body when the arm hangs), the thumb lies
# towards +x. Rows: thumb, index, middle, ring, pinky.
_REF_HAND_LENGTH = 189.0
_FINGER_BASE = np.array(
    [
        [20.0, -12.0, -22.0],  # thumb CMC
        [24.0, -2.0, -80.0],  # index MCP
        [6.0, -2.0, -84.0],  # middle MCP
        [-11.0, -2.0, -79.0],  # ring MCP
        [-27.0, -2.0, -70.0],  # pinky MCP
    ]
)
_FINGER_SEGMENTS = np.array(
    [
        [42.0, 31.0, 25.0],  # thumb metacarpal, proximal, distal
        [42.0, 25.0, 21.0],
        [46.0, 29.0, 23.0],
        [43.0, 27.0, 22.0],
        [34.0, 20.0, 19.0],
    ]
)
#: Fan angle (deg, rotation about the palm normal, positive towards the pinky) of each finger at spread 1.
FINGER_SPREAD_DEG = np.array([-15.0, -8.0, 0.0, 7.0, 14.0])
_WRIST_TO_HAND_ROOT = 10.0


def stable_seed(*parts: object) -> int:
    """Return a 32-bit seed from the ``str`` of each part, stable across runs and machines (CRC-32, not ``hash``)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


@dataclass(frozen=True)
class BodyShape:
    """Per-subject proportions (all lengths mm).

    Attributes:
        height: standing height, floor to vertex.
        hip_width: distance between the two hip joint centres.
        thigh: hip to knee.
        shin: knee to ankle.
        ankle_height: ankle joint centre above the floor when standing.
        foot_length: heel to big-toe tip.
        torso: vertical distance from the mid-hip up to the line between the shoulder joints.
        shoulder_width: distance between the two shoulder joints.
        neck: neck base (between the shoulders) to the top of the neck.
        head_offset: top of the neck to the head centre (between the ears).
        upper_arm: shoulder to elbow.
        forearm: elbow to wrist.
        hand_scale: hand size relative to the reference hand (189 mm wrist to middle fingertip).
        finger_scale: (5,) per-finger length multipliers, thumb to pinky.
        head_scale: face and head size relative to the reference head.
    """

    height: float
    hip_width: float
    thigh: float
    shin: float
    ankle_height: float
    foot_length: float
    torso: float
    shoulder_width: float
    neck: float
    head_offset: float
    upper_arm: float
    forearm: float
    hand_scale: float
    finger_scale: tuple[float, float, float, float, float]
    head_scale: float

    @property
    def arm_length(self) -> float:
        """Shoulder to wrist with a straight elbow (mm)."""
        return self.upper_arm + self.forearm


def subject_shape(subject: str, seed: int = 0) -> BodyShape:
    """Deterministic body proportions for a subject name like 'S1', 'S5' (any string works).

    Heights are drawn uniformly in 1.56..1.89 m; each segment ratio then varies independently by a few percent
    (normal, sd 2.5 %, clipped to +-6 %).

    Args:
        subject: subject name; hashed with CRC-32 together with ``seed``.
        seed: dataset seed; the same (subject, seed) always gives the same body.

    Returns:
        The subject's :class:`BodyShape`.
    """
    rng = np.random.default_rng(stable_seed("body-shape", seed, subject))
    h = float(rng.uniform(1560.0, 1890.0))

    def seg(frac: float) -> float:
        return h * frac * float(1.0 + np.clip(rng.normal(0.0, 0.025), -0.06, 0.06))

    hand_scale = seg(0.108) / _REF_HAND_LENGTH
    finger_scale = tuple(float(v) for v in 1.0 + np.clip(rng.normal(0.0, 0.02, 5), -0.05, 0.05))
    return BodyShape(
        height=h,
        hip_width=seg(0.115),
        thigh=seg(0.245),
        shin=seg(0.246),
        ankle_height=seg(0.039),
        foot_length=seg(0.152),
        torso=seg(0.288),
        shoulder_width=seg(0.205),
        neck=seg(0.058),
        head_offset=seg(0.052),
        upper_arm=seg(0.186),
        forearm=seg(0.146),
        hand_scale=hand_scale,
        finger_scale=finger_scale,  # type: ignore[arg-type]
        head_scale=h / REFERENCE_HEIGHT_MM * float(1.0 + np.clip(rng.normal(0.0, 0.02), -0.05, 0.05)),
    )


def _mirror_pairs(right: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Left-side points from right-side ones: negate y and reorder with ``order`` (indices into ``right``)."""
    out = right[order].copy()
    out[:, 1] *= -1.0
    return out


def _reference_face() -> np.ndarray:
    """The neutral 3D iBUG-68 face (68, 3) in the head frame of the reference head (mm).

    Head frame: origin at the head centre (midway between the ear canals), x forward (out of the face), y to the
    subject's left, z up. "Right" landmarks (jaw start, brow 17-21, eye 36-41, lip corner 48) have y < 0.
    """
    r = skeleton.FACE_REGIONS
    face = np.zeros((sum(len(v) for v in r.values()), 3))
    # Jaw: from the subject's right ear side around the chin to the left; a rounded-square contour.
    theta = np.linspace(-0.5 * np.pi, 0.5 * np.pi, len(r["jaw"]))
    s, c = np.sin(theta), np.cos(theta)
    face[r["jaw"]] = np.stack(
        [15.0 + 70.0 * c**0.8, 70.0 * np.sign(s) * np.abs(s) ** 0.7, 8.0 - 123.0 * c**1.3], axis=-1
    )
    right_brow = np.array([[68.0, -58.0, 28.0], [82.0, -47.0, 35.0], [90.0, -35.0, 38.0], [95.0, -23.0, 37.0],
                           [97.0, -12.0, 33.0]])  # outer to inner
    face[r["right_brow"]] = right_brow
    face[r["left_brow"]] = _mirror_pairs(right_brow, np.arange(len(right_brow))[::-1])  # inner to outer
    face[r["nose_bridge"]] = np.array([[94.0, 0.0, 12.0], [100.0, 0.0, -2.0], [106.0, 0.0, -16.0], [114.0, 0.0, -30.0]])
    face[r["nose_lower"]] = np.array([[96.0, -16.0, -36.0], [101.0, -8.0, -39.0], [103.0, 0.0, -41.0],
                                      [101.0, 8.0, -39.0], [96.0, 16.0, -36.0]])
    # Right eye: outer corner, upper outer, upper inner, inner corner, lower inner, lower outer.
    right_eye = np.array([[74.0, -46.0, 8.0], [84.0, -38.0, 14.0], [86.0, -26.0, 14.0], [86.0, -18.0, 7.0],
                          [84.0, -26.0, 3.0], [83.0, -38.0, 3.0]])
    face[r["right_eye"]] = right_eye
    # Left eye: inner corner, upper inner, upper outer, outer corner, lower outer, lower inner.
    face[r["left_eye"]] = _mirror_pairs(right_eye, np.array([3, 2, 1, 0, 5, 4]))
    face[r["mouth_outer"]] = np.array([
        [84.0, -26.0, -66.0], [92.0, -17.0, -60.0], [95.0, -7.0, -57.0], [96.0, 0.0, -58.0], [95.0, 7.0, -57.0],
        [92.0, 17.0, -60.0], [84.0, 26.0, -66.0], [91.0, 17.0, -74.0], [94.0, 7.0, -78.0], [95.0, 0.0, -79.0],
        [94.0, -7.0, -78.0], [91.0, -17.0, -74.0],
    ])  # right corner, upper lip to the left corner, lower lip back to the right
    face[r["mouth_inner"]] = np.array([
        [88.0, -20.0, -66.0], [92.0, -8.0, -64.0], [93.0, 0.0, -64.5], [92.0, 8.0, -64.0], [88.0, 20.0, -66.0],
        [92.0, 8.0, -68.0], [93.0, 0.0, -68.5], [92.0, -8.0, -68.0],
    ])
    return face


_REF_FACE = _reference_face()
_REF_EARS = np.array([[-6.0, 77.0, -2.0], [-6.0, -77.0, -2.0]])  # left, right
#: Jaw hinge (temporomandibular joints, reference head) in the head frame; the jaw opens about the y axis here.
_JAW_HINGE = np.array([5.0, 0.0, -8.0])


def _jaw_and_smile_weights() -> tuple[np.ndarray, np.ndarray]:
    """Per-landmark weights (68,) of jaw opening and of the smile (mouth-corner) displacement."""
    r = skeleton.FACE_REGIONS
    jaw = np.zeros(len(_REF_FACE))
    theta = np.linspace(-0.5 * np.pi, 0.5 * np.pi, len(r["jaw"]))
    jaw[r["jaw"]] = np.cos(theta) ** 2
    outer, inner = list(r["mouth_outer"]), list(r["mouth_inner"])
    lower_outer = outer[len(outer) // 2 + 1:]  # the lower lip between the two corners
    lower_inner = inner[len(inner) // 2 + 1:]
    corners = [outer[0], outer[len(outer) // 2], inner[0], inner[len(inner) // 2]]
    jaw[lower_outer + lower_inner] = 1.0
    jaw[corners] = 0.5
    smile = np.zeros(len(_REF_FACE))
    smile[corners] = 1.0
    smile[[outer[1], outer[len(outer) // 2 - 1], outer[len(outer) // 2 + 1], outer[-1]]] = 0.5
    return jaw, smile


_JAW_WEIGHT, _SMILE_WEIGHT = _jaw_and_smile_weights()
#: Displacement (68, 3) of each landmark at full smile and weight 1: corners back, outwards and up (mm).
_SMILE_DIR = np.stack(
    [np.full(len(_REF_FACE), -3.0), 6.0 * np.sign(_REF_FACE[:, 1]), np.full(len(_REF_FACE), 4.0)], axis=-1
)


def face_template(shape: BodyShape) -> np.ndarray:
    """Neutral (mouth closed, no smile) 68 iBUG landmarks of a subject.

    Args:
        shape: the subject's body.

    Returns:
        (68, 3) head-frame millimetres (origin at the head centre between the ears, x forward, y left, z up).
    """
    return _REF_FACE * shape.head_scale


def head_points(shape: BodyShape, jaw_deg: np.ndarray, smile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head keypoints in the head frame for given jaw openings and smiles.

    Args:
        shape: the subject's body.
        jaw_deg: (T,) jaw opening in degrees (0 closed, about 25 wide open).
        smile: (T,) mouth-corner raise and widening, 0..1.

    Returns:
        body: (T, 5, 3) nose, left eye, right eye, left ear, right ear (:data:`HEAD_BODY_NAMES`), head-frame mm;
            rigid, the eyes at the centres of the eye contours and the nose at the nose tip.
        face: (T, 68, 3) iBUG landmarks, head-frame mm; the lower lip, mouth corners and chin follow the jaw.
    """
    jaw_deg = np.asarray(jaw_deg, dtype=float)
    smile = np.asarray(smile, dtype=float)
    r = skeleton.FACE_REGIONS
    k = shape.head_scale
    ang = np.deg2rad(jaw_deg)[:, None] * _JAW_WEIGHT[None, :]  # (T, 68)
    rel = _REF_FACE - _JAW_HINGE  # (68, 3)
    c, s = np.cos(ang), np.sin(ang)
    x = c * rel[:, 0] + s * rel[:, 2]  # rotation about y: the chin moves down and back as the jaw opens
    z = -s * rel[:, 0] + c * rel[:, 2]
    y = np.broadcast_to(rel[:, 1], x.shape)
    face = np.stack([x, y, z], axis=-1) + _JAW_HINGE  # (T, 68, 3)
    sm = smile[:, None] * _SMILE_WEIGHT[None, :]  # (T, 68)
    face = (face + sm[..., None] * _SMILE_DIR) * k
    nose = _REF_FACE[r["nose_bridge"][-1]]
    eyes = [_REF_FACE[r["left_eye"]].mean(axis=0), _REF_FACE[r["right_eye"]].mean(axis=0)]
    body = np.stack([nose, eyes[0], eyes[1], _REF_EARS[0], _REF_EARS[1]]) * k  # (5, 3)
    return np.broadcast_to(body, (len(face), *body.shape)).copy(), face


@dataclass(frozen=True)
class HandTemplate:
    """Rigid geometry of a subject's LEFT hand in the hand frame (fingers along -z, palm towards -y, thumb +x).

    Attributes:
        root_offset: distance (mm) from the body wrist keypoint to the hand root, along the hand's -z axis.
        base: (5, 3) thumb CMC and finger MCP joints relative to the hand root, mm; thumb, index ... pinky.
        segments: (5, 3) segment lengths, mm: thumb metacarpal/proximal/distal, fingers proximal/middle/distal.
        base_rot: (5, 3, 3) rest rotation of each finger chain (identity except the opposed thumb).
        spread_deg: (5,) fan angle of each finger at spread 1, degrees about the palm normal.
    """

    root_offset: float
    base: np.ndarray
    segments: np.ndarray
    base_rot: np.ndarray
    spread_deg: np.ndarray


def _axis_rot(axis: int, deg: float) -> np.ndarray:
    """One rotation matrix (3, 3) by ``deg`` degrees about coordinate axis ``axis`` (0 x, 1 y, 2 z)."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def hand_template(shape: BodyShape) -> HandTemplate:
    """The subject's left hand geometry (the right hand is its mirror image); see :class:`HandTemplate`."""
    fs = np.asarray(shape.finger_scale)[:, None]
    base_rot = np.broadcast_to(np.eye(3), (len(_FINGER_BASE), 3, 3)).copy()
    base_rot[0] = _axis_rot(1, -25.0) @ _axis_rot(2, -45.0)  # thumb points forward-down, flexes across the palm
    return HandTemplate(
        root_offset=_WRIST_TO_HAND_ROOT * shape.hand_scale,
        base=_FINGER_BASE * shape.hand_scale,
        segments=_FINGER_SEGMENTS * shape.hand_scale * fs,
        base_rot=base_rot,
        spread_deg=FINGER_SPREAD_DEG.copy(),
    )


def foot_template(shape: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """The subject's left foot keypoints and sole contact points in the foot frame (origin at the ankle joint).

    Returns:
        points: (3, 3) big toe, small toe, heel keypoints (:data:`FOOT_POINT_NAMES`), foot-frame mm; the big toe is
            medial (y < 0) for this left foot.
        sole: (3, 3) the floor-contact points under them (mm); the foot is flat on the floor when they have z = 0.
    """
    fl, ah = shape.foot_length, shape.ankle_height
    points = np.array([
        [0.78 * fl, -0.07 * fl, -ah + 18.0],
        [0.62 * fl, 0.13 * fl, -ah + 14.0],
        [-0.19 * fl, 0.0, -ah + 28.0],
    ])
    sole = points.copy()
    sole[:, 2] = -ah
    return points, sole
