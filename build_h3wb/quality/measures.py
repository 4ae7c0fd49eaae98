"""Measures of built 3D poses that need no ground truth: what a real capture can report about itself.

A person's bones keep their length, a keypoint cannot jump between frames at video rates, a good 3D keypoint
projects onto what the detector saw, and a dataset is only as useful as it is complete. So, per sequence:

- **bone-length CV**: per bone, the coefficient of variation (standard deviation / mean) of its length over the
  sequence's frames (:data:`BODY_BONES`: upper arms, forearms, thighs, shins, shoulder and hip widths);
- **frames with a bone off**: the share of frames in which some bone is more than ``tolerance`` (30%) longer or
  shorter than the subject's median length of that bone (the median over all the subject's frames);
- **reprojection error** per part: the pixel distance between each 3D keypoint projected into a view and the
  detection there (views whose detection scores at least ``min_score``);
- **jitter** per part: the mean acceleration ``|X[t+1] - 2 X[t] + X[t-1]|`` in millimetres per selected frame
  squared, over triples of equally spaced selected frames;
- **coverage** per part: the share of keypoints built (not NaN).

Every function takes arrays and returns arrays (NaN = missing). ``build_h3wb.stages.evaluate`` writes them for every
build, with or without ground truth (``evaluate/<stage>_measures.{json,md}``).
"""

from __future__ import annotations

import warnings

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import Rig

#: The 10 body bones whose lengths are checked, as (name, (keypoint, keypoint)).
BODY_BONES: tuple[tuple[str, tuple[str, str]], ...] = (
    ("left_upper_arm", ("left_shoulder", "left_elbow")),
    ("right_upper_arm", ("right_shoulder", "right_elbow")),
    ("left_forearm", ("left_elbow", "left_wrist")),
    ("right_forearm", ("right_elbow", "right_wrist")),
    ("left_thigh", ("left_hip", "left_knee")),
    ("right_thigh", ("right_hip", "right_knee")),
    ("left_shin", ("left_knee", "left_ankle")),
    ("right_shin", ("right_knee", "right_ankle")),
    ("shoulder_width", ("left_shoulder", "right_shoulder")),
    ("hip_width", ("left_hip", "right_hip")),
)
BONE_NAMES = tuple(name for name, _ in BODY_BONES)
_BONE_INDEX = np.array([[skeleton.index(a), skeleton.index(b)] for _, (a, b) in BODY_BONES])  # (B, 2)
#: A bone this much (as a share) longer or shorter than the subject's median counts as off.
OFF_TOLERANCE = 0.3


def _check_poses(X: np.ndarray) -> None:
    if X.ndim != 3 or X.shape[1:] != (skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected poses (T, {skeleton.NUM_KEYPOINTS}, 3), got shape {X.shape}")


def bone_lengths(X: np.ndarray) -> np.ndarray:
    """Lengths of :data:`BODY_BONES`.

    Args:
        X: (T, J, 3) poses, world millimetres, NaN where missing.

    Returns:
        (T, B) millimetres, NaN where an end is missing.
    """
    _check_poses(X)
    return np.linalg.norm(X[:, _BONE_INDEX[:, 0]] - X[:, _BONE_INDEX[:, 1]], axis=-1)


def bone_length_cv(lengths: np.ndarray, min_frames: int = 2) -> np.ndarray:
    """Per bone, standard deviation over mean of its length over the frames.

    Args:
        lengths: (T, B) millimetres, NaN where missing.
        min_frames: a bone measured in fewer frames gets NaN.

    Returns:
        (B,) dimensionless coefficients of variation.
    """
    n = np.isfinite(lengths).sum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bones never measured
        cv = np.nanstd(lengths, axis=0) / np.nanmean(lengths, axis=0)
    return np.where(n >= min_frames, cv, np.nan)


def bones_off(lengths: np.ndarray, reference: np.ndarray, tolerance: float = OFF_TOLERANCE) -> np.ndarray:
    """Which bones are more than ``tolerance`` (a share) off their reference length.

    Args:
        lengths: (T, B) millimetres, NaN where missing.
        reference: (B,) the subject's reference lengths (e.g. the median over all its frames), millimetres.
        tolerance: allowed relative deviation.

    Returns:
        (T, B) bool (False where the bone is missing).
    """
    with np.errstate(invalid="ignore"):
        return np.abs(lengths / reference[None] - 1.0) > tolerance


def reprojection_errors(X: np.ndarray, keypoints_2d: np.ndarray, rig: Rig, min_score: float = 0.3) -> np.ndarray:
    """Pixel distance between projected 3D keypoints and the detections.

    Args:
        X: (T, J, 3) poses, world millimetres, NaN where missing.
        keypoints_2d: (C, T, J, 3) detections ``[x, y, score]`` in pixels (distorted image coordinates), NaN where
            missing.
        rig: the C calibrated views.
        min_score: detections below this confidence are not compared.

    Returns:
        (C, T, J) pixels, NaN where the keypoint is not built or not detected.
    """
    _check_poses(X)
    C = len(rig)
    if keypoints_2d.shape != (C,) + X.shape:
        raise ValueError(f"expected detections (C, T, J, 3) = {(C,) + X.shape}, got {keypoints_2d.shape}")
    out = np.full(keypoints_2d.shape[:-1], np.nan)
    for c, cam in enumerate(rig):
        uv = cam.project(X)  # (T, J, 2)
        with np.errstate(invalid="ignore"):
            seen = keypoints_2d[c, ..., 2] >= min_score
        err = np.linalg.norm(uv - keypoints_2d[c, ..., :2], axis=-1)
        out[c] = np.where(seen, err, np.nan)
    return out


def jitter(X: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Acceleration magnitude of every keypoint, over equally spaced selected frames.

    Args:
        X: (T, J, 3) poses, world millimetres, NaN where missing.
        frames: (T,) frame numbers (increasing).

    Returns:
        (T - 2, J) millimetres per selected frame squared at the middle frames, NaN where a keypoint is missing in
        one of the three frames or the frames are not equally spaced (a gap).
    """
    _check_poses(X)
    frames = np.asarray(frames)
    if frames.shape != (len(X),):
        raise ValueError(f"expected frames (T,) = ({len(X)},), got {frames.shape}")
    if len(X) < 3:
        return np.full((0, X.shape[1]), np.nan)
    acc = np.linalg.norm(X[2:] - 2.0 * X[1:-1] + X[:-2], axis=-1)  # (T - 2, J)
    even = (frames[2:] - frames[1:-1]) == (frames[1:-1] - frames[:-2])
    return np.where(even[:, None], acc, np.nan)


def coverage(X: np.ndarray) -> np.ndarray:
    """(J,) share of frames in which each keypoint is built, from (T, J, 3) poses (NaN = missing)."""
    _check_poses(X)
    return np.isfinite(X).all(-1).mean(0) if len(X) else np.zeros(X.shape[1])


def _nan_stat(fn, values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return round(float(fn(values)), 4) if values.size else None


def part_summary(per_keypoint: np.ndarray, stat: str = "mean") -> dict[str, float | None]:
    """Pool a per-keypoint array (..., J) over the report parts (whole, body, face, hands): mean or median."""
    fn = np.mean if stat == "mean" else np.median
    out = {"whole": _nan_stat(fn, per_keypoint.ravel())}
    for part, sl in skeleton.REPORT_PARTS.items():
        if part != "whole":
            out[part] = _nan_stat(fn, per_keypoint[..., sl].ravel())
    return out


def sequence_measures(
    X: np.ndarray,
    frames: np.ndarray,
    reference: np.ndarray,
    keypoints_2d: np.ndarray | None = None,
    rig: Rig | None = None,
    min_score: float = 0.3,
    tolerance: float = OFF_TOLERANCE,
) -> dict:
    """All the measures of one sequence, as plain numbers.

    Args:
        X: (T, J, 3) poses, world millimetres, NaN where missing.
        frames: (T,) frame numbers.
        reference: (B,) the subject's median bone lengths, millimetres (see :func:`bone_lengths`).
        keypoints_2d: (C, T, J, 3) detections for the reprojection error, or None to leave it out.
        rig: the C views (with ``keypoints_2d``).
        min_score: detections below this confidence are not compared.
        tolerance: see :func:`bones_off`.

    Returns:
        ``frames``, ``bone_cv`` (bone -> CV), ``bone_cv_median``, ``frames_bone_off_share`` (over frames with at
        least one bone measured), ``reprojection_px`` (part -> mean and median), ``jitter_mm`` (part -> mean),
        ``coverage`` (part -> share).
    """
    lengths = bone_lengths(X)
    cv = bone_length_cv(lengths)
    measured = np.isfinite(lengths).any(1)
    off = bones_off(lengths, reference, tolerance).any(1) & measured
    out: dict = {
        "frames": int(len(X)),
        "bone_cv": {b: (None if not np.isfinite(v) else round(float(v), 4)) for b, v in zip(BONE_NAMES, cv)},
        "bone_cv_median": _nan_stat(np.median, cv),
        "frames_bone_off_share": round(float(off.sum() / measured.sum()), 4) if measured.any() else None,
        "frames_bone_off": int(off.sum()),
        "frames_measured": int(measured.sum()),
    }
    if keypoints_2d is not None and rig is not None:
        err = reprojection_errors(X, keypoints_2d, rig, min_score)
        out["reprojection_px"] = {"mean": part_summary(err, "mean"), "median": part_summary(err, "median")}
    out["jitter_mm"] = part_summary(jitter(X, frames), "mean")
    out["coverage"] = part_summary(np.isfinite(X).all(-1).astype(float), "mean")
    return out


def subject_reference(lengths: list[np.ndarray]) -> np.ndarray:
    """(B,) median bone lengths over all of a subject's frames, from its sequences' (T_i, B) lengths."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bones never measured: NaN
        return np.nanmedian(np.concatenate(lengths), axis=0) if lengths else np.full(len(BODY_BONES), np.nan)


def pool(per_sequence: list[dict]) -> dict:
    """Pool sequence measures (weighted by frames): the build's numbers."""
    if not per_sequence:
        return {}
    w = np.array([m["frames"] for m in per_sequence], dtype=float)

    def wmean(values: list[float | None]) -> float | None:
        v = np.array([np.nan if x is None else x for x in values], dtype=float)
        ok = np.isfinite(v) & (w > 0)
        return round(float((v[ok] * w[ok]).sum() / w[ok].sum()), 4) if ok.any() else None

    out: dict = {"sequences": len(per_sequence), "frames": int(w.sum())}
    out["bone_cv"] = {b: wmean([m["bone_cv"][b] for m in per_sequence]) for b in BONE_NAMES}
    cvs = np.array([np.nan if v is None else v for v in out["bone_cv"].values()], dtype=float)
    out["bone_cv_median"] = _nan_stat(np.median, cvs)
    off, measured = sum(m["frames_bone_off"] for m in per_sequence), sum(m["frames_measured"] for m in per_sequence)
    out["frames_bone_off_share"] = round(off / measured, 4) if measured else None
    if all("reprojection_px" in m for m in per_sequence):
        out["reprojection_px_mean"] = {p: wmean([m["reprojection_px"]["mean"][p] for m in per_sequence])
                                       for p in per_sequence[0]["reprojection_px"]["mean"]}
        out["reprojection_px_median"] = {p: wmean([m["reprojection_px"]["median"][p] for m in per_sequence])
                                         for p in per_sequence[0]["reprojection_px"]["median"]}
    out["jitter_mm"] = {p: wmean([m["jitter_mm"][p] for m in per_sequence]) for p in per_sequence[0]["jitter_mm"]}
    out["coverage"] = {p: wmean([m["coverage"][p] for m in per_sequence]) for p in per_sequence[0]["coverage"]}
    return out
