"""A simulated 2D whole-body detector that fails the way real ones do, for the synthetic capture.

From the ground-truth 3D keypoints and the camera it produces what a real detector would: pixel coordinates with
part-dependent noise, scores that fall as the noise rises, and these failures (each configurable):

- out of frame: keypoints outside the image are not found;
- self-occlusion of the face: the face is not found when it turns away from the camera, and a landmark whose
  outward normal (from the head centre) turns away is hidden, so a profile view loses the far side;
- occlusion by the body: keypoints behind the torso, the head or a limb (capsules around the bones), and finger
  keypoints behind the palm (a disc through the knuckles), are hidden; an occluded keypoint is either not
  reported or, with a per-part probability, reported as a lower-confidence guess with extra noise, as heat-map
  detectors do (by default body joints 97%, hands 85%, face landmarks 60% of the time);
- whole-part failures: a hand or the face goes undetected in a view (small, blurred or cut off);
- random misses per part; gross outliers that keep a confident score, of single keypoints or of a whole part
  found at the wrong place; left/right swaps of the whole body or of the two hands in one view;
- plausible but wrong limbs in unusual poses (an arm raised above the shoulder or crossed over the body's midline,
  a lunge): in such a frame a limb is, with some probability, found bent or turned a little wrong in several views
  at once, as real detectors do when a limb is ambiguous. The wrong limb is the true one turned about its proximal
  joint (the whole limb about the shoulder or hip, or the distal segment about the elbow or knee) by a turn shared
  by all views; in each view (independently, with ``limb_fault_view_prob``) it is drawn 15-60 px off at its end,
  still confident. These errors are small enough to pass a fixed pixel threshold in some views and large enough
  to bend the 3D limb, and they agree partly across views, so no view set is clean.

Pixel quantities (noise, outlier and fault sizes) are given at Human3.6M's scale (a person about 450 px tall);
``pixel_scale`` multiplies them for rigs where the person is larger in the image.

The output has the common detection format: (B, J, 3) float32 [x, y, score] in pixels, NaN where not found.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import Camera
from build_h3wb.sources.base import FrameBatch

_PART_NAMES = ("body", "feet", "face", "left_hand", "right_hand")
_idx = skeleton.index

# Capsules that hide what is behind them: (name, endpoint a, endpoint b) as keypoint names or pairs to average.
_LIMBS = (
    ("left_upper_arm", "left_shoulder", "left_elbow"),
    ("right_upper_arm", "right_shoulder", "right_elbow"),
    ("left_forearm", "left_elbow", "left_wrist"),
    ("right_forearm", "right_elbow", "right_wrist"),
    ("left_thigh", "left_hip", "left_knee"),
    ("right_thigh", "right_hip", "right_knee"),
    ("left_shin", "left_knee", "left_ankle"),
    ("right_shin", "right_knee", "right_ankle"),
)


def _stable_int(*parts: Any) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def _occluder_exclusions() -> np.ndarray:
    """(J, K) bool: keypoint j is never tested against occluder k (it is part of it, or handled elsewhere)."""
    J = skeleton.NUM_KEYPOINTS
    K = 2 + len(_LIMBS)  # torso, head, limbs
    excl = np.zeros((J, K), dtype=bool)
    torso = [_idx(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
    excl[torso, 0] = True
    head = [_idx(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
    excl[head, :2] = True  # the head is judged by its normals and sits above the torso
    excl[skeleton.PARTS["face"], :2] = True
    for k, (name, a, b) in enumerate(_LIMBS, start=2):
        excl[[_idx(a), _idx(b)], k] = True
        if name.endswith("forearm"):  # a hand hides behind its own forearm only when seen along it: ignored
            excl[skeleton.PARTS[name.split("_")[0] + "_hand"], k] = True
    return excl


class SimulatedDetector:
    """Simulated whole-body detector (see the module docstring).

    Every setting is documented, with its default, in ``build_h3wb.config.SimulatedDetectorConfig``; build one with
    ``hydra.utils.instantiate`` or :func:`default_simulated_detector`.
    """

    name = "simulated"
    parallel_videos = True  # cheap to make, one thread: the detect stage may share videos among processes

    def __init__(
        self,
        *,
        seed: int,
        noise_px: Mapping[str, float],
        noise_spread_part: float,
        noise_spread: float,
        score_scale_px: float,
        base_score: float,
        miss_prob: Mapping[str, float],
        part_miss_prob: Mapping[str, float],
        occluded_report_prob: Mapping[str, float],
        occluded_score_factor: float,
        occluded_noise_factor: float,
        face_min_cos: float,
        face_part_min_cos: float,
        torso_radius_mm: float,
        limb_radius_mm: float,
        head_radius_mm: float,
        outlier_prob: Mapping[str, float],
        part_outlier_prob: Mapping[str, float],
        swap_prob: float,
        hand_swap_prob: float,
        edge_margin_px: float,
        limb_fault_prob: float,
        limb_fault_view_prob: float,
        limb_fault_px: tuple[float, float],
        pixel_scale: float,
    ) -> None:
        self.seed = int(seed)
        self.noise_px = self._per_part("noise_px", noise_px, default=3.0)
        self.miss_prob = self._per_part("miss_prob", miss_prob, default=0.0)
        self.part_miss_prob = self._per_part("part_miss_prob", part_miss_prob, default=0.0)
        self.occluded_report_prob = self._per_part("occluded_report_prob", occluded_report_prob, default=0.0)
        self.occluded_score_factor = float(occluded_score_factor)
        self.occluded_noise_factor = float(occluded_noise_factor)
        self.noise_spread_part = float(noise_spread_part)
        self.noise_spread = float(noise_spread)
        self.score_scale_px = float(score_scale_px)
        self.base_score = float(base_score)
        self.face_min_cos = float(face_min_cos)
        self.face_part_min_cos = float(face_part_min_cos)
        self.radii = np.array([torso_radius_mm, head_radius_mm] + [limb_radius_mm] * len(_LIMBS), dtype=np.float64)
        self.outlier_prob = self._per_part("outlier_prob", outlier_prob, default=0.0)
        self.part_outlier_prob = self._per_part("part_outlier_prob", part_outlier_prob, default=0.0)
        self.swap_prob = float(swap_prob)
        self.hand_swap_prob = float(hand_swap_prob)
        self.edge_margin_px = float(edge_margin_px)
        self.limb_fault_prob = float(limb_fault_prob)
        self.limb_fault_view_prob = float(limb_fault_view_prob)
        self.limb_fault_px = (float(limb_fault_px[0]), float(limb_fault_px[1]))
        self.pixel_scale = float(pixel_scale)
        if not self.pixel_scale > 0 or not 0 <= self.limb_fault_px[0] <= self.limb_fault_px[1]:
            raise ValueError("detector.pixel_scale must be > 0 and detector.limb_fault_px a range [low, high]")
        self._part_ids = skeleton.part_ids()  # (J,)
        self._excl = _occluder_exclusions()  # (J, K)

    @staticmethod
    def _per_part(what: str, values: Mapping[str, float], default: float) -> np.ndarray:
        unknown = set(values) - set(_PART_NAMES)
        if unknown:
            raise ValueError(f"detector.{what}: unknown part(s) {sorted(unknown)}; parts are {_PART_NAMES}")
        return np.array([float(values.get(p, default)) for p in _PART_NAMES])

    def describe(self) -> dict[str, Any]:
        """Settings that determine the detections."""
        return {
            "detector": self.name,
            "version": 2,  # 2: one random stream per frame (1: per batch)
            "seed": self.seed,
            "noise_px": dict(zip(_PART_NAMES, self.noise_px.tolist())),
            "miss_prob": dict(zip(_PART_NAMES, self.miss_prob.tolist())),
            "part_miss_prob": dict(zip(_PART_NAMES, self.part_miss_prob.tolist())),
            "occluded_report_prob": dict(zip(_PART_NAMES, self.occluded_report_prob.tolist())),
            "occluded_score_factor": self.occluded_score_factor,
            "occluded_noise_factor": self.occluded_noise_factor,
            "noise_spread_part": self.noise_spread_part,
            "noise_spread": self.noise_spread,
            "score_scale_px": self.score_scale_px,
            "base_score": self.base_score,
            "face_min_cos": self.face_min_cos,
            "face_part_min_cos": self.face_part_min_cos,
            "radii_mm": self.radii.tolist(),
            "outlier_prob": dict(zip(_PART_NAMES, self.outlier_prob.tolist())),
            "part_outlier_prob": dict(zip(_PART_NAMES, self.part_outlier_prob.tolist())),
            "swap_prob": self.swap_prob,
            "hand_swap_prob": self.hand_swap_prob,
            "edge_margin_px": self.edge_margin_px,
            **({"limb_fault_prob": self.limb_fault_prob, "limb_fault_view_prob": self.limb_fault_view_prob,
                "limb_fault_px": list(self.limb_fault_px)} if self.limb_fault_prob > 0 else {}),
            **({"pixel_scale": self.pixel_scale} if self.pixel_scale != 1.0 else {}),
        }

    def __call__(self, batch: FrameBatch) -> np.ndarray:
        """(B, J, 3) float32 [x, y, score] pixels, NaN where not found."""
        X = batch.world_keypoints
        if X is None:
            raise ValueError(
                "the simulated detector needs ground-truth keypoints (batch.world_keypoints); it only runs on the "
                "synthetic source. Choose a real detector (detector=openpifpaf or detector=mediapipe) for video."
            )
        B, J = X.shape[:2]
        if J != skeleton.NUM_KEYPOINTS:
            raise ValueError(f"expected world keypoints (B, {skeleton.NUM_KEYPOINTS}, 3), got {X.shape}")
        # one random stream per frame: the detections do not depend on how frames are batched or sharded
        P, base = len(_PART_NAMES), [self.seed, _stable_int(batch.sequence.key), _stable_int(batch.camera.name)]
        rng = _FrameDraws(base, batch.frames, uniforms=4 * P + 5 * J + 2, normals=P + 4 * J)
        cam = batch.camera
        uv = cam.project(X)  # (B, J, 2) true pixels, with lens distortion
        seen = cam.in_image(uv, self.edge_margin_px)  # (B, J)
        occluded = face_self_occlusion(X, cam, self.face_min_cos)
        occluded |= body_occlusion(X, cam, self.radii, self._excl)
        occluded |= palm_occlusion(X, cam)

        part = self._part_ids  # (J,)
        # whole-part failures in this view (face, hands), and random misses of single keypoints
        fail = rng.random((B, len(_PART_NAMES))) < self.part_miss_prob  # (B, P)
        fail[:, _PART_NAMES.index("face")] |= face_facing_cos(X, cam) < self.face_part_min_cos  # face turned away
        missed = fail[:, part] | (rng.random((B, J)) < self.miss_prob[part])

        # noise level: shared by a part in this view (blur, size, pose) times a per-keypoint factor; the score
        # falls as it rises
        part_level = np.exp(self.noise_spread_part * rng.standard_normal((B, len(_PART_NAMES))))  # (B, P)
        sigma = self.noise_px[part] * part_level[:, part] * np.exp(self.noise_spread * rng.standard_normal((B, J)))
        score = self.base_score * np.exp(-sigma / self.score_scale_px) + 0.03 * rng.standard_normal((B, J))
        sigma = sigma * self.pixel_scale  # the score follows the noise at Human3.6M's scale
        # occluded keypoints: some reported as guesses with lower confidence and more noise, the rest missing
        guessed = occluded & (rng.random((B, J)) < self.occluded_report_prob[part])
        score = np.where(guessed, score * self.occluded_score_factor, score)
        sigma = np.where(guessed, sigma * self.occluded_noise_factor + 3.0, sigma)
        score = np.clip(score, 0.01, 1.0)
        det = uv + sigma[..., None] * rng.standard_normal((B, J, 2))
        if self.limb_fault_prob > 0:
            det = det + self._limb_faults(X, cam, uv, batch)

        # gross outliers, still confident: single keypoints far off, or a whole part found at the wrong place
        angle = rng.uniform(0, 2 * np.pi, (B, J))
        radius = rng.uniform(50.0, 300.0, (B, J)) * self.pixel_scale
        part_out = rng.random((B, len(_PART_NAMES))) < self.part_outlier_prob  # (B, P)
        part_angle = rng.uniform(0, 2 * np.pi, (B, len(_PART_NAMES)))[:, part]
        part_radius = rng.uniform(50.0, 300.0, (B, len(_PART_NAMES)))[:, part] * self.pixel_scale
        angle = np.where(part_out[:, part], part_angle, angle)
        radius = np.where(part_out[:, part], part_radius, radius)
        outlier = (rng.random((B, J)) < self.outlier_prob[part]) | part_out[:, part]
        det = np.where(outlier[..., None], det + np.stack([np.cos(angle), np.sin(angle)], -1) * radius[..., None], det)

        found = seen & ~missed & (~occluded | guessed) & cam.in_image(det, 0.0)
        out = np.concatenate([det, score[..., None]], axis=-1).astype(np.float32)  # (B, J, 3)
        out[~found] = np.nan

        # left/right confusions in this view: whole body, or the two hands
        swap = rng.random(B) < self.swap_prob
        out[swap] = out[swap][:, skeleton.FLIP_INDEX]
        hswap = (rng.random(B) < self.hand_swap_prob) & ~swap
        lh, rh = skeleton.PARTS["left_hand"], skeleton.PARTS["right_hand"]
        left = out[hswap, lh].copy()
        out[hswap, lh] = out[hswap, rh]
        out[hswap, rh] = left
        return out


    def _limb_faults(self, X: np.ndarray, cam: Camera, uv: np.ndarray, batch: FrameBatch) -> np.ndarray:
        """(B, J, 2) pixel offsets of the wrong limbs in this view (0 elsewhere); see the module docstring."""
        B = X.shape[0]
        L = len(_FAULT_LIMBS)
        key = _stable_int(batch.sequence.key)
        shared = _FrameDraws([self.seed, key, _stable_int("limb faults")], batch.frames, uniforms=3 * L, normals=3 * L)
        view = _FrameDraws([self.seed, key, _stable_int(cam.name), _stable_int("limb faults")], batch.frames,
                           uniforms=2 * L, normals=0)
        unusual = unusual_limbs(X)  # (B, L)
        event = unusual & (shared.random((B, L)) < self.limb_fault_prob)
        whole = shared.random((B, L)) < 0.5  # the whole limb turns, or only its distal segment
        turn = np.radians(15.0 + 20.0 * shared.random((B, L)))  # (B, L) shared by every view
        axis = shared.standard_normal((B, L, 3))
        in_view = view.random((B, L)) < self.limb_fault_view_prob
        size = self.pixel_scale * (self.limb_fault_px[0] + (self.limb_fault_px[1] - self.limb_fault_px[0])
                                   * view.random((B, L)))  # (B, L) px at the limb's end
        out = np.zeros(uv.shape)
        for k, (pivot_whole, pivot_part, moved_whole, moved_part, end) in enumerate(_FAULT_LIMBS):
            b = np.flatnonzero(event[:, k] & in_view[:, k])
            if not len(b):
                continue
            pivot = np.where(whole[b, k, None], X[b, pivot_whole], X[b, pivot_part])  # (n, 3)
            limb = X[b, end] - pivot
            ax = np.cross(axis[b, k], limb)  # a turn axis across the limb
            ax /= np.linalg.norm(ax, axis=-1, keepdims=True) + 1e-9
            moved = np.where(whole[b, k, None], moved_whole[None], moved_part[None])  # (n, J) bool
            rel = X[b] - pivot[:, None]  # (n, J, 3)
            wrong = pivot[:, None] + _rotate(rel, ax, turn[b, k])
            off = cam.project(wrong) - uv[b]  # (n, J, 2)
            off = np.where(moved[..., None] & np.isfinite(off), off, 0.0)
            at_end = np.linalg.norm(off[:, end], axis=-1)  # (n,)
            scale = np.where(at_end > 1e-6, size[b, k] / np.maximum(at_end, 1e-6), 0.0)
            out[b] += off * scale[:, None, None]
        return out


def _rotate(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotate (n, J, 3) vectors about unit axes (n, 3) by angles (n,) radians."""
    k = axis[:, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return v * c + np.cross(k, v) * s + k * (v * k).sum(-1, keepdims=True) * (1 - c)


def _fault_limbs() -> tuple[tuple[int, int, np.ndarray, np.ndarray, int], ...]:
    """Per limb (left arm, right arm, left leg, right leg): pivots, the keypoints each turn moves, the limb's end.

    The two pivots are those of the whole limb (shoulder, hip) and of its distal segment (elbow, knee).
    """
    J = skeleton.NUM_KEYPOINTS
    out = []
    for side in ("left", "right"):
        hand = np.arange(skeleton.PARTS[f"{side}_hand"].start, skeleton.PARTS[f"{side}_hand"].stop)
        whole, part = np.zeros(J, bool), np.zeros(J, bool)
        whole[[_idx(f"{side}_elbow"), _idx(f"{side}_wrist"), *hand]] = True
        part[[_idx(f"{side}_wrist"), *hand]] = True
        out.append((_idx(f"{side}_shoulder"), _idx(f"{side}_elbow"), whole, part, _idx(f"{side}_wrist")))
    for side in ("left", "right"):
        foot = [_idx(f"{side}_{n}") for n in ("big_toe", "small_toe", "heel")]
        whole, part = np.zeros(J, bool), np.zeros(J, bool)
        whole[[_idx(f"{side}_knee"), _idx(f"{side}_ankle"), *foot]] = True
        part[[_idx(f"{side}_ankle"), *foot]] = True
        out.append((_idx(f"{side}_hip"), _idx(f"{side}_knee"), whole, part, _idx(f"{side}_ankle")))
    return tuple(out)


_FAULT_LIMBS = _fault_limbs()


def unusual_limbs(X: np.ndarray, margin_mm: float = 50.0) -> np.ndarray:
    """Which limbs are in a pose real detectors find ambiguous.

    An arm is unusual when its wrist is above its shoulder or crossed over the body's midline (by more than
    ``margin_mm``); a leg when the person lunges: the knee bent by more than 30 degrees while standing (hips
    higher than 60% of the leg length) with the feet further apart than 40% of the leg length.

    Args:
        X: (B, J, 3) world millimetres, z up.
        margin_mm: how clearly the wrist must be above the shoulder or past the midline.

    Returns:
        (B, 4) bool for the left arm, right arm, left leg, right leg.
    """
    ls, rs = X[:, _idx("left_shoulder")], X[:, _idx("right_shoulder")]
    mid = 0.5 * (ls + rs)
    lateral = ls - rs
    lateral /= np.linalg.norm(lateral, axis=-1, keepdims=True) + 1e-9  # towards the subject's left
    out = np.zeros((X.shape[0], 4), dtype=bool)
    for k, (side, sign) in enumerate((("left", 1.0), ("right", -1.0))):
        sh, wr = X[:, _idx(f"{side}_shoulder")], X[:, _idx(f"{side}_wrist")]
        raised = wr[:, 2] > sh[:, 2] + margin_mm
        crossed = sign * ((wr - mid) * lateral).sum(-1) < -margin_mm
        out[:, k] = raised | crossed
    la, ra = X[:, _idx("left_ankle")], X[:, _idx("right_ankle")]
    apart = np.linalg.norm((la - ra)[:, :2], axis=-1)
    for k, side in enumerate(("left", "right"), start=2):
        hip, knee, ankle = X[:, _idx(f"{side}_hip")], X[:, _idx(f"{side}_knee")], X[:, _idx(f"{side}_ankle")]
        a, b = hip - knee, ankle - knee
        leg = np.linalg.norm(a, axis=-1) + np.linalg.norm(b, axis=-1)
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-9)
        bent = cos > np.cos(np.radians(150.0))  # knee angle under 150 degrees
        standing = hip[:, 2] - np.minimum(la[:, 2], ra[:, 2]) > 0.6 * leg
        out[:, k] = bent & standing & (apart > 0.4 * leg)
    return out


class _FrameDraws:
    """Random numbers drawn per frame from its own seeded stream, handed out in (B, k) blocks in a fixed order.

    Mimics the few ``numpy.random.Generator`` methods the detector uses; each call takes the next k columns.
    """

    def __init__(self, base: list[int], frames: np.ndarray, uniforms: int, normals: int) -> None:
        self.u = np.empty((len(frames), uniforms))
        self.z = np.empty((len(frames), normals))
        for i, f in enumerate(frames):
            g = np.random.default_rng([*base, int(f)])
            self.u[i] = g.random(uniforms)
            self.z[i] = g.standard_normal(normals)
        self._iu = self._iz = 0

    def _take(self, which: str, shape: tuple[int, ...]) -> np.ndarray:
        k = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        pool, start = (self.u, self._iu) if which == "u" else (self.z, self._iz)
        if start + k > pool.shape[1]:
            raise AssertionError("the simulated detector drew more random numbers than it reserved")
        block = pool[:, start : start + k]
        if which == "u":
            self._iu += k
        else:
            self._iz += k
        return block.reshape(shape)

    def random(self, shape: tuple[int, ...] | int) -> np.ndarray:
        return self._take("u", (shape,) if isinstance(shape, int) else shape)

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
        return low + (high - low) * self._take("u", shape)

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._take("z", shape)


def head_center(X: np.ndarray) -> np.ndarray:
    """(B, J, 3) -> (B, 3): the head centre, midway between the ears."""
    return 0.5 * (X[:, skeleton.index("left_ear")] + X[:, skeleton.index("right_ear")])


def face_facing_cos(X: np.ndarray, cam: Camera) -> np.ndarray:
    """(B, J, 3) world mm -> (B,) cosine between the face's forward direction and the direction to the camera."""
    c = head_center(X)
    fwd = X[:, skeleton.NOSE] - c
    fwd /= np.linalg.norm(fwd, axis=-1, keepdims=True) + 1e-9
    to_cam = cam.center - c
    to_cam /= np.linalg.norm(to_cam, axis=-1, keepdims=True)
    return (fwd * to_cam).sum(-1)


def face_self_occlusion(X: np.ndarray, cam: Camera, min_cos: float) -> np.ndarray:
    """Face landmarks (and nose, eyes, ears) whose outward normal turns away from the camera.

    Args:
        X: (B, J, 3) world millimetres.
        cam: the camera.
        min_cos: a landmark is visible when cos(normal, direction to camera) >= min_cos.

    Returns:
        (B, J) bool, True where hidden (always False outside the head).
    """
    head_ids = np.r_[[_idx(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")],
                     np.arange(skeleton.PARTS["face"].start, skeleton.PARTS["face"].stop)]  # fmt: skip
    c = head_center(X)[:, None]  # (B, 1, 3)
    pts = X[:, head_ids]  # (B, H, 3)
    normal = pts - c
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
    to_cam = cam.center - pts
    to_cam /= np.linalg.norm(to_cam, axis=-1, keepdims=True)
    out = np.zeros(X.shape[:2], dtype=bool)
    out[:, head_ids] = (normal * to_cam).sum(-1) < min_cos
    return out


def _capsules(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, J, 3) -> endpoints a, b (B, K, 3) of the occluding capsules: torso, head (a point), limbs."""
    mid_hip = skeleton.root(X)
    mid_sh = 0.5 * (X[:, _idx("left_shoulder")] + X[:, _idx("right_shoulder")])
    # the torso capsule stops 100 mm below the shoulder line, so its round cap does not swallow the neck and chin
    spine = mid_sh - mid_hip
    top = mid_sh - 100.0 * spine / (np.linalg.norm(spine, axis=-1, keepdims=True) + 1e-9)
    head = head_center(X)
    a = [mid_hip, head] + [X[:, _idx(p)] for _, p, _ in _LIMBS]
    b = [top, head] + [X[:, _idx(q)] for _, _, q in _LIMBS]
    return np.stack(a, 1), np.stack(b, 1)


def body_occlusion(X: np.ndarray, cam: Camera, radii: np.ndarray, exclude: np.ndarray,
                   margin_mm: float = 30.0) -> np.ndarray:
    """Keypoints hidden behind the torso, head or limbs (capsules around bones).

    The line of sight from the camera centre to each keypoint is tested against every capsule: hidden when it
    passes within the capsule's radius at a point at least ``margin_mm`` in front of the keypoint.

    Args:
        X: (B, J, 3) world millimetres.
        cam: the camera.
        radii: (K,) capsule radii, mm.
        exclude: (J, K) pairs never tested (a keypoint does not hide behind its own bone).
        margin_mm: how far in front of the keypoint the closest approach must be.

    Returns:
        (B, J) bool, True where hidden.
    """
    a, b = _capsules(X)  # (B, K, 3)
    o = cam.center  # (3,)
    d = X - o  # (B, J, 3) line of sight
    u = b - a  # (B, K, 3) capsule axis
    w0 = o - a  # (B, K, 3)
    # closest points between segments o + s d (s in [0, 1]) and a + t u (t in [0, 1]); Ericson, Real-Time
    # Collision Detection, Sec. 5.1.9
    dd = (d * d).sum(-1)[:, :, None]  # (B, J, 1)
    uu = (u * u).sum(-1)[:, None, :]  # (B, 1, K)
    du = np.einsum("bjc,bkc->bjk", d, u)  # (B, J, K)
    dw = np.einsum("bjc,bkc->bjk", d, w0)
    uw = (u * w0).sum(-1)[:, None, :]
    den = dd * uu - du * du  # (B, J, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(den > 1e-9, (du * uw - uu * dw) / den, 0.0)
        s = np.clip(s, 0.0, 1.0)
        t = np.where(uu > 1e-9, (du * s + uw) / uu, 0.0)
        t = np.clip(t, 0.0, 1.0)
        s = np.clip(np.where(dd > 0, (du * t - dw) / dd, 0.0), 0.0, 1.0)
    # squared distance between the closest points (expanded to avoid (B, J, K, 3) temporaries)
    ww = (w0 * w0).sum(-1)[:, None, :]
    dist2 = ww + s * s * dd + t * t * uu + 2 * s * dw - 2 * t * uw - 2 * s * t * du
    before = (1.0 - s) * np.sqrt(dd) > margin_mm  # closest approach well in front of the keypoint
    hidden = (dist2 < radii[None, None, :] ** 2) & before & ~exclude[None]
    return hidden.any(-1)


def palm_occlusion(X: np.ndarray, cam: Camera, margin_mm: float = 10.0) -> np.ndarray:
    """Hand keypoints hidden behind their own palm (a disc through the wrist and the four knuckles).

    Args:
        X: (B, J, 3) world millimetres.
        cam: the camera.
        margin_mm: the crossing must lie this far in front of the keypoint.

    Returns:
        (B, J) bool, True where hidden.
    """
    out = np.zeros(X.shape[:2], dtype=bool)
    o = cam.center
    for side in ("left", "right"):
        sl = skeleton.PARTS[f"{side}_hand"]
        knuckles = [_idx(f"{side}_{f}1") for f in ("forefinger", "middle_finger", "ring_finger", "pinky_finger")]
        root = X[:, sl.start]  # (B, 3)
        palm = np.concatenate([root[:, None], X[:, knuckles]], 1)  # (B, 5, 3)
        c = palm.mean(1)  # (B, 3) palm centre
        n = np.cross(X[:, knuckles[0]] - root, X[:, knuckles[3]] - root)  # (B, 3) palm normal (either sign)
        n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-9
        radius = 0.5 * np.linalg.norm(palm - c[:, None], axis=-1).max(1) + 5.0  # (B,) mm
        pts = X[:, sl]  # (B, 21, 3)
        d = pts - o  # (B, 21, 3)
        den = (d * n[:, None]).sum(-1)  # (B, 21)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = ((c - o) * n).sum(-1)[:, None] / den  # (B, 21) where the sight line crosses the palm plane
        hit = o + s[..., None] * d  # (B, 21, 3)
        inside = np.linalg.norm(hit - c[:, None], axis=-1) < radius[:, None]
        before = (1.0 - s) * np.linalg.norm(d, axis=-1) > margin_mm
        out[:, sl] = inside & before & (s > 0)
    return out


def default_simulated_detector(**overrides: Any) -> SimulatedDetector:
    """A :class:`SimulatedDetector` with the values of ``conf/detector/simulated.yaml``, some of them overridden."""
    from build_h3wb.config import SimulatedDetectorConfig, option_values

    settings = option_values("detector", "simulated", SimulatedDetectorConfig)
    settings.update(overrides)
    return SimulatedDetector(**settings)
