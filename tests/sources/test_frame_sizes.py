"""One frame-size rule for every video source: padding or cropping, a uniform scale, or a clear refusal.

Videos are written by OpenCV (MJPG in .avi: any frame size) from a small calibrated camera.
"""

import logging

import cv2
import numpy as np
import pytest
from conftest import run_cli

from build_h3wb.geometry.calibration_formats import save_anipose_toml
from build_h3wb.geometry.cameras import Camera, Rig, h36m_rig
from build_h3wb.sources.base import Recording
from build_h3wb.sources.h36m import H36MSource
from build_h3wb.sources.rig import RigSource
from build_h3wb.sources.video import VideoError, fit_camera_to_video

W, H = 160, 96


def write_video(path, size, n=3):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    assert out.isOpened()
    for _ in range(n):
        out.write(np.zeros((size[1], size[0], 3), np.uint8))
    out.release()


def small_rig():
    cams = []
    for i, angle in enumerate((0.0, 90.0, 180.0)):
        a = np.radians(angle)
        R = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
        K = np.array([[150.0, 0, 79.5], [0, 150.0, 47.5], [0, 0, 1]])
        cams.append(Camera(name=f"cam{i}", image_size=(W, H), K=K, dist=np.zeros(5), R=R,
                           t=np.array([0.0, 0.0, 3000.0])))
    return Rig(name="small", cameras=tuple(cams))


def test_the_rule_on_one_camera(caplog):
    cam = small_rig()["cam0"]
    assert fit_camera_to_video(cam, (W, H), "v.avi") is cam
    with caplog.at_level(logging.WARNING):
        padded = fit_camera_to_video(cam, (W - 2, H), "v.avi")  # 1.25% narrower: cropped
    assert padded.image_size == (W - 2, H) and np.array_equal(padded.K, cam.K)
    assert "v.avi" in caplog.text and "'cam0'" in caplog.text and f"{W - 2}x{H}" in caplog.text
    assert f"{W}x{H}" in caplog.text
    half = fit_camera_to_video(cam, (W // 2, H // 2), "v.avi")
    np.testing.assert_allclose(half.K[:2, :2], cam.K[:2, :2] / 2)
    np.testing.assert_allclose(half.K[:2, 2], [(79.5 + 0.5) / 2 - 0.5, (47.5 + 0.5) / 2 - 0.5])
    # a point projects where cv2.resize puts the pixel it lands on (pixel centres): centre of the image
    X = np.array([[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(half.project(X), (cam.project(X) + 0.5) / 2 - 0.5)
    # a half-size copy padded to a multiple of 16 is still a scaled view
    assert fit_camera_to_video(cam, (W // 2 + 1, H // 2), "v.avi").K[0, 0] == pytest.approx(75.0)
    for size in ((W, H // 2), (W - 20, H), (W * 2, H)):
        match = f"v.avi: the video is {size[0]}x{size[1]}, the calibration of camera 'cam0' is for"
        with pytest.raises(VideoError, match=match):
            fit_camera_to_video(cam, size, "v.avi")


@pytest.fixture
def capture(tmp_path):
    rig = small_rig()
    save_anipose_toml(rig, tmp_path / "calibration.toml")
    trial = tmp_path / "videos" / "trial"
    trial.mkdir(parents=True)
    write_video(trial / "cam0.avi", (W, H))
    write_video(trial / "cam1.avi", (W - 2, H))  # cropped by the encoder
    write_video(trial / "cam2.avi", (W // 2, H // 2))  # a half-size copy
    return tmp_path


def test_rig_source_uses_padded_and_scaled_videos(capture, caplog):
    src = RigSource(str(capture / "videos"), str(capture / "calibration.toml"))
    (seq,) = src.sequences()
    with caplog.at_level(logging.WARNING):
        rig = src.rig(seq)
    assert rig["cam1"].image_size == (W - 2, H) and rig["cam2"].image_size == (W // 2, H // 2)
    assert rig["cam2"].K[0, 0] == pytest.approx(75.0) and rig["cam0"].K[0, 0] == 150.0
    assert "cam1" in caplog.text and "scaled by 0.5" in caplog.text
    for view in rig.names:
        assert len(src.view_frames(seq, view)) == 3
        batch = next(src.batches(seq, view, src.view_frames(seq, view), 3))
        assert batch.images.shape[1:3] == batch.camera.image_size[::-1]


def test_a_video_that_fits_no_rule_is_refused_and_the_others_are_used(capture):
    write_video(capture / "videos" / "trial" / "cam1.avi", (W, H // 2))
    src = RigSource(str(capture / "videos"), str(capture / "calibration.toml"))
    (seq,) = src.sequences()
    assert src.rig(seq)["cam1"].image_size == (W, H)  # kept as calibrated; the view is refused
    with pytest.raises(VideoError, match=f"is {W}x{H // 2}, the calibration of camera 'cam1' is for {W}x{H}"):
        src.view_frames(seq, "cam1")
    assert len(src.view_frames(seq, "cam2")) == 3


def test_h36m_uses_a_half_size_video_with_scaled_intrinsics(tmp_path, caplog):
    rig = h36m_rig("S1")
    videos = tmp_path / "S1" / "Videos"
    videos.mkdir(parents=True)
    for cam in rig:
        w, h = cam.image_size
        write_video(videos / f"Walking 1.{cam.name}.avi", (w // 2, h // 2) if cam.name == "54138969" else (w, h))
    src = H36MSource(str(tmp_path), subjects=["S1"], actions=["Walking"], mocap=False, stride=1)
    seq = Recording("S1", "Walking", "Walking 1")
    with caplog.at_level(logging.WARNING):
        fitted = src.rig(seq)
    cam, small = rig["54138969"], fitted["54138969"]
    # MJPG rounds 501 rows down to 500: a half-size copy a row short, still a uniform scale
    assert small.image_size == (500, 500) and small.K[0, 0] == pytest.approx(cam.K[0, 0] / 2)
    assert "54138969" in caplog.text and "1000x1002" in caplog.text
    assert fitted["55011271"] is src.rig_for("S1")["55011271"]  # a video of the calibrated size: unchanged
    X = np.array([[0.0, 500.0, 1000.0]])
    np.testing.assert_allclose(small.project(X), (cam.project(X) + 0.5) / 2 - 0.5, atol=1e-9)
    assert len(src.view_frames(seq, "54138969")) == 3


def test_editing_the_calibration_in_place_is_noticed(capture):
    """The detect configuration holds the calibration's content: an edit stops the next run with a clear error."""
    src = RigSource(str(capture / "videos"), str(capture / "calibration.toml"))
    before = src.describe()["calibration_hash"]
    text = (capture / "calibration.toml").read_text()
    (capture / "calibration.toml").write_text(text.replace("150.0", "151.0", 1))
    after = RigSource(str(capture / "videos"), str(capture / "calibration.toml")).describe()["calibration_hash"]
    assert before != after


@pytest.mark.slow
def test_detect_says_the_calibration_changed(capture, tmp_path):
    args = ["stage=detect", "data=rig", f"data.root={capture / 'videos'}",
            f"data.calibration={capture / 'calibration.toml'}", "detector=mediapipe"]
    run_cli(tmp_path, *args)
    text = (capture / "calibration.toml").read_text()
    (capture / "calibration.toml").write_text(text.replace("150.0", "151.0", 1))
    out = run_cli(tmp_path, *args, check=False)
    assert out.returncode != 0 and "calibration_hash" in out.stdout + out.stderr
