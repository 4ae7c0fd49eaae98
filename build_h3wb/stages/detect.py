"""Stage ``detect``: run the detector over the selected frames of every view of every sequence.

The work unit is one **video** (one view of one sequence), written atomically when finished, so an interrupted run
resumes at the next video and runs can be sharded (``detect.shard``/``detect.num_shards``, or
``detect.subjects``/``actions``/``cameras``) over processes, machines or Slurm jobs with Hydra multirun:

- ``detect/videos/<subject>/<sequence>/<camera>.h5``: ``candidates`` (T, P, J, 3) float32 ``[x, y, score]`` pixels
  of up to P people per frame (best first, NaN where absent), ``frames`` (T,) int64 frame numbers (from 0);
  attributes: the video, its reported frame count and size, ``truncated``, seconds spent, ``config_hash``, and
  what the detector reports (``detector=files``: the files read, their ``layout``, ``frame_files_missing``).
- ``detect/videos/<subject>/<sequence>/<camera>.failed.json``: a video that could not be used (missing, unreadable,
  wrong size, ...) and why; it is retried by the next run.

When every view of a sequence is accounted for, the sequence is assembled (by whichever run gets there):

- ``detect/<subject>/<sequence>.h5``: ``keypoints`` (C, T, J, 3) float32 ``[x, y, score]`` in pixels (distorted
  image coordinates) of the chosen subject, NaN where missing; ``frames`` (T,) int64, the union of the views' frames
  (a view that lacks a frame, e.g. a shorter video, is NaN there, never shifted); ``cameras`` (C,) the view order;
  ``choice`` (C, T) int8 the chosen candidate (-1: none) and ``ambiguous`` (C, T) bool; attributes ``subject``,
  ``action``, ``sequence``, ``rig`` (the rig JSON), ``views`` (the views with detections), ``config_hash``.

The manifest is written once every sequence is assembled or reported as skipped (fewer than two usable views).
A detector with ``frame_numbers_only`` (detections read from files) gets batches of frame numbers: nothing is decoded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from build_h3wb import skeleton
from build_h3wb.artifacts import (
    StageDir,
    atomic_h5,
    config_hash,
    open_h5,
    read_attrs,
    read_json,
    require_dataset,
    write_json,
)
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.subject import CHOICE_VERSION, choose_subject
from build_h3wb.geometry.cameras import Rig
from build_h3wb.parallel import map_sequences, worker_count
from build_h3wb.sources.base import Recording, Source, frame_number_batches
from build_h3wb.sources.video import VideoError
from build_h3wb.stages.common import build_dir, make_source, plain, progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Video:
    """One view of one sequence: the detect stage's unit of work."""

    seq: Recording
    camera: str


def run(cfg: DictConfig) -> dict:
    """Detect this run's share of the videos, assemble finished sequences, write the manifest when all are done."""
    source = make_source(cfg)
    detector = instantiate(cfg.detector, _convert_="all")
    dc = cfg.detect
    if not 0 <= dc.shard < dc.num_shards:
        raise ValueError(f"detect.shard={dc.shard} must be in [0, detect.num_shards={dc.num_shards})")
    choice_cfg = plain(dc.subject)
    stage_config = {"source": source.describe(), "detector": detector.describe(), "subject_choice": choice_cfg,
                    "subject_choice_version": CHOICE_VERSION}
    sd = StageDir(build_dir(cfg), "detect", stage_config, overwrite=cfg.build.overwrite)
    sd.check_compatible()
    sequences = source.sequences()
    rigs = {seq: source.rig(seq) for seq in sequences}
    videos = [Video(seq, cam) for seq in sequences for cam in rigs[seq].names]
    mine = select_videos(videos, dc)
    log.info("detect: %d sequences, %d videos; this run: %d videos%s", len(sequences), len(videos), len(mine),
             f" (shard {dc.shard} of {dc.num_shards})" if dc.num_shards > 1 else "")

    counts = {"computed": 0, "resumed": 0, "failed": 0, "truncated": 0, "view_frames": 0, "seconds": 0.0}
    todo = [v for v in mine if not sd.is_done(video_path(sd, v))]
    counts["resumed"] = len(mine) - len(todo)
    workers = detect_workers(dc.workers, detector, len(todo))
    if workers > 1:
        container = OmegaConf.to_container(cfg, resolve=True)
        jobs = [(container, sd, v.seq, v.camera, dc.batch_size) for v in todo]
        statuses = map_sequences(_detect_in_worker, jobs, workers, "detect", unit="video")
    else:
        statuses = []
        bar = progress(todo, desc="detect", unit="video")
        for video in bar:
            statuses.append(_detect_video(source, detector, sd, video, rigs[video.seq], dc.batch_size))
            if statuses[-1] is not None:
                bar.set_postfix(fps=f"{statuses[-1]['frames'] / max(statuses[-1]['seconds'], 1e-9):.1f}")
    for status in statuses:
        counts["failed" if status is None else "computed"] += 1
        if status is not None:
            counts["view_frames"] += status["frames"]
            counts["seconds"] += status["seconds"]
            counts["truncated"] += int(status["truncated"])
    if hasattr(detector, "close"):
        detector.close()
    log.info("detect: %d videos computed, %d already done, %d failed%s", counts["computed"], counts["resumed"],
             counts["failed"], f" ({counts['view_frames']} view-frames at "
             f"{counts['view_frames'] / max(counts['seconds'], 1e-9):.1f} frames/s)" if counts["computed"] else "")

    summary = _assemble(sd, sequences, rigs, choice_cfg)
    summary["this_run"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in counts.items()}
    if summary["pending_videos"]:
        log.info("detect: %d of %d videos still to do (other shards or a later run); the run that finishes the last "
                 "one assembles the sequences and writes the manifest", summary["pending_videos"], len(videos))
        return summary
    assembled = summary.pop("_assembled")
    sd.write_manifest(summary, units=[unit(s) for s in sequences if s.name in assembled.get(s.subject, ())])
    _report(summary)
    return summary


def detect_workers(setting: int, detector, videos: int) -> int:
    """Processes for ``videos`` videos: ``detect.workers`` if positive; automatic (0) only for light detectors.

    A detector that is cheap to make and runs on one thread (``parallel_videos``: the simulated one, files) shares
    the videos among worker processes; a network (OpenPifPaf, MediaPipe) stays in one process unless
    ``detect.workers`` asks otherwise (each worker loads its own network and uses its own threads or GPU).
    """
    if setting == 0 and not getattr(detector, "parallel_videos", False):
        return 1
    return worker_count(setting, videos)


_WORKER_STATE: dict[str, tuple] = {}  # in a worker process: the source and detector of the current configuration


def _detect_in_worker(cfg: dict, sd: StageDir, seq: Recording, camera: str, batch_size: int) -> dict | None:
    """:func:`_detect_video` in a worker process; its source and detector are made once from the configuration."""
    if sd.hash not in _WORKER_STATE:
        node = OmegaConf.create(cfg)
        _WORKER_STATE.clear()
        _WORKER_STATE[sd.hash] = (make_source(node), instantiate(node.detector, _convert_="all"))
    source, detector = _WORKER_STATE[sd.hash]
    return _detect_video(source, detector, sd, Video(seq, camera), source.rig(seq), batch_size)


def select_videos(videos: list[Video], dc: DictConfig) -> list[Video]:
    """This run's share: the videos passing the subject/action/camera filters, then every num_shards-th."""
    chosen = [v for v in videos
              if (not dc.subjects or v.seq.subject in dc.subjects)
              and (not dc.actions or v.seq.action in dc.actions)
              and (not dc.cameras or v.camera in dc.cameras)]
    return chosen[dc.shard :: dc.num_shards]


def video_path(sd: StageDir, video: Video) -> Path:
    """Stable path of one video's detections."""
    return sd.root / "videos" / video.seq.subject / video.seq.name / f"{video.camera}.h5"


def _failed_path(sd: StageDir, video: Video) -> Path:
    return video_path(sd, video).with_suffix(".failed.json")


def _detect_video(source: Source, detector, sd: StageDir, video: Video, rig: Rig, batch_size: int) -> dict | None:
    """Detect one video and write its file; a video that cannot be used is reported and gets a ``.failed.json``."""
    seq, camera = video.seq, video.camera
    t0 = time.perf_counter()
    frames_done: list[np.ndarray] = []
    detections: list[np.ndarray] = []
    truncated = ""
    try:
        frames = source.view_frames(seq, camera)
        if getattr(detector, "frame_numbers_only", False):  # e.g. detections read from files: decode nothing
            batches = frame_number_batches(seq, rig[camera], frames, batch_size)
        else:
            batches = source.batches(seq, camera, frames, batch_size)
        try:
            for batch in batches:
                detections.append(check_detections(detector(batch), len(batch.frames), detector.name))
                frames_done.append(np.asarray(batch.frames, dtype=np.int64))
        except VideoError as err:
            if not frames_done:
                raise
            truncated = str(err)
    except VideoError as err:
        log.warning("detect: skipping %s camera %s: %s", seq.key, camera, err)
        write_json(_failed_path(sd, video), {"config_hash": sd.hash, "subject": seq.subject, "sequence": seq.name,
                                             "camera": camera, "reason": str(err)})
        return None
    if truncated:
        log.warning("detect: %s camera %s is truncated; keeping the %d frames before the damage: %s", seq.key,
                    camera, sum(map(len, frames_done)), truncated)
    P = max(d.shape[1] for d in detections) if detections else 1
    J = skeleton.NUM_KEYPOINTS
    cand = np.full((sum(map(len, frames_done)), P, J, 3), np.nan, dtype=np.float32)
    offset = 0
    for d in detections:
        cand[offset : offset + len(d), : d.shape[1]] = d
        offset += len(d)
    seconds = time.perf_counter() - t0
    found = int(np.isfinite(cand[..., 2]).any(axis=(1, 2)).sum())  # frames with anyone detected
    if len(cand) and not found:
        log.warning("detect: %s camera %s: no person detected in any of its %d frames (wrong camera, dark video, "
                    "or a detector that does not fit?)", seq.key, camera, len(cand))
    info = source.video_info(seq, camera) if hasattr(source, "video_info") else {}
    if hasattr(detector, "video_report"):  # what the detector has to say about this view (files read, gaps)
        info |= detector.video_report(seq, camera)
    attrs = sd.unit_attrs(unit(seq), camera=camera, truncated=truncated, seconds=round(seconds, 3),
                          frames_selected=int(len(frames)), frames_with_detections=found, **info)
    with atomic_h5(video_path(sd, video), attrs) as f:
        f.create_dataset("frames", data=np.concatenate(frames_done) if frames_done else np.zeros(0, np.int64))
        f.create_dataset("candidates", data=cand)
    _failed_path(sd, video).unlink(missing_ok=True)
    return {"frames": len(cand), "seconds": seconds, "truncated": bool(truncated)}


def _view_status(sd: StageDir, video: Video) -> str:
    """``done``, ``failed`` (with the current configuration) or ``pending``."""
    if sd.is_done(video_path(sd, video)):
        return "done"
    failed = _failed_path(sd, video)
    if failed.exists():
        try:
            if read_json(failed).get("config_hash") == sd.hash:
                return "failed"
        except Exception as err:  # noqa: BLE001 (a corrupt marker only means: try the video again)
            log.warning("%s unreadable (%s); the video will be retried", failed, err)
    return "pending"


def _assemble(sd: StageDir, sequences: list[Recording], rigs: dict[Recording, Rig], choice_cfg: dict) -> dict:
    """Assemble every sequence whose views are all accounted for; returns the stage summary."""
    pending, assembled, resumed = 0, 0, 0
    skipped: list[dict] = []
    failed_videos: list[dict] = []
    mismatched: list[dict] = []
    truncated: list[dict] = []
    empty: list[str] = []
    no_file: list[dict] = []
    ambiguous, chosen_views, seconds, view_frames = 0, 0, 0.0, 0
    done_units: dict[str, set[str]] = {}
    assembly: dict[str, list[str]] = {}  # sequence -> the views it was assembled from
    for seq in sequences:
        rig = rigs[seq]
        status = {cam: _view_status(sd, Video(seq, cam)) for cam in rig.names}
        if "pending" in status.values():
            pending += list(status.values()).count("pending")
            continue
        for cam, st in status.items():
            if st == "failed":
                reason = read_json(_failed_path(sd, Video(seq, cam)))["reason"]
                failed_videos.append({"video": f"{seq.key}.{cam}", "reason": reason})
        views = [cam for cam in rig.names if status[cam] == "done"]
        if len(views) < 2:
            skipped.append({"sequence": seq.key, "reason": f"only {len(views)} usable view(s): {views}"})
            log.warning("detect: %s skipped: fewer than two usable views (%s)", seq.key, views or "none")
            continue
        path = sd.sequence_path(seq.subject, seq.name)
        attrs = read_attrs(path) if sd.is_done(path) else {}
        if attrs and json.loads(attrs.get("views", "[]")) == views:
            resumed += 1
            stats = json.loads(attrs["stats"])
        else:
            stats = _assemble_sequence(sd, seq, rig, views, choice_cfg, path)
            assembled += 1
        done_units.setdefault(seq.subject, set()).add(seq.name)
        assembly[seq.key] = views
        if stats["frame_counts_differ"]:
            mismatched.append({"sequence": seq.key, "frames_per_view": stats["frames_per_view"]})
        truncated += [{"video": f"{seq.key}.{cam}", "reason": why} for cam, why in stats["truncated"].items()]
        empty += [f"{seq.key}.{cam}" for cam in stats["views_without_detections"]]
        no_file += [{"video": f"{seq.key}.{cam}", "frames": n}
                    for cam, n in stats.get("frame_files_missing", {}).items()]
        ambiguous += stats["ambiguous"]
        chosen_views += stats["chosen"]
        seconds += stats["seconds"]
        view_frames += sum(stats["frames_per_view"].values())
    return {
        "sequences": len(sequences), "assembled": assembled, "assembled_before": resumed,
        "pending_videos": pending, "skipped_sequences": skipped, "failed_videos": failed_videos,
        "truncated_videos": truncated, "videos_without_detections": empty, "frame_count_mismatches": mismatched,
        "frames_without_detection_file": no_file,
        "view_frames": view_frames, "detector_seconds": round(seconds, 2),
        "frames_per_second": round(view_frames / seconds, 1) if seconds > 0 else None,
        "subject_choice_ambiguous": ambiguous, "subject_chosen_view_frames": chosen_views,
        "subject_choice_ambiguous_share": round(ambiguous / chosen_views, 5) if chosen_views else 0.0,
        # changes when a retried video joins its sequence: downstream stages see their input changed
        "assembly_hash": config_hash(assembly),
        "_assembled": done_units,
    }


def _assemble_sequence(sd: StageDir, seq: Recording, rig: Rig, views: list[str], choice_cfg: dict, path: Path) -> dict:
    """Align the views' frames, choose the subject, write the sequence file; returns its statistics."""
    per_view, truncated, seconds, empty, no_file = {}, {}, 0.0, [], {}
    for cam in views:
        vpath = video_path(sd, Video(seq, cam))
        with open_h5(vpath) as f:
            frames = require_dataset(f, "frames")[:]
            cand = require_dataset(f, "candidates", (skeleton.NUM_KEYPOINTS, 3))[:]
        attrs = read_attrs(vpath)
        seconds += float(attrs.get("seconds", 0.0))
        if attrs.get("truncated"):
            truncated[cam] = attrs["truncated"]
        if int(attrs.get("frame_files_missing", 0)):
            no_file[cam] = int(attrs["frame_files_missing"])
        if len(frames) and not np.isfinite(cand[..., 2]).any():
            empty.append(cam)
        per_view[cam] = (frames, cand)
    all_frames = np.unique(np.concatenate([fr for fr, _ in per_view.values()]))
    counts = {cam: int(len(fr)) for cam, (fr, _) in per_view.items()}
    differ = len(set(counts.values())) > 1 or any(len(fr) != len(all_frames) for fr, _ in per_view.values())
    if differ:
        log.warning("detect: %s: the views have %s selected frames (videos of different length); aligned by frame "
                    "number over %d frames, missing frames are NaN", seq.key, counts, len(all_frames))
    C, T, J = len(rig), len(all_frames), skeleton.NUM_KEYPOINTS
    P = max(c.shape[1] for _, c in per_view.values())
    stacked = np.full((C, T, P, J, 3), np.nan, dtype=np.float32)
    for c, cam in enumerate(rig.names):
        if cam in per_view:
            fr, cand = per_view[cam]
            stacked[c, np.searchsorted(all_frames, fr), : cand.shape[1]] = cand
    keypoints, choice, ambiguous = choose_subject(stacked, rig, **choice_cfg)
    detected = {cam: round(float((choice[c] >= 0).mean()), 4) if T else 0.0 for c, cam in enumerate(rig.names)}
    stats = {"frames_per_view": counts, "frame_counts_differ": bool(differ), "truncated": truncated,
             "views_without_detections": empty, "frame_files_missing": no_file, "subject_found_share": detected,
             "ambiguous": int(ambiguous.sum()), "chosen": int((choice >= 0).sum()), "seconds": seconds,
             "candidates_per_image": int(P)}
    attrs = sd.unit_attrs(unit(seq), rig=rig.to_dict(), views=views, stats=stats)
    with atomic_h5(path, attrs) as f:
        f.create_dataset("frames", data=all_frames)
        f.create_dataset("cameras", data=np.array(rig.names, dtype=h5py.string_dtype()))
        f.create_dataset("keypoints", data=keypoints, chunks=(1, min(T, 256), J, 3) if T else None)
        f.create_dataset("choice", data=choice.astype(np.int8))
        f.create_dataset("ambiguous", data=ambiguous)
    return stats


def _report(summary: dict) -> None:
    for what in ("failed_videos", "truncated_videos", "videos_without_detections", "skipped_sequences",
                 "frame_count_mismatches", "frames_without_detection_file"):
        if summary[what]:
            log.warning("detect: %d %s (see detect/manifest.json)", len(summary[what]), what.replace("_", " "))
    if summary["subject_chosen_view_frames"]:
        log.info("detect: subject choice ambiguous in %d of %d view-frames (%.3f%%)",
                 summary["subject_choice_ambiguous"], summary["subject_chosen_view_frames"],
                 100 * summary["subject_choice_ambiguous_share"])


def unit(seq: Recording) -> dict:
    """A sequence as a manifest entry."""
    return {"subject": seq.subject, "action": seq.action, "sequence": seq.name}
