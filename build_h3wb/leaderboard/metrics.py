"""The one metrics module: the MPJPE variants of the H3WB (ICCV 2023) leaderboard, for the scorer and ``evaluate``.

Both the leaderboard scorer (:mod:`build_h3wb.leaderboard.scoring`) and the accuracy statistics of the build
(:mod:`build_h3wb.evaluation`, ``stage=evaluate``) take their per-keypoint errors from :func:`keypoint_errors`;
the centrings live only in :func:`centred`:

- ``absolute``: no centring (the position error in the arrays' frame);
- ``root_relative``: both poses minus their own mid-hip (mean of the left and right hip), as the leaderboard scores
  whole body, body (with feet), face and hands (``skeleton.REPORT_PARTS``);
- ``face_aligned``: the face keypoints minus the nose;
- ``hands_aligned``: each hand's keypoints minus its own root (the hand's wrist keypoint); the leaderboard averages
  the left and the right hand's MPJPE.

No rotation or scale is removed by any official metric. :func:`pa_mpjpe` (Procrustes with scale, per sample) is NOT
an official H3WB metric and is reported only as a diagnostic.

NaN policy (the same for every caller). NaN marks a missing coordinate. A keypoint's error is NaN when the keypoint
or the centre its variant subtracts is missing in the prediction or the ground truth; every mean is over the finite
errors only (:func:`part_mean` also returns how many). On complete arrays this is exactly the official
``test_score``. The leaderboard scorer in addition refuses non-finite predictions or ground truth
(:func:`check_complete`), because a leaderboard entry has every keypoint; ``evaluate`` scores the keypoints that were
built and reports the share built.

Inputs are ``pred`` and ``gt`` of shape (N, J, 3) in millimetres, any common frame (H3WB: the world pose rotated
into the camera's axes), ``J = skeleton.NUM_KEYPOINTS`` in COCO-WholeBody order; every result is in millimetres.
"""

from __future__ import annotations

import numpy as np

from build_h3wb import skeleton

#: Keys of :func:`score_all` that the H3WB leaderboard reports, in its column order.
OFFICIAL_KEYS: tuple[str, ...] = ("whole", "body", "face", "hands", "face_aligned", "hands_aligned")
#: Keys of :func:`score_all` that are NOT official H3WB metrics.
UNOFFICIAL_KEYS: tuple[str, ...] = ("pa_whole",)
#: The centring variants of :func:`centred` and :func:`keypoint_errors`.
VARIANTS: tuple[str, ...] = ("absolute", "root_relative", "face_aligned", "hands_aligned")
#: The keypoints each variant scores (the others are NaN in :func:`keypoint_errors`).
VARIANT_PARTS: dict[str, slice] = {
    "absolute": skeleton.REPORT_PARTS["whole"],
    "root_relative": skeleton.REPORT_PARTS["whole"],
    "face_aligned": skeleton.PARTS["face"],
    "hands_aligned": skeleton.PARTS["hands"],
}


def check_poses(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the shapes of a prediction / ground-truth pair and return both as float64 (NaN allowed).

    Args:
        pred: (N, J, 3) predicted keypoints, millimetres, NaN where missing.
        gt: (N, J, 3) ground-truth keypoints, millimetres, NaN where missing.

    Returns:
        ``pred`` and ``gt`` as float64 arrays.

    Raises:
        ValueError: on a shape other than (N, J, 3) with ``N >= 1`` and ``J = skeleton.NUM_KEYPOINTS``, or on
            differing shapes.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    J = skeleton.NUM_KEYPOINTS
    for name, a in (("pred", pred), ("gt", gt)):
        if a.ndim != 3 or a.shape[1:] != (J, 3) or a.shape[0] < 1:
            raise ValueError(f"{name} must have shape (N, J, 3) = (N, {J}, 3) with N >= 1, got {a.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: pred {pred.shape}, gt {gt.shape}")
    return pred, gt


def check_complete(pred: np.ndarray, gt: np.ndarray) -> None:
    """Raise ValueError when ``pred`` or ``gt`` (N, J, 3) holds a non-finite value (the leaderboard's input rule).

    The message says how many values and samples, and the first sample's index.
    """
    for name, a in (("pred", np.asarray(pred)), ("gt", np.asarray(gt))):
        bad = ~np.isfinite(a)  # (N, J, 3)
        if bad.any():
            n_samples = int(bad.any(axis=(1, 2)).sum())
            kind = "NaN" if np.isnan(a).any() else "non-finite"
            raise ValueError(f"{name} contains {kind} values: {int(bad.sum())} values in {n_samples} of "
                             f"{a.shape[0]} samples (first sample index {int(np.argmax(bad.any(axis=(1, 2))))}); "
                             "the leaderboard scores complete poses only")


def centred(x: np.ndarray, variant: str) -> np.ndarray:
    """Centre poses as a metric variant does (the only implementation of the leaderboard centrings).

    Args:
        x: (..., J, 3) keypoints, millimetres, NaN where missing.
        variant: one of :data:`VARIANTS`.

    Returns:
        (..., J, 3): ``absolute`` unchanged; ``root_relative`` minus the mid-hip; ``face_aligned`` the face minus the
        nose; ``hands_aligned`` each hand minus its root. Keypoints outside :data:`VARIANT_PARTS` are NaN, and so is
        every keypoint whose centre is missing.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-2:] != (skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected (..., {skeleton.NUM_KEYPOINTS}, 3) keypoints, got shape {x.shape}")
    if variant == "absolute":
        return x
    if variant == "root_relative":
        return x - skeleton.root(x)[..., None, :]
    out = np.full_like(x, np.nan)
    if variant == "face_aligned":
        face = skeleton.PARTS["face"]
        out[..., face, :] = x[..., face, :] - x[..., skeleton.NOSE, None, :]
        return out
    if variant == "hands_aligned":
        for hand, root in (("left_hand", skeleton.LEFT_HAND_ROOT), ("right_hand", skeleton.RIGHT_HAND_ROOT)):
            sl = skeleton.PARTS[hand]
            out[..., sl, :] = x[..., sl, :] - x[..., root, None, :]
        return out
    raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")


def keypoint_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Per-keypoint errors of every variant.

    Args:
        pred: (N, J, 3) keypoints, millimetres, NaN where missing.
        gt: (N, J, 3) ground truth, millimetres, NaN where missing.

    Returns:
        variant -> (N, J) Euclidean error in mm, NaN where the keypoint (or its variant's centre) is missing and
        outside the variant's part (:data:`VARIANT_PARTS`).
    """
    pred, gt = check_poses(pred, gt)
    return {v: np.linalg.norm(centred(pred, v) - centred(gt, v), axis=-1) for v in VARIANTS}


def part_mean(errors: np.ndarray, part: slice) -> tuple[float, int]:
    """Mean of the finite errors of one part (the NaN policy of this module).

    Args:
        errors: (N, J) errors in mm (a variant of :func:`keypoint_errors`).
        part: keypoint slice.

    Returns:
        ``(mean, count)``: the mean over samples and the part's keypoints with a finite error (NaN if none), and
        how many there were.
    """
    e = errors[:, part]
    ok = np.isfinite(e)
    n = int(ok.sum())
    return (float(e[ok].mean()) if n else float("nan")), n


def official_scores(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """The official metrics (:data:`OFFICIAL_KEYS`, mm) from the per-keypoint errors of :func:`keypoint_errors`."""
    return {key: official_score(errors, key) for key in OFFICIAL_KEYS}


def official_score(errors: dict[str, np.ndarray], key: str) -> float:
    """One official metric (a key of :data:`OFFICIAL_KEYS`, mm) from the errors of :func:`keypoint_errors`."""
    if key in skeleton.REPORT_PARTS:
        return part_mean(errors["root_relative"], skeleton.REPORT_PARTS[key])[0]
    if key == "face_aligned":
        return part_mean(errors["face_aligned"], skeleton.PARTS["face"])[0]
    if key == "hands_aligned":
        return hands_aligned_mean(errors["hands_aligned"])
    raise ValueError(f"unknown metric {key!r}; expected one of {list(OFFICIAL_KEYS)}")


def _official(pred: np.ndarray, gt: np.ndarray, key: str) -> float:
    return official_score(keypoint_errors(pred, gt), key)


def hands_aligned_mean(errors: np.ndarray) -> float:
    """The leaderboard's aligned-hands number: ``(MPJPE_left + MPJPE_right) / 2`` of (N, J) ``hands_aligned`` errors.

    The root itself (error 0 after centring) is counted among each hand's keypoints, as the leaderboard does.
    """
    left = part_mean(errors, skeleton.PARTS["left_hand"])[0]
    right = part_mean(errors, skeleton.PARTS["right_hand"])[0]
    return float(np.nanmean([left, right])) if np.isfinite([left, right]).any() else float("nan")


def mpjpe_whole(pred: np.ndarray, gt: np.ndarray) -> float:
    """Whole-body MPJPE (all J keypoints), mid-hip centred, as the H3WB leaderboard; (N, J, 3) mm in, mm out."""
    return _official(pred, gt, "whole")


def mpjpe_body(pred: np.ndarray, gt: np.ndarray) -> float:
    """Body MPJPE (body and feet, ``REPORT_PARTS["body"]``), mid-hip centred; (N, J, 3) mm in, mm out."""
    return _official(pred, gt, "body")


def mpjpe_face(pred: np.ndarray, gt: np.ndarray) -> float:
    """Face MPJPE (68 face keypoints), mid-hip centred (so with the head's position error); (N, J, 3) mm in."""
    return _official(pred, gt, "face")


def mpjpe_hands(pred: np.ndarray, gt: np.ndarray) -> float:
    """Hands MPJPE (both hands), mid-hip centred (so with the wrists' position error); (N, J, 3) mm in, mm out."""
    return _official(pred, gt, "hands")


def mpjpe_face_aligned(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aligned-face MPJPE: the face keypoints centred on the nose in both; (N, J, 3) mm in, mm out."""
    return _official(pred, gt, "face_aligned")


def mpjpe_hands_aligned(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aligned-hands MPJPE: each hand centred on its root, left and right MPJPE averaged; (N, J, 3) mm in."""
    return _official(pred, gt, "hands_aligned")


def procrustes_align(pred: np.ndarray, gt: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Similarity-align each predicted point set to its ground truth (rotation, translation, scale; Umeyama 1991).

    Args:
        pred: (N, K, 3) points, finite where ``weights`` > 0.
        gt: (N, K, 3) points, same units.
        weights: (N, K) non-negative point weights (None: all 1); a point of weight 0 does not take part.

    Returns:
        (N, K, 3) ``s R pred + t`` minimising the weighted squared distance to ``gt`` per sample (proper rotation,
        no reflection).
    """
    w = np.ones(pred.shape[:2]) if weights is None else np.asarray(weights, dtype=np.float64)  # (N, K)
    p0, g0 = np.where(w[..., None] > 0, pred, 0.0), np.where(w[..., None] > 0, gt, 0.0)
    total = np.maximum(w.sum(axis=1), 1e-12)[:, None, None]  # (N, 1, 1)
    mu_p = (w[..., None] * p0).sum(axis=1, keepdims=True) / total  # (N, 1, 3)
    mu_g = (w[..., None] * g0).sum(axis=1, keepdims=True) / total
    p, g = p0 - mu_p, g0 - mu_g  # (N, K, 3)
    cov = np.einsum("nk,nki,nkj->nij", w, g, p)  # (N, 3, 3) sum_k w_k g_k p_k^T
    U, S, Vt = np.linalg.svd(cov)  # (N, 3, 3), (N, 3), (N, 3, 3)
    sign = np.sign(np.linalg.det(U @ Vt))  # (N,)
    sign[sign == 0] = 1.0
    D = np.ones_like(S)
    D[:, -1] = sign  # (N, 3)
    R = U @ (D[:, :, None] * Vt)  # (N, 3, 3) U diag(D) Vt
    var_p = (w[..., None] * p**2).sum(axis=(1, 2))  # (N,)
    scale = (S * D).sum(axis=1) / np.where(var_p > 0, var_p, 1.0)  # (N,)
    return scale[:, None, None] * np.einsum("nij,nkj->nki", R, pred - mu_p) + mu_g


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray, part: str = "whole") -> float:
    """Procrustes-aligned MPJPE on one part: NOT an official H3WB metric (the leaderboard removes no rotation).

    Each sample's part is aligned to the ground truth with rotation, translation and scale
    (:func:`procrustes_align`, on the keypoints present in both) before the finite errors are averaged.

    Args:
        pred: (N, J, 3) millimetres, NaN where missing.
        gt: (N, J, 3) millimetres, NaN where missing.
        part: a key of ``skeleton.REPORT_PARTS`` (``whole``, ``body``, ``face``, ``hands``).

    Returns:
        Mean joint error in millimetres after per-sample similarity alignment.
    """
    if part not in skeleton.REPORT_PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {list(skeleton.REPORT_PARTS)}")
    pred, gt = check_poses(pred, gt)
    sl = skeleton.REPORT_PARTS[part]
    ok = (np.isfinite(pred[:, sl]) & np.isfinite(gt[:, sl])).all(axis=-1)  # (N, K)
    aligned = procrustes_align(pred[:, sl], gt[:, sl], ok.astype(np.float64))
    e = np.linalg.norm(aligned - gt[:, sl], axis=-1)[ok]
    return float(e.mean()) if e.size else float("nan")


def score_all(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every metric of this module.

    Args:
        pred: (N, J, 3) millimetres, NaN where missing (see the module's NaN policy).
        gt: (N, J, 3) millimetres, NaN where missing.

    Returns:
        Millimetres by key: the official ``whole``, ``body``, ``face``, ``hands``, ``face_aligned``,
        ``hands_aligned`` (:data:`OFFICIAL_KEYS`) and the unofficial ``pa_whole`` (:data:`UNOFFICIAL_KEYS`).
    """
    pred, gt = check_poses(pred, gt)
    return {**official_scores(keypoint_errors(pred, gt)), "pa_whole": pa_mpjpe(pred, gt, "whole")}
