"""Multi-view geometry: cameras and rigs, distortion, calibration formats, DLT triangulation, alignment.

Axis order (one for the whole package): views first. Per-view arrays are ``(C, ...)``: detections ``(C, T, J, 3)``
``[x, y, score]`` in pixels, camera extrinsics ``(C, 3, 4)``. Points are world millimetres unless a docstring says
otherwise.
"""
