"""Contact sheets, videos and single-photograph figures of ``stage=pictures``, on a tiny synthetic build."""

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import skimage.data
from conftest import run_cli, train_small_lifter
from hydra import compose, initialize_config_dir
from matplotlib.image import imread
from omegaconf import OmegaConf

from build_h3wb import skeleton
from build_h3wb.build import read_rig
from build_h3wb.config import register_configs
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.mediapipe import MediaPipeHolisticDetector
from build_h3wb.geometry.cameras import h36m_rig, save_rig
from build_h3wb.leaderboard.lifter import load_lifter
from build_h3wb.sources.base import FrameBatch, Recording
from build_h3wb.stages import run_stage
from build_h3wb.synthetic.motion import generate_motion
from build_h3wb.viz.figures import detection_box, image_figure, lift_detection, pinhole_camera, sheet_figure
from build_h3wb.viz.overlays import (
    LAYER_STYLE,
    NEUTRAL_RGB,
    camera_layers,
    final_points,
    layer_colours,
    marker_stamp,
    overlay,
    overlay_radius,
    subject_window,
    write_video,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
register_configs()
SMALL = ["data.subjects=[S1]", "data.actions=[Walking]", "data.duration_s=3"]
CAM = "55011271"
SHEET_FRAMES = 6
J = skeleton.NUM_KEYPOINTS
# body keypoints far from any other keypoint in the image (eyes, wrists and ankles sit next to face, hand, feet points)
LIMBS = [skeleton.index(f"{s}_{j}") for s in ("left", "right") for j in ("shoulder", "elbow", "hip", "knee")]
COLOURS = layer_colours()


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A one-sequence build up to triangulate, with its contact sheet and video in camera CAM."""
    d = tmp_path_factory.mktemp("pictures")
    run_cli(d, "stage=detect", *SMALL)
    run_cli(d, "stage=triangulate", *SMALL)
    run_cli(d, "stage=pictures", *SMALL, "pictures.views=false", "pictures.sheet=true", "pictures.video=true",
            f"pictures.camera={CAM}", f"pictures.sheet_frames={SHEET_FRAMES}")
    return d


@pytest.fixture(scope="module")
def sequence(built):
    """The build's frames (T,) and the layers of camera CAM, layer -> (T, J, 2) pixels (all triangulated)."""
    with h5py.File(built / "detect" / "S1" / "Walking 1.h5") as f:
        frames = f["frames"][:]
        rig = read_rig(dict(f.attrs), "detect")
        det = f["keypoints"][list(rig.names).index(CAM)]  # (T, J, 3)
    with h5py.File(built / "triangulate" / "S1" / "Walking 1.h5") as f:
        kp = f["keypoints_3d"][:].astype(np.float64)  # (T, J, 3)
    cam = rig[CAM]
    return frames, cam, camera_layers(cam, det, kp, np.zeros(kp.shape[:2], np.uint8))


def _segment_distance(p, a, b):
    """(P,) distance of points p (P, 2) to the nearest of the segments a-b (S, 2)."""
    ab = b - a  # (S, 2)
    t = np.clip(((p[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab**2).sum(-1), 1e-9), 0, 1)  # (P, S)
    return np.linalg.norm(p[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1).min(1)


def _far_pixels(layers, image_size, min_px, rng):
    """(K, 2) integer pixels (x, y) at least min_px from every point of the layers and every bone, below the legend."""
    W, H = image_size
    cand = np.stack([rng.integers(0, W, 4000), rng.integers(300, H, 4000)], 1).astype(np.float64)
    pts = np.concatenate([v[np.isfinite(v).all(-1)] for v in layers.values()])
    d_pts = np.linalg.norm(cand[:, None] - pts[None], axis=-1).min(1)
    final = final_points(layers)
    bones = skeleton.BONES[np.isfinite(final[skeleton.BONES]).all((1, 2))]
    d_bones = _segment_distance(cand, final[bones[:, 0]], final[bones[:, 1]])
    return cand[(d_pts > min_px) & (d_bones > min_px)].astype(int)


# ----------------------------------------------------------------------------------------------------------------
# The video
# ----------------------------------------------------------------------------------------------------------------


def test_video_has_every_frame_at_the_build_rate(built, sequence):
    frames, cam, _ = sequence
    cap = cv2.VideoCapture(str(built / "pictures" / "S1" / "Walking 1" / f"video_{CAM}.mp4"))
    try:
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames) == 30
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)  # 50 fps video, every 5th frame
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        assert size == cam.image_size
    finally:
        cap.release()


def test_video_overlay_lands_on_the_reprojected_keypoints(built, sequence, rng):
    frames, cam, layers = sequence
    t = 12
    cap = cv2.VideoCapture(str(built / "pictures" / "S1" / "Walking 1" / f"video_{CAM}.mp4"))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, t)
        ok, bgr = cap.read()
    finally:
        cap.release()
    assert ok
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.int64)
    uv = layers["triangulated"][t, LIMBS]  # (8, 2)
    assert np.isfinite(uv).all()
    col, row = np.rint(uv).astype(int).T
    blue = COLOURS["triangulated"].astype(np.int64)
    err = np.abs(img[row, col] - blue).max(-1)  # (8,) after MPEG-4 compression
    assert (err < 40).all(), (img[row, col], blue)
    far = _far_pixels({k: v[t] for k, v in layers.items()}, cam.image_size, 40, rng)
    assert len(far) > 500
    bg = np.abs(img[far[:, 1], far[:, 0]] - np.array(NEUTRAL_RGB)).max(-1)
    assert np.percentile(bg, 99) < 12  # neutral away from the skeleton (the synthetic capture has no pixels)
    assert np.abs(img[row, col] - np.array(NEUTRAL_RGB)).max(-1).min() > 60


# ----------------------------------------------------------------------------------------------------------------
# The contact sheet
# ----------------------------------------------------------------------------------------------------------------


def test_contact_sheet_layout_and_overlay(built, sequence):
    frames, cam, layers = sequence
    pick = np.unique(np.linspace(0, len(frames) - 1, SHEET_FRAMES).round().astype(int))
    assert len(pick) == SHEET_FRAMES
    fig, tiles = sheet_figure(cam, {k: v[pick] for k, v in layers.items()}, frames[pick], columns=4, title="x")
    assert [ax.get_title() for ax in tiles] == [f"frame {f}" for f in frames[pick]]
    boxes = np.array([ax.get_position().bounds for ax in tiles])  # (N, 4) x, y, w, h in figure fractions
    assert np.allclose(boxes[:, 2:], boxes[0, 2:], atol=1e-6)  # tiles of one size
    assert np.allclose(boxes[:4, 1], boxes[0, 1]) and (boxes[4:, 1] < boxes[0, 1] - boxes[0, 3]).all()  # 4 a row
    assert np.allclose(boxes[4:, 0], boxes[:2, 0])  # the second row starts under the first
    xlim, ylim = tiles[0].get_xlim(), tiles[0].get_ylim()
    assert all(ax.get_xlim() == xlim and ax.get_ylim() == ylim for ax in tiles)  # one window for all tiles
    assert ylim[0] > ylim[1]  # image rows downward
    fig.canvas.draw()
    canvas = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.int64)  # (H, W, 3)
    png = (imread(built / "pictures" / "S1" / "Walking 1" / f"sheet_{CAM}.png")[..., :3] * 255).round()
    assert png.shape == canvas.shape  # Agg truncates the figure size in pixels:
    assert np.abs(np.array(canvas.shape[:2]) - 100 * np.array([fig.get_figheight(), fig.get_figwidth()])).max() < 1
    assert np.abs(png - canvas).mean() < 0.5  # the stage wrote this figure
    blue = COLOURS["triangulated"]
    for n, ax in enumerate(tiles):
        uv = layers["triangulated"][pick[n], LIMBS]
        xy = ax.transData.transform(uv)  # (8, 2) display pixels, origin bottom left
        col, row = np.rint(xy[:, 0]).astype(int), np.rint(canvas.shape[0] - xy[:, 1]).astype(int)
        assert (np.abs(png[row, col] - blue).max(-1) < 30).all(), n
    x0, x1 = tiles[0].get_xlim()
    corner = tiles[0].transData.transform([[x0 + 0.02 * (x1 - x0), ylim[1] + 0.02 * (ylim[0] - ylim[1])]])[0]
    assert np.abs(png[round(canvas.shape[0] - corner[1]), round(corner[0])] - np.array(NEUTRAL_RGB)).max() < 3


def test_sheet_draws_images_under_the_points(sequence, rng):
    frames, cam, layers = sequence
    W, H = cam.image_size
    images = [np.full((H, W, 3), (200, 0, 200), np.uint8), None]
    fig, tiles = sheet_figure(cam, {k: v[:2] for k, v in layers.items()}, frames[:2], images=images, columns=2)
    fig.canvas.draw()
    canvas = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.int64)
    x0, x1 = tiles[0].get_xlim()
    y0 = tiles[0].get_ylim()[1]
    for ax, expected in zip(tiles, [(200, 0, 200), NEUTRAL_RGB]):
        xy = ax.transData.transform([[x0 + 3, y0 + 3]])[0]  # a corner of the window, away from the subject
        assert np.abs(canvas[round(canvas.shape[0] - xy[1]), round(xy[0])] - expected).max() < 3
    with pytest.raises(ValueError, match="expected 2 images .one per frame., got 1"):
        sheet_figure(cam, {k: v[:2] for k, v in layers.items()}, frames[:2], images=images[:1])


class ProjectingDetector:
    """A test detector for video sources: generated motion at the batch's frames projected into its camera."""

    name = "projecting"

    def describe(self):
        return {"name": self.name}

    def __call__(self, batch):
        assert batch.images is not None
        uv = batch.camera.project(_motion(batch.frames))
        return np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9)], -1)


def _motion(frames):
    return generate_motion("S1", "Greeting", np.asarray(frames) / 25.0, seed=3, center_xy_mm=(100, 550),
                           half_extent_xy_mm=(500, 500))


def _frame_colour(f):
    return np.array([70 + 30 * f, 200, 170 - 20 * f])


def test_a_video_source_is_drawn_under_the_overlay(tmp_path, rng):
    """A rig of flat-coloured videos (one colour per frame): the sheet, the video and the views show the pixels."""
    rig = h36m_rig("S1")
    save_rig(rig, tmp_path / "rig.json")
    trial = tmp_path / "captures" / "trial 1"
    trial.mkdir(parents=True)
    n = 6
    for cam in rig:
        w, h = cam.image_size
        out = cv2.VideoWriter(str(trial / f"{cam.name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
        for f in range(n):
            out.write(np.broadcast_to(_frame_colour(f)[::-1], (h, w, 3)).astype(np.uint8))  # BGR
        out.release()
    data = ["data=rig", f"data.root={tmp_path / 'captures'}", f"data.calibration={tmp_path / 'rig.json'}"]
    cfg = _compose(*data, f"build.dir={tmp_path / 'build'}", "stage=detect")
    OmegaConf.set_struct(cfg, False)
    cfg.detector = OmegaConf.create({"_target_": "test_figures.ProjectingDetector"})
    run_stage(cfg)
    cfg.stage = "triangulate"
    run_stage(cfg)
    from build_h3wb.stages.pictures import run

    out = run(_compose(*data, f"build.dir={tmp_path / 'build'}", "stage=pictures", "pictures.subject=subject",
                       "pictures.sequence=trial 1", "pictures.frame=2", "pictures.sheet=true", "pictures.video=true",
                       "pictures.sheet_frames=3", f"pictures.camera={CAM}"))
    assert set(out) == {"views", "skeleton_3d", "sheet", "video"}
    cam = rig[CAM]
    cap = cv2.VideoCapture(out["video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    with h5py.File(tmp_path / "build" / "triangulate" / "subject" / "trial 1.h5") as f:
        kp = f["keypoints_3d"][:].astype(np.float64)
    for f in range(n):
        ok, bgr = cap.read()
        assert ok
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.int64)
        layers = {"triangulated": cam.project(kp[f]), "detected": cam.project(_motion([f])[0])}
        far = _far_pixels(layers, cam.image_size, 40, rng)
        assert np.percentile(np.abs(img[far[:, 1], far[:, 0]] - _frame_colour(f)).max(-1), 99) < 12  # the frame
        col, row = np.rint(layers["triangulated"][LIMBS]).astype(int).T
        assert (np.abs(img[row, col] - COLOURS["triangulated"]).max(-1) < 40).all()  # the overlay on top
    cap.release()
    for what, frames in (("sheet", (0, 2, 5)), ("views", (2,))):
        png = (imread(out[what])[..., :3] * 255).round().astype(np.int64)
        for f in range(n):
            share = (np.abs(png - _frame_colour(f)).max(-1) < 12).mean()
            assert (share > 0.01) == (f in frames), (what, f, share)


# ----------------------------------------------------------------------------------------------------------------
# The building blocks
# ----------------------------------------------------------------------------------------------------------------


def test_camera_layers_split_the_reprojection_by_provenance(rng):
    cam = h36m_rig("S1")[0]
    kp3d = rng.normal([0, 0, 1000], 300, size=(5, J, 3))  # (T, J, 3) in front of every camera's capture volume
    det = np.concatenate([cam.project(kp3d), rng.random((5, J, 1))], -1)
    prov = rng.integers(0, 3, size=(5, J)).astype(np.uint8)
    layers = camera_layers(cam, det, kp3d, prov)
    proj = cam.project(kp3d)
    for code, name in enumerate(("triangulated", "completed", "refined")):
        assert np.array_equal(np.isfinite(layers[name][..., 0]), prov == code)
        assert np.allclose(layers[name][prov == code], proj[prov == code])
    assert np.allclose(final_points(layers), proj)
    with pytest.raises(ValueError, match="expected detections"):
        camera_layers(cam, det[:, :10], kp3d, prov)


def test_overlay_draws_markers_on_the_image_and_leaves_the_rest(rng):
    image = rng.integers(0, 256, size=(301, 401, 3), dtype=np.uint8)
    uv = np.full((J, 2), np.nan)
    uv[LIMBS] = rng.uniform([40, 40], [360, 260], size=(len(LIMBS), 2))
    det = uv + 1.3
    layers = {"detected": det, "triangulated": uv, "completed": np.full((J, 2), np.nan),
              "refined": np.full((J, 2), np.nan)}
    out = overlay(image, layers)
    assert out.shape == image.shape and out.dtype == np.uint8
    col, row = np.rint(uv[LIMBS]).astype(int).T
    assert (out[row, col] == COLOURS["triangulated"]).all()
    far = _far_pixels(layers, (401, 301), 3 * overlay_radius((401, 301)), rng)
    far = far[far[:, 1] < 301]
    assert np.array_equal(out[far[:, 1], far[:, 0]], image[far[:, 1], far[:, 0]])  # the image shows beneath
    assert not np.array_equal(out, overlay(image, layers, label="frame 5"))  # a label and legend are drawn
    with pytest.raises(ValueError, match="uint8 RGB"):
        overlay(image.astype(np.float32), layers)


def test_marker_stamps_and_window():
    for marker in (m for _, m in LAYER_STYLE.values()):
        stamp = marker_stamp(marker, 4)
        assert stamp.shape[1] == 2 and np.abs(stamp).max() <= 4 and len(stamp) > 4
        assert (stamp == 0).all(1).any()  # the centre pixel is painted
    with pytest.raises(ValueError, match="unknown marker"):
        marker_stamp("*", 3)
    pts = np.array([[100.0, 200.0], [300.0, 600.0], [np.nan, 5.0]])
    assert subject_window(pts, (1000, 1000), margin=0.1) == (60, 160, 340, 640)
    assert subject_window(pts, (320, 620), margin=0.1) == (60, 160, 320, 620)  # clipped
    assert subject_window(np.full((3, 2), np.nan), (640, 480)) == (0, 0, 640, 480)


def test_write_video_pads_odd_sizes_and_rejects_bad_frames(tmp_path):
    frames = [np.full((21, 31, 3), (200, 30, 30), np.uint8) for _ in range(3)]
    n = write_video(tmp_path / "v.mp4", iter(frames), fps=7.5)
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert n == 3 and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.5)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (32, 22)
    cap.release()
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", iter([]), fps=10)
    with pytest.raises(ValueError, match="like the first frame"):
        write_video(tmp_path / "bad.mp4", iter([frames[0], frames[0][:10]]), fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # nothing half-written is left


def test_pinhole_camera_and_detection_box():
    cam = pinhole_camera(640, 480)
    assert cam.K[0, 0] == cam.K[1, 1] == 640 and cam.image_size == (640, 480)
    assert np.allclose(cam.project(np.array([0.0, 0.0, 1000.0])), [320, 240])
    kp = np.full((J, 3), np.nan)
    kp[:2] = [[100, 50, 0.9], [300, 450, 0.8]]
    assert detection_box(kp, (640, 480), margin=0.1) == (80, 10, 320, 480)
    with pytest.raises(ValueError, match="no detected keypoint"):
        detection_box(np.full((J, 3), np.nan), (640, 480))


def test_stage_settings_errors(built):
    from build_h3wb.stages.pictures import run

    base = [f"build.dir={built}", "stage=pictures", *SMALL]
    with pytest.raises(ValueError, match="nothing to draw"):
        run(_compose(*base, "pictures.views=false"))
    with pytest.raises(ValueError, match=f"its cameras are .*{CAM}"):
        run(_compose(*base, "pictures.views=false", "pictures.sheet=true", "pictures.camera=nope"))
    with pytest.raises(ValueError, match="sheet_frames"):
        run(_compose(*base, "pictures.sheet_frames=0"))
    with pytest.raises(ValueError, match="data settings of this run hold no sequence"):
        run(_compose(*base[:2], "data.subjects=[S1]", "data.actions=[Phoning]", "data.duration_s=3"))


# ----------------------------------------------------------------------------------------------------------------
# A photograph through the detector and the lifter
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """The astronaut as a JPEG, and a small I2D lifter trained on synthetic poses seen by the Human3.6M cameras."""
    d = tmp_path_factory.mktemp("photo")
    jpg = d / "astronaut.jpg"
    assert cv2.imwrite(str(jpg), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return d, jpg, train_small_lifter(d / "model.pt")


@pytest.fixture(scope="module")
def astronaut_detection(photo):
    """(J, 3) MediaPipe's detection on the JPEG, as the stage reads it."""
    _, jpg, _ = photo
    image = cv2.cvtColor(cv2.imread(str(jpg)), cv2.COLOR_BGR2RGB)
    with MediaPipeHolisticDetector() as det:
        batch = FrameBatch(Recording("image", "image", "astronaut"), pinhole_camera(512, 512), np.zeros(1), image[None])
        return image, check_detections(det(batch), 1, det.name)[0, 0]


def test_photo_four_panels_from_the_command_line(photo, astronaut_detection):
    import json

    d, jpg, lifter = photo
    image, kp = astronaut_detection
    run_cli(d, "stage=pictures", f"pictures.image={jpg}", "detector=mediapipe", f"pictures.lifter={lifter}")
    png = d / "pictures" / "image_astronaut.png"
    assert imread(png).shape[:2] == (560, 2000)
    out = json.loads((d / "pictures" / "image_astronaut.json").read_text())
    got = np.array([[np.nan if v is None else v for v in row] for row in out["keypoints_2d"]])
    assert np.array_equal(np.isfinite(got), np.isfinite(kp)) and np.allclose(got, kp, equal_nan=True, atol=1e-3)
    assert out["box"] == list(detection_box(kp, (512, 512), 0.15))
    pred = np.array(out["keypoints_3d_mm"], dtype=np.float64)
    assert pred.shape == (J, 3) and np.isfinite(pred).all()
    assert np.allclose(skeleton.root(pred), 0, atol=1e-2)  # root-relative
    hidden = np.array(out["hidden"])
    assert hidden[~np.isfinite(kp[:, 2])].all() and 40 < (~hidden).sum() < J  # face and body given, legs hidden


def test_photo_panels_show_the_detection_in_crop_coordinates(photo, astronaut_detection):
    _, _, lifter = photo
    image, kp = astronaut_detection
    model, _, stats, _ = load_lifter(lifter)
    hidden, centred, pred = lift_detection(kp, model, stats, min_score=0.3)
    x0, y0, x1, y1 = detection_box(kp, (512, 512), 0.15)
    kp_crop = kp.copy()
    kp_crop[:, :2] -= (x0, y0)
    fig, axes = image_figure(image[y0:y1, x0:x1], kp_crop, hidden, centred, stats.mean_2d, pred, title="t")
    assert len(axes) == 4 and len(fig.axes) == 4 and axes[3].name == "3d"
    assert axes[0].get_images()[0].get_array().shape == (y1 - y0, x1 - x0, 3)
    shown = {c.get_gid(): c.get_offsets() for c in axes[1].collections if c.get_gid()}
    found = np.isfinite(kp).all(-1)
    assert np.allclose(shown["visible"], kp[found & ~hidden, :2] - (x0, y0))
    assert np.allclose(shown["low_score"].reshape(-1, 2), kp[found & hidden, :2] - (x0, y0))
    assert len(shown["visible"]) + len(shown["low_score"]) == found.sum()
    inputs = {c.get_gid(): c.get_offsets() for c in axes[2].collections if c.get_gid()}
    assert np.allclose(inputs["visible"], centred[~hidden])  # panel 3: the lifter's centred, scaled input
    assert np.allclose(inputs["hidden"], stats.mean_2d[hidden])  # hidden: input 0 = the training mean
    vis_centre = centred[~hidden][:, 1].mean()
    assert abs(vis_centre) < 2  # body-scale units, not pixels


def test_photo_errors(photo, tmp_path):
    from build_h3wb.stages.pictures import run

    d, jpg, lifter = photo
    base = [f"build.dir={tmp_path}", "stage=pictures", "detector=mediapipe"]
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read this file as an image"):
        run(_compose(*base, f"pictures.image={text}", f"pictures.lifter={lifter}"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        run(_compose(*base, f"pictures.image={tmp_path / 'missing.jpg'}", f"pictures.lifter={lifter}"))
    with pytest.raises(FileNotFoundError, match=r"lifter/I2Dto3D/model.pt does not exist: .*stage=lifter"):
        run(_compose(*base, f"pictures.image={jpg}"))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    with pytest.raises(ValueError, match="nobody detected by detector 'mediapipe'"):
        run(_compose(*base, f"pictures.image={blank}", f"pictures.lifter={lifter}"))
    assert not (tmp_path / "pictures").exists()
