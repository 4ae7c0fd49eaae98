"""refine and filter read a recording a chunk of frames at a time: the same files as in one piece."""

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import run_stage

from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.geometry.sequence_check import person_size_px
from build_h3wb.stages.common import frame_chunks
from build_h3wb.stages.filter import _PersonSize
from build_h3wb.synthetic.motion import generate_motion

RIG = h36m_rig("S1")


def test_frame_chunks_cover_the_recording_with_clipped_context():
    chunks = list(frame_chunks(10, 4, 2, 1))
    assert chunks == [(slice(0, 5), slice(0, 4), slice(0, 4)), (slice(2, 9), slice(4, 8), slice(2, 6)),
                      (slice(6, 10), slice(8, 10), slice(2, 4))]
    for read, write, keep in chunks:  # the kept rows of what was read are the chunk's frames
        assert np.arange(10)[read][keep].tolist() == np.arange(10)[write].tolist()
    assert list(frame_chunks(3, 100)) == [(slice(0, 3), slice(0, 3), slice(0, 3))]
    assert list(frame_chunks(0, 5)) == [(slice(0, 0), slice(0, 0), slice(0, 0))]  # arrays of the right shapes
    with pytest.raises(ValueError, match="chunk_frames must be at least 1"):
        list(frame_chunks(10, 0))


def _detections(T=60):
    """(C, T, J, 3) float32 pixel detections of a walk, with views and frames where the body is not seen."""
    vol = RIG.capture_volume
    X = generate_motion("S1", "Walking", np.arange(T) / 10.0, center_xy_mm=vol["center_xy"],
                        half_extent_xy_mm=vol["half_extent_xy"])
    uv = np.stack([cam.project(X) for cam in RIG])  # (C, T, J, 2)
    score = np.full(uv.shape[:3], 0.9)
    score[0, 20:35] = 0.1  # 15 frames without a body: the running median has none, the view's median stands in
    score[1] = 0.1  # a view that never sees the body: the image's fallback
    score[2, ::3] = np.nan  # every third frame missing: the neighbours decide
    return np.concatenate([uv, score[..., None]], axis=-1).astype(np.float32)


@pytest.mark.parametrize("chunk", [5, 13, 100])
def test_person_size_read_in_chunks_is_that_of_the_whole_recording(chunk):
    det = _detections()
    whole = person_size_px(det[..., :2], det[..., 2], RIG, 0.3)  # (C, T)
    sizes = _PersonSize(det, RIG, 0.3, chunk)
    for read, _, _ in frame_chunks(det.shape[1], chunk, 1, 0):
        np.testing.assert_array_equal(sizes[read], whole[:, read])
    # a chunk measured on its own would differ where the running median's neighbours or the view's median matter
    alone = person_size_px(det[:, 18:24, :, :2], det[:, 18:24, :, 2], RIG, 0.3)
    assert not np.array_equal(alone, whole[:, 18:24])


def _datasets(f: h5py.File) -> list[str]:
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


@pytest.mark.slow
def test_refine_and_filter_in_short_chunks_write_the_smoke_builds_files(smoke_build, tmp_path):
    """Chunks of 7 (refine) and 5 (filter) frames, far shorter than the smoke build's 120-frame recordings: the same
    artifacts, bit for bit, the same counts and configuration hashes (the chunk length is not part of them)."""
    d = tmp_path / "b"
    for stage in ("detect", "triangulate", "complete"):
        shutil.copytree(smoke_build / stage, d / stage)
    run_stage(d, "stage=refine", "experiment=smoke", "refine.chunk_frames=7", "refine.workers=1")
    run_stage(d, "stage=filter", "experiment=smoke", "filter.chunk_frames=5")
    for stage in ("refine", "filter"):
        files = sorted((smoke_build / stage).rglob("*.h5"))
        assert len(files) == 6
        for f in files:
            with h5py.File(f) as a, h5py.File(d / f.relative_to(smoke_build)) as b:
                assert a["frames"].shape[0] > 7 * 10
                names = _datasets(a)
                assert names == _datasets(b) and len(names) >= 3
                for name in names:
                    np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=f"{f}: {name}")
                assert dict(a.attrs) == dict(b.attrs)
        ma, mb = (json.loads((root / stage / "manifest.json").read_text()) for root in (smoke_build, d))
        assert ma["config_hash"] == mb["config_hash"] and ma["counts"] == mb["counts"]
    assert (smoke_build / "filter" / "counts.json").read_text() == (d / "filter" / "counts.json").read_text()
    with h5py.File(d / "filter" / "S1" / "Walking 1.h5") as f:  # the measures that look at neighbouring frames
        assert np.isfinite(f["measures/jump_mm_s"][1:]).all()
        assert f["measures/reprojection_share"].shape == (f["frames"].shape[0],)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_best_poses_picked_a_chunk_at_a_time_are_those_of_one_stable_sort(chunk):
    """refine's part models learn from the best poses of all the frames: fed a chunk at a time, with many tied
    scores, the running best-N picks the same poses in the same order as one stable sort of them all."""
    from build_h3wb.stages.refine import _best_rows

    rng = np.random.default_rng(chunk)
    poses = rng.normal(size=(500, 4, 3))
    score = rng.integers(0, 20, 500).astype(np.float32)  # ties everywhere
    want = np.argsort(score, kind="stable")[:50]
    best = None
    for read, _, _ in frame_chunks(len(poses), chunk):
        best = _best_rows(best, poses[read], score[read], 50)
    np.testing.assert_array_equal(best[0], poses[want])
    np.testing.assert_array_equal(best[1], score[want])


@pytest.mark.slow
@pytest.mark.parametrize("stage, file, dataset", [("refine", "detect", "keypoints"),
                                                  ("filter", "triangulate", "reprojection_error")])
def test_an_input_of_another_length_is_an_error_naming_it(smoke_build, tmp_path, stage, file, dataset):
    """Read a chunk at a time, a dataset longer than the recording would go unnoticed: it is an error instead."""
    from build_h3wb.artifacts import BuildDirError

    d = tmp_path / "b"
    shutil.copytree(smoke_build, d)
    shutil.rmtree(d / stage)
    path = d / file / "S8" / "Walking 1.h5"
    with h5py.File(path, "r+") as f:
        data = f[dataset][()]
        axis = 1 if dataset == "keypoints" else 0
        del f[dataset]
        f[dataset] = np.concatenate([data, np.take(data, [0, 1, 2], axis=axis)], axis=axis)  # 3 frames more
    with pytest.raises(BuildDirError, match=rf"Walking 1.h5: dataset .*{dataset}.* has 123 frames"):
        run_stage(d, f"stage={stage}", "experiment=smoke", f"{stage}.chunk_frames=50", "refine.workers=1")
    assert not (d / stage / "S8" / "Walking 1.h5").exists()
