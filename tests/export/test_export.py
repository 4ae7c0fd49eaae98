import json
import re
import textwrap

import h5py
import numpy as np
import pytest
from conftest import assert_same_tree

from build_h3wb import export, skeleton
from build_h3wb.export import (
    H3WB_FILES,
    I2D_MASKS_FILE,
    ExportSequence,
    LazyViews,
    Provenance,
    image_relpath,
    keypoint_bbox,
    load_flat_npz,
    load_h3wb_json,
    read_hdf5,
    sequence_views,
    write_flat_npz,
    write_h3wb_json,
    write_hdf5,
    write_official_npz,
)
from build_h3wb.export import h3wb_json as h3wb_json_module
from build_h3wb.export import views as views_module
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.leaderboard.masking import load_masks
from build_h3wb.synthetic.motion import generate_motion

J = skeleton.NUM_KEYPOINTS
SPLIT = {"S1": "train", "S5": "train", "S6": "train", "S7": "train", "S8": "test"}


def make_sequence(subject, action, sequence, frames, seed):
    rig = h36m_rig(subject)
    frames = np.asarray(frames, dtype=np.int64)
    vol = rig.capture_volume
    kp = generate_motion(subject, action, frames / 50.0, center_xy_mm=vol["center_xy"],
                         half_extent_xy_mm=(800.0, 800.0))
    rng = np.random.default_rng(seed)
    return ExportSequence(
        subject=subject, action=action, sequence=sequence, frames=frames, keypoints_3d=kp,
        provenance=rng.integers(0, len(Provenance), size=(len(frames), J)).astype(np.uint8),
        quality=rng.uniform(0.0, 10.0, len(frames)), rig=rig,
    )


@pytest.fixture(scope="module")
def sequences():
    return [
        make_sequence("S1", "Walking", "Walking 1", [15, 0, 5, 10, 20], seed=1),
        make_sequence("S1", "Eating", "Eating 2", [100, 105, 110], seed=2),
        make_sequence("S8", "Directions", "Directions 1", [0, 5, 10, 15, 20, 25, 30], seed=3),
        make_sequence("S8", "WalkTogether", "WalkTogether 2", [40, 45], seed=4),
        make_sequence("S9", "Posing", "Posing 1", [0, 5], seed=5),  # not in the split
    ]


@pytest.fixture(scope="module")
def json_dir(tmp_path_factory, sequences):
    out = tmp_path_factory.mktemp("h3wb")
    counts = write_h3wb_json(out, sequences, SPLIT)
    return out, counts


def pose_lookup(sequences):
    """image-path key (subject, sequence, camera, frame) -> (world pose (J, 3), quality, camera)."""
    table = {}
    for s in sequences:
        for t, f in enumerate(s.frames):
            for cam in s.rig:
                table[(s.subject, s.sequence, cam.name, int(f))] = (s.keypoints_3d[t], s.quality[t], cam)
    return table


PATH_RE = re.compile(r"^(S\d+)/Images/(.+)\.(\d+)/frame_(\d{4,})\.jpg$")


def parse_path(p):
    m = PATH_RE.match(p)
    assert m, p
    return m.group(1), m.group(2), m.group(3), int(m.group(4))


def pinhole(K, R, t, X):
    """Independent K (R X + t) / z."""
    xc = X @ R.T + t
    uvw = xc @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


# ---------------------------------------------------------------------------------------------------------------
# small functions


def test_image_relpath_format():
    assert image_relpath("S1", "Walking 1", "54138969", 5) == "S1/Images/Walking 1.54138969/frame_0005.jpg"
    assert image_relpath("S5", "Directions 2", "60457274", 125) == "S5/Images/Directions 2.60457274/frame_0125.jpg"
    assert image_relpath("S8", "Eating", "55011271", 12345).endswith("frame_12345.jpg")
    with pytest.raises(ValueError, match="frame must be >= 0"):
        image_relpath("S1", "Walking 1", "54138969", -1)


def test_keypoint_bbox_contains_and_clips():
    uv = np.array([[[10.2, 20.7], [50.5, 80.1]], [[-30.0, 5.0], [990.0, 1001.5]]])
    box = keypoint_bbox(uv, (1000, 1002), margin=0.0)
    assert box.dtype == np.int32 and box.shape == (2, 4)
    assert box[0].tolist() == [10, 20, 51, 81]
    assert box[1].tolist() == [0, 5, 990, 1001]
    wide = keypoint_bbox(uv[:1], (1000, 1002), margin=0.1)
    assert wide[0].tolist() == [4, 14, 57, 87]  # pad 0.1 * 59.4 px
    with pytest.raises(ValueError, match=r"\(\.\.\., K, 2\)"):
        keypoint_bbox(np.zeros((3, 3)), (10, 10))


def test_export_sequence_validates(sequences):
    s = sequences[0]
    kw = dict(subject="S1", action="Walking", sequence="Walking 1", frames=s.frames, keypoints_3d=s.keypoints_3d,
              provenance=s.provenance, quality=s.quality, rig=s.rig)
    with pytest.raises(ValueError, match="keypoints_3d has shape"):
        ExportSequence(**(kw | {"keypoints_3d": s.keypoints_3d[:, :10]}))
    bad = s.keypoints_3d.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        ExportSequence(**(kw | {"keypoints_3d": bad}))
    with pytest.raises(ValueError, match="provenance holds codes"):
        ExportSequence(**(kw | {"provenance": np.full_like(s.provenance, 7)}))
    with pytest.raises(ValueError, match="quality has shape"):
        ExportSequence(**(kw | {"quality": s.quality[:2]}))
    with pytest.raises(ValueError, match="distinct"):
        ExportSequence(**(kw | {"frames": np.zeros_like(s.frames)}))
    with pytest.raises(ValueError, match="without '/'"):
        ExportSequence(**(kw | {"sequence": "a/b"}))
    assert s.keypoints_3d.flags.writeable is False and s.provenance.dtype == np.uint8


def test_duplicate_sequence_and_bad_split_rejected(tmp_path, sequences):
    with pytest.raises(ValueError, match="given twice"):
        write_h3wb_json(tmp_path, [sequences[0], sequences[0]], SPLIT)
    for writer in (lambda: write_h3wb_json(tmp_path, [], SPLIT), lambda: write_hdf5(tmp_path / "x.h5", [], SPLIT),
                   lambda: write_flat_npz(tmp_path / "x.npz", [])):
        with pytest.raises(ValueError, match="no sequences"):
            writer()
    with pytest.raises(ValueError, match="split values"):
        write_h3wb_json(tmp_path, sequences, {"S1": "val"})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# H3WB JSON


def test_json_files_and_counts(json_dir, sequences):
    out, counts = json_dir
    assert sorted(p.name for p in out.iterdir()) == sorted([*H3WB_FILES, I2D_MASKS_FILE])
    n_train = sum(s.num_frames for s in sequences if SPLIT.get(s.subject) == "train")
    n_test = sum(s.num_frames for s in sequences if SPLIT.get(s.subject) == "test")
    assert counts["poses"] == {"train": n_train, "test": n_test}
    assert counts["skipped_poses"] == {"S9": 2}
    assert counts["samples"]["2Dto3D_train.json"] == 4 * n_train
    assert counts["samples"]["RGBto3D_test_img.json"] == 4 * n_test
    for name in H3WB_FILES:
        data = load_h3wb_json(out / name)
        assert len(data["ids"]) == counts["samples"][name]
        assert data["ids"].tolist() == sorted(int(k) for k in json.loads((out / name).read_text()))
    # skipped subject nowhere
    for name in ("RGBto3D_train.json", "RGBto3D_test_img.json"):
        assert not any(p.startswith("S9/") for p in load_h3wb_json(out / name)["image_path"])


def test_json_train_geometry_and_order(json_dir, sequences):
    out, _ = json_dir
    d = load_h3wb_json(out / "2Dto3D_train.json")
    assert d["ids"].tolist() == list(range(len(d["ids"])))
    assert (out / "RGBto3D_train.json").read_bytes() == (out / "2Dto3D_train.json").read_bytes()
    assert (out / "RGBto3D_train.json").stat().st_ino == (out / "2Dto3D_train.json").stat().st_ino  # one write
    raw = json.loads((out / "2Dto3D_train.json").read_text())
    assert list(raw["0"]) == ["image_path", "bbox", "keypoints_2d", "keypoints_3d"]
    assert list(raw["0"]["keypoints_2d"]) == [str(j) for j in range(J)]
    assert all(isinstance(v, int) for v in raw["0"]["bbox"].values())
    table = pose_lookup(sequences)
    qualities = []
    for k in range(len(d["ids"]) // 4):
        worlds = []
        for c in range(4):
            i = 4 * k + c
            subject, seq, cam_name, frame = parse_path(d["image_path"][i])
            X, q, cam = table[(subject, seq, cam_name, frame)]
            assert cam_name == h36m_rig(subject).names[c]  # rig camera order
            K, R, t = np.asarray(cam.K), np.asarray(cam.R), np.asarray(cam.t)
            np.testing.assert_allclose(d["keypoints_2d"][i], pinhole(K, R, t, X), rtol=0, atol=1e-9)
            np.testing.assert_allclose(d["keypoints_3d"][i], X @ R.T, rtol=0, atol=1e-9)  # R X, no t
            worlds.append(d["keypoints_3d"][i] @ R)  # R^T back to the world
            x0, y0, x1, y1 = d["bbox"][i]
            w, h = cam.image_size
            assert 0 <= x0 < x1 <= w - 1 and 0 <= y0 < y1 <= h - 1
            uv = d["keypoints_2d"][i]
            assert (uv[:, 0] >= x0).all() and (uv[:, 0] <= x1).all()
            assert (uv[:, 1] >= y0).all() and (uv[:, 1] <= y1).all()
        for wpose in worlds[1:]:
            np.testing.assert_allclose(wpose, worlds[0], atol=1e-6)
        qualities.append(q)
    assert len(qualities) == sum(s.num_frames for s in sequences if s.subject == "S1")
    assert np.all(np.diff(qualities) >= 0), "train file must be ordered by quality, best first"


def test_json_test_sets_disjoint_and_alternating(json_dir, sequences):
    out, counts = json_dir
    n_test = counts["poses"]["test"]
    d2 = load_h3wb_json(out / "2Dto3D_test_2d.json")
    di = load_h3wb_json(out / "I2Dto3D_test_2d.json")
    assert d2["keypoints_3d"] is None and d2["image_path"] is None and d2["bbox"] is None
    ids2, idsi = d2["ids"].tolist(), di["ids"].tolist()
    assert ids2 == [g * 8 + c for g in range((n_test + 1) // 2) for c in range(4)]
    assert idsi == [g * 8 + 4 + c for g in range(n_test // 2) for c in range(4)]
    assert not set(ids2) & set(idsi)
    # the official loader's index formulas
    raw2 = json.loads((out / "2Dto3D_test_2d.json").read_text())
    rawi = json.loads((out / "I2Dto3D_test_2d.json").read_text())
    assert all(str((i // 4) * 8 + i % 4) in raw2 for i in range(len(raw2)))
    assert all(str((i // 4) * 8 + i % 4 + 4) in rawi for i in range(len(rawi)))
    g2, gi = load_h3wb_json(out / "2Dto3D_test_3d.json"), load_h3wb_json(out / "I2Dto3D_test_3d.json")
    assert g2["ids"].tolist() == ids2 and gi["ids"].tolist() == idsi
    # ground truth carries the complete 2D too (the official admin loader reads it)
    np.testing.assert_array_equal(g2["keypoints_2d"], d2["keypoints_2d"])
    # the I2D input is the masked ground-truth 2D: hidden keypoints at 0 with confidence 0
    masks, _ = load_masks(out / I2D_MASKS_FILE)
    assert masks.shape == (len(idsi), J) and masks.any() and not masks.all()
    np.testing.assert_array_equal(di["confidence_2d"], (~masks).astype(float))
    np.testing.assert_array_equal(di["keypoints_2d"][masks], 0.0)
    np.testing.assert_array_equal(di["keypoints_2d"][~masks], gi["keypoints_2d"][~masks])
    assert d2["confidence_2d"] is None
    # RGB test: every test sample, same geometry; ground truth lines up
    img, gt = load_h3wb_json(out / "RGBto3D_test_img.json"), load_h3wb_json(out / "RGBto3D_test_3d.json")
    assert img["keypoints_2d"] is None and img["keypoints_3d"] is None
    assert img["ids"].tolist() == gt["ids"].tolist() == list(range(4 * n_test))
    assert gt["image_path"] == img["image_path"] and np.array_equal(gt["bbox"], img["bbox"])
    assert sorted(ids2 + idsi) == img["ids"].tolist()
    table = pose_lookup(sequences)
    all_2d = np.concatenate([g2["keypoints_2d"], gi["keypoints_2d"]])
    all_3d = np.concatenate([g2["keypoints_3d"], gi["keypoints_3d"]])
    order = np.argsort(ids2 + idsi)
    qualities = []
    for sid, path in enumerate(img["image_path"]):
        subject, seq, cam_name, frame = parse_path(path)
        assert subject == "S8"
        X, q, cam = table[(subject, seq, cam_name, frame)]
        np.testing.assert_allclose(gt["keypoints_3d"][sid], X @ np.asarray(cam.R).T, atol=1e-9)
        np.testing.assert_allclose(all_3d[order][sid], gt["keypoints_3d"][sid], rtol=0, atol=0)
        np.testing.assert_allclose(all_2d[order][sid], pinhole(cam.K, cam.R, cam.t, X), atol=1e-9)
        if sid % 4 == 0:
            qualities.append(q)
    assert np.all(np.diff(qualities) >= 0)


def test_json_rgb_test_permutation(tmp_path, sequences, json_dir):
    write_h3wb_json(tmp_path, sequences, SPLIT, rgb_test_seed=7)
    unpermuted = load_h3wb_json(json_dir[0] / "RGBto3D_test_img.json")
    img, gt = load_h3wb_json(tmp_path / "RGBto3D_test_img.json"), load_h3wb_json(tmp_path / "RGBto3D_test_3d.json")
    n = len(img["ids"])
    assert img["ids"].tolist() == list(range(n))
    plain = load_h3wb_json(tmp_path / "2Dto3D_test_2d.json")  # unaffected
    assert plain["ids"][:4].tolist() == [0, 1, 2, 3]
    assert img["image_path"] != unpermuted["image_path"]
    assert sorted(img["image_path"]) == sorted(unpermuted["image_path"])
    table = pose_lookup(sequences)
    for sid, path in enumerate(img["image_path"]):
        X, _, cam = table[parse_path(path)]
        np.testing.assert_allclose(gt["keypoints_3d"][sid], X @ np.asarray(cam.R).T, atol=1e-9)


def test_json_decimals_round(tmp_path, sequences, json_dir):
    write_h3wb_json(tmp_path, sequences[:1], SPLIT, decimals=3)
    short = load_h3wb_json(tmp_path / "2Dto3D_train.json")
    full = load_h3wb_json(json_dir[0] / "2Dto3D_train.json")
    same = [i for i, p in enumerate(full["image_path"]) if p in set(short["image_path"])]
    assert len(same) == len(short["ids"])
    lookup = {p: i for i, p in enumerate(full["image_path"])}
    for i, p in enumerate(short["image_path"]):
        np.testing.assert_allclose(short["keypoints_2d"][i], full["keypoints_2d"][lookup[p]], atol=5e-4 + 1e-9)
        np.testing.assert_array_equal(short["keypoints_3d"][i], np.round(full["keypoints_3d"][lookup[p]], 3))


def test_load_h3wb_json_errors(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"0": {"keypoints_2d": {"0": {"x": 1, "y": 2}}}}))
    with pytest.raises(ValueError, match="lacks joint"):
        load_h3wb_json(p)
    p.write_text(json.dumps({"0": {"image_path": "a"}, "1": {}}))
    with pytest.raises(ValueError, match="sample 1 lacks 'image_path'"):
        load_h3wb_json(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_h3wb_json(p)


# ---------------------------------------------------------------------------------------------------------------
# HDF5


def test_hdf5_round_trip(tmp_path, sequences, json_dir):
    path = tmp_path / "export.h5"
    counts = write_hdf5(path, sequences, SPLIT)
    N = sum(s.num_frames for s in sequences)
    assert counts == {"poses": N, "train": 8, "test": 9, "unassigned": 2}
    d = read_hdf5(path)
    shapes = {"keypoints_3d": ((N, J, 3), np.float64), "keypoints_2d": ((N, 4, J, 2), np.float64),
              "keypoints_2d_distorted": ((N, 4, J, 2), np.float64), "keypoints_3d_camera": ((N, 4, J, 3), np.float64),
              "bbox": ((N, 4, 4), np.int32), "provenance": ((N, J), np.uint8), "quality": ((N,), np.float64),
              "frame": ((N,), np.int64), "h3wb_pose_index": ((N,), np.int64)}
    for key, (shape, dtype) in shapes.items():
        assert d[key].shape == shape and d[key].dtype == dtype, key
    for key in ("subject", "action", "sequence", "split"):
        assert d[key].shape == (N,) and d[key].dtype.kind == "U"
    assert d["keypoint_names"].tolist() == list(skeleton.NAMES)
    with h5py.File(path, "r") as f:
        # float keypoints plain (gzip saved ~20% at 20x the write time), the integer datasets compressed
        assert f["keypoints_2d"].compression is None and f["keypoints_2d"].chunks is not None
        assert f["provenance"].compression == "gzip"
        assert h5py.check_string_dtype(f["subject"].dtype) is not None
    assert sorted(d["cameras"]) == ["S1", "S8", "S9"]
    row = 0
    for s in sequences:
        o = np.argsort(s.frames)
        rows = slice(row, row + s.num_frames)
        np.testing.assert_array_equal(d["frame"][rows], s.frames[o])
        np.testing.assert_array_equal(d["keypoints_3d"][rows], s.keypoints_3d[o])
        np.testing.assert_array_equal(d["provenance"][rows], s.provenance[o])
        np.testing.assert_array_equal(d["quality"][rows], s.quality[o])
        assert set(d["subject"][rows]) == {s.subject} and set(d["sequence"][rows]) == {s.sequence}
        assert set(d["action"][rows]) == {s.action}
        assert set(d["split"][rows]) == {SPLIT.get(s.subject, "unassigned")}
        cams = d["cameras"][s.subject]
        assert cams["names"].tolist() == list(s.rig.names) and cams["distortion_model"] == "h36m"
        for c, cam in enumerate(s.rig):
            np.testing.assert_array_equal(cams["K"][c], cam.K)
            np.testing.assert_array_equal(cams["t"][c], cam.t)
            assert tuple(cams["image_size"][c]) == cam.image_size
            X = s.keypoints_3d[o]
            np.testing.assert_allclose(d["keypoints_2d"][rows, c], cam.project(X, distort_points=False), atol=1e-9)
            np.testing.assert_allclose(d["keypoints_2d_distorted"][rows, c], cam.project(X), atol=1e-9)
            np.testing.assert_allclose(d["keypoints_3d_camera"][rows, c], cam.world_to_camera(X), atol=1e-9)
            shift = np.linalg.norm(d["keypoints_2d_distorted"][rows, c] - d["keypoints_2d"][rows, c], axis=-1)
            assert 0.05 < shift.max() < 15.0, shift.max()  # lens distortion: sub-pixel to a few pixels
            for uv in (d["keypoints_2d"][rows, c], d["keypoints_2d_distorted"][rows, c]):
                b = d["bbox"][rows, c][:, None, :]
                assert (uv >= b[..., :2]).all() and (uv <= b[..., 2:]).all()
        row += s.num_frames
    assert (d["h3wb_pose_index"][d["split"] == "unassigned"] == -1).all()
    # h3wb_pose_index links rows to the JSON ids 4k + c
    out, _ = json_dir
    train = load_h3wb_json(out / "2Dto3D_train.json")
    for r in np.nonzero(d["split"] == "train")[0]:
        k = d["h3wb_pose_index"][r]
        R = d["cameras"][d["subject"][r]]["R"]
        for c in range(4):
            np.testing.assert_allclose(train["keypoints_3d"][4 * k + c], d["keypoints_3d"][r] @ R[c].T, atol=1e-9)
    assert sorted(d["h3wb_pose_index"][d["split"] == "test"].tolist()) == list(range(9))


def test_readme_snippet_runs(tmp_path, sequences, monkeypatch, capsys):
    path = tmp_path / "h3wb_export.h5"
    write_hdf5(path, sequences[:2], SPLIT)
    doc = export.__doc__
    start = doc.index("    import h5py")
    block = textwrap.dedent(doc[start:doc.index("\n\n", doc.index("print(", start))])
    assert 5 <= len(block.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "<readme snippet>", "exec"), {})
    printed = capsys.readouterr().out
    assert f"({sum(s.num_frames for s in sequences[:2])}, {J}, 3)" in printed and "'54138969'" in printed


def test_read_hdf5_rejects_other_files(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "nope"
    with pytest.raises(ValueError, match="expected 'build_h3wb.export.h5/1'"):
        read_hdf5(p)


def test_pose_behind_camera_is_an_error(tmp_path, sequences):
    s = sequences[0]
    kp = s.keypoints_3d.copy()
    cam = s.rig.cameras[0]
    kp[2] = kp[2] - kp[2].mean(0) + cam.center - 1500.0 * cam.optical_axis  # 1.5 m behind camera 0
    moved = ExportSequence(s.subject, s.action, s.sequence, s.frames, kp, s.provenance, s.quality, s.rig)
    with pytest.raises(ValueError, match="behind camera"):
        write_hdf5(tmp_path / "x.h5", [moved], SPLIT)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# npz


def test_flat_npz(tmp_path, sequences):
    path = tmp_path / "h3wb_flat.npz"
    counts = write_flat_npz(path, sequences)
    assert counts == {"poses": sum(s.num_frames for s in sequences), "sequences": len(sequences)}
    with np.load(path, allow_pickle=False) as z:
        assert "positions_3d/S1/Walking 1/global_3d" in z.files
        assert "positions_3d/S1/Walking 1/camera_3d/54138969" in z.files
        assert z["metadata"].dtype.kind == "U"
    d = load_flat_npz(path)
    meta = d["metadata"]
    assert meta["num_keypoints"] == J and meta["sequences"]["S1"]["Walking 1"]["action"] == "Walking"
    for s in sequences:
        o = np.argsort(s.frames)
        e = d["positions_3d"][s.subject][s.sequence]
        np.testing.assert_array_equal(e["frame_id"], s.frames[o])
        np.testing.assert_array_equal(e["global_3d"], s.keypoints_3d[o])
        assert meta["camera_order"][s.subject] == list(s.rig.names)
        for cam in s.rig:
            X = s.keypoints_3d[o]
            assert e["camera_3d"][cam.name].shape == (s.num_frames, J, 3)
            np.testing.assert_allclose(e["camera_3d"][cam.name], cam.world_to_camera(X), atol=1e-9)
            np.testing.assert_allclose(e["pose_2d"][cam.name], pinhole(cam.K, cam.R, cam.t, X), atol=1e-9)
            np.testing.assert_allclose(e["pose_2d_distorted"][cam.name], cam.project(X), atol=1e-9)
            m = meta["cameras"][s.subject][cam.name]
            np.testing.assert_allclose(np.asarray(m["K_over_1000"]) * 1000, cam.K)
            np.testing.assert_allclose(np.asarray(m["T"]) * 1000, cam.t)
            np.testing.assert_allclose(np.asarray(m["center"]) * 1000, cam.center)
            assert m["distortion"] == cam.dist.tolist() and (m["res_w"], m["res_h"]) == cam.image_size


# ---------------------------------------------------------------------------------------------------------------
# atomic writes


class Boom(RuntimeError):
    pass


def _fail_after(monkeypatch, module, name, n):
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise Boom("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def test_json_interrupted_leaves_no_partial_file(tmp_path, sequences, monkeypatch):
    _fail_after(monkeypatch, h3wb_json_module, "_format_sample", 5)
    with pytest.raises(Boom):
        write_h3wb_json(tmp_path, sequences, SPLIT)
    assert list(tmp_path.iterdir()) == []


def test_json_interrupted_in_test_files_keeps_finished_files_whole(tmp_path, sequences, monkeypatch):
    n_train = 4 * sum(s.num_frames for s in sequences if SPLIT.get(s.subject) == "train")
    _fail_after(monkeypatch, h3wb_json_module, "_format_sample", n_train + 3)
    with pytest.raises(Boom):
        write_h3wb_json(tmp_path, sequences, SPLIT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2Dto3D_train.json", "RGBto3D_train.json"]
    assert len(load_h3wb_json(tmp_path / "RGBto3D_train.json")["ids"]) == n_train


def test_hdf5_and_npz_interrupted_leave_no_file(tmp_path, sequences, monkeypatch):
    _fail_after(monkeypatch, views_module, "views_of", 2)
    with pytest.raises(Boom):
        write_hdf5(tmp_path / "export.h5", sequences, SPLIT)
    with pytest.raises(Boom):
        write_flat_npz(tmp_path / "export.npz", sequences)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_rewrite(tmp_path, sequences, monkeypatch):
    path = tmp_path / "export.h5"
    write_hdf5(path, sequences[:1], SPLIT)
    before = path.read_bytes()
    _fail_after(monkeypatch, views_module, "views_of", 1)
    with pytest.raises(Boom):
        write_hdf5(path, sequences, SPLIT)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["export.h5"]


def test_shared_views_give_the_same_files(tmp_path, sequences):
    views = sequence_views(sequences, 0.1)
    a, b = tmp_path / "a", tmp_path / "b"
    write_h3wb_json(a, sequences, SPLIT, views=views)
    write_h3wb_json(b, sequences, SPLIT)
    for name in H3WB_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    with pytest.raises(ValueError, match="views holds 1 entries for"):
        write_hdf5(tmp_path / "x.h5", sequences, SPLIT, views=views[:1])


def test_link_falls_back_to_a_symlink_then_a_copy(tmp_path, monkeypatch):
    src = tmp_path / "a.json"
    src.write_text("{}")
    assert export.link_or_copy(src, tmp_path / "b.json") == "hardlink"

    def refuse(*args, **kwargs):
        raise OSError("not on this file system")

    monkeypatch.setattr(h3wb_json_module.os, "link", refuse)
    assert export.link_or_copy(src, tmp_path / "c.json") == "symlink"
    assert (tmp_path / "c.json").is_symlink() and (tmp_path / "c.json").read_text() == "{}"
    monkeypatch.setattr(h3wb_json_module.os, "symlink", refuse)
    assert export.link_or_copy(src, tmp_path / "d.json") == "copy"
    assert not (tmp_path / "d.json").is_symlink() and (tmp_path / "d.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json", "d.json"]


def test_number_text_writes_what_repr_writes():
    rng = np.random.default_rng(0)
    values = np.concatenate([[0.0, -0.0, 0.004, -0.004, 0.005, 12.3, -12.3, 1e4, 99.995, 0.5, -0.5, 1.0, 123456.789],
                             rng.normal(0.0, 3000.0, 500), rng.uniform(-1.0, 1.0, 200)])[None]
    for d in (0, 1, 2, 3):
        text = export.h3wb_json.number_text(values, d)
        got = [bytes(t[t != 0]).decode() for t in text[0]]
        assert got == [repr(float(np.round(v, d))) for v in values[0]], d
    ints = export.h3wb_json.number_text(np.array([[0, 1, 7, 10, 1234]]), None)
    assert [bytes(t[t != 0]).decode() for t in ints[0]] == ["0", "1", "7", "10", "1234"]


def test_block_formatting_gives_the_per_sample_templates_bytes(tmp_path, sequences, monkeypatch):
    def per_sample(self, specs, fields):
        views = self._block_views(specs)
        return ",".join(self.text(sid, i, t, c, fields, v, m) for (sid, i, t, c, m), v in zip(specs, views))

    for decimals in (0, 2):
        fast, slow = tmp_path / f"fast{decimals}", tmp_path / f"slow{decimals}"
        write_h3wb_json(fast, sequences, SPLIT, decimals=decimals, rgb_test_seed=1)
        with monkeypatch.context() as m:
            m.setattr(h3wb_json_module._Samples, "block", per_sample)
            write_h3wb_json(slow, sequences, SPLIT, decimals=decimals, rgb_test_seed=1)
        for name in H3WB_FILES:
            assert (fast / name).read_bytes() == (slow / name).read_bytes(), (decimals, name)
        json.loads((fast / "I2Dto3D_test_2d.json").read_text())


def test_lazy_views_give_the_same_files(tmp_path, sequences):
    """The stage's LazyViews (projected when a writer asks, a block of samples at a time) write what the list does."""
    out = {}
    for name, views in (("list", sequence_views(sequences, 0.1)), ("lazy", LazyViews(sequences, 0.1))):
        d = out[name] = tmp_path / name
        write_h3wb_json(d / "json2", sequences, SPLIT, decimals=2, rgb_test_seed=0, views=views)
        write_h3wb_json(d / "json", sequences, SPLIT, views=views)
        write_hdf5(d / "x.h5", sequences, SPLIT, views=views)
        write_flat_npz(d / "f.npz", sequences, views=views)
        write_official_npz(d / "o.npz", sequences, SPLIT, views=views)
    for sub in ("json", "json2"):
        for name in H3WB_FILES:
            assert (out["list"] / sub / name).read_bytes() == (out["lazy"] / sub / name).read_bytes(), (sub, name)
    a, b = read_hdf5(out["list"] / "x.h5"), read_hdf5(out["lazy"] / "x.h5")
    for key in a:
        if key not in ("attrs", "cameras"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with np.load(out["list"] / "f.npz") as x, np.load(out["lazy"] / "f.npz") as y:
        assert x.files == y.files
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    with np.load(out["list"] / "o.npz", allow_pickle=True) as x, np.load(out["lazy"] / "o.npz", allow_pickle=True) as y:
        assert_same_tree(x["train_data"].item(), y["train_data"].item())


@pytest.mark.parametrize("rows", [0, 1, 5, 300])
def test_a_block_array_pickles_as_the_whole_array(rows):
    """A value whose arrays are given by row blocks pickles to the bytes of the value with the arrays themselves
    (the pickle module's own C pickler), small (SHORT_BINBYTES) and large, the dtype shared and memoised."""
    import io

    from build_h3wb.export.npz import BlockArray, _pickle_fragment, _StreamingPickler

    rng = np.random.default_rng(rows)
    a = rng.normal(size=(rows, J, 3)).astype(np.float32)
    b = rng.normal(size=(rows, J, 2)).astype(np.float32)
    whole = {"global_3d": a, "frame_id": np.arange(rows), "cam": {"pose_2d": b, "camera_3d": a + 1, "n": rows}}

    def blocks(x, n=2):
        return lambda: (x[s : s + n] for s in range(0, max(len(x), 1), n))

    lazy = {"global_3d": BlockArray(a.shape, np.float32, blocks(a)), "frame_id": np.arange(rows),
            "cam": {"pose_2d": BlockArray(b.shape, np.float32, blocks(b, 3)),
                    "camera_3d": BlockArray(a.shape, np.float32, blocks(a + 1, 7)), "n": rows}}
    out = io.BytesIO()
    _StreamingPickler(out, protocol=3).save(lazy)
    assert out.getvalue() == _pickle_fragment(whole)
    bad = BlockArray((rows + 1, J, 3), np.float32, blocks(a))
    with pytest.raises(AssertionError, match="blocks of"):
        _StreamingPickler(io.BytesIO(), protocol=3).save(bad)


def test_streamed_pickle_reads_as_the_whole_dict(tmp_path):
    """The official npz's train_data, pickled a sequence at a time, loads as np.savez of the whole dict."""
    rng = np.random.default_rng(0)
    tree = {
        "S1": {"Walking 1": {"global_3d": rng.normal(size=(3, J, 3)).astype(np.float32),
                             "frame_id": np.array([0, 5, 10]),
                             "54138969": {"pose_2d": rng.normal(size=(3, J, 2)), "sample_id": np.arange(3)}},
               "Eating 2": {"global_3d": np.zeros((0, J, 3), np.float32), "note": "empty", "n": 7}},
        "S5": {},
        "S6": {"Posing": {"shared": np.arange(4), "again": np.arange(4)}},
    }
    with open(tmp_path / "ref.npz", "wb") as fh:
        np.savez(fh, train_data=np.array(tree, dtype=object), metadata=np.array({"a": [1, 2]}, dtype=object))
    with open(tmp_path / "ours.npz", "wb") as fh:
        npz = export.npz._NpzWriter(fh)
        npz.add_pickled_dict("train_data", ((k, iter(v.items())) for k, v in tree.items()))
        npz.add("metadata", np.array({"a": [1, 2]}, dtype=object), allow_pickle=True)
        npz.close()
    with np.load(tmp_path / "ref.npz", allow_pickle=True) as x, np.load(tmp_path / "ours.npz", allow_pickle=True) as y:
        assert x.files == y.files == ["train_data", "metadata"]
        assert x["train_data"].shape == y["train_data"].shape == () and y["train_data"].dtype == object
        assert_same_tree(x["train_data"].item(), y["train_data"].item())
        assert x["metadata"].item() == y["metadata"].item()
