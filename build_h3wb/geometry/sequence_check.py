"""Checks of a triangulated sequence that need the keypoint layout or time, around :func:`triangulation.triangulate`.

The per-point rule in :mod:`build_h3wb.geometry.triangulation` sees one keypoint at a time. What it cannot see, these
functions do, on one person's sequence (C views, T frames, J keypoints; detections views first as in the detect
artifact and :func:`triangulation.triangulate`, ``(C, T, J, 2)`` pixels and ``(C, T, J)`` scores; per-view values such
as thresholds ``(C, T)``; 3D points ``(T, J, 3)``):

- :func:`person_size_px`: the person's size in every image (the diagonal of the body keypoints' box, a running
  median over frames), from which the stage makes the per-view agreement thresholds, so they scale with the rig
  and the distance to the person instead of being a fixed pixel count.
- :func:`fix_left_right_swaps`: a view whose whole body, hands or face is labelled left/right swapped is not
  useless, only mislabelled. For the body, every combination of views swapped back is triangulated (16 for four
  views) and the one with the most agreeing observations of the lateral keypoints (those with a left/right twin)
  wins; a combination and its complement agree equally (the mirrored body), so the one swapping fewer views wins,
  and where that ties too (two views against two, as happens when a detector labels the people it sees from behind
  as if from the front) the one continuing the neighbouring frames' body. Hands and face are then checked per view,
  first where they attach to the (corrected) body in the same image: the left hand's root lies at the left wrist,
  the face's eyes at the body's eyes; a part whose left and right sides attach clearly better the other way round
  is swapped back (a detector that mirrors the whole person in a view mirrors its face and hands too, and a face
  seen by two views only has no other view to outvote the mirrored one). Where the attachment does not decide (a
  profile view, hands together), the part's lateral keypoints are compared with a first triangulation: where clearly
  more agree swapped, they are swapped back. The frame is then triangulated again.
- :func:`check_sequence`: each bone between two rigid keypoints keeps its length for one subject (bones of at least
  10 cm: limbs, shoulders, hips, torso; finger bones vary with the noise as much as with an error), and at video
  rate a keypoint cannot jump. Keypoints on bones far off the sequence's median length, or that jump away and back, are
  re-solved from every other set of views (choosing the set whose point fits the neighbouring bones and frames
  best, within a looser agreement threshold), or dropped when none fits and they are clearly impossible; body
  keypoints the per-point rule left out although two views saw them are recovered the same way, within a still
  looser threshold, where the neighbouring bones and frames confirm them. All three are counted.
- :func:`smooth_in_time`: a Gaussian of fixed duration (30 ms by default, a low-pass at about 5 Hz) over
  neighbouring frames; at 60 fps it averages detector noise away, while at Human3.6M's 10 fps grid (frames 100 ms
  apart, where the next frame would weigh under 1%) it leaves every point as it is.
- :func:`hold_bone_lengths` (``triangulate.bone_strength``, off by default): a soft limb-length constraint, as
  aniposelib's ``triangulate_optim`` has, by position-based projection of the long bones onto the sequence's median
  lengths. It lowers the true error on the synthetic capture, but it also makes the bone-length measures small by
  construction, and the filter's bone test loses its meaning, hence off by default.
- :func:`camera_agreement`: per camera, its residual against the point triangulated from the other views, and the
  same with its detections shifted by a few frames; a camera whose residual falls clearly at a shift is out of
  sync (or its frames are numbered differently).
"""

from __future__ import annotations

import warnings

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import Rig
from build_h3wb.geometry.triangulation import bits_to_mask, triangulate, view_mask, view_set_hypotheses

#: Parts whose labels can be swapped independently (MediaPipe's face mesh, for one, is found apart from the body).
SWAP_GROUPS: dict[str, np.ndarray] = {
    "body": np.arange(skeleton.REPORT_PARTS["body"].start, skeleton.REPORT_PARTS["body"].stop),
    "hands": np.arange(skeleton.PARTS["hands"].start, skeleton.PARTS["hands"].stop),
    "face": np.arange(skeleton.PARTS["face"].start, skeleton.PARTS["face"].stop),
}
_BODY = SWAP_GROUPS["body"]


def person_size_px(uv: np.ndarray, score: np.ndarray, rig: Rig, min_score: float = 0.3, window: int = 9) -> np.ndarray:
    """The person's size in every image: the diagonal of the box around the body (+feet) keypoints.

    Args:
        uv: (C, T, J, 2) detections in pixels, NaN where missing.
        score: (C, T, J) confidence.
        rig: the C cameras (a view without a body falls back to 40% of its image diagonal).
        min_score: keypoints below this are ignored.
        window: frames of the running median (odd; a single outlier cannot stretch the box).

    Returns:
        (C, T) pixels, finite and positive.
    """
    return person_size_from_diagonal(body_diagonal_px(uv, score, min_score), rig, window)


def body_diagonal_px(uv: np.ndarray, score: np.ndarray, min_score: float = 0.3) -> np.ndarray:
    """(C, T) diagonal of the box around the body (+feet) keypoints of each view and frame, pixels.

    From (C, T, J, 2) pixel detections and (C, T, J) scores (see :func:`person_size_px`); NaN where fewer than 4 body
    keypoints score at least ``min_score``. Each frame on its own.
    """
    with np.errstate(invalid="ignore"):
        ok = (score[:, :, _BODY] >= min_score) & np.isfinite(uv[:, :, _BODY, 0])  # (C, T, Jb)
    return np.where(ok.sum(-1) >= 4, skeleton.box_diagonal(uv[:, :, _BODY], ok), np.nan)  # (C, T)


def person_size_from_diagonal(diag: np.ndarray, rig: Rig, window: int = 9,
                              per_view: np.ndarray | None = None) -> np.ndarray:
    """The person's size of :func:`person_size_px` from the (C, T) box diagonals of :func:`body_diagonal_px`.

    A frame's size is the running median of the diagonals within ``window // 2`` frames of it; where that window
    has none, the view's median over all its frames (``per_view``, (C,) pixels: give it, with NaN for a view without
    any, when ``diag`` is a part of a longer recording), else 40% of the image diagonal.

    Returns:
        (C, T) pixels, finite and positive.
    """
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        h = window // 2
        padded = np.pad(diag, ((0, 0), (h, h)), constant_values=np.nan)
        win = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)  # (C, T, window)
        size = np.nanmedian(win, -1)
        if per_view is None:
            per_view = np.nanmedian(diag, 1)  # (C,)
    fallback = np.array([0.4 * np.hypot(*cam.image_size) for cam in rig])
    per_view = np.where(np.isfinite(per_view), per_view, fallback)
    size = np.where(np.isfinite(size), size, per_view[:, None])
    return np.maximum(size, 1.0)


def agreement_threshold_px(size_px: np.ndarray, share: float, min_px: float) -> np.ndarray:
    """(C, T) person sizes -> (C, T) agreement thresholds: ``share`` of the size, at least ``min_px``."""
    return np.maximum(share * size_px, min_px)


def _project(rig: Rig, X: np.ndarray) -> np.ndarray:
    """(..., 3) world mm -> (C, ..., 2) pixels in every camera."""
    return np.stack([cam.project(X) for cam in rig])


def _body_swaps(uv: np.ndarray, score: np.ndarray, rig: Rig, threshold_px: np.ndarray, min_score: float,
                ) -> np.ndarray:
    """(C, T) bool: which views' body labels to swap back in each frame (see the module docstring).

    Two shortcuts keep this to a fraction of the 2**C triangulations it describes, with the same result: a
    combination and its complement see the same observations (the mirrored body, each lateral keypoint read from its
    twin), so only the combinations leaving view 0 as labelled are triangulated and the others are read off them;
    and a frame where the labels as given already use every confident observation cannot be beaten (a combination
    only permutes the observations of the lateral keypoints), so no other combination is tried there.
    """
    C, T, J = score.shape
    flip = skeleton.FLIP_INDEX
    body = SWAP_GROUPS["body"]
    lat = body[flip[body] != body]  # (L,) lateral body keypoints
    L = len(lat)
    twin = np.searchsorted(lat, flip[lat])  # (L,) position of each lateral keypoint's twin in ``lat``
    combos = bits_to_mask(np.arange(2**C), C)  # (K, C); combination K-1-k is the complement of k
    K = len(combos)
    agree = np.zeros((K, T), dtype=np.int64)
    pts = np.full((K, T, L, 3), np.nan)
    uv_as, uv_sw = uv[:, :, lat], uv[:, :, flip[lat]]  # (C, T, L, 2) as labelled and read from the twins
    sc_as, sc_sw = score[:, :, lat], score[:, :, flip[lat]]
    with np.errstate(invalid="ignore"):
        n_obs = ((sc_as >= min_score) & np.isfinite(uv_as[..., 0])).sum((0, 2))  # (T,) any combination

    def solve(k: int, frames: np.ndarray) -> None:
        sw = combos[k]
        u = np.where(sw[:, None, None, None], uv_sw[:, frames], uv_as[:, frames])  # (C, t, L, 2)
        sc = np.where(sw[:, None, None], sc_sw[:, frames], sc_as[:, frames])
        res = triangulate(u, sc, rig, min_score=min_score, outlier_threshold_px=threshold_px[:, frames, None])
        agree[k, frames] = agree[K - 1 - k, frames] = res.num_views.astype(np.int64).sum(1)
        pts[k, frames] = res.points  # (t, L, 3)
        pts[K - 1 - k, frames] = res.points[:, twin]

    solve(0, np.arange(T))
    rest = np.flatnonzero(agree[0] < n_obs)  # frames where another labelling could use more observations
    if len(rest):
        for k in range(2, K, 2):  # view 0 as labelled; the complements follow
            solve(k, rest)
    n_swaps = combos.sum(1)  # (K,)
    best = agree == agree.max(0, keepdims=True)  # (K, T)
    fewest = np.where(best, n_swaps[:, None], C + 1).min(0)  # (T,)
    cand = best & (n_swaps[:, None] == fewest)  # (K, T): usually one; two where two views stand against two
    choice = np.where(cand.sum(0) == 1, cand.argmax(0), -1)  # (T,) -1: to be decided by the neighbours
    if (choice < 0).any():
        anchors = np.flatnonzero(choice >= 0)
        if not len(anchors):
            choice[:] = 0
        else:
            def nearest(t: int, ref: np.ndarray) -> int:
                ks = np.flatnonzero(cand[:, t])
                d = [np.nanmean(np.linalg.norm(pts[k, t] - ref, axis=-1)) for k in ks]
                d = [np.inf if not np.isfinite(x) else x for x in d]
                return int(ks[int(np.argmin(d))])

            for t in range(anchors[0] + 1, T):  # forward from the first anchor
                if choice[t] < 0:
                    choice[t] = nearest(t, pts[choice[t - 1], t - 1])
            for t in range(anchors[0] - 1, -1, -1):  # backward before it
                choice[t] = nearest(t, pts[choice[t + 1], t + 1])
    return combos[choice].T  # (C, T)


#: Where each swappable part attaches to the body: (body keypoint, the part's keypoints there) for its left and
#: right side. The face's eyes are the body's eyes; a hand's root is at its wrist.
_ATTACH: dict[str, tuple[tuple[int, np.ndarray], tuple[int, np.ndarray]]] = {
    "face": tuple((skeleton.index(f"{side}_eye"), skeleton.PARTS["face"].start
                   + np.asarray(skeleton.FACE_REGIONS[f"{side}_eye"])) for side in ("left", "right")),
    "hands": tuple((skeleton.index(f"{side}_wrist"), np.array([skeleton.PARTS[f"{side}_hand"].start]))
                   for side in ("left", "right")),
}


def attachment_swaps(uv: np.ndarray, score: np.ndarray, part: str, min_px: np.ndarray, min_score: float = 0.3,
                     ratio: float = 2.0) -> np.ndarray:
    """Per view, whether a part's left/right labels attach to the body the other way round (see the module docstring).

    The part's left and right anchors (e.g. the centres of the face's eyes) are compared with the body keypoints they
    sit on in the same image (the body's eyes): ``d_as`` sums the two distances as labelled, ``d_swapped`` with the
    sides exchanged. A view decides only when one reading is ``ratio`` times closer than the other and the farther
    one is at least ``min_px`` (below that the two sides overlap in the image, as in a profile view).

    Args:
        uv: (C, T, J, 2) detections in pixels (body labels already corrected), NaN where missing.
        score: (C, T, J) confidence.
        part: ``"face"`` or ``"hands"``.
        min_px: (C, T) pixels, e.g. the agreement threshold of each view.
        min_score: keypoints below this are ignored.
        ratio: how much closer the winning reading must be.

    Returns:
        (C, T) int8: 1 swapped, -1 as labelled, 0 undecided (a keypoint missing, or too close to call).
    """
    if part not in _ATTACH:
        raise ValueError(f"part must be one of {sorted(_ATTACH)}, got {part!r}")
    with np.errstate(invalid="ignore"):
        ok = score >= min_score  # (C, T, J)
    pts = np.where(ok[..., None], uv, np.nan)
    body, anchor = [], []
    for b, idx in _ATTACH[part]:
        body.append(pts[:, :, b])  # (C, T, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an anchor with no keypoint found: NaN, undecided
            anchor.append(np.nanmean(pts[:, :, idx], axis=2))
    d_as = np.linalg.norm(body[0] - anchor[0], axis=-1) + np.linalg.norm(body[1] - anchor[1], axis=-1)  # (C, T)
    d_sw = np.linalg.norm(body[0] - anchor[1], axis=-1) + np.linalg.norm(body[1] - anchor[0], axis=-1)
    with np.errstate(invalid="ignore"):
        far = np.maximum(d_as, d_sw) >= min_px
        out = np.where(far & (ratio * d_sw < d_as), 1, np.where(far & (ratio * d_as < d_sw), -1, 0))
    return out.astype(np.int8)


def fix_left_right_swaps(
    uv: np.ndarray, score: np.ndarray, rig: Rig, X: np.ndarray, threshold_px: np.ndarray, min_score: float = 0.3,
    min_agree: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Swap back the left/right labels of a part in a view where that makes it agree (see the module docstring).

    Args:
        uv: (C, T, J, 2) detections in pixels, NaN where missing; T consecutive frames.
        score: (C, T, J) confidence.
        rig: the C cameras.
        X: (T, J, 3) world mm, a first triangulation (NaN where missing), for the hands and the face.
        threshold_px: (C, T) agreement threshold per view and frame.
        min_score: keypoints below this do not vote.
        min_agree: hands and face: at least this many lateral keypoints must agree swapped, and more than twice as
            many as agree as labelled.

    Returns:
        uv and score with the swaps undone (new arrays), and swapped (C, T, G) bool per part of
        :data:`SWAP_GROUPS` (in its order).
    """
    C, T, J = score.shape
    flip = skeleton.FLIP_INDEX
    out_uv, out_score = uv.copy(), score.copy()
    swapped = np.zeros((C, T, len(SWAP_GROUPS)), dtype=bool)
    if C <= 6:
        swapped[:, :, 0] = _body_swaps(uv, score, rig, threshold_px, min_score)
    proj = _project(rig, X)  # (C, T, J, 2)
    with np.errstate(invalid="ignore"):
        conf = score >= min_score  # (C, T, J)
        r_as = np.linalg.norm(uv - proj, axis=-1)  # (C, T, J)
        r_sw = np.linalg.norm(uv[:, :, flip] - proj, axis=-1)  # keypoint j read from its twin's label
        agree_as = conf & (r_as <= threshold_px[..., None])
        agree_sw = conf[:, :, flip] & (r_sw <= threshold_px[..., None])
    for g, (name, idx) in enumerate(SWAP_GROUPS.items()):
        if g > 0 or C > 6:
            lateral = idx[flip[idx] != idx]
            n_as = agree_as[:, :, lateral].sum(-1)  # (C, T)
            n_sw = agree_sw[:, :, lateral].sum(-1)
            swapped[:, :, g] = (n_sw >= min_agree) & (n_sw > 2 * n_as)
        if name in _ATTACH:  # where the part attaches to the corrected body decides first
            attach = attachment_swaps(out_uv, out_score, name, threshold_px, min_score)
            swapped[:, :, g] = np.where(attach != 0, attach > 0, swapped[:, :, g])
        c, t = np.nonzero(swapped[:, :, g])
        if len(t):
            out_uv[c[:, None], t[:, None], idx[None]] = uv[c[:, None], t[:, None], flip[idx][None]]
            out_score[c[:, None], t[:, None], idx[None]] = score[c[:, None], t[:, None], flip[idx][None]]
    return out_uv, out_score, swapped


def undo_swaps(detections: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """The detections with the left/right swaps that triangulation undid applied again (for later stages).

    Args:
        detections: (C, T, J, K) per view, as in the detect artifact (``K`` = 3: ``[x, y, score]``).
        swapped: (C, T) uint8 bits from the triangulate artifact: bit g set = part g of :data:`SWAP_GROUPS` of that
            view and frame was read from its twin keypoints.

    Returns:
        (C, T, J, K) a new array: every swapped part of a view and frame takes its twins' detections.
    """
    C, T = detections.shape[:2]
    if swapped.shape != (C, T):
        raise ValueError(f"expected swapped (C, T) = {(C, T)} for detections {detections.shape}; got {swapped.shape}")
    out = detections.copy()
    flip = skeleton.FLIP_INDEX
    for g, idx in enumerate(SWAP_GROUPS.values()):
        c, t = np.nonzero((swapped >> g) & 1)
        if len(t):
            out[c[:, None], t[:, None], idx[None]] = detections[c[:, None], t[:, None], flip[idx][None]]
    return out


def bone_lengths(X: np.ndarray, bones: np.ndarray = skeleton.RIGID_BONES) -> np.ndarray:
    """(T, J, 3) mm -> (T, B) bone lengths in mm (NaN where an end is missing)."""
    return np.linalg.norm(X[:, bones[:, 0]] - X[:, bones[:, 1]], axis=-1)


def _suspects(X: np.ndarray, med: np.ndarray, tol: np.ndarray, jump_mm: float) -> np.ndarray:
    """(T, J) bool: keypoints blamed for a bone far off its median length, or that jump away and back."""
    T, J = X.shape[:2]
    bones = skeleton.RIGID_BONES
    with np.errstate(invalid="ignore"):
        bad = np.abs(bone_lengths(X, bones) - med) > tol  # (T, B); False where NaN (and for short bones)
    n_bad = np.zeros((T, J), dtype=np.int64)
    np.add.at(n_bad, (slice(None), bones[:, 0]), bad)
    np.add.at(n_bad, (slice(None), bones[:, 1]), bad)
    a, b = n_bad[:, bones[:, 0]], n_bad[:, bones[:, 1]]  # (T, B)
    out = np.zeros((T, J), dtype=bool)
    # blame the end of a bad bone that has more bad bones (both when equal)
    for end, mine, other in ((0, a, b), (1, b, a)):
        hit = bad & (mine >= other)
        t, k = np.nonzero(hit)
        out[t, bones[k, end]] = True
    if T >= 3 and jump_mm > 0:
        with np.errstate(invalid="ignore"):
            d_prev = np.linalg.norm(X[1:-1] - X[:-2], axis=-1)
            d_next = np.linalg.norm(X[1:-1] - X[2:], axis=-1)
            d_skip = np.linalg.norm(X[2:] - X[:-2], axis=-1)
            spike = (d_prev > jump_mm) & (d_next > jump_mm) & (d_skip < jump_mm)
        out[1:-1] |= spike
    return out


def check_sequence(
    X: np.ndarray,
    uv: np.ndarray,
    score: np.ndarray,
    rig: Rig,
    threshold_px: np.ndarray,
    *,
    frame_dt_s: float,
    bone_tolerance: float = 0.2,
    bone_tolerance_mm: float = 25.0,
    max_speed_mm_s: float = 10000.0,
    relax: float = 1.5,
    recover_relax: float = 2.0,
    min_bone_mm: float = 100.0,
    min_score: float = 0.3,
    opposing_angle_deg: float = 140.0,
    min_ray_angle_deg: float = 10.0,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-solve or drop keypoints that break a bone length or jump (see the module docstring).

    Args:
        X: (T, J, 3) world mm from :func:`triangulation.triangulate` on these detections; T consecutive frames.
        uv: (C, T, J, 2) detections in pixels (after :func:`fix_left_right_swaps`), NaN where missing.
        score: (C, T, J) confidence.
        rig: the C cameras.
        threshold_px: (C, T) agreement threshold per view and frame.
        frame_dt_s: time between consecutive frames (seconds; 0 when unknown: no jump check).
        bone_tolerance: a bone is off when its length differs from the sequence's median by more than this share...
        bone_tolerance_mm: ...or this many millimetres, whichever is larger (short finger bones).
        max_speed_mm_s: a keypoint moving further than this speed allows, away from both neighbouring frames while
            they agree, jumped.
        relax: re-solved sets may disagree up to this multiple of the threshold.
        recover_relax: body keypoints left out by the per-point rule although two or more views saw them are
            recovered from the best set within this multiple of the threshold where it fits the neighbouring bones
            and frames (0: off).
        min_bone_mm: bones shorter than this (median) are not judged (fingers, eye to ear).
        min_score: views below this confidence are not used.
        opposing_angle_deg: as in :func:`triangulation.triangulate`.
        min_ray_angle_deg: as in :func:`triangulation.triangulate`.
        rounds: how often suspects are looked for again after re-solving.

    Returns:
        X (T, J, 3) checked; status (T, J) int8: 0 unchanged, 1 re-solved from another set of views, 2 dropped,
        3 recovered (was left out); views (T, J) int64 bitmask of the views of the re-solved and recovered points
        (0 elsewhere).
    """
    C, T, J = score.shape
    if X.shape != (T, J, 3) or uv.shape != (C, T, J, 2) or threshold_px.shape != (C, T):
        raise ValueError(f"expected X (T, J, 3), uv (C, T, J, 2), threshold (C, T) with (C, T, J) = {(C, T, J)}; "
                         f"got {X.shape}, {uv.shape}, {threshold_px.shape}")
    X = X.copy()
    status = np.zeros((T, J), dtype=np.int8)
    views = np.zeros((T, J), dtype=np.int64)
    jump_mm = max_speed_mm_s * frame_dt_s if frame_dt_s > 0 else np.inf  # unknown frame times: no jump check
    bones = skeleton.RIGID_BONES
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(bone_lengths(X, bones), 0)  # (B,) the subject's lengths over these frames
    # short bones (fingers, eyes to ears) vary with the detection noise as much as with an error: not judged
    med = np.where(med >= min_bone_mm, med, np.nan)
    tol = np.maximum(bone_tolerance * med, bone_tolerance_mm)
    tried = np.zeros((T, J), dtype=bool)
    for _ in range(rounds):
        sus = _suspects(X, med, tol, jump_mm) & ~tried & np.isfinite(X[..., 0])
        if not sus.any():
            break
        tried |= sus
        t, j = np.nonzero(sus)
        pts, sets, worst, usable = view_set_hypotheses(
            uv[:, t, j], score[:, t, j], rig, threshold_px=threshold_px[:, t] * relax, min_score=min_score,
            opposing_angle_deg=opposing_angle_deg, min_ray_angle_deg=min_ray_angle_deg,
        )  # (M, S, 3), (S, C), (M, S), (M, S)
        cost, _ = _hypothesis_cost(pts, worst, usable, t, j, X, sus, med, tol, jump_mm)
        best = cost.argmin(1)
        m = np.arange(len(t))
        found = np.isfinite(cost[m, best])
        # no set fits: drop the point only where it is clearly impossible (a bone to a trusted neighbour more than
        # twice the tolerance off, or a jump), else keep it as it is
        impossible = _clearly_wrong(X, t, j, sus, med, tol, jump_mm)
        new = np.where(found[:, None], pts[m, best], np.where(impossible[:, None], np.nan, X[t, j]))
        changed = found & (np.linalg.norm(new - X[t, j], axis=-1) > 1e-6)
        dropped = ~found & impossible
        X[t, j] = new
        status[t[changed], j[changed]] = 1
        status[t[dropped], j[dropped]] = 2
        found = changed
        bits = (sets[best] * (1 << np.arange(C))).sum(1)
        views[t[changed & found], j[changed & found]] = bits[changed & found]
    if recover_relax > 0:
        # body keypoints the per-point rule left out although two views saw them: the best set within a looser
        # threshold, where it fits the neighbouring bones and frames (at least one of them must be there to judge)
        with np.errstate(invalid="ignore"):
            n_cand = ((score >= min_score) & np.isfinite(uv[..., 0])).sum(0)  # (T, J)
        missing = ~np.isfinite(X[..., 0]) & (n_cand >= 2) & (status != 2)
        missing[:, np.setdiff1d(np.arange(J), _BODY)] = False
        t, j = np.nonzero(missing)
        if len(t):
            pts, sets, worst, usable = view_set_hypotheses(
                uv[:, t, j], score[:, t, j], rig, threshold_px=threshold_px[:, t] * recover_relax, min_score=min_score,
                opposing_angle_deg=opposing_angle_deg, min_ray_angle_deg=min_ray_angle_deg)
            cost, checked = _hypothesis_cost(pts, worst, usable, t, j, X, missing, med, tol, jump_mm)
            best = cost.argmin(1)
            m = np.arange(len(t))
            found = np.isfinite(cost[m, best]) & (checked > 0)
            X[t[found], j[found]] = pts[m[found], best[found]]
            status[t[found], j[found]] = 3
            views[t[found], j[found]] = (sets[best[found]] * (1 << np.arange(C))).sum(1)
    return X, status, views


def _hypothesis_cost(pts: np.ndarray, worst: np.ndarray, usable: np.ndarray, t: np.ndarray, j: np.ndarray,
                     X: np.ndarray, sus: np.ndarray, med: np.ndarray, tol: np.ndarray, jump_mm: float,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Cost of each view-set hypothesis of the points (t, j), and how many bones and neighbouring frames judged it.

    Returns (M, S) costs (inf where a hypothesis does not fit) and (M,) counts. The cost adds the squared relative
    residual, the squared bone deviations (in tolerances) to neighbours that are not suspects, and the squared
    distances to the neighbouring frames (in jump distances); a hypothesis fits when every one of these is at most 1.
    """
    T = X.shape[0]
    fits = usable & (worst <= 1.0)
    cost = np.where(fits, worst**2, np.inf)  # (M, S)
    checked = np.zeros(len(t), dtype=np.int64)
    for k, (a, b) in enumerate(skeleton.RIGID_BONES):
        if not np.isfinite(med[k]):
            continue
        for mine, other in ((a, b), (b, a)):
            sel = np.flatnonzero((j == mine) & ~sus[t, other] & np.isfinite(X[t, other, 0]))
            if not len(sel):
                continue
            length = np.linalg.norm(pts[sel] - X[t[sel], other][:, None], axis=-1)  # (m, S)
            dev = np.abs(length - med[k]) / tol[k]
            with np.errstate(invalid="ignore"):
                fits[sel] &= ~(dev > 1.0)
                cost[sel] += np.where(np.isfinite(dev), dev**2, 0.0)
            checked[sel] += 1
    for dt in (-1, 1):  # the neighbouring frames, where they are not suspects
        tn = t + dt
        sel = np.flatnonzero((tn >= 0) & (tn < T))
        sel = sel[~sus[tn[sel], j[sel]] & np.isfinite(X[tn[sel], j[sel], 0])]
        if not len(sel):
            continue
        d = np.linalg.norm(pts[sel] - X[tn[sel], j[sel]][:, None], axis=-1) / jump_mm  # (m, S)
        with np.errstate(invalid="ignore"):
            fits[sel] &= ~(d > 1.0)
            cost[sel] += np.where(np.isfinite(d), d**2, 0.0)
        checked[sel] += 1
    return np.where(fits, cost, np.inf), checked


def _clearly_wrong(X: np.ndarray, t: np.ndarray, j: np.ndarray, sus: np.ndarray, med: np.ndarray, tol: np.ndarray,
                   jump_mm: float) -> np.ndarray:
    """(M,) bool: the suspects (t, j) that are clearly impossible.

    A bone to a neighbour that is not a suspect is more than twice the tolerance off, or the point sits more than
    twice the jump distance from both neighbouring frames while these agree.
    """
    T = X.shape[0]
    out = np.zeros(len(t), dtype=bool)
    for k, (a, b) in enumerate(skeleton.RIGID_BONES):
        for mine, other in ((a, b), (b, a)):
            sel = np.flatnonzero((j == mine) & ~sus[t, other])
            if len(sel) and np.isfinite(med[k]):
                length = np.linalg.norm(X[t[sel], mine] - X[t[sel], other], axis=-1)
                with np.errstate(invalid="ignore"):
                    out[sel] |= np.abs(length - med[k]) > 2 * tol[k]
    inner = (t > 0) & (t < T - 1)
    sel = np.flatnonzero(inner)
    if len(sel) and jump_mm > 0:
        p, q, n = X[t[sel] - 1, j[sel]], X[t[sel], j[sel]], X[t[sel] + 1, j[sel]]
        with np.errstate(invalid="ignore"):
            out[sel] |= ((np.linalg.norm(q - p, axis=-1) > 2 * jump_mm) & (np.linalg.norm(q - n, axis=-1) > 2 * jump_mm)
                         & (np.linalg.norm(n - p, axis=-1) < jump_mm))
    return out


def hold_bone_lengths(X: np.ndarray, strength: float = 0.5, iterations: int = 5, min_bone_mm: float = 100.0,
                      ) -> np.ndarray:
    """Pull the long rigid bones of every frame towards the sequence's median lengths (a soft limb constraint).

    Each iteration visits the bones of at least ``min_bone_mm`` (median) in turn and moves both ends along the bone
    by half of ``strength`` times its length error (position-based projection); ``strength`` 1 with many iterations
    makes every such bone exactly its median length, 0 changes nothing.

    Args:
        X: (T, J, 3) world mm (NaN where missing).
        strength: share of each bone's length error corrected per visit, in [0, 1].
        iterations: passes over the bones.
        min_bone_mm: shorter bones are left alone.

    Returns:
        (T, J, 3) adjusted.
    """
    X = X.copy()
    if strength <= 0 or len(X) < 2:
        return X
    bones = skeleton.RIGID_BONES
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(bone_lengths(X, bones), 0)
    keep = np.isfinite(med) & (med >= min_bone_mm)
    for _ in range(iterations):
        for (a, b), m in zip(bones[keep], med[keep]):
            v = X[:, b] - X[:, a]  # (T, 3)
            L = np.linalg.norm(v, axis=-1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.where(L > 1e-6, 0.5 * strength * (L - m) / L, 0.0) * v  # NaN where an end is missing
            ok = np.isfinite(corr[:, 0])
            X[ok, a] += corr[ok]
            X[ok, b] -= corr[ok]
    return X


def smooth_in_time(X: np.ndarray, frame_dt_s: float, sigma_s: float = 0.03) -> np.ndarray:
    """Average each keypoint over neighbouring frames with Gaussian weights of ``sigma_s`` seconds.

    Missing points (NaN) stay missing and do not count; the weights of the points present are renormalised.

    Args:
        X: (T, J, 3) world mm, T consecutive frames ``frame_dt_s`` apart.
        frame_dt_s: seconds between frames.
        sigma_s: the Gaussian's standard deviation in seconds (0: no smoothing).

    Returns:
        (T, J, 3) smoothed.
    """
    if sigma_s <= 0 or frame_dt_s <= 0:
        return X.copy()
    sig = sigma_s / frame_dt_s  # frames
    h = int(np.ceil(3 * sig))
    w = np.exp(-0.5 * (np.arange(-h, h + 1) / sig) ** 2)
    if h == 0 or w[h - 1] < 1e-2:  # the next frame would hardly count: nothing to smooth at this rate
        return X.copy()
    ok = np.isfinite(X[..., 0])
    Xz = np.where(ok[..., None], X, 0.0)
    num = np.zeros_like(Xz)
    den = np.zeros(X.shape[:2])
    T = X.shape[0]
    for k, wk in zip(range(-h, h + 1), w):
        a, b = max(0, -k), min(T, T - k)  # frames t with t + k inside
        num[a:b] += wk * Xz[a + k : b + k]
        den[a:b] += wk * ok[a + k : b + k]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok[..., None], num / den[..., None], np.nan)


def reprojection_error_px(X: np.ndarray, uv: np.ndarray, views: np.ndarray, rig: Rig) -> np.ndarray:
    """Mean pixel distance between the points and the detections of the views used.

    Args:
        X: (..., 3) world mm.
        uv: (C, ..., 2) pixels, views first.
        views: (...) bitmask of the views used.
        rig: the C cameras.

    Returns:
        (...) float32, NaN where no view is used or the point is missing.
    """
    used = bits_to_mask(views, len(rig))  # (..., C)
    err = np.zeros(X.shape[:-1])
    for c, cam in enumerate(rig):
        d = np.linalg.norm(cam.project(X) - uv[c], axis=-1)
        err += np.where(used[..., c], np.nan_to_num(d), 0.0)
    n = used.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n > 0) & np.isfinite(X[..., 0]), err / n, np.nan).astype(np.float32)


def resolve_with_views(uv: np.ndarray, score: np.ndarray, rig: Rig, views: np.ndarray, min_score: float = 0.3):
    """Plain triangulation of points from given sets of views (the re-solved points' final numbers).

    Args:
        uv: (C, ..., 2) pixels, views first.
        score: (C, ...) confidence.
        rig: the cameras.
        views: (...) bitmask of the views to use.
        min_score: as in :func:`triangulation.triangulate`.

    Returns:
        The :class:`triangulation.Triangulation` of the points.
    """
    mask = view_mask(views, len(rig))  # (C, ...)
    return triangulate(uv, np.where(mask, score, 0.0), rig, min_score=min_score, robust=False,
                       opposing_angle_deg=180.0)


def camera_agreement(
    uv: np.ndarray, score: np.ndarray, rig: Rig, views: np.ndarray, max_shift: int = 3, min_score: float = 0.3,
    bins: np.ndarray | None = None,
) -> np.ndarray:
    """Per camera, how far its body detections lie from the point the other views make, at several frame shifts.

    Args:
        uv: (C, T, J, 2) detections in pixels (as triangulated, swaps undone).
        score: (C, T, J) confidence.
        rig: the C cameras.
        views: (T, J) bitmask of the views the triangulation used.
        max_shift: detections of frame ``t + s`` are compared with the others' point of frame ``t``, for
            ``s`` in ``-max_shift..max_shift``.
        min_score: keypoints below this are not compared.
        bins: histogram bin edges in pixels (default 0-1000 px in 0.25 px steps).

    Returns:
        (C, 2 * max_shift + 1, len(bins) - 1) int64 histogram of residuals in pixels (sum these over chunks and
        sequences, then read medians with :func:`histogram_median`).
    """
    C, T, J = score.shape
    bins = np.arange(0.0, 1000.25, 0.25) if bins is None else bins
    shifts = np.arange(-max_shift, max_shift + 1)
    hist = np.zeros((C, len(shifts), len(bins) - 1), dtype=np.int64)
    used = view_mask(views[:, _BODY], C)  # (C, T, Jb)
    body_uv, body_score = uv[:, :, _BODY], score[:, :, _BODY]
    for c, cam in enumerate(rig):
        others = used.copy()
        others[c] = False
        res = triangulate(body_uv, np.where(others, body_score, 0.0), rig, min_score=min_score, robust=False,
                          opposing_angle_deg=180.0)
        Xo = res.points  # (T, Jb, 3)
        proj = cam.project(Xo)  # (T, Jb, 2)
        for k, s in enumerate(shifts):
            a, b = max(0, -s), min(T, T - s)  # frames t with t + s inside
            if b <= a:
                continue
            obs = uv[c, a + s : b + s][:, _BODY]  # (t, Jb, 2)
            with np.errstate(invalid="ignore"):
                ok = score[c, a + s : b + s][:, _BODY] >= min_score
                r = np.linalg.norm(obs - proj[a:b], axis=-1)[ok & np.isfinite(proj[a:b, :, 0])]
            hist[c, k] += np.histogram(np.minimum(r, bins[-1] - 1e-9), bins)[0]
    return hist


def histogram_median(hist: np.ndarray, bins: np.ndarray | None = None) -> np.ndarray:
    """(..., K) histogram counts -> (...) median (bin centre; NaN where empty)."""
    bins = np.arange(0.0, 1000.25, 0.25) if bins is None else bins
    cum = np.cumsum(hist, -1)
    total = cum[..., -1:]
    idx = (cum < 0.5 * total).sum(-1)
    centres = 0.5 * (bins[1:] + bins[:-1])
    return np.where(total[..., 0] > 0, centres[np.minimum(idx, len(centres) - 1)], np.nan)


def sync_report(hist: np.ndarray, names: tuple[str, ...], max_shift: int, gain: float = 0.8) -> dict:
    """Per camera: median residual (px) at no shift, the best shift and its median, and whether it is suspect.

    Args:
        hist: (C, 2 * max_shift + 1, K) from :func:`camera_agreement` (summed).
        names: camera names.
        max_shift: as given to :func:`camera_agreement`.
        gain: a shift is reported when its median residual is below this share of the unshifted one.

    Returns:
        ``{camera: {"median_px", "best_shift_frames", "best_shift_median_px", "out_of_sync"}}``.
    """
    med = histogram_median(hist)  # (C, shifts)
    out = {}
    for c, name in enumerate(names):
        m0 = med[c, max_shift]
        k = int(np.nanargmin(med[c])) if np.isfinite(med[c]).any() else max_shift
        shift = k - max_shift
        suspect = bool(shift != 0 and np.isfinite(m0) and med[c, k] < gain * m0)
        out[name] = {"median_px": None if not np.isfinite(m0) else round(float(m0), 2),
                     "best_shift_frames": shift if suspect else 0,
                     "best_shift_median_px": None if not np.isfinite(med[c, k]) else round(float(med[c, k]), 2),
                     "out_of_sync": suspect}
    return out
