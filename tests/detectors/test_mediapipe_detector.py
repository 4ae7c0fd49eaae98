"""MediaPipe Holistic detector: mapping into the whole-body layout, checked on a real photograph.

Ground truth on ``skimage.data.astronaut()`` (512 x 512, Eileen Collins facing the camera, upper body) was read off
zoomed crops of the image: pixel coordinates, x right, y down. "Left" and "right" are the subject's own.
"""

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="the mediapipe extra")  # CI requires it (conftest: BUILD_H3WB_ALL_DETECTORS)
import skimage.data
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from build_h3wb import skeleton
from build_h3wb.config import register_configs
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.mediapipe import (
    FACE_MESH_68,
    POSE_TO_COCO,
    MediaPipeHolisticDetector,
    _landmarks,
    face_facing_cos,
    holistic_to_wholebody,
    person_region,
)
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.sources.base import FrameBatch, Recording

CONF = Path(__file__).resolve().parents[2] / "conf"
J = skeleton.NUM_KEYPOINTS
FACE = skeleton.PARTS["face"]
R = skeleton.FACE_REGIONS
idx = skeleton.index

# Read off the image (see the module docstring); the eye centres are the iris centres.
TRUTH = {
    "nose_tip": (222.5, 127.0),
    "right_eye": (203.5, 101.5),  # image left
    "left_eye": (247.0, 102.5),  # image right
    "mouth_right": (203.0, 140.0),
    "mouth_left": (244.0, 141.0),
    "chin": (220.0, 178.0),
}


RIG = h36m_rig("S1")


def _batch(images, frames=None, view=0):
    frames = np.arange(len(images)) if frames is None else np.asarray(frames)
    return FrameBatch(Recording("S1", "Posing", "Posing 1"), RIG[view], frames, images)


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def detector():
    with MediaPipeHolisticDetector() as det:
        yield det


@pytest.fixture(scope="module")
def detections(detector, astronaut):
    """(2, J, 3): the astronaut and its horizontally flipped copy."""
    return detector(_batch(np.stack([astronaut, astronaut[:, ::-1]])))


def _dist(p, q):
    return float(np.hypot(p[0] - q[0], p[1] - q[1]))


def test_output_shape_dtype_and_missing_convention(detections):
    assert detections.shape == (2, J, 3) and detections.dtype == np.float32
    nan = np.isnan(detections)
    assert (nan.any(-1) == nan.all(-1)).all()  # missing means NaN in x, y and score together
    found = ~nan[..., 0]
    assert ((detections[..., 2][found] > 0) & (detections[..., 2][found] <= 1)).all()
    xy = detections[..., :2][found]
    assert (xy >= 0).all() and (xy <= 512).all()
    np.testing.assert_array_equal(check_detections(detections, 2, "mediapipe")[:, 0], detections)


def test_face_lands_on_the_astronauts_face(detections):
    f = detections[0, FACE]  # (68, 3) iBUG order
    assert np.isfinite(f).all()
    tol = 4.0  # px; a wrong mesh index or a swapped side is off by 5-45 px
    assert _dist(f[R["nose_bridge"][-1], :2], TRUTH["nose_tip"]) < tol
    assert _dist(f[list(R["right_eye"]), :2].mean(0), TRUTH["right_eye"]) < tol
    assert _dist(f[list(R["left_eye"]), :2].mean(0), TRUTH["left_eye"]) < tol
    assert _dist(f[R["mouth_outer"][0], :2], TRUTH["mouth_right"]) < tol
    assert _dist(f[R["mouth_outer"][6], :2], TRUTH["mouth_left"]) < tol
    assert _dist(f[R["jaw"][8], :2], TRUTH["chin"]) < tol
    # layout: the subject's right on the image's left; brows above eyes above nose tip above mouth above chin
    assert f[R["jaw"][0], 0] < f[R["nose_bridge"][-1], 0] < f[R["jaw"][-1], 0]
    assert f[list(R["right_brow"]), 0].max() < f[list(R["left_brow"]), 0].min()
    assert f[list(R["right_eye"]), 0].max() < f[list(R["left_eye"]), 0].min()
    eyes_y = f[list(R["right_eye"]) + list(R["left_eye"]), 1]
    assert f[list(R["right_brow"]) + list(R["left_brow"]), 1].max() < eyes_y.min()
    assert eyes_y.max() < f[R["nose_bridge"][-1], 1] < f[list(R["mouth_outer"]), 1].min()
    assert f[list(R["mouth_outer"]), 1].max() < f[R["jaw"][8], 1]
    # the order within each contour (iBUG: from the subject's right to left, top to bottom)
    x, y = f[:, 0], f[:, 1]
    increasing = {
        "x": [R["right_brow"], R["left_brow"], R["nose_lower"], R["right_eye"][:4], R["left_eye"][:4],
              R["mouth_outer"][:7], R["mouth_inner"][:5]],
        "y": [R["jaw"][:9], R["nose_bridge"]],
    }
    decreasing = {"x": [R["right_eye"][3:], R["left_eye"][3:], R["mouth_outer"][6:], R["mouth_inner"][4:]],
                  "y": [R["jaw"][8:]]}
    for coord, arr in (("x", x), ("y", y)):
        for r in increasing[coord]:
            assert (np.diff(arr[list(r)]) > 0).all(), (coord, r)
        for r in decreasing[coord]:
            assert (np.diff(arr[list(r)]) < 0).all(), (coord, r)
    # frontal face: every landmark is trusted, the centre of the face fully
    assert (f[:, 2] >= 0.5).all()
    assert (f[list(R["nose_bridge"]) + list(R["mouth_inner"]), 2] > 0.9).all()


def test_body_keypoints_on_the_right_places(detections):
    k = detections[0]
    # head: nose and ears from the pose landmarks, the eyes from the face mesh (the pose model alone is ~10 px off)
    assert _dist(k[idx("nose"), :2], TRUTH["nose_tip"]) < 6
    assert _dist(k[idx("right_eye"), :2], TRUTH["right_eye"]) < 4
    assert _dist(k[idx("left_eye"), :2], TRUTH["left_eye"]) < 4
    assert k[idx("right_ear"), 0] < k[idx("right_eye"), 0] < k[idx("nose"), 0] < k[idx("left_eye"), 0] < k[
        idx("left_ear"), 0]
    assert (k[[idx(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")], 2] > 0.9).all()
    # shoulders: well below the chin, the subject's left on the image's right, confident
    ls, rs = k[idx("left_shoulder")], k[idx("right_shoulder")]
    assert 270 < ls[0] < 340 and 80 < rs[0] < 150
    assert 200 < ls[1] < 290 and 200 < rs[1] < 290
    assert ls[2] > 0.9 and rs[2] > 0.9
    # the legs are out of the frame: missing; hips at the bottom edge: missing or low score
    legs = [idx(f"{s}_{n}") for s in ("left", "right") for n in ("knee", "ankle")]
    assert np.isnan(k[legs + list(range(skeleton.PARTS["feet"].start, skeleton.PARTS["feet"].stop))]).all()
    hips = k[[idx("left_hip"), idx("right_hip")], 2]
    assert (np.isnan(hips) | (hips < 0.3)).all()
    # the gloved hands are hidden by the helmet and the frame's edge: Holistic finds neither
    assert np.isnan(k[skeleton.PARTS["hands"]]).all()


def test_flipped_copy_mirrors_the_detections(detections):
    a, b = detections
    # the mirror image shows a person whose left eye is the original's right eye mirrored: still on the image's
    # right of a face that looks at the camera
    for side, other in (("left", "right"), ("right", "left")):
        assert abs(b[idx(f"{side}_eye"), 0] - (512 - a[idx(f"{other}_eye"), 0])) < 8
        assert abs(b[FACE][R[f"{side}_eye"][0], 0] - (512 - a[FACE][R[f"{other}_eye"][3], 0])) < 5  # eye corners
    assert b[idx("left_eye"), 0] > b[idx("right_eye"), 0]
    mirrored = b[skeleton.FLIP_INDEX].copy()
    mirrored[:, 0] = 512 - mirrored[:, 0]
    err = np.hypot(*(a[:, :2] - mirrored[:, :2]).T)  # (J,) px
    assert np.nanmax(err[FACE]) < 7
    assert np.nanmax(err[: idx("left_shoulder")]) < 8  # nose, eyes, ears
    assert np.nanmax(err[[idx("left_shoulder"), idx("right_shoulder")]]) < 20
    np.testing.assert_array_equal(np.isnan(a[:, 0]), np.isnan(mirrored[:, 0]))


def test_blank_image_gives_all_nan(detector):
    out = detector(_batch(np.full((1, 240, 320, 3), 200, np.uint8)))
    assert out.shape == (1, J, 3) and np.isnan(out).all()


def test_bad_batches_raise(detector, astronaut):
    with pytest.raises(ValueError, match="batch.images"):
        detector(_batch(None, frames=[0]))
    with pytest.raises(ValueError, match=r"expected \(B, H, W, 3\) uint8 RGB"):
        detector(_batch(astronaut[None].astype(np.float32)))
    with pytest.raises(ValueError, match=r"expected \(B, H, W, 3\) uint8 RGB"):
        detector(_batch(astronaut[None, ..., 0]))


def test_mapping_of_pose_and_hands():
    rng = np.random.default_rng(0)
    pose = np.column_stack([rng.uniform(0.1, 0.9, (33, 3)), rng.uniform(0, 1, 33)])  # (33, 4)
    left, right = rng.uniform(0.1, 0.5, (21, 3)), rng.uniform(0.5, 0.9, (21, 3))
    out = holistic_to_wholebody(pose, None, left, right, width=640, height=480)
    assert out.shape == (J, 3) and out.dtype == np.float32
    for name, p in POSE_TO_COCO.items():
        np.testing.assert_allclose(out[idx(name)], [pose[p, 0] * 640, pose[p, 1] * 480, pose[p, 3]], rtol=1e-6)
    assert np.isnan(out[[idx("left_small_toe"), idx("right_small_toe")]]).all()  # no MediaPipe counterpart
    for side, hand in (("left", left), ("right", right)):
        part = out[skeleton.PARTS[f"{side}_hand"]]
        np.testing.assert_allclose(part[:, :2], hand[:, :2] * [640, 480], rtol=1e-6)
        np.testing.assert_allclose(part[:, 2], 0.5 + 0.5 * pose[POSE_TO_COCO[f"{side}_wrist"], 3], rtol=1e-6)
    assert np.isnan(out[FACE]).all()
    # landmarks MediaPipe extrapolates outside the image are missing; no pose: nothing at all
    pose[POSE_TO_COCO["left_knee"], :2] = [0.5, 1.4]
    assert np.isnan(holistic_to_wholebody(pose, None, None, None, 640, 480)[idx("left_knee")]).all()
    assert np.isnan(holistic_to_wholebody(None, None, None, None, 640, 480)).all()
    with pytest.raises(ValueError, match=r"expected shape \(21, 3\)"):
        holistic_to_wholebody(pose, None, left[:20], None, 640, 480)


def test_face_table_matches_the_skeleton():
    flat = [i for region in R for i in FACE_MESH_68[region]]
    assert len(flat) == FACE.stop - FACE.start and len(set(flat)) == len(flat)
    assert all(0 <= i < 468 for i in flat)


def test_face_turned_away_scores_low(detector, astronaut):
    res = detector._holistic.process(astronaut)
    face = _landmarks(res.face_landmarks, ("x", "y", "z")) * 512  # (468, 3) px
    frontal = face_facing_cos(face)
    assert (frontal > -0.1).all()
    # turn the head 60 degrees about the vertical axis: the subject's right side turns away from the camera
    a = np.deg2rad(60)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    turned = face_facing_cos((face - face.mean(0)) @ rot.T)
    jaw = np.array(R["jaw"])
    assert (turned[jaw[:5]] < -0.3).all()  # far jaw line: facing weight 0.1-0.3, below min_score 0.3
    assert (turned[jaw[-5:]] > 0.5).all()  # near jaw line faces the camera
    assert (turned[list(R["left_eye"])] > turned[list(R["right_eye"])].max()).all()


def test_tracking_mode_restarts_per_view(astronaut):
    with MediaPipeHolisticDetector(static_image_mode=False) as det:
        holistic = det._holistic
        resets = []
        reset = holistic.reset
        holistic.reset = lambda: (resets.append(1), reset())[1]
        a = det(_batch(astronaut[None], frames=[0], view=0))
        det(_batch(astronaut[None], frames=[5], view=0))  # the next frame of the same view: keeps tracking
        b = det(_batch(astronaut[None], frames=[5], view=1))  # another camera: starts afresh
        det(_batch(astronaut[None], frames=[0], view=1))  # back in time: starts afresh
    assert len(resets) == 3
    assert np.nanmax(np.abs(a[0, FACE, :2] - b[0, FACE, :2])) < 3


def test_bad_settings_and_offline_heavy_model(monkeypatch):
    with pytest.raises(ValueError, match="model_complexity"):
        MediaPipeHolisticDetector(model_complexity=3)
    with pytest.raises(ValueError, match="min_detection_confidence"):
        MediaPipeHolisticDetector(min_detection_confidence=1.5)
    from mediapipe.python.solutions import download_utils

    def offline(path):
        raise URLError("no network")

    monkeypatch.setattr(download_utils, "download_oss_model", offline)
    with pytest.raises(RuntimeError, match="pose_landmark_heavy.tflite"):
        MediaPipeHolisticDetector(model_complexity=2)


def test_close_is_idempotent(astronaut):
    det = MediaPipeHolisticDetector()
    det.close()
    det.close()
    with pytest.raises(RuntimeError, match="closed"):
        det(_batch(astronaut[None]))


def test_composed_config_builds_the_detector():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["detector=mediapipe", "detector.refine_face_landmarks=true"])
    det = instantiate(cfg.detector, _convert_="all")
    try:
        assert isinstance(det, MediaPipeHolisticDetector) and det.name == "mediapipe"
        d = det.describe()
        assert d["mediapipe_version"] == "0.10.21" and d["model_complexity"] == 1
        assert d["refine_face_landmarks"] is True and d["static_image_mode"] is True
    finally:
        det.close()


def test_two_people_are_found_by_painting_over_the_first(astronaut):
    """Two astronauts side by side (the photograph and its mirror image, on a 1024 x 512 canvas)."""
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # (512, 1024, 3)
    with MediaPipeHolisticDetector(max_people=3) as det:
        out = det(_batch(pair[None]))
        assert det.describe()["max_people"] == 3
    assert out.shape == (1, 3, J, 3)
    found = np.isfinite(out[0, :, :, 0]).any(-1)
    assert found[:2].all()  # both people, and no third (the mask leaves nobody to find)
    nose = out[0, :, idx("nose"), 0]
    assert sorted(nose[:2] < 512) == [False, True]  # one in each half, whichever came first
    assert check_detections(out, 1, "mediapipe").shape == (1, 3, J, 3)
    assert not found[2]
    with MediaPipeHolisticDetector(max_people=1) as det:
        assert det(_batch(pair[None])).shape == (1, J, 3)
    with pytest.raises(ValueError, match="max_people > 1 needs"):
        MediaPipeHolisticDetector(max_people=2, static_image_mode=False)
    with pytest.raises(ValueError, match="max_people"):
        MediaPipeHolisticDetector(max_people=0)


def test_person_region_masks_the_person():
    kp = np.full((J, 3), np.nan)
    kp[:17] = [[100 + 2 * j, 50 + 5 * j, 0.9] for j in range(17)]
    region = person_region(kp, None, (200, 300))  # no segmentation: the keypoints' box, grown
    assert region.shape == (200, 300) and region[80, 115] and not region[10, 250]
    mask = np.zeros((200, 300), np.float32)
    mask[20:40, 200:220] = 1.0
    seg = person_region(kp, mask, (200, 300))
    assert seg[30, 210] and not seg[80, 115]
