"""2D whole-body detectors behind one small interface (:class:`build_h3wb.detectors.base.Detector`)."""

from build_h3wb.detectors.base import Detector, check_detections

__all__ = ["Detector", "check_detections"]
