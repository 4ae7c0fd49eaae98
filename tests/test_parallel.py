import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import run_stage

from build_h3wb.parallel import MIN_SEQUENCES_PER_WORKER, usable_cpus, worker_count


def test_worker_count():
    assert worker_count(3, 10) == 3 and worker_count(3, 2) == 2 and worker_count(1, 0) == 1
    # automatic: never more than the CPUs, and a few sequences per process (starting one costs about a second)
    assert worker_count(0, MIN_SEQUENCES_PER_WORKER - 1) == 1
    assert worker_count(0, 1000) == usable_cpus()
    with pytest.raises(ValueError, match="workers"):
        worker_count(-1, 5)


@pytest.mark.slow
def test_triangulate_in_worker_processes_gives_the_same_artifacts(smoke_build, tmp_path):
    """The smoke build's sequences triangulated in 2 processes and in this one: the same files, bit for bit."""
    outs = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        shutil.copytree(smoke_build / "detect", d / "detect")
        run_stage(d, "stage=triangulate", "experiment=smoke", f"triangulate.workers={workers}")
        outs[workers] = (d, json.loads((d / "triangulate" / "summary.json").read_text()))
    (d1, s1), (d2, s2) = outs[1], outs[2]
    assert s1["computed"] == s2["computed"] > 1
    s1.pop("computed"), s2.pop("computed")
    assert s1 == s2
    files = sorted((d1 / "triangulate").rglob("*.h5"))
    assert files
    for f1 in files:
        with h5py.File(f1) as a, h5py.File(d2 / f1.relative_to(d1)) as b:
            assert set(a) == set(b)
            for k in a:
                np.testing.assert_array_equal(a[k][:], b[k][:])


@pytest.mark.slow
def test_a_bad_sequence_in_a_worker_stops_the_stage_naming_its_file(smoke_build, tmp_path):
    from build_h3wb.artifacts import BuildDirError

    d = tmp_path / "b"
    shutil.copytree(smoke_build / "detect", d / "detect")
    bad = sorted((d / "detect").glob("S*/*.h5"))[-1]  # a sequence's assembled views
    bad.write_bytes(bad.read_bytes()[:4096])  # truncated: not a readable HDF5 file any more
    with pytest.raises(BuildDirError, match=f"{bad.parent.name}/{bad.name}"):
        run_stage(d, "stage=triangulate", "experiment=smoke", "triangulate.workers=2")
    # the other sequences were written whole and are kept for the next run
    done = list((d / "triangulate").rglob("*.h5"))
    assert done and bad.relative_to(d / "detect") not in [p.relative_to(d / "triangulate") for p in done]
    assert not list((d / "triangulate").rglob(".*"))  # no temp file left behind


@pytest.mark.slow
def test_refine_in_worker_processes_gives_the_same_artifacts_and_counts(smoke_build, tmp_path):
    """refine in 2 processes and in this one, on copies of the smoke build: the same files and manifest counts."""
    counts = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        shutil.copytree(smoke_build, d)
        run_stage(d, "stage=refine", "experiment=smoke", "build.overwrite=true", f"refine.workers={workers}")
        counts[workers] = json.loads((d / "refine" / "manifest.json").read_text())["counts"]
    assert counts[1] == counts[2] and counts[1]["refined_keypoints"] > 0
    base = json.loads((smoke_build / "refine" / "manifest.json").read_text())["counts"]
    assert counts[1] == base  # the same as the shared build's own refine
    for f1 in sorted((tmp_path / "w1" / "refine").rglob("*.h5")):
        with h5py.File(f1) as a, h5py.File(tmp_path / "w2" / f1.relative_to(tmp_path / "w1")) as b:
            for k in a:
                np.testing.assert_array_equal(a[k][:], b[k][:])


@pytest.mark.slow
def test_detect_in_worker_processes_gives_the_same_detections(tmp_path):
    """The simulated detector's videos shared by 2 processes, and in this one: the same files, bit for bit."""
    args = ("experiment=tiny",)
    for workers in (1, 2):
        run_stage(tmp_path / f"w{workers}", "stage=detect", *args, f"detect.workers={workers}")
    m1, m2 = (json.loads((tmp_path / f"w{w}" / "detect" / "manifest.json").read_text()) for w in (1, 2))
    assert m1["config_hash"] == m2["config_hash"] and m1["units"] == m2["units"]
    assert m1["counts"]["this_run"]["computed"] == m2["counts"]["this_run"]["computed"] > 2
    files = sorted((tmp_path / "w1" / "detect").rglob("*.h5"))
    assert files
    for f1 in files:
        with h5py.File(f1) as a, h5py.File(tmp_path / "w2" / f1.relative_to(tmp_path / "w1")) as b:
            for k in a:
                np.testing.assert_array_equal(a[k][:], b[k][:])
