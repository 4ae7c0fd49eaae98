"""Stage ``lifter`` from the command line on a small synthetic build, and the baseline library it runs."""

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_cli
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from build_h3wb import skeleton
from build_h3wb.config import register_configs
from build_h3wb.export import load_h3wb_json
from build_h3wb.leaderboard.baseline import (
    check_tasks,
    lifter_config,
    load_test,
    mean_pose,
    missing_files,
    required_files,
    split_fold,
)
from build_h3wb.leaderboard.lifter import load_lifter, predict
from build_h3wb.leaderboard.metrics import OFFICIAL_KEYS, UNOFFICIAL_KEYS, mpjpe_whole
from build_h3wb.leaderboard.scoring import add_scores, cv_fold, load_predictions, save_predictions

SMALL = ["data.subjects=[S1,S8]", "data.actions=[Walking,Phoning,Greeting]", "data.duration_s=12",
         "complete.model.epochs=3", "complete.model.width=128", "complete.baseline_eval_poses=100"]
LIFT = ["lifter.epochs=15", "lifter.width=256", "lifter.batch_size=64"]
TASKS = ("2Dto3D", "I2Dto3D")
J = skeleton.NUM_KEYPOINTS
CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def lifted(tmp_path_factory):
    """A small exported build, then ``stage=lifter``; the first run's manifest and log are kept."""
    d = tmp_path_factory.mktemp("lifter")
    run_cli(d, "stage=all", *SMALL)
    out = run_cli(d, "stage=lifter", *SMALL, *LIFT)
    manifest = json.loads((d / "lifter" / "manifest.json").read_text())
    return d, manifest, out.stdout + out.stderr


@pytest.mark.slow
def test_writes_model_curve_predictions_and_manifest(lifted):
    d, manifest, log = lifted
    for task in TASKS:
        tdir = d / "lifter" / task
        model, cfg, stats, history = load_lifter(tdir / "model.pt")
        assert cfg.i2d == (task == "I2Dto3D") and cfg.width == 256 and cfg.epochs == 15 and cfg.batch_size == 64
        assert stats.mean_2d.shape == (J, 2) and stats.std_3d.shape == (J, 3)
        assert history["epoch"] == list(range(1, 16)) and len(history["val_mpjpe"]) == 15
        assert (tdir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        ids, pred = load_predictions(tdir / "predictions.h5")
        test_ids = load_h3wb_json(d / "export" / "json" / f"{task}_test_3d.json")["ids"]
        assert ids.tolist() == [str(i) for i in test_ids] and np.isfinite(pred).all()
        assert f"lifter{' i2d' if task == 'I2Dto3D' else ''} epoch 15/15: lr" in log  # per-epoch train/val log
    assert manifest["stage"] == "lifter" and len(manifest["config_hash"]) == 16
    assert manifest["config"]["lifter"]["width"] == 256 and manifest["units"] == list(TASKS)
    counts = manifest["counts"]
    assert counts["trained"] == list(TASKS) and counts["device"] == "cpu" and counts["seconds"] > 0
    n_train = len(load_h3wb_json(d / "export" / "json" / "2Dto3D_train.json")["ids"])
    for task in TASKS:
        c = counts["tasks"][task]
        assert c["train_samples"] == n_train and c["epochs"] == 15 and c["train_seconds"] > 0
        assert c["scores"]["whole"] < c["mean_pose"]["whole"]


@pytest.mark.slow
def test_scores_table_has_a_finite_row_per_task(lifted):
    d, _, _ = lifted
    table = json.loads((d / "benchmark" / "scores.json").read_text())
    md = (d / "benchmark" / "scores.md").read_text()
    for task in TASKS:
        row = table[f"residual lifter ({task})"]
        assert row["task"] == task
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in (*OFFICIAL_KEYS, *UNOFFICIAL_KEYS))
        assert row["num_samples"] == len(load_h3wb_json(d / "export" / "json" / f"{task}_test_3d.json")["ids"])
        assert f"| residual lifter ({task}) |" in md
    assert len((d / "benchmark" / "scores.csv").read_text().splitlines()) == 1 + len(TASKS)


@pytest.mark.slow
def test_lifter_beats_the_mean_pose(lifted):
    d, _, _ = lifted
    js = d / "export" / "json"
    train = load_h3wb_json(js / "2Dto3D_train.json")["keypoints_3d"]
    ref = (train - skeleton.root(train)[:, None]).mean(0)  # (J, 3) mean root-relative training pose
    table = json.loads((d / "benchmark" / "scores.json").read_text())
    for task, factor in (("2Dto3D", 0.6), ("I2Dto3D", 0.75)):
        gt = load_h3wb_json(js / f"{task}_test_3d.json")["keypoints_3d"]
        mean_err = mpjpe_whole(np.broadcast_to(ref, gt.shape), gt)
        _, pred = load_predictions(d / "lifter" / task / "predictions.h5")
        err = mpjpe_whole(pred, gt)
        assert err == pytest.approx(table[f"residual lifter ({task})"]["whole"], rel=1e-6)
        assert err < factor * mean_err, (task, err, mean_err)  # mean pose: about 230 mm here


@pytest.mark.slow
def test_saved_models_reproduce_the_predictions(lifted):
    d, _, _ = lifted
    for task in TASKS:
        model, _, stats, _ = load_lifter(d / "lifter" / task / "model.pt")
        test = load_test(d / "export" / "json", task)
        assert (test.masks is not None) == (task == "I2Dto3D")
        _, saved = load_predictions(d / "lifter" / task / "predictions.h5")
        np.testing.assert_allclose(predict(model, stats, test.kp2d, test.masks), saved, atol=1e-3)


@pytest.mark.slow
def test_rerun_skips_finished_tasks_and_changed_config_stops(lifted):
    d, first, _ = lifted
    model_pt = d / "lifter" / "2Dto3D" / "model.pt"
    before = model_pt.stat().st_mtime_ns
    out = run_cli(d, "stage=lifter", *SMALL, *LIFT)
    log = out.stdout + out.stderr
    assert "reusing the finished model" in log and "epoch 1/15" not in log
    assert model_pt.stat().st_mtime_ns == before
    manifest = json.loads((d / "lifter" / "manifest.json").read_text())
    assert manifest["counts"]["trained"] == [] and manifest["config_hash"] == first["config_hash"]
    table = json.loads((d / "benchmark" / "scores.json").read_text())
    assert table["residual lifter (2Dto3D)"]["whole"] == pytest.approx(first["counts"]["tasks"]["2Dto3D"]["scores"]
                                                                       ["whole"])
    out = run_cli(d, "stage=lifter", *SMALL, *LIFT[1:], "lifter.epochs=16", check=False)
    assert out.returncode != 0 and "lifter.epochs: 15 -> 16" in out.stdout + out.stderr
    assert model_pt.stat().st_mtime_ns == before


@pytest.mark.slow
def test_missing_export_and_bad_tasks_are_clear_errors(lifted, tmp_path):
    out = run_cli(tmp_path, "stage=lifter", check=False)
    msg = out.stdout + out.stderr
    assert out.returncode != 0 and "stage 'export' has not finished" in msg and "stage=export" in msg
    assert not (tmp_path / "lifter").exists()
    d, _, _ = lifted
    out = run_cli(d, "stage=lifter", *SMALL, "lifter.tasks=[RGBto3D]", check=False)
    assert out.returncode != 0 and "RGBto3D" in out.stdout + out.stderr


def test_lifter_config_composes_and_typos_fail():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["stage=lifter"])
        assert list(cfg.lifter.tasks) == list(TASKS) and cfg.lifter.device == "auto"
        assert cfg.lifter.method == "residual lifter" and cfg.lifter.large is False
        for bad in ("lifter.epoch=3", "lifter.large=maybe"):
            with pytest.raises(ConfigCompositionException):
                compose(config_name="config", overrides=[bad])


def test_baseline_helpers(tmp_path):
    assert lifter_config(3).width == 1024 and lifter_config(3, large=True).width == 2048
    assert lifter_config(3, width=64, large=True).width == 64 and lifter_config(3, lr_decay=0.5).lr_decay == 0.5
    assert required_files(["2Dto3D"]) == ["2Dto3D_train.json", "2Dto3D_test_2d.json", "2Dto3D_test_3d.json"]
    assert "I2Dto3D_test_2d.json" in missing_files(tmp_path, ["I2Dto3D"])
    assert "I2Dto3D_test_masks.npz" not in required_files(["I2Dto3D"])  # the masked JSON is the input
    for bad in ([], ["RGBto3D"], ["2Dto3D", "2Dto3D"]):
        with pytest.raises(ValueError, match="distinct tasks"):
            check_tasks(bad)
    with pytest.raises(ValueError, match=r"\(N, J, 3\)"):
        mean_pose(np.zeros((4, 5, 3)))
    poses = np.random.default_rng(0).normal(size=(6, J, 3))
    assert np.allclose(skeleton.root(mean_pose(poses)[None]), 0.0)


@pytest.mark.parametrize("suffix", [".json", ".h5"])
def test_predictions_round_trip_and_table_rows(tmp_path, suffix):
    ids = np.array([3, 10, 7])
    kp = np.random.default_rng(1).normal(scale=300.0, size=(3, J, 3))
    save_predictions(tmp_path / f"p{suffix}", ids, kp, attrs={"config_hash": "abc"})
    got_ids, got = load_predictions(tmp_path / f"p{suffix}")
    assert got_ids.tolist() == ["3", "10", "7"]
    np.testing.assert_allclose(got, kp, atol=1e-3 if suffix == ".h5" else 1e-9)
    if suffix == ".h5":
        with h5py.File(tmp_path / "p.h5") as f:
            assert f.attrs["config_hash"] == "abc"
    with pytest.raises(ValueError, match=r"\(N, J, 3\)"):
        save_predictions(tmp_path / f"q{suffix}", ids, kp[:2])
    add_scores(tmp_path, "a (2Dto3D)", {"whole": 1.0})
    table = add_scores(tmp_path, "a (2Dto3D)", {"whole": 2.0})
    assert table == {"a (2Dto3D)": {"whole": 2.0}}
    assert "| a (2Dto3D) | 2.0 |" in (tmp_path / "scores.md").read_text()


@pytest.mark.slow
def test_five_fold_cross_validation_reports_mean_and_std(lifted):
    d, _, _ = lifted
    out = run_cli(d, "stage=lifter", *SMALL, *LIFT[1:], "lifter.epochs=4", "lifter.tasks=[2Dto3D,I2Dto3D]",
                  "lifter.cross_validation=-1", "build.overwrite=true")
    log = out.stdout + out.stderr
    js = d / "export" / "json"
    n_train = len(load_h3wb_json(js / "2Dto3D_train.json")["ids"])
    summary = json.loads((d / "lifter" / "cv_summary.json").read_text())
    assert summary["train_samples"] == n_train
    table = json.loads((d / "benchmark" / "scores.json").read_text())
    for task in TASKS:
        folds = summary["tasks"][task]["whole"]["folds"]
        assert len(folds) == 5 and all(math.isfinite(v) and v > 0 for v in folds)
        assert summary["tasks"][task]["whole"]["mean"] == pytest.approx(np.mean(folds))
        assert summary["tasks"][task]["whole"]["std"] == pytest.approx(np.std(folds))
        for fold in range(1, 6):
            ids, _ = load_predictions(d / "lifter" / f"cv{fold}" / task / "predictions.h5")
            assert ids.tolist() == [str(i) for i in cv_fold(n_train, fold)]  # whole poses: multiples of 4
            row = table[f"residual lifter ({task}, cv{fold})"]
            assert row["cross_validation"] == fold and row["whole"] == pytest.approx(folds[fold - 1])
            assert json.loads((d / "lifter" / f"cv{fold}" / task / "result.json").read_text())["train_samples"] \
                == n_train - len(ids)
    assert "5-fold cross-validation" in (d / "lifter" / "cv_summary.md").read_text()
    assert "lifter cross-validation" in log


def test_split_fold_holds_out_whole_poses_and_masks_i2d(tmp_path):
    n = 60
    ids = np.arange(n)
    kp2d = np.random.default_rng(0).uniform(0, 1000, (n, J, 2))
    kp3d = np.random.default_rng(1).normal(0, 500, (n, J, 3))
    tr2, tr3, test = split_fold(ids, kp2d, kp3d, "I2Dto3D", 2, mask_seed=3)
    assert test.ids.tolist() == list(range(12, 24)) and len(tr2) == len(tr3) == n - 12
    assert not np.isin(test.ids, np.setdiff1d(ids, test.ids)).any()
    assert test.masks.shape == (12, J) and test.masks.any()
    np.testing.assert_array_equal(test.kp2d[test.masks], 0.0)
    np.testing.assert_array_equal(test.kp2d[~test.masks], kp2d[12:24][~test.masks])
    _, _, plain = split_fold(ids, kp2d, kp3d, "2Dto3D", 5)
    assert plain.masks is None and plain.ids.tolist() == list(range(48, 60))
