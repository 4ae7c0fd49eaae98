"""Any calibrated rig: synchronised videos or image folders + an anipose calibration, through detect and triangulate."""

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from build_h3wb import skeleton
from build_h3wb.config import register_configs
from build_h3wb.geometry.calibration_formats import load_calibration, save_anipose_toml
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.sources.rig import RigSource
from build_h3wb.stages import run_stage
from build_h3wb.synthetic.motion import generate_motion

CONF = Path(__file__).resolve().parents[2] / "conf"
register_configs()
N = 8


def motion(frames):
    return generate_motion("S1", "Greeting", np.asarray(frames) / 25.0, seed=3, center_xy_mm=(100, 550),
                           half_extent_xy_mm=(500, 500))


def bystander(frames):
    return generate_motion("S5", "Waiting", np.asarray(frames) / 25.0, seed=4, center_xy_mm=(1000, 1400),
                           half_extent_xy_mm=(100, 100))


class ProjectingDetector:
    """A test detector: the generated motion at the batch's frame numbers, projected into its camera, +-1 px.

    With ``bystander=True`` a second person is detected too, scoring higher and listed first in every other frame.
    """

    name = "projecting"

    def __init__(self, bystander: bool = False):
        self.bystander = bystander

    def describe(self):
        return {"name": self.name, "bystander": self.bystander}

    def _detect(self, cam, X, seed):
        uv = cam.project(X) + np.random.default_rng(seed).normal(0, 1.0, X.shape[:-1] + (2,))
        return np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9)], -1)

    def __call__(self, batch):
        assert batch.images is not None and batch.images.shape[1:3] == batch.camera.image_size[::-1]
        subject = self._detect(batch.camera, motion(batch.frames), int(batch.frames[0]))
        if not self.bystander:
            return subject
        other = self._detect(batch.camera, bystander(batch.frames), 1000 + int(batch.frames[0]))
        other[..., 2] = 0.95
        first = (batch.frames % 2 == 0)[:, None, None]
        return np.stack([np.where(first, other, subject), np.where(first, subject, other)], axis=1)


def detect_config(root, calibration, build, **detector):
    """``stage=detect`` on a rig capture with the projecting test detector."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "data=rig", f"data.root={root}", f"data.calibration={calibration}", f"build.dir={build}", "stage=detect"])
    OmegaConf.set_struct(cfg, False)
    cfg.detector = OmegaConf.create({"_target_": "test_rig_source.ProjectingDetector", **detector})
    return cfg


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    rig = h36m_rig("S1")
    save_anipose_toml(rig, root / "calibration.toml", approximate_distortion=True)  # the rig a user would have
    trial = root / "captures" / "trial 1"
    trial.mkdir(parents=True)
    for cam in rig:
        w, h = cam.image_size
        if cam.name == "58860488":  # this camera as an image folder
            (trial / cam.name).mkdir()
            for f in range(N):
                cv2.imwrite(str(trial / cam.name / f"{f:06d}.jpg"), np.zeros((h, w, 3), np.uint8))
            continue
        out = cv2.VideoWriter(str(trial / f"{cam.name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
        for _ in range(N):
            out.write(np.zeros((h, w, 3), np.uint8))
        out.release()
    return root


def test_rig_source_finds_sequences_views_and_calibration(capture):
    src = RigSource(str(capture / "captures"), str(capture / "calibration.toml"), stride=2)
    (seq,) = src.sequences()
    assert (seq.subject, seq.action, seq.name) == ("subject", "trial", "trial 1")
    assert src.rig(seq).names == h36m_rig("S1").names
    assert src.view_frames(seq, "58860488").tolist() == [0, 2, 4, 6]
    assert src.ground_truth(seq, np.arange(3)) is None
    # a single recording given directly
    (only,) = RigSource(str(capture / "captures" / "trial 1"), str(capture / "calibration.toml")).sequences()
    assert only.name == "trial 1"
    with pytest.raises(FileNotFoundError, match="not found"):
        RigSource(str(capture / "captures"), str(capture / "calibration.toml"), sequences=["trial 9"]).sequences()
    with pytest.raises(ValueError, match="not in"):
        RigSource(str(capture / "captures"), str(capture / "calibration.toml"), cameras=["cam9"]).sequences()


def test_detect_and_triangulate_a_rig_capture(capture, tmp_path):
    cfg = detect_config(capture / "captures", capture / "calibration.toml", tmp_path)
    run_stage(cfg)
    cfg.stage = "triangulate"
    run_stage(cfg)
    with h5py.File(tmp_path / "triangulate" / "subject" / "trial 1.h5") as f:
        frames, X = f["frames"][:], f["keypoints_3d"][:]
    assert frames.tolist() == list(range(N))
    err = np.linalg.norm(X - motion(frames), axis=-1)
    # the calibration went through anipose's format (OpenCV distortion fitted to H36M's): still a few mm
    assert np.isfinite(err).mean() > 0.99 and np.nanmedian(err) < 5
    assert load_calibration(capture / "calibration.toml").names == h36m_rig("S1").names
    assert skeleton.NUM_KEYPOINTS == X.shape[1]


def test_a_truncated_video_keeps_its_frames_before_the_damage(capture, tmp_path):
    rig = h36m_rig("S1")
    trial = tmp_path / "captures" / "trial 2"
    trial.mkdir(parents=True)
    n = 20
    for cam in rig:
        w, h = cam.image_size
        path = trial / f"{cam.name}.avi"
        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
        for f in range(n):
            out.write(np.full((h, w, 3), 5 * f, np.uint8))
        out.release()
        if cam.name == "55011271":  # a copy that stopped half-way
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    run_stage(detect_config(tmp_path / "captures", capture / "calibration.toml", tmp_path / "build"))
    import json

    counts = json.loads((tmp_path / "build" / "detect" / "manifest.json").read_text())["counts"]
    assert [t["video"] for t in counts["truncated_videos"]] == ["subject/trial 2.55011271"]
    assert "cannot be decoded" in counts["truncated_videos"][0]["reason"]
    (mismatch,) = counts["frame_count_mismatches"]
    kept = mismatch["frames_per_view"]["55011271"]
    assert 0 < kept < n and mismatch["frames_per_view"]["54138969"] == n
    with h5py.File(tmp_path / "build" / "detect" / "subject" / "trial 2.h5") as f:
        kp = f["keypoints"][:]
        assert f["frames"][:].tolist() == list(range(n))
    view = rig.names.index("55011271")
    assert np.isfinite(kp[view, :kept, 0, 0]).all() and np.isnan(kp[view, kept:]).all()


def test_the_subject_is_kept_when_a_bystander_is_detected_too(capture, tmp_path):
    run_stage(detect_config(capture / "captures", capture / "calibration.toml", tmp_path, bystander=True))
    import json

    counts = json.loads((tmp_path / "detect" / "manifest.json").read_text())["counts"]
    with h5py.File(tmp_path / "detect" / "subject" / "trial 1.h5") as f:
        kp, choice, frames = f["keypoints"][:], f["choice"][:], f["frames"][:]
    with h5py.File(tmp_path / "detect" / "videos" / "subject" / "trial 1" / "54138969.h5") as f:
        assert f["candidates"].shape[1] == 2  # both people are stored per video
    # the detector lists the (higher-scoring) bystander first in even frames: the subject is chosen anyway
    np.testing.assert_array_equal(choice, np.broadcast_to(np.where(frames % 2 == 0, 1, 0), choice.shape))
    rig = h36m_rig("S1")
    for c, cam in enumerate(rig):
        assert np.nanmedian(np.linalg.norm(kp[c, ..., :2] - cam.project(motion(frames)), axis=-1)) < 3
    assert counts["subject_chosen_view_frames"] == 4 * N and counts["subject_choice_ambiguous_share"] < 0.5


def test_a_video_that_arrives_later_is_detected_and_downstream_notices(capture, tmp_path):
    import shutil

    trial = tmp_path / "captures" / "trial 1"
    shutil.copytree(capture / "captures" / "trial 1", trial)
    held = tmp_path / "held_back.mp4"
    shutil.move(trial / "54138969.mp4", held)
    cfg = detect_config(tmp_path / "captures", capture / "calibration.toml", tmp_path / "build")
    run_stage(cfg)
    import json

    manifest = tmp_path / "build" / "detect" / "manifest.json"
    assert [v["video"] for v in json.loads(manifest.read_text())["counts"]["failed_videos"]] == [
        "subject/trial 1.54138969"]
    cfg.stage = "triangulate"
    run_stage(cfg)
    shutil.move(held, trial / "54138969.mp4")  # the missing copy turns up
    cfg.stage = "detect"
    run_stage(cfg)
    counts = json.loads(manifest.read_text())["counts"]
    assert counts["failed_videos"] == [] and counts["this_run"]["computed"] == 1 and counts["assembled"] == 1
    cfg.stage = "triangulate"
    with pytest.raises(Exception, match="detect_assembly"):
        run_stage(cfg)  # not silently kept: the detections it was made from changed
    cfg.build.overwrite = True
    run_stage(cfg)
    with h5py.File(tmp_path / "build" / "triangulate" / "subject" / "trial 1.h5") as f:
        assert (f["num_views"][:] == 4).mean() > 0.9


def test_refine_correctors_run_on_each_views_video_frames(capture):
    import torch

    from build_h3wb.refine.corrector import CorrectorConfig, PartCorrector
    from build_h3wb.sources.synthetic import SyntheticSource
    from build_h3wb.stages.refine import correct_views

    src = RigSource(str(capture / "captures"), str(capture / "calibration.toml"))
    (seq,) = src.sequences()
    rig = src.rig(seq)
    frames = np.arange(0, N, 2)
    J = skeleton.NUM_KEYPOINTS
    det = np.stack([np.concatenate([cam.project(motion(frames)), np.full((len(frames), J, 1), 0.9)], -1)
                    for cam in rig]).astype(np.float32)  # as stored by detect
    torch.manual_seed(0)
    model = PartCorrector(CorrectorConfig(part="left_hand", crop_size=64, backbone="tiny"))
    out = correct_views(src, seq, rig, frames, det, {"left_hand": model}, batch_size=3)
    lh = skeleton.PARTS["left_hand"]
    # an untrained corrector (zero last layer) moves nothing and reports confidence 0.5; other parts untouched
    np.testing.assert_allclose(out[..., lh, :2], det[..., lh, :2], atol=1e-3)
    np.testing.assert_allclose(out[..., lh, 2], 0.5, atol=1e-6)
    others = np.r_[0 : lh.start, lh.stop : J]
    np.testing.assert_array_equal(out[..., others, :], det[..., others, :])
    synthetic = SyntheticSource(["S1"], ["Walking"], duration_s=1)
    (sseq,) = synthetic.sequences()
    with pytest.raises(ValueError, match="needs images"):
        correct_views(synthetic, sseq, synthetic.rig(sseq), synthetic.frames(sseq),
                      np.zeros((4, 2, J, 3)), {"left_hand": model})
