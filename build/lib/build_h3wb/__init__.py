"""build_h3wb: build 3D whole-body (COCO-WholeBody, 133 keypoints) pose datasets from calibrated multi-view video."""

__version__ = "0.1.0"
