"""The detector interface: a batch of frames in, whole-body keypoints out.

A detector is any object with a ``name``, a ``describe()`` of its settings and ``__call__(batch)`` that returns
``[x, y, score]`` in image pixels, NaN in all three where a keypoint was not found, either for one person,
``(B, J, 3)``, or for up to P people per image, ``(B, P, J, 3)``, best candidate first and absent candidates all
NaN. The stage keeps every candidate per video and picks the subject later, consistently across views and frames.
Real image-based detectors read ``batch.images``; the simulated one reads ``batch.world_keypoints``. Detectors are
built from config with ``hydra.utils.instantiate`` (``_target_``), so no registry is needed.

Two optional members: ``frame_numbers_only = True`` tells the detect stage the detector needs only
``batch.frames`` (e.g. :class:`~build_h3wb.detectors.files.FilesDetector`, which reads another tool's files), so no
video is decoded; ``video_report(seq, camera) -> dict`` adds facts about a finished view (files read, frames
without a file) to the view's artifact and the detect manifest.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from build_h3wb import skeleton
from build_h3wb.sources.base import FrameBatch


@runtime_checkable
class Detector(Protocol):
    """A 2D whole-body keypoint detector."""

    name: str

    def describe(self) -> dict[str, Any]:
        """Settings that determine the output (stored with the detections)."""
        ...

    def __call__(self, batch: FrameBatch) -> np.ndarray:
        """Detect keypoints: (B, J, 3) or (B, P, J, 3) float32 [x, y, score] pixels, NaN where missing."""
        ...


def check_detections(kp: np.ndarray, batch_size: int, detector: str) -> np.ndarray:
    """Validate a detector's output and normalise missing entries (score <= 0 or any NaN -> all NaN).

    Args:
        kp: the detector's output, (B, J, 3) or (B, P, J, 3).
        batch_size: B, the number of frames given to the detector.
        detector: detector name for the error message.

    Returns:
        (B, P, J, 3) float32 (P = 1 for a single-person detector).
    """
    J = skeleton.NUM_KEYPOINTS
    kp = np.asarray(kp)
    shape = kp.shape
    if kp.ndim == 3:
        kp = kp[:, None]
    if kp.ndim != 4 or kp.shape[0] != batch_size or kp.shape[2:] != (J, 3):
        raise ValueError(f"detector {detector!r} returned shape {shape}, expected ({batch_size}, {J}, 3) or "
                         f"({batch_size}, P, {J}, 3): [x, y, score] per keypoint of the {J}-keypoint whole-body layout")
    kp = kp.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        missing = ~np.isfinite(kp).all(-1) | (kp[..., 2] <= 0)
    kp[missing] = np.nan
    return kp
