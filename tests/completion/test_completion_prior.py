"""The build-independent completion prior: synthetic ground-truth training, its cache, fine-tuning, checkpoint reuse.

The end-to-end case is a build whose detector never finds the face (``part_miss_prob.face=1.0``): no pose is
complete, the prior fills every face, and the build still finishes through export with the face marked completed.
"""

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from conftest import run_cli

from build_h3wb import skeleton
from build_h3wb.completion.config import CompletionConfig
from build_h3wb.completion.prior import SyntheticPriorData, prior_key, synthetic_prior
from build_h3wb.completion.train import complete_poses, make_masks, save_checkpoint, train_completion
from build_h3wb.stages.complete import _reusable_checkpoint

SMALL = dict(width=64, num_blocks=1, epochs=2, batch_size=128, warmup_epochs=1)
DATA = SyntheticPriorData(subjects=("P1",), actions=("Walking", "Phoning"), seed=7, duration_s=4.0, fps=10.0)
PRIOR_CLI = ["complete.prior.subjects=[P1,P2]", "complete.prior.duration_s=4"]


def test_prior_poses_are_complete_and_not_a_build_subject():
    poses = DATA.poses()
    assert poses.shape == (2 * 40, skeleton.NUM_KEYPOINTS, 3)
    assert np.isfinite(poses).all()
    with pytest.raises(ValueError, match="subjects"):
        replace(DATA, subjects=()).poses()


def test_prior_is_cached_under_a_key_of_what_determines_it(tmp_path):
    cfg = CompletionConfig.from_conf(**SMALL)
    model, info = synthetic_prior(DATA, cfg, tmp_path, seed=0)
    assert not info["cached"] and info["poses"] == 80
    again, info2 = synthetic_prior(DATA, cfg, tmp_path, seed=0)
    assert info2["cached"] and info2["path"] == info["path"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    poses = DATA.poses()
    assert prior_key(poses, cfg, 0) == info["key"]
    assert prior_key(poses, cfg, 1) != info["key"]  # the training seed
    assert prior_key(poses, CompletionConfig.from_conf(**{**SMALL, "width": 32}), 0) != info["key"]  # the network
    assert prior_key(poses[:-1], cfg, 0) != info["key"]  # the poses themselves
    other = replace(DATA, seed=8)
    assert prior_key(other.poses(), cfg, 0) != info["key"]


def test_damaged_or_foreign_prior_file_is_refused_by_name(tmp_path):
    cfg = CompletionConfig.from_conf(**SMALL)
    _, info = synthetic_prior(DATA, cfg, tmp_path, seed=0)
    path = info["path"]
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{path}.*not a readable completion checkpoint"):
        synthetic_prior(DATA, cfg, tmp_path, seed=0)
    model, _ = train_completion(DATA.poses(), cfg, progress=False)
    save_checkpoint(path, model, cfg, {"prior_key": "something else"})
    with pytest.raises(ValueError, match="prior_key"):
        synthetic_prior(DATA, cfg, tmp_path, seed=0)


def test_fine_tuning_starts_from_the_prior_and_checks_the_architecture():
    cfg = CompletionConfig.from_conf(**SMALL)
    poses = DATA.poses()
    prior, _ = train_completion(poses, cfg, progress=False)
    tune_cfg = CompletionConfig.from_conf(**{**SMALL, "epochs": 1, "lr": 1e-4})
    tuned, _ = train_completion(poses[:40], tune_cfg, progress=False, init=prior)
    assert torch.equal(tuned.prior_basis, prior.prior_basis)  # the linear prior is kept, not refitted on 40 poses
    assert not torch.equal(tuned.out.weight, prior.out.weight)  # the MLP moved
    assert tuned is not prior and tuned.cfg.epochs == 1
    with pytest.raises(ValueError, match="width"):
        train_completion(poses, CompletionConfig.from_conf(**{**SMALL, "width": 32}), progress=False, init=prior)


def test_patience_stops_on_the_validation_error_and_keeps_the_best_epoch():
    poses = DATA.poses()
    cfg = CompletionConfig.from_conf(**{**SMALL, "epochs": 30, "patience": 2, "lr": 3e-2})  # a rate that stalls soon
    model, history = train_completion(poses[:60], cfg, progress=False, val_poses=poses[60:])
    val = history["val_hidden_mm"]
    assert len(history["epoch"]) < 30
    assert history["best_epoch"] == int(np.argmin(val)) + 1
    assert len(val) == history["best_epoch"] + cfg.patience
    with pytest.raises(ValueError, match="patience"):
        train_completion(poses, cfg, progress=False)
    holes = poses[60:].copy()
    holes[make_masks(len(holes), np.random.default_rng(0))] = np.nan
    assert np.isfinite(complete_poses(model, holes)[0]).all()


def test_checkpoint_reuse_checks_the_hash_inside_the_file(tmp_path):
    cfg = CompletionConfig.from_conf(**SMALL)
    model, _ = train_completion(DATA.poses(), cfg, progress=False)
    ckpt, info = tmp_path / "model.pt", tmp_path / "model.json"
    info.write_text(json.dumps({"config_hash": "aaaa", "network": "build"}))
    save_checkpoint(ckpt, model, cfg, {"config_hash": "bbbb"})  # model.json agrees, the checkpoint does not
    assert _reusable_checkpoint(ckpt, info, "aaaa", "cpu") is None
    save_checkpoint(ckpt, model, cfg, {"config_hash": "aaaa"})
    reused, meta = _reusable_checkpoint(ckpt, info, "aaaa", "cpu")
    assert meta["network"] == "build"
    assert _reusable_checkpoint(ckpt, info, "cccc", "cpu") is None  # another configuration
    ckpt.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="model.pt"):
        _reusable_checkpoint(ckpt, info, "aaaa", "cpu")


@pytest.mark.slow
def test_build_without_any_face_detection_finishes_with_the_face_completed(tmp_path):
    d = tmp_path / "b"
    cache = tmp_path / "cache"
    args = ["stage=all", "experiment=smoke", "detector.part_miss_prob.face=1.0", f"complete.prior.cache_dir={cache}",
            *PRIOR_CLI, "complete.baseline_eval_poses=0"]  # the default filter: an unseen face is not held against it
    out = run_cli(d, *args)
    log = out.stdout + out.stderr
    assert "only 0 complete triangulated poses" in log
    manifest = json.loads((d / "complete" / "manifest.json").read_text())
    assert manifest["counts"]["network"] == "prior" and manifest["counts"]["complete_poses"] == 0
    assert manifest["counts"]["prior"]["data"]["subjects"] == ["P1", "P2"]
    assert manifest["counts"]["prior"]["path"].startswith(str(cache))
    face = skeleton.PARTS["face"]
    with h5py.File(d / "export" / "h3wb.h5", "r") as f:
        prov = f["provenance"][:]
        kp = f["keypoints_3d"][:]
    assert len(prov) > 0
    assert (prov[:, face] == 1).all()  # every face keypoint completed (never refined: no face model)
    counts = json.loads((d / "filter" / "counts.json").read_text())
    assert counts["parts_never_triangulated"] == ["face"] and counts["filled_share"]["kept"]["face"] == 1.0
    assert np.isfinite(kp).all()

    # the same build from a checkpoint given by path; a bad checkpoint is refused with its name
    prior_file = manifest["counts"]["prior"]["path"]
    run_cli(d, "stage=complete", *args, f"complete.checkpoint={prior_file}", "build.overwrite=true")
    manifest = json.loads((d / "complete" / "manifest.json").read_text())
    assert manifest["counts"]["network"] == "prior" and manifest["counts"]["prior"]["path"] == prior_file
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    out = run_cli(d, "stage=complete", *args, f"complete.checkpoint={bad}", "build.overwrite=true", check=False)
    assert out.returncode != 0 and f"{bad}: not a readable completion checkpoint" in out.stderr
