"""The whole pipeline from the command line on a small synthetic capture: complete, refine, filter, export."""

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import run_cli

from build_h3wb import skeleton
from build_h3wb.export import Provenance, load_h3wb_json

SMALL = ["data.subjects=[S1,S8]", "data.actions=[Walking,Phoning,Greeting]", "data.duration_s=12",
         "complete.model.epochs=3", "complete.model.width=128", "complete.baseline_eval_poses=100"]


cli = run_cli
pytestmark = pytest.mark.slow  # one stage=all build, with the completion network's training


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    out = cli(d, "stage=all", *SMALL)
    return d, out.stdout


def test_all_stages_ran_and_the_log_ends_with_size_and_accuracy(built):
    d, log = built  # the log (stdout)
    for stage in ("detect", "triangulate", "complete", "refine", "filter", "export"):
        assert (d / stage / "manifest.json").exists(), stage
    tail = log.strip().splitlines()[-1]
    assert tail.startswith("Dataset: ") and "poses" in tail and "mm" in tail


def test_completion_fills_every_hole_and_keeps_observations(built):
    d, _ = built
    with h5py.File(d / "triangulate" / "S8" / "Greeting 1.h5") as f:
        tri = f["keypoints_3d"][:]
    with h5py.File(d / "complete" / "S8" / "Greeting 1.h5") as f:
        comp = f["keypoints_3d"][:]
        filled = f["filled"][:]
    has_root = np.isfinite(tri[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]]).all((1, 2))
    assert np.isfinite(comp[has_root]).all()
    assert np.array_equal(filled[has_root], np.isnan(tri[has_root]).any(-1))
    obs = np.isfinite(tri)
    assert np.array_equal(comp[obs], tri[obs])
    assert (d / "complete" / "model.pt").exists()
    ev = json.loads((d / "complete" / "evaluation.json").read_text())
    assert {"network", "nearest_pose", "low_rank"} <= set(ev)


def test_refine_changes_only_hands_and_face(built):
    d, _ = built
    with h5py.File(d / "complete" / "S1" / "Walking 1.h5") as f:
        comp = f["keypoints_3d"][:]
    with h5py.File(d / "refine" / "S1" / "Walking 1.h5") as f:
        ref = f["keypoints_3d"][:]
        refined = f["refined"][:]
    body = skeleton.REPORT_PARTS["body"]
    assert np.array_equal(ref[:, body], comp[:, body], equal_nan=True)
    assert not refined[:, body].any() and refined.any()


def test_filter_counts_and_export_files(built):
    d, _ = built
    counts = json.loads((d / "filter" / "counts.json").read_text())
    assert counts["kept"] > 0 and counts["true_error_mm"] > 0
    assert sum(counts["rejected"].values()) + counts["kept"] == counts["poses"]
    filled = counts["filled_share"]  # what the completion filled, by part, over all poses and the kept ones
    assert set(filled["all"]) == set(filled["kept"]) == set(skeleton.REPORT_PARTS)
    assert 0 < filled["all"]["whole"] < 0.5 and all(0 <= v <= 1 for v in filled["kept"].values())
    with h5py.File(d / "export" / "h3wb.h5") as f:
        n = f["keypoints_3d"].shape[0]
        prov = f["provenance"][:]
        assert f["keypoints_2d"].shape == (n, 4, skeleton.NUM_KEYPOINTS, 2)
    assert n == counts["kept"]
    assert set(np.unique(prov)) <= {int(p) for p in Provenance}
    train = load_h3wb_json(d / "export" / "json" / "2Dto3D_train.json")
    test2d = load_h3wb_json(d / "export" / "json" / "2Dto3D_test_2d.json")
    assert len(train["ids"]) == 4 * counts["kept_by_subject"]["S1"]
    assert all(p.startswith("S8/Images/") for p in load_h3wb_json(
        d / "export" / "json" / "RGBto3D_test_img.json")["image_path"])
    assert len(test2d["ids"]) > 0
    assert (d / "export" / "h3wb_videopose3d.npz").exists() and (d / "export" / "h3wb_flat.npz").exists()
    assert (d / "export" / "json" / "RGBto3D_train.json").stat().st_ino == \
        (d / "export" / "json" / "2Dto3D_train.json").stat().st_ino
    summary = (d / "evaluate" / "summary.md").read_text()
    assert "after triangulate" in summary and "after refine" in summary and "selected (dataset)" in summary
    assert (d / "evaluate" / "statistics.png").read_bytes()[:4] == b"\x89PNG"


def test_filter_sweep_writes_one_table(built):
    d, _ = built
    cli(d, "stage=filter", *SMALL, "filter.max_reprojection_share=0.0075,0.015,0.05", multirun=True)
    sweep = d / "filter" / "sweep"
    table = (sweep / "summary.md").read_text().splitlines()
    assert len(table) == 2 + 3
    rows = [line.split("|") for line in table[2:]]
    kept = [int(r[2]) for r in rows]
    assert kept == sorted(kept) and kept[0] < kept[-1]
    assert (sweep / "summary.csv").exists() and (sweep / "summary.png").exists()
    # the sweep did not touch the main filter output
    assert json.loads((d / "filter" / "counts.json").read_text())["settings"]["max_reprojection_share"] == 0.015


def test_benchmark_scores_prediction_files(built, tmp_path):
    d, _ = built
    gt_file = d / "export" / "json" / "2Dto3D_test_3d.json"
    cli(d, "stage=benchmark", *SMALL, f"benchmark.predictions={gt_file}", "benchmark.method=oracle")
    gt = json.loads(gt_file.read_text())
    shifted = {i: [[s["keypoints_3d"][str(j)][k] + (10.0 if (j, k) == (100, "x") else 0.0) for k in "xyz"]
                   for j in range(skeleton.NUM_KEYPOINTS)] for i, s in gt.items()}
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(shifted))
    cli(d, "stage=benchmark", *SMALL, f"benchmark.predictions={pred}", "benchmark.method=shifted")
    scores = json.loads((d / "benchmark" / "scores.json").read_text())
    assert scores["oracle (2Dto3D)"]["whole"] == pytest.approx(0.0, abs=1e-9)
    assert scores["shifted (2Dto3D)"]["whole"] == pytest.approx(10.0 / skeleton.NUM_KEYPOINTS)
    assert scores["shifted (2Dto3D)"]["body"] == pytest.approx(0.0, abs=1e-9)
    assert "| shifted (2Dto3D) |" in (d / "benchmark" / "scores.md").read_text()
    from build_h3wb.leaderboard.masking import load_masks

    masks, _ = load_masks(d / "export" / "json" / "I2Dto3D_test_masks.npz")
    n_i2d = len(load_h3wb_json(d / "export" / "json" / "I2Dto3D_test_2d.json")["ids"])
    assert masks.shape == (n_i2d, skeleton.NUM_KEYPOINTS) and masks.any()
    out = cli(d, "stage=benchmark", *SMALL, check=False)
    assert out.returncode != 0 and "benchmark.predictions is empty" in out.stdout + out.stderr
    # cross-validation fold 2 of the training file; the whole file as predictions is a superset
    train = d / "export" / "json" / "2Dto3D_train.json"
    out = cli(d, "stage=benchmark", *SMALL, f"benchmark.predictions={train}", "benchmark.method=oracle",
              "benchmark.cross_validation=2")
    row = json.loads((d / "benchmark" / "scores.json").read_text())["oracle (2Dto3D, cv2)"]
    assert row["whole"] == pytest.approx(0.0, abs=1e-9) and row["num_samples"] % 4 == 0
    assert row["ignored_ids"] == len(load_h3wb_json(train)["ids"]) - row["num_samples"]


def test_pictures_overlays_land_on_the_keypoints(built):
    d, _ = built
    frames = h5py.File(d / "detect" / "S1" / "Walking 1.h5")["frames"][:]
    frame = int(frames[10])
    cli(d, "stage=pictures", *SMALL, "pictures.subject=S1", "pictures.sequence=Walking 1", f"pictures.frame={frame}")
    out = d / "pictures" / "S1" / "Walking 1"
    for name in (f"frame_{frame:04d}_views.png", f"frame_{frame:04d}_3d.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from build_h3wb.build import read_rig
    from build_h3wb.viz.overlays import view_layers

    with h5py.File(d / "detect" / "S1" / "Walking 1.h5") as f:
        det = f["keypoints"][:, 10]
        rig = read_rig(dict(f.attrs), "detect")
    with h5py.File(d / "triangulate" / "S1" / "Walking 1.h5") as f:
        tri = f["keypoints_3d"][10].astype(np.float64)
        views = f["views_used"][10]
    layers = view_layers(rig, det, tri, np.zeros(skeleton.NUM_KEYPOINTS, np.uint8))
    assert np.array_equal(layers["detected"], det[..., :2].astype(np.float64), equal_nan=True)
    used = ((views[None].astype(np.int64) >> np.arange(len(rig))[:, None]) & 1).astype(bool)  # (C, J)
    gap = np.linalg.norm(layers["triangulated"] - det[..., :2], axis=-1)[used]
    assert used.sum() > 100 and np.median(gap) < 5.0  # the reprojected points sit on the detections they came from
    out = cli(d, "stage=pictures", *SMALL, "pictures.frame=3", check=False)
    assert out.returncode != 0 and "not a selected frame" in out.stdout + out.stderr


def test_complete_from_a_given_checkpoint_fine_tunes_it(built, tmp_path):
    d, _ = built
    for stage in ("detect", "triangulate"):
        shutil.copytree(d / stage, tmp_path / stage)
    ckpt = d / "complete" / "model.pt"
    cli(tmp_path, "stage=complete", *SMALL, f"complete.checkpoint={ckpt}")
    counts = json.loads((tmp_path / "complete" / "manifest.json").read_text())["counts"]
    assert counts["network"] == "prior fine-tuned on the build" and counts["prior"]["path"] == str(ckpt)
    assert counts["train_poses"] >= 45  # the smoke build has enough complete poses to fine-tune on
    model = json.loads((tmp_path / "complete" / "model.json").read_text())
    assert len(model["history"]["epoch"]) == 3
