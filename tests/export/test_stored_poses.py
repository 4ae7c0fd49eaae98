"""StoredPoses: an exported recording's poses read from the build when indexed; the writers give the same files."""

import dataclasses
import filecmp

import h5py
import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.export import LazyViews, StoredPoses, write_flat_npz, write_h3wb_json, write_hdf5, write_official_npz
from tests.export.test_export import SPLIT, make_sequence

J = skeleton.NUM_KEYPOINTS


def _store(tmp_path, seq, pad=3, dtype=np.float32):
    """The sequence's poses at every other row of a longer (N, J, 3) file dataset; returns StoredPoses over them."""
    path = tmp_path / f"{seq.subject}_{seq.sequence}.h5"
    n = 2 * seq.num_frames + pad
    data = np.full((n, J, 3), np.nan, dtype=dtype)
    rows = 1 + 2 * np.arange(seq.num_frames)
    data[rows] = seq.keypoints_3d
    with h5py.File(path, "w") as f:
        f["keypoints_3d"] = data
    return StoredPoses(path, "keypoints_3d", rows)


def test_indexing_reads_the_chosen_rows_like_an_array(tmp_path):
    seq = make_sequence("S1", "Walking", "Walking 1", np.arange(0, 60, 5), seed=1)
    stored = _store(tmp_path, seq, dtype=np.float64)
    X = seq.keypoints_3d
    assert stored.shape == X.shape and len(stored) == len(X)
    for index in (0, -1, slice(None), slice(2, 7), np.array([9, 0, 3, 3]), np.array([0, 11]), X[:, 0, 0] > X[0, 0, 0],
                  np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(stored[index], X[index])
    np.testing.assert_array_equal(np.asarray(stored), X)
    stored.close()
    np.testing.assert_array_equal(stored[4], X[4])  # reopens
    stored.close()
    with pytest.raises(ValueError, match="increasing"):
        StoredPoses(stored.path, "keypoints_3d", np.array([3, 1]))


def test_a_stored_sequence_is_checked_like_an_array(tmp_path):
    seq = make_sequence("S1", "Walking", "Walking 1", [0, 5, 10], seed=1)
    stored = _store(tmp_path, seq)
    with h5py.File(stored.path, "r+") as f:
        f["keypoints_3d"][3, 7] = np.nan  # row 1 of the sequence
    with pytest.raises(ValueError, match=r"keypoints_3d must be finite.*frames \[5\]"):
        dataclasses.replace(seq, keypoints_3d=stored)


def test_the_writers_give_the_same_files_from_stored_poses(tmp_path):
    sequences = [
        make_sequence("S1", "Walking", "Walking 1", [15, 0, 5, 10, 20], seed=1),
        make_sequence("S1", "Eating", "Eating 2", [100, 105, 110], seed=2),
        make_sequence("S8", "Directions", "Directions 1", [0, 5, 10, 15, 20, 25, 30], seed=3),
    ]
    stored = [dataclasses.replace(s, keypoints_3d=_store(tmp_path, s)) for s in sequences]
    # the file holds float32 (as the pose stages write them): compare against the same values in memory
    in_memory = [dataclasses.replace(s, keypoints_3d=np.asarray(p.keypoints_3d)) for s, p in zip(sequences, stored)]
    out = {}
    for name, seqs in (("memory", in_memory), ("stored", stored)):
        d = tmp_path / name
        views = LazyViews(seqs) if name == "stored" else None  # as the export stage: projected when asked
        write_hdf5(d / "h3wb.h5", seqs, SPLIT, views=views)
        write_h3wb_json(d / "json", seqs, SPLIT, decimals=2, views=views)
        write_official_npz(d / "official.npz", seqs, SPLIT, views=views)
        write_flat_npz(d / "flat.npz", seqs, views=views)
        out[name] = d
    files = sorted(p.relative_to(out["memory"]) for p in out["memory"].rglob("*") if p.is_file())
    assert len(files) >= 10
    for rel in files:
        if rel.suffix == ".h5":  # HDF5 files carry no timestamps by default, but compare the arrays to be sure
            with h5py.File(out["memory"] / rel) as a, h5py.File(out["stored"] / rel) as b:
                for key in ("keypoints_3d", "keypoints_2d", "keypoints_3d_camera", "provenance", "frame"):
                    np.testing.assert_array_equal(a[key][:], b[key][:])
        else:
            assert filecmp.cmp(out["memory"] / rel, out["stored"] / rel, shallow=False), rel


def test_at_most_max_open_files_are_open(tmp_path, monkeypatch):
    monkeypatch.setattr(StoredPoses, "MAX_OPEN", 2)
    seqs = [make_sequence("S1", "Walking", f"Walking {i}", [0, 5, 10], seed=i) for i in range(1, 5)]
    stored = [_store(tmp_path, s) for s in seqs]
    for _ in range(2):
        for s, p in zip(seqs, stored):
            np.testing.assert_array_equal(p[1], s.keypoints_3d[1].astype(np.float32))
            assert sum(q._file is not None for q in stored) <= 2
    for p in stored:
        p.close()
    assert not any(q._file is not None for q in stored)


def test_the_writers_give_the_same_files_a_few_poses_at_a_time(tmp_path, monkeypatch):
    """Blocks of 2 poses (shorter than every recording, the files written and checked block by block): the same
    files as in one block per recording."""
    from build_h3wb.export import ExportSequence
    from build_h3wb.export import views as views_module

    sequences = [
        make_sequence("S1", "Walking", "Walking 1", [15, 0, 5, 10, 20], seed=1),  # frames out of order
        make_sequence("S8", "Directions", "Directions 1", [0, 5, 10, 15, 20, 25, 30], seed=3),
    ]
    out = {}
    for name, block in (("whole", 1000), ("blocks", 2)):
        monkeypatch.setattr(views_module, "BLOCK_ROWS", block)
        monkeypatch.setattr(ExportSequence, "CHECK_ROWS", block)
        (tmp_path / name).mkdir()
        stored = [dataclasses.replace(s, keypoints_3d=_store(tmp_path / name, s)) for s in sequences]
        d = out[name] = tmp_path / name / "out"
        views = LazyViews(stored)
        write_hdf5(d / "h3wb.h5", stored, SPLIT, views=views)
        write_official_npz(d / "official.npz", stored, SPLIT, views=views)
        write_flat_npz(d / "flat.npz", stored, views=views)
        for p in stored:
            p.keypoints_3d.close()
    assert filecmp.cmp(out["whole"] / "flat.npz", out["blocks"] / "flat.npz", shallow=False)
    assert filecmp.cmp(out["whole"] / "official.npz", out["blocks"] / "official.npz", shallow=False)
    with h5py.File(out["whole"] / "h3wb.h5") as a, h5py.File(out["blocks"] / "h3wb.h5") as b:
        assert sorted(a) == sorted(b)
        for key in ("keypoints_3d", "keypoints_2d", "keypoints_2d_distorted", "keypoints_3d_camera", "bbox",
                    "provenance", "quality", "frame", "h3wb_pose_index"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
    # a pose that is not finite is found in whichever block it is
    seq = sequences[1]
    (tmp_path / "nan").mkdir()
    stored = _store(tmp_path / "nan", seq)
    with h5py.File(stored.path, "r+") as f:
        f["keypoints_3d"][11, 3] = np.nan  # row 5 of the sequence: the third block
    with pytest.raises(ValueError, match=r"keypoints_3d must be finite.*frames \[25\]"):
        dataclasses.replace(seq, keypoints_3d=stored)
