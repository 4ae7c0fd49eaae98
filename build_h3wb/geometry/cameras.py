"""Calibrated cameras and rigs: projection, lens distortion, rig files.

Conventions (the same as ``data/rigs/h36m/*.json`` and OpenCV):
- world frame in millimetres (Human3.6M: z up, floor at z = 0);
- ``X_cam = R @ X_world + t`` with the camera's x right, y down, z forward (the optical axis);
- pixels: ``u = fx * x_d + s * y_d + cx``, ``v = fy * y_d + cy`` where ``(x_d, y_d)`` are the distorted normalised
  coordinates of ``(x, y) = X_cam[:2] / X_cam[2]``.

Lens distortion (``opencv`` or Human3.6M's own ``h36m`` model, ``dist = [k1, k2, p1, p2, k3]``): see
``build_h3wb.geometry.distortion``.

Rig file format (JSON, one file per rig), ``format = "build_h3wb.rig/1"``::

    {"format": "build_h3wb.rig/1", "name": "h36m_S1", "units": "mm",
     "distortion_model": "h36m" | "opencv",
     "capture_volume": {"center_xy": [x, y], "half_extent_xy": [hx, hy]},     # optional, world mm on the floor
     "cameras": {"<name>": {"image_size": [W, H], "K": [[fx, s, cx], [0, fy, cy], [0, 0, 1]],
                            "dist": [k1, k2, p1, p2, k3], "R": [[...] x3], "t": [tx, ty, tz]}, ...}}

``R`` is the world-to-camera rotation and ``t`` the world-to-camera translation in ``units`` (mm or m; loaded
rigs are always converted to millimetres). Cameras keep the order of the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from build_h3wb.geometry.distortion import DISTORTION_MODELS, distort_xy, undistort_xy

RIG_FORMAT = "build_h3wb.rig/1"
_UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


class CalibrationError(ValueError):
    """A rig or camera calibration is missing, malformed or physically impossible."""


# ----------------------------------------------------------------------------------------------------------------
# Camera and rig
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Camera:
    """A calibrated pinhole camera with Brown-Conrady distortion.

    Attributes:
        name: camera id (e.g. ``"54138969"``).
        image_size: (W, H) pixels.
        K: (3, 3) intrinsics in pixels.
        dist: (5,) ``[k1, k2, p1, p2, k3]``.
        R: (3, 3) world-to-camera rotation.
        t: (3,) world-to-camera translation, millimetres.
        distortion_model: ``"opencv"`` or ``"h36m"``.
    """

    name: str
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray
    distortion_model: str = "opencv"

    def __post_init__(self) -> None:
        for attr, shape in (("K", (3, 3)), ("dist", (5,)), ("R", (3, 3)), ("t", (3,))):
            value = np.asarray(getattr(self, attr), dtype=np.float64)
            if value.shape != shape:
                raise CalibrationError(
                    f"camera {self.name!r}: field {attr!r} has shape {value.shape}, expected {shape}"
                )
            value.setflags(write=False)
            object.__setattr__(self, attr, value)
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        validate_camera(self)

    @property
    def center(self) -> np.ndarray:
        """(3,) optical centre in world millimetres."""
        return -self.R.T @ self.t

    @property
    def optical_axis(self) -> np.ndarray:
        """(3,) unit viewing direction (camera +z) in world coordinates."""
        return self.R[2].copy()

    @property
    def extrinsic(self) -> np.ndarray:
        """(3, 4) ``[R | t]``: the projection matrix on normalised coordinates."""
        return np.concatenate([self.R, self.t[:, None]], axis=1)

    def world_to_camera(self, X: np.ndarray) -> np.ndarray:
        """World (..., 3) mm -> camera frame (..., 3) mm."""
        R, t = self.R, self.t
        x, y, z = X[..., 0], X[..., 1], X[..., 2]
        # written out: a (N, 3) @ (3, 3) matmul is several times slower for small inner dimensions
        return np.stack([R[i, 0] * x + R[i, 1] * y + R[i, 2] * z + t[i] for i in range(3)], axis=-1)

    def camera_to_world(self, X_cam: np.ndarray) -> np.ndarray:
        """Camera frame (..., 3) mm -> world (..., 3) mm."""
        return (X_cam - self.t) @ self.R

    def pixels_to_normalized(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) -> distorted normalised coordinates (..., 2) (inverse of the affine intrinsics)."""
        return np.stack(self.pixels_to_normalized_uv(uv[..., 0], uv[..., 1]), axis=-1)

    def pixels_to_normalized_uv(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`pixels_to_normalized` on separate ``u``, ``v`` arrays; returns distorted normalised ``(x, y)``."""
        fx, s, cx, fy, cy = self.K[0, 0], self.K[0, 1], self.K[0, 2], self.K[1, 1], self.K[1, 2]
        y = (v - cy) / fy
        return (u - cx - s * y) / fx, y

    def normalized_to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Normalised coordinates (..., 2) -> pixels (..., 2) through the affine intrinsics."""
        fx, s, cx, fy, cy = self.K[0, 0], self.K[0, 1], self.K[0, 2], self.K[1, 1], self.K[1, 2]
        return np.stack([fx * xy[..., 0] + s * xy[..., 1] + cx, fy * xy[..., 1] + cy], axis=-1)

    def project_uv(self, X: np.ndarray, distort_points: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`project` returning separate ``(u, v)`` arrays (...,), without intermediate stacking."""
        R, t = self.R, self.t
        x, y, z = X[..., 0], X[..., 1], X[..., 2]
        zc = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z + t[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(zc > 1e-6, 1.0 / zc, np.nan)
        xn = (R[0, 0] * x + R[0, 1] * y + R[0, 2] * z + t[0]) * inv
        yn = (R[1, 0] * x + R[1, 1] * y + R[1, 2] * z + t[1]) * inv
        if distort_points:
            xn, yn = distort_xy(xn, yn, self.dist, self.distortion_model)
        K = self.K
        return K[0, 0] * xn + K[0, 1] * yn + K[0, 2], K[1, 1] * yn + K[1, 2]

    def project(self, X: np.ndarray, distort_points: bool = True) -> np.ndarray:
        """Project world points to pixels.

        Args:
            X: (..., 3) world millimetres.
            distort_points: apply lens distortion (False gives the plain pinhole ``K (R X + t) / z`` that H3WB's
                published 2D keypoints use).

        Returns:
            (..., 2) pixels; points at or behind the camera plane come out NaN.
        """
        return np.stack(self.project_uv(X, distort_points), axis=-1)

    def undistort_pixels(self, uv: np.ndarray, iterations: int = 5) -> np.ndarray:
        """Pixels (..., 2) -> undistorted normalised coordinates (..., 2), ready for triangulation."""
        return np.stack(self.undistort_uv(uv[..., 0], uv[..., 1], iterations), axis=-1)

    def undistort_uv(self, u: np.ndarray, v: np.ndarray, iterations: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`undistort_pixels` on separate ``u``, ``v`` arrays; returns ``(x, y)`` normalised."""
        return undistort_xy(*self.pixels_to_normalized_uv(u, v), self.dist, self.distortion_model, iterations)

    def in_image(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(..., 2) pixels -> (...,) bool, True inside the image shrunk by ``margin`` pixels."""
        w, h = self.image_size
        u, v = uv[..., 0], uv[..., 1]
        with np.errstate(invalid="ignore"):
            return (u >= margin) & (u <= w - 1 - margin) & (v >= margin) & (v <= h - 1 - margin)

    def to_dict(self) -> dict:
        """The camera's entry in a rig file (millimetres)."""
        return {
            "image_size": list(self.image_size),
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "R": self.R.tolist(),
            "t": self.t.tolist(),
        }


def validate_camera(cam: Camera) -> None:
    """Check a camera's numbers; raise :class:`CalibrationError` naming the camera and the field."""
    where = f"camera {cam.name!r}"
    for attr in ("K", "dist", "R", "t"):
        if not np.all(np.isfinite(getattr(cam, attr))):
            raise CalibrationError(f"{where}: field {attr!r} contains NaN or infinite values")
    if cam.distortion_model not in DISTORTION_MODELS:
        raise CalibrationError(f"{where}: distortion_model {cam.distortion_model!r} not in {DISTORTION_MODELS}")
    w, h = cam.image_size
    if w <= 0 or h <= 0:
        raise CalibrationError(f"{where}: field 'image_size' must be positive (W, H), got {cam.image_size}")
    K = cam.K
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(f"{where}: field 'K' must have positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0:
        raise CalibrationError(f"{where}: field 'K' must be upper triangular with last row [0, 0, 1], got {K.tolist()}")
    ortho = np.abs(cam.R @ cam.R.T - np.eye(3)).max()
    if ortho > 1e-5:
        raise CalibrationError(f"{where}: field 'R' is not orthonormal (max |R R^T - I| = {ortho:.2e})")
    if np.linalg.det(cam.R) < 0:
        raise CalibrationError(f"{where}: field 'R' is a reflection (det = -1), expected a rotation")


@dataclass(frozen=True, eq=False)
class Rig:
    """An ordered set of calibrated cameras sharing one world frame (millimetres).

    Attributes:
        name: rig name.
        cameras: cameras in a fixed order; the view axis of every array follows it.
        capture_volume: optional ``{"center_xy": (x, y), "half_extent_xy": (hx, hy)}`` on the floor, mm.
    """

    name: str
    cameras: tuple[Camera, ...]
    capture_volume: Mapping[str, tuple[float, float]] | None = field(default=None)

    def __post_init__(self) -> None:
        if len(self.cameras) < 2:
            raise CalibrationError(f"rig {self.name!r}: needs at least 2 cameras, got {len(self.cameras)}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise CalibrationError(f"rig {self.name!r}: duplicate camera names {names}")

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras)

    @property
    def names(self) -> tuple[str, ...]:
        """Camera names in rig order."""
        return tuple(c.name for c in self.cameras)

    def __getitem__(self, key: int | str) -> Camera:
        if isinstance(key, str):
            for cam in self.cameras:
                if cam.name == key:
                    return cam
            raise KeyError(f"rig {self.name!r} has no camera {key!r}; its cameras are {list(self.names)}")
        return self.cameras[key]

    def axis_angles_deg(self) -> np.ndarray:
        """(C, C) angle in degrees between every pair of optical axes."""
        axes = np.stack([c.optical_axis for c in self.cameras])
        return np.degrees(np.arccos(np.clip(axes @ axes.T, -1.0, 1.0)))

    def opposing(self, min_angle_deg: float) -> np.ndarray:
        """(C, C) bool: pairs whose optical axes are more than ``min_angle_deg`` apart (cameras facing each other)."""
        return self.axis_angles_deg() > min_angle_deg

    def to_dict(self) -> dict:
        """The rig as a rig-file dictionary."""
        models = {c.distortion_model for c in self.cameras}
        out: dict = {"format": RIG_FORMAT, "name": self.name, "units": "mm", "distortion_model": models.pop()}
        if models:
            raise CalibrationError(f"rig {self.name!r}: cameras mix distortion models; a rig file holds one")
        if self.capture_volume is not None:
            out["capture_volume"] = {k: list(v) for k, v in self.capture_volume.items()}
        out["cameras"] = {c.name: c.to_dict() for c in self.cameras}
        return out


def rig_from_dict(data: Mapping, source: str = "<dict>") -> Rig:
    """Build and validate a :class:`Rig` from a rig-file dictionary; errors name ``source``, camera and field."""
    if not isinstance(data, Mapping):
        raise CalibrationError(f"{source}: a rig file must hold a JSON object, got {type(data).__name__}")
    fmt = data.get("format")
    if fmt != RIG_FORMAT:
        raise CalibrationError(f"{source}: field 'format' is {fmt!r}, expected {RIG_FORMAT!r}")
    units = data.get("units", "mm")
    if units not in _UNIT_TO_MM:
        raise CalibrationError(f"{source}: field 'units' is {units!r}, expected one of {sorted(_UNIT_TO_MM)}")
    scale = _UNIT_TO_MM[units]
    model = data.get("distortion_model", "opencv")
    cams_data = data.get("cameras")
    if not isinstance(cams_data, Mapping) or not cams_data:
        raise CalibrationError(f"{source}: field 'cameras' must be a non-empty object of camera name -> parameters")
    cameras = []
    for name, c in cams_data.items():
        missing = [k for k in ("image_size", "K", "dist", "R", "t") if k not in c]
        if missing:
            raise CalibrationError(f"{source}: camera {name!r} lacks field(s) {missing}")
        try:
            arrays = {k: np.asarray(c[k], dtype=np.float64) for k in ("K", "dist", "R", "t")}
        except (TypeError, ValueError) as err:
            raise CalibrationError(f"{source}: camera {name!r} has a non-numeric field: {err}") from err
        if arrays["dist"].shape == (4,):  # [k1, k2, p1, p2] without k3
            arrays["dist"] = np.append(arrays["dist"], 0.0)
        try:
            cameras.append(
                Camera(
                    name=str(name),
                    image_size=tuple(c["image_size"]),
                    K=arrays["K"],
                    dist=arrays["dist"],
                    R=arrays["R"],
                    t=arrays["t"] * scale,
                    distortion_model=model,
                )
            )
        except CalibrationError as err:
            raise CalibrationError(f"{source}: {err}") from err
    volume = data.get("capture_volume")
    if volume is not None:
        volume = {k: (float(v[0]) * scale, float(v[1]) * scale) for k, v in volume.items()}
    return Rig(name=str(data.get("name", Path(source).stem)), cameras=tuple(cameras), capture_volume=volume)


def load_rig(path: str | os.PathLike) -> Rig:
    """Load and validate a rig file (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"rig file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CalibrationError(f"rig file {path} is not valid JSON: {err}") from err
    return rig_from_dict(data, source=str(path))


def save_rig(rig: Rig, path: str | os.PathLike) -> None:
    """Write a rig file atomically (``artifacts.atomic_path``: temporary file, then rename; usual permissions)."""
    from build_h3wb.artifacts import atomic_path

    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(rig.to_dict(), indent=1))


H36M_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


def h36m_rig(subject: str) -> Rig:
    """The shipped Human3.6M calibration of one subject's session (four cameras, H36M distortion model)."""
    if subject not in H36M_SUBJECTS:
        raise CalibrationError(f"no Human3.6M calibration for subject {subject!r}; known: {list(H36M_SUBJECTS)}")
    res = resources.files("build_h3wb").joinpath(f"data/rigs/h36m/{subject}.json")
    return rig_from_dict(json.loads(res.read_text()), source=f"build_h3wb/data/rigs/h36m/{subject}.json")

