import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, points_in_volume

from build_h3wb.geometry.calibration_formats import (
    detect_format,
    fit_opencv_distortion,
    load_anipose_toml,
    load_calibration,
    load_easymocap,
    save_anipose_toml,
    save_easymocap,
)
from build_h3wb.geometry.cameras import CalibrationError, Camera, Rig, load_rig, save_rig
from build_h3wb.geometry.distortion import distort

# ----------------------------------------------------------------------------------------------------------------
# Hand-written files with known numbers
# ----------------------------------------------------------------------------------------------------------------

# Two cameras facing the origin from about 3 m (cam "right" turned by ~143 degrees), translations in millimetres.
ANIPOSE_TOML = """\
[cam_0]
name = "left"
size = [1920, 1080]
matrix = [[1500.0, 0.0, 960.5], [0.0, 1502.0, 540.25], [0.0, 0.0, 1.0]]
distortions = [-0.21, 0.05, 0.001, -0.0005, 0.01]
rotation = [0.1, -0.2, 0.05]
translation = [-500.0, 200.0, 3000.0]

[cam_1]
name = "right"
size = [1280, 720]
matrix = [[1000.0, 0.0, 640.0], [0.0, 1001.0, 360.0], [0.0, 0.0, 1.0]]
distortions = [-0.1, 0.02]
rotation = [0.05, 2.5, -0.1]
translation = [300.0, -100.0, 3500.0]

[metadata]
adjusted = false
error = 0.25
"""
ANIPOSE_CAMS = {
    "left": dict(
        size=(1920, 1080),
        K=[[1500.0, 0.0, 960.5], [0.0, 1502.0, 540.25], [0.0, 0.0, 1.0]],
        dist=[-0.21, 0.05, 0.001, -0.0005, 0.01],
        rvec=[0.1, -0.2, 0.05],
        t=[-500.0, 200.0, 3000.0],
    ),
    "right": dict(
        size=(1280, 720),
        K=[[1000.0, 0.0, 640.0], [0.0, 1001.0, 360.0], [0.0, 0.0, 1.0]],
        dist=[-0.1, 0.02, 0.0, 0.0, 0.0],
        rvec=[0.05, 2.5, -0.1],
        t=[300.0, -100.0, 3500.0],
    ),
}

# Pose2Sim's layout (its toml_write): tables named after the cameras, float sizes, 4 coefficients, metres,
# fisheye = false. Written in the reverse of sorted order to check that the file order is kept.
POSE2SIM_TOML = """\
[cam_02]
name = "cam_02"
size = [ 1088.0, 1920.0]
matrix = [ [ 1681.2, 0.0, 532.9], [ 0.0, 1681.0, 948.1], [ 0.0, 0.0, 1.0]]
distortions = [ -0.0007, 0.0021, 9.5e-06, 1.07e-05]
rotation = [ 1.688, 1.048, -0.4195]
translation = [ 0.321, 0.956, 2.89]
fisheye = false

[cam_01]
name = "cam_01"
size = [ 1088.0, 1920.0]
matrix = [ [ 1673.7, 0.0, 534.4], [ 0.0, 1673.8, 963.2], [ 0.0, 0.0, 1.0]]
distortions = [ -0.00074, 0.00213, 1.5e-05, 4.5e-06]
rotation = [ 1.349, 1.596, -1.198]
translation = [ -0.111, 0.776, 3.067]
fisheye = false

[metadata]
adjusted = false
error = 0.0
"""

# EasyMocap's own writer (mytools/camera_utils.py FileStorage): CRLF line ends, 2-space indent, quoted names, 6
# decimals; names "01" (a string that looks like a number) and 2 (unquoted: an integer node).
EASYMOCAP_INTRI = """\
%YAML:1.0
---
names:
  - "01"
  - 2
K_01: !!opencv-matrix
  rows: 3
  cols: 3
  dt: d
  data: [1200.000000, 0.000000, 640.000000, 0.000000, 1210.000000, 360.000000, 0.000000, 0.000000, 1.000000]
dist_01: !!opencv-matrix
  rows: 1
  cols: 5
  dt: d
  data: [-0.300000, 0.100000, 0.001000, 0.002000, 0.000000]
H_01: 720
W_01: 1280
K_2: !!opencv-matrix
  rows: 3
  cols: 3
  dt: d
  data: [900.000000, 0.000000, 960.000000, 0.000000, 905.000000, 540.000000, 0.000000, 0.000000, 1.000000]
dist_2: !!opencv-matrix
  rows: 5
  cols: 1
  dt: d
  data: [-0.050000, 0.010000, 0.000000, 0.000000, 0.000000]
H_2: 1080
W_2: 1920
""".replace("\n", "\r\n")


def _rot(rvec):
    return cv2.Rodrigues(np.array(rvec, dtype=np.float64).reshape(3, 1))[0]


EASYMOCAP_CAMS = {
    "01": dict(
        size=(1280, 720),
        K=[[1200.0, 0, 640.0], [0, 1210.0, 360.0], [0, 0, 1]],
        dist=[-0.3, 0.1, 0.001, 0.002, 0.0],
        rvec=[0.2, 0.1, -0.05],
        t=[0.1, -0.2, 4.0],
    ),
    "2": dict(
        size=(1920, 1080),
        K=[[900.0, 0, 960.0], [0, 905.0, 540.0], [0, 0, 1]],
        dist=[-0.05, 0.01, 0.0, 0.0, 0.0],
        rvec=[-0.1, 1.2, 0.3],
        t=[-0.3, 0.1, 3.5],
    ),
}


def _mat(key, rows, cols, values):
    data = ", ".join(f"{v:.6f}" for v in np.ravel(values))
    return f"{key}: !!opencv-matrix\n  rows: {rows}\n  cols: {cols}\n  dt: d\n  data: [{data}]\n"


def easymocap_extri(names=("01", "2"), with_rvec=True, with_rot=True, rot_override=None):
    """EasyMocap's extri.yml for EASYMOCAP_CAMS (6 decimals, CRLF), with optional defects."""
    text = "%YAML:1.0\n---\nnames:\n" + "".join(f'  - "{n}"\n' for n in names)
    for name, c in EASYMOCAP_CAMS.items():
        if with_rvec:
            text += _mat(f"R_{name}", 3, 1, c["rvec"])
        if with_rot:
            text += _mat(f"Rot_{name}", 3, 3, _rot(c["rvec"]) if rot_override is None else rot_override)
        text += _mat(f"T_{name}", 3, 1, c["t"])
    return text.replace("\n", "\r\n")


def write(path, text):
    path.write_bytes(text.encode())
    return path


def project_cv2(X, rvec, tvec, K, dist):
    """(N, 3) world points -> (N, 2) pixels with OpenCV itself (the reference for our conventions)."""
    uv, _ = cv2.projectPoints(
        np.asarray(X, dtype=np.float64).reshape(-1, 1, 3),
        np.asarray(rvec, dtype=np.float64),
        np.asarray(tvec, dtype=np.float64),
        np.asarray(K, dtype=np.float64),
        np.asarray(dist, dtype=np.float64),
    )
    return uv.reshape(-1, 2)


# a few world points near the origin, in front of every test camera (millimetres)
POINTS_MM = np.array([[0.0, 0.0, 0.0], [100.0, -50.0, 200.0], [-300.0, 250.0, -100.0], [150.0, 300.0, 400.0]])


# ----------------------------------------------------------------------------------------------------------------
# anipose / Pose2Sim
# ----------------------------------------------------------------------------------------------------------------


def test_anipose_toml_loads_known_numbers(tmp_path):
    rig = load_anipose_toml(write(tmp_path / "calibration.toml", ANIPOSE_TOML))
    assert rig.names == ("left", "right") and rig.name == "calibration"
    for cam in rig:
        want = ANIPOSE_CAMS[cam.name]
        assert cam.image_size == want["size"]
        assert cam.distortion_model == "opencv"
        np.testing.assert_array_equal(cam.K, want["K"])
        np.testing.assert_array_equal(cam.dist, want["dist"])
        np.testing.assert_allclose(cam.R, _rot(want["rvec"]), atol=1e-15)
        np.testing.assert_array_equal(cam.t, want["t"])  # default units: mm
        # our projection against OpenCV's on the file's own numbers
        expected = project_cv2(POINTS_MM, want["rvec"], want["t"], want["K"], want["dist"])
        np.testing.assert_allclose(cam.project(POINTS_MM), expected, atol=1e-8)
        assert cam.in_image(expected).all()


def test_anipose_skew_is_kept_with_a_warning(tmp_path, caplog):
    text = ANIPOSE_TOML.replace("[[1000.0, 0.0, 640.0]", "[[1000.0, 0.5, 640.0]")
    with caplog.at_level(logging.WARNING):
        rig = load_anipose_toml(write(tmp_path / "skew.toml", text))
    assert rig["right"].K[0, 1] == 0.5
    assert "camera 'right' has skew K[0, 1] = 0.5" in caplog.text


def test_pose2sim_toml_in_metres_keeps_file_order(tmp_path):
    rig = load_anipose_toml(write(tmp_path / "Calib_scene.toml", POSE2SIM_TOML), units="m")
    assert rig.names == ("cam_02", "cam_01")
    cam = rig["cam_02"]
    assert cam.image_size == (1088, 1920)
    np.testing.assert_array_equal(cam.dist, [-0.0007, 0.0021, 9.5e-06, 1.07e-05, 0.0])
    np.testing.assert_allclose(cam.t, [321.0, 956.0, 2890.0], rtol=1e-12)
    # OpenCV on the file's numbers in metres == our projection of the same points in millimetres
    X_m = POINTS_MM / 1000.0
    expected = project_cv2(X_m, [1.688, 1.048, -0.4195], [0.321, 0.956, 2.89], cam.K, cam.dist)
    np.testing.assert_allclose(cam.project(POINTS_MM), expected, atol=1e-8)


def test_anipose_units_come_from_metadata_written_by_save(tmp_path, rig):
    ocv = opencv_copy(rig)
    save_anipose_toml(ocv, tmp_path / "c.toml", units="m")
    back = load_anipose_toml(tmp_path / "c.toml")  # no units given: [metadata] units = "m"
    np.testing.assert_allclose(back[0].t, ocv[0].t, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# EasyMocap
# ----------------------------------------------------------------------------------------------------------------


def test_easymocap_loads_known_numbers(tmp_path):
    write(tmp_path / "intri.yml", EASYMOCAP_INTRI)
    write(tmp_path / "extri.yml", easymocap_extri())
    rig = load_easymocap(tmp_path / "intri.yml", tmp_path / "extri.yml")
    assert rig.names == ("01", "2")
    for cam in rig:
        want = EASYMOCAP_CAMS[cam.name]
        assert cam.image_size == want["size"]
        np.testing.assert_array_equal(cam.K, want["K"])
        np.testing.assert_array_equal(cam.dist, want["dist"])
        np.testing.assert_allclose(cam.R, _rot(want["rvec"]), atol=1e-15)  # R_ (Rodrigues) wins over Rot_
        np.testing.assert_allclose(cam.t, np.array(want["t"]) * 1000.0, rtol=1e-12)  # metres -> mm
        expected = project_cv2(POINTS_MM / 1000.0, want["rvec"], want["t"], want["K"], want["dist"])
        np.testing.assert_allclose(cam.project(POINTS_MM), expected, atol=1e-8)
        assert cam.in_image(expected).all()


def test_easymocap_rotation_matrix_only(tmp_path):
    write(tmp_path / "intri.yml", EASYMOCAP_INTRI)
    write(tmp_path / "extri.yml", easymocap_extri(with_rvec=False))
    rig = load_calibration(tmp_path)  # a folder -> EasyMocap
    np.testing.assert_allclose(rig["2"].R, _rot(EASYMOCAP_CAMS["2"]["rvec"]), atol=1e-6)  # 6-decimal Rot_


def test_easymocap_image_size_argument(tmp_path):
    intri = "\n".join(line for line in EASYMOCAP_INTRI.split("\r\n") if not line.startswith(("H_", "W_")))
    write(tmp_path / "intri.yml", intri)
    write(tmp_path / "extri.yml", easymocap_extri())
    with pytest.raises(CalibrationError, match=r"intri.yml: camera '01': missing image size.*image_size="):
        load_easymocap(tmp_path / "intri.yml")
    assert [c.image_size for c in load_easymocap(tmp_path / "intri.yml", image_size=(640, 480))] == [(640, 480)] * 2
    rig = load_easymocap(tmp_path / "intri.yml", image_size={"01": (1280, 720), "2": (1920, 1080)})
    assert [c.image_size for c in rig] == [(1280, 720), (1920, 1080)]
    with pytest.raises(CalibrationError, match=r"unknown camera\(s\) \['03'\]"):
        load_easymocap(tmp_path / "intri.yml", image_size={"01": (1280, 720), "03": (1, 1)})


def test_easymocap_image_size_argument_overrides_the_file(tmp_path, caplog):
    write(tmp_path / "intri.yml", EASYMOCAP_INTRI)
    write(tmp_path / "extri.yml", easymocap_extri())
    with caplog.at_level(logging.WARNING):
        rig = load_easymocap(tmp_path / "intri.yml", image_size={"2": (960, 540)})
    assert [c.image_size for c in rig] == [(1280, 720), (960, 540)]
    assert "overrides the file's W, H = (1920, 1080)" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# Round trips on the shipped Human3.6M rig
# ----------------------------------------------------------------------------------------------------------------


def opencv_copy(rig):
    """The rig with its h36m distortion coefficients reinterpreted in OpenCV's model (a valid opencv rig)."""
    cams = tuple(Camera(c.name, c.image_size, c.K, c.dist, c.R, c.t, "opencv") for c in rig)
    return Rig(rig.name, cams, rig.capture_volume)


def _save_load(fmt, rig, tmp_path, units, **kwargs):
    if fmt == "anipose":
        save_anipose_toml(rig, tmp_path / "calibration.toml", units=units, **kwargs)
        return load_calibration(tmp_path / "calibration.toml", units=units)
    save_easymocap(rig, tmp_path / "intri.yml", tmp_path / "extri.yml", units=units, **kwargs)
    return load_calibration(tmp_path / "intri.yml", units=units)


@pytest.mark.parametrize("units", ["mm", "cm", "m"])
@pytest.mark.parametrize("fmt", ["anipose", "easymocap"])
def test_round_trip_preserves_projections(tmp_path, rig, rng, fmt, units):
    ocv = opencv_copy(rig)
    back = _save_load(fmt, ocv, tmp_path, units)
    assert back.names == ocv.names == ("54138969", "55011271", "58860488", "60457274")  # numeric names stay strings
    X = points_in_volume(rig, 2000, rng)
    for a, b in zip(ocv, back):
        assert b.image_size == a.image_size and b.distortion_model == "opencv"
        np.testing.assert_allclose(b.K, a.K, rtol=1e-15)
        np.testing.assert_allclose(b.dist, a.dist, rtol=1e-15)
        assert np.abs(b.project(X) - a.project(X)).max() < 1e-6
        np.testing.assert_allclose(b.center, a.center, atol=1e-9)


@pytest.mark.parametrize("fmt", ["anipose", "easymocap"])
def test_h36m_distortion_is_refused_or_approximated(tmp_path, rig, caplog, fmt):
    with pytest.raises(CalibrationError, match=r"camera '54138969' uses the 'h36m' distortion model"):
        _save_load(fmt, rig, tmp_path, "m")
    assert not list(tmp_path.iterdir())  # nothing written
    with caplog.at_level(logging.WARNING):
        back = _save_load(fmt, rig, tmp_path, "m", approximate_distortion=True)
    assert "least-squares OpenCV approximation" in caplog.text
    for a, b in zip(rig, back):
        w, h = a.image_size
        uv = np.stack(np.meshgrid(np.linspace(0, w - 1, 30), np.linspace(0, h - 1, 30)), -1).reshape(-1, 2)
        xy = a.undistort_pixels(uv, iterations=20)
        fitted = b.normalized_to_pixels(distort(xy, b.dist, "opencv"))
        copied = a.normalized_to_pixels(distort(xy, a.dist, "opencv"))  # the coefficients copied as they are
        err_fit, err_copy = np.linalg.norm(fitted - uv, axis=1).max(), np.linalg.norm(copied - uv, axis=1).max()
        assert err_fit < 0.5 and err_fit < 0.5 * err_copy, (a.name, err_fit, err_copy)


def test_easymocap_refuses_names_opencv_cannot_key(tmp_path, rig):
    cams = tuple(Camera(f"cam.{i}", c.image_size, c.K, c.dist, c.R, c.t) for i, c in enumerate(rig))
    with pytest.raises(CalibrationError, match=r"camera 'cam.0' cannot be written: OpenCV FileStorage keys"):
        save_easymocap(Rig("r", cams), tmp_path / "intri.yml")
    assert not list(tmp_path.iterdir())


def test_fit_opencv_distortion_keeps_opencv_cameras(rig):
    cam = opencv_copy(rig)[1]
    dist, max_px = fit_opencv_distortion(cam)
    np.testing.assert_array_equal(dist, cam.dist)
    assert max_px == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------


def _anipose_error(tmp_path, text, match, **kwargs):
    with pytest.raises(CalibrationError, match=match):
        load_anipose_toml(write(tmp_path / "bad.toml", text), **kwargs)


def test_anipose_errors(tmp_path):
    right = ANIPOSE_TOML.index("[cam_1]")
    _anipose_error(
        tmp_path,
        ANIPOSE_TOML.replace("matrix = [[1500.0, 0.0, 960.5], [0.0, 1502.0, 540.25], [0.0, 0.0, 1.0]]\n", ""),
        r"bad.toml: camera 'left' \(table \[cam_0\]\): missing key\(s\) \['matrix'\]",
    )
    _anipose_error(
        tmp_path,
        ANIPOSE_TOML.replace("[[1500.0, 0.0, 960.5], [0.0, 1502.0, 540.25], [0.0, 0.0, 1.0]]", "[[1500.0, 0.0]]"),
        r"camera 'left'.*key 'matrix' has shape \(1, 2\), expected \(3, 3\)",
    )
    _anipose_error(
        tmp_path,
        ANIPOSE_TOML.replace("rotation = [0.1, -0.2, 0.05]", "rotation = [[0.1, -0.2, 0.05], [0.1, -0.2, 0.05]]"),
        r"key 'rotation' has shape \(2, 3\)",
    )
    _anipose_error(tmp_path, ANIPOSE_TOML.replace("-500.0, 200.0", "nan, 200.0"), r"'translation' contains NaN")
    _anipose_error(tmp_path, ANIPOSE_TOML.replace("[1280, 720]", "[1280.5, 720]"), r"'size' must be two positive")
    _anipose_error(
        tmp_path,
        ANIPOSE_TOML.replace("[0.0, 1001.0, 360.0]", "[0.0, -1001.0, 360.0]"),
        r"bad.toml: camera 'right': field 'K' must have positive focal lengths",
    )
    _anipose_error(tmp_path, ANIPOSE_TOML[:right] + "[metadata]\n", r"needs at least 2 cameras, got 1")
    _anipose_error(tmp_path, ANIPOSE_TOML + "[cam_2\n", r"not a valid TOML file")
    _anipose_error(tmp_path, ANIPOSE_TOML, r"unknown units 'inch', expected one of \['mm', 'cm', 'm'\]", units="inch")
    _anipose_error(
        tmp_path,
        ANIPOSE_TOML.replace("[-0.1, 0.02]", "[-0.1, 0.02, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0]"),
        r"key 'distortions' has 8 coefficients with non-zero k4",
    )
    with pytest.raises(CalibrationError, match=r"does not exist"):
        load_anipose_toml(tmp_path / "missing.toml")


def test_anipose_fisheye_is_refused(tmp_path):
    fisheye = ANIPOSE_TOML.replace('name = "right"', 'name = "right"\nfisheye = true')
    _anipose_error(tmp_path, fisheye, r"camera 'right' \(table \[cam_1\]\): key 'fisheye' is true; .* not supported")
    _anipose_error(tmp_path, ANIPOSE_TOML + "fisheye = true\n", r"\[metadata\] says fisheye = true")


def test_implausible_units_are_refused(tmp_path):
    # the anipose file is in mm: read as metres its cameras would span kilometres
    _anipose_error(tmp_path, ANIPOSE_TOML, r"units='m'.* outside the 0.1-100.0 m.*pass units='mm'", units="m")
    # Pose2Sim writes metres: the anipose default (mm) would make a 4 mm rig
    _anipose_error(tmp_path, POSE2SIM_TOML, r"with units='mm' the camera centres span .* pass units='m'")
    rig = load_anipose_toml(tmp_path / "bad.toml", check_scale=False)  # an explicit opt-out
    assert rig[0].t[2] == pytest.approx(2.89)


def test_easymocap_errors(tmp_path):
    intri, extri = tmp_path / "intri.yml", tmp_path / "extri.yml"
    write(intri, EASYMOCAP_INTRI)

    def fails(extri_text, match, intri_text=EASYMOCAP_INTRI, **kwargs):
        write(intri, intri_text)
        write(extri, extri_text)
        with pytest.raises(CalibrationError, match=match):
            load_easymocap(intri, extri, **kwargs)

    fails(easymocap_extri(names=("01", "3")), r"camera names differ .*only in intri: \['2'\], only in extri: \['3'\]")
    missing_t = "\r\n".join(easymocap_extri().split("\r\n")[:-6])  # drop T_2 (5 lines and the final empty one)
    fails(missing_t, r"extri.yml: camera '2': missing key 'T_2'")
    fails(easymocap_extri(with_rvec=False, rot_override=np.diag([1.0, 1.0, 2.0])), r"'Rot_01' is not a rotation")
    fails(easymocap_extri(rot_override=_rot([0.0, 0.0, 0.3])), r"'R_01' \(Rodrigues\) and 'Rot_01' disagree")
    fails(
        easymocap_extri(),
        r"intri.yml: camera '01': key 'K_01' has shape \(3, 2\)",
        intri_text=EASYMOCAP_INTRI.replace("rows: 3\r\n  cols: 3", "rows: 3\r\n  cols: 2", 1).replace(
            "1200.000000, 0.000000, 640.000000, ", "", 1
        ),
    )
    fails(easymocap_extri(), r"camera '01': missing key 'K_01'", intri_text=EASYMOCAP_INTRI.replace("K_01:", "Kx_01:"))
    fails(easymocap_extri(), r"missing or empty key 'names'", intri_text=EASYMOCAP_INTRI.replace("names:", "nams:"))
    fails(easymocap_extri(), r"not a valid OpenCV YAML file", intri_text=EASYMOCAP_INTRI + "foo: [1, 2\r\n")
    # metres are the EasyMocap default; the same file read as mm spans 4 mm
    fails(easymocap_extri(), r"with units='mm' .* pass units='m'", units="mm")
    with pytest.raises(CalibrationError, match=r"does not exist"):
        load_easymocap(tmp_path / "none" / "intri.yml")


def test_load_calibration_dispatch_and_errors(tmp_path, rig):
    save_rig(rig, tmp_path / "rig.json")
    assert load_calibration(tmp_path / "rig.json").names == rig.names
    assert detect_format(write(tmp_path / "c.toml", ANIPOSE_TOML)) == "anipose"
    assert load_calibration(tmp_path / "c.toml").names == ("left", "right")
    write(tmp_path / "intri.yml", EASYMOCAP_INTRI)
    write(tmp_path / "extri.yml", easymocap_extri())
    for path in (tmp_path, tmp_path / "intri.yml", tmp_path / "extri.yml"):
        assert detect_format(path) == "easymocap"
        assert load_calibration(path).names == ("01", "2")
    with pytest.raises(CalibrationError, match=r"cannot tell the calibration format"):
        load_calibration(write(tmp_path / "cams.txt", ""))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match=r"must hold EasyMocap's intri.yml"):
        load_calibration(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"option\(s\) \['units'\] do not apply to the 'rig' format"):
        load_calibration(tmp_path / "rig.json", units="m")
    with pytest.raises(ValueError, match=r"option\(s\) \['image_size'\] do not apply to the 'anipose'"):
        load_calibration(tmp_path / "c.toml", image_size=(1, 1))
    with pytest.raises(ValueError, match=r"unknown calibration format 'colmap'"):
        load_calibration(tmp_path / "c.toml", format="colmap")


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _cli(*args):
    cmd = [sys.executable, str(REPO / "scripts" / "import_calibration.py"), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_writes_a_loadable_rig(tmp_path, rig):
    ocv = opencv_copy(rig)
    save_anipose_toml(ocv, tmp_path / "calibration.toml")
    out = _cli(tmp_path / "calibration.toml", tmp_path / "rig.json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == list(ocv.names)
    assert "1000x1002 px" in lines[0] and " m from the origin" in lines[0]
    back = load_rig(tmp_path / "rig.json")
    assert back.names == ocv.names
    for a, b in zip(ocv, back):
        np.testing.assert_allclose(b.t, a.t, atol=1e-9)
        np.testing.assert_allclose(b.R, a.R, atol=1e-12)


def test_cli_units_and_errors(tmp_path):
    write(tmp_path / "Calib.toml", POSE2SIM_TOML)
    out = _cli(tmp_path / "Calib.toml", tmp_path / "rig.json")
    assert out.returncode == 2 and "pass units='m'" in out.stderr
    assert not (tmp_path / "rig.json").exists()
    out = _cli(tmp_path / "Calib.toml", tmp_path / "rig.json", "--units", "m")
    assert out.returncode == 0, out.stderr
    assert load_rig(tmp_path / "rig.json")["cam_01"].t[2] == pytest.approx(3067.0)


QUALISYS = REPO / "tests" / "data" / "qualisys"


def test_qualisys_matches_pose2sims_converter_and_projects_like_opencv(rng):
    rig = load_calibration(QUALISYS / "Calib.qca.txt")  # format from the name
    assert rig.names == ("cam01", "cam02", "cam03", "cam04")
    assert all(cam.image_size == (1088, 1920) for cam in rig)
    cam01 = rig["cam01"]
    assert cam01.K[0, 2] == pytest.approx(34110.316406 / 64) and cam01.K[1, 1] == pytest.approx(107588.828125 / 64)
    np.testing.assert_allclose(cam01.center, [1460.2323709212087, -1909.1590482454608, 1896.5058524092062])
    np.testing.assert_allclose(cam01.dist, [-0.046183, 0.139983, 0.000608, 0.00069, 0.0])  # as written
    # Pose2Sim's converter: the same cameras (its TOML in metres), its distortion divided by 64
    p2s = load_calibration(QUALISYS / "Calib_pose2sim.toml", units="m")
    divided = load_calibration(QUALISYS / "Calib.qca.txt", divide_distortion=True)
    for ours, theirs, ours64 in zip(rig, p2s, divided):
        np.testing.assert_allclose(ours.R, theirs.R, atol=1e-12)
        np.testing.assert_allclose(ours.t, theirs.t, atol=1e-6)
        np.testing.assert_allclose(ours.K, theirs.K, atol=1e-9)
        np.testing.assert_allclose(ours64.dist, theirs.dist, atol=1e-12)
    # every camera faces the origin (in front of it, in its image), and projects as cv2.projectPoints does
    column = np.stack([np.zeros(18), np.zeros(18), np.linspace(0, 1700, 18)], 1)  # the origin, floor to head height
    X = rng.uniform([-1500, -1500, 0], [1500, 1500, 1800], (200, 3))
    for cam in rig:
        assert (cam.world_to_camera(column)[:, 2] > 1000).all() and cam.in_image(cam.project(column)).all()
        uv = cam.project(X)
        ref = cv2.projectPoints(X, cv2.Rodrigues(np.ascontiguousarray(cam.R))[0], cam.t, cam.K, cam.dist)[0][:, 0]
        np.testing.assert_allclose(uv, ref, atol=1e-6)


def test_qualisys_errors(tmp_path):
    text = (QUALISYS / "Calib.qca.txt").read_text()
    bad = tmp_path / "bad.qca.txt"
    write(bad, text.replace('focalLengthU="107599.671875"', 'focalLengthU="abc"'))
    with pytest.raises(CalibrationError, match="camera 'cam01' <intrinsic>: attribute 'focalLengthU'"):
        load_calibration(bad)
    write(bad, text.replace('viewrotation="0"', 'viewrotation="90"', 1))
    with pytest.raises(CalibrationError, match="viewrotation=90"):
        load_calibration(bad)
    write(bad, "<calibration><cameras/></calibration>")
    with pytest.raises(CalibrationError, match="0 cameras"):
        load_calibration(bad)
    write(bad, "not xml")
    with pytest.raises(CalibrationError, match="not a valid Qualisys XML"):
        load_calibration(bad)
    with pytest.raises(ValueError, match="do not apply to the 'qualisys' format"):
        load_calibration(QUALISYS / "Calib.qca.txt", units="m")
    inactive = tmp_path / "inactive.qca.txt"
    write(inactive, text.replace('active="1"', 'active="0"', 1))
    assert load_calibration(inactive).names == ("cam02", "cam03", "cam04")
