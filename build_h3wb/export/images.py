"""The exported frames of every view, cut out of the videos at the H3WB image paths (:func:`write_images`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb.export.sequences import ExportSequence
from build_h3wb.export.views import image_relpath

log = logging.getLogger(__name__)


def write_images(source, sequences: list[ExportSequence], directory: Path, jpeg_quality: int = 95,
                 batch_size: int = 16) -> dict[str, Any]:
    """Cut every exported frame of every view out of its video, at the H3WB path (:func:`image_relpath`).

    Images already present are kept (an interrupted export resumes); each is written atomically. A view whose video
    cannot be read is reported and skipped.

    Args:
        source: the capture source (``build_h3wb.sources``); one without pixels (the synthetic capture) writes none.
        sequences: the exported poses.
        directory: the images root (``export/images``).
        jpeg_quality: OpenCV JPEG quality, 0-100.
        batch_size: frames decoded at once.

    Returns:
        Counts: ``written``, ``present`` (kept from before), ``failed_views`` (``"S1/Walking 1.54138969: why"``) and
        ``no_pixels`` (True when the source has no images).
    """
    import cv2  # noqa: PLC0415

    from build_h3wb.artifacts import atomic_path  # noqa: PLC0415
    from build_h3wb.sources.base import Recording  # noqa: PLC0415
    from build_h3wb.sources.video import VideoError  # noqa: PLC0415

    counts: dict[str, Any] = {"written": 0, "present": 0, "failed_views": [], "no_pixels": False}
    for es in sequences:
        seq = Recording(es.subject, es.action, es.sequence)
        for cam in es.rig.names:
            paths = {int(f): directory / image_relpath(es.subject, es.sequence, cam, f) for f in es.frames}
            todo = np.array(sorted(f for f, p in paths.items() if not p.exists()), dtype=np.int64)
            counts["present"] += len(paths) - len(todo)
            if not len(todo):
                continue
            try:
                for batch in source.batches(seq, cam, todo, batch_size):
                    if batch.images is None:
                        counts["no_pixels"] = True
                        return counts
                    for f, image in zip(batch.frames, batch.images):
                        path = paths[int(f)]
                        with atomic_path(path, suffix=".jpg") as tmp:  # the suffix tells OpenCV the format
                            if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
                                raise OSError(f"{path}: OpenCV could not write the image")
                        counts["written"] += 1
            except VideoError as err:
                log.warning("export: images of %s camera %s: %s", seq.key, cam, err)
                counts["failed_views"].append(f"{seq.key}.{cam}: {err}")
    return counts
