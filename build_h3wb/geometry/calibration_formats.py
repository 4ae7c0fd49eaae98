"""Import and export camera calibrations in other tools' formats: anipose / Pose2Sim TOML, EasyMocap YAML, Qualisys.

Qualisys Track Manager ``.qca.txt`` exports (the calibration of Pose2Sim's demo captures) are imported too
(:func:`load_qualisys`, read only; its conventions are in that function's docstring).

Every loader returns a validated :class:`~build_h3wb.geometry.cameras.Rig` in millimetres with the ``opencv`` distortion
model, keeps the cameras in the order of the file, and raises :class:`.CalibrationError` naming
the file, the camera and the key on bad input. All three formats share OpenCV's conventions, which are ours
(``X_cam = R X_world + t``, ``R`` world-to-camera, ``rvec`` as ``cv2.Rodrigues``, ``dist = [k1, k2, p1, p2, k3]``):

- **anipose / Pose2Sim TOML** (aniposelib's ``CameraGroup.dump``): one table per camera (``[cam_0]``,
  ``[cam_1]``, ...; Pose2Sim may name the tables after the cameras) with ``name``, ``size = [W, H]``,
  ``matrix`` (3x3 K), ``distortions`` (up to 5 OpenCV coefficients, padded with zeros), ``rotation`` (Rodrigues
  vector) and ``translation``, and an optional ``[metadata]`` table. Tables named ``metadata``, ``capture_volume``,
  ``charuco`` and ``checkerboard`` are not cameras (as in Pose2Sim). ``fisheye = true`` (aniposelib's
  ``FisheyeCamera``) is refused: the fisheye model is not supported. Note that aniposelib's own ``load`` sorts the
  tables by name (``cam_10`` before ``cam_2``), Pose2Sim keeps the file order; we keep the file order.
- **EasyMocap** ``intri.yml`` + ``extri.yml`` (OpenCV FileStorage, ``%YAML:1.0`` with ``!!opencv-matrix``):
  ``names`` (list of camera names) in both files; ``K_<name>`` (3x3), ``dist_<name>`` (or ``D_<name>``; 1x5, 5x1,
  1x4 or 4x1) and optionally ``H_<name>``, ``W_<name>`` (image size) in ``intri.yml``; ``R_<name>`` (3x1 Rodrigues),
  ``Rot_<name>`` (3x3) and ``T_<name>`` (3x1) in ``extri.yml``. ``R_`` wins when both rotations are present (as in
  EasyMocap's ``read_camera``); they must agree.

Units. The translations of these files carry no unit, so the caller states it: ``units`` is ``"mm"``, ``"cm"`` or
``"m"``. anipose TOML defaults to the ``units`` key of its ``[metadata]`` table when present (files written by
:func:`save_anipose_toml`), else to ``"mm"`` (aniposelib's convention: the board is measured in millimetres);
Pose2Sim writes metres, so pass ``units="m"`` for Pose2Sim files. EasyMocap defaults to ``"m"``. A wrong unit
would silently scale the world by 10-1000x, so every loader checks the rig's span (the largest distance between
two camera centres) against :data:`PLAUSIBLE_SPAN_M` and raises, naming the unit that would fit, when it lies
outside; a 1000x (mm/m) mistake always fails this check, a 10x (mm/cm) one cannot be detected.
``check_scale=False`` skips the check for an unusual rig.

Distortion models. The exported formats hold only OpenCV's model. A camera with Human3.6M's ``h36m`` model (whose
tangential cross term differs from OpenCV's by up to 1.5 px in the corners of Human3.6M's images) is refused on
export unless ``approximate_distortion=True``, which writes the least-squares OpenCV coefficients over the image
(:func:`fit_opencv_distortion`; 0.2-0.45 px at worst on Human3.6M) and logs the deviation.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from build_h3wb.geometry.cameras import _UNIT_TO_MM, CalibrationError, Camera, Rig, load_rig
from build_h3wb.geometry.distortion import distort

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None  # load_anipose_toml says what to install

log = logging.getLogger(__name__)

UNITS = tuple(_UNIT_TO_MM)
#: (min, max) largest distance between two camera centres, metres, of a plausible multi-view rig.
PLAUSIBLE_SPAN_M = (0.1, 100.0)
#: TOML tables that are not cameras (Pose2Sim's list).
_NON_CAMERA_TABLES = ("metadata", "capture_volume", "charuco", "checkerboard")
#: Largest difference between EasyMocap's ``R_`` (Rodrigues) and ``Rot_`` (matrix) accepted as rounding.
_ROTATION_AGREEMENT = 1e-4
FORMATS = ("auto", "rig", "anipose", "easymocap", "qualisys")
#: Camera names OpenCV FileStorage accepts inside a key (``K_<name>``).
_FILESTORAGE_NAME = re.compile(r"[A-Za-z0-9_\- ]+")
#: Keyword options :func:`load_calibration` passes on, per format.
_OPTIONS = {
    "rig": (),
    "anipose": ("units", "check_scale"),
    "easymocap": ("units", "image_size", "check_scale"),
    "qualisys": ("divide_distortion", "check_scale"),
}

# ----------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------


def _scale_to_mm(units: str, source: str | os.PathLike) -> float:
    """Millimetres per file unit; raise naming ``source`` for an unknown unit."""
    if units not in _UNIT_TO_MM:
        raise CalibrationError(f"{source}: unknown units {units!r}, expected one of {list(UNITS)}")
    return _UNIT_TO_MM[units]


def _array(value: object, shapes: Sequence[tuple[int, ...]], where: str, key: str) -> np.ndarray:
    """``value`` as a finite float64 array of one of ``shapes``, reshaped to ``shapes[0]``; else CalibrationError."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"{where}: key {key!r} is not a numeric array ({err})") from err
    if arr.shape not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise CalibrationError(f"{where}: key {key!r} has shape {arr.shape}, expected {expected}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{where}: key {key!r} contains NaN or infinite values: {arr.tolist()}")
    return arr.reshape(shapes[0])


def _dist5(value: object, where: str, key: str) -> np.ndarray:
    """Distortion coefficients as (5,) ``[k1, k2, p1, p2, k3]``: fewer are padded with zeros, more must be zero."""
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"{where}: key {key!r} is not a numeric array ({err})") from err
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{where}: key {key!r} contains NaN or infinite values: {arr.tolist()}")
    if arr.size > 5:
        if np.any(arr[5:] != 0.0):
            raise CalibrationError(
                f"{where}: key {key!r} has {arr.size} coefficients with non-zero k4.. ({arr[5:].tolist()}); only "
                "OpenCV's 5-coefficient model [k1, k2, p1, p2, k3] is supported"
            )
        arr = arr[:5]
    return np.pad(arr, (0, 5 - arr.size))


def _image_size(value: object, where: str, key: str) -> tuple[int, int]:
    """``(W, H)`` positive integers (integral floats such as Pose2Sim's ``1920.0`` accepted)."""
    size = _array(value, [(2,)], where, key)
    if np.any(size <= 0) or np.any(np.abs(size - np.round(size)) > 1e-6):
        raise CalibrationError(f"{where}: key {key!r} must be two positive integers [W, H], got {size.tolist()}")
    return int(round(size[0])), int(round(size[1]))


def _rotation_from_rvec(rvec: np.ndarray) -> np.ndarray:
    """(3,) Rodrigues vector -> (3, 3) rotation, exactly as OpenCV computes it."""
    return cv2.Rodrigues(np.ascontiguousarray(rvec, dtype=np.float64).reshape(3, 1))[0]


def _make_camera(source: str, **fields: object) -> Camera:
    """Build and validate a :class:`Camera`, prefixing its errors (which name the camera and field) with ``source``."""
    try:
        cam = Camera(distortion_model="opencv", **fields)
    except CalibrationError as err:
        raise CalibrationError(f"{source}: {err}") from err
    if cam.K[0, 1] != 0.0:
        log.warning(
            "%s: camera %r has skew K[0, 1] = %g; build_h3wb projects with it, but cv2.projectPoints (and so the "
            "reprojections of OpenCV-based tools) ignores it",
            source,
            cam.name,
            cam.K[0, 1],
        )
    return cam


def _make_rig(name: str, cameras: list[Camera], source: str | os.PathLike, units: str, check_scale: bool) -> Rig:
    """Build a rig and check that its span is plausible for ``units`` (see the module docstring)."""
    try:
        rig = Rig(name=name, cameras=tuple(cameras))
    except CalibrationError as err:
        raise CalibrationError(f"{source}: {err}") from err
    if check_scale:
        _check_scale(rig, units, source)
    return rig


def rig_span_m(rig: Rig) -> float:
    """Largest distance between two camera centres, metres."""
    centers = np.stack([c.center for c in rig.cameras])  # (C, 3) mm
    return float(np.linalg.norm(centers[:, None] - centers[None], axis=-1).max()) / 1000.0


def _check_scale(rig: Rig, units: str, source: str | os.PathLike) -> None:
    """Raise when the rig's span, read in ``units``, is outside :data:`PLAUSIBLE_SPAN_M`; suggest a fitting unit."""
    lo, hi = PLAUSIBLE_SPAN_M
    span_m = rig_span_m(rig)
    if lo <= span_m <= hi:
        return
    span_file = span_m * 1000.0 / _UNIT_TO_MM[units]
    fits = [u for u, s in _UNIT_TO_MM.items() if lo <= span_file * s / 1000.0 <= hi]
    hint = (
        "pass " + " or ".join(f"units={u!r}" for u in fits) + " (whichever the calibration used)"
        if fits
        else "no unit makes it plausible: are the extrinsics calibrated?"
    )
    raise CalibrationError(
        f"{source}: with units={units!r} the camera centres span {span_file:.4g} {units} = {span_m:.4g} m, outside "
        f"the {lo}-{hi} m of a plausible multi-view rig; {hint} (or check_scale=False for an unusual rig)"
    )


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``artifacts.atomic_path`` (never a half-written file)."""
    from build_h3wb.artifacts import atomic_path

    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, newline="\n")


def fit_opencv_distortion(cam: Camera, grid: int = 41) -> tuple[np.ndarray, float]:
    """OpenCV coefficients that best reproduce a camera's distortion over its image (linear least squares).

    OpenCV's distorted coordinates are linear in ``[k1, k2, p1, p2, k3]`` at fixed undistorted coordinates, so the
    fit over a ``grid x grid`` lattice of pixels (undistorted with the camera's own model) is one ``lstsq`` solve,
    with residuals weighted into pixels by the intrinsics.

    Args:
        cam: any camera; an ``opencv`` camera is returned unchanged.
        grid: lattice points per image side.

    Returns:
        ``(dist, max_px)``: (5,) OpenCV coefficients and the largest pixel deviation from the camera's own model
        on the lattice.
    """
    if cam.distortion_model == "opencv":
        return cam.dist.copy(), 0.0
    w, h = cam.image_size
    uv = np.stack(np.meshgrid(np.linspace(0, w - 1, grid), np.linspace(0, h - 1, grid)), -1).reshape(-1, 2)
    xy = cam.undistort_pixels(uv, iterations=20)  # (N, 2) undistorted normalised
    target = distort(xy, cam.dist, cam.distortion_model)  # (N, 2) distorted normalised, own model
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    # d(x_d)/d[k1, k2, p1, p2, k3] and d(y_d)/d[...] for OpenCV's model: (N, 5) each
    ax = np.stack([x * r2, x * r2**2, 2 * x * y, r2 + 2 * x * x, x * r2**3], axis=1)
    ay = np.stack([y * r2, y * r2**2, r2 + 2 * y * y, 2 * x * y, y * r2**3], axis=1)
    fx, s, fy = cam.K[0, 0], cam.K[0, 1], cam.K[1, 1]
    A = np.concatenate([fx * ax + s * ay, fy * ay])  # (2N, 5) pixels per coefficient
    b = np.concatenate([fx * (target[:, 0] - x) + s * (target[:, 1] - y), fy * (target[:, 1] - y)])
    dist = np.linalg.lstsq(A, b, rcond=None)[0]
    fitted = cam.normalized_to_pixels(distort(xy, dist, "opencv"))
    max_px = float(np.linalg.norm(fitted - cam.normalized_to_pixels(target), axis=1).max())
    return dist, max_px


def _export_dists(rig: Rig, path: str | os.PathLike, approximate_distortion: bool) -> list[np.ndarray]:
    """(5,) OpenCV coefficients per camera for export; refuse other models unless ``approximate_distortion``."""
    out = []
    for cam in rig.cameras:
        if cam.distortion_model == "opencv":
            out.append(cam.dist.copy())
            continue
        if not approximate_distortion:
            raise CalibrationError(
                f"{path}: camera {cam.name!r} uses the {cam.distortion_model!r} distortion model, which this format "
                "cannot hold (it stores OpenCV's); pass approximate_distortion=True to write the least-squares "
                "OpenCV coefficients (sub-pixel on Human3.6M)"
            )
        dist, max_px = fit_opencv_distortion(cam)
        log.warning(
            "%s: camera %r: %r distortion written as its least-squares OpenCV approximation, up to %.3f px off "
            "inside the image",
            path,
            cam.name,
            cam.distortion_model,
            max_px,
        )
        out.append(dist)
    return out


# ----------------------------------------------------------------------------------------------------------------
# anipose / Pose2Sim TOML
# ----------------------------------------------------------------------------------------------------------------


def _is_true(value: object) -> bool:
    """TOML flag truthiness, tolerating strings (``"true"``) as some writers emit them."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def load_anipose_toml(path: str | os.PathLike, units: str | None = None, check_scale: bool = True) -> Rig:
    """Load an anipose (aniposelib ``CameraGroup.dump``) or Pose2Sim calibration TOML file.

    Args:
        path: the ``.toml`` file.
        units: length unit of the file's translations, ``"mm"``, ``"cm"`` or ``"m"``; ``None`` takes the
            ``[metadata]`` table's ``units`` when present, else ``"mm"`` (anipose). Pose2Sim files are in metres.
        check_scale: check that the camera centres span :data:`PLAUSIBLE_SPAN_M` (catches a wrong ``units``).

    Returns:
        The rig (world millimetres, OpenCV distortion), cameras in file order, named after the file's stem.

    Raises:
        CalibrationError: naming the file, the camera table and the key.
    """
    path = Path(path)
    if tomllib is None:
        raise ModuleNotFoundError("reading TOML on Python 3.10 needs the tomli package: pip install tomli")
    if not path.is_file():
        raise CalibrationError(f"anipose calibration {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CalibrationError(f"{path}: not a valid TOML file: {err}") from err
    meta = data.get("metadata", {})
    meta = meta if isinstance(meta, dict) else {}
    if _is_true(meta.get("fisheye", False)):
        raise CalibrationError(f"{path}: [metadata] says fisheye = true; the fisheye model is not supported")
    file_units = meta.get("units")
    units_from = "units argument"
    if units is None:
        units, units_from = (file_units, "[metadata] units") if file_units is not None else ("mm", "default units")
        log.info("%s: translations read in %s (%s)", path, units, units_from)
    elif file_units is not None and file_units != units:
        log.warning("%s: units=%r overrides the file's [metadata] units = %r", path, units, file_units)
    scale = _scale_to_mm(units, f"{path}: {units_from}")

    cameras = []
    for key, table in data.items():
        if key in _NON_CAMERA_TABLES or not isinstance(table, dict):
            continue
        name = str(table.get("name", key))
        where = f"{path}: camera {name!r} (table [{key}])"
        missing = [k for k in ("size", "matrix", "distortions", "rotation", "translation") if k not in table]
        if missing:
            raise CalibrationError(f"{where}: missing key(s) {missing}")
        if _is_true(table.get("fisheye", False)):
            raise CalibrationError(f"{where}: key 'fisheye' is true; the fisheye model is not supported")
        rvec = _array(table["rotation"], [(3,), (3, 1), (1, 3)], where, "rotation")
        cameras.append(
            _make_camera(
                str(path),
                name=name,
                image_size=_image_size(table["size"], where, "size"),
                K=_array(table["matrix"], [(3, 3)], where, "matrix"),
                dist=_dist5(table["distortions"], where, "distortions"),
                R=_rotation_from_rvec(rvec),
                t=_array(table["translation"], [(3,), (3, 1), (1, 3)], where, "translation") * scale,
            )
        )
    return _make_rig(path.stem, cameras, path, units, check_scale)


def _toml_list(values: np.ndarray) -> str:
    """A (possibly nested) float array as a TOML array; ``repr`` floats round-trip exactly."""
    if values.ndim == 1:
        return "[" + ", ".join(repr(float(v)) for v in values) + "]"
    return "[" + ", ".join(_toml_list(row) for row in values) + "]"


def save_anipose_toml(
    rig: Rig, path: str | os.PathLike, units: str = "mm", approximate_distortion: bool = False
) -> None:
    """Write a rig as an anipose / Pose2Sim calibration TOML file (atomically).

    The layout is aniposelib's (``[cam_0]``, ``[cam_1]``, ... in rig order, then ``[metadata]``), plus
    ``fisheye = false`` per camera (Pose2Sim's key; aniposelib ignores it) and ``units`` in ``[metadata]``, which
    :func:`load_anipose_toml` reads back.

    Args:
        rig: the rig (millimetres).
        path: output ``.toml`` file.
        units: unit of the written translations: ``"mm"`` for anipose, ``"m"`` for Pose2Sim.
        approximate_distortion: write non-OpenCV distortion (``h36m``) as its least-squares OpenCV approximation
            with a logged warning, instead of raising.
    """
    path = Path(path)
    scale = _scale_to_mm(units, f"{path}: units")
    dists = _export_dists(rig, path, approximate_distortion)
    blocks = []
    for i, (cam, dist) in enumerate(zip(rig.cameras, dists)):
        rvec = cv2.Rodrigues(np.ascontiguousarray(cam.R))[0].ravel()
        blocks.append(
            "\n".join(
                [
                    f"[cam_{i}]",
                    f"name = {json.dumps(cam.name)}",  # a JSON string is a valid TOML basic string
                    f"size = [{cam.image_size[0]}, {cam.image_size[1]}]",
                    f"matrix = {_toml_list(cam.K)}",
                    f"distortions = {_toml_list(dist)}",
                    f"rotation = {_toml_list(rvec)}",
                    f"translation = {_toml_list(cam.t / scale)}",
                    "fisheye = false",
                ]
            )
        )
    blocks.append(f'[metadata]\nunits = "{units}"\nwriter = "build_h3wb"\nrig = {json.dumps(rig.name)}')
    _write_atomic(path, "\n\n".join(blocks) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# EasyMocap intri.yml + extri.yml (OpenCV FileStorage)
# ----------------------------------------------------------------------------------------------------------------


def _open_yaml(path: Path) -> cv2.FileStorage:
    """Open an OpenCV FileStorage file for reading; CalibrationError when missing or unparsable."""
    if not path.is_file():
        raise CalibrationError(f"EasyMocap calibration file {path} does not exist")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as err:  # the Python binding wraps parse errors in SystemError
        raise CalibrationError(f"{path}: not a valid OpenCV YAML file: {err}") from err
    if not fs.isOpened():
        raise CalibrationError(f"{path}: OpenCV could not open it as a FileStorage (YAML) file")
    return fs


def _read_names(fs: cv2.FileStorage, path: Path) -> list[str] | None:
    """The ``names`` sequence (numbers written unquoted become their integer text), or None when absent."""
    node = fs.getNode("names")
    if node.empty() or node.isNone():
        return None
    if not node.isSeq():
        raise CalibrationError(f"{path}: key 'names' must be a list of camera names")
    names = []
    for i in range(node.size()):
        item = node.at(i)
        if item.isString():
            names.append(item.string())
        elif item.isInt() or (item.isReal() and float(item.real()).is_integer()):
            names.append(str(int(item.real())))
        else:
            raise CalibrationError(f"{path}: key 'names' item {i} is not a string or an integer")
    if len(set(names)) != len(names):
        raise CalibrationError(f"{path}: key 'names' has duplicates: {names}")
    return names


def _read_matrix(fs: cv2.FileStorage, key: str, path: Path) -> np.ndarray | None:
    """An ``!!opencv-matrix`` (or a plain list of numbers, as 1-D) as float64, or None when the key is absent."""
    node = fs.getNode(key)
    if node.empty() or node.isNone():
        return None
    try:
        if node.isMap():
            mat = node.mat()
            if mat is not None:
                return np.asarray(mat, dtype=np.float64)
        elif node.isSeq():
            return np.array([node.at(i).real() for i in range(node.size())], dtype=np.float64)
    except cv2.error as err:
        raise CalibrationError(f"{path}: key {key!r} is not a readable matrix: {err}") from err
    raise CalibrationError(f"{path}: key {key!r} must be an !!opencv-matrix or a list of numbers")


def _read_int(fs: cv2.FileStorage, key: str) -> int | None:
    """A positive integer scalar, or None when absent or not positive (EasyMocap writes -1 for unknown)."""
    node = fs.getNode(key)
    if node.empty() or node.isNone() or not (node.isInt() or node.isReal()):
        return None
    value = int(node.real())
    return value if value > 0 else None


def _sizes_override(
    image_size: tuple[int, int] | Mapping[str, tuple[int, int]] | None, names: list[str], path: Path
) -> dict[str, tuple[int, int]]:
    """The ``image_size`` argument as {camera name: (W, H)}; unknown camera names are an error."""
    if image_size is None:
        return {}
    if isinstance(image_size, Mapping):
        unknown = sorted(set(image_size) - set(names))
        if unknown:
            raise CalibrationError(f"{path}: image_size names unknown camera(s) {unknown}; the cameras are {names}")
        return {n: _image_size(s, f"image_size argument, camera {n!r}", "image_size") for n, s in image_size.items()}
    size = _image_size(image_size, "image_size argument", "image_size")
    return dict.fromkeys(names, size)


def load_easymocap(
    intri_path: str | os.PathLike,
    extri_path: str | os.PathLike | None = None,
    units: str = "m",
    image_size: tuple[int, int] | Mapping[str, tuple[int, int]] | None = None,
    check_scale: bool = True,
) -> Rig:
    """Load an EasyMocap calibration (``intri.yml`` + ``extri.yml``).

    Args:
        intri_path: ``intri.yml``.
        extri_path: ``extri.yml``; ``None`` takes ``extri.yml`` beside ``intri_path``.
        units: length unit of the ``T_`` translations (EasyMocap: metres).
        image_size: ``(W, H)`` for every camera, or ``{name: (W, H)}`` for some; overrides ``H_``/``W_`` in the
            file (a warning when they differ) and is required for cameras whose file gives no size.
        check_scale: check that the camera centres span :data:`PLAUSIBLE_SPAN_M` (catches a wrong ``units``).

    Returns:
        The rig (world millimetres, OpenCV distortion), cameras in the order of ``intri.yml``'s ``names``, named
        after the folder of ``intri.yml``.

    Raises:
        CalibrationError: naming the file, the camera and the key.
    """
    intri_path = Path(intri_path)
    extri_path = intri_path.with_name("extri.yml") if extri_path is None else Path(extri_path)
    scale = _scale_to_mm(units, f"{intri_path}: units")
    intri, extri = _open_yaml(intri_path), _open_yaml(extri_path)
    try:
        names = _read_names(intri, intri_path)
        if not names:
            raise CalibrationError(f"{intri_path}: missing or empty key 'names' (the list of camera names)")
        extri_names = _read_names(extri, extri_path)
        if extri_names is not None and set(extri_names) != set(names):
            raise CalibrationError(
                f"camera names differ between {intri_path} ({names}) and {extri_path} ({extri_names}): "
                f"only in intri: {sorted(set(names) - set(extri_names))}, "
                f"only in extri: {sorted(set(extri_names) - set(names))}"
            )
        overrides = _sizes_override(image_size, names, intri_path)
        cameras = []
        for name in names:
            where_i, where_e = f"{intri_path}: camera {name!r}", f"{extri_path}: camera {name!r}"
            K = _read_matrix(intri, f"K_{name}", intri_path)
            if K is None:
                raise CalibrationError(f"{where_i}: missing key 'K_{name}'")
            dist_key = f"dist_{name}" if not intri.getNode(f"dist_{name}").empty() else f"D_{name}"
            dist = _read_matrix(intri, dist_key, intri_path)
            if dist is None:
                raise CalibrationError(f"{where_i}: missing key 'dist_{name}' (or 'D_{name}')")
            if dist.squeeze().ndim > 1:
                raise CalibrationError(f"{where_i}: key {dist_key!r} has shape {dist.shape}, expected 1x5 or 5x1")
            rvec, rot, T = (_read_matrix(extri, f"{k}_{name}", extri_path) for k in ("R", "Rot", "T"))
            if T is None:
                raise CalibrationError(f"{where_e}: missing key 'T_{name}'")
            if rvec is None and rot is None:
                raise CalibrationError(f"{where_e}: missing key 'R_{name}' (Rodrigues) or 'Rot_{name}' (matrix)")
            R = None
            if rvec is not None:
                R = _rotation_from_rvec(_array(rvec, [(3,), (3, 1), (1, 3)], where_e, f"R_{name}"))
            if rot is not None:
                rot = _array(rot, [(3, 3)], where_e, f"Rot_{name}")
                ortho = np.abs(rot @ rot.T - np.eye(3)).max()
                if ortho > 1e-5 or np.linalg.det(rot) < 0:
                    raise CalibrationError(
                        f"{where_e}: key 'Rot_{name}' is not a rotation matrix (max |R R^T - I| = {ortho:.2e}, "
                        f"det = {np.linalg.det(rot):.4f})"
                    )
                if R is not None and np.abs(R - rot).max() > _ROTATION_AGREEMENT:
                    raise CalibrationError(
                        f"{where_e}: keys 'R_{name}' (Rodrigues) and 'Rot_{name}' disagree by "
                        f"{np.abs(R - rot).max():.2e}; expected the same rotation"
                    )
                R = rot if R is None else R
            file_size = (_read_int(intri, f"W_{name}"), _read_int(intri, f"H_{name}"))
            size = overrides.get(name)
            if size is None:
                if None in file_size:
                    raise CalibrationError(
                        f"{where_i}: missing image size (keys 'W_{name}', 'H_{name}'); pass image_size=(W, H) "
                        "or image_size={name: (W, H)}"
                    )
                size = file_size
            elif None not in file_size and tuple(file_size) != tuple(size):
                log.warning("%s: image_size %s overrides the file's W, H = %s", where_i, size, file_size)
            cameras.append(
                _make_camera(
                    f"{intri_path} / {extri_path}",
                    name=name,
                    image_size=size,
                    K=_array(K, [(3, 3)], where_i, f"K_{name}"),
                    dist=_dist5(dist, where_i, dist_key),
                    R=R,
                    t=_array(T, [(3,), (3, 1), (1, 3)], where_e, f"T_{name}") * scale,
                )
            )
    finally:
        intri.release()
        extri.release()
    rig_name = intri_path.resolve().parent.name or "easymocap"
    return _make_rig(rig_name, cameras, f"{intri_path} / {extri_path}", units, check_scale)


def _write_names(fs: cv2.FileStorage, names: Sequence[str]) -> None:
    """A ``names`` sequence of strings (OpenCV quotes numeric-looking names, so ``"01"`` stays a string)."""
    fs.startWriteStruct("names", cv2.FileNode_SEQ)
    for name in names:
        fs.write("", name)
    fs.endWriteStruct()


def save_easymocap(
    rig: Rig,
    intri_path: str | os.PathLike,
    extri_path: str | os.PathLike | None = None,
    units: str = "m",
    approximate_distortion: bool = False,
) -> None:
    """Write a rig as EasyMocap ``intri.yml`` + ``extri.yml`` (OpenCV FileStorage YAML, full precision, atomic).

    Writes ``names``, ``K_``, ``dist_`` (1x5), ``H_``, ``W_`` in ``intri.yml`` and ``names``, ``R_`` (3x1
    Rodrigues), ``Rot_`` (3x3), ``T_`` (3x1, in ``units``) in ``extri.yml``, as EasyMocap's ``write_camera``.

    Args:
        rig: the rig (millimetres).
        intri_path: output ``intri.yml``.
        extri_path: output ``extri.yml``; ``None`` writes ``extri.yml`` beside ``intri_path``.
        units: unit of the written translations (EasyMocap: metres).
        approximate_distortion: write non-OpenCV distortion (``h36m``) as its least-squares OpenCV approximation
            with a logged warning, instead of raising.
    """
    intri_path = Path(intri_path)
    extri_path = intri_path.with_name("extri.yml") if extri_path is None else Path(extri_path)
    scale = _scale_to_mm(units, f"{extri_path}: units")
    for cam in rig.cameras:
        if not _FILESTORAGE_NAME.fullmatch(cam.name):
            raise CalibrationError(
                f"{intri_path}: camera {cam.name!r} cannot be written: OpenCV FileStorage keys (K_<name>, ...) allow "
                "only ASCII letters, digits, '-', '_' and ' '"
            )
    dists = _export_dists(rig, intri_path, approximate_distortion)
    # in memory: the ".yml" name only selects the YAML format; files are written atomically below
    intri = cv2.FileStorage("intri.yml", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY)
    extri = cv2.FileStorage("extri.yml", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY)
    _write_names(intri, rig.names)
    _write_names(extri, rig.names)
    for cam, dist in zip(rig.cameras, dists):
        intri.write(f"K_{cam.name}", np.ascontiguousarray(cam.K))
        intri.write(f"dist_{cam.name}", dist.reshape(1, 5))
        intri.write(f"H_{cam.name}", int(cam.image_size[1]))
        intri.write(f"W_{cam.name}", int(cam.image_size[0]))
        extri.write(f"R_{cam.name}", cv2.Rodrigues(np.ascontiguousarray(cam.R))[0])
        extri.write(f"Rot_{cam.name}", np.ascontiguousarray(cam.R))
        extri.write(f"T_{cam.name}", (cam.t / scale).reshape(3, 1))
    _write_atomic(intri_path, intri.releaseAndGetString())
    _write_atomic(extri_path, extri.releaseAndGetString())


# ----------------------------------------------------------------------------------------------------------------
# Qualisys .qca.txt (XML)
# ----------------------------------------------------------------------------------------------------------------

#: Qualisys stores focal lengths and principal points in sub-pixel units of 1/64 pixel.
QUALISYS_SUBPIXELS = 64.0
#: Qualisys's camera frame looks along -z with y up; OpenCV's looks along +z with y down: a half turn about x.
_QUALISYS_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def _qualisys_float(attrib: Mapping[str, str], key: str, where: str) -> float:
    """One numeric XML attribute; CalibrationError naming it when absent or not a finite number."""
    if key not in attrib:
        raise CalibrationError(f"{where}: missing attribute {key!r}")
    try:
        value = float(attrib[key])
    except ValueError as err:
        raise CalibrationError(f"{where}: attribute {key!r} = {attrib[key]!r} is not a number") from err
    if not np.isfinite(value):
        raise CalibrationError(f"{where}: attribute {key!r} is not finite ({attrib[key]!r})")
    return value


def load_qualisys(path: str | os.PathLike, divide_distortion: bool = False, check_scale: bool = True) -> Rig:
    """Load a Qualisys Track Manager calibration export (``.qca.txt``, XML) as a rig.

    Per ``<camera serial=...>`` (cameras with ``active="0"`` are left out, with a log line):

    - ``<fov_video left right top bottom>``: the video window on the sensor, inclusive pixel bounds; the image size
      is ``(right - left + 1, bottom - top + 1)`` and the principal point is shifted by ``(left, top)``.
    - ``<intrinsic>``: ``focalLengthU/V`` and ``centerPointU/V`` in units of 1/64 pixel
      (:data:`QUALISYS_SUBPIXELS`; e.g. ``centerPointU="34110.3"`` is 533.0 px), ``skew`` (1/64 px),
      ``radialDistortion1..3`` (k1, k2, k3) and ``tangentalDistortion1..2`` (p1, p2; Qualisys's spelling), the
      Brown-Conrady model that OpenCV uses, as they are (see ``divide_distortion``).
    - ``<transform x y z r11..r33>``: the camera's position in world millimetres and a rotation whose *rows* are
      the camera's axes in the world, for a camera that looks along its -z axis with y up (established by
      reprojection: with this reading every camera faces the capture volume and the four views' detections of
      the public Pose2Sim demo triangulate to a few pixels; the transposed reading puts the volume behind or
      beside the cameras). In OpenCV's convention (z forward, y down) that is ``R = diag(1, -1, -1) @ rows`` and
      ``t = -R @ position``.

    ``viewrotation`` other than 0 (a video rotated by QTM) is refused: which way the stored values then refer to
    is not established here.

    Args:
        path: the ``.qca.txt`` file.
        divide_distortion: divide the distortion coefficients by 64, as Pose2Sim's converter does. The default
            keeps them as written, which is what reprojection and a recalibration from Pose2Sim's own checkerboard
            images support (see README, "Real captures").
        check_scale: check that the camera centres span :data:`PLAUSIBLE_SPAN_M`.

    Returns:
        The rig (world millimetres, OpenCV distortion), cameras in file order named by ``serial``.

    Raises:
        CalibrationError: naming the file, the camera and the attribute.
    """
    import xml.etree.ElementTree as ET  # noqa: PLC0415 (only this format is XML)

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"Qualisys calibration {path} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise CalibrationError(f"{path}: not a valid Qualisys XML file: {err}") from err
    nodes = root.findall("cameras/camera")
    if root.tag != "calibration" or not nodes:
        raise CalibrationError(f"{path}: expected a Qualisys <calibration> with <cameras><camera ...> elements, "
                               f"found <{root.tag}> with {len(nodes)} cameras")
    cameras = []
    for i, node in enumerate(nodes):
        name = node.attrib.get("serial") or f"cam_{i}"
        where = f"{path}: camera {name!r}"
        if node.attrib.get("active", "1").strip() == "0":
            log.info("%s is inactive (active=0); left out", where)
            continue
        if float(node.attrib.get("viewrotation", "0") or 0) != 0:
            raise CalibrationError(f"{where}: viewrotation={node.attrib['viewrotation']} (a rotated video) is not "
                                   "supported; export the calibration with viewrotation 0")
        elements = {}
        for tag in ("fov_video", "intrinsic", "transform"):
            el = node.find(tag)
            if el is None:
                raise CalibrationError(f"{where}: missing element <{tag}>")
            elements[tag] = el.attrib
        fov, intr, tr = elements["fov_video"], elements["intrinsic"], elements["transform"]
        left, right, top, bottom = (_qualisys_float(fov, k, f"{where} <fov_video>")
                                    for k in ("left", "right", "top", "bottom"))
        size = (int(round(right - left + 1)), int(round(bottom - top + 1)))
        if min(size) <= 0:
            raise CalibrationError(f"{where}: <fov_video> gives an empty image ({size[0]}x{size[1]})")
        w_i = f"{where} <intrinsic>"
        fx, fy, cx, cy = (_qualisys_float(intr, k, w_i) / QUALISYS_SUBPIXELS
                          for k in ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV"))
        skew = float(intr.get("skew", 0.0) or 0.0) / QUALISYS_SUBPIXELS
        k1, k2, k3 = (_qualisys_float(intr, f"radialDistortion{n}", w_i) for n in (1, 2, 3))
        p1, p2 = (_qualisys_float(intr, f"tangentalDistortion{n}", w_i) for n in (1, 2))
        dist = np.array([k1, k2, p1, p2, k3])
        if divide_distortion:
            dist = dist / QUALISYS_SUBPIXELS
        w_t = f"{where} <transform>"
        rows = np.array([[_qualisys_float(tr, f"r{a}{b}", w_t) for b in (1, 2, 3)] for a in (1, 2, 3)])
        position = np.array([_qualisys_float(tr, k, w_t) for k in ("x", "y", "z")])  # world mm
        R = _QUALISYS_TO_OPENCV @ rows
        K = np.array([[fx, skew, cx - left], [0.0, fy, cy - top], [0.0, 0.0, 1.0]])
        cameras.append(_make_camera(str(path), name=name, image_size=size, K=K, dist=dist, R=R, t=-R @ position))
    if not cameras:
        raise CalibrationError(f"{path}: no active camera")
    return _make_rig(path.name.split(".")[0] or "qualisys", cameras, path, "mm", check_scale)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """The calibration format of ``path``: ``rig`` (.json), ``anipose`` (.toml), ``qualisys`` (.qca.txt), ``easymocap``.

    EasyMocap is a folder holding ``intri.yml`` (and ``extri.yml``), or a path to its ``intri*.yml``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "intri.yml").is_file():
            return "easymocap"
        raise CalibrationError(f"{path}: a calibration folder must hold EasyMocap's intri.yml and extri.yml")
    suffix = path.suffix.lower()
    if path.name.lower().endswith((".qca.txt", ".qca")):
        return "qualisys"
    if suffix == ".json":
        return "rig"
    if suffix == ".toml":
        return "anipose"
    if suffix in (".yml", ".yaml") and path.name.lower().startswith(("intri", "extri")):
        return "easymocap"
    raise CalibrationError(
        f"{path}: cannot tell the calibration format; expected a build_h3wb rig .json, an anipose/Pose2Sim .toml, "
        "an EasyMocap folder / intri.yml or a Qualisys .qca.txt (or pass format=...)"
    )


def _easymocap_paths(path: Path) -> tuple[Path, Path | None]:
    """``(intri, extri)`` from a folder, an ``intri*.yml`` or an ``extri*.yml`` (its sibling named alike)."""
    if path.is_dir():
        return path / "intri.yml", path / "extri.yml"
    stem = path.name.lower()
    if stem.startswith("extri"):
        return path.with_name("intri" + path.name[5:]), path
    if stem.startswith("intri"):
        return path, path.with_name("extri" + path.name[5:])
    return path, None


def load_calibration(path: str | os.PathLike, format: str = "auto", **kwargs: object) -> Rig:
    """Load a calibration in any supported format as a validated rig in millimetres.

    Args:
        path: a build_h3wb rig ``.json`` (``geometry.cameras.load_rig``), an anipose / Pose2Sim ``.toml``
            (:func:`load_anipose_toml`), or an EasyMocap folder or ``intri.yml`` (:func:`load_easymocap`).
        format: ``"auto"`` (from the path, :func:`detect_format`), ``"rig"``, ``"anipose"`` or ``"easymocap"``.
        **kwargs: passed to the loader (``units``, ``check_scale``; ``image_size`` for EasyMocap). A rig file
            declares its own units and takes none.

    Returns:
        The rig.
    """
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"unknown calibration format {format!r}; expected one of {list(FORMATS)}")
    fmt = detect_format(path) if format == "auto" else format
    unknown = sorted(set(kwargs) - set(_OPTIONS[fmt]))
    if unknown:
        raise ValueError(
            f"{path}: option(s) {unknown} do not apply to the {fmt!r} format, which takes {list(_OPTIONS[fmt])}"
            + (" (a rig file declares its own units)" if fmt == "rig" else "")
        )
    if fmt == "rig":
        return load_rig(path)
    if fmt == "anipose":
        return load_anipose_toml(path, **kwargs)
    if fmt == "qualisys":
        return load_qualisys(path, **kwargs)
    intri_path, extri_path = _easymocap_paths(path)
    return load_easymocap(intri_path, extri_path, **kwargs)
