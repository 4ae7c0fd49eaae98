"""Hand and face refinement: part shape models as priors for a second, model-aware triangulation.

Detectors are weakest on hands and faces: keypoints are small, often seen by one or two views, and noisy. This
module learns a low-rank shape model per part (face, left hand, right hand) from the best complete poses, fits it
to every frame using all the 2D evidence, and re-triangulates each part keypoint with the fitted model as a prior.

1. :func:`fit_part_models`: generalized Procrustes alignment (Gower, *Psychometrika* 40, 1975) of the part's
   keypoints over the training poses (rigid, or similarity for models pooled over subjects), then PCA of the aligned
   shapes; a :class:`PartModel` holds the mean shape, the leading components and their variances.
2. Per frame (:func:`refine_sequence`), the model ``X_j = s R (mean_j + sum_r c_r basis_rj) + t`` is fitted to the
   detections: the rotation (and scale) by weighted Kabsch alignment (Umeyama, *TPAMI* 13(4), 1991) to the
   triangulated part keypoints, then the translation and the shape coefficients ``c`` by linear least squares on the
   DLT rows of every view (Hartley and Zisserman, *Multiple View Geometry*, Sec. 12.2), so that a keypoint seen by a
   single view still constrains the fit along its ray; ``c`` is ridge-regularised towards zero (or towards its
   temporal average over neighbouring frames). The steps alternate a few times, with Huber weights on the
   reprojection residuals.
3. Each keypoint is solved again from its views and the fitted model position ``X_prior``:
   ``min_X sum_c w_c^2 |A_c X - b_c|^2 + lambda |X - X_prior|^2``, a 3x3 system per point. The DLT rows are in
   normalised coordinates, so a residual is the lateral offset in millimetres at the point's depth and ``lambda`` is
   the prior's weight in "views of score 1". The weight fades with the keypoint's own data strength
   ``sum_c w_c^2`` (``trust_views``): a keypoint seen well by three or four views stays where its data put it (its
   reprojection error barely changes), one seen by one or two views moves towards the model (a single view: along
   its ray), one seen by none takes the model's position.

Views that the robust triangulation rejected (not in ``views_used``) stay excluded; for keypoints that were not
triangulated, single views that disagree with the fitted model by more than ``outlier_threshold_px`` are dropped.
A part in a frame with fewer than ``min_points`` triangulated keypoints gets no prior and is returned unchanged
(e.g. a hand seen by one view only); keypoints that nothing constrains stay NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from build_h3wb import skeleton
from build_h3wb.geometry.alignment import umeyama
from build_h3wb.geometry.cameras import Rig
from build_h3wb.geometry.triangulation import normal_equations, reprojection_residuals, view_mask

log = logging.getLogger(__name__)

#: Parts refined by default.
REFINED_PARTS: tuple[str, ...] = ("face", "left_hand", "right_hand")
#: Default number of shape components per part: the face is nearly rigid (jaw, lips), hands articulate.
DEFAULT_RANKS: dict[str, int] = {"face": 2, "left_hand": 6, "right_hand": 6}


@dataclass(frozen=True, eq=False)
class PartModel:
    """A low-rank linear shape model of one part, in its own (Procrustes) frame.

    Attributes:
        part: part name (a key of ``skeleton.PARTS``).
        keypoints: (K,) int indices of the part's keypoints in the whole-body layout.
        mean: (K, 3) mean shape, millimetres, centred on its centroid.
        basis: (R, K, 3) orthonormal shape components (as R vectors of length 3K), unitless.
        variances: (R,) variance of each component's coefficient over the training poses, mm^2.
        residual_rms: (K,) root-mean-square distance, mm, of the training shapes from their rank-R reconstruction.
        similarity: True if the model was aligned with scale (pooled subjects): fitting then estimates a scale.
        subject: the subject the model was learned from, or None if pooled.
        num_poses: number of training poses.
    """

    part: str
    keypoints: np.ndarray
    mean: np.ndarray
    basis: np.ndarray
    variances: np.ndarray
    residual_rms: np.ndarray
    similarity: bool = False
    subject: str | None = None
    num_poses: int = 0

    @property
    def rank(self) -> int:
        """Number of shape components R."""
        return int(self.basis.shape[0])

    def shape(self, coeffs: np.ndarray) -> np.ndarray:
        """Model shapes from coefficients: (..., R) -> (..., K, 3) mm, in the model frame."""
        return self.mean + np.einsum("...r,rkd->...kd", coeffs, self.basis)


# ----------------------------------------------------------------------------------------------------------------
# Model fitting
# ----------------------------------------------------------------------------------------------------------------


def fit_part_models(
    poses: np.ndarray,
    parts: Sequence[str] = REFINED_PARTS,
    ranks: Mapping[str, int] | None = None,
    *,
    similarity: bool = False,
    subject: str | None = None,
    iterations: int = 5,
) -> dict[str, PartModel]:
    """Learn a shape model per part from complete poses.

    Args:
        poses: (N, J, 3) world millimetres, the best complete poses of one subject (or pooled); poses with a NaN in
            a part are left out of that part's model.
        parts: part names to model (keys of ``skeleton.PARTS``).
        ranks: part -> number of PCA components (default :data:`DEFAULT_RANKS`, else 8); capped at N - 1 and 3K - 7.
        similarity: align with scale too (for pooled subjects, whose sizes differ); the fit then estimates a scale.
        subject: recorded in the models.
        iterations: generalized Procrustes iterations.

    Returns:
        part -> :class:`PartModel`.

    Raises:
        ValueError: wrong shape, unknown part, or fewer than 3 complete poses for a part.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected poses (N, {skeleton.NUM_KEYPOINTS}, 3), got {poses.shape}")
    ranks = {**DEFAULT_RANKS, **(ranks or {})}
    models = {}
    for part in parts:
        if part not in skeleton.PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {list(skeleton.PARTS)}")
        idx = np.arange(skeleton.PARTS[part].start, skeleton.PARTS[part].stop)
        X = poses[:, idx]  # (N, K, 3)
        X = X[np.isfinite(X).all((1, 2))]
        N, K = X.shape[:2]
        if N < 3:
            raise ValueError(f"part {part!r}: need at least 3 complete poses to learn a shape model, got {N}")
        X = X - X.mean(1, keepdims=True)
        ref = X[0]
        ones = np.ones((N, K))
        for _ in range(iterations):
            R, t, s = umeyama(X, np.broadcast_to(ref, X.shape), ones, scale=similarity)
            aligned = s[:, None, None] * np.einsum("bij,bkj->bki", R, X) + t[:, None]  # (N, K, 3)
            new_ref = aligned.mean(0)
            new_ref -= new_ref.mean(0)
            if similarity:  # keep the mean at the training poses' average size
                size = np.sqrt((X**2).sum((1, 2))).mean()
                new_ref *= size / np.sqrt((new_ref**2).sum())
            ref = new_ref
        mean = aligned.mean(0)  # (K, 3)
        dev = (aligned - mean).reshape(N, 3 * K)
        rank = int(min(ranks.get(part, 8), N - 1, 3 * K - 7))
        _, sv, Vt = np.linalg.svd(dev, full_matrices=False)
        basis = Vt[:rank].reshape(rank, K, 3)
        variances = sv[:rank] ** 2 / N
        coeffs = dev @ Vt[:rank].T  # (N, R)
        resid = dev - coeffs @ Vt[:rank]  # (N, 3K)
        residual_rms = np.sqrt((resid.reshape(N, K, 3) ** 2).sum(-1).mean(0))
        total = (sv**2).sum()
        log.debug("part %s: %d poses, rank %d explains %.2f%% of the shape variance, residual %.2f mm rms",
                  part, N, rank, 100 * variances.sum() * N / max(total, 1e-12), float(residual_rms.mean()))
        models[part] = PartModel(part=part, keypoints=idx, mean=mean, basis=basis, variances=variances,
                                 residual_rms=residual_rms, similarity=similarity, subject=subject, num_poses=N)
    return models


# ----------------------------------------------------------------------------------------------------------------
# Refinement
# ----------------------------------------------------------------------------------------------------------------


# The per-frame systems are tiny (3x3, 3+R): threaded LAPACK only costs time on them. On this project's shared 2-core
# machine one batched solve of 3000 9x9 systems took 59 s with OpenBLAS's two threads and 0.015 s with one.
@threadpool_limits.wrap(limits=1, user_api="blas")
def refine_sequence(
    kp3d: np.ndarray,
    detections: np.ndarray,
    rig: Rig,
    models: Mapping[str, PartModel],
    *,
    views_used: np.ndarray | None = None,
    filled: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    segments: np.ndarray | None = None,
    min_score: float = 0.3,
    prior_weight: float | None = None,
    temporal_window: int = 2,
    undistort_iterations: int = 5,
    noise_mm: float = 10.0,
    temporal_weight: float = 1.0,
    filled_weight: float = 0.1,
    outlier_threshold_px: float = 15.0,
    huber_px: float = 8.0,
    min_points: int = 4,
    iterations: int = 3,
    trust_views: float = 1.0,
    trust_power: float = 8.0,
    tolerance_mm: float = 0.01,
    keep_views: int = 0,
    keep_score: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine the parts that have a model (face, hands) in every frame of one sequence.

    Frames meet only in the last, temporal pass of the fit, which reads the coefficients of the frames within
    ``temporal_window`` of each frame: a frame's result depends on those frames alone, so a long recording can be
    refined in chunks that carry ``temporal_window`` frames of context on each side (and ``segments`` of the whole
    recording), with the same result as in one piece.

    Args:
        kp3d: (T, J, 3) world millimetres, NaN where unknown (triangulated, possibly completed).
        detections: (C, T, J, 3) ``[x, y, score]`` in pixels (distorted, as in the image), NaN where missing: the
            detect artifact's ``keypoints``.
        rig: the C cameras, in the order of the view axis.
        models: part -> :class:`PartModel` (from :func:`fit_part_models`); parts without a model are unchanged.
        views_used: (T, J) uint16 bitmask of the views the triangulation kept (bit c = view c); views outside it
            stay excluded where the keypoint was triangulated. None: every view above ``min_score`` that reprojects
            within ``outlier_threshold_px`` of ``kp3d`` (or of the model, where ``kp3d`` is NaN).
        filled: (T, J) bool keypoints filled by the completion network (no detection behind them): they count in
            the fit and the solve as a weak position observation of weight ``filled_weight``.
        frames: (T,) video frame numbers; runs of consecutive frames (the most common step) form the temporal
            windows. None: frames are not known to be consecutive and nothing is smoothed over time.
        segments: (T,) int run ids of consecutive frames, instead of ``frames`` (:func:`frame_segments` of the whole
            recording, sliced: what a chunk of a recording needs, whose own frames may have another usual step).
        min_score: detections below this confidence are not used.
        prior_weight: weight of the model prior, in views of score 1 (default 4.0), before the fade below.
        temporal_window: frames on each side over which the shape coefficients are averaged (0: none).
        undistort_iterations: fixed-point iterations of the undistortion.
        noise_mm: lateral detection noise (mm at the keypoint's depth, for a view of score 1) that sets the ridge
            on the shape coefficients, ``noise_mm^2 / variance``.
        temporal_weight: strength of the pull of the coefficients towards their temporal average, relative to the
            ridge towards zero.
        filled_weight: weight of a completed keypoint's position.
        outlier_threshold_px: single views of untriangulated keypoints further than this from the model are dropped.
        huber_px: Huber threshold on reprojection residuals while fitting the model.
        min_points: fewest triangulated keypoints of a part that give it a prior in a frame.
        iterations: alternations of rotation and linear shape fit.
        trust_views: data strength ``sum_c score_c^2`` over a keypoint's views at which the prior's weight has
            halved: the weight is ``prior_weight / (1 + (strength / trust_views)^trust_power)``, so a keypoint seen
            by three or four confident views keeps its triangulated position (``inf``: the prior is never faded).
        trust_power: how sharply the prior fades with the data strength.
        keep_views: if > 0, keypoints the detectors saw well (triangulated from at least ``keep_views`` views, every
            one scoring at least ``keep_score``) are kept exactly as triangulated, so their reprojection error cannot
            change; the prior fit still uses them.
        keep_score: see ``keep_views``.
        tolerance_mm: a keypoint counts as refined if it moved by more than this (or was NaN and is now built).

    Returns:
        ``refined`` (T, J, 3) world millimetres (body and feet bitwise unchanged) and ``refined_mask`` (T, J) bool.

    Raises:
        ValueError: inconsistent shapes or an unknown part.
    """
    kp3d = np.asarray(kp3d)
    T, J = kp3d.shape[:2]
    C = len(rig)
    if kp3d.shape != (T, skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected kp3d (T, {skeleton.NUM_KEYPOINTS}, 3), got {kp3d.shape}")
    if detections.shape != (C, T, J, 3):
        raise ValueError(f"expected detections (C, T, J, 3) = {(C, T, J, 3)} for rig {rig.name!r}, "
                         f"got {detections.shape}")
    for name, arr in (("views_used", views_used), ("filled", filled)):
        if arr is not None and np.shape(arr) != (T, J):
            raise ValueError(f"expected {name} (T, J) = {(T, J)}, got {np.shape(arr)}")
    for name, arr in (("frames", frames), ("segments", segments)):
        if arr is not None and np.shape(arr) != (T,):
            raise ValueError(f"expected {name} (T,) = {(T,)}, got {np.shape(arr)}")
    lam = 4.0 if prior_weight is None else float(prior_weight)
    refined = kp3d.copy()
    mask = np.zeros((T, J), dtype=bool)
    segment = frame_segments(frames, T) if segments is None else np.asarray(segments, dtype=np.int64)
    extr = np.stack([cam.extrinsic for cam in rig])  # (C, 3, 4)
    focal = np.array([0.5 * (cam.K[0, 0] + cam.K[1, 1]) for cam in rig])  # (C,)
    for part, model in models.items():
        if part not in skeleton.PARTS:
            raise ValueError(f"unknown part {part!r} in models; expected one of {list(skeleton.PARTS)}")
        idx = model.keypoints
        det = np.asarray(detections[:, :, idx], dtype=np.float64)  # (C, T, K, 3)
        Y = np.asarray(kp3d[:, idx], dtype=np.float64)  # (T, K, 3)
        vu = None if views_used is None else views_used[:, idx]
        fl = np.zeros(Y.shape[:2], bool) if filled is None else np.asarray(filled[:, idx], bool)
        X = _refine_part(Y, det, vu, fl, rig, extr, focal, model, segment, lam=lam, min_score=min_score,
                         temporal_window=temporal_window, undistort_iterations=undistort_iterations,
                         noise_mm=noise_mm, temporal_weight=temporal_weight, filled_weight=filled_weight,
                         outlier_threshold_px=outlier_threshold_px, huber_px=huber_px, min_points=min_points,
                         iterations=iterations, trust_views=trust_views, trust_power=trust_power,
                         keep_views=keep_views, keep_score=keep_score)
        moved = np.linalg.norm(X - Y, axis=-1)  # (T, K)
        with np.errstate(invalid="ignore"):
            changed = (moved > tolerance_mm) | (np.isfinite(X[..., 0]) & ~np.isfinite(Y[..., 0]))
        refined[:, idx] = np.where(changed[..., None], X, Y).astype(refined.dtype)
        mask[:, idx] = changed
    return refined, mask


def frame_segments(frames: np.ndarray | None, T: int) -> np.ndarray:
    """(T,) int id of the run of consecutive frames each frame belongs to (each frame alone if frames is None).

    Consecutive: one usual step apart, the median of the positive steps over all of ``frames``.
    """
    if frames is None:
        return np.arange(T, dtype=np.int64)
    if T < 2:
        return np.zeros(T, dtype=np.int64)
    frames = np.asarray(frames, dtype=np.int64)
    step = np.diff(frames)
    usual = np.median(step[step > 0]) if (step > 0).any() else 1
    return np.concatenate([[0], np.cumsum(step != usual)])


def _undistort(det: np.ndarray, rig: Rig, iterations: int) -> np.ndarray:
    """(C, T, K, 3) pixel detections -> (C, T, K, 2) undistorted normalised coordinates (NaN where missing)."""
    xy = np.empty(det.shape[:-1] + (2,))
    with np.errstate(invalid="ignore", divide="ignore"):
        for c, cam in enumerate(rig):
            xy[c, ..., 0], xy[c, ..., 1] = cam.undistort_uv(det[c, ..., 0], det[c, ..., 1], iterations)
    return xy


def _residual_px(X: np.ndarray, xy: np.ndarray, extr: np.ndarray, focal: np.ndarray) -> np.ndarray:
    """Reprojection residual (C, T, K) in approximate pixels of points X (T, K, 3) against xy (C, T, K, 2)."""
    return reprojection_residuals(X, xy, extr) * focal[:, None, None]


def _refine_part(
    Y: np.ndarray,
    det: np.ndarray,
    views_used: np.ndarray | None,
    filled: np.ndarray,
    rig: Rig,
    extr: np.ndarray,
    focal: np.ndarray,
    model: PartModel,
    segment: np.ndarray,
    *,
    lam: float,
    min_score: float,
    temporal_window: int,
    undistort_iterations: int,
    noise_mm: float,
    temporal_weight: float,
    filled_weight: float,
    outlier_threshold_px: float,
    huber_px: float,
    min_points: int,
    iterations: int,
    trust_views: float,
    trust_power: float,
    keep_views: int = 0,
    keep_score: float = 0.6,
) -> np.ndarray:
    """Refine one part: Y (T, K, 3) mm, det (C, T, K, 3) px, views_used (T, K) -> refined (T, K, 3) mm."""
    C = det.shape[0]
    T, K = Y.shape[:2]
    score = det[..., 2]
    with np.errstate(invalid="ignore"):
        cand = np.isfinite(det[..., :2]).all(-1) & (score >= min_score)  # (C, T, K)
    xy = _undistort(det, rig, undistort_iterations)
    cand &= np.isfinite(xy).all(-1)
    known = np.isfinite(Y).all(-1)  # (T, K)
    if views_used is not None:
        used = view_mask(views_used, C) & cand  # (C, T, K)
        tri = (views_used > 0) & known  # triangulated keypoints
    else:
        res0 = _residual_px(np.where(known[..., None], Y, np.nan), xy, extr, focal)
        with np.errstate(invalid="ignore"):
            used = cand & (res0 <= outlier_threshold_px)
        tri = known & ~filled & (used.sum(0) >= 2)
    # views of untriangulated keypoints: kept if they agree with the fitted model (checked below)
    loose = cand & ~tri[None]  # (C, T, K)
    w_obs = np.where(used & tri[None], score, 0.0) + np.where(loose, score, 0.0)  # (C, T, K)
    pseudo = np.where(known & (filled | ~tri), filled_weight, 0.0)  # (T, K) weak position observations
    Yz = np.where(known[..., None], Y, 0.0)

    # ---- fit the model per frame
    R_ = model.rank
    B = model.basis  # (R, K, 3)
    ridge = noise_mm**2 / np.maximum(model.variances, 1e-9)  # (R,)
    # Kabsch weights: triangulated keypoints by the strength of their views, completed ones weakly
    w_pts = np.where(tri, np.sqrt(np.einsum("ctk->tk", np.where(used, score**2, 0.0))), pseudo)  # (T, K)
    ok = (w_pts > 0).sum(1) >= min_points  # (T,) frames with a prior
    coeffs = np.zeros((T, R_))
    target_c = np.zeros((T, R_))
    huber = np.where(loose, 0.0, 1.0)  # loose views join once the model can vouch for them
    prior = np.full((T, K, 3), np.nan)
    res = np.full(w_obs.shape, np.nan)
    for it in range(iterations + (1 if temporal_window > 0 else 0)):
        shape = model.shape(coeffs)  # (T, K, 3) model frame
        # rotation (and scale) from the triangulated points, or the current prior where it exists
        target = np.where(np.isfinite(prior), prior, Y) if it > 0 else Y
        Rm, t, s = umeyama(shape, target, w_pts, scale=model.similarity)  # (T, 3, 3), (T, 3), (T,)
        Rm = np.where(ok[:, None, None], Rm, np.eye(3))
        s = np.where(ok, s, 1.0)
        # linear least squares for theta = [t (3), c (R)] with the rotation fixed: X_k = G_k theta + h_k
        M, v = normal_equations(xy, w_obs * huber, extr)  # (T, K, 3, 3), (T, K, 3)
        M = M + pseudo[..., None, None] * np.eye(3)
        v = v + pseudo[..., None] * Yz
        sRB = s[:, None, None, None] * np.einsum("tij,rkj->tkir", Rm, B)  # (T, K, 3, R)
        h = s[:, None, None] * np.einsum("tij,kj->tki", Rm, model.mean)  # (T, K, 3)
        G = np.concatenate([np.broadcast_to(np.eye(3), (T, K, 3, 3)), sRB], axis=-1)  # (T, K, 3, 3 + R)
        H = np.einsum("tkip,tkij,tkjq->tpq", G, M, G)  # (T, 3+R, 3+R)
        g = np.einsum("tkip,tki->tp", G, v - np.einsum("tkij,tkj->tki", M, h))  # (T, 3+R)
        reg = np.zeros((T, 3 + R_))
        reg[:, 3:] = ridge
        rhs_reg = np.zeros((T, 3 + R_))
        if it >= iterations:  # temporal pass: pull towards the coefficients' local average
            target_c = _temporal_mean(coeffs, ok, segment, temporal_window)
            reg[:, 3:] = ridge * (1.0 + temporal_weight)
            rhs_reg[:, 3:] = ridge * temporal_weight * target_c
        H = H + reg[:, :, None] * np.eye(3 + R_)
        H[~ok] = np.eye(3 + R_)
        g = g + rhs_reg
        g[~ok] = 0.0
        theta = np.linalg.solve(H, g[..., None])[..., 0]  # (T, 3 + R)
        coeffs = np.where(ok[:, None], theta[:, 3:], 0.0)
        prior = np.einsum("tkip,tp->tki", G, theta) + h  # (T, K, 3) world mm
        prior[~ok] = np.nan
        # robust weights: Huber on the reprojection residuals, hard rejection of inconsistent loose views
        res = _residual_px(prior, xy, extr, focal)  # (C, T, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            huber = np.where(res > huber_px, huber_px / res, 1.0)
            huber = np.where(loose & ~(res <= outlier_threshold_px), 0.0, huber)

    # ---- re-triangulate every keypoint with the prior
    with np.errstate(invalid="ignore"):
        keep_loose = loose & (res <= outlier_threshold_px)
    w_final = np.where(used & tri[None], score, 0.0) + np.where(keep_loose, score, 0.0)
    M, v = normal_equations(xy, w_final, extr)
    M = M + pseudo[..., None, None] * np.eye(3)
    v = v + pseudo[..., None] * Yz
    has_prior = np.isfinite(prior).all(-1)  # (T, K)
    # the prior's weight fades where the data are strong: sum of squared scores of the views (a "view count")
    strength = np.einsum("ctk->tk", w_final**2)  # (T, K)
    lam_k = np.where(has_prior, lam / (1.0 + (strength / trust_views) ** trust_power), 0.0)
    M = M + lam_k[..., None, None] * np.eye(3)
    v = v + lam_k[..., None] * np.where(has_prior[..., None], prior, 0.0)
    det3 = np.linalg.det(M)  # (T, K)
    scale = np.trace(M, axis1=-2, axis2=-1)
    solvable = np.abs(det3) > 1e-9 * np.maximum(scale, 1e-300) ** 3
    M[~solvable] = np.eye(3)
    X = np.linalg.solve(M, v[..., None])[..., 0]
    X[~solvable] = prior[~solvable]  # only with prior_weight 0: an unconstrained keypoint takes the model's place
    if keep_views > 0:  # what the detectors saw well stays exactly as triangulated
        n_used = (used & tri[None]).sum(0)  # (T, K)
        min_score = np.where(used & tri[None], score, np.inf).min(0)  # (T, K)
        well = tri & (n_used >= keep_views) & (min_score >= keep_score)
        X = np.where(well[..., None], Y, X)
    # where there is no prior, keep the input (the triangulation owns those keypoints)
    return np.where(has_prior[..., None], X, Y)


def _temporal_mean(coeffs: np.ndarray, ok: np.ndarray, segment: np.ndarray, window: int) -> np.ndarray:
    """Average of the coefficients (T, R) of the valid frames within ``window`` frames of the same segment."""
    T = len(coeffs)
    num = np.zeros_like(coeffs)
    den = np.zeros(T)
    for d in range(-window, window + 1):
        if d == 0:
            continue
        src = np.arange(T) + d
        valid = (src >= 0) & (src < T)
        src = np.clip(src, 0, T - 1)
        valid &= ok[src] & (segment[src] == segment)
        wgt = np.where(valid, np.exp(-0.5 * (d / max(window, 1)) ** 2), 0.0)
        num += wgt[:, None] * coeffs[src]
        den += wgt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den[:, None] > 0, num / den[:, None], coeffs)
