"""Every exported file read the way the official H3WB code reads it (wholebody3d/wholebody3d, all public).

The loaders below are written for these tests against the official layout, not copied: ``official_data_loader``
opens the files, ids and keys that ``test_leaderboard.data_loader`` opens for ``type='train'`` (with
``cross_validation``), ``'test'`` and ``'admin'``; ``official_test_score`` computes the six numbers of
``test_leaderboard.test_score`` from the ids it looks up; ``official_npz`` reads what ``utils/prepare_data_h3wb.py``'s
``Human3WBDataset`` reads. Joint indices and camera ids are written here as the official files write them, and are
checked against :mod:`build_h3wb.skeleton` and the rig.
"""

import json

import numpy as np
import pytest
from test_export import SPLIT, make_sequence

from build_h3wb import skeleton
from build_h3wb.export import load_h3wb_json, write_h3wb_json, write_official_npz
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.leaderboard.scoring import cv_fold, score_predictions

J_OFFICIAL = 133
# test_leaderboard.py: hips 11, 12 (pelvis), nose 0, face 23:91, left hand 91:112 (root 91), right hand 112: (root 112)
HIPS, NOSE, FACE, LEFT_HAND, RIGHT_HAND = (11, 12), 0, slice(23, 91), slice(91, 112), slice(112, 133)
# prepare_data_h3wb.py: the camera order of Human3WBDataset
OFFICIAL_CAMERAS = ["54138969", "55011271", "58860488", "60457274"]
# prepare_data_h3wb.py, h36m_cameras_extrinsic_params["S1"]: orientation (w, x, y, z; camera to world) and
# translation (the camera centre, world mm)
S1_EXTRINSICS = [
    ([0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088],
     [1841.1070556640625, 4955.28466796875, 1563.4454345703125]),
    ([0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205],
     [1761.278564453125, -5078.0068359375, 1606.2650146484375]),
    ([0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696],
     [-1846.7777099609375, 5215.04638671875, 1491.972412109375]),
    ([0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435],
     [-1794.7896728515625, -3722.698974609375, 1574.8927001953125]),
]
# prepare_data_h3wb.py, h36m_cameras_intrinsic_params: center, focal_length (px), res_w, res_h
INTRINSICS = [
    ([512.54150390625, 515.4514770507812], [1145.0494384765625, 1143.7811279296875], 1000, 1002),
    ([508.8486328125, 508.0649108886719], [1149.6756591796875, 1147.5916748046875], 1000, 1000),
    ([519.8158569335938, 501.40264892578125], [1149.1407470703125, 1148.7989501953125], 1000, 1000),
    ([514.9682006835938, 501.88201904296875], [1145.5113525390625, 1144.77392578125], 1000, 1002),
]


def test_official_indices_are_the_skeleton_s():
    assert skeleton.NUM_KEYPOINTS == J_OFFICIAL
    assert HIPS == (skeleton.LEFT_HIP, skeleton.RIGHT_HIP) and NOSE == skeleton.NOSE
    assert (FACE, LEFT_HAND, RIGHT_HAND) == (skeleton.PARTS["face"], skeleton.PARTS["left_hand"],
                                             skeleton.PARTS["right_hand"])
    assert (LEFT_HAND.start, RIGHT_HAND.start) == (skeleton.LEFT_HAND_ROOT, skeleton.RIGHT_HAND_ROOT)


# ---------------------------------------------------------------------------------------------------------------
# the official loader and scorer, as the official code reads


def _kp(sample, key, axes):
    return [[sample[key][str(j)][a] for a in axes] for j in range(J_OFFICIAL)]


def official_data_loader(folder, task, kind, cross_validation=0):
    """ids, inputs, targets, bboxes as ``data_loader(data_path, task, type=kind, cross_validation)`` builds them."""
    ids, inputs, targets, boxes = [], [], [], []
    box = ("x_min", "y_min", "x_max", "y_max")
    if kind == "train":
        data = json.loads((folder / ("RGBto3D_train.json" if task == 3 else "2Dto3D_train.json")).read_text())
        n = len(data)
        for i in range(n):
            if cross_validation and not (n // 5) * (cross_validation - 1) <= i < (n // 5) * cross_validation:
                continue
            s = data[str(i)]
            if task == 3:
                boxes.append([int(s["bbox"][k]) for k in box])
                inputs.append(s["image_path"])
            else:
                inputs.append(_kp(s, "keypoints_2d", "xy"))
            targets.append(_kp(s, "keypoints_3d", "xyz"))
            ids.append(i)
        return ids, inputs, np.array(targets), boxes
    if task == 3:
        name = "RGBto3D_test_img.json" if kind == "test" else "RGBto3D_test_3d.json"
        data = json.loads((folder / name).read_text())
        for i in range(len(data)):
            s = data[str(i)]
            ids.append(i)
            inputs.append(s["image_path"])
            boxes.append([int(s["bbox"][k]) for k in box])
            if kind == "admin":
                targets.append(_kp(s, "keypoints_3d", "xyz"))
        return ids, inputs, np.array(targets), boxes
    name = {(1, "test"): "2Dto3D_test_2d", (1, "admin"): "2Dto3D_test_3d", (2, "test"): "I2Dto3D_test_2d",
            (2, "admin"): "I2Dto3D_test_3d"}[(task, kind)]
    data = json.loads((folder / f"{name}.json").read_text())
    for i in range(len(data)):
        sid = (i // 4) * 8 + i % 4 + (4 if task == 2 else 0)
        inputs.append(_kp(data[str(sid)], "keypoints_2d", "xy"))
        if kind == "admin":
            targets.append(_kp(data[str(sid)], "keypoints_3d", "xyz"))
        ids.append(sid)
    return ids, np.array(inputs), np.array(targets), boxes


def official_test_score(pred_path, folder, task, cross_validation=0):
    """The six numbers of ``test_score``: pelvis-aligned whole, body, face, hands; nose-aligned face; wrist-aligned
    hands (left and right averaged), looking up only the ids the task needs."""
    kind = "train" if cross_validation else "admin"
    ids, _, target, _ = official_data_loader(folder, task, kind, cross_validation)
    pred_data = json.loads(pred_path.read_text())
    pred = np.array([_kp(pred_data[str(i)], "keypoints_3d", "xyz") for i in ids])
    d = pred - target
    d = d - (d[:, HIPS[0]:HIPS[0] + 1] + d[:, HIPS[1]:HIPS[1] + 1]) / 2
    face = (d - d[:, NOSE:NOSE + 1])[:, FACE]
    left = (d - d[:, LEFT_HAND.start:LEFT_HAND.start + 1])[:, LEFT_HAND]
    right = (d - d[:, RIGHT_HAND.start:RIGHT_HAND.start + 1])[:, RIGHT_HAND]
    e = np.linalg.norm(d, axis=-1)
    return {"whole": e.mean(), "body": e[:, :23].mean(), "face": e[:, FACE].mean(), "hands": e[:, 91:].mean(),
            "face_aligned": np.linalg.norm(face, axis=-1).mean(),
            "hands_aligned": (np.linalg.norm(left, axis=-1).mean() + np.linalg.norm(right, axis=-1).mean()) / 2}


def official_predictions(path, ids, kp3d):
    path.write_text(json.dumps({str(i): {"keypoints_3d": {str(j): dict(zip("xyz", map(float, p)))
                                                          for j, p in enumerate(kp)}} for i, kp in zip(ids, kp3d)}))


@pytest.fixture(scope="module")
def sequences():
    return [
        make_sequence("S1", "Walking", "Walking 1", list(range(0, 60, 5)), seed=1),
        make_sequence("S1", "Eating", "Eating 2", [100, 105, 110, 115], seed=2),
        make_sequence("S8", "Directions", "Directions 1", list(range(0, 45, 5)), seed=3),
    ]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, sequences):
    out = tmp_path_factory.mktemp("official")
    write_h3wb_json(out / "json", sequences, SPLIT, rgb_test_seed=3, decimals=2, i2d_mask_seed=1)
    write_official_npz(out / "h3wb_videopose3d.npz", sequences, SPLIT)
    return out


def pose_table(sequences):
    return {(s.subject, s.sequence, cam.name, int(f)): (s.keypoints_3d[t], cam)
            for s in sequences for t, f in enumerate(s.frames) for cam in s.rig}


def parse(path):
    subject, rest = path.split("/Images/")
    folder, frame = rest.rsplit("/frame_", 1)
    sequence, camera = folder.rsplit(".", 1)
    return subject, sequence, camera, int(frame[:-4])


def test_the_official_loader_reads_every_file(export_dir, sequences):
    folder = export_dir / "json"
    table = pose_table(sequences)
    n_train = 4 * 16
    for task in (1, 2):
        ids, kp2d, kp3d, _ = official_data_loader(folder, task, "train")
        assert ids == list(range(n_train)) and kp3d.shape == (n_train, J_OFFICIAL, 3)
        for fold in range(1, 6):
            ids, _, _, _ = official_data_loader(folder, task, "train", cross_validation=fold)
            assert ids == list(range(12 * (fold - 1), 12 * fold))  # 64 // 5 = 12: whole poses here
            assert ids == cv_fold(n_train, fold).tolist()
    ids, paths, kp3d, boxes = official_data_loader(folder, 3, "train")
    assert len(ids) == n_train and len(boxes) == n_train
    for task, first in ((1, 0), (2, 4)):
        test_ids, inputs, _, _ = official_data_loader(folder, task, "test")
        admin_ids, gt2d, gt3d, _ = official_data_loader(folder, task, "admin")  # KeyError before: no keypoints_2d
        assert test_ids == admin_ids and test_ids[:4] == list(range(first, first + 4))
        assert gt2d.shape == gt3d.shape[:2] + (2,) == (len(test_ids), J_OFFICIAL, 2)
    rgb_ids, rgb_paths, _, rgb_boxes = official_data_loader(folder, 3, "test")
    admin_ids, admin_paths, gt3d, admin_boxes = official_data_loader(folder, 3, "admin")  # KeyError before: bbox
    assert rgb_ids == admin_ids == list(range(4 * 9)) and rgb_paths == admin_paths and rgb_boxes == admin_boxes
    # geometry of the ground truth the official scorer reads: R X (mm, rounded to 0.01) and pinhole K (R X + t) / z
    for sid, path in enumerate(admin_paths):
        X, cam = table[parse(path)]
        np.testing.assert_allclose(gt3d[sid], X @ cam.R.T, atol=0.005 + 1e-9)
        x0, y0, x1, y1 = admin_boxes[sid]
        assert 0 <= x0 < x1 < cam.image_size[0] and 0 <= y0 < y1 < cam.image_size[1]
    rig = h36m_rig("S8")
    for task in (1, 2):  # the admin 2D is the pinhole projection K (R X + t) / z of the admin 3D R X
        ids, gt2d, gt3d, _ = official_data_loader(folder, task, "admin")
        for sid, uv, rx in zip(ids, gt2d, gt3d):
            cam = rig.cameras[sid % 4]
            p = (rx + cam.t) @ cam.K.T
            np.testing.assert_allclose(uv, p[:, :2] / p[:, 2:], atol=0.01)


def test_the_i2d_input_is_masked_with_zeros_and_confidences(export_dir):
    folder = export_dir / "json"
    ids, inputs, _, _ = official_data_loader(folder, 2, "test")
    _, truth, _, _ = official_data_loader(folder, 2, "admin")
    raw = json.loads((folder / "I2Dto3D_test_2d.json").read_text())
    conf = np.array([[raw[str(i)]["keypoints_2d"][str(j)]["confidence"] for j in range(J_OFFICIAL)] for i in ids])
    assert set(np.unique(conf).tolist()) == {0, 1}
    hidden = conf == 0
    assert 0.05 < hidden.mean() < 0.6
    np.testing.assert_array_equal(inputs[hidden], 0.0)
    np.testing.assert_array_equal(inputs[~hidden], truth[~hidden])
    # the H3WB modes: a whole face or hand, or random keypoints
    for row in hidden:
        whole_part = any(row[p].all() and row.sum() == p.stop - p.start for p in (FACE, LEFT_HAND, RIGHT_HAND))
        assert whole_part or not row[FACE].all()


@pytest.mark.parametrize("task", [1, 2, 3])
def test_the_scorer_agrees_with_the_official_test_score(export_dir, task, tmp_path):
    folder = export_dir / "json"
    rng = np.random.default_rng(task)
    ids, _, gt, _ = official_data_loader(folder, task, "admin")
    pred = gt + rng.normal(0.0, 20.0, gt.shape)
    path = tmp_path / "pred.json"
    extra = [10_000 + i for i in range(4)]  # a superset: the official scorer looks up only its ids
    official_predictions(path, [*ids, *extra], np.concatenate([pred, pred[:4]]))
    want = official_test_score(path, folder, task)
    got = score_predictions(path, folder, {1: "2Dto3D", 2: "I2Dto3D", 3: "RGBto3D"}[task])
    assert got["ignored_ids"] == 4
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=2e-4), key


@pytest.mark.parametrize("fold", [1, 5])
def test_the_scorer_agrees_in_cross_validation(export_dir, fold, tmp_path):
    folder = export_dir / "json"
    ids, _, gt, _ = official_data_loader(folder, 1, "train")
    pred = gt + np.random.default_rng(fold).normal(0.0, 10.0, gt.shape)
    path = tmp_path / f"pred_cv{fold}.json"
    official_predictions(path, ids, pred)
    want = official_test_score(path, folder, 1, cross_validation=fold)
    got = score_predictions(path, folder, "2Dto3D", cross_validation=fold)
    assert got["num_samples"] == 12
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=2e-4), key


# ---------------------------------------------------------------------------------------------------------------
# the official npz


def official_npz(path):
    """What ``Human3WBDataset.__init__`` reads: metadata and train_data (pickled), sides, face, cameras, poses."""
    check = np.load(path, allow_pickle=True)
    metadata = check["metadata"].item()
    train_data = check["train_data"].item()
    sides = (metadata["left_side"], metadata["right_side"])
    num_face = len(metadata["face"])
    data = {}
    for subject, actions in train_data.items():
        data[subject] = {}
        for action, act in actions.items():
            data[subject][action] = {
                "positions": act["global_3d"].squeeze(),
                "cameras": [metadata[subject][cam] for cam in OFFICIAL_CAMERAS],
                "positions_3d": [act[cam]["camera_3d"].squeeze() for cam in OFFICIAL_CAMERAS],
                "pose_2d": [act[cam]["pose_2d"].squeeze() for cam in OFFICIAL_CAMERAS],
                "sample_id": [act[cam]["sample_id"] for cam in OFFICIAL_CAMERAS],
                "frame_id": act["frame_id"],
            }
    return metadata, sides, num_face, data


def quat_to_matrix(q):
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_the_official_dataset_class_reads_the_npz(export_dir, sequences):
    metadata, (left, right), num_face, data = official_npz(export_dir / "h3wb_videopose3d.npz")
    assert sorted(data) == ["S1"]  # the train split only, as the official release
    assert sorted(data["S1"]) == ["Eating 2", "Walking 1"]
    assert num_face == FACE.stop - FACE.start
    assert not set(left) & set(right) and len(left) == len(right)
    assert all(skeleton.FLIP_INDEX[j] in right for j in left)
    assert {"left_eye", "left_wrist", "left_big_toe", "left_hand_root"} <= {skeleton.NAMES[j] for j in left}
    assert metadata["body"] == list(range(17)) and metadata["left_hand"] == list(range(91, 112))
    assert list(h36m_rig("S1").names) == OFFICIAL_CAMERAS  # the order Human3WBDataset hard-codes
    train = load_h3wb_json(export_dir / "json" / "2Dto3D_train.json")
    by_seq = {s.sequence: s for s in sequences}
    for name, entry in data["S1"].items():
        seq = by_seq[name]
        X = entry["positions"]  # (T, J, 3) world metres
        np.testing.assert_array_equal(entry["frame_id"], np.sort(seq.frames))
        np.testing.assert_allclose(X * 1000.0, seq.keypoints_3d[np.argsort(seq.frames)], atol=0.05)
        for c, (cam_meta, cam3d, uv, sid) in enumerate(zip(entry["cameras"], entry["positions_3d"], entry["pose_2d"],
                                                           entry["sample_id"])):
            R, T = np.asarray(cam_meta["R"]), np.asarray(cam_meta["T"])
            K = np.asarray(cam_meta["K_over_1000"]) * 1000.0
            # camera_3d = R X + T in metres, with the metadata's metre translation
            np.testing.assert_allclose(cam3d, X @ R.T + T, atol=1e-5)
            # the official metre cameras (quaternion, centre / 1000) move X the same way: VideoPose3D's
            # world_to_camera(X, R=orientation, t=translation / 1000) = R_q^T (X - t)
            q, centre = S1_EXTRINSICS[c]
            np.testing.assert_allclose(cam3d, (X - np.asarray(centre) / 1000.0) @ quat_to_matrix(q), atol=2e-3)
            # pose_2d is the pinhole projection of camera_3d
            proj = cam3d @ K.T
            np.testing.assert_allclose(uv, proj[..., :2] / proj[..., 2:], atol=2e-3)
            # sample_id points at the same view in 2Dto3D_train.json (R X in mm)
            np.testing.assert_allclose(train["keypoints_3d"][sid], (X * 1000.0) @ R.T, atol=0.1)
            np.testing.assert_allclose(train["keypoints_2d"][sid], uv, atol=0.01)


def test_the_calibration_is_the_official_tables():
    for subject in ("S1", "S8"):
        rig = h36m_rig(subject)
        assert list(rig.names) == OFFICIAL_CAMERAS
        for cam, (centre, focal, w, h) in zip(rig, INTRINSICS):
            np.testing.assert_allclose([cam.K[0, 2], cam.K[1, 2]], centre, atol=1e-3)
            np.testing.assert_allclose([cam.K[0, 0], cam.K[1, 1]], focal, atol=1e-3)
            assert cam.image_size == (w, h)
    for cam, (q, centre) in zip(h36m_rig("S1"), S1_EXTRINSICS):
        np.testing.assert_allclose(cam.center, centre, atol=1e-2)  # mm
        np.testing.assert_allclose(cam.R, quat_to_matrix(q).T, atol=1e-6)  # world to camera
