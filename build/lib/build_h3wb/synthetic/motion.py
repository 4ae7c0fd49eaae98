"""Human3.6M-like whole-body motion with exact ground truth, in closed form.

:func:`generate_motion` poses a subject (:mod:`build_h3wb.synthetic.body`) with a kinematic skeleton: a rigid torso
(pelvis, hips and shoulders) with a global position, heading and lean; a neck and head carrying the rigid face
(except the jaw and mouth); legs by forward kinematics (hip, knee, foot) with toes and heel rigid in the foot frame;
arms by analytic two-bone inverse kinematics towards wrist targets (at the ear, the mouth, pointing ...), and hands
by forward kinematics of five fingers. Every random parameter of a sequence is drawn once from a generator seeded
by a stable hash of (seed, subject, action); the pose is then a closed-form function of time (sums of sinusoids,
smooth-step key-pose schedules, a periodic gait, a closed walking path), so any set of frames can be generated
alone and chunks concatenate to the whole.

Frames: world x, y horizontal, z up, floor at z = 0, millimetres. The torso frame has its origin at the mid-hip,
x forward, y to the subject's left, z up. Arm, hand and leg quantities are computed for the LEFT side; the right
side is computed in the mirrored frame (y -> -y) and mirrored back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from build_h3wb import skeleton
from build_h3wb.synthetic.body import (
    FOOT_POINT_NAMES,
    HEAD_BODY_NAMES,
    BodyShape,
    HandTemplate,
    foot_template,
    hand_template,
    head_points,
    stable_seed,
    subject_shape,
)

ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)

_MIRROR = np.array([1.0, -1.0, 1.0])
_SIDES = ("left", "right")
_IDX_HEAD_BODY = np.array([skeleton.index(n) for n in HEAD_BODY_NAMES])
_IDX_LIMB = {
    side: {j: skeleton.index(f"{side}_{j}") for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")}
    for side in _SIDES
}
_IDX_FOOT = {side: np.array([skeleton.index(f"{side}_{n}") for n in FOOT_POINT_NAMES]) for side in _SIDES}

# Elbow flexion range (deg) the arm IK keeps to; the knee and all finger joints are clipped to these ranges too.
_ELBOW_FLEX = (4.0, 145.0)
_FINGER_FLEX = (0.0, 100.0)


# ----------------------------------------------------------------------------------------------------------------
# Small vectorised helpers.


def _rot(axis: int, deg: np.ndarray | float) -> np.ndarray:
    """Rotation matrices (..., 3, 3) by ``deg`` (...,) degrees about coordinate axis ``axis`` (0 x, 1 y, 2 z)."""
    a = np.deg2rad(np.asarray(deg, dtype=float))
    c, s = np.cos(a), np.sin(a)
    r = np.zeros(a.shape + (3, 3))
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    r[..., axis, axis] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


# Products below are written out as element-wise sums in a fixed order (no BLAS, einsum or reductions whose
# summation order may depend on the array size), so that a frame's values do not depend on which other frames are
# computed with it: chunks of frames concatenate bit-exactly.


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product of broadcastable stacks (..., 3, 3) @ (..., 3, 3)."""
    return a[..., :, 0:1] * b[..., 0:1, :] + a[..., :, 1:2] * b[..., 1:2, :] + a[..., :, 2:3] * b[..., 2:3, :]


def _mv(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors: r (..., 3, 3) times v (..., 3) -> (..., 3), broadcasting."""
    return r[..., :, 0] * v[..., 0:1] + r[..., :, 1] * v[..., 1:2] + r[..., :, 2] * v[..., 2:3]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product over the last axis (..., 3) -> (...)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis (..., 3) -> (...)."""
    return np.sqrt(_dot(v, v))


def _normalize(v: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis."""
    return v / _norm(v)[..., None]


def _wsum(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weighted sum over key poses: w (T, P) and values (P, ...) -> (T, ...)."""
    values = np.asarray(values, dtype=float)
    out = np.zeros((len(w),) + values.shape[1:])
    for p in range(values.shape[0]):
        out = out + w[:, p].reshape((-1,) + (1,) * (values.ndim - 1)) * values[p]
    return out


def _ypr(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rz(yaw) Ry(pitch) Rx(roll), (..., 3, 3); pitch > 0 tips the x axis down (leaning or looking down)."""
    return _mm(_mm(_rot(2, yaw), _rot(1, pitch)), _rot(0, roll))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """Quintic smooth step from 0 (x <= 0) to 1 (x >= 1), zero first and second derivatives at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def _bump(phase: np.ndarray, mu: float, kappa: float) -> np.ndarray:
    """Periodic bump (von Mises shape, peak 1 at phase ``mu``) of a cycle phase in [0, 1)."""
    return np.exp(kappa * (np.cos(2.0 * np.pi * (phase - mu)) - 1.0))


def _sines(rng: np.random.Generator, t: np.ndarray, amp: float, f_lo: float, f_hi: float, n: int = 3) -> np.ndarray:
    """A random smooth signal (T,) bounded by +-amp: n sinusoids with frequencies in [f_lo, f_hi] Hz."""
    f = rng.uniform(f_lo, f_hi, n)
    ph = rng.uniform(0.0, 2.0 * np.pi, n)
    w = rng.uniform(0.5, 1.0, n)
    w = amp * w / w.sum()
    out = np.zeros(len(t))
    for k in range(n):
        out = out + w[k] * np.sin(2.0 * np.pi * f[k] * t + ph[k])
    return out


@dataclass(frozen=True)
class _Schedule:
    """A periodic sequence of key states: each is held, then blends into the next with a smooth step."""

    ids: np.ndarray  # (K,) state index of each key
    starts: np.ndarray  # (K,) start of each key within the period, s
    holds: np.ndarray  # (K,) hold duration, s
    trans: np.ndarray  # (K,) duration of the blend into the next key, s
    offset: float  # time shift, s

    def weights(self, t: np.ndarray, n_states: int) -> np.ndarray:
        """Blend weights (T, n_states) at times t (T,) s; rows sum to 1."""
        period = self.starts[-1] + self.holds[-1] + self.trans[-1]
        tt = np.mod(t + self.offset, period)
        k = np.clip(np.searchsorted(self.starts, tt, side="right") - 1, 0, len(self.ids) - 1)
        s = _smoothstep((tt - self.starts[k] - self.holds[k]) / self.trans[k])
        w = np.zeros((len(t), n_states))
        rows = np.arange(len(t))
        np.add.at(w, (rows, self.ids[k]), 1.0 - s)
        np.add.at(w, (rows, self.ids[(k + 1) % len(self.ids)]), s)
        return w


def _schedule(
    rng: np.random.Generator, weight: np.ndarray, hold: np.ndarray, trans: tuple[float, float], n_keys: int = 40
) -> _Schedule:
    """Draw a schedule over states with probabilities ∝ ``weight`` (n,), hold ranges ``hold`` (n, 2) s."""
    n = len(weight)
    p = np.asarray(weight, dtype=float) / np.sum(weight)
    ids = np.empty(n_keys, dtype=np.int64)
    ids[0] = rng.choice(n, p=p)
    for k in range(1, n_keys):
        q = p.copy()
        if n > 1:
            q[ids[k - 1]] = 0.0  # a new state at each key
        if k == n_keys - 1 and q.sum() > q[ids[0]]:
            q[ids[0]] = 0.0  # and the wrap to the first key changes state too
        ids[k] = rng.choice(n, p=q / q.sum())
    holds = rng.uniform(hold[ids, 0], hold[ids, 1])
    tr = rng.uniform(trans[0], trans[1], n_keys)
    starts = np.concatenate([[0.0], np.cumsum(holds + tr)[:-1]])
    return _Schedule(ids, starts, holds, tr, float(rng.uniform(0.0, starts[-1])))


# ----------------------------------------------------------------------------------------------------------------
# Pose libraries: stances (legs and torso), hand shapes, arm poses.

# Leg angles (deg) per side [hip flexion, hip abduction (outwards), hip rotation (toe out), knee flexion, foot pitch
# (toes down, relative to the floor)], torso (pitch forward, roll), sitting flag.
_STANCES: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...]], tuple[float, float], float]] = {
    "neutral": (((3, 4, 6, 4, 0), (3, 4, 6, 4, 0)), (2, 0), 0.0),
    "wide": (((3, 10, 8, 6, 0), (3, 10, 8, 6, 0)), (2, 0), 0.0),
    "rest_left": (((2, 3, 5, 2, 0), (12, 6, 12, 20, 0)), (1, -3), 0.0),
    "rest_right": (((12, 6, 12, 20, 0), (2, 3, 5, 2, 0)), (1, 3), 0.0),
    "step_left": (((16, 4, 6, 6, 0), (-8, 4, 8, 6, 0)), (3, 0), 0.0),
    "step_right": (((-8, 4, 8, 6, 0), (16, 4, 6, 6, 0)), (3, 0), 0.0),
    "bow": (((6, 4, 6, 8, 0), (6, 4, 6, 8, 0)), (28, 0), 0.0),
    "crouch": (((40, 10, 10, 65, 0), (40, 10, 10, 65, 0)), (22, 0), 0.0),
    "seat": (((90, 8, 5, 90, 0), (90, 8, 5, 90, 0)), (-2, 0), 1.0),
    "seat_wide": (((88, 16, 10, 86, 0), (88, 16, 10, 86, 0)), (0, 0), 1.0),
    "seat_lean": (((92, 8, 5, 96, 0), (92, 8, 5, 96, 0)), (20, 0), 1.0),
    "seat_back": (((88, 6, 4, 80, 0), (88, 6, 4, 80, 0)), (-12, 0), 1.0),
    "seat_tuck": (((92, 6, 5, 104, 0), (92, 6, 5, 104, 0)), (4, 0), 1.0),
}

# Hand shapes: flexion (deg) of [thumb CMC, MCP, IP; fingers MCP, PIP, DIP] for thumb .. pinky, and finger spread.
_HANDS: dict[str, tuple[np.ndarray, float]] = {
    name: (np.array(flex, dtype=float), spread)
    for name, (flex, spread) in {
        "open": (((0, 5, 5), (3, 3, 2), (3, 3, 2), (3, 3, 2), (3, 3, 2)), 1.5),
        "relaxed": (((10, 15, 10), (15, 25, 10), (20, 30, 12), (25, 35, 15), (30, 35, 15)), 0.8),
        "fist": (((30, 50, 40), (85, 100, 65), (85, 100, 65), (85, 100, 65), (85, 100, 65)), 0.2),
        "grasp": (((25, 30, 20), (55, 60, 35), (55, 60, 35), (55, 60, 35), (55, 60, 35)), 0.4),
        "point": (((25, 40, 30), (0, 0, 0), (80, 100, 60), (80, 100, 60), (80, 100, 60)), 0.5),
        "pinch": (((25, 30, 25), (35, 40, 25), (30, 40, 20), (45, 60, 30), (55, 65, 30)), 0.6),
        "cup": (((15, 10, 5), (35, 25, 15), (35, 25, 15), (35, 25, 15), (35, 25, 15)), 0.5),
    }.items()
}


@dataclass(frozen=True)
class _ArmPose:
    """An arm key pose in the left-side torso frame: wrist target, elbow pole, forearm and wrist angles, hand."""

    target: np.ndarray  # (T, 3) wrist target, mm
    pole: np.ndarray  # (T, 3) or (3,) direction the elbow bends towards
    pron: np.ndarray | float  # forearm pronation, deg (0: palm facing the body with the arm hanging)
    wflex: np.ndarray | float  # wrist flexion towards the palm, deg
    hand: str  # key of _HANDS


@dataclass(frozen=True)
class _ArmContext:
    """What arm poses need, in the left-side torso frame (the right side passes its mirror image)."""

    t: np.ndarray  # (T,) s
    shoulder: np.ndarray  # (3,) mm
    head_c: np.ndarray  # (T, 3) head centre, mm
    head_r: np.ndarray  # (T, 3, 3) head frame
    phase: np.ndarray  # (T,) gait phase of the same-side leg, cycles
    swing: float  # arm swing amplitude in walking, fraction of the arm length
    lean: np.ndarray  # (T, 3, 3) torso lean (pitch, roll) relative to the heading frame


def _arm_pose(name: str, shape: BodyShape, ctx: _ArmContext, rng: np.random.Generator) -> _ArmPose:
    """Build one key arm pose (left-side torso frame) for all frames; random details come from ``rng``."""
    t, s = ctx.t, ctx.shoulder
    a, b = shape.upper_arm, shape.forearm
    arm = a + b
    hs = shape.head_scale
    hw, sw, th = 0.5 * shape.hip_width, 0.5 * shape.shoulder_width, shape.torso

    def rel(v: tuple[float, float, float]) -> np.ndarray:
        return s + np.asarray(v) * arm

    def head(v: tuple[float, float, float]) -> np.ndarray:
        return ctx.head_c + _mv(ctx.head_r, np.asarray(v) * hs)

    def level(v: np.ndarray) -> np.ndarray:  # a point fixed in the heading frame (lap, table), into the torso frame
        return _mv(np.swapaxes(ctx.lean, -1, -2), v)

    def jit(amp: float, f_lo: float = 0.1, f_hi: float = 0.5) -> np.ndarray:
        return np.stack([_sines(rng, t, amp, f_lo, f_hi) for _ in range(3)], axis=-1)

    if name == "hang":
        return _ArmPose(rel((0.05, 0.07, -0.96)) + jit(15.0), np.array([-1.0, 0.15, 0.0]), 5.0, 5.0, "relaxed")
    if name == "bag":
        return _ArmPose(rel((0.03, 0.09, -0.97)) + jit(10.0), np.array([-1.0, 0.15, 0.0]), 0.0, 0.0, "grasp")
    if name == "swing":
        fwd = -np.cos(2.0 * np.pi * (ctx.phase - 0.95))  # left arm back while the left leg is forward
        tgt = rel((0.06, 0.08, -0.95)) + np.stack(
            [fwd * ctx.swing * arm, np.zeros_like(fwd), 30.0 * np.maximum(fwd, 0.0)], axis=-1
        )  # the elbow bends a little more as the arm swings forward
        return _ArmPose(tgt, np.array([-1.0, 0.15, 0.0]), 10.0, 5.0, "relaxed")
    if name == "hip":
        tgt = np.array([-30.0, hw + 0.045 * shape.height, 110.0]) + jit(10.0)
        return _ArmPose(tgt, np.array([-0.6, 1.0, 0.0]), 85.0, 35.0, "open")
    if name == "folded":
        tgt = np.array([170.0, -0.3 * sw, th - 230.0]) + jit(10.0)
        return _ArmPose(tgt, np.array([0.3, 1.0, -1.0]), 80.0, 0.0, "relaxed")
    if name == "behind":
        tgt = np.array([-170.0, 0.3 * sw, 90.0]) + jit(10.0)
        return _ArmPose(tgt, np.array([-0.3, 1.0, 0.0]), 90.0, 0.0, "relaxed")
    if name == "front":
        tgt = rel((0.42, -0.1, -0.42)) + jit(60.0, 0.6, 1.8)
        return _ArmPose(tgt, np.array([-0.3, 0.7, -1.0]), -30.0 + _sines(rng, t, 30.0, 0.2, 0.8), -10.0, "open")
    if name == "cig":
        tgt = rel((0.3, -0.05, -0.6)) + jit(20.0)
        return _ArmPose(tgt, np.array([-0.5, 0.6, -1.0]), -20.0, -15.0, "pinch")
    if name == "wide":
        tgt = rel((0.45, 0.45, -0.3)) + jit(40.0, 0.3, 1.0)
        return _ArmPose(tgt, np.array([0.0, 0.4, -1.0]), -70.0, -10.0, "open")
    if name == "point":
        az = np.deg2rad(25.0 + _sines(rng, t, 25.0, 0.05, 0.2))  # outwards from straight ahead
        el = np.deg2rad(8.0 + _sines(rng, t, 12.0, 0.05, 0.2))
        d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        return _ArmPose(s + 0.97 * arm * d, np.array([0.0, 0.3, -1.0]), 70.0, 0.0, "point")
    if name == "wave":
        f = rng.uniform(1.8, 2.6)
        lat = 0.25 * b * np.sin(2.0 * np.pi * f * t)
        tgt = s + np.stack(
            [np.full_like(t, 0.15 * a + 0.1 * b), 0.9 * a + lat, 0.25 * a + 0.93 * b - 0.3 * np.abs(lat)], axis=-1
        )  # upper arm out to the side, forearm up, the hand swinging side to side
        return _ArmPose(tgt, np.array([0.2, 1.0, -0.7]), -80.0, -10.0, "open")
    if name == "up":
        return _ArmPose(rel((0.12, 0.22, 0.94)) + jit(20.0), np.array([0.0, 1.0, 0.0]), 0.0, 0.0, "open")
    if name == "shake":
        tgt = rel((0.72, -0.06, -0.5)) + np.outer(25.0 * np.sin(2.0 * np.pi * 2.0 * t), [0.0, 0.0, 1.0])
        return _ArmPose(tgt, np.array([-0.3, 0.6, -1.0]), 0.0, 0.0, "grasp")
    if name == "reach":
        return _ArmPose(rel((0.8, 0.0, -0.55)) + jit(60.0, 0.2, 0.6), np.array([-0.2, 0.5, -1.0]), 40.0, -10.0, "open")
    if name == "chest":
        tgt = np.array([280.0, 50.0, th - 170.0]) + jit(25.0)
        return _ArmPose(tgt, np.array([-0.2, 1.0, -1.0]), -50.0, 0.0, "grasp")
    if name == "lap":
        tgt = level(np.array([0.55 * shape.thigh, hw + 10.0, 75.0]) + jit(15.0))
        return _ArmPose(tgt, np.array([-1.0, 0.6, 0.0]), 85.0, -5.0, "relaxed")
    if name == "table":
        tgt = level(np.array([300.0, sw - 10.0, 0.45 * th]) + jit(30.0, 0.2, 0.8))
        return _ArmPose(tgt, np.array([-0.4, 1.0, -0.7]), 60.0, -5.0, "pinch")
    if name == "leash":
        tgt = rel((0.55, 0.12, -0.72)) + jit(60.0, 0.4, 1.5)
        return _ArmPose(tgt, np.array([-1.0, 0.4, -0.3]), 20.0, 0.0, "fist")
    if name == "ear":  # phone at the ear: the wrist below and outside the same-side ear
        return _ArmPose(head((70.0, 90.0, -100.0)), np.array([1.0, 0.5, -1.0]), -30.0, -45.0, "grasp")
    if name == "mouth":  # hand to the mouth: the wrist below and in front of the mouth
        return _ArmPose(head((165.0, 30.0, -130.0)), np.array([0.0, 1.0, -1.5]), -50.0, -30.0, "pinch")
    if name == "camera":  # both hands at the sides of the face, in front of it
        return _ArmPose(head((200.0, 85.0, -70.0)), np.array([0.0, 1.0, -1.0]), -10.0, -40.0, "cup")
    raise ValueError(f"unknown arm pose {name!r}")


# ----------------------------------------------------------------------------------------------------------------
# Action specifications.


@dataclass(frozen=True)
class _Spec:
    """How an action moves; see the module docstring of each field's use in ``_controls``."""

    mode: str  # "stand", "sit", "sitdown" (both, with transitions) or "walk"
    stances: tuple[tuple[str, float, float, float], ...] = ()  # (stance, weight, hold min s, hold max s)
    arms: tuple[tuple[str, str, float, float, float], ...] = ()  # (dominant arm, other arm, weight, hold min, max)
    trans: tuple[float, float] = (0.8, 1.4)  # key-stance blend durations, s
    arm_trans: tuple[float, float] = (1.1, 1.8)  # key arm-pose blend durations, s
    talk: float = 0.3  # share of talking
    smile: float = 0.3
    chew: bool = False
    head_yaw: float = 50.0  # amplitude, deg
    head_pitch: tuple[float, float] = (0.0, 12.0)  # bias and amplitude, deg (positive looks down)
    turn: bool = True  # standing: turn around in steps over the sequence
    speed: tuple[float, float] = (0.8, 1.0)  # walking, m/s
    swing: float = 0.16  # walking arm swing, fraction of the arm length


_STAND = (("neutral", 3, 2, 5), ("wide", 1, 2, 4), ("rest_left", 1.5, 2, 5), ("rest_right", 1.5, 2, 5),
          ("step_left", 1, 1.5, 3), ("step_right", 1, 1.5, 3))
_SEAT = (("seat", 3, 3, 7), ("seat_wide", 1, 2, 5), ("seat_lean", 1.5, 2, 5), ("seat_back", 1, 2, 5),
         ("seat_tuck", 1, 2, 4))

_SPECS: dict[str, _Spec] = {
    "Directions": _Spec("stand", _STAND, (("point", "hang", 3, 1.5, 3.5), ("point", "hip", 1, 1.5, 3),
                                          ("front", "front", 2, 1.5, 3), ("front", "hang", 2, 1.5, 3),
                                          ("hang", "hang", 2, 1.5, 4), ("wide", "wide", 1, 1, 2)), talk=0.6),
    "Discussion": _Spec("stand", _STAND, (("front", "front", 4, 1.5, 3), ("front", "hang", 3, 1.5, 3),
                                          ("wide", "front", 1, 1, 2), ("hip", "hip", 1, 2, 4),
                                          ("folded", "folded", 1, 2, 5), ("hang", "hang", 1, 1.5, 3),
                                          ("point", "front", 1, 1, 2)), talk=0.9, smile=0.4),
    "Greeting": _Spec("stand", _STAND + (("bow", 0.7, 1, 2),), (("wave", "hang", 3, 2, 4), ("shake", "hang", 2, 2, 3),
                                                                ("wide", "wide", 2, 1, 2), ("hang", "hang", 2, 1.5, 3),
                                                                ("front", "front", 1, 1.5, 3)), talk=0.6, smile=0.9),
    "Phoning": _Spec("stand", _STAND, (("ear", "hang", 4, 4, 9), ("ear", "hip", 2, 4, 8), ("ear", "front", 2, 3, 6),
                                       ("ear", "folded", 1, 4, 8), ("chest", "hang", 0.6, 1, 2)), talk=0.9),
    "Photo": _Spec("stand", (("neutral", 3, 2, 5), ("wide", 2, 2, 4), ("crouch", 0.7, 2, 3), ("step_left", 1, 2, 3),
                             ("step_right", 1, 2, 3)),
                   (("camera", "camera", 4, 2, 5), ("chest", "chest", 1.5, 1, 2.5), ("hang", "hang", 0.5, 1, 2)),
                   talk=0.1, head_yaw=20.0, head_pitch=(0.0, 8.0)),
    "Posing": _Spec("stand", _STAND + (("bow", 0.5, 2, 3), ("crouch", 0.5, 2, 3)),
                    (("hip", "hip", 2, 2.5, 5), ("up", "hang", 1, 2.5, 4), ("up", "up", 1, 2.5, 4),
                     ("wide", "wide", 1, 2.5, 4), ("folded", "folded", 1, 2.5, 5), ("behind", "behind", 1, 2.5, 5),
                     ("point", "hip", 1, 2.5, 4), ("hip", "hang", 1, 2.5, 5)), trans=(1.0, 1.8), talk=0.1,
                    smile=0.8, head_yaw=40.0, head_pitch=(-3.0, 12.0)),
    "Purchases": _Spec("stand", _STAND + (("bow", 0.6, 1, 2),),
                       (("reach", "bag", 2, 1.5, 3), ("chest", "bag", 2, 2, 4), ("hang", "bag", 2, 2, 4),
                        ("chest", "chest", 1, 2, 4)), talk=0.3, head_pitch=(10.0, 12.0)),
    "Waiting": _Spec("stand", (("rest_left", 2, 3, 7), ("rest_right", 2, 3, 7), ("neutral", 1, 3, 6),
                               ("wide", 1, 3, 6)),
                     (("hip", "hip", 2, 3, 7), ("folded", "folded", 2, 3, 8), ("hang", "hang", 2, 3, 7),
                      ("behind", "behind", 1, 3, 7), ("hip", "hang", 1, 3, 6)), talk=0.05, head_yaw=60.0),
    "Smoking": _Spec("stand", (("rest_left", 2, 3, 6), ("rest_right", 2, 3, 6), ("neutral", 1, 3, 6)),
                     (("mouth", "folded", 2, 1, 2), ("cig", "folded", 2, 2, 5), ("cig", "hang", 2, 2, 5),
                      ("mouth", "hang", 2, 1, 2), ("cig", "hip", 1, 2, 5)), talk=0.1),
    "Eating": _Spec("sit", (("seat", 2, 3, 7), ("seat_lean", 2, 3, 7)),
                    (("mouth", "table", 2, 1, 2), ("table", "table", 2, 2, 4), ("mouth", "lap", 1, 1, 2),
                     ("table", "lap", 1, 2, 4)), talk=0.2, chew=True, head_yaw=30.0, head_pitch=(12.0, 10.0),
                    turn=False),
    "Sitting": _Spec("sit", _SEAT, (("lap", "lap", 3, 3, 7), ("front", "lap", 2, 2, 4), ("front", "front", 2, 2, 4),
                                    ("folded", "folded", 1, 3, 6), ("chest", "lap", 1, 2, 5)),
                     talk=0.4, head_yaw=65.0, head_pitch=(5.0, 15.0), turn=False),
    "SittingDown": _Spec("sitdown", (("neutral", 2, 2, 4), ("rest_left", 1, 2, 4), ("seat", 1.5, 3, 6),
                                     ("seat_lean", 1, 2, 5), ("seat_back", 1, 2, 5)),
                         (("hang", "hang", 2, 2, 4), ("front", "front", 1, 2, 3), ("lap", "lap", 1.5, 3, 5),
                          ("folded", "folded", 1, 3, 5)), trans=(1.4, 2.2), talk=0.2, turn=False),
    "Walking": _Spec("walk", arms=(("swing", "swing", 1, 1, 2),), talk=0.1, head_yaw=25.0, head_pitch=(5.0, 8.0)),
    "WalkDog": _Spec("walk", arms=(("leash", "swing", 1, 1, 2),), talk=0.1, head_yaw=30.0, head_pitch=(15.0, 10.0),
                     speed=(0.7, 0.95)),
    "WalkTogether": _Spec("walk", arms=(("swing", "swing", 1, 1, 2),), talk=0.7, head_yaw=20.0,
                          head_pitch=(3.0, 6.0), speed=(0.7, 0.9), swing=0.09),
}

#: Posture of each action: "stand", "sit", "sitdown" (standing and sitting with transitions) or "walk".
ACTION_POSTURE: dict[str, str] = {name: spec.mode for name, spec in _SPECS.items()}


# ----------------------------------------------------------------------------------------------------------------
# Kinematics.


def _leg(shape: BodyShape, ang: np.ndarray, foot_pts: np.ndarray, sole: np.ndarray) -> tuple[np.ndarray, ...]:
    """Left-leg forward kinematics in the heading frame, relative to the hip joint.

    Args:
        shape: the subject.
        ang: (T, 5) deg [hip flexion, abduction, rotation, knee flexion, foot pitch].
        foot_pts: (3, 3) foot keypoints in the foot frame, mm.
        sole: (3, 3) their floor contacts in the foot frame, mm.

    Returns:
        knee (T, 3), ankle (T, 3), foot keypoints (T, 3, 3), sole points (T, 3, 3), mm.
    """
    r_thigh = _mm(_mm(_rot(1, -ang[:, 0]), _rot(0, ang[:, 1])), _rot(2, ang[:, 2]))  # (T, 3, 3)
    knee = -shape.thigh * r_thigh[:, :, 2]
    r_shin = _mm(r_thigh, _rot(1, np.clip(ang[:, 3], 0.0, 150.0)))
    ankle = knee - shape.shin * r_shin[:, :, 2]
    r_foot = _mm(_rot(2, ang[:, 2]), _rot(1, ang[:, 4]))  # the foot follows the leg's rotation, pitch to the floor
    feet = ankle[:, None, :] + _mv(r_foot[:, None], foot_pts[None])  # (T, 3, 3)
    soles = ankle[:, None, :] + _mv(r_foot[:, None], sole[None])
    return knee, ankle, feet, soles


def _gait(phase: np.ndarray) -> np.ndarray:
    """Leg angles (T, 5) of one leg over the gait cycle (phase 0 = heel strike), deg, as for ``_leg``."""
    hip = 9.0 + 21.0 * np.cos(2.0 * np.pi * (phase - 0.95))
    knee = 4.0 + 14.0 * _bump(phase, 0.12, 10.0) + 52.0 * _bump(phase, 0.71, 2.2)
    foot = -14.0 * _bump(phase, 0.0, 16.0) + 28.0 * _bump(phase, 0.62, 10.0) - 4.0 * _bump(phase, 0.85, 6.0)
    return np.stack([hip, np.full_like(phase, 4.0), np.full_like(phase, 6.0), knee, foot], axis=-1)


def _arm_ik(
    shoulder: np.ndarray, target: np.ndarray, pole: np.ndarray, a: float, b: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analytic two-bone IK: elbow and wrist reaching towards ``target``, the elbow bent towards ``pole``.

    Args:
        shoulder: (3,) shoulder joint, mm.
        target: (T, 3) wrist target, mm (clamped to the reach of the elbow's flexion range).
        pole: (T, 3) direction the elbow bends towards.
        a: upper-arm length, mm.
        b: forearm length, mm.

    Returns:
        elbow (T, 3), wrist (T, 3) mm, and the forearm frame (T, 3, 3) (columns x, y, z; z from the wrist to the
        elbow, y the normal of the arm plane), which is the identity for an arm hanging with the elbow behind.
    """
    d_vec = target - shoulder
    d = _norm(d_vec)
    u = d_vec / np.maximum(d, 1e-9)[:, None]
    lo, hi = np.deg2rad(180.0 - np.array(_ELBOW_FLEX[::-1]))  # interior elbow angles
    d_min, d_max = np.sqrt(a * a + b * b - 2 * a * b * np.cos(lo)), np.sqrt(a * a + b * b - 2 * a * b * np.cos(hi))
    dc = np.clip(d, d_min, d_max)
    cos_al = np.clip((a * a + dc * dc - b * b) / (2.0 * a * dc), -1.0, 1.0)
    sin_al = np.sqrt(1.0 - cos_al * cos_al)
    v = pole - _dot(pole, u)[:, None] * u
    fallback = np.array([0.0, 0.0, -1.0]) - u[:, 2:3] * u  # bend downwards where the pole is along the arm
    bad = _norm(v)[:, None] < 1e-3
    v = _normalize(np.where(bad, fallback + np.array([-1e-3, 0.0, 0.0]), v))
    elbow = shoulder + a * (cos_al[:, None] * u + sin_al[:, None] * v)
    wrist = shoulder + dc[:, None] * u
    z = (elbow - wrist) / b
    y = np.cross(u, v)
    x = np.cross(y, z)
    return elbow, wrist, np.stack([x, y, z], axis=-1)


def _hand(
    tmpl: HandTemplate, wrist: np.ndarray, r_hand: np.ndarray, flex: np.ndarray, spread: np.ndarray
) -> np.ndarray:
    """Left-hand forward kinematics: (T, 21, 3) root, thumb 1-4, index 1-4, ... pinky 1-4 (COCO order), mm.

    Args:
        tmpl: the hand geometry.
        wrist: (T, 3) body wrist keypoint, mm.
        r_hand: (T, 3, 3) hand frame (columns x, y, z).
        flex: (T, 5, 3) joint flexions, deg, thumb to pinky.
        spread: (T,) finger fan factor (1 = :data:`~build_h3wb.synthetic.body.FINGER_SPREAD_DEG`).
    """
    root = wrist - tmpl.root_offset * r_hand[:, :, 2]  # (T, 3)
    base = root[:, None, :] + _mv(r_hand[:, None], tmpl.base[None])  # (T, 5, 3)
    r = _mm(_mm(r_hand[:, None], _rot(1, tmpl.spread_deg * spread[:, None])), tmpl.base_rot)  # (T, 5, 3, 3)
    pts = [base]
    for k in range(flex.shape[-1]):
        r = _mm(r, _rot(0, -flex[:, :, k]))  # flexion curls towards the palm (-y)
        pts.append(pts[-1] - tmpl.segments[:, k][None, :, None] * r[..., :, 2])
    fingers = np.stack(pts, axis=2).reshape(len(root), -1, 3)  # (T, 20, 3)
    return np.concatenate([root[:, None, :], fingers], axis=1)


def _head_frame(shape: BodyShape, head_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head centre (T, 3) mm and head frame (T, 3, 3) in the torso frame from head [yaw, pitch, roll] (T, 3) deg."""
    neck_base = np.array([-20.0, 0.0, shape.torso + 15.0])
    r_neck = _ypr(0.4 * head_deg[:, 0], 0.5 * head_deg[:, 1], 0.5 * head_deg[:, 2])
    r_head = _ypr(head_deg[:, 0], head_deg[:, 1], head_deg[:, 2])
    centre = neck_base + shape.neck * r_neck[:, :, 2] + _mv(r_head, np.array([8.0, 0.0, shape.head_offset]))
    return centre, r_head


# ----------------------------------------------------------------------------------------------------------------
# Sequence controls and posing.


@dataclass(frozen=True)
class _Controls:
    """All time-varying controls of a sequence (T frames); angles in degrees, positions in mm."""

    heading: np.ndarray  # (T,) yaw of the legs' heading frame
    torso: np.ndarray  # (T, 3) torso [yaw relative to the heading, pitch, roll]
    legs: np.ndarray  # (T, 2, 5) left, right leg angles as for _leg
    path_xy: np.ndarray | None  # (T, 2) world mid-hip when walking, else None
    anchor_xy: np.ndarray  # (T, 2) world point between the ankles when not walking
    head: np.ndarray  # (T, 3) head [yaw, pitch, roll] relative to the torso
    jaw: np.ndarray  # (T,)
    smile: np.ndarray  # (T,) 0..1
    arms: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # left, right: target, pole, pron, wflex, flex, spread


def _walk_path(
    rng: np.random.Generator, t: np.ndarray, spec: _Spec, shape: BodyShape, center: np.ndarray, half: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed walking path inside the box: mid-hip xy (T, 2) mm, heading (T,) deg, gait phase (T,) cycles."""
    margin = 0.42 * shape.height
    avail = np.maximum(half - margin, 300.0)  # (2,) room for the mid-hip in x and y
    u0, direction = rng.uniform(0.0, 2.0 * np.pi), rng.choice([-1.0, 1.0])
    # An ellipse; its axis ratio is kept >= 0.6 so that the tightest turn has a radius >= 0.6 of the smaller axis.
    ax = avail * rng.uniform(0.8, 1.0, 2)
    ax = np.minimum(ax, np.min(ax) / 0.6)
    speed = rng.uniform(*spec.speed) * 1000.0
    uu = np.linspace(0.0, 2.0 * np.pi, 256, endpoint=False)
    mean_rate = np.mean(np.hypot(ax[0] * np.sin(uu), ax[1] * np.cos(uu)))  # mm per radian of u
    w_var, ph_var = rng.uniform(0.1, 0.3), rng.uniform(0.0, 2.0 * np.pi)
    # u(t) = u0 + w t + (0.08 w / w_var) sin(w_var t): the speed varies by +-8 % around the mean.
    rate = direction * speed / mean_rate
    u = u0 + rate * t + 0.08 * rate / w_var * np.sin(w_var * t + ph_var)
    xy = np.stack([ax[0] * np.cos(u), ax[1] * np.sin(u)], axis=-1)
    dxy = np.stack([-ax[0] * np.sin(u), ax[1] * np.cos(u)], axis=-1)
    heading = np.rad2deg(np.arctan2(direction * dxy[:, 1], direction * dxy[:, 0]))
    # Cadence so that the stance foot roughly keeps pace with the ground (hip swing -12..30 deg).
    excursion = (shape.thigh + shape.shin) * (np.sin(np.deg2rad(30.0)) + np.sin(np.deg2rad(12.0)))
    cadence = np.clip(0.6 * speed / excursion, 0.75, 1.0)
    phase = np.mod(cadence * t + rng.uniform(), 1.0)
    return center + xy, heading, phase


def _controls(
    spec: _Spec, rng: np.random.Generator, t: np.ndarray, shape: BodyShape, center: np.ndarray, half: np.ndarray
) -> _Controls:
    """Draw a sequence's random parameters from ``rng`` and evaluate all controls at times t (T,) s."""
    n = len(t)
    dominant = int(rng.integers(2))  # 0: left-handed this sequence, 1: right-handed
    phase = np.zeros((n, 2))
    path_xy = None
    torso = np.zeros((n, 3))
    if spec.mode == "walk":
        path_xy, heading, ph = _walk_path(rng, t, spec, shape, center, half)
        phase = np.stack([ph, np.mod(ph + 0.5, 1.0)], axis=-1)
        legs = np.stack([_gait(phase[:, 0]), _gait(phase[:, 1])], axis=1)
        torso[:, 0] = 4.0 * np.sin(2.0 * np.pi * ph)
        torso[:, 1] = 4.0 + 1.5 * np.cos(4.0 * np.pi * ph)
        torso[:, 2] = 2.5 * np.cos(2.0 * np.pi * ph)
        anchor = path_xy
    else:
        names = [s[0] for s in spec.stances]
        sched = _schedule(rng, np.array([s[1] for s in spec.stances]), np.array([s[2:] for s in spec.stances]),
                          spec.trans)
        w = sched.weights(t, len(names))  # (T, P)
        legs = _wsum(w, np.array([_STANCES[k][0] for k in names]))  # (T, 2, 5)
        torso_pr = _wsum(w, np.array([_STANCES[k][1] for k in names]))  # (T, 2)
        sit = _wsum(w, np.array([_STANCES[k][2] for k in names]))  # (T,)
        torso[:, 1] = torso_pr[:, 0] + 140.0 * sit * (1.0 - sit) + _sines(rng, t, 2.0, 0.05, 0.3)
        torso[:, 2] = torso_pr[:, 1] + _sines(rng, t, 2.0, 0.05, 0.3)
        torso[:, 0] = _sines(rng, t, 6.0, 0.05, 0.3)
        legs[:, :, 0] += _sines(rng, t, 2.0, 0.1, 0.4)[:, None] * (1.0 - sit[:, None])
        wander = np.maximum(np.min(half) - 0.58 * shape.height, 0.0)
        b0 = rng.uniform(-0.5, 0.5, 2) * wander
        amp = 0.0 if (spec.mode != "stand") else 0.8 * (wander - np.abs(b0))
        anchor = center + b0 + np.stack([_sines(rng, t, 1.0, 0.01, 0.05), _sines(rng, t, 1.0, 0.01, 0.05)], -1) * amp
        yaw0 = rng.uniform(-180.0, 180.0)
        if spec.turn:
            period, dur = rng.uniform(5.0, 9.0), rng.uniform(1.3, 2.0)
            step = rng.uniform(70.0, 130.0) * rng.choice([-1.0, 1.0])
            x = (t + rng.uniform(0.0, period)) / period
            k = np.floor(x)
            heading = yaw0 + step * (k + _smoothstep(((x - k) * period - (period - dur)) / dur))
            heading = heading + _sines(rng, t, 10.0, 0.05, 0.2)
        else:
            heading = yaw0 + _sines(rng, t, 6.0, 0.02, 0.1)

    head = np.stack([_sines(rng, t, spec.head_yaw, 0.04, 0.25),
                     spec.head_pitch[0] + _sines(rng, t, spec.head_pitch[1], 0.05, 0.3),
                     _sines(rng, t, 6.0, 0.05, 0.3)], axis=-1)
    if spec.mode == "walk" and spec.talk > 0.5:  # walking together: look at the companion now and then
        head[:, 0] = np.clip(head[:, 0] + 30.0 * rng.choice([-1.0, 1.0]), -70.0, 70.0)
    talk_w = _schedule(rng, np.array([1.0 - spec.talk + 1e-3, spec.talk + 1e-3]), np.array([[1.0, 4.0], [1.0, 5.0]]),
                       (0.3, 0.8)).weights(t, 2)[:, 1]
    syll = 0.5 + 0.5 * np.sin(2.0 * np.pi * rng.uniform(3.5, 5.0) * t + 1.5 * np.sin(2.0 * np.pi * 0.9 * t))
    jaw = 14.0 * talk_w * syll
    if spec.chew:
        jaw = jaw + 6.0 * (0.5 + 0.5 * np.sin(2.0 * np.pi * rng.uniform(1.2, 1.7) * t)) * (1.0 - talk_w)
    smile = spec.smile * np.clip(0.5 + _sines(rng, t, 0.7, 0.03, 0.15), 0.0, 1.0)

    arms = _arm_controls(spec, rng, t, shape, head, phase, dominant, _ypr(0.0 * t, torso[:, 1], torso[:, 2]))
    return _Controls(heading, torso, legs, path_xy, anchor, head, jaw, smile, arms)


def _arm_controls(
    spec: _Spec, rng: np.random.Generator, t: np.ndarray, shape: BodyShape, head: np.ndarray, phase: np.ndarray,
    dominant: int, lean: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Blend the action's arm key poses per side (left-side torso frame): see ``_Controls.arms``."""
    head_c, head_r = _head_frame(shape, head)
    w_pair = _schedule(rng, np.array([p[2] for p in spec.arms]), np.array([p[3:] for p in spec.arms]),
                       spec.arm_trans).weights(t, len(spec.arms))  # (T, pairs)
    shoulder = np.array([-10.0, 0.5 * shape.shoulder_width, shape.torso])
    out = []
    for k, side in enumerate(_SIDES):
        mirror = np.diag(_MIRROR) if side == "right" else np.eye(3)
        ctx = _ArmContext(t, shoulder, head_c * _MIRROR if side == "right" else head_c,
                          _mm(_mm(mirror, head_r), mirror), phase[:, k], spec.swing, _mm(_mm(mirror, lean), mirror))
        col = 0 if k == dominant else 1  # which entry of each pair this arm plays
        names = sorted({p[col] for p in spec.arms})
        w = np.zeros((len(t), len(names)))  # (T, poses)
        for i, p in enumerate(spec.arms):
            w[:, names.index(p[col])] += w_pair[:, i]
        poses = [_arm_pose(nm, shape, ctx, rng) for nm in names]
        target = _blend_targets(shoulder, [p.target for p in poses], w)
        pole = sum(w[:, i, None] * _normalize(np.broadcast_to(p.pole, (len(t), 3))) for i, p in enumerate(poses))
        pron = sum(w[:, i] * p.pron for i, p in enumerate(poses))
        wflex = sum(w[:, i] * p.wflex for i, p in enumerate(poses))
        flex = _wsum(w, np.array([_HANDS[p.hand][0] for p in poses]))  # (T, 5, 3)
        spread = _wsum(w, np.array([_HANDS[p.hand][1] for p in poses]))  # (T,)
        fid = 4.0 * np.sin(2.0 * np.pi * t[:, None, None] * rng.uniform(0.1, 0.5, (5, 3)) + rng.uniform(0, 6.3, (5, 3)))
        flex = np.clip(flex + fid, *_FINGER_FLEX)
        out.append(dict(target=target, pole=pole, pron=np.broadcast_to(pron, t.shape),
                        wflex=np.broadcast_to(wflex, t.shape), flex=flex, spread=spread))
    return out[0], out[1]


def _blend_targets(shoulder: np.ndarray, targets: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Blend wrist targets (each (T, 3) or (3,)) with weights w (T, P) of which at most two are non-zero per frame.

    The distance from the shoulder is interpolated linearly and the direction along the great circle (slerp), so
    the wrist swings around the shoulder rather than through it; returns (T, 3) mm.
    """
    n = len(w)
    if len(targets) == 1:
        return np.broadcast_to(targets[0], (n, 3)).copy()
    rel = np.stack([np.broadcast_to(p, (n, 3)) - shoulder for p in targets], axis=1)  # (T, P, 3)
    dist = _norm(rel)  # (T, P)
    unit = rel / dist[..., None]
    order = np.argsort(-w, axis=1, kind="stable")[:, :2]  # the two poses being blended
    rows = np.arange(n)[:, None]
    w2 = w[rows, order]  # (T, 2)
    s = w2[:, 1] / np.maximum(w2[:, 0] + w2[:, 1], 1e-12)
    u1, u2 = unit[rows[:, 0], order[:, 0]], unit[rows[:, 0], order[:, 1]]  # (T, 3)
    cos_om = np.clip(_dot(u1, u2), -1.0, 1.0)
    perp = u2 - cos_om[:, None] * u1
    side = np.array([0.6, 0.6, -0.5]) - _dot(np.array([0.6, 0.6, -0.5]), u1)[:, None] * u1
    perp = np.where(_norm(perp)[:, None] < 1e-6, side, perp)  # opposite or equal
    om = np.arccos(cos_om) * s
    direction = np.cos(om)[:, None] * u1 + np.sin(om)[:, None] * _normalize(perp)
    dist_blend = w2[:, 0] * dist[np.arange(n), order[:, 0]] + w2[:, 1] * dist[np.arange(n), order[:, 1]]
    return shoulder + direction * dist_blend[:, None]


def _pose(shape: BodyShape, c: _Controls) -> np.ndarray:
    """World keypoints (T, J, 3) mm from the controls (feet on the floor, root placed, before the box check)."""
    n = len(c.heading)
    kp = np.zeros((n, skeleton.NUM_KEYPOINTS, 3))  # torso-frame upper body first, world-relative legs after
    hw, sw, th = 0.5 * shape.hip_width, 0.5 * shape.shoulder_width, shape.torso

    # Head: rigid face points and the jaw/mouth in the head frame.
    head_c, head_r = _head_frame(shape, c.head)
    body_h, face_h = head_points(shape, c.jaw, c.smile)
    kp[:, _IDX_HEAD_BODY] = head_c[:, None] + _mv(head_r[:, None], body_h)
    kp[:, skeleton.PARTS["face"]] = head_c[:, None] + _mv(head_r[:, None], face_h)

    # Arms and hands, left-side frame, mirrored back for the right side.
    tmpl = hand_template(shape)
    shoulder = np.array([-10.0, sw, th])
    for side, arm in zip(_SIDES, c.arms):
        elbow, wrist, r_fa = _arm_ik(shoulder, arm["target"], arm["pole"], shape.upper_arm, shape.forearm)
        r_hand = _mm(_mm(r_fa, _rot(2, -arm["pron"])), _rot(0, -arm["wflex"]))
        hand = _hand(tmpl, wrist, r_hand, arm["flex"], arm["spread"])
        m = _MIRROR if side == "right" else 1.0
        idx = _IDX_LIMB[side]
        kp[:, idx["shoulder"]] = shoulder * m
        kp[:, idx["elbow"]] = elbow * m
        kp[:, idx["wrist"]] = wrist * m
        kp[:, skeleton.PARTS[f"{side}_hand"]] = hand * m

    # Torso frame to world orientation (position added below).
    r_torso = _ypr(c.heading + c.torso[:, 0], c.torso[:, 1], c.torso[:, 2])
    kp = _mv(r_torso[:, None], kp)
    r_heading = _rot(2, c.heading)

    # Legs in the heading frame, hung from the hips of the (leaning) torso.
    foot_pts, sole_pts = foot_template(shape)
    soles = []
    ankles = []
    for k, side in enumerate(_SIDES):
        m = _MIRROR if side == "right" else np.ones(3)
        hip = _mv(r_torso, np.array([0.0, hw, 0.0]) * m)  # (T, 3)
        knee, ankle, feet, sole = _leg(shape, c.legs[:, k], foot_pts, sole_pts)
        idx = _IDX_LIMB[side]
        kp[:, idx["hip"]] = hip
        kp[:, idx["knee"]] = hip + _mv(r_heading, knee * m)
        kp[:, idx["ankle"]] = hip + _mv(r_heading, ankle * m)
        kp[:, _IDX_FOOT[side]] = hip[:, None] + _mv(r_heading[:, None], feet * m)
        soles.append(hip[:, None] + _mv(r_heading[:, None], sole * m))
        ankles.append(kp[:, idx["ankle"]])

    # Root: feet on the floor; horizontally on the walking path, else the ankles stay at the anchor.
    z = -np.min(np.concatenate(soles, axis=1)[:, :, 2], axis=1)  # (T,)
    xy = c.path_xy if c.path_xy is not None else c.anchor_xy - 0.5 * (ankles[0][:, :2] + ankles[1][:, :2])
    return kp + np.concatenate([xy, z[:, None]], axis=-1)[:, None, :]


def _keep_in_box(kp: np.ndarray, center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Shift each frame horizontally (as little as possible) so the whole body lies inside center +- half."""
    lo, hi = kp[..., :2].min(axis=1), kp[..., :2].max(axis=1)  # (T, 2)
    shift = np.maximum(center - half - lo, 0.0) - np.maximum(hi - (center + half), 0.0)
    too_big = hi - lo > 2.0 * half
    shift = np.where(too_big, center - 0.5 * (lo + hi), shift)
    return kp + np.concatenate([shift, np.zeros((len(kp), 1))], axis=-1)[:, None, :]


def generate_motion(
    subject: str,
    action: str,
    times_s: np.ndarray,
    *,
    seed: int = 0,
    center_xy_mm: tuple[float, float] = (0.0, 0.0),
    half_extent_xy_mm: tuple[float, float] = (1500.0, 1500.0),
) -> np.ndarray:
    """World keypoints (T, J, 3) float64 millimetres, world z up, floor at z = 0, for the frames at times_s (T,) s.

    The pose at time t depends only on (subject, action, seed, t): frames can be generated in any chunks. The body
    is :func:`~build_h3wb.synthetic.body.subject_shape` ``(subject, seed)``; the whole body stays inside the
    capture box ``center_xy_mm +- half_extent_xy_mm`` in x and y (a box smaller than the body centres it instead).

    Args:
        subject: subject name, e.g. "S1".
        action: one of :data:`ACTIONS`.
        times_s: (T,) frame times in seconds (any finite values, any order).
        seed: dataset seed.
        center_xy_mm: centre of the capture box on the floor, world mm.
        half_extent_xy_mm: half sizes of the capture box in x and y, mm (positive).

    Returns:
        (T, J, 3) world millimetres, J = ``skeleton.NUM_KEYPOINTS``, COCO-WholeBody order.

    Raises:
        ValueError: unknown action, times not a finite 1-D array, or a non-positive box size.
    """
    if action not in _SPECS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    t = np.asarray(times_s, dtype=float)
    if t.ndim != 1 or not np.all(np.isfinite(t)):
        raise ValueError(f"times_s must be a finite 1-D array (T,), got shape {t.shape}")
    center = np.asarray(center_xy_mm, dtype=float)
    half = np.asarray(half_extent_xy_mm, dtype=float)
    if center.shape != (2,) or half.shape != (2,) or np.any(half <= 0):
        raise ValueError(
            f"expected center (2,) and positive half extents (2,), got {center_xy_mm}, {half_extent_xy_mm}"
        )
    shape = subject_shape(subject, seed)
    rng = np.random.default_rng(stable_seed("motion", seed, subject, action))
    controls = _controls(_SPECS[action], rng, t, shape, center, half)
    return _keep_in_box(_pose(shape, controls), center, half)
