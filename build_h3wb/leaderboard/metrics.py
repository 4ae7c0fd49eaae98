"""MPJPE metrics of the H3WB (ICCV 2023) leaderboard, plus an unofficial Procrustes-aligned MPJPE.

Every official metric centres prediction and ground truth on the mid-hip (mean of the left and right hip) and
averages the Euclidean joint errors over samples and the joints of a part (``skeleton.REPORT_PARTS``): whole body,
body (with feet), face, hands. The aligned face centres both faces on the nose instead; the aligned hands centre
each hand on its own root (wrist keypoint of the hand), and the two hands' errors are averaged. No rotation or scale
is removed by any official metric. :func:`pa_mpjpe` (Procrustes with scale, per sample) is NOT an official H3WB
metric and is reported only as a diagnostic.

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


def check_poses(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction / ground-truth pair and return both as float64.

    Args:
        pred: (N, J, 3) predicted keypoints, millimetres.
        gt: (N, J, 3) ground-truth keypoints, millimetres.

    Returns:
        ``pred`` and ``gt`` as float64 arrays.

    Raises:
        ValueError: on a shape other than (N, J, 3) with ``N >= 1`` and ``J = skeleton.NUM_KEYPOINTS``, on
            differing shapes, or on a non-finite value (the message says how many samples and values).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    J = skeleton.NUM_KEYPOINTS
    for name, a in (("pred", pred), ("gt", gt)):
        if a.ndim != 3 or a.shape[1:] != (J, 3) or a.shape[0] < 1:
            raise ValueError(f"{name} must have shape (N, J, 3) = (N, {J}, 3) with N >= 1, got {a.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: pred {pred.shape}, gt {gt.shape}")
    for name, a in (("pred", pred), ("gt", gt)):
        bad = ~np.isfinite(a)  # (N, J, 3)
        if bad.any():
            n_samples = int(bad.any(axis=(1, 2)).sum())
            kind = "NaN" if np.isnan(a).any() else "non-finite"
            raise ValueError(f"{name} contains {kind} values: {int(bad.sum())} values in {n_samples} of "
                             f"{a.shape[0]} samples (first sample index {int(np.argmax(bad.any(axis=(1, 2))))})")
    return pred, gt


def _mid_hip_centred(x: np.ndarray) -> np.ndarray:
    """(N, J, 3) -> (N, J, 3) minus the mid-hip, the mean of the left and right hip."""
    hips = x[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]]  # (N, 2, 3)
    return x - hips.mean(axis=1, keepdims=True)


def _mean_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean Euclidean distance over samples and joints of (N, K, 3) arrays."""
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


def _part_mpjpe(pred: np.ndarray, gt: np.ndarray, part: str) -> float:
    pred, gt = check_poses(pred, gt)
    sl = skeleton.REPORT_PARTS[part]
    return _mean_error(_mid_hip_centred(pred)[:, sl], _mid_hip_centred(gt)[:, sl])


def mpjpe_whole(pred: np.ndarray, gt: np.ndarray) -> float:
    """Whole-body MPJPE (all J keypoints), mid-hip centred, as the H3WB leaderboard.

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        Mean joint error in millimetres over the N samples and J keypoints.
    """
    return _part_mpjpe(pred, gt, "whole")


def mpjpe_body(pred: np.ndarray, gt: np.ndarray) -> float:
    """Body MPJPE (body and feet keypoints, ``REPORT_PARTS["body"]``), mid-hip centred, as the H3WB leaderboard.

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        Mean joint error in millimetres over samples and body keypoints.
    """
    return _part_mpjpe(pred, gt, "body")


def mpjpe_face(pred: np.ndarray, gt: np.ndarray) -> float:
    """Face MPJPE (the 68 face keypoints), mid-hip centred (so it includes the head's position error).

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        Mean joint error in millimetres over samples and face keypoints.
    """
    return _part_mpjpe(pred, gt, "face")


def mpjpe_hands(pred: np.ndarray, gt: np.ndarray) -> float:
    """Hands MPJPE (both hands' keypoints), mid-hip centred (so it includes the wrists' position error).

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        Mean joint error in millimetres over samples and hand keypoints.
    """
    return _part_mpjpe(pred, gt, "hands")


def mpjpe_face_aligned(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aligned-face MPJPE: the face keypoints centred on the nose, in prediction and ground truth alike.

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        Mean joint error in millimetres over samples and face keypoints (the nose is not a face keypoint).
    """
    pred, gt = check_poses(pred, gt)
    face, nose = skeleton.REPORT_PARTS["face"], slice(skeleton.NOSE, skeleton.NOSE + 1)
    return _mean_error(pred[:, face] - pred[:, nose], gt[:, face] - gt[:, nose])


def mpjpe_hands_aligned(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aligned-hands MPJPE: each hand centred on its own root; the left and right hands' MPJPEs averaged.

    The root itself (error 0 after centring) is counted among each hand's keypoints, as the leaderboard does.

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        ``(MPJPE_left + MPJPE_right) / 2`` in millimetres.
    """
    pred, gt = check_poses(pred, gt)
    errors = []
    for hand, root in (("left_hand", skeleton.LEFT_HAND_ROOT), ("right_hand", skeleton.RIGHT_HAND_ROOT)):
        sl, r = skeleton.PARTS[hand], slice(root, root + 1)
        errors.append(_mean_error(pred[:, sl] - pred[:, r], gt[:, sl] - gt[:, r]))
    return float(np.mean(errors))


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-align each predicted point set to its ground truth (rotation, translation, scale; Umeyama 1991).

    Args:
        pred: (N, K, 3) points.
        gt: (N, K, 3) points, same units.

    Returns:
        (N, K, 3) ``s R pred + t`` minimising the squared distance to ``gt`` per sample (proper rotation, no
        reflection).
    """
    mu_p, mu_g = pred.mean(axis=1, keepdims=True), gt.mean(axis=1, keepdims=True)  # (N, 1, 3)
    p, g = pred - mu_p, gt - mu_g  # (N, K, 3)
    cov = np.einsum("nki,nkj->nij", g, p)  # (N, 3, 3) sum_k g_k p_k^T
    U, S, Vt = np.linalg.svd(cov)  # (N, 3, 3), (N, 3), (N, 3, 3)
    sign = np.sign(np.linalg.det(U @ Vt))  # (N,)
    sign[sign == 0] = 1.0
    D = np.ones_like(S)
    D[:, -1] = sign  # (N, 3)
    R = U @ (D[:, :, None] * Vt)  # (N, 3, 3) U diag(D) Vt
    var_p = (p**2).sum(axis=(1, 2))  # (N,)
    scale = (S * D).sum(axis=1) / np.where(var_p > 0, var_p, 1.0)  # (N,)
    return scale[:, None, None] * np.einsum("nij,nkj->nki", R, p) + mu_g


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray, part: str = "whole") -> float:
    """Procrustes-aligned MPJPE on one part: NOT an official H3WB metric (the leaderboard removes no rotation).

    Each sample's part is aligned to the ground truth with rotation, translation and scale
    (:func:`procrustes_align`) before the errors are averaged.

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.
        part: a key of ``skeleton.REPORT_PARTS`` (``whole``, ``body``, ``face``, ``hands``).

    Returns:
        Mean joint error in millimetres after per-sample similarity alignment.
    """
    if part not in skeleton.REPORT_PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {list(skeleton.REPORT_PARTS)}")
    pred, gt = check_poses(pred, gt)
    sl = skeleton.REPORT_PARTS[part]
    return _mean_error(procrustes_align(pred[:, sl], gt[:, sl]), gt[:, sl])


def score_all(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every metric of this module.

    Args:
        pred: (N, J, 3) millimetres.
        gt: (N, J, 3) millimetres.

    Returns:
        Millimetres by key: the official ``whole``, ``body``, ``face``, ``hands``, ``face_aligned``,
        ``hands_aligned`` (:data:`OFFICIAL_KEYS`) and the unofficial ``pa_whole`` (:data:`UNOFFICIAL_KEYS`).
    """
    pred, gt = check_poses(pred, gt)
    return {
        "whole": mpjpe_whole(pred, gt),
        "body": mpjpe_body(pred, gt),
        "face": mpjpe_face(pred, gt),
        "hands": mpjpe_hands(pred, gt),
        "face_aligned": mpjpe_face_aligned(pred, gt),
        "hands_aligned": mpjpe_hands_aligned(pred, gt),
        "pa_whole": pa_mpjpe(pred, gt, "whole"),
    }
