import json

import numpy as np
import pytest
from conftest import points_in_volume

from build_h3wb.geometry.cameras import (
    H36M_SUBJECTS,
    CalibrationError,
    Camera,
    h36m_rig,
    load_rig,
    save_rig,
)
from build_h3wb.geometry.distortion import distort, undistort


@pytest.mark.parametrize("subject", H36M_SUBJECTS)
def test_h36m_capture_volume_lands_inside_every_image(subject):
    rig = h36m_rig(subject)
    (cx, cy), (hx, hy) = rig.capture_volume["center_xy"], rig.capture_volume["half_extent_xy"]
    g = np.stack(np.meshgrid(np.linspace(cx - hx, cx + hx, 7), np.linspace(cy - hy, cy + hy, 7), [0.0, 1900.0]), -1)
    X = g.reshape(-1, 3)
    for cam in rig:
        assert cam.in_image(cam.project(X)).all(), cam.name
        # in front of every camera, floor at z = 0 below the cameras (world z up)
        assert (cam.world_to_camera(X)[:, 2] > 1000).all()
        assert 1000 < cam.center[2] < 2500


@pytest.mark.parametrize("subject", H36M_SUBJECTS)
def test_h36m_axis_angles_match_the_published_layout(subject):
    a = h36m_rig(subject).axis_angles_deg()
    # camera order 54138969, 55011271, 58860488, 60457274: diagonals 0-3 and 1-2 face each other
    assert 150 < a[0, 3] < 158 and 150 < a[1, 2] < 158
    assert 120 < a[0, 1] < 132 and 120 < a[2, 3] < 132
    assert 40 < a[0, 2] < 52 and 40 < a[1, 3] < 52
    opp = h36m_rig(subject).opposing(140.0)
    assert opp.sum() == 4 and opp[0, 3] and opp[1, 2]


def test_h36m_resolutions():
    rig = h36m_rig("S7")
    assert [c.image_size for c in rig] == [(1000, 1002), (1000, 1000), (1000, 1000), (1000, 1002)]


@pytest.mark.parametrize("model", ["opencv", "h36m"])
def test_undistort_inverts_distort_over_the_image(rig, model):
    for cam in rig:
        g = np.stack(np.meshgrid(np.linspace(0, 999, 40), np.linspace(0, 999, 40)), -1).reshape(-1, 2)
        xyd = cam.pixels_to_normalized(g)
        back = cam.normalized_to_pixels(distort(undistort(xyd, cam.dist, model, iterations=8), cam.dist, model))
        assert np.abs(back - g).max() < 1e-6


def test_distortion_models_differ_only_in_the_cross_term(rig):
    cam = rig[0]
    xy = np.array([[0.3, -0.2], [0.0, 0.0], [0.1, 0.0]])
    a, b = distort(xy, cam.dist, "opencv"), distort(xy, cam.dist, "h36m")
    assert np.allclose(a[1], b[1])  # no distortion at the centre
    assert 0 < np.abs(a - b).max() * cam.K[0, 0] < 1.0  # sub-pixel difference for Human3.6M's coefficients
    no_tan = np.r_[cam.dist[:2], 0.0, 0.0, cam.dist[4]]
    assert np.allclose(distort(xy, no_tan, "opencv"), distort(xy, no_tan, "h36m"))


def test_project_and_transforms_round_trip(rig, rng):
    X = points_in_volume(rig, 500, rng)
    for cam in rig:
        assert np.allclose(cam.camera_to_world(cam.world_to_camera(X)), X)
        uv = cam.project(X)
        xy = cam.undistort_pixels(uv, iterations=10)
        Xc = cam.world_to_camera(X)
        assert np.allclose(xy, Xc[:, :2] / Xc[:, 2:], atol=1e-9)
        # pinhole without distortion is exactly K (R X + t) / z
        p = (cam.K @ Xc.T).T
        assert np.allclose(cam.project(X, distort_points=False), p[:, :2] / p[:, 2:])


def test_project_vectorises_over_leading_dims(rig, rng):
    X = points_in_volume(rig, 24, rng).reshape(2, 3, 4, 3)
    cam = rig[1]
    assert cam.project(X).shape == (2, 3, 4, 2)
    assert np.allclose(cam.project(X).reshape(-1, 2), cam.project(X.reshape(-1, 3)))


def test_points_behind_the_camera_project_to_nan(rig):
    cam = rig[0]
    behind = cam.center - 100 * cam.optical_axis
    assert np.isnan(cam.project(behind[None])).all()


def test_rig_file_round_trip(rig, tmp_path):
    path = tmp_path / "rig.json"
    save_rig(rig, path)
    back = load_rig(path)
    assert back.names == rig.names
    for a, b in zip(rig, back):
        assert np.allclose(a.K, b.K) and np.allclose(a.R, b.R) and np.allclose(a.t, b.t)
        assert np.allclose(a.dist, b.dist) and a.image_size == b.image_size
        assert a.distortion_model == b.distortion_model == "h36m"


def test_rig_file_in_metres_is_converted(rig, tmp_path):
    data = rig.to_dict()
    data["units"] = "m"
    for c in data["cameras"].values():
        c["t"] = [v / 1000 for v in c["t"]]
    path = tmp_path / "rig_m.json"
    path.write_text(json.dumps(data))
    assert np.allclose(load_rig(path)[0].t, rig[0].t)


def _broken(rig, tmp_path, edit):
    data = rig.to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["cameras"]["55011271"].__setitem__("R", (np.eye(3) * 1.1).tolist()), "55011271.*'R'.*orthonormal"),
        (lambda d: d["cameras"]["58860488"]["K"][0].__setitem__(0, -5.0), "58860488.*'K'.*positive focal"),
        (lambda d: d["cameras"]["54138969"]["t"].__setitem__(1, float("nan")), "54138969.*'t'.*NaN"),
        (lambda d: d["cameras"]["60457274"].pop("dist"), "60457274.*lacks.*dist"),
        (lambda d: d["cameras"]["60457274"].__setitem__("K", [[1, 0], [0, 1]]), "60457274.*'K'.*shape"),
        (lambda d: d.__setitem__("format", "something"), "'format'"),
        (lambda d: d.__setitem__("units", "furlong"), "'units'"),
    ],
)
def test_bad_rig_files_name_camera_and_field(rig, tmp_path, edit, match):
    with pytest.raises(CalibrationError, match=match):
        load_rig(_broken(rig, tmp_path, edit))


def test_missing_and_corrupt_rig_files(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        load_rig(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_rig(tmp_path / "x.json")


def test_unknown_camera_and_subject(rig):
    with pytest.raises(KeyError, match="no camera '123'"):
        rig["123"]
    with pytest.raises(CalibrationError, match="S2"):
        h36m_rig("S2")


def test_camera_rejects_reflection():
    R = np.diag([1.0, 1.0, -1.0])
    with pytest.raises(CalibrationError, match="reflection"):
        Camera("c", (100, 100), np.eye(3), np.zeros(5), R, np.zeros(3))


@pytest.mark.parametrize("model", ["opencv", "h36m"])
def test_long_inputs_are_undistorted_in_chunks_bit_for_bit(rig, model):
    from build_h3wb.geometry import distortion

    rng = np.random.default_rng(0)
    n = 3 * distortion.UNDISTORT_CHUNK + 17
    xd, yd = rng.uniform(-0.6, 0.6, n), rng.uniform(-0.6, 0.6, n)
    x, y = distortion.undistort_xy(xd, yd, rig[0].dist, model)
    x1, y1 = distortion._undistort(xd, yd, rig[0].dist, model, 5)  # in one pass
    np.testing.assert_array_equal(x, x1)
    np.testing.assert_array_equal(y, y1)
