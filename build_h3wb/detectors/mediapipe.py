"""MediaPipe Holistic as a single-person whole-body detector.

Holistic (MediaPipe 0.10.21, the last release that ships it with the Python "solutions") finds, for the most
prominent person in an image, 33 pose landmarks, a 468-point face mesh and 21 landmarks per hand. They are mapped
into the COCO-WholeBody layout of :mod:`build_h3wb.skeleton`; a keypoint with no MediaPipe counterpart is missing
(NaN), never invented:

- body (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles): the pose landmarks of the same name; the
  eyes are the centres of the face mesh's eye outlines when a face is found (the pose model's head landmarks are
  coarser: its left eye lies 10 px below the iris on a 512 px portrait, the mesh's eye contour within 2 px), else
  MediaPipe's eye-centre pose landmarks (``LEFT_EYE`` / ``RIGHT_EYE``). Both MediaPipe's ``LEFT_*`` and COCO's
  ``left_*`` name the subject's own left (checked on ``skimage.data.astronaut()``: her left eye and shoulder are on
  the image's right).
- feet: ``LEFT_HEEL`` -> ``left_heel`` and ``LEFT_FOOT_INDEX`` (the tip of the foot, around the big and second
  toes) -> ``left_big_toe``; the small toes have no counterpart and stay missing. Likewise on the right.
- hands: Holistic's ``left_hand_landmarks`` / ``right_hand_landmarks`` (the subject's own hands: Holistic crops
  each hand around the pose wrist of the same side, unlike the Hands solution, which assumes a mirrored selfie)
  in the COCO-WholeBody hand order (wrist, thumb 1-4, index 1-4, middle, ring, pinky), which MediaPipe shares.
- face: the 68 iBUG/300W points from one face-mesh landmark each, through :data:`FACE_MESH_68`.

Scores ``[x, y, score]`` (only pose landmarks carry a confidence in Holistic):

- body and feet: the pose landmark's ``visibility``, MediaPipe's estimate that it is visible in the image.
- hands: ``0.5 + 0.5 * visibility of the pose wrist of the same side``. Holistic returns a hand only when its hand
  model judged a hand present (its graph gates on a presence score of 0.5), so a found hand scores 0.5-1.0,
  passes a triangulation threshold of 0.3, and scores higher when the pose model also sees the wrist.
- face: ``(0.5 + 0.5 * visibility of the pose nose) * facing``. The face mesh is a full mask even for a profile
  view, so landmarks on the far side are guesses; ``facing = clip(0.6 + cos, 0.1, 1)`` where ``cos`` is the cosine
  between the landmark's outward direction from the head centre and the direction to the camera, both from the
  mesh's own 3D coordinates (see :func:`face_facing_cos`). A frontal face scores about 0.6-1.0 everywhere (the jaw
  line, seen edge-on, about 0.6); landmarks turned away (cos < -0.3, e.g. the far jaw line from about 30 degrees of
  yaw on) fall below 0.3.

Landmarks that MediaPipe extrapolates outside the image (it places the legs of an upper-body photograph below the
frame) are missing.

Several people. Holistic returns one person per image (the most prominent). With ``max_people`` > 1 the detector
runs it again on a copy of the image in which the people already found are painted over (their segmentation mask
from Holistic's own segmentation model, dilated by :data:`MASK_DILATION` of the image height, filled with mid-grey),
until it finds nobody, finds a person mostly inside what was painted over (the same person again, from what the
mask missed: dropped), or has ``max_people`` candidates. The output is then ``(B, P, J, 3)``, in the order found
(the most prominent first); the detect stage picks the subject among them (:mod:`build_h3wb.detectors.subject`).
With ``max_people`` = 1 it is ``(B, J, 3)`` and nothing is masked.

Model complexity: MediaPipe 0.10.21 ships only the "full" pose landmark model (``model_complexity=1``). The "lite"
(0) and "heavy" (2) models are downloaded by MediaPipe into its own package directory the first time they are
asked for; offline, that fails and this detector raises a ``RuntimeError`` naming the file to copy there by hand.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.sources.base import FrameBatch

log = logging.getLogger(__name__)

#: Bump when the mapping or the score rule changes (stored in ``describe()``, so detections are recomputed).
MAPPING_VERSION = 1
#: Painted-over people grow by this share of the image height (segmentation edges, motion blur, loose clothes).
MASK_DILATION = 0.02
#: A further candidate with more than this share of its found keypoints inside the painted area is the same person.
SAME_PERSON_SHARE = 0.5
_MASK_FILL = 128

#: MediaPipe pose landmark index (``mediapipe.solutions.pose.PoseLandmark``) per COCO-WholeBody body/feet name.
POSE_TO_COCO: dict[str, int] = {
    "nose": 0,  # NOSE
    "left_eye": 2,  # LEFT_EYE (eye centre; 1 and 3 are its inner and outer corners)
    "right_eye": 5,  # RIGHT_EYE
    "left_ear": 7,
    "right_ear": 8,
    "left_shoulder": 11,
    "right_shoulder": 12,
    "left_elbow": 13,
    "right_elbow": 14,
    "left_wrist": 15,
    "right_wrist": 16,
    "left_hip": 23,
    "right_hip": 24,
    "left_knee": 25,
    "right_knee": 26,
    "left_ankle": 27,
    "right_ankle": 28,
    "left_big_toe": 31,  # LEFT_FOOT_INDEX, the tip of the foot
    "left_heel": 29,
    "right_big_toe": 32,  # RIGHT_FOOT_INDEX
    "right_heel": 30,
    # left_small_toe, right_small_toe: no MediaPipe counterpart (missing)
}
_POSE_NOSE = POSE_TO_COCO["nose"]
_POSE_WRIST = {"left": POSE_TO_COCO["left_wrist"], "right": POSE_TO_COCO["right_wrist"]}
_NUM_POSE, _NUM_HAND, _NUM_FACE_MESH = 33, 21, 468

#: Face-mesh landmark (of MediaPipe's 468) per iBUG-68 point, by region of ``skeleton.FACE_REGIONS`` ("right" is the
#: subject's right, on the image's left in a frontal view).
#:
#: Written for this project from public facts: the face-mesh topology (the contours in MediaPipe's
#: ``face_mesh_connections``: face oval, lips, eyes, eyebrows, nose) and the iBUG/300W definitions (Sagonas et al.,
#: 300 Faces in-the-Wild, 2013); public 68-point tables (e.g. PeizhiYan/Mediapipe_2_Dlib_Landmarks,
#: ros4hri/hri_face_detect) were compared, not copied. Rules: corners, centres and the nose tip are the mesh's
#: landmarks for them (eye corners 33/133/362/263, mouth corners 61/291, lip centres 0/17/13/14, subnasale 2, nose
#: tip 4, menton 152, between the eyes 168); the others are picked along the mesh contour nearest to evenly spaced
#: arc length, measured on the astronaut's face; the upper and lower lip points 50, 52, 56, 58, 61, 63, 65 and 67
#: lie on the columns of the Cupid's-bow peaks 37 and 267; the table is mirror-symmetric (each left point is the
#: mesh's mirror of its right point). Checked by drawing the 68 numbered points on ``skimage.data.astronaut()``.
FACE_MESH_68: dict[str, tuple[int, ...]] = {
    "jaw": (127, 234, 93, 58, 172, 136, 149, 176, 152, 400, 378, 365, 397, 288, 323, 454, 356),
    "right_brow": (70, 63, 105, 66, 107),  # outer to inner, along the brow's upper edge
    "left_brow": (336, 296, 334, 293, 300),  # inner to outer
    "nose_bridge": (168, 197, 5, 4),  # between the eyes down to the tip
    "nose_lower": (98, 97, 2, 326, 327),  # right nostril wing, subnasale, left nostril wing
    "right_eye": (33, 160, 158, 133, 153, 144),  # outer corner, upper lid, inner corner, lower lid
    "left_eye": (362, 385, 387, 263, 373, 380),  # inner corner, upper lid, outer corner, lower lid
    "mouth_outer": (61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91),  # right corner, upper lip, left, lower
    "mouth_inner": (78, 82, 13, 312, 308, 317, 14, 87),
}

# Face score constants (see the module docstring): the head centre lies this many outer-eye-corner distances behind
# the mesh centroid, and facing = clip(_FACING_OFFSET + cos, _FACING_MIN, 1).
_HEAD_DEPTH = 0.7
_FACING_OFFSET = 0.6
_FACING_MIN = 0.1
_EYE_OUTER = (33, 263)  # subject's right and left outer eye corners
_FOREHEAD, _CHIN = 10, 152


def _face_index() -> np.ndarray:
    """(68,) face-mesh index per iBUG point, checked against the skeleton's face regions."""
    out = np.full(skeleton.PARTS["face"].stop - skeleton.PARTS["face"].start, -1, dtype=np.int64)
    if set(FACE_MESH_68) != set(skeleton.FACE_REGIONS):
        raise AssertionError(f"FACE_MESH_68 regions {sorted(FACE_MESH_68)} != {sorted(skeleton.FACE_REGIONS)}")
    for region, offsets in skeleton.FACE_REGIONS.items():
        if len(FACE_MESH_68[region]) != len(offsets):
            raise AssertionError(f"FACE_MESH_68[{region!r}] has {len(FACE_MESH_68[region])} points, "
                                 f"expected {len(offsets)}")
        out[list(offsets)] = FACE_MESH_68[region]
    assert (out >= 0).all() and len(set(out.tolist())) == len(out)
    return out


_FACE_IDX = _face_index()
_BODY_J = np.array([skeleton.index(n) for n in POSE_TO_COCO])  # (K,) COCO indices
_BODY_P = np.array(list(POSE_TO_COCO.values()))  # (K,) pose landmark indices


def face_facing_cos(face: np.ndarray) -> np.ndarray:
    """Cosine between each mapped face landmark's outward direction and the direction to the camera.

    The outward direction runs from a head centre placed ``_HEAD_DEPTH`` outer-eye-corner distances behind the mesh
    centroid (along the face's forward direction, from the eye line and the forehead-chin line) to the landmark.

    Args:
        face: (..., N, 3) face-mesh landmarks ``[x, y, z]`` in pixels (x right, y down, z away from the camera, same
            scale as x), N >= 468.

    Returns:
        (..., 68) cosines in [-1, 1], iBUG order: 1 faces the camera, 0 is seen edge-on, < 0 is turned away.
    """
    if face.shape[-1] != 3 or face.shape[-2] < _NUM_FACE_MESH:
        raise ValueError(f"expected face-mesh landmarks (..., >={_NUM_FACE_MESH}, 3), got shape {face.shape}")
    across = face[..., _EYE_OUTER[1], :] - face[..., _EYE_OUTER[0], :]  # (..., 3) towards the subject's left
    down = face[..., _CHIN, :] - face[..., _FOREHEAD, :]  # (..., 3)
    forward = -np.cross(across, down)  # (..., 3) out of the face (x right, y down: across x down points away)
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True) + 1e-9
    eye_dist = np.linalg.norm(across, axis=-1, keepdims=True)  # (..., 1)
    center = face[..., :_NUM_FACE_MESH, :].mean(-2) - _HEAD_DEPTH * eye_dist * forward  # (..., 3)
    normal = face[..., _FACE_IDX, :] - center[..., None, :]  # (..., 68, 3)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
    return -normal[..., 2]  # the camera looks along +z


_IBUG_RIGHT_EYE = slice(36, 42)  # iBUG-68 points of the subject's right eye outline (image left when facing)
_IBUG_LEFT_EYE = slice(42, 48)


def holistic_to_wholebody(
    pose: np.ndarray | None,
    face: np.ndarray | None,
    left_hand: np.ndarray | None,
    right_hand: np.ndarray | None,
    width: int,
    height: int,
) -> np.ndarray:
    """Map one image's Holistic landmarks to the whole-body layout (the rules are in the module docstring).

    Args:
        pose: (33, 4) ``[x, y, z, visibility]``, x and y normalised to [0, 1] by the image width and height; None
            when no person was found.
        face: (N >= 468, 3) ``[x, y, z]`` normalised (z on the scale of x), or None.
        left_hand: (21, 3) normalised ``[x, y, z]`` of the subject's left hand, or None.
        right_hand: (21, 3) of the subject's right hand, or None.
        width: image width W, pixels.
        height: image height H, pixels.

    Returns:
        (J, 3) float32 ``[x, y, score]`` in pixels, NaN in all three where missing or outside the image.
    """
    out = np.full((skeleton.NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
    if pose is None:
        return out
    _check_shape("pose", pose, (_NUM_POSE, 4))
    scale = np.array([width, height], dtype=np.float64)
    vis = np.clip(pose[:, 3], 0.0, 1.0)  # (33,)
    out[_BODY_J, :2] = pose[_BODY_P, :2] * scale
    out[_BODY_J, 2] = vis[_BODY_P]
    for side, hand in (("left", left_hand), ("right", right_hand)):
        if hand is not None:
            _check_shape(f"{side}_hand", hand, (_NUM_HAND, 3))
            part = skeleton.PARTS[f"{side}_hand"]
            out[part, :2] = hand[:, :2] * scale
            out[part, 2] = 0.5 + 0.5 * vis[_POSE_WRIST[side]]
    if face is not None:
        if face.ndim != 2 or face.shape[0] < _NUM_FACE_MESH or face.shape[1] != 3:
            raise ValueError(f"face landmarks: expected shape (>={_NUM_FACE_MESH}, 3), got {face.shape}")
        xyz = face * np.array([width, height, width], dtype=np.float64)  # (N, 3) pixels
        part = skeleton.PARTS["face"]
        out[part, :2] = xyz[_FACE_IDX, :2]
        facing = np.clip(_FACING_OFFSET + face_facing_cos(xyz), _FACING_MIN, 1.0)  # (68,)
        out[part, 2] = (0.5 + 0.5 * vis[_POSE_NOSE]) * facing
        # the body's eyes from the mesh's eye outlines (within ~2 px) rather than the pose model's (~10 px off)
        face_kp = out[part]
        for eye, outline in (("left_eye", _IBUG_LEFT_EYE), ("right_eye", _IBUG_RIGHT_EYE)):
            j = skeleton.index(eye)
            out[j, :2] = face_kp[outline, :2].mean(0)
            out[j, 2] = max(float(out[j, 2]) if np.isfinite(out[j, 2]) else 0.0, float(face_kp[outline, 2].min()))
    with np.errstate(invalid="ignore"):
        outside = (out[:, 0] < 0) | (out[:, 0] > width) | (out[:, 1] < 0) | (out[:, 1] > height)
    out[outside] = np.nan
    return out


def person_region(kp: np.ndarray, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The image area of one found person, to paint over before looking for the next.

    Args:
        kp: (J, 3) ``[x, y, score]`` pixels of the person, NaN where missing.
        mask: (H, W) float in [0, 1], Holistic's segmentation of the person, or None (then the keypoints' box grown
            by 10% per side stands in for it).
        shape: (H, W) of the image.

    Returns:
        (H, W) bool, True inside the person's (dilated) region.
    """
    import cv2  # noqa: PLC0415 (OpenCV is imported only where pixels are handled)

    H, W = shape
    region = np.zeros((H, W), dtype=np.uint8)
    if mask is not None and mask.shape == (H, W):
        region[mask > 0.5] = 1
    else:
        ok = np.isfinite(kp[:, 0])
        if ok.any():
            (x0, y0), (x1, y1) = kp[ok, :2].min(0), kp[ok, :2].max(0)
            mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            region[max(0, int(y0 - my)) : int(y1 + my) + 1, max(0, int(x0 - mx)) : int(x1 + mx) + 1] = 1
    radius = max(1, int(round(MASK_DILATION * H)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(region, kernel).astype(bool)


def _share_inside(xy: np.ndarray, region: np.ndarray) -> float:
    """Share of (N, 2) pixel positions that fall inside the (H, W) bool ``region``."""
    H, W = region.shape
    col = np.clip(xy[:, 0].astype(np.int64), 0, W - 1)
    row = np.clip(xy[:, 1].astype(np.int64), 0, H - 1)
    return float(region[row, col].mean()) if len(xy) else 0.0


def _check_shape(what: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ValueError(f"{what} landmarks: expected shape {shape}, got {a.shape}")


def _landmarks(lms: Any, fields: tuple[str, ...]) -> np.ndarray | None:
    """A MediaPipe ``NormalizedLandmarkList`` -> (N, len(fields)) float64, or None."""
    if lms is None:
        return None
    return np.array([[getattr(lm, f) for f in fields] for lm in lms.landmark], dtype=np.float64)


def _import_mediapipe() -> Any:
    try:
        import mediapipe
    except ImportError as e:
        raise ImportError(
            "detector=mediapipe needs MediaPipe 0.10.21 (the last release with the Holistic solution); install it "
            'with: pip install -e ".[mediapipe]"'
        ) from e
    return mediapipe


_POSE_MODEL_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


class MediaPipeHolisticDetector:
    """MediaPipe Holistic whole-body detector (mapping and scores: see the module docstring).

    Holds one Holistic graph; release it with :meth:`close` or use the detector as a context manager (it is also
    released when the detector is garbage-collected). Build it with ``hydra.utils.instantiate`` from
    ``build_h3wb.config.MediaPipeDetectorConfig``.

    Args:
        model_complexity: pose landmark model: 0 lite, 1 full (shipped with MediaPipe), 2 heavy (0 and 2 are
            downloaded by MediaPipe on first use; offline this raises ``RuntimeError``).
        min_detection_confidence: minimum person-detection confidence, in [0, 1].
        refine_face_landmarks: run the attention face-mesh model (refined eyes and lips, plus irises, which are
            not used).
        static_image_mode: detect every frame on its own. If False, Holistic tracks from frame to frame within a
            view; the tracking restarts whenever a batch comes from another sequence or camera or does not follow
            the previous one.
        max_people: candidates per image, found by painting over the people found and detecting again (see the
            module docstring); 1 keeps Holistic's single person. Above 1 needs ``static_image_mode``.
    """

    name = "mediapipe"

    def __init__(
        self,
        *,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        refine_face_landmarks: bool = False,
        static_image_mode: bool = True,
        max_people: int = 1,
    ) -> None:
        if int(max_people) < 1:
            raise ValueError(f"detector.max_people: expected an integer >= 1, got {max_people!r}")
        if int(max_people) > 1 and not static_image_mode:
            raise ValueError("detector.max_people > 1 needs detector.static_image_mode=true: tracking from frame to "
                             "frame cannot follow several people through one Holistic graph")
        if model_complexity not in _POSE_MODEL_FILES:
            raise ValueError(f"detector.model_complexity: expected 0, 1 or 2, got {model_complexity!r}")
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ValueError(f"detector.min_detection_confidence: expected a value in [0, 1], got "
                             f"{min_detection_confidence!r}")
        self.model_complexity = int(model_complexity)
        self.min_detection_confidence = float(min_detection_confidence)
        self.refine_face_landmarks = bool(refine_face_landmarks)
        self.static_image_mode = bool(static_image_mode)
        self.max_people = int(max_people)
        mp = _import_mediapipe()
        self.mediapipe_version = str(mp.__version__)
        model = Path(mp.__file__).parent / "modules" / "pose_landmark" / _POSE_MODEL_FILES[self.model_complexity]
        if not model.exists():
            log.warning("MediaPipe pose model %s is not installed; MediaPipe downloads it to %s", model.name, model)
        try:
            holistic = mp.solutions.holistic.Holistic(
                static_image_mode=self.static_image_mode,
                model_complexity=self.model_complexity,
                min_detection_confidence=self.min_detection_confidence,
                refine_face_landmarks=self.refine_face_landmarks,
                enable_segmentation=self.max_people > 1,
            )
        except OSError as e:  # urllib's URLError (no network) and file permission errors
            raise RuntimeError(
                f"detector.model_complexity={self.model_complexity} needs MediaPipe's {model.name}, which is not "
                f"shipped with mediapipe {self.mediapipe_version} and could not be downloaded ({e}). Copy "
                f"https://storage.googleapis.com/mediapipe-assets/{model.name} to {model}, or use "
                "detector.model_complexity=1 (shipped)."
            ) from e
        self._holistic = holistic
        self._finalizer = weakref.finalize(self, holistic.close)
        self._last: tuple[str, str, int] | None = None  # (sequence, camera, last frame) for tracking mode

    def describe(self) -> dict[str, Any]:
        """Settings that determine the detections."""
        return {
            "detector": self.name,
            "mediapipe_version": self.mediapipe_version,
            "model_complexity": self.model_complexity,
            "min_detection_confidence": self.min_detection_confidence,
            "refine_face_landmarks": self.refine_face_landmarks,
            "static_image_mode": self.static_image_mode,
            "mapping_version": MAPPING_VERSION,
            **({"max_people": self.max_people, "mask_dilation": MASK_DILATION} if self.max_people > 1 else {}),
        }

    def __call__(self, batch: FrameBatch) -> np.ndarray:
        """Detect the most prominent person in each frame (up to ``max_people``, see the module docstring).

        Args:
            batch: frames of one view; ``batch.images`` (B, H, W, 3) uint8 RGB.

        Returns:
            (B, J, 3) float32 ``[x, y, score]`` in pixels of the original image, NaN where not found; (B, P, J, 3)
            with P = ``max_people`` > 1, the people in the order found, absent ones all NaN.
        """
        images = batch.images
        if images is None:
            raise ValueError(
                "the mediapipe detector needs image pixels (batch.images), but this source gives none (the "
                "synthetic capture); use detector=simulated for it"
            )
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"batch.images: expected (B, H, W, 3) uint8 RGB, got shape {images.shape} and dtype "
                             f"{images.dtype}")
        if self._holistic is None:
            raise RuntimeError("this MediaPipeHolisticDetector was closed")
        if not self.static_image_mode:
            self._restart_tracking_if_needed(batch)
        out = np.full((len(images), self.max_people, skeleton.NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
        for b, image in enumerate(images):
            people = self._people(np.ascontiguousarray(image))
            if people:
                out[b, : len(people)] = np.stack(people)
        return out[:, 0] if self.max_people == 1 else out

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One Holistic pass: (J, 3) keypoints in pixels and the (H, W) float segmentation mask (or None)."""
        H, W = image.shape[:2]
        res = self._holistic.process(image)
        kp = holistic_to_wholebody(
            _landmarks(res.pose_landmarks, ("x", "y", "z", "visibility")),
            _landmarks(res.face_landmarks, ("x", "y", "z")),
            _landmarks(res.left_hand_landmarks, ("x", "y", "z")),
            _landmarks(res.right_hand_landmarks, ("x", "y", "z")),
            W,
            H,
        )
        mask = getattr(res, "segmentation_mask", None)
        return kp, None if mask is None else np.asarray(mask)

    def _people(self, image: np.ndarray) -> list[np.ndarray]:
        """Up to ``max_people`` (J, 3) people, each found after painting over the ones before."""
        people: list[np.ndarray] = []
        painted = np.zeros(image.shape[:2], dtype=bool)  # (H, W)
        work = image
        for _ in range(self.max_people):
            kp, mask = self._detect(work)
            found = np.isfinite(kp[:, 2])
            if not found.any():
                break
            if people and _share_inside(kp[found, :2], painted) > SAME_PERSON_SHARE:
                break  # the same person again, from what the mask missed
            people.append(kp)
            if len(people) == self.max_people:
                break
            painted |= person_region(kp, mask, image.shape[:2])
            work = image.copy()
            work[painted] = _MASK_FILL
        return people

    def _restart_tracking_if_needed(self, batch: FrameBatch) -> None:
        frames = np.asarray(batch.frames)
        key = (batch.sequence.key, batch.camera.name)
        if self._last is None or self._last[:2] != key or (len(frames) and frames[0] <= self._last[2]):
            self._holistic.reset()
        if len(frames):
            self._last = (*key, int(frames[-1]))

    def close(self) -> None:
        """Release the Holistic graph (idempotent)."""
        self._finalizer()
        self._holistic = None

    def __enter__(self) -> MediaPipeHolisticDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
