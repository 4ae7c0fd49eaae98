"""Capture sources: where frames, calibration and (when known) ground truth come from."""

from build_h3wb.sources.base import FrameBatch, Sequence, Source

__all__ = ["FrameBatch", "Sequence", "Source"]
