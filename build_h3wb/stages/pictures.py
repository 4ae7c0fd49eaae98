"""Stage ``pictures``: figures of a build's sequences, and of single photographs through a detector and a lifter.

Of one sequence (``pictures.subject``, ``pictures.sequence``), under ``pictures/<subject>/<sequence>/``:

- ``pictures.views=true`` (default): ``frame_<frame>_views.png``, every view of ``pictures.frame`` with the
  detections and the final 3D keypoints reprojected, coloured by provenance (triangulated, completed, refined),
  and ``frame_<frame>_3d.png``, the 3D skeleton in world coordinates;
- ``pictures.sheet=true``: ``sheet_<camera>.png``, a contact sheet of ``pictures.sheet_frames`` evenly spaced
  frames in ``pictures.camera`` (default: the rig's first) with the same overlay;
- ``pictures.video=true``: ``video_<camera>.mp4``, every selected frame in that camera with the overlay drawn by
  OpenCV, at the build's frame rate (the video's rate over the frame stride; ``pictures.video_fps`` overrides).

The final keypoints are those of the last pose stage that has run. Where the source has pixels (a video source,
read with the ``data`` settings given) they are drawn under the points; otherwise a neutral background is.

Of a photograph: ``pictures.image=photo.jpg detector=mediapipe`` runs the detector on it (its best candidate), lifts
the detection with the I2D lifter ``pictures.lifter`` (default ``<build.dir>/lifter/I2Dto3D/model.pt``, written by
``stage=lifter``; missing and low-scoring keypoints are its mask) and writes ``pictures/image_<stem>.png`` (four
panels, see :func:`build_h3wb.viz.figures.image_figure`) and ``pictures/image_<stem>.json`` (the box, the detection,
the mask and the lifted pose). Only this is drawn when ``pictures.image`` is set. The photograph gets a plain
pinhole camera (:func:`build_h3wb.viz.figures.pinhole_camera`); the lifter does not depend on it.

Detections another tool made (OpenPose, MMPose/RTMW, AlphaPose; any layout of :mod:`build_h3wb.skeleton.layouts`)
are lifted instead of running a detector: ``pictures.detections=frame.json`` beside the photograph, or
``pictures.image=frame.json`` alone (drawn on a neutral background). The file's best person (highest mean score)
is lifted; ``pictures.layout`` names its layout (default ``auto``). The JSON then also holds the joints other
skeletons have and COCO-WholeBody lacks (pelvis, neck, head; :func:`build_h3wb.skeleton.layouts.derived_joints`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, finished_manifest, open_h5, read_attrs, write_json
from build_h3wb.build import read_rig
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.files import FRAME_FILE_EXTENSIONS, read_detection_file
from build_h3wb.geometry.cameras import Camera, Rig
from build_h3wb.skeleton.layouts import derived_joints
from build_h3wb.sources.base import FrameBatch, Recording, Source
from build_h3wb.sources.video import VideoError
from build_h3wb.stages.common import build_dir, make_source, progress
from build_h3wb.stages.evaluate import finished_pose_stages
from build_h3wb.viz.figures import (
    detection_box,
    draw_skeleton_3d,
    draw_views,
    image_figure,
    lift_detection,
    pinhole_camera,
    save_figure,
    sheet_figure,
)
from build_h3wb.viz.overlays import camera_layers, neutral_canvas, overlay, view_layers, write_video

log = logging.getLogger(__name__)

_FALLBACK_FPS = 10.0  # the H3WB grid, when the source reports no frame rate (image folders)
_BATCH = 16  # frames read from the source at once


def run(cfg: DictConfig) -> dict:
    """Draw what ``cfg.pictures`` asks for; returns the paths written."""
    root = build_dir(cfg)
    pcfg = cfg.pictures
    _check_settings(pcfg)
    if pcfg.image:
        return _photo(cfg, root)
    if not (pcfg.views or pcfg.sheet or pcfg.video):
        raise ValueError("pictures: nothing to draw; set pictures.views, pictures.sheet or pictures.video to true, "
                         "or pictures.image to a photograph")
    subject, sequence = pcfg.subject, pcfg.sequence
    seq = _load_sequence(root, subject, sequence)
    source = make_source(cfg)
    src_seq = _source_sequence(source, subject, sequence)
    out = root / "pictures" / subject / sequence
    written: dict[str, str] = {}
    if pcfg.views:
        written |= _frame_figures(seq, source, src_seq, pcfg.frame, out)
    if not (pcfg.sheet or pcfg.video):
        return written
    cam = _camera(seq["rig"], pcfg.camera)
    c = seq["rig"].names.index(cam.name)
    layers = camera_layers(cam, seq["detections"][c], seq["kp3d"], seq["provenance"])  # layer -> (T, J, 2)
    head = f"{subject} / {sequence} / camera {cam.name}"
    if pcfg.sheet:
        frames = seq["frames"]
        pick = np.unique(np.linspace(0, len(frames) - 1, min(pcfg.sheet_frames, len(frames))).round().astype(int))
        fig, _ = sheet_figure(cam, {k: v[pick] for k, v in layers.items()}, frames[pick],
                              images=list(_images(source, src_seq, cam.name, frames[pick])),
                              columns=pcfg.sheet_columns, title=f"{head} (after {seq['stage']})")
        written["sheet"] = str(out / f"sheet_{cam.name}.png")
        save_figure(fig, written["sheet"])
        log.info("pictures: wrote %s (%d frames)", written["sheet"], len(pick))
    if pcfg.video:
        fps = pcfg.video_fps or _build_fps(root, subject, sequence, cam.name, seq["frames"])
        written["video"] = str(out / f"video_{cam.name}.mp4")
        n = write_video(written["video"], _video_frames(source, src_seq, cam, seq["frames"], layers, head), fps)
        log.info("pictures: wrote %s (%d frames at %.3g fps)", written["video"], n, fps)
    return written


def _video_frames(source: Source, seq: Recording, cam: Camera, frames: np.ndarray, layers: dict[str, np.ndarray],
                  head: str) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB: every frame of the camera (or a neutral canvas) with the overlay of ``layers`` (T, J, 2)."""
    images = _images(source, seq, cam.name, frames)
    for t, image in enumerate(progress(images, total=len(frames), desc="video", unit="frame")):
        base = neutral_canvas(cam.image_size) if image is None else image
        yield overlay(base, {k: v[t] for k, v in layers.items()}, label=f"{head} / frame {int(frames[t])}")


def _check_settings(pcfg: DictConfig) -> None:
    problems = []
    if pcfg.sheet_frames < 1 or pcfg.sheet_columns < 1:
        problems.append(f"pictures.sheet_frames and pictures.sheet_columns must be >= 1, got {pcfg.sheet_frames} and "
                        f"{pcfg.sheet_columns}")
    if pcfg.video_fps < 0:
        problems.append(f"pictures.video_fps must be >= 0 (0: the build's frame rate), got {pcfg.video_fps}")
    if pcfg.crop_margin < 0 or not 0 <= pcfg.min_score <= 1:
        problems.append(f"pictures.crop_margin must be >= 0 and pictures.min_score in [0, 1], got {pcfg.crop_margin} "
                        f"and {pcfg.min_score}")
    if problems:
        raise ValueError("; ".join(problems))


def _load_sequence(root: Path, subject: str, sequence: str) -> dict:
    """A sequence's detections and final keypoints, from the last pose stage that has run.

    Returns:
        ``frames`` (T,), ``detections`` (C, T, J, 3) pixels, ``rig``, ``kp3d`` (T, J, 3) world mm, ``provenance``
        (T, J) uint8 (0 triangulated, 1 completed, 2 refined) and ``stage``, the stage the keypoints come from.
    """
    stages = finished_pose_stages(root)
    if not stages:
        raise BuildDirError(f"nothing to draw in {root}: run the stages up to triangulate first")
    det_m = finished_manifest(root, "detect")
    units = {(u["subject"], u["sequence"]) for u in det_m["units"]}
    if (subject, sequence) not in units:
        raise ValueError(f"pictures.subject/sequence {subject}/{sequence!r} is not in the build; e.g. "
                         f"{sorted(units)[:3]}")
    name = f"{sequence}.h5"
    with open_h5(root / "detect" / subject / name) as f:
        frames = f["frames"][:]
        det = f["keypoints"][:]  # (C, T, J, 3)
        rig = read_rig(dict(f.attrs), str(f.filename))
    final_stage = stages[-1]
    with open_h5(root / final_stage / subject / name) as f:
        kp = f["keypoints_3d"][:].astype(np.float64)  # (T, J, 3)
        refined = f["refined"][:] if "refined" in f else np.zeros(kp.shape[:2], bool)
    filled = np.zeros(kp.shape[:2], bool)
    if (root / "complete" / subject / name).exists():
        with open_h5(root / "complete" / subject / name) as f:
            filled = f["filled"][:]
    prov = np.where(refined, 2, np.where(filled, 1, 0)).astype(np.uint8)  # (T, J)
    return {"frames": frames, "detections": det, "rig": rig, "kp3d": kp, "provenance": prov, "stage": final_stage}


def _frame_figures(seq: dict, source: Source, src_seq: Recording, frame: int, out: Path) -> dict[str, str]:
    """The per-frame figures: every view (over its image where the source has pixels) and the 3D skeleton."""
    frames = seq["frames"]
    hit = np.flatnonzero(frames == frame)
    if not len(hit):
        raise ValueError(f"pictures.frame={frame} is not a selected frame of {src_seq.key}; selected frames run "
                         f"{frames[0]}..{frames[-1]} every {frames[1] - frames[0] if len(frames) > 1 else 1}")
    t = int(hit[0])
    rig: Rig = seq["rig"]
    kp, prov = seq["kp3d"][t], seq["provenance"][t]
    images = [next(_images(source, src_seq, cam.name, frames[t : t + 1])) for cam in rig]
    title = f"{src_seq.subject} / {src_seq.name} / frame {frame} (after {seq['stage']})"
    views = out / f"frame_{frame:04d}_views.png"
    sk3d = out / f"frame_{frame:04d}_3d.png"
    draw_views(rig, view_layers(rig, seq["detections"][:, t], kp, prov), views, title,
               images=None if all(im is None for im in images) else images)
    draw_skeleton_3d(kp, prov, sk3d, title)
    log.info("pictures: wrote %s and %s", views, sk3d)
    return {"views": str(views), "skeleton_3d": str(sk3d)}


def _source_sequence(source: Source, subject: str, sequence: str) -> Recording:
    for s in source.sequences():
        if s.subject == subject and s.name == sequence:
            return s
    raise ValueError(f"the data settings of this run hold no sequence {subject}/{sequence!r}; run stage=pictures with "
                     "the data.* settings the build was made with")


def _camera(rig: Rig, name: str) -> Camera:
    if not name:
        return rig[0]
    if name not in rig.names:
        raise ValueError(f"pictures.camera={name!r} is not a camera of this sequence; its cameras are "
                         f"{list(rig.names)}")
    return rig[name]


def _images(source: Source, seq: Recording, camera: str, frames: np.ndarray) -> Iterator[np.ndarray | None]:
    """The camera's (H, W, 3) uint8 RGB image at each frame.

    None where the source has no pixels, and from the first frame on that its video cannot give (logged).
    """
    done = 0
    try:
        for batch in source.batches(seq, camera, frames, _BATCH):
            for k in range(len(batch.frames)):
                yield None if batch.images is None else batch.images[k]
                done += 1
    except VideoError as err:
        log.warning("pictures: %s camera %s: %s; the frames from %d on are drawn without their image", seq.key,
                    camera, err, frames[done])
    for _ in range(done, len(frames)):
        yield None


def _build_fps(root: Path, subject: str, sequence: str, camera: str, frames: np.ndarray) -> float:
    """Frames per second of the build's selected frames: the video's rate over the frame stride."""
    video = root / "detect" / "videos" / subject / sequence / f"{camera}.h5"
    fps = float(read_attrs(video).get("fps", 0.0)) if video.exists() else 0.0
    if fps <= 0:
        fps = float(finished_manifest(root, "detect")["config"].get("source", {}).get("video_fps", 0.0))
    if fps <= 0:
        log.warning("pictures: the source reports no frame rate for %s/%s camera %s; writing the video at %g fps "
                    "(set pictures.video_fps)", subject, sequence, camera, _FALLBACK_FPS)
        return _FALLBACK_FPS
    step = float(np.median(np.diff(frames))) if len(frames) > 1 else 1.0
    return fps / step


def _photo(cfg: DictConfig, root: Path) -> dict:
    """``pictures.image``: the photograph through the detector and the I2D lifter, in four panels."""
    from build_h3wb.leaderboard.lifter import load_lifter

    pcfg = cfg.pictures
    path = Path(pcfg.image).expanduser()
    detections = Path(pcfg.detections).expanduser() if pcfg.detections else None
    if detections is None and path.suffix.lower() in FRAME_FILE_EXTENSIONS:  # the "image" is a detections file
        detections, image = path, None
    else:
        image = _read_image(path)
    lifter = Path(pcfg.lifter).expanduser() if pcfg.lifter else root / "lifter" / "I2Dto3D" / "model.pt"
    if not lifter.is_file():
        raise FileNotFoundError(
            f"lifter {lifter} does not exist: `python -m build_h3wb stage=lifter build.dir={root}` trains it (after "
            f"stage=export; it writes <build.dir>/lifter/I2Dto3D/model.pt), or set pictures.lifter=/path/to/model.pt"
        )
    model, _, stats, _ = load_lifter(lifter)
    kp, image, described, how = _photo_detection(cfg, path, image, detections)
    H, W = image.shape[:2]
    hidden, centred, pred = lift_detection(kp, model, stats, pcfg.min_score)
    x0, y0, x1, y1 = detection_box(kp, (W, H), pcfg.crop_margin)
    kp_crop = kp.copy()
    kp_crop[:, :2] -= (x0, y0)
    fig, _ = image_figure(image[y0:y1, x0:x1], kp_crop, hidden, centred, stats.mean_2d, pred,
                          title=f"{path.name} through {how} and lifter {lifter}")
    out = root / "pictures" / f"image_{path.stem}.png"
    save_figure(fig, out)
    write_json(out.with_suffix(".json"), {
        "image": str(path), "image_size": [W, H], "detector": described, "lifter": str(lifter),
        "box": [x0, y0, x1, y1], "min_score": pcfg.min_score,
        "keypoints_2d": _nan_to_none(kp),  # (J, 3) [x, y, score] image pixels, null where missing
        "derived_2d": {k: _nan_to_none(v[None])[0] for k, v in derived_joints(kp[:, :2]).items()},  # pixels
        "hidden": hidden.tolist(),  # (J,) the lifter's mask
        "keypoints_3d_mm": _nan_to_none(pred),  # (J, 3) camera axes, mid-hip at the origin
    })
    log.info("pictures: %s: %d keypoints detected, %d hidden from the lifter; wrote %s", path, int(np.isfinite(
        kp[:, 2]).sum()), int(hidden.sum()), out)
    return {"image": str(out), "image_json": str(out.with_suffix(".json"))}


def _photo_detection(cfg: DictConfig, path: Path, image: np.ndarray | None,
                     detections: Path | None) -> tuple[np.ndarray, np.ndarray, dict, str]:
    """The person to lift: the best in a detections file, or the detector's best candidate on the photograph.

    Returns:
        ``(kp, image, described, how)``: (J, 3) ``[x, y, score]`` pixels; the (H, W, 3) image (a neutral canvas
        around the detection when there is no photograph); what produced ``kp``; the same in words for the title.
    """
    if detections is not None:
        people, lay = read_detection_file(detections, cfg.pictures.layout)
        if not len(people) or not np.isfinite(people[0, :, 2]).any():
            raise ValueError(f"{detections}: nobody in this detections file")
        log.info("pictures: %s: %d people in layout %s; lifting the best", detections, len(people), lay.name)
        kp = people[0]  # (J, 3) the best person
        if image is None:
            image = neutral_canvas(_canvas_size(kp, cfg.pictures.crop_margin))
        how = (f"its {lay.name} detections" if detections == path else
               f"{lay.name} detections from {detections.name}")
        return kp, image, {"name": "files", "file": str(detections), "layout": lay.name}, how
    H, W = image.shape[:2]
    detector = instantiate(cfg.detector, _convert_="all")
    batch = FrameBatch(sequence=Recording("image", "image", path.stem), camera=pinhole_camera(W, H),
                       frames=np.zeros(1, dtype=np.int64), images=image[None])
    try:
        kp = check_detections(detector(batch), 1, detector.name)[0, 0]  # (J, 3) the best candidate
    finally:
        if hasattr(detector, "close"):
            detector.close()
    if not np.isfinite(kp[:, 2]).any():
        raise ValueError(f"{path}: nobody detected by detector {detector.name!r}")
    return kp, image, detector.describe(), f"detector {detector.name}"


def _canvas_size(kp: np.ndarray, margin: float) -> tuple[int, int]:
    """(W, H) pixels of a neutral canvas holding a detection with nothing under it: its keypoints and a margin."""
    uv = kp[np.isfinite(kp).all(-1), :2]
    hi = uv.max(0) + margin * np.maximum(np.ptp(uv, axis=0), 1.0)  # (2,)
    W, H = np.ceil(np.maximum(hi, 1.0)).astype(int) + 1
    return int(W), int(H)


def _read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or a clear error naming the file."""
    import cv2  # noqa: PLC0415

    if not path.is_file():
        raise FileNotFoundError(f"pictures.image={path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"pictures.image={path}: OpenCV cannot read this file as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _nan_to_none(a: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else round(float(v), 3) for v in row] for row in a]
