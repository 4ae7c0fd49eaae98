"""The detect stage's work units: per-video resume, sharding through Hydra multirun, bad videos."""

import json

import h5py
import numpy as np
from conftest import run_cli

SMALL = ["experiment=tiny"]


def _sequences(build):
    out = {}
    for p in sorted((build / "detect").glob("*/*.h5")):
        with h5py.File(p) as f:
            out[f"{p.parent.name}/{p.stem}"] = (f["frames"][:], f["keypoints"][:], f["choice"][:])
    return out


def test_two_shards_through_multirun_equal_the_single_run(tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_cli(single, "stage=detect", *SMALL)
    out = run_cli(sharded, "stage=detect", *SMALL, "detect.num_shards=2", "detect.shard=0,1",
                  "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", multirun=True)
    text = out.stdout + out.stderr
    assert "shard 0 of 2" in text and "shard 1 of 2" in text
    a, b = _sequences(single), _sequences(sharded)
    assert sorted(a) == sorted(b) == ["S1/Phoning 1", "S1/Walking 1", "S8/Phoning 1", "S8/Walking 1"]
    for key in a:
        for x, y in zip(a[key], b[key]):
            np.testing.assert_array_equal(x, y)
    ma = json.loads((single / "detect" / "manifest.json").read_text())
    mb = json.loads((sharded / "detect" / "manifest.json").read_text())
    assert ma["units"] == mb["units"] and ma["config_hash"] == mb["config_hash"]
    # each shard did half of the 16 videos
    videos = sorted((sharded / "detect" / "videos").rglob("*.h5"))
    assert len(videos) == 16
    # the sharded build feeds the next stage like the single one
    run_cli(sharded, "stage=triangulate", *SMALL)


def test_one_shard_alone_writes_no_manifest_and_a_later_run_completes(tmp_path):
    out = run_cli(tmp_path, "stage=detect", *SMALL, "detect.cameras=[54138969]")
    assert "12 of 16 videos still to do" in out.stdout + out.stderr
    assert not (tmp_path / "detect" / "manifest.json").exists()
    assert not list((tmp_path / "detect").glob("*/*.h5"))  # no sequence is assembled from part of its views
    out = run_cli(tmp_path, "stage=detect", *SMALL)
    assert "12 videos computed, 4 already done, 0 failed" in out.stdout + out.stderr
    assert (tmp_path / "detect" / "manifest.json").exists()


def test_an_interrupted_run_recomputes_only_the_missing_video(tmp_path):
    run_cli(tmp_path, "stage=detect", *SMALL)
    video = tmp_path / "detect" / "videos" / "S8" / "Walking 1" / "55011271.h5"
    keep = tmp_path / "detect" / "videos" / "S8" / "Walking 1" / "54138969.h5"
    before = keep.stat().st_mtime_ns
    with h5py.File(tmp_path / "detect" / "S8" / "Walking 1.h5") as f:
        reference = f["keypoints"][:]
    video.unlink()
    (tmp_path / "detect" / "manifest.json").unlink()
    video.with_name(".55011271.h5.tmp123").write_bytes(b"half-written")  # what a killed run leaves
    out = run_cli(tmp_path, "stage=detect", *SMALL)
    assert "1 videos computed, 15 already done, 0 failed" in out.stdout + out.stderr
    assert keep.stat().st_mtime_ns == before
    with h5py.File(tmp_path / "detect" / "S8" / "Walking 1.h5") as f:
        np.testing.assert_array_equal(f["keypoints"][:], reference)


def test_shard_settings_are_checked(tmp_path):
    out = run_cli(tmp_path, "stage=detect", *SMALL, "detect.shard=2", "detect.num_shards=2", check=False)
    assert out.returncode != 0 and "detect.shard=2 must be in [0, detect.num_shards=2)" in out.stdout + out.stderr


def test_cluster_and_local_recipes_compose(tmp_path):
    """The pipelines' Slurm and joblib commands, as the scripts build them, are valid Hydra configurations."""
    import os
    import re
    import subprocess
    import sys

    from conftest import REPO

    log = tmp_path / "commands.txt"
    shim = tmp_path / "py"
    shim.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" >> {log}\nprintf '\\n\\0' >> {log}\n")
    shim.chmod(0o755)
    for script in ("h36m_slurm.sh", "h36m_local.sh"):
        env = {**os.environ, "PY": str(shim), "H36M_ROOT": str(tmp_path), "BUILD_DIR": str(tmp_path / "b")}
        subprocess.run(["bash", str(REPO / "pipelines" / script), "data.subjects=[S1]", f"build.dir={tmp_path}/b"],
                       env=env, check=True)
    commands = [c.split("\0")[:-1] for c in log.read_text().split("\n\0") if c]
    assert len(commands) == 4
    for args in commands:
        assert args[:2] == ["-m", "build_h3wb"]
        # one job of the sweep, printed instead of launched
        one = [re.sub(r"range\(0,\d+\)", "1", a) for a in args[2:] if a != "-m"]
        out = subprocess.run([sys.executable, "-m", "build_h3wb", *one, "--cfg", "hydra"], cwd=REPO,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert ("submitit" in out.stdout) or ("joblib" in out.stdout) or "stage=all" in args
        job = subprocess.run([sys.executable, "-m", "build_h3wb", *one, "--cfg", "job"], cwd=REPO,
                             capture_output=True, text=True)
        assert job.returncode == 0 and "root: " + str(tmp_path) in job.stdout
