"""The build graph: stale inputs are refused with the command that rebuilds them; finished stages keep their counts;
damaged or half-written artifacts are found and recomputed."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import pytest
from conftest import run_stage

from build_h3wb.artifacts import (
    BuildDirError,
    StageDir,
    StaleInputError,
    atomic_h5,
    atomic_path,
    open_h5,
    read_json,
    sweep_temp_files,
)
from build_h3wb.build import INPUTS, PIPELINE, POSE_STAGES, STAGES, Build

pytestmark = pytest.mark.slow  # these use the shared small build


@pytest.fixture
def build(smoke_build, tmp_path):
    """A private copy of the shared small build."""
    d = tmp_path / "build"
    shutil.copytree(smoke_build, d)
    return d


def test_the_graph_names_every_stage_once():
    assert set(INPUTS) == set(STAGES) - {"all"}
    assert set(POSE_STAGES) <= set(PIPELINE)
    with pytest.raises(ValueError, match="build.poses='export'"):
        Build(root=".", poses="export")


def test_manifests_record_their_upstream_chain(smoke_build):
    b = Build(smoke_build)
    for stage in ("triangulate", "complete", "refine", "filter", "export"):
        m = b.manifest(stage)
        (up,) = m["upstream"]
        assert m["upstream"][up] == b.manifest(up)["config_hash"]
    assert b.manifest("filter")["config"]["poses"] == "refine"


def test_a_rebuilt_upstream_stage_makes_downstream_stale(build):
    run_stage(build, "stage=complete", "experiment=smoke", "complete.seed=1", "build.overwrite=true")
    for stage in ("filter", "export"):
        with pytest.raises(StaleInputError, match=r"stage 'refine' .* is stale: it was built on 'complete'.*"
                                                  r"build-h3wb stage=refine"):
            run_stage(build, f"stage={stage}", "experiment=smoke")
    # rebuilding the stale stage with overwrite fixes the chain for what follows
    run_stage(build, "stage=refine", "experiment=smoke", "build.overwrite=true")
    run_stage(build, "stage=filter", "experiment=smoke", "build.overwrite=true")
    assert Build(build).manifest("filter")["upstream"]["refine"] == Build(build).manifest("refine")["config_hash"]


def test_pose_stage_is_a_setting_not_a_file_test(build):
    with pytest.raises(BuildDirError, match="assessed 'refine' poses but build.poses=complete"):
        run_stage(build, "stage=export", "experiment=smoke", "build.poses=complete")
    run_stage(build, "stage=filter", "experiment=smoke", "build.poses=complete", "build.overwrite=true")
    assert read_json(build / "filter" / "manifest.json")["upstream"].keys() == {"complete"}


def test_rerun_of_a_finished_build_keeps_the_counts(build):
    before = {s: read_json(build / s / "manifest.json")["counts"] for s in ("complete", "refine")}
    assert before["complete"]["filled_keypoints"] and before["refine"]["refined_keypoints"] > 0
    run_stage(build, "stage=all", "experiment=smoke")
    after = {s: read_json(build / s / "manifest.json")["counts"] for s in ("complete", "refine")}
    assert after == before


def test_a_sequence_file_missing_a_dataset_is_named_and_recomputed(build):
    path = next((build / "triangulate").glob("*/*.h5"))
    with h5py.File(path, "a") as f:
        del f["seen_any"]
    with open_h5(path) as f, pytest.raises(BuildDirError, match=rf"{path.name}: dataset 'seen_any' is missing"):
        f["seen_any"]
    run_stage(build, "stage=triangulate", "experiment=smoke")
    with open_h5(path) as f:
        assert "seen_any" in f


def test_temp_files_of_dead_writers_are_swept_live_ones_kept(tmp_path):
    stage = tmp_path / "triangulate" / "S1"
    stage.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    import build_h3wb.artifacts as artifacts

    killed = stage / f".Walking 1.h5.{artifacts._HOST}-{dead_pid}.abcd1234.tmp"
    killed.write_bytes(b"half")
    with atomic_path(stage / "live.json") as live:  # this process's own write in progress is left alone
        live.write_text("{}")
        assert sweep_temp_files(tmp_path) == 1
        assert live.exists() and not killed.exists()
    assert (stage / "live.json").read_text() == "{}"
    foreign = stage / ".x.h5.otherhost-12.abcd1234.tmp"
    foreign.write_bytes(b"?")
    assert sweep_temp_files(tmp_path) == 0  # another machine's recent temp file may be a live cluster job
    old = foreign.stat().st_mtime - artifacts.FOREIGN_TEMP_AGE_S - 60
    os.utime(foreign, (old, old))
    assert sweep_temp_files(tmp_path) == 1


def test_is_done_needs_every_recorded_dataset(tmp_path):
    sd = StageDir(tmp_path, "x", {"a": 1})
    path = sd.sequence_path("S1", "Walking 1")
    with atomic_h5(path, {"config_hash": sd.hash}) as f:
        f.create_dataset("a", data=[1])
        f.create_dataset("b", data=[2])
    assert sd.is_done(path)
    assert json.loads(read_attrs_datasets(path)) == ["a", "b"]
    with h5py.File(path, "a") as f:
        del f["b"]
    assert not sd.is_done(path)


def read_attrs_datasets(path):
    with h5py.File(path, "r") as f:
        return f.attrs["datasets"]
