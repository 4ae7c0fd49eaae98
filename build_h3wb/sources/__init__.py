"""Capture sources: where frames, calibration and (when known) ground truth come from."""

from build_h3wb.sources.base import FrameBatch, Recording, Source

__all__ = ["FrameBatch", "Recording", "Source"]
