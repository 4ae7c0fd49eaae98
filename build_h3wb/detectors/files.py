"""Detections another tool already wrote (OpenPose, MMPose / RTMLib / RTMW, AlphaPose, Pose2Sim), read as a detector.

``detector=files detector.root=DIR`` reads, for every view of every sequence, the files at
``<root>/<detector.pattern>`` (default ``{sequence}/{camera}``, also ``{subject}`` may be used), which is either

- a **folder of per-frame files**: OpenPose ``--write_json`` output (``<video>_000000000123_keypoints.json``),
  MMPose's inferencer per image (``frame_0123.json``), or plain arrays (``0123.json`` holding ``[[[x, y, score],
  ...], ...]`` per person, or ``0123.npy`` of shape (P, K, 3)). A file's frame number is the **last run of digits in
  its name** (``..._000000000123_keypoints.json`` -> 123); or
- **one file per video**, ``<that path>.json``: MMPose's inferencer video output (``[{"frame_id": i, "instances":
  [...]}, ...]``), MMPose's demo scripts (``{"meta_info": ..., "instance_info": [{"frame_id": i, ...}]}``) or
  AlphaPose's ``alphapose-results.json`` (``[{"image_id": "123.jpg", "keypoints": [...]}, ...]``, the number in the
  image name).

The frame a file holds is its number minus ``detector.first_frame``: 0 for OpenPose and MMPose's inferencer (which
count from 0, as build_h3wb does), 1 for tools counting from 1 (ffmpeg image extractions, MMPose's demo scripts).
The source's selected frames are matched by that number; a selected frame without a file is a missing frame (no
person), counted and reported in the detect manifest; files of other frames are ignored.

The keypoint layout is ``detector.layout`` (see :mod:`build_h3wb.skeleton.layouts`) or ``auto``: chosen per video
from the first file's keypoint count (OpenPose's ``pose_keypoints_2d`` of 25 or 18 points, MMPose's 133, HALPE's
26 or 136, COCO's 17), logged, and then required of every file of the video. A file that cannot be read, or whose
keypoint count does not fit the layout, stops the run with the file, the layout expected and what was found.

Every person of a frame is a candidate (best first by mean score, at most ``max_people``); the detect stage picks
the subject consistently across views. Scores are kept as given; a keypoint scoring 0 (OpenPose writes ``0, 0, 0``
for one it did not find) is missing. No video is decoded: the detect stage gives this detector frame numbers only
(``frame_numbers_only``); the source still says which frames exist (e.g. the video's length).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.skeleton.layouts import LAYOUTS, Layout, layout, layout_for_count, to_wholebody
from build_h3wb.sources.base import FrameBatch, Recording
from build_h3wb.sources.video import VideoError

log = logging.getLogger(__name__)

FRAME_FILE_EXTENSIONS = (".json", ".npy")
_DIGITS = re.compile(r"\d+")


class DetectionFileError(ValueError):
    """A detections file that cannot be read or does not fit the layout (names the file, expected and found)."""


# ---------------------------------------------------------------------------------------------------------------
# Parsing one file's people
# ---------------------------------------------------------------------------------------------------------------


def frame_number(name: str) -> int | None:
    """The frame number in a file or image name: its last run of digits (``a_000000000123_keypoints.json`` -> 123)."""
    runs = _DIGITS.findall(Path(name).stem)
    return int(runs[-1]) if runs else None


def _choose(found: int, wanted: str, path: Path, what: str) -> Layout:
    """The layout for ``found`` keypoints: ``wanted`` if it fits, else a clear error; ``auto`` picks by count."""
    if wanted == "auto":
        lay = layout_for_count(found)
        if lay is None:
            known = ", ".join(f"{n} ({lay.sections[0].size})" for n, lay in LAYOUTS.items())
            raise DetectionFileError(f"{path}: {what} has {found} keypoints, which is no supported layout; supported "
                                     f"(keypoints): {known}")
        return lay
    lay = layout(wanted)
    if found != lay.sections[0].size:
        guess = layout_for_count(found)
        hint = f" (that is {guess.name}: set detector.layout={guess.name} or auto)" if guess else ""
        raise DetectionFileError(f"{path}: layout {lay.name} expects {lay.sections[0].size} keypoints in {what}, "
                                 f"found {found}{hint}")
    return lay


def _flat_triplets(values: Any, path: Path, what: str) -> np.ndarray:
    """A flat ``[x0, y0, c0, x1, ...]`` list -> (K, 3)."""
    arr = np.asarray(values if values is not None else [], dtype=np.float64)
    if arr.ndim != 1 or arr.size % 3:
        raise DetectionFileError(f"{path}: {what} must be a flat list of x, y, score triplets, found shape "
                                 f"{arr.shape}")
    return arr.reshape(-1, 3)


def _openpose_person(person: dict, path: Path, wanted: str) -> tuple[np.ndarray, Layout]:
    """One OpenPose ``people[]`` entry -> (K, 3) in the layout's section order."""
    if "pose_keypoints_2d" not in person:
        raise DetectionFileError(f"{path}: an OpenPose person has no 'pose_keypoints_2d' (keys: {sorted(person)})")
    body = _flat_triplets(person["pose_keypoints_2d"], path, "pose_keypoints_2d")
    lay = _choose(len(body), wanted, path, "pose_keypoints_2d")
    parts = [body]
    for section in lay.sections[1:]:
        values = _flat_triplets(person.get(section.key), path, section.key)
        if not len(values):  # not written (OpenPose without --hand / --face): missing
            values = np.full((section.size, 3), np.nan)
        elif len(values) != section.size:
            raise DetectionFileError(f"{path}: layout {lay.name} expects {section.size} keypoints in {section.key}, "
                                     f"found {len(values)}")
        parts.append(values)
    return np.concatenate(parts), lay


def _instance(inst: Any, path: Path, wanted: str) -> tuple[np.ndarray, Layout]:
    """One person -> (K, 3): an MMPose instance, an AlphaPose entry or a plain list.

    MMPose: ``keypoints`` (K, 2) + ``keypoint_scores`` (K,); AlphaPose: flat ``keypoints``; plain: (K, 3).
    """
    if isinstance(inst, dict):
        if "keypoints" not in inst:
            raise DetectionFileError(f"{path}: a person entry has no 'keypoints' (keys: {sorted(inst)})")
        kp = np.asarray(inst["keypoints"], dtype=np.float64)
        if kp.ndim == 1:  # AlphaPose: flat x, y, score
            kp = _flat_triplets(kp, path, "keypoints")
        elif kp.ndim == 2 and kp.shape[1] == 2:
            if "keypoint_scores" not in inst:
                raise DetectionFileError(f"{path}: 'keypoints' has (x, y) pairs but there are no 'keypoint_scores'")
            scores = np.asarray(inst["keypoint_scores"], dtype=np.float64).reshape(-1)
            if len(scores) != len(kp):
                raise DetectionFileError(f"{path}: {len(kp)} keypoints but {len(scores)} keypoint_scores")
            kp = np.concatenate([kp, scores[:, None]], axis=1)
        elif not (kp.ndim == 2 and kp.shape[1] == 3):
            raise DetectionFileError(f"{path}: 'keypoints' must be (K, 2) with keypoint_scores or (K, 3), found "
                                     f"shape {kp.shape}")
    else:
        kp = np.asarray(inst, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[1] != 3:
            raise DetectionFileError(f"{path}: a person must be a (K, 3) list of [x, y, score], found shape "
                                     f"{kp.shape}")
    lay = _choose(len(kp), wanted, path, "keypoints")
    if lay.size != len(kp):  # an OpenPose layout given as one array: its body only
        kp = np.concatenate([kp, np.full((lay.size - len(kp), 3), np.nan)])
    return kp, lay


def _people(entries: Iterable[Any], path: Path, wanted: str, parse) -> tuple[np.ndarray, Layout | None]:
    """Parse every person of one frame; all must share one layout. Returns (P, 133, 3) and that layout."""
    people, lay = [], None
    for entry in entries:
        kp, this = parse(entry, path, wanted)
        if lay is not None and this is not lay:
            raise DetectionFileError(f"{path}: people in different layouts ({lay.name} and {this.name})")
        lay = this
        people.append(to_wholebody(kp.astype(np.float32), lay))
    J = skeleton.NUM_KEYPOINTS
    return (np.stack(people) if people else np.zeros((0, J, 3), np.float32)), lay


def _malformed(parse):
    """Turn any other error met while parsing a file's content into a :class:`DetectionFileError` naming the file."""

    def wrapped(data: Any, path: Path, *args: Any) -> Any:
        try:
            return parse(data, path, *args)
        except DetectionFileError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
            raise DetectionFileError(f"{path}: malformed detections file ({type(err).__name__}: {err})") from err

    wrapped.__doc__, wrapped.__name__ = parse.__doc__, parse.__name__
    return wrapped


@_malformed
def parse_frame(data: Any, path: Path, wanted: str = "auto") -> tuple[np.ndarray, Layout | None]:
    """The people of one frame from a per-frame file's content.

    Args:
        data: the parsed JSON (OpenPose ``{"people": [...]}``, MMPose ``[instance, ...]`` or ``{"instance_info":
            [instance, ...]}``, or a plain (P, K, 3) list) or a loaded ``.npy`` array (P, K, 3) / (K, 3).
        path: the file, for error messages.
        wanted: a layout name or ``auto``.

    Returns:
        ``(people, layout)``: (P, 133, 3) float32 ``[x, y, score]`` pixels in the file's order, NaN where missing
        (score <= 0 included); the layout found (None when the frame has nobody).
    """
    if isinstance(data, np.ndarray):
        arr = data.astype(np.float64)
        arr = arr[None] if arr.ndim == 2 else arr
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise DetectionFileError(f"{path}: expected an array (P, K, 3) or (K, 3) of [x, y, score], found shape "
                                     f"{data.shape}")
        people, lay = _people(list(arr), path, wanted, _instance)
    elif isinstance(data, dict) and "people" in data:
        people, lay = _people(data["people"] or [], path, wanted, _openpose_person)
    elif isinstance(data, dict) and "instance_info" in data:
        people, lay = _people(data["instance_info"] or [], path, wanted, _instance)
    elif isinstance(data, list):
        people, lay = _people(data, path, wanted, _instance)
    else:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DetectionFileError(f"{path}: not a detections file: expected OpenPose ('people'), MMPose (a list of "
                                 f"instances, or 'instance_info') or a (P, K, 3) list; found {keys}")
    with np.errstate(invalid="ignore"):
        people[~np.isfinite(people).all(-1) | (people[..., 2] <= 0)] = np.nan
    return people, lay


def _load(path: Path) -> Any:
    """A JSON or .npy file's content, or an error naming the file."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DetectionFileError(f"{path}: unreadable detections file ({err})") from err


def best_first(people: np.ndarray) -> np.ndarray:
    """(P, J, 3) -> (P, J, 3) sorted by mean keypoint score, highest first (NaN counts as 0)."""
    if len(people) < 2:
        return people
    score = np.nan_to_num(people[..., 2]).mean(-1)  # (P,)
    return people[np.argsort(-score, kind="stable")]


def read_detection_file(path: str | Path, wanted: str = "auto") -> tuple[np.ndarray, Layout | None]:
    """One frame's detections file (any supported layout) -> (P, 133, 3) float32, best first, and its layout."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such detections file")
    data = _load(path)
    if _is_video_file(data):
        raise DetectionFileError(f"{path}: holds the detections of many frames (a video's); give one frame's file")
    people, lay = parse_frame(data, path, wanted)
    return best_first(people), lay


def _is_video_file(data: Any) -> bool:
    """Whether parsed JSON holds many frames (MMPose video output, MMPose demo video, AlphaPose results)."""
    if isinstance(data, dict) and "instance_info" in data:
        data = data["instance_info"]
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return False
    return "instances" in data[0] or "image_id" in data[0]


@_malformed
def parse_video(data: Any, path: Path, wanted: str) -> tuple[dict[int, np.ndarray], Layout | None]:
    """A per-video file's content -> {number written in the file: (P, 133, 3)} and the layout.

    The number is MMPose's ``frame_id`` or the last digits of AlphaPose's ``image_id``; entries of one number are
    the people of that frame.
    """
    if isinstance(data, dict) and "instance_info" in data:
        data = data["instance_info"]
    grouped: dict[int, list[Any]] = {}
    for entry in data:
        if "instances" in entry:
            if "frame_id" not in entry:
                raise DetectionFileError(f"{path}: a frame entry has 'instances' but no 'frame_id'")
            grouped.setdefault(int(entry["frame_id"]), []).extend(entry["instances"] or [])
        else:
            number = frame_number(str(entry.get("image_id", "")))
            if number is None:
                raise DetectionFileError(f"{path}: entry without a frame number in 'image_id': "
                                         f"{entry.get('image_id')!r}")
            grouped.setdefault(number, []).append(entry)
    frames, lay = {}, None
    for number, entries in grouped.items():
        people, this = parse_frame(entries, path, wanted if lay is None else lay.name)
        lay = lay or this
        frames[number] = people
    return frames, lay


# ---------------------------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------------------------


class _View:
    """The detections of one view: a folder index (frame -> file) or a per-video file's frames."""

    def __init__(self, key: tuple[str, str], path: Path, files: dict[int, Path] | None,
                 frames: dict[int, np.ndarray] | None, lay: Layout | None) -> None:
        self.key, self.path, self.files, self.frames, self.layout = key, path, files, frames, lay
        self.requested = 0
        self.missing: list[int] = []
        self.largest = 0.0  # largest absolute coordinate read, to notice normalised coordinates

    def numbers(self) -> set[int]:
        """The frames the view has detections for."""
        return set(self.files if self.files is not None else self.frames or {})


def index_folder(folder: Path) -> dict[int, Path]:
    """Frame number (as written) -> file, for a folder of per-frame files (``.json``, ``.npy``)."""
    files: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in FRAME_FILE_EXTENSIONS or not p.is_file():
            continue
        number = frame_number(p.name)
        if number is None:
            log.warning("detector files: %s has no frame number in its name; ignored", p)
            continue
        if number in files:
            raise DetectionFileError(f"{folder}: two files for frame number {number}: {files[number].name} and "
                                     f"{p.name}")
        files[number] = p
    return files


def view_exists(base: Path) -> bool:
    """Whether a view's detections are there: a folder ``base`` or a file ``base.json``."""
    return base.is_dir() or base.with_name(base.name + ".json").is_file()


def open_view(base: Path, first_frame: int, wanted: str, key: tuple[str, str] = ("", "")) -> _View:
    """Index one view's detections: the folder ``base`` of per-frame files, or the per-video file ``base.json``.

    Raises:
        VideoError: neither exists, or the folder holds no detection files (the detect stage reports the view).
        DetectionFileError: the per-video file cannot be read or is not one video's detections.
    """
    single = base.with_name(base.name + ".json")
    if base.is_dir():
        files = index_folder(base)
        if not files:
            raise VideoError(f"{base}: no detection files ({', '.join(FRAME_FILE_EXTENSIONS)})")
        return _View(key, base, {n - first_frame: p for n, p in files.items()}, None, None)
    if single.is_file():
        data = _load(single)
        if not _is_video_file(data):
            raise DetectionFileError(f"{single}: expected one video's detections (MMPose video output with "
                                     "'frame_id', or AlphaPose results with 'image_id')")
        frames, lay = parse_video(data, single, wanted)
        return _View(key, single, None, {n - first_frame: p for n, p in frames.items()}, lay)
    raise VideoError(f"no detections for {key[0]} camera {key[1]}: neither a folder {base} nor a file {single}")


def files_fingerprint(root: Path) -> str:
    """A hash of every detection file below ``root``: relative path, size and modification time (ns).

    Returns ``"missing"`` when ``root`` does not exist (the detect stage then reports the missing views).
    """
    if not root.is_dir():
        return "missing"
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in FRAME_FILE_EXTENSIONS and p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class FilesDetector:
    """Read other tools' detections instead of detecting (see the module docstring).

    Args:
        root: the folder holding the detections.
        layout: ``auto`` or one of :data:`build_h3wb.skeleton.layouts.LAYOUTS`.
        pattern: the view's path below ``root``, with ``{subject}``, ``{sequence}`` and ``{camera}``: a folder of
            per-frame files, or (with ``.json`` appended) one file for the video.
        first_frame: the number the tool gave the video's first frame (0 or 1).
        max_people: candidates kept per frame, the best (by mean score) first.
    """

    name = "files"
    frame_numbers_only = True  # the detect stage gives frame numbers only: no video is decoded
    parallel_videos = True  # cheap to make, one thread: the detect stage may share videos among processes

    def __init__(self, root: str, layout: str = "auto", pattern: str = "{sequence}/{camera}", first_frame: int = 0,
                 max_people: int = 4) -> None:
        if layout != "auto" and layout not in LAYOUTS:
            raise ValueError(f"detector.layout={layout!r}: supported are auto, {', '.join(LAYOUTS)}")
        if max_people < 1 or first_frame < 0:
            raise ValueError(f"detector: max_people must be >= 1 and first_frame >= 0, got {max_people}, {first_frame}")
        try:
            pattern.format(subject="s", sequence="q", camera="c")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"detector.pattern={pattern!r}: only {{subject}}, {{sequence}} and {{camera}} may be "
                             f"used ({err})") from None
        self.root = Path(root).expanduser()
        self.layout, self.pattern = layout, pattern
        self.first_frame, self.max_people = int(first_frame), int(max_people)
        self._view: _View | None = None

    def describe(self) -> dict[str, Any]:
        """Settings that determine the output, with a fingerprint of the detection files under ``root``.

        The fingerprint hashes every detection file's path, size and modification time (reading every file on each
        run would cost as much as detecting), so replacing or editing files in place changes it and the detect stage
        says the build was made from other detections instead of silently keeping the old ones.
        """
        return {"name": self.name, "root": str(self.root.resolve()), "layout": self.layout, "pattern": self.pattern,
                "first_frame": self.first_frame, "max_people": self.max_people,
                "files_fingerprint": files_fingerprint(self.root)}

    def view_path(self, seq: Recording, camera: str) -> Path:
        """Where the detections of one view are expected (a folder; or this path + ``.json``)."""
        return self.root / self.pattern.format(subject=seq.subject, sequence=seq.name, camera=camera)

    def _open(self, seq: Recording, camera: str) -> _View:
        key = (seq.key, camera)
        if self._view is not None and self._view.key == key:
            return self._view
        self._view = open_view(self.view_path(seq, camera), self.first_frame, self.layout, key)
        if self._view.layout is not None:
            self._log_layout(self._view, self._view.path)
        return self._view

    def _log_layout(self, view: _View, first: Path) -> None:
        how = "detector.layout=auto chose" if self.layout == "auto" else "layout"
        log.info("detector files: %s camera %s: %s %s (from %s)", view.key[0], view.key[1], how, view.layout.name,
                 first.name)

    def _frame(self, view: _View, frame: int) -> np.ndarray:
        """(P, 133, 3) of one frame; no people where the view has no file for it (counted as missing)."""
        view.requested += 1
        J = skeleton.NUM_KEYPOINTS
        if view.files is not None:
            path = view.files.get(frame)
            if path is None:
                view.missing.append(frame)
                return np.zeros((0, J, 3), np.float32)
            try:
                people, lay = parse_frame(_load(path), path, view.layout.name if view.layout else self.layout)
            except DetectionFileError as err:
                if self.layout == "auto" and view.layout is not None:
                    raise DetectionFileError(f"{err} (detector.layout=auto chose {view.layout.name} from this "
                                             "view's first file; all files of a view must share a layout)") from err
                raise
            if view.layout is None and lay is not None:
                view.layout = lay
                self._log_layout(view, path)
            return people
        people = view.frames.get(frame)
        if people is None:
            view.missing.append(frame)
            return np.zeros((0, J, 3), np.float32)
        return people

    def __call__(self, batch: FrameBatch) -> np.ndarray:
        """(B, P, 133, 3) float32 ``[x, y, score]`` pixels of every person in the batch's frames, best first."""
        view = self._open(batch.sequence, batch.camera.name)
        per_frame = [best_first(self._frame(view, int(f)))[: self.max_people] for f in batch.frames]
        for people in per_frame:
            xy = np.abs(people[..., :2])
            if np.isfinite(xy).any():
                view.largest = max(view.largest, float(np.nanmax(xy)))
        P = max([len(p) for p in per_frame] + [1])
        out = np.full((len(per_frame), P, skeleton.NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
        for b, people in enumerate(per_frame):
            out[b, : len(people)] = people
        return out

    def video_report(self, seq: Recording, camera: str) -> dict[str, Any]:
        """What the detect stage stores about a finished view: the files read, the layout, the missing frames."""
        view = self._view if self._view is not None and self._view.key == (seq.key, camera) else None
        if view is None:
            return {}
        if view.missing:
            log.warning("detector files: %s camera %s: %d of %d selected frames have no detections file in %s "
                        "(missing; check detector.first_frame=%d), e.g. frame %d", seq.key, camera, len(view.missing),
                        view.requested, view.path, self.first_frame, view.missing[0])
        elif view.requested and not view.numbers():
            log.warning("detector files: %s camera %s: no frames in %s", seq.key, camera, view.path)
        if 0 < view.largest <= 1.5:
            log.warning("detector files: %s camera %s: every coordinate in %s lies within [-1.5, 1.5]; these look "
                        "normalised (OpenPose --keypoint_scale), but pixels are expected", seq.key, camera, view.path)
        return {"detections": str(view.path), "layout": view.layout.name if view.layout else "",
                "frame_files_missing": len(view.missing), "frame_files_missing_first": view.missing[:10]}
