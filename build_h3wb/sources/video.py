"""Reading the frames of one view: a video file (decoded with OpenCV) or a folder of images.

Frames are numbered from 0 in decoding order, as OpenCV reads them (and as H3WB numbers Human3.6M frames; ffmpeg
extractions usually number from 1). Only the requested frames are decoded: frames in between are skipped with
``grab()``, which demuxes without converting, and long gaps are crossed by seeking.

A file that cannot be opened, has no frames or stops decoding early raises :class:`VideoError` (a truncated video
yields the frames it has first, so nothing decoded is lost); the detect stage reports it and goes on.

Frame sizes (:func:`fit_camera_to_video`, the rule of every video source). A video whose size differs from its
calibration by at most :data:`PAD_CROP_SHARE` of each side (encoders pad or crop to multiples of 8 or 16: a
1088-wide calibration with a 1080-wide video) is used with the calibration's intrinsics, the padding or cropping
taken to be at the right and bottom, as encoders place it, with a warning naming the camera and both sizes. A
uniformly scaled video (a half-size copy, possibly padded likewise) is used with the intrinsics scaled to match,
with a warning. Any other size is refused with a :class:`VideoError`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from build_h3wb.geometry.cameras import Camera, Rig
from build_h3wb.sources.base import FrameBatch, Recording

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SEEK_GAP = 300  # frames: a larger jump seeks instead of grabbing every frame in between
#: Largest size difference per side, as a share of the calibrated (or scaled) side, taken as padding or cropping.
PAD_CROP_SHARE = 0.02


class VideoError(RuntimeError):
    """A video or image folder is missing, unreadable, truncated or does not fit its calibration."""


def _cv2():
    import cv2  # noqa: PLC0415 (OpenCV is imported only where pixels are read)

    return cv2


class FrameReader:
    """The frames of one view, from a video file or an image folder (chosen by what ``path`` is).

    Args:
        path: a video file, or a folder of images (frame ``i`` is the ``i``-th image in name order).

    Attributes:
        frame_count: number of frames the container reports (a video may decode fewer: see :meth:`read`).
        size: (W, H) image size in pixels.
        fps: frame rate the container reports (0 for image folders).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such video or image folder")
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self._images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not self._images:
                raise VideoError(f"{self.path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            first = self._imread(self._images[0])
            self.frame_count, self.fps = len(self._images), 0.0
            self.size = (first.shape[1], first.shape[0])
            return
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot open this video (corrupt, or a codec it lacks)")
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.fps = float(cap.get(cv2.CAP_PROP_FPS))
            self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            ok, _ = cap.read()
            if not ok or self.frame_count <= 0 or min(self.size) <= 0:
                raise VideoError(f"{self.path}: no decodable frames (reported {self.frame_count} frames, "
                                 f"size {self.size[0]}x{self.size[1]})")
        finally:
            cap.release()

    def _imread(self, path: Path) -> np.ndarray:
        cv2 = _cv2()
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(f"{path}: unreadable image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def read(self, frames: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the given frames.

        Args:
            frames: (N,) increasing frame numbers, counted from 0.

        Yields:
            ``(frame, image)`` with image (H, W, 3) uint8 RGB, in order.

        Raises:
            VideoError: after the last frame that decoded, when a requested frame cannot be decoded (truncated or
                corrupt video); the message names the first missing frame.
        """
        frames = np.asarray(frames, dtype=np.int64)
        if frames.size and (np.any(np.diff(frames) <= 0) or frames[0] < 0):
            raise ValueError(f"{self.path}: frames must be increasing and >= 0")
        if self.is_folder:
            for f in frames:
                if f >= len(self._images):
                    raise VideoError(f"{self.path}: frame {f} requested, the folder has {len(self._images)} images")
                yield int(f), self._imread(self._images[f])
            return
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(self.path))
        try:
            position = 0  # the frame the next grab() returns
            for f in frames:
                if f - position > _SEEK_GAP:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, float(f))
                    position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                ok = True
                while ok and position <= f:
                    ok = cap.grab()
                    position += 1
                ok = ok and position == f + 1
                image = cap.retrieve()[1] if ok else None
                if image is None:
                    raise VideoError(f"{self.path}: frame {f} cannot be decoded (the video reports "
                                     f"{self.frame_count} frames; truncated or corrupt)")
                yield int(f), cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()


def fit_camera_to_video(camera: Camera, size: tuple[int, int], where: str | os.PathLike) -> Camera:
    """The camera that describes a view's video of ``size`` pixels (the rule is in the module docstring).

    Args:
        camera: the calibrated camera.
        size: (W, H) of the video's frames, pixels.
        where: the video, for the warning and the error.

    Returns:
        ``camera`` itself when the sizes agree; else a copy with the video's ``image_size`` (padding or cropping,
        intrinsics kept) or with ``K`` scaled by ``s`` (``fx, fy, skew *= s``, ``c = s (c + 0.5) - 0.5``: pixel
        centres, as ``cv2.resize`` samples them).

    Raises:
        VideoError: the sizes differ by more than padding, cropping or a uniform scale explains.
    """
    W, H = (int(v) for v in camera.image_size)
    w, h = (int(v) for v in size)
    if (w, h) == (W, H):
        return camera
    sizes = f"the video is {w}x{h}, the calibration of camera {camera.name!r} is for {W}x{H}"

    def padded(scale: float) -> bool:
        return abs(w - scale * W) <= PAD_CROP_SHARE * scale * W and abs(h - scale * H) <= PAD_CROP_SHARE * scale * H

    if padded(1.0):
        log.warning("%s: %s; taken as padding or cropping at the right and bottom (calibrated intrinsics kept)",
                    where, sizes)
        return dataclasses.replace(camera, image_size=(w, h))
    # a uniform scale: a simple fraction (a half, two thirds, ...) if it fits, else the ratio of one side checked on
    # the other (which may be padded)
    ratio = Fraction(0.5 * (w / W + h / H)).limit_denominator(8)
    scales = [float(ratio), *sorted((w / W, h / H), key=lambda s: abs(w - s * W) + abs(h - s * H))]
    for scale in scales:
        if padded(scale):
            K = camera.K.copy()
            K[:2, :2] *= scale
            K[:2, 2] = scale * (K[:2, 2] + 0.5) - 0.5
            log.warning("%s: %s; taken as the calibrated view scaled by %.4g (intrinsics scaled to match)", where,
                        sizes, scale)
            return dataclasses.replace(camera, image_size=(w, h), K=K)
    raise VideoError(f"{where}: {sizes}; that is neither padding or cropping (up to {PAD_CROP_SHARE:.0%} per side) "
                     "nor a uniform scale of it: wrong calibration or a non-uniformly resized video?")


def find_view(folder: Path, stem: str) -> Path | None:
    """The video file ``<stem>.<ext>`` or image folder ``<stem>/`` for one view inside ``folder``, if any."""
    for ext in VIDEO_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return folder / stem if (folder / stem).is_dir() else None


def read_batches(
    reader: FrameReader, seq: Recording, camera: Camera, frames: np.ndarray, batch_size: int
) -> Iterator[FrameBatch]:
    """``FrameBatch``es of ``batch_size`` decoded frames of one view.

    A video that stops decoding early yields the frames it had, then raises :class:`VideoError`.
    """
    numbers: list[int] = []
    images: list[np.ndarray] = []

    def batch() -> FrameBatch:
        out = FrameBatch(sequence=seq, camera=camera, frames=np.array(numbers, dtype=np.int64), images=np.stack(images))
        numbers.clear()
        images.clear()
        return out

    try:
        for f, image in reader.read(frames):
            numbers.append(f)
            images.append(image)
            if len(numbers) == batch_size:
                yield batch()
    except VideoError:
        if numbers:
            yield batch()
        raise
    if numbers:
        yield batch()


def check_frame_range(stride: int, start: int, stop: int) -> None:
    """A clear error for a frame selection that selects nothing sensible."""
    if stride < 1 or start < 0 or stop < 0 or (stop and stop <= start):
        raise ValueError(f"data: need stride >= 1 and 0 <= start < stop (or stop = 0); got stride={stride}, "
                         f"start={start}, stop={stop}")


class VideoViews:
    """What every video-backed source shares: frame selection, video facts and decoded batches of one view.

    A subclass sets ``stride``, ``start``, ``stop`` and provides ``rig(seq)`` and ``_reader(seq, view)`` (the
    view's :class:`FrameReader`, raising :class:`VideoError` when it cannot be used).
    """

    stride: int
    start: int
    stop: int

    def _calibrated_rig(self, seq: Recording) -> Rig:
        """The calibration's cameras for ``seq``, before fitting them to the videos."""
        raise NotImplementedError

    def _open(self, seq: Recording, view: str) -> FrameReader:
        """The view's reader (no size check); :class:`VideoError` when missing or unreadable."""
        raise NotImplementedError

    def _sizes(self) -> dict[tuple[str, str], tuple[Path, tuple[int, int]] | None]:
        if "_video_sizes" not in self.__dict__:
            self._video_sizes: dict[tuple[str, str], tuple[Path, tuple[int, int]] | None] = {}
        return self._video_sizes

    def rig(self, seq: Recording) -> Rig:
        """The calibrated cameras fitted to the views' videos (:func:`fit_camera_to_video`).

        A view whose video is missing, unreadable or of a refused size keeps its calibrated camera here; its
        :meth:`view_frames` raises the :class:`VideoError`.
        """
        fitted = self.__dict__.setdefault("_fitted_rigs", {})
        if seq.key not in fitted:
            base = self._calibrated_rig(seq)
            cameras = []
            for cam in base.cameras:
                key = (seq.key, cam.name)
                if key not in self._sizes():
                    try:
                        reader = self._open(seq, cam.name)
                        self._sizes()[key] = (reader.path, tuple(reader.size))
                    except VideoError:
                        self._sizes()[key] = None
                found = self._sizes()[key]
                try:
                    cameras.append(cam if found is None else fit_camera_to_video(cam, found[1], found[0]))
                except VideoError:
                    cameras.append(cam)
            fitted[seq.key] = Rig(name=base.name, cameras=tuple(cameras), capture_volume=base.capture_volume)
        return fitted[seq.key]

    def _reader(self, seq: Recording, view: str) -> FrameReader:
        """The view's reader, checked against the fitted camera (raises the size rule's :class:`VideoError`)."""
        readers = self.__dict__.setdefault("_readers", {})
        key = (seq.key, view)
        if key not in readers:
            reader = self._open(seq, view)
            if tuple(reader.size) != tuple(self.rig(seq)[view].image_size):
                fit_camera_to_video(self._calibrated_rig(seq)[view], reader.size, reader.path)  # raises
            readers.clear()  # one open description at a time
            readers[key] = reader
        return readers[key]

    def view_frames(self, seq: Recording, view: str) -> np.ndarray:
        """(T,) selected frame numbers of one view's video: every ``stride``-th from ``start``, before ``stop``."""
        reader = self._reader(seq, view)
        stop = min(self.stop or reader.frame_count, reader.frame_count)
        return np.arange(self.start, stop, self.stride, dtype=np.int64)

    def video_info(self, seq: Recording, view: str) -> dict:
        """What the detect stage records about a view's video."""
        r = self._reader(seq, view)
        return {"video": str(r.path), "frame_count": r.frame_count, "image_size": list(r.size), "fps": r.fps}

    def batches(self, seq: Recording, view: str, frames: np.ndarray, batch_size: int) -> Iterator[FrameBatch]:
        """Decoded frames of one view."""
        yield from read_batches(self._reader(seq, view), seq, self.rig(seq)[view], frames, batch_size)
