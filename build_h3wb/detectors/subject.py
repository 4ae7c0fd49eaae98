"""Keep one subject when a detector finds several people: the same person in every view and frame.

Real captures have bystanders, reflections and false detections. Detectors return up to P candidates per image;
:func:`choose_subject` picks one candidate per view (or none) for every frame, jointly over the views, maximising

- ``agreement_weight`` x, for every pair of views, the fraction of body keypoints of the two chosen candidates that
  are epipolar-consistent (the subject is one person that all calibrated views see at one place), plus, per view,
- ``track_weight`` x closeness to the subject chosen in the previous frame of the view (tracking),
- ``centre_weight`` x closeness to the image centre (a rig's cameras look at the capture volume, where the subject
  performs; bystanders stand at its edges), and
- ``score_weight`` x the candidate's mean keypoint score.

Every combination is scored (at most ``max_combinations``; with many views only the best candidates per view take
part).
The best combination of a frame is one person; the best combination using none of its candidates is
another, and so on (up to P people per frame). (Once the subject's track is known, a view it left empty may take
a candidate another hypothesis had, where that scores more: a view that detected only the subject must not lose
it to the bystander's hypothesis.) Each such person is triangulated (plain DLT of its body keypoints;
the centre is their median) and the people are linked over the frames into 3D tracks (nearest centre within
``track_gate_mm``). The subject is the track with the highest summed score over the sequence, so the choice never
jumps to the other person between two frames (choosing frame by frame did, whenever the bystander scored higher,
as on Pose2Sim's two-person demo; per-view 2D tracking did too, through detections that mix both people).

A chosen candidate that agrees with no other view's choice is dropped (a false detection, or a bystander seen where
the subject was missed). A view's choice is *ambiguous* when choosing another candidate in that view only (the
other views' choices kept) comes within ``margin`` points; the detect stage reports how often that happens.

Epipolar distances follow Hartley and Zisserman (2004), eq. 11.9 (the symmetric epipolar distance), on
undistorted coordinates, scaled to pixels by the mean focal length.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import Rig
from build_h3wb.geometry.epipolar import essential_matrix, symmetric_epipolar_distance

#: Bump when the choice's rule changes (stored in the detect configuration, so sequences are chosen again).
CHOICE_VERSION = 2


def pairwise_agreement(
    candidates: np.ndarray,
    rig: Rig,
    *,
    min_score: float = 0.3,
    epipolar_px: float = 20.0,
    epipolar_share: float = 0.0,
    min_joints: int = 4,
) -> np.ndarray:
    """Epipolar agreement of every pair of candidates in every pair of views.

    Args:
        candidates: (C, T, P, J, 3) ``[x, y, score]`` pixels, NaN where missing.
        rig: the C calibrated views.
        min_score: keypoints below this confidence are ignored.
        epipolar_px: a keypoint pair agrees when its symmetric epipolar distance is below this many pixels...
        epipolar_share: ...or below this share of the two candidates' mean body size (the diagonal of their body
            keypoints' box), whichever is larger: a person 950 px tall in a 1920 px portrait view is detected less
            precisely, in pixels, than one 450 px tall (0: the pixel threshold alone).
        min_joints: a pair of candidates needs this many body keypoints seen in both views to agree at all.

    Returns:
        (C, C, T, P, P) float in [0, 1]: entry ``[a, b, t, p, q]`` is the fraction of body keypoints seen in both
        that agree, between candidate p of view a and candidate q of view b (0 on the diagonal a == b).
    """
    C, T, P, J, _ = candidates.shape
    if C != len(rig):
        raise ValueError(f"candidates have {C} views, the rig {len(rig)}")
    kp = candidates[..., skeleton.PARTS["body"], :]  # (C, T, P, Jb, 3)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(kp).all(-1) & (kp[..., 2] >= min_score)  # (C, T, P, Jb)
    homog = np.ones(kp.shape, dtype=np.float64)  # undistorted normalised, homogeneous
    for c, cam in enumerate(rig):
        homog[c, ..., :2] = cam.undistort_pixels(np.nan_to_num(kp[c, ..., :2]))
    focal = np.mean([0.5 * (cam.K[0, 0] + cam.K[1, 1]) for cam in rig])
    size = np.nan_to_num(skeleton.box_diagonal(kp[..., :2], valid))  # (C, T, P) px, 0 for absent candidates
    out = np.zeros((C, C, T, P, P))
    for a in range(C):
        for b in range(a + 1, C):
            E = essential_matrix(rig, a, b)
            dist = symmetric_epipolar_distance(homog[a][:, :, None], homog[b][:, None], E) * focal  # (T, P, Q, Jb)
            both = valid[a][:, :, None] & valid[b][:, None]  # (T, P, Q, Jb)
            n = both.sum(-1)
            tol = np.maximum(epipolar_px, epipolar_share * 0.5 * (size[a][:, :, None] + size[b][:, None]))  # (T, P, Q)
            good = (both & (dist < tol[..., None])).sum(-1)
            out[a, b] = np.where(n >= min_joints, good / np.maximum(n, 1), 0.0)
            out[b, a] = out[a, b].transpose(0, 2, 1)
    return out


def choose_subject(
    candidates: np.ndarray,
    rig: Rig,
    *,
    min_score: float = 0.3,
    epipolar_px: float = 20.0,
    epipolar_share: float = 0.0,
    agreement_weight: float = 2.0,
    track_weight: float = 1.0,
    centre_weight: float = 1.0,
    score_weight: float = 0.5,
    track_scale: float = 0.25,
    track_gate_mm: float = 500.0,
    min_agreement: float = 0.5,
    margin: float = 0.5,
    max_combinations: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick the subject among each image's candidates, consistently across views and frames.

    Args:
        candidates: (C, T, P, J, 3) ``[x, y, score]`` pixels, NaN where missing; candidate 0 is the detector's best.
        rig: the C calibrated views.
        min_score: keypoints below this confidence are ignored.
        epipolar_px: pixel tolerance of the cross-view agreement (see :func:`pairwise_agreement`).
        epipolar_share: tolerance as a share of the person's size in the image, if larger (same).
        agreement_weight: points per pair of views whose chosen candidates agree fully.
        track_weight: unused (the identity over time comes from the 3D tracks); kept for configurations.
        centre_weight: points for ``1 - d / (half the image diagonal)``, d the distance of the candidate's
            keypoint centroid from the image centre.
        score_weight: points for the candidate's mean keypoint score.
        track_scale: unused, see ``track_weight``.
        track_gate_mm: a person's body centre moves at most this far between consecutive selected frames (times
            the gap, in frames, when a track misses frames).
        min_agreement: a choice whose summed agreement with the other views' choices is below this is dropped
            (when another view has a choice at all).
        margin: a view's choice is ambiguous when choosing otherwise there costs less than this many points.
        max_combinations: the most joint choices scored per frame (fewer candidates per view take part beyond).

    Returns:
        ``(keypoints, choice, ambiguous)``: (C, T, J, 3) float32 the chosen candidate (NaN where a view has none),
        (C, T) int the chosen candidate index (-1: none), (C, T) bool ambiguous choices.
    """
    if candidates.ndim != 5 or candidates.shape[-2:] != (skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected candidates (C, T, P, {skeleton.NUM_KEYPOINTS}, 3), got {candidates.shape}")
    C, T, P = candidates.shape[:3]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(candidates).all(-1) & (candidates[..., 2] >= min_score)  # (C, T, P, J)
    present = valid.any(-1)  # (C, T, P)
    ambiguous = np.zeros((C, T), dtype=bool)
    if P == 1:  # nothing to choose: passed through as detected
        choice = np.where(np.isfinite(candidates[:, :, 0]).all(-1).any(-1), 0, -1)
        return _gather(candidates, choice), choice, ambiguous
    while P > 1 and (P + 1) ** C > max_combinations:
        P -= 1  # many views: only the best candidates per view take part
    candidates, valid, present = candidates[:, :, :P], valid[:, :, :P], present[:, :, :P]

    xy = np.where(valid[..., None], candidates[..., :2], np.nan)  # (C, T, P, J, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # absent candidates: NaN centroid
        centroid = np.nanmean(xy, axis=-2)  # (C, T, P, 2)
    half_size = np.array([cam.image_size for cam in rig], dtype=np.float64)[:, None, None] / 2  # (C, 1, 1, 2)
    off_centre = np.linalg.norm(centroid - half_size, axis=-1) / np.linalg.norm(half_size, axis=-1)
    scores = np.where(valid, candidates[..., 2], 0.0).sum(-1) / np.maximum(valid.sum(-1), 1)
    unary = centre_weight * (1.0 - np.clip(np.nan_to_num(off_centre, nan=1.0), 0.0, 1.0)) + score_weight * scores
    # option P = "none" (0 points: a present candidate always scores at least as much, so it is chosen where the
    # view's candidates are all taken by other people, e.g. a view that sees only the bystander)
    unary = np.concatenate([np.where(present, unary, -np.inf), np.zeros((C, T, 1))], axis=-1)  # (C, T, P + 1)
    agree = np.zeros((C, C, T, P + 1, P + 1))
    agree[..., :P, :P] = pairwise_agreement(candidates, rig, min_score=min_score, epipolar_px=epipolar_px,
                                            epipolar_share=epipolar_share)

    combos = np.array(list(itertools.product(range(P + 1), repeat=C)))  # (K, C)
    static = np.zeros((T, len(combos)))
    for a in range(C):
        static += unary[a][:, combos[:, a]]
        for b in range(a + 1, C):
            static += agreement_weight * agree[a, b][:, combos[:, a], combos[:, b]]
    # people hypotheses per frame: the best joint choice, then the best one disjoint from those before, ...
    H = P
    hyp = np.full((T, H), -1, dtype=np.int64)  # (T, H) combination index, -1: none
    used = np.zeros((T, C, P + 1), dtype=bool)  # candidates already taken by an earlier hypothesis
    for h in range(H):
        free = ~used[:, np.arange(C)[None], combos].any(-1)  # (T, K) combinations using no taken candidate
        free &= (combos < P).sum(1)[None] >= 2  # a person needs two views
        masked = np.where(free, static, -np.inf)
        k = np.argmax(masked, axis=1)
        ok = np.isfinite(masked[np.arange(T), k])
        hyp[ok, h] = k[ok]
        t_ok = np.nonzero(ok)[0]
        for c in range(C):
            used[t_ok, c, combos[k[ok], c]] = True
        used[:, :, P] = False  # "none" can be shared
    centre3d = _hypothesis_centres(candidates, valid, combos, hyp, rig)  # (T, H, 3) mm, NaN: none
    track = _link_tracks(centre3d, track_gate_mm)  # (T, H) track id, -1: none
    gain = np.where(hyp >= 0, np.take_along_axis(static, np.clip(hyp, 0, None), 1), 0.0)  # (T, H)
    ids = np.unique(track[track >= 0])
    choice = np.full((C, T), -1)
    if ids.size:
        totals = np.array([gain[track == i].sum() for i in ids])
        subject = ids[int(np.argmax(totals))]
        place = (P + 1) ** np.arange(C - 1, -1, -1)  # combination index of a choice per view: choice @ place
        for t, h in zip(*np.nonzero(track == subject)):
            k = int(hyp[t, h])
            best = combos[k].copy()
            total = static[t]
            for c in np.flatnonzero(best == P):  # a view left empty because its candidate went to another person:
                for p in np.flatnonzero(present[c, t]):  # the subject may take it where that scores more
                    trial = best.copy()
                    trial[c] = p
                    if total[trial @ place] > total[best @ place]:
                        best = trial
            k = int(best @ place)
            chosen = [int(p) if p < P else -1 for p in best]
            for c in range(C):  # another candidate in this view only, the other views' choices kept
                rest = np.arange(C) != c
                other = total[(combos[:, c] != best[c]) & (combos[:, rest] == best[rest]).all(1)]
                ambiguous[c, t] = bool(other.size and np.isfinite(other.max()) and total[k] - other.max() < margin)
                if chosen[c] < 0:
                    continue
                # drop choices no other view's choice agrees with
                support = sum(agree[c, b, t, best[c], best[b]] for b in range(C) if b != c and chosen[b] >= 0)
                if support < min_agreement and any(chosen[b] >= 0 for b in range(C) if b != c):
                    continue
                choice[c, t] = chosen[c]
    return _gather(candidates, choice), choice, ambiguous & (choice >= 0)


def _hypothesis_centres(
    candidates: np.ndarray, valid: np.ndarray, combos: np.ndarray, hyp: np.ndarray, rig: Rig
) -> np.ndarray:
    """(T, H, 3) world mm: median of the plain-DLT body keypoints of each frame's people hypotheses (NaN: none).

    Args:
        candidates: (C, T, P, J, 3) pixels.
        valid: (C, T, P, J) bool, the keypoints to use.
        combos: (K, C) candidate per view (P: none).
        hyp: (T, H) combination per hypothesis (-1: none).
        rig: the C views.
    """
    from build_h3wb.geometry.triangulation import triangulate  # noqa: PLC0415 (the triangulation imports the rig)

    C, T, P = candidates.shape[:3]
    body = skeleton.PARTS["body"]
    Jb = body.stop - body.start
    pick = combos[np.clip(hyp, 0, None)]  # (T, H, C)
    pick = np.where((hyp >= 0)[..., None], pick, P)
    kp = np.concatenate([candidates[..., body, :], np.full((C, T, 1, Jb, 3), np.nan)], axis=2)  # (C, T, P+1, Jb, 3)
    ok = np.concatenate([valid[..., body], np.zeros((C, T, 1, Jb), bool)], axis=2)
    t_idx = np.arange(T)[:, None]
    uv = np.stack([kp[c, t_idx, pick[..., c]] for c in range(C)])  # (C, T, H, Jb, 3)
    good = np.stack([ok[c, t_idx, pick[..., c]] for c in range(C)])  # (C, T, H, Jb)
    score = np.where(good, np.nan_to_num(uv[..., 2]), 0.0)
    pts = triangulate(uv[..., :2], score, rig, robust=False).points  # (T, H, Jb, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hypotheses without points: NaN
        return np.nanmedian(pts, axis=2)


def _link_tracks(centres: np.ndarray, gate_mm: float) -> np.ndarray:
    """Link each frame's people into tracks by their 3D centres (greedy nearest first, within the gate).

    Args:
        centres: (T, H, 3) world mm, NaN where a hypothesis is absent.
        gate_mm: largest move between consecutive frames (times the frame gap for a track that missed frames).

    Returns:
        (T, H) int track id, -1 for absent hypotheses.
    """
    T, H, _ = centres.shape
    out = np.full((T, H), -1, dtype=np.int64)
    last: list[tuple[np.ndarray, int]] = []  # per track: last centre and frame
    for t in range(T):
        present = [h for h in range(H) if np.isfinite(centres[t, h]).all()]
        pairs = sorted((float(np.linalg.norm(centres[t, h] - pos)), h, i)
                       for h in present for i, (pos, t0) in enumerate(last)
                       if np.linalg.norm(centres[t, h] - pos) <= gate_mm * (t - t0))
        taken_h, taken_i = set(), set()
        for _, h, i in pairs:
            if h not in taken_h and i not in taken_i:
                out[t, h] = i
                taken_h.add(h)
                taken_i.add(i)
        for h in present:
            if h not in taken_h:
                out[t, h] = len(last)
                last.append((centres[t, h], t))
            else:
                last[out[t, h]] = (centres[t, h], t)
    return out


def _gather(candidates: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """(C, T, P, J, 3), (C, T) -> (C, T, J, 3) float32, NaN where the choice is -1."""
    idx = np.clip(choice, 0, None)[:, :, None, None, None]
    chosen = np.take_along_axis(candidates, idx, axis=2)[:, :, 0]
    return np.where((choice >= 0)[..., None, None], chosen, np.nan).astype(np.float32)


def subject_consistency(candidates: np.ndarray, choice: np.ndarray, rig: Rig, *, min_score: float = 0.3) -> dict:
    """Check, without ground truth, that a choice keeps one person in every view and frame.

    Two independent tests on the body keypoints, counted over the view-frames where a rival (another candidate)
    is present, the only ones where a wrong choice is possible:

    - **track**: in each view, the chosen candidate of frame t is nearer (median keypoint distance) to the choice
      of frame t - 1 than every rival of frame t is; a *switch* is counted otherwise.
    - **cross-view**: the body triangulated (plain DLT) from the *other* views' choices reprojects into the view
      nearer to the chosen candidate than to every rival; a *mismatch* is counted otherwise (view-frames whose
      other views give no reconstruction are not *checked*).

    Args:
        candidates: (C, T, P, J, 3) ``[x, y, score]`` pixels, NaN where missing.
        choice: (C, T) int the chosen candidate per view-frame, -1 for none.
        rig: the C calibrated views.
        min_score: keypoints below this confidence are ignored.

    Returns:
        Counts ``chosen``, ``with_rival``, ``track_steps``, ``track_switches``, ``cross_view_checked``,
        ``cross_view_mismatches``, the median leave-one-out reprojection distances (pixels) of the chosen
        candidates and of their nearest rivals, ``chosen_px`` and ``rival_px``, and the counts per view under
        ``per_view``.
    """
    from build_h3wb.geometry.triangulation import triangulate  # noqa: PLC0415 (the triangulation imports the rig)

    C, T, P = candidates.shape[:3]
    if choice.shape != (C, T):
        raise ValueError(f"choice has shape {choice.shape}, expected (C, T) = {(C, T)}")
    part = skeleton.PARTS["body"]
    body = candidates[..., part, :].astype(np.float64)  # (C, T, P, Jb, 3)
    chosen = _gather(candidates, choice)[..., part, :].astype(np.float64)  # (C, T, Jb, 3)
    with np.errstate(invalid="ignore"):
        body[~(body[..., 2] >= min_score)] = np.nan
        chosen[~(chosen[..., 2] >= min_score)] = np.nan
    present = np.isfinite(body[..., 0]).any(-1)  # (C, T, P)
    rival = present & (np.arange(P)[None, None] != choice[..., None])  # (C, T, P)

    def median_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nothing in common: NaN
            return np.nanmedian(np.linalg.norm(a[..., :2] - b[..., :2], axis=-1), axis=-1)

    keys = ("chosen", "with_rival", "track_steps", "track_switches", "cross_view_checked", "cross_view_mismatches")
    totals = dict.fromkeys(keys, 0)
    per_view, chosen_px, rival_px = {}, [], []
    for c, cam in enumerate(rig):
        steps = (choice[c, 1:] >= 0) & (choice[c, :-1] >= 0) & rival[c, 1:].any(-1)  # (T - 1,)
        d_same = median_distance(chosen[c, 1:], chosen[c, :-1])  # (T - 1,)
        d_rival = np.where(rival[c, 1:], median_distance(body[c, 1:], chosen[c, :-1, None]), np.inf).min(-1)
        switches = steps & (d_rival < d_same)
        others = [b for b in range(C) if b != c]
        sub = Rig(name=rig.name, cameras=tuple(rig[b] for b in others))
        X = triangulate(chosen[others][..., :2], np.nan_to_num(chosen[others][..., 2]), sub, min_score=min_score,
                        robust=False).points  # (T, Jb, 3)
        proj = cam.project(X)  # (T, Jb, 2)
        e_chosen = median_distance(chosen[c], proj)  # (T,)
        e_rival = np.where(rival[c], median_distance(body[c], proj[:, None]), np.inf).min(-1)  # (T,)
        has = (choice[c] >= 0) & rival[c].any(-1)
        checked = has & np.isfinite(e_chosen)
        mismatch = checked & (e_rival < e_chosen)
        chosen_px += e_chosen[checked].tolist()
        rival_px += e_rival[checked & np.isfinite(e_rival)].tolist()
        view = {"chosen": int((choice[c] >= 0).sum()), "with_rival": int(has.sum()), "track_steps": int(steps.sum()),
                "track_switches": int(switches.sum()), "cross_view_checked": int(checked.sum()),
                "cross_view_mismatches": int(mismatch.sum())}
        per_view[cam.name] = view
        for k in keys:
            totals[k] += view[k]
    return {**totals, "chosen_px": float(np.median(chosen_px)) if chosen_px else None,
            "rival_px": float(np.median(rival_px)) if rival_px else None, "per_view": per_view}
