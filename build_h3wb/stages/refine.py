"""Stage ``refine``: hands and faces refined with part shape models and all views' detections.

Reads ``complete/`` (poses with the holes filled), ``triangulate/`` (views used, reprojection errors) and
``detect/`` (every view's 2D keypoints). Part models (face, each hand) are learned per subject from its best
complete triangulated poses (lowest mean reprojection error; pooled over subjects when a subject has too few), then
every hand and face keypoint is re-triangulated from the detections with the model fit as a prior (see
``refine.refinement``). Writes ``refine/<subject>/<sequence>.h5``: ``keypoints_3d`` (T, J, 3) float32 world mm,
``refined`` (T, J) bool (moved by the refinement), ``frames``. A recording is read, refined and written
``refine.chunk_frames`` frames at a time (with ``refine.temporal_window`` frames of context on each side, all that a
frame's refinement looks at), and the part models' training poses are picked from the triangulations a chunk at a
time too: memory does not grow with the recording, and the output is the same for any chunk length.

With ``refine.correctors`` (optional, trained on the user's 2D annotations: ``refine.corrector``), every view's
hand and face detections are first corrected on the video frames, as the original H3WB build did in 2D.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from build_h3wb import skeleton
from build_h3wb.artifacts import BuildDirError, atomic_h5, open_h5
from build_h3wb.build import Build, read_rig
from build_h3wb.geometry.cameras import Rig
from build_h3wb.geometry.sequence_check import undo_swaps
from build_h3wb.parallel import map_sequences
from build_h3wb.refine.refinement import REFINED_PARTS, fit_part_models, frame_segments, refine_sequence
from build_h3wb.sources.base import Recording, Source
from build_h3wb.stages.common import frame_chunks, make_source, plain, progress

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Refine every completed sequence not yet done; returns the counts."""
    build = Build.from_config(cfg)
    root = build.root
    inputs = build.inputs("refine")
    comp = inputs["complete"]
    rcfg = plain(cfg.refine)
    workers = rcfg.pop("workers")  # how, not what: not part of the configuration hash
    chunk = rcfg.pop("chunk_frames")  # how too: the output is the same for any chunk length
    sd = build.stage_dir("refine", {"refine": rcfg}, inputs)
    units = comp["units"]
    if sd.up_to_date(units):
        log.info("refine: up to date in %s", sd.root)
        return sd.read_manifest()["counts"]
    models = _part_models(root, units, rcfg["best_poses"], rcfg["min_subject_poses"], rcfg["ranks"] or None, chunk)
    options = {k: rcfg[k] for k in ("min_score", "prior_weight", "temporal_window", "noise_mm", "trust_views",
                                    "trust_power", "filled_weight", "keep_views", "keep_score")}
    correctors, source = {}, None
    if rcfg["correctors"]:
        from build_h3wb.refine.corrector import load_corrector  # noqa: PLC0415 (optional)

        correctors = {part: load_corrector(path)[0] for part, path in rcfg["correctors"].items()}
        source = make_source(cfg)
    todo = [u for u in units if not sd.is_done(sd.sequence_path(u["subject"], u["sequence"]))]
    jobs = [(root, u, sd.sequence_path(u["subject"], u["sequence"]), sd.unit_attrs(u), models[u["subject"]], options,
             chunk) for u in todo]
    if correctors:  # they decode video frames with their own network: one process
        for job in progress(jobs, desc="refine", unit="seq"):
            _refine_file(*job, correctors=correctors, source=source)
    else:
        map_sequences(_refine_file, jobs, workers, "refine")
    moved = total = 0
    for u in units:  # every sequence, also those of an earlier run
        with open_h5(sd.sequence_path(u["subject"], u["sequence"])) as f:
            for read, _, _ in frame_chunks(f["refined"].shape[0], chunk):
                mask = f["refined"][read]
                moved += int(mask.sum())
                total += mask.size
    counts = {"sequences": len(units), "refined_keypoints": moved, "keypoints": total}
    log.info("refine: %d keypoints refined in %d sequences", moved, len(units))
    sd.write_manifest(counts, units=units)
    return counts


def _refine_file(root, u: dict, out, attrs: dict, model, options: dict, chunk: int,
                 correctors: dict | None = None, source: Source | None = None) -> None:
    """One sequence: read the complete, triangulate and detect artifacts, refine, write ``out`` with ``attrs``.

    The recording is refined ``chunk`` frames at a time, each chunk read with ``temporal_window`` frames of context on
    either side (all a frame's refinement looks at, see ``refine_sequence``): the same output as in one piece, in
    memory that does not grow with the recording.
    """
    name = f"{u['sequence']}.h5"
    J = skeleton.NUM_KEYPOINTS
    with (open_h5(root / "complete" / u["subject"] / name) as fc,
          open_h5(root / "triangulate" / u["subject"] / name) as ft,
          open_h5(root / "detect" / u["subject"] / name) as fd):
        frames = fc["frames"][:]
        T = len(frames)
        kp, filled, views = fc["keypoints_3d"], fc["filled"], ft["views_used"]
        swapped = ft["swapped"] if "swapped" in ft else None
        det = fd["keypoints"]
        rig = read_rig(dict(fd.attrs), str(fd.filename))
        det_frames = fd["frames"][:]
        _check_frames(T, {fc.filename: (kp, filled), ft.filename: (views,), fd.filename: (det,)})
        if swapped is not None and swapped.shape != det.shape[:2]:
            raise BuildDirError(
                f"{root / 'triangulate' / u['subject'] / name}: dataset 'swapped' has shape {swapped.shape}, expected "
                f"(views, frames) = {det.shape[:2]} as the detections: written by an older version (views last)? "
                f"Rebuild it: `build-h3wb stage=triangulate build.dir={root} build.overwrite=true`, then the stages "
                "after it")
        segments = frame_segments(frames, T)  # runs of consecutive frames, from the whole recording
        context = max(int(options["temporal_window"]), 0)
        with atomic_h5(out, attrs) as g:
            d3 = g.create_dataset("keypoints_3d", (T, J, 3), np.float32)
            dmask = g.create_dataset("refined", (T, J), bool)
            g.create_dataset("frames", data=frames)
            for read, write, keep in frame_chunks(T, chunk, context, context):
                d = det[:, read]  # (C, t, J, 3)
                if swapped is not None:  # the views the triangulation read swapped back are used the same way here
                    d = undo_swaps(d, swapped[:, read])
                if correctors:
                    d = correct_views(source, Recording(u["subject"], u["action"], u["sequence"]), rig,
                                      det_frames[read], d, correctors)
                refined, mask = refine_sequence(kp[read].astype(np.float64), d, rig, model, views_used=views[read],
                                                filled=filled[read], segments=segments[read], **options)
                d3[write] = refined[keep].astype(np.float32)
                dmask[write] = mask[keep]


def _check_frames(T: int, datasets: dict) -> None:
    """Stop with an error naming the file when one of ``datasets`` (file -> its datasets) does not hold T frames.

    Frames are the first axis, the second of the views-first ``keypoints``; read a chunk at a time, a longer dataset
    would not be noticed otherwise.
    """
    for path, items in datasets.items():
        for ds in items:
            n = ds.shape[1] if ds.name.endswith("/keypoints") else ds.shape[0]
            if n != T:
                raise BuildDirError(f"{path}: dataset {ds.name!r} has {n} frames, the completed poses {T}; the build "
                                    "directory mixes outputs of different runs: rebuild it")


def correct_views(source: Source, seq: Recording, rig: Rig, frames: np.ndarray, det: np.ndarray, correctors: dict,
                  batch_size: int = 16) -> np.ndarray:
    """Every view's hand and face detections corrected on its video frames (``build_h3wb.refine.corrector``).

    Args:
        source: the capture (it must have pixels).
        seq: the recording.
        rig: its cameras (the view order of ``det``).
        frames: (T,) frame numbers of ``det``.
        det: (C, T, J, 3) ``[x, y, score]`` pixels, NaN where missing.
        correctors: part name -> ``PartCorrector``.
        batch_size: frames decoded at once.

    Returns:
        (C, T, J, 3) with the corrected parts (their score becomes the corrector's confidence).
    """
    from build_h3wb.refine.corrector import correct_detections  # noqa: PLC0415 (optional)

    out = det.copy()
    for c, cam in enumerate(rig.names):
        for batch in source.batches(seq, cam, frames, batch_size):
            if batch.images is None:
                raise ValueError(f"refine.correctors needs images, and the {type(source).__name__} has none "
                                 "(the synthetic capture renders no pixels)")
            idx = np.searchsorted(frames, batch.frames)
            if not np.array_equal(frames[idx], batch.frames):
                raise ValueError(f"{seq.key} camera {cam}: decoded frames {batch.frames} are not detection frames")
            out[c, idx] = correct_detections(correctors, batch.images, det[c, idx])
    return out


def _best_rows(best: tuple[np.ndarray, np.ndarray] | None, poses: np.ndarray, score: np.ndarray,
               n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` lowest-scoring of ``best`` (poses, scores, from earlier rows) and the new ``poses`` with ``score``.

    Ties keep the earlier row first, so feeding the rows a chunk at a time picks (and orders) the same poses as one
    stable sort of all of them.
    """
    if best is not None:
        poses, score = np.concatenate([best[0], poses]), np.concatenate([best[1], score])
    order = np.argsort(score, kind="stable")[:n]
    return poses[order], score[order]


def _part_models(root, units, best_poses: int, min_poses: int, ranks, chunk: int) -> dict:
    """Subject -> part models, from the subject's best complete triangulated poses (pooled if too few).

    The triangulations are read ``chunk`` frames at a time; only each subject's ``best_poses`` best so far are kept.
    """
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for u in units:
        with open_h5(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") as f:
            for read, _, _ in frame_chunks(f["keypoints_3d"].shape[0], chunk):
                kp = f["keypoints_3d"][read].astype(np.float64)
                complete = np.isfinite(kp).all((1, 2))
                if complete.any():
                    err = f["reprojection_error"][read][complete]
                    kept[u["subject"]] = _best_rows(kept.get(u["subject"]), kp[complete], np.nanmean(err, axis=1),
                                                    best_poses)
    best = {subject: poses for subject, (poses, _) in kept.items()}
    if sum(len(p) for p in best.values()) < 10:
        return _part_models_by_part(root, units, best_poses, min_poses, ranks, chunk)
    pooled = None
    models = {}
    for subject in sorted({u["subject"] for u in units}):
        poses = best.get(subject)
        if poses is not None and len(poses) >= min_poses:
            models[subject] = fit_part_models(poses, ranks=ranks, subject=subject)
            continue
        log.warning("refine: %s has %d complete poses (< %d): using part models pooled over subjects", subject,
                    0 if poses is None else len(poses), min_poses)
        if pooled is None:
            pooled = fit_part_models(np.concatenate(list(best.values())), ranks=ranks, similarity=True)
        models[subject] = pooled
    return models


def _part_models_by_part(root, units, best_poses: int, min_poses: int, ranks, chunk: int) -> dict:
    """Part models when whole complete poses are (almost) absent: each part from the poses that have that part.

    A detector that never finds one part (a subject in a cap: no face) leaves no complete pose; the other parts can
    still be modelled from the poses where they were triangulated completely, scored by the part's own mean
    reprojection error. A part with fewer than 3 such poses gets no model and is not refined (logged).
    """
    kept: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for u in units:
        with open_h5(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") as f:
            for read, _, _ in frame_chunks(f["keypoints_3d"].shape[0], chunk):
                kp = f["keypoints_3d"][read]
                err = f["reprojection_error"][read]
                for part in REFINED_PARTS:
                    sl = skeleton.PARTS[part]
                    ok = np.isfinite(kp[:, sl]).all((1, 2))
                    if ok.any():
                        key = (u["subject"], part)
                        kept[key] = _best_rows(kept.get(key), kp[ok].astype(np.float64),
                                               np.nanmean(err[ok][:, sl], axis=1), best_poses)
    subjects = sorted({u["subject"] for u in units})
    models: dict[str, dict] = {s: {} for s in subjects}
    for part in REFINED_PARTS:
        best = {subject: kept[(subject, part)][0] for subject in subjects if (subject, part) in kept}
        if sum(len(p) for p in best.values()) < 3:
            log.warning("refine: part %s is complete in %d triangulated poses: it is not refined", part,
                        sum(len(p) for p in best.values()))
            continue
        pooled = None
        for subject in subjects:
            poses = best.get(subject)
            if poses is not None and len(poses) >= min_poses:
                models[subject].update(fit_part_models(poses, parts=(part,), ranks=ranks, subject=subject))
                continue
            if pooled is None:
                pooled = fit_part_models(np.concatenate(list(best.values())), parts=(part,), ranks=ranks,
                                         similarity=True)
            models[subject].update(pooled)
    log.warning("refine: too few complete triangulated poses; part models learned per part from the poses that "
                "have it: %s", ", ".join(f"{s}: {sorted(m)}" for s, m in models.items()))
    return models
