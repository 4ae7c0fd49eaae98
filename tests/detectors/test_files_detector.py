"""Detections other tools wrote, in each layout and file format, read back as a detector and built through triangulate.

The files are written here from the synthetic capture's projections in the way each tool writes them (OpenPose's
flat triplets with ``0, 0, 0`` for a keypoint not found, MMPose's ``keypoints`` + ``keypoint_scores``, AlphaPose's
per-video results, plain arrays), so reading them back must give the projections on every keypoint the layout maps
and NaN elsewhere.
"""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import train_small_lifter
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from build_h3wb import skeleton
from build_h3wb.artifacts import BuildDirError
from build_h3wb.config import register_configs
from build_h3wb.detectors.files import DetectionFileError, FilesDetector, frame_number, read_detection_file
from build_h3wb.skeleton.layouts import LAYOUTS, derived_joints, from_wholebody, mapped
from build_h3wb.sources.base import FrameBatch
from build_h3wb.sources.synthetic import SyntheticSource
from build_h3wb.stages import run_stage
from build_h3wb.synthetic.motion import generate_motion

CONF = Path(__file__).resolve().parents[2] / "conf"
register_configs()
CAMERA = "54138969"


def source(duration_s=1.0):
    return SyntheticSource(subjects=["S1"], actions=["Walking"], duration_s=duration_s)


def projections(src, frames, camera):
    """(T, 133, 3) [x, y, 0.9] pixels: the subject's ground truth projected into the camera, and its camera."""
    (seq,) = src.sequences()
    cam = src.rig(seq)[camera]
    uv = cam.project(src.ground_truth(seq, frames))
    score = np.full(uv.shape[:-1] + (1,), 0.9)
    score[:, ::7] = 0.6  # scores differ per keypoint, so they must come back where they belong
    return np.concatenate([uv, score], -1), cam


def bystander(src, frames, camera):
    """(T, 133, 3) pixels of a second person at the edge of the capture volume."""
    (seq,) = src.sequences()
    cam = src.rig(seq)[camera]
    X = generate_motion("S5", "Waiting", np.asarray(frames) / src.video_fps, seed=7, center_xy_mm=(1600, 1600),
                        half_extent_xy_mm=(100, 100))
    uv = cam.project(X)
    return np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.95)], -1)


def in_layout(kp133, name):
    """(P, 133, 3) -> (P, K, 3) in the layout, with its own extra joints (neck, mid-hip, head) filled as a tool would.

    Zeros (OpenPose's 'not found') where even that is not known (the pupils).
    """
    lay = LAYOUTS[name]
    kp = from_wholebody(kp133, lay)
    derived = derived_joints(kp133)
    offset = 0
    for section in lay.sections:
        for k, target, note in section.rows:
            if target is None:
                for joint in ("neck", "pelvis", "head"):
                    if joint in note.lower() or (joint == "pelvis" and "hip" in note.lower()):
                        kp[..., offset + k, :] = derived[joint]
                        break
        offset += section.size
    return np.nan_to_num(kp)  # tools write 0, 0, 0 for what they lack


def openpose_json(people133, name):
    """One frame in OpenPose's JSON (for non-OpenPose layouts: Pose2Sim's, the whole layout as pose_keypoints_2d)."""
    lay = LAYOUTS[name]
    people = []
    for kp in in_layout(people133, name):
        person, offset = {"person_id": [-1]}, 0
        for section in lay.sections:
            key = section.key if section.key != "keypoints" else "pose_keypoints_2d"
            person[key] = kp[offset : offset + section.size].reshape(-1).round(4).tolist()
            offset += section.size
        people.append(person)
    return {"version": 1.3, "people": people}


def mmpose_instances(people133, name):
    return [{"keypoints": kp[:, :2].round(4).tolist(), "keypoint_scores": kp[:, 2].round(4).tolist(),
             "bbox": [[0, 0, 10, 10]], "bbox_score": 0.9} for kp in in_layout(people133, name)]


def write_view(folder, people, name, fmt, first_frame=0, camera_stem="Walking 1.54138969"):
    """Write a view's (T, P, 133, 3) detections at frames 0, 5, 10, ... in one of the file formats."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [5 * t + first_frame for t in range(len(people))]
    if fmt == "mmpose_video":
        entries = [{"frame_id": n, "instances": mmpose_instances(p, name)} for n, p in zip(numbers, people)]
        folder.with_name(folder.name + ".json").write_text(json.dumps(entries))
        folder.rmdir()
        return
    if fmt == "mmpose_demo_video":
        info = [{"frame_id": n, "instances": mmpose_instances(p, name)} for n, p in zip(numbers, people)]
        folder.with_name(folder.name + ".json").write_text(json.dumps({"meta_info": {}, "instance_info": info}))
        folder.rmdir()
        return
    if fmt == "alphapose":
        entries = [{"image_id": f"{n}.jpg", "category_id": 1, "keypoints": kp.reshape(-1).round(4).tolist(),
                    "score": 2.5} for n, p in zip(numbers, people) for kp in in_layout(p, name)]
        folder.with_name(folder.name + ".json").write_text(json.dumps(entries))
        folder.rmdir()
        return
    for n, p in zip(numbers, people):
        if fmt == "openpose":
            (folder / f"{camera_stem}_{n:012d}_keypoints.json").write_text(json.dumps(openpose_json(p, name)))
        elif fmt == "mmpose_image":
            (folder / f"frame_{n:04d}.json").write_text(json.dumps(mmpose_instances(p, name)))
        elif fmt == "plain":
            (folder / f"{n:06d}.json").write_text(json.dumps(in_layout(p, name).round(4).tolist()))
        elif fmt == "npy":
            np.save(folder / f"{n:06d}.npy", in_layout(p, name))
        else:
            raise AssertionError(fmt)


CASES = [  # (layout, file format, first_frame)
    ("openpose_body25", "openpose", 0),
    ("openpose_coco18", "openpose", 0),
    ("coco_wholebody", "mmpose_image", 0),
    ("coco_wholebody", "mmpose_video", 0),
    ("coco_wholebody", "mmpose_demo_video", 1),
    ("coco_wholebody", "plain", 1),
    ("coco_wholebody", "npy", 0),
    ("halpe26", "openpose", 0),  # Pose2Sim writes HALPE-26 into OpenPose's JSON
    ("halpe26", "alphapose", 0),
    ("halpe136", "alphapose", 0),
    ("halpe136", "mmpose_image", 0),
    ("coco17", "plain", 0),
]


@pytest.mark.parametrize("layout", ["auto", "given"])
@pytest.mark.parametrize(("name", "fmt", "first_frame"), CASES)
def test_files_read_back_equal_the_projections_on_every_mapped_keypoint(tmp_path, name, fmt, first_frame, layout):
    src = source()
    (seq,) = src.sequences()
    frames = src.view_frames(seq, CAMERA)
    truth, cam = projections(src, frames, CAMERA)  # (T, 133, 3)
    write_view(tmp_path / seq.name / CAMERA, truth[:, None], name, fmt, first_frame)
    det = FilesDetector(str(tmp_path), layout=name if layout == "given" else "auto", first_frame=first_frame)
    out = det(FrameBatch(sequence=seq, camera=cam, frames=frames))  # (T, P, 133, 3)
    assert out.shape == (len(frames), 1, skeleton.NUM_KEYPOINTS, 3)
    has = mapped(LAYOUTS[name])
    np.testing.assert_allclose(out[:, 0, has], truth[:, has], atol=1e-3)
    assert np.isnan(out[:, 0, ~has]).all()
    report = det.video_report(seq, CAMERA)
    assert report["layout"] == name and report["frame_files_missing"] == 0


def test_several_people_are_candidates_best_first_and_missing_frames_are_counted(tmp_path):
    src = source()
    (seq,) = src.sequences()
    frames = src.view_frames(seq, CAMERA)
    truth, cam = projections(src, frames, CAMERA)
    other = bystander(src, frames, CAMERA)
    folder = tmp_path / seq.name / CAMERA
    write_view(folder, np.stack([truth, other], 1), "openpose_body25", "openpose")
    (folder / f"Walking 1.54138969_{15:012d}_keypoints.json").unlink()  # frame 15 was never written
    det = FilesDetector(str(tmp_path), max_people=4)
    out = det(FrameBatch(sequence=seq, camera=cam, frames=frames))
    assert out.shape[1] == 2
    t15 = list(frames).index(15)
    assert np.isnan(out[t15]).all()
    keep = [t for t in range(len(frames)) if t != t15]
    # the bystander scores higher: listed first
    np.testing.assert_allclose(out[keep, 0, :, :2], other[keep, :, :2], atol=1e-3)
    np.testing.assert_allclose(out[keep, 1, :, :2], truth[keep, :, :2], atol=1e-3)
    report = det.video_report(seq, CAMERA)
    assert report["frame_files_missing"] == 1 and report["frame_files_missing_first"] == [15]
    assert read_detection_file(next(folder.iterdir()))[0].shape == (2, skeleton.NUM_KEYPOINTS, 3)


def test_frame_numbers_and_settings():
    assert frame_number("Walking 1.54138969_000000000123_keypoints.json") == 123
    assert frame_number("frame_0125.json") == 125 and frame_number("keypoints.json") is None
    with pytest.raises(ValueError, match="detector.layout='body25'"):
        FilesDetector("/x", layout="body25")
    with pytest.raises(ValueError, match="pattern"):
        FilesDetector("/x", pattern="{sequence}/{view}")


def test_bad_files_stop_with_the_file_the_layout_expected_and_what_was_found(tmp_path):
    src = source()
    (seq,) = src.sequences()
    frames = src.view_frames(seq, CAMERA)
    truth, cam = projections(src, frames, CAMERA)
    batch = FrameBatch(sequence=seq, camera=cam, frames=frames)
    folder = tmp_path / seq.name / CAMERA
    write_view(folder, truth[:, None], "openpose_coco18", "openpose")
    with pytest.raises(DetectionFileError, match=r"_000000000000_keypoints.json: layout openpose_body25 expects 25 "
                                                 r"keypoints in pose_keypoints_2d, found 18 \(that is openpose_coco18"):
        FilesDetector(str(tmp_path), layout="openpose_body25")(batch)
    broken = folder / f"Walking 1.54138969_{5:012d}_keypoints.json"
    broken.write_text('{"people": [{"pose_keypoints_2d": [1, 2, ')
    with pytest.raises(DetectionFileError, match=r"000000000005_keypoints.json: unreadable detections file"):
        FilesDetector(str(tmp_path))(batch)
    person = openpose_json(truth[5:6], "openpose_coco18")
    person["people"][0]["hand_left_keypoints_2d"] = [1.0, 2.0, 0.5] * 20
    broken.write_text(json.dumps(person))
    with pytest.raises(DetectionFileError, match="expects 21 keypoints in hand_left_keypoints_2d, found 20"):
        FilesDetector(str(tmp_path), layout="openpose_coco18")(batch)
    person = openpose_json(truth[5:6], "openpose_body25")  # one file of another layout among COCO-18 ones
    broken.write_text(json.dumps(person))
    with pytest.raises(DetectionFileError, match="found 25.*auto chose openpose_coco18"):
        FilesDetector(str(tmp_path))(batch)
    broken.write_text(json.dumps({"pose": []}))
    with pytest.raises(DetectionFileError, match="not a detections file"):
        FilesDetector(str(tmp_path))(batch)
    np.save(folder / "000001.npy", np.zeros((1, 40, 3)))
    with pytest.raises(DetectionFileError, match="has 40 keypoints, which is no supported layout"):
        read_detection_file(folder / "000001.npy")


def _config(build, root, *more):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "detector=files", f"detector.root={root}", "data.subjects=[S1]", "data.actions=[Walking]",
            "data.duration_s=2", f"build.dir={build}", "stage=detect", *more])
    OmegaConf.set_struct(cfg, False)
    return cfg


def test_openpose_files_of_two_people_build_through_triangulate(tmp_path):
    """Four views of COCO-18 + hands, a bystander listed first in even frames, one frame file lost, one view absent."""
    src = source(duration_s=2.0)
    (seq,) = src.sequences()
    rig = src.rig(seq)
    frames = src.view_frames(seq, CAMERA)
    root = tmp_path / "openpose"
    for cam in rig:
        truth, _ = projections(src, frames, cam.name)
        truth[:, skeleton.PARTS["face"], 2] = 0  # written as 0, 0, 0: not found
        other = bystander(src, frames, cam.name)
        first = (frames % 10 == 0)[:, None, None]
        people = np.stack([np.where(first, other, truth), np.where(first, truth, other)], 1)
        write_view(root / seq.name / cam.name, people, "openpose_coco18", "openpose",
                   camera_stem=f"Walking 1.{cam.name}")
    (root / seq.name / "60457274" / f"Walking 1.60457274_{25:012d}_keypoints.json").unlink()
    build = tmp_path / "build"
    cfg = _config(build, root)
    run_stage(cfg)
    counts = json.loads((build / "detect" / "manifest.json").read_text())["counts"]
    assert counts["frames_without_detection_file"] == [{"video": "S1/Walking 1.60457274", "frames": 1}]
    with h5py.File(build / "detect" / "S1" / "Walking 1.h5") as f:
        choice, got, kp = f["choice"][:], f["frames"][:], f["keypoints"][:]
    assert got.tolist() == frames.tolist()
    # candidates are stored best first: the (higher-scoring) bystander is candidate 0, yet the subject is chosen
    expected = np.ones_like(choice)
    lost = (rig.names.index("60457274"), list(frames).index(25))
    expected[lost] = -1
    np.testing.assert_array_equal(choice, expected)
    body = skeleton.PARTS["body"]
    for c, cam in enumerate(rig.names):
        truth, _ = projections(src, frames, cam)
        ok = choice[c] >= 0
        np.testing.assert_allclose(kp[c, ok][:, body], truth[ok][:, body], atol=1e-3)
    assert np.isnan(kp[lost]).all()
    with h5py.File(build / "detect" / "videos" / "S1" / "Walking 1" / f"{CAMERA}.h5") as f:
        assert f.attrs["layout"] == "openpose_coco18" and f.attrs["frame_files_missing"] == 0
    cfg.stage = "triangulate"
    run_stage(cfg)
    with h5py.File(build / "triangulate" / "S1" / "Walking 1.h5") as f:
        X = f["keypoints_3d"][:]
    err = np.linalg.norm(X - src.ground_truth(seq, frames), axis=-1)  # (T, 133) mm
    has = mapped(LAYOUTS["openpose_coco18"])
    has[skeleton.PARTS["face"]] = False
    assert np.nanmax(err[:, has]) < 1.0 and np.isfinite(err[:, has]).all()
    assert np.isnan(X[:, ~has]).all()  # feet and face: not in these files, not invented


def test_a_view_without_files_is_a_failed_video(tmp_path):
    src = source(duration_s=2.0)
    (seq,) = src.sequences()
    rig = src.rig(seq)
    frames = src.view_frames(seq, CAMERA)
    root = tmp_path / "dets"
    for cam in rig.names[:3]:
        truth, _ = projections(src, frames, cam)
        write_view(root / seq.name / cam, truth[:, None], "coco_wholebody", "npy")
    build = tmp_path / "build"
    run_stage(_config(build, root, "detector.layout=coco_wholebody"))
    counts = json.loads((build / "detect" / "manifest.json").read_text())["counts"]
    (failed,) = counts["failed_videos"]
    assert failed["video"] == f"S1/Walking 1.{rig.names[3]}" and "no detections for" in failed["reason"]
    assert counts["assembled"] == 1


def _rig_motion(frames):
    return generate_motion("S1", "Greeting", np.asarray(frames) / 25.0, seed=3, center_xy_mm=(100, 550),
                           half_extent_xy_mm=(500, 500))


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    return cfg


def test_a_rig_known_only_by_its_detections_and_calibration_builds(tmp_path):
    """data=detections: no videos; HALPE-26 in Pose2Sim's OpenPose-style JSON, numbered from 1."""
    from build_h3wb.geometry.cameras import h36m_rig

    rig = h36m_rig("S1")
    (tmp_path / "calibration.json").write_text(json.dumps(rig.to_dict()))
    frames = np.arange(12)
    X = _rig_motion(frames)
    root = tmp_path / "pose2sim"
    for cam in rig:
        uv = cam.project(X)
        kp = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.8)], -1)
        if cam.name == "55011271":
            kp = kp[:9]  # this camera's files stop early
        write_view(root / "trial 1" / cam.name, kp[:, None], "halpe26", "openpose", first_frame=1,
                   camera_stem=cam.name)
    numbers = [5 * t for t in range(12)]  # write_view numbers the files 1, 6, 11, ... (first_frame=1): frames 0, 5, ...
    build = tmp_path / "build"
    cfg = _compose("data=detections", f"data.calibration={tmp_path / 'calibration.json'}", "detector=files",
                   f"detector.root={root}", "detector.first_frame=1", f"build.dir={build}", "stage=detect")
    run_stage(cfg)
    counts = json.loads((build / "detect" / "manifest.json").read_text())["counts"]
    assert counts["frame_count_mismatches"][0]["frames_per_view"]["55011271"] == 9
    cfg.stage = "triangulate"
    run_stage(cfg)
    with h5py.File(build / "triangulate" / "subject" / "trial 1.h5") as f:
        got, X3 = f["frames"][:], f["keypoints_3d"][:]
    assert got.tolist() == numbers
    has = mapped(LAYOUTS["halpe26"])
    err = np.linalg.norm(X3 - X, axis=-1)  # the t-th file of a view holds the projection of X[t]
    assert np.nanmax(err[:, has]) < 1.0 and np.isfinite(err[:, has]).all() and np.isnan(X3[:, ~has]).all()
    # a detection file replaced in place: the next run says the detections changed instead of keeping the old ones
    edited = sorted((root / "trial 1" / "54138969").iterdir())[3]
    edited.write_text(edited.read_text().replace("0.8", "0.7", 1))
    cfg.stage = "detect"
    with pytest.raises(BuildDirError, match="files_fingerprint"):
        run_stage(cfg)


def test_the_fingerprint_follows_the_files(tmp_path):
    from build_h3wb.detectors.files import files_fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0001.json").write_text("[]")
    first = files_fingerprint(tmp_path)
    assert files_fingerprint(tmp_path) == first
    (tmp_path / "a" / "notes.txt").write_text("not a detection file")
    assert files_fingerprint(tmp_path) == first
    (tmp_path / "a" / "0002.json").write_text("[]")
    assert files_fingerprint(tmp_path) != first
    assert files_fingerprint(tmp_path / "nowhere") == "missing"


def test_a_video_source_is_not_decoded_for_detections_from_files(tmp_path, monkeypatch):
    import cv2

    from build_h3wb.geometry.calibration_formats import save_anipose_toml
    from build_h3wb.geometry.cameras import h36m_rig
    from build_h3wb.sources.video import FrameReader

    rig = h36m_rig("S1")
    save_anipose_toml(rig, tmp_path / "calibration.toml", approximate_distortion=True)
    n = 3
    for cam in rig:
        w, h = cam.image_size
        (tmp_path / "videos" / "trial 1").mkdir(parents=True, exist_ok=True)
        out = cv2.VideoWriter(str(tmp_path / "videos" / "trial 1" / f"{cam.name}.mp4"),
                              cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
        for _ in range(n):
            out.write(np.zeros((h, w, 3), np.uint8))
        out.release()
        uv = cam.project(_rig_motion(np.arange(n)))
        kp = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.8)], -1)
        for f in range(n):  # plain (P, 133, 3) lists, one file per frame
            (tmp_path / "dets" / "trial 1" / cam.name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "dets" / "trial 1" / cam.name / f"{f:05d}.json").write_text(json.dumps([kp[f].tolist()]))

    def no_decoding(self, frames):
        raise AssertionError("a video was decoded")

    monkeypatch.setattr(FrameReader, "read", no_decoding)
    build = tmp_path / "build"
    run_stage(_compose("data=rig", f"data.root={tmp_path / 'videos'}",
                       f"data.calibration={tmp_path / 'calibration.toml'}", "detector=files",
                       f"detector.root={tmp_path / 'dets'}", f"build.dir={build}", "stage=detect"))
    with h5py.File(build / "detect" / "subject" / "trial 1.h5") as f:
        assert f["frames"][:].tolist() == list(range(n)) and np.isfinite(f["keypoints"][:]).all()


@pytest.fixture(scope="module")
def small_lifter(tmp_path_factory):
    """A small I2D lifter trained on the synthetic capture's poses."""
    return train_small_lifter(tmp_path_factory.mktemp("lifter") / "model.pt")


def _pictures(build, *overrides):
    from build_h3wb.stages.pictures import run

    return run(_compose(f"build.dir={build}", "stage=pictures", *overrides))


def test_the_lifting_figure_takes_a_detections_file_instead_of_a_detector(tmp_path, small_lifter):
    import cv2

    src = source()
    (seq,) = src.sequences()
    frames = src.view_frames(seq, CAMERA)[:1]
    truth, _ = projections(src, frames, CAMERA)
    other = bystander(src, frames, CAMERA)
    other[..., 2] = 0.3  # the bystander scores lower: the subject is lifted
    (tmp_path / "op").mkdir()
    dets = tmp_path / "op" / "frame_000000000000_keypoints.json"
    dets.write_text(json.dumps(openpose_json(np.stack([other[0], truth[0]]), "openpose_coco18")))
    written = _pictures(tmp_path / "build", f"pictures.image={dets}", f"pictures.lifter={small_lifter}")
    out = json.loads(Path(written["image_json"]).read_text())
    assert Path(written["image"]).is_file() and out["detector"]["layout"] == "openpose_coco18"
    got = np.array([[np.nan if v is None else v for v in row] for row in out["keypoints_2d"]])
    has = mapped(LAYOUTS["openpose_coco18"])
    np.testing.assert_allclose(got[has, :2], truth[0, has, :2], atol=1e-3)
    assert np.isnan(got[~has]).all()
    pelvis = 0.5 * (truth[0, skeleton.LEFT_HIP, :2] + truth[0, skeleton.RIGHT_HIP, :2])
    np.testing.assert_allclose(out["derived_2d"]["pelvis"], pelvis, atol=1e-2)
    pred = np.array(out["keypoints_3d_mm"], dtype=np.float64)
    assert np.isfinite(pred).all() and np.allclose(skeleton.root(pred), 0, atol=1e-2)
    assert np.array(out["hidden"])[~has].all()  # what the file lacks is the lifter's mask

    # beside a photograph: the detection from the file is drawn on it; no detector runs
    jpg = tmp_path / "photo.jpg"
    cv2.imwrite(str(jpg), np.full((1002, 1000, 3), 90, np.uint8))
    written = _pictures(tmp_path / "build", f"pictures.image={jpg}", f"pictures.detections={dets}",
                        "pictures.layout=openpose_coco18", f"pictures.lifter={small_lifter}")
    out = json.loads(Path(written["image_json"]).read_text())
    assert out["image_size"] == [1000, 1002] and out["detector"]["name"] == "files"
    with pytest.raises(DetectionFileError, match="layout halpe26 expects 26 keypoints in pose_keypoints_2d, found 18"):
        _pictures(tmp_path / "build", f"pictures.image={dets}", "pictures.layout=halpe26",
                  f"pictures.lifter={small_lifter}")


def test_the_detections_source_finds_one_recording_by_its_camera_folders(tmp_path):
    from build_h3wb.geometry.cameras import h36m_rig
    from build_h3wb.sources.detections import DetectionsSource

    rig = h36m_rig("S1")
    (tmp_path / "calibration.json").write_text(json.dumps(rig.to_dict()))
    pose = tmp_path / "trial" / "pose"
    for cam in rig.names:
        (pose / f"{cam}_json").mkdir(parents=True)
        for n in (3, 4, 5, 6, 7):
            (pose / f"{cam}_json" / f"{cam}_{n:06d}.json").write_text('{"people": []}')
    src = DetectionsSource(str(pose), str(tmp_path / "calibration.json"), pattern="{camera}_json", first_frame=1,
                           start=3, stride=2)
    (seq,) = src.sequences()
    assert seq.name == "pose" and src.rig(seq).names == rig.names
    assert src.view_frames(seq, rig.names[0]).tolist() == [3, 5]  # files 3..7 hold frames 2..6
    det = FilesDetector(str(pose), pattern="{camera}_json", first_frame=1)
    assert det.view_path(seq, rig.names[0]) == pose / f"{rig.names[0]}_json"
    with pytest.raises(ValueError, match="data.pattern"):
        DetectionsSource(str(pose), str(tmp_path / "calibration.json"), pattern="{subject}/{sequence}/{camera}")


def test_detect_and_triangulate_from_files_on_the_command_line(tmp_path):
    from conftest import run_cli

    src = source()
    (seq,) = src.sequences()
    frames = src.view_frames(seq, CAMERA)
    for cam in src.rig(seq).names:
        truth, _ = projections(src, frames, cam)
        write_view(tmp_path / "rtmw" / seq.name / cam, truth[:, None], "coco_wholebody", "mmpose_video")
    args = ["detector=files", f"detector.root={tmp_path / 'rtmw'}", "data.subjects=[S1]", "data.actions=[Walking]",
            "data.duration_s=1"]
    out = run_cli(tmp_path / "build", "stage=detect", *args)
    assert "detector.layout=auto chose coco_wholebody" in out.stderr + out.stdout
    run_cli(tmp_path / "build", "stage=triangulate", *args)
    with h5py.File(tmp_path / "build" / "triangulate" / "S1" / "Walking 1.h5") as f:
        X = f["keypoints_3d"][:]
    assert np.nanmax(np.linalg.norm(X - src.ground_truth(seq, frames), axis=-1)) < 1.0


def test_normalised_coordinates_are_reported(tmp_path, caplog):
    src = source()
    (seq,) = src.sequences()
    frames = src.view_frames(seq, CAMERA)
    truth, cam = projections(src, frames, CAMERA)
    truth[..., :2] /= 1000.0  # OpenPose --keypoint_scale 3: [0, 1]
    write_view(tmp_path / seq.name / CAMERA, truth[:, None], "openpose_body25", "openpose")
    det = FilesDetector(str(tmp_path))
    det(FrameBatch(sequence=seq, camera=cam, frames=frames))
    det.video_report(seq, CAMERA)
    assert "look normalised" in caplog.text


def test_malformed_content_names_the_file(tmp_path):
    bad = tmp_path / "frame_0001.json"
    bad.write_text(json.dumps([{"keypoints": [[1, "x"], [2]], "keypoint_scores": [0.5, 0.5]}]))
    with pytest.raises(DetectionFileError, match=r"frame_0001.json: malformed detections file \(ValueError"):
        read_detection_file(bad)
    video = tmp_path / "cam.json"
    video.write_text(json.dumps([{"frame_id": 0, "instances": [{"keypoints": 3}]}]))
    with pytest.raises(DetectionFileError, match="cam.json"):
        FilesDetector(str(tmp_path), pattern="cam")._open(source().sequences()[0], "cam")
