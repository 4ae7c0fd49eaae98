"""Every stage from the command line, in a subprocess, on a temporary build directory."""

import json

import h5py
import numpy as np
import pytest
from conftest import run_cli

from build_h3wb import skeleton

SMALL = ["experiment=tiny"]


cli = run_cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("build")
    cli(d, "stage=detect", *SMALL)
    cli(d, "stage=triangulate", *SMALL)
    cli(d, "stage=evaluate", *SMALL)
    return d


def test_detect_artifacts(built):
    manifest = json.loads((built / "detect" / "manifest.json").read_text())
    assert [u["sequence"] for u in manifest["units"]] == ["Walking 1", "Phoning 1"] * 2
    with h5py.File(built / "detect" / "S8" / "Phoning 1.h5") as f:
        kp = f["keypoints"][:]
        assert kp.shape == (4, 30, skeleton.NUM_KEYPOINTS, 3) and kp.dtype == np.float32
        assert list(f["frames"][:5]) == [0, 5, 10, 15, 20]
        assert [c.decode() for c in f["cameras"][:]] == ["54138969", "55011271", "58860488", "60457274"]
        assert json.loads(f.attrs["config"])["detector"]["detector"] == "simulated"
        missing = np.isnan(kp[..., 0])
        assert (np.isnan(kp[..., 2]) == missing).all()  # NaN in x, y and score together
        assert 0.05 < missing.mean() < 0.8
        assert np.nanmin(kp[..., 2]) > 0 and np.nanmax(kp[..., 2]) <= 1


def test_triangulate_artifacts(built):
    with h5py.File(built / "triangulate" / "S1" / "Walking 1.h5") as f:
        X = f["keypoints_3d"][:]
        nv = f["num_views"][:]
        err = f["reprojection_error"][:]
        views = f["views_used"][:]
    ok = np.isfinite(X[..., 0])
    assert X.shape == (30, skeleton.NUM_KEYPOINTS, 3)
    assert (nv[ok] >= 2).all() and (nv[~ok] == 0).all()
    assert (np.isfinite(err) == ok).all()
    assert not ((views == 0b1001) | (views == 0b0110))[ok].any()  # never from one opposing pair alone
    s = json.loads((built / "triangulate" / "summary.json").read_text())
    assert s["poses"] == 4 * 30
    assert 0 < s["complete_poses"] < s["poses"]
    assert set(s["keypoints_reconstructed_share"]) == {"whole", "body", "face", "hands"}


def test_evaluate_reports_accuracy(built):
    r = json.loads((built / "evaluate" / "triangulate.json").read_text())
    assert r["sequences_scored"] == 4
    body = r["absolute"]["body"]["median_mm"]
    assert 2 < body < 40
    assert r["coverage"]["body"] > 0.8
    assert r["hands_aligned"]["hands"]["n"] > 0
    assert (built / "evaluate" / "triangulate.md").exists()


def test_hydra_logs_go_to_the_build_dir(built):
    logs = list((built / "logs").rglob("*.log"))
    assert logs and (built / "logs").is_dir()
    assert any(p.name == "config.yaml" for p in (built / "logs").rglob("config.yaml"))


def test_rerun_resumes_and_interruption_recovers(built):
    out = cli(built, "stage=detect", *SMALL)
    assert "0 videos computed, 16 already done, 0 failed" in out.stdout + out.stderr
    (built / "triangulate" / "S8" / "Walking 1.h5").unlink()
    (built / "triangulate" / "manifest.json").unlink()
    before = (built / "triangulate" / "S1" / "Walking 1.h5").stat().st_mtime_ns
    cli(built, "stage=triangulate", *SMALL)
    assert (built / "triangulate" / "S8" / "Walking 1.h5").exists()
    assert (built / "triangulate" / "S1" / "Walking 1.h5").stat().st_mtime_ns == before


def test_changed_config_stops_with_a_clear_error(built):
    out = cli(built, "stage=detect", *SMALL, "detector.swap_prob=0.2", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "different configuration" in text and "detector.swap_prob: 0.01 -> 0.2" in text
    assert (built / "detect" / "S1" / "Walking 1.h5").exists()


def test_typo_fails_at_composition(tmp_path):
    out = cli(tmp_path, "stage=detect", "triangulate.min_scor=0.2", check=False)
    assert out.returncode != 0 and "min_scor" in out.stdout + out.stderr
    assert not (tmp_path / "detect").exists()


def test_unknown_stage_and_missing_upstream(tmp_path):
    out = cli(tmp_path, "stage=detekt", check=False)
    assert out.returncode != 0 and "unknown stage 'detekt'" in out.stdout + out.stderr
    out = cli(tmp_path, "stage=triangulate", check=False)
    assert out.returncode != 0 and "stage 'detect' has not finished" in out.stdout + out.stderr


def test_bad_source_settings(tmp_path):
    out = cli(tmp_path, "stage=detect", "data.subjects=[S2]", check=False)
    assert out.returncode != 0 and "S2" in out.stdout + out.stderr
    out = cli(tmp_path, "stage=detect", "data.actions=[Juggling]", check=False)
    assert out.returncode != 0 and "Juggling" in out.stdout + out.stderr


def test_triangulate_rejects_malformed_detections(built, tmp_path):
    import shutil

    d = tmp_path / "b"
    shutil.copytree(built / "detect", d / "detect")
    path = d / "detect" / "S1" / "Phoning 1.h5"
    with h5py.File(path, "r+") as f:
        kp = f["keypoints"][:]
        del f["keypoints"]
        f["keypoints"] = kp[:, :, :17]
    out = cli(d, "stage=triangulate", *SMALL, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Phoning 1.h5" in text and "'keypoints'" in text and "(4, 30, 17, 3)" in text
    # the sequences triangulated before the bad one are kept
    assert (d / "triangulate" / "S1" / "Walking 1.h5").exists()
    with h5py.File(path, "r+") as f:
        del f["keypoints"]
        f["keypoints"] = kp
        f["cameras"][0] = "99999999"
    out = cli(d, "stage=triangulate", *SMALL, check=False)
    assert out.returncode != 0 and "camera order" in out.stdout + out.stderr


def test_nan_detections_are_handled(built, tmp_path):
    import shutil

    d = tmp_path / "b"
    shutil.copytree(built / "detect", d / "detect")
    with h5py.File(d / "detect" / "S8" / "Walking 1.h5", "r+") as f:
        kp = f["keypoints"][:]
        kp[1] = np.nan  # a whole view lost
        kp[0, :, :5, 2] = np.nan  # scores lost where coordinates exist
        f["keypoints"][...] = kp
    cli(d, "stage=triangulate", *SMALL)
    with h5py.File(d / "triangulate" / "S8" / "Walking 1.h5") as f:
        views = f["views_used"][:]
        X = f["keypoints_3d"][:]
    assert not (views & 0b0010).any()
    assert not (views[:, :5] & 0b0001).any()  # no score, no use
    assert np.isfinite(X).mean() > 0.3


def test_evaluate_writes_the_measures_without_ground_truth(built):
    m = json.loads((built / "evaluate" / "triangulate_measures.json").read_text())
    assert m["sequences"] == 4 and {k.split("/")[0] for k in m["per_sequence"]} == {"S1", "S8"}
    assert 0 < m["bone_cv_median"] < 0.2 and 0 <= m["frames_bone_off_share"] < 0.2
    assert 0 < m["reprojection_px_median"]["body"] < 10 and m["jitter_mm"]["body"] > 0
    assert m["coverage"]["body"] > 0.8
    assert "bone" in (built / "evaluate" / "triangulate_measures.md").read_text()
