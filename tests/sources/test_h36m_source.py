"""The Human3.6M source on a tiny tree in the dataset's layout, made here: OpenCV-written videos and a CDF file."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cdflib.cdfwrite import CDF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from build_h3wb import skeleton
from build_h3wb.config import register_configs
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.sources.base import Recording
from build_h3wb.sources.h36m import MOCAP_TO_WHOLEBODY, H36MSource, canonical_action, mocap_to_wholebody, read_mocap
from build_h3wb.sources.video import FrameReader, VideoError
from build_h3wb.stages import run_stage
from build_h3wb.synthetic.motion import generate_motion

CONF = Path(__file__).resolve().parents[2] / "conf"
register_configs()
FRAMES = {"54138969": 23, "55011271": 23, "58860488": 23, "60457274": 18}  # one view is shorter
GREY_STEP = 11  # frame f is filled with grey level 11 * f (a frame-accurate decoding check; codec error < 5)


def write_video(path, n, size, fourcc="mp4v"):
    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 50.0, (w, h))
    assert out.isOpened()
    for f in range(n):
        out.write(np.full((h, w, 3), GREY_STEP * f, np.uint8))
    out.release()


def mocap_poses(n):
    """(n, 32, 3) mocap-like joints: the synthetic motion's shared joints, the others at a fixed offset."""
    X = generate_motion("S1", "Walking", np.arange(n) / 50.0, seed=0, center_xy_mm=(100, 550),
                        half_extent_xy_mm=(600, 600))
    pose = np.zeros((n, 32, 3))
    for i, name in MOCAP_TO_WHOLEBODY.items():
        pose[:, i] = X[:, skeleton.index(name)]
    return pose, X


def write_cdf(path, pose):
    cdf = CDF(str(path), delete=True)
    cdf.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1, "Rec_Vary": True,
                   "Dim_Sizes": [pose.shape[0] * 96]}, var_data=pose.reshape(1, -1).astype(np.float32))
    cdf.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    rig = h36m_rig("S1")
    videos = root / "S1" / "Videos"
    videos.mkdir(parents=True)
    for cam in rig:
        write_video(videos / f"Walking 1.{cam.name}.mp4", FRAMES[cam.name], cam.image_size)
        write_video(videos / f"TakingPhoto 1.{cam.name}.mp4", 12, cam.image_size)
        write_video(videos / f"_ALL 1.{cam.name}.mp4", 3, cam.image_size)
    (videos / "TakingPhoto 1.58860488.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    mocap = root / "S1" / "MyPoseFeatures" / "D3_Positions"
    mocap.mkdir(parents=True)
    write_cdf(mocap / "Walking 1.cdf", mocap_poses(23)[0])
    return root


class MocapDetector:
    """A test detector: checks each decoded frame's content against its frame number, then returns the mocap's
    shared joints projected into the view (so the build can be scored against the mocap it was made from)."""

    name = "mocap_projection"

    def __init__(self, root: str, noise_px: float = 1.0):
        self.root, self.noise_px = Path(root), noise_px
        self.rng = np.random.default_rng(0)

    def describe(self):
        return {"name": self.name, "noise_px": self.noise_px}

    def __call__(self, batch):
        grey = batch.images.reshape(len(batch.frames), -1).mean(1)
        np.testing.assert_allclose(grey, GREY_STEP * batch.frames, atol=5)  # the right frames, counted from 0
        cdf = self.root / batch.sequence.subject / "MyPoseFeatures" / "D3_Positions" / f"{batch.sequence.name}.cdf"
        out = np.full((len(batch.frames), skeleton.NUM_KEYPOINTS, 3), np.nan)
        if cdf.exists():
            X = mocap_to_wholebody(read_mocap(cdf))[batch.frames]
            out[..., :2] = batch.camera.project(X) + self.rng.normal(0, self.noise_px, X.shape[:-1] + (2,))
            out[..., 2] = 0.9
        return out


def test_canonical_actions():
    assert canonical_action("TakingPhoto 1") == "Photo" and canonical_action("Photo") == "Photo"
    assert canonical_action("WalkingDog 1") == canonical_action("WalkDog 2") == "WalkDog"
    assert canonical_action("Eating") == "Eating" and canonical_action("WalkTogether 2") == "WalkTogether"
    assert canonical_action("SittingDown 2") == "SittingDown" and canonical_action("Sitting 1") == "Sitting"
    assert canonical_action("_ALL 1") is None and canonical_action("Juggling") is None


def test_sequences_frames_and_mocap(tree):
    src = H36MSource(str(tree), subjects=["S1"])
    seqs = src.sequences()
    assert seqs == [Recording("S1", "Photo", "TakingPhoto 1"), Recording("S1", "Walking", "Walking 1")]
    walking = seqs[1]
    np.testing.assert_array_equal(src.view_frames(walking, "54138969"), [0, 5, 10, 15, 20])
    np.testing.assert_array_equal(src.view_frames(walking, "60457274"), [0, 5, 10, 15])
    assert src.video_info(walking, "54138969")["image_size"] == [1000, 1002]
    gt = src.ground_truth(walking, np.array([0, 5, 30]))
    _, X = mocap_poses(23)
    shared = [skeleton.index(n) for n in MOCAP_TO_WHOLEBODY.values()]
    np.testing.assert_allclose(gt[:2, shared], X[[0, 5]][:, shared], atol=1e-3)  # float32 in the CDF
    assert np.isnan(gt[2]).all()  # beyond the mocap
    others = np.setdiff1d(np.arange(skeleton.NUM_KEYPOINTS), shared)
    assert np.isnan(gt[:, others]).all()
    assert src.ground_truth(seqs[0], np.array([0])) is None  # no mocap file
    assert H36MSource(str(tree), subjects=["S1"], stride=10, start=5, stop=20).view_frames(
        walking, "54138969").tolist() == [5, 15]


def test_bad_input_is_clear(tree, tmp_path):
    src = H36MSource(str(tree), subjects=["S1"])
    with pytest.raises(VideoError, match="cannot open|no decodable"):
        src.view_frames(Recording("S1", "Photo", "TakingPhoto 1"), "58860488")
    with pytest.raises(FileNotFoundError, match="S5/Videos"):
        H36MSource(str(tree), subjects=["S5"]).sequences()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        H36MSource(str(tmp_path / "nowhere")).sequences()
    with pytest.raises(ValueError, match="not Human3.6M cameras"):
        H36MSource(str(tree), subjects=["S1"], cameras=["12345678"]).rig_for("S1")
    # a video resized non-uniformly does not fit the calibration
    small = tmp_path / "S1" / "Videos"
    small.mkdir(parents=True)
    write_video(small / "Walking 1.54138969.mp4", 5, (500, 800))
    with pytest.raises(VideoError, match="500x800, the calibration of camera '54138969' is for 1000x1002"):
        H36MSource(str(tmp_path), subjects=["S1"]).view_frames(Recording("S1", "Walking", "Walking 1"), "54138969")


def test_reader_seeks_and_reads_image_folders(tree, tmp_path):
    reader = FrameReader(tree / "S1" / "Videos" / "Walking 1.54138969.mp4")
    assert reader.frame_count == 23 and reader.size == (1000, 1002)
    got = [(f, img.mean()) for f, img in reader.read(np.array([1, 7, 22]))]
    assert [f for f, _ in got] == [1, 7, 22]
    np.testing.assert_allclose([m for _, m in got], [11, 77, 242], atol=5)
    with pytest.raises(VideoError, match="frame 30 cannot be decoded"):
        list(reader.read(np.array([20, 30])))
    folder = tmp_path / "cam"
    folder.mkdir()
    for f in range(3):
        cv2.imwrite(str(folder / f"frame_{f + 1:04d}.png"), np.full((8, 10, 3), 40 * f, np.uint8))
    images = FrameReader(folder)
    assert images.frame_count == 3 and images.size == (10, 8)
    assert [int(img.mean()) for _, img in images.read(np.array([0, 2]))] == [0, 80]


def test_detect_and_triangulate_on_the_tree_evaluates_against_mocap(tree, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "data=h36m", f"data.root={tree}", "data.subjects=[S1]", "data.actions=[Walking,Photo]",
            f"build.dir={tmp_path}", "stage=detect"])
    OmegaConf.set_struct(cfg, False)
    cfg.detector = OmegaConf.create({"_target_": "test_h36m_source.MocapDetector", "root": str(tree)})
    run_stage(cfg)
    manifest = json.loads((tmp_path / "detect" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert [v["video"] for v in counts["failed_videos"]] == ["S1/TakingPhoto 1.58860488"]
    assert counts["frame_count_mismatches"] == [{"sequence": "S1/Walking 1", "frames_per_view": {
        "54138969": 5, "55011271": 5, "58860488": 5, "60457274": 4}}]
    assert [u["sequence"] for u in manifest["units"]] == ["TakingPhoto 1", "Walking 1"]
    # the test detector finds nobody where there is no mocap: reported per video, not an error
    assert counts["videos_without_detections"] == [f"S1/TakingPhoto 1.{c}" for c in ("54138969", "55011271",
                                                                                      "60457274")]
    import h5py

    with h5py.File(tmp_path / "detect" / "S1" / "Walking 1.h5") as f:
        assert f["frames"][:].tolist() == [0, 5, 10, 15, 20]
        kp = f["keypoints"][:]
        assert np.isnan(kp[3, 4]).all() and np.isfinite(kp[3, 3, skeleton.index("left_wrist")]).all()
    with h5py.File(tmp_path / "detect" / "S1" / "TakingPhoto 1.h5") as f:
        assert json.loads(f.attrs["views"]) == ["54138969", "55011271", "60457274"]
        assert np.isnan(f["keypoints"][2]).all()  # the corrupt view

    cfg.stage = "triangulate"
    run_stage(cfg)
    cfg.stage = "evaluate"
    cfg.evaluate.stage = "triangulate"
    run_stage(cfg)
    result = json.loads((tmp_path / "evaluate" / "triangulate.json").read_text())
    assert result["sequences_scored"] == 1  # TakingPhoto has no mocap
    assert result["sequences_without_ground_truth"] == ["S1/TakingPhoto 1"]
    assert result["absolute"]["body"]["n"] == 12 * 5  # the 12 shared joints in 5 frames
    assert result["absolute"]["body"]["median_mm"] < 10  # 1 px of detection noise


def test_export_cuts_the_frames_out_of_the_videos(tree, tmp_path):
    from build_h3wb.export import ExportSequence, image_relpath, write_images
    from build_h3wb.sources.synthetic import SyntheticSource

    src = H36MSource(str(tree), subjects=["S1"])
    rig = h36m_rig("S1")
    frames = np.array([5, 15])
    X = np.zeros((2, skeleton.NUM_KEYPOINTS, 3))
    seqs = [ExportSequence(subject="S1", action="Walking", sequence="Walking 1", frames=frames, keypoints_3d=X,
                           provenance=np.zeros((2, skeleton.NUM_KEYPOINTS), np.uint8), quality=np.zeros(2), rig=rig),
            ExportSequence(subject="S1", action="Photo", sequence="TakingPhoto 1", frames=np.array([0]),
                           keypoints_3d=X[:1], provenance=np.zeros((1, skeleton.NUM_KEYPOINTS), np.uint8),
                           quality=np.zeros(1), rig=rig)]
    counts = write_images(src, seqs, tmp_path / "images")
    assert counts["written"] == 2 * 4 + 3 and counts["present"] == 0
    assert counts["failed_views"] and "TakingPhoto 1.58860488" in counts["failed_views"][0]
    img = cv2.imread(str(tmp_path / "images" / image_relpath("S1", "Walking 1", "60457274", 15)))
    assert img.shape == (1002, 1000, 3) and abs(img.mean() - GREY_STEP * 15) < 5  # the right frame
    again = write_images(src, seqs, tmp_path / "images")
    assert again["written"] == 0 and again["present"] == 11
    synthetic = SyntheticSource(["S1"], ["Walking"], duration_s=2)
    assert write_images(synthetic, seqs[:1], tmp_path / "none")["no_pixels"]
    assert not (tmp_path / "none").exists()
