import csv
import json

import h5py
import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.leaderboard import masking, metrics, scoring

J = skeleton.NUM_KEYPOINTS
FACE = skeleton.REPORT_PARTS["face"]
BODY = skeleton.REPORT_PARTS["body"]
LH, RH = skeleton.PARTS["left_hand"], skeleton.PARTS["right_hand"]
N_BODY, N_FACE, N_HAND = BODY.stop - BODY.start, FACE.stop - FACE.start, LH.stop - LH.start
OFFICIAL_FUNCS = [metrics.mpjpe_whole, metrics.mpjpe_body, metrics.mpjpe_face, metrics.mpjpe_hands,
                  metrics.mpjpe_face_aligned, metrics.mpjpe_hands_aligned]


def poses(n, seed=0):
    """(n, J, 3) random poses in mm, roughly human-sized."""
    return np.random.default_rng(seed).normal(0.0, 300.0, (n, J, 3))


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ------------------------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------------------------


def test_parts_partition_the_skeleton():
    assert (BODY.start, FACE.start, LH.start, RH.stop) == (0, BODY.stop, FACE.stop, J)
    assert N_HAND == RH.stop - RH.start


def test_identical_poses_score_zero():
    gt = poses(3)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in metrics.score_all(gt, gt).values())


def test_global_translation_is_removed_by_mid_hip_centring():
    gt = poses(4)
    pred = gt + np.array([100.0, -50.0, 2000.0])
    for f in OFFICIAL_FUNCS:
        assert f(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_one_joint_offset_gives_5_over_part_size():
    gt = poses(2)
    pred = gt.copy()
    pred[:, skeleton.LEFT_WRIST] += [3.0, 4.0, 0.0]
    assert metrics.mpjpe_whole(pred, gt) == pytest.approx(5.0 / J)
    assert metrics.mpjpe_body(pred, gt) == pytest.approx(5.0 / N_BODY)
    assert metrics.mpjpe_face(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mpjpe_hands(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_offset_in_one_sample_is_averaged_over_samples():
    gt = poses(2)
    pred = gt.copy()
    pred[0, skeleton.LEFT_WRIST] += [3.0, 4.0, 0.0]
    assert metrics.mpjpe_whole(pred, gt) == pytest.approx(5.0 / J / 2)


def test_hip_offset_moves_the_root():
    # left hip + (2, 0, 0): mid-hip moves by (1, 0, 0), so every joint (the hip too: |2 - 1|) is 1 mm off
    gt = poses(2)
    pred = gt.copy()
    pred[:, skeleton.LEFT_HIP] += [2.0, 0.0, 0.0]
    for f in (metrics.mpjpe_whole, metrics.mpjpe_body, metrics.mpjpe_face, metrics.mpjpe_hands):
        assert f(pred, gt) == pytest.approx(1.0)
    assert metrics.mpjpe_face_aligned(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mpjpe_hands_aligned(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_face_block_translation():
    gt = poses(3)
    pred = gt.copy()
    pred[:, FACE] += [0.0, 6.0, 8.0]  # the face keypoints and the nose move together
    pred[:, skeleton.NOSE] += [0.0, 6.0, 8.0]
    assert metrics.mpjpe_face(pred, gt) == pytest.approx(10.0)
    assert metrics.mpjpe_face_aligned(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mpjpe_whole(pred, gt) == pytest.approx(10.0 * (N_FACE + 1) / J)
    assert metrics.mpjpe_body(pred, gt) == pytest.approx(10.0 / N_BODY)
    assert metrics.mpjpe_hands(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_nose_offset_shifts_the_aligned_face():
    gt = poses(2)
    pred = gt.copy()
    pred[:, skeleton.NOSE] += [0.0, 3.0, 4.0]
    assert metrics.mpjpe_face(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mpjpe_face_aligned(pred, gt) == pytest.approx(5.0)


def test_hands_translated_separately():
    gt = poses(3)
    pred = gt.copy()
    pred[:, LH] += [1.0, 2.0, 2.0]  # 3 mm
    pred[:, RH] += [0.0, 6.0, 8.0]  # 10 mm
    assert metrics.mpjpe_hands(pred, gt) == pytest.approx(6.5)
    assert metrics.mpjpe_hands_aligned(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_hands_aligned_averages_left_and_right():
    gt = poses(2)
    pred = gt.copy()
    pred[:, LH.start + 4] += [3.0, 4.0, 0.0]  # a left fingertip
    assert metrics.mpjpe_hands_aligned(pred, gt) == pytest.approx((5.0 / N_HAND + 0.0) / 2)
    pred[:, skeleton.RIGHT_HAND_ROOT] += [0.0, 0.0, 7.0]  # the right root: the other 20 right joints are 7 mm off
    assert metrics.mpjpe_hands_aligned(pred, gt) == pytest.approx((5.0 / N_HAND + 7.0 * (N_HAND - 1) / N_HAND) / 2)


def test_pa_mpjpe_removes_rotation_scale_translation():
    rng = np.random.default_rng(3)
    gt = poses(5)
    pred = np.stack([1.3 * g @ random_rotation(rng).T + rng.normal(0, 500, 3) for g in gt])
    assert metrics.mpjpe_whole(pred, gt) > 10.0
    for part in skeleton.REPORT_PARTS:
        assert metrics.pa_mpjpe(pred, gt, part) == pytest.approx(0.0, abs=1e-6)
    assert metrics.score_all(pred, gt)["pa_whole"] == pytest.approx(0.0, abs=1e-6)


def test_pa_mpjpe_does_not_use_reflections_and_never_exceeds_centred_error():
    gt = poses(4, seed=5)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert metrics.pa_mpjpe(mirrored, gt) > 1.0
    noisy = gt + np.random.default_rng(1).normal(0, 20, gt.shape)
    assert metrics.pa_mpjpe(noisy, gt) <= metrics.mpjpe_whole(noisy, gt) + 1e-9
    with pytest.raises(ValueError, match="unknown part"):
        metrics.pa_mpjpe(noisy, gt, "tail")


def test_score_all_keys():
    gt = poses(2)
    res = metrics.score_all(gt + 1.0, gt)
    assert list(res) == [*metrics.OFFICIAL_KEYS, *metrics.UNOFFICIAL_KEYS]
    assert metrics.OFFICIAL_KEYS == ("whole", "body", "face", "hands", "face_aligned", "hands_aligned")
    assert metrics.UNOFFICIAL_KEYS == ("pa_whole",)
    assert all(isinstance(v, float) for v in res.values())


@pytest.mark.parametrize("f", [*OFFICIAL_FUNCS, metrics.pa_mpjpe, metrics.score_all])
def test_shape_errors(f):
    gt = poses(2)
    with pytest.raises(ValueError, match=r"pred and gt shapes differ: pred \(3, "):
        f(poses(3), gt)
    with pytest.raises(ValueError, match=r"pred must have shape \(N, J, 3\).*got \(2, 17, 3\)"):
        f(gt[:, :17], gt)
    with pytest.raises(ValueError, match=r"gt must have shape"):
        f(gt, gt[..., :2])
    with pytest.raises(ValueError, match="N >= 1"):
        f(gt[:0], gt[:0])


def test_nan_means_missing_and_only_finite_errors_are_averaged():
    gt = poses(4)
    pred = gt + 2.0 * np.eye(3)[0]  # a 2 mm translation: no centred error
    pred[:, 100] += [0.0, 3.0, 4.0]  # one keypoint 5 mm off after centring
    pred[1, 5] = np.nan
    pred[3, 7, 0] = np.nan
    errors = metrics.keypoint_errors(pred, gt)
    assert np.isnan(errors["root_relative"][1, 5]) and np.isnan(errors["root_relative"][3, 7])
    n_whole = 4 * J - 2
    assert metrics.part_mean(errors["root_relative"], skeleton.REPORT_PARTS["whole"]) == (
        pytest.approx(4 * 5.0 / n_whole), n_whole)
    assert metrics.mpjpe_whole(pred, gt) == pytest.approx(4 * 5.0 / n_whole)
    # a missing hip hides every mid-hip-centred error of that sample, a missing nose the aligned face
    pred[0, skeleton.LEFT_HIP] = np.nan
    pred[2, skeleton.NOSE] = np.nan
    errors = metrics.keypoint_errors(pred, gt)
    assert np.isnan(errors["root_relative"][0]).all() and np.isfinite(errors["absolute"][0, :5]).all()
    assert np.isnan(errors["face_aligned"][2, FACE]).all() and np.isfinite(errors["face_aligned"][1, FACE]).all()
    assert np.isnan(errors["face_aligned"][:, :FACE.start]).all()  # outside the part
    with pytest.raises(ValueError, match=r"pred contains NaN values: 10 values in 4 of 4 samples"):
        metrics.check_complete(pred, gt)
    with pytest.raises(ValueError, match=r"gt contains NaN"):
        metrics.check_complete(gt, pred)
    metrics.check_complete(gt, gt)


def test_evaluate_and_the_leaderboard_scorer_agree_with_and_without_nan():
    from build_h3wb.evaluation import ErrorStats

    rng = np.random.default_rng(5)
    gt = poses(6, seed=8)
    pred = gt + rng.normal(0.0, 15.0, gt.shape)
    for missing in (0.0, 0.2):
        p = pred.copy()
        p[rng.random(p.shape[:2]) < missing] = np.nan  # whole keypoints missing, hands unevenly
        p[0, LH] = np.nan  # one sample without its left hand: left and right hands differ in count
        stats = ErrorStats()
        stats.add(p[:4], gt[:4])
        stats.add(p[4:], gt[4:])  # streamed in two sequences
        scored = metrics.score_all(p, gt)
        pairs = {"whole": ("root_relative", "whole"), "body": ("root_relative", "body"),
                 "face": ("root_relative", "face"), "hands": ("root_relative", "hands"),
                 "face_aligned": ("face_aligned", "face"), "hands_aligned": ("hands_aligned", "hands")}
        for key, (variant, part) in pairs.items():
            assert stats.mean(variant, part) == pytest.approx(scored[key], rel=1e-12), (missing, key)
            assert stats.table()[variant][part]["mean_mm"] == pytest.approx(scored[key], abs=0.005)
        # the official formula on the complete rows (test_score centres the difference; same thing)
        if missing == 0.0:
            full = slice(1, None)
            d = pred[full] - gt[full]
            d = d - (d[:, [skeleton.LEFT_HIP]] + d[:, [skeleton.RIGHT_HIP]]) / 2
            assert metrics.mpjpe_whole(pred[full], gt[full]) == pytest.approx(np.linalg.norm(d, axis=-1).mean())


# ------------------------------------------------------------------------------------------------------------------
# masking
# ------------------------------------------------------------------------------------------------------------------


def test_masks_shape_and_determinism():
    a = masking.i2d_masks(50, seed=7)
    assert a.shape == (50, J) and a.dtype == np.bool_
    np.testing.assert_array_equal(a, masking.i2d_masks(50, seed=7))
    assert not np.array_equal(a, masking.i2d_masks(50, seed=8))
    assert masking.i2d_masks(0, seed=1).shape == (0, J)
    with pytest.raises(ValueError, match="non-negative"):
        masking.i2d_masks(-1, seed=1)


def test_mode_frequencies_and_rates():
    n = 20_000
    masks, modes = masking.i2d_masks(n, seed=0), masking.i2d_mask_modes(n, seed=0)
    freq = np.bincount(modes, minlength=4) / n
    np.testing.assert_allclose(freq, masking.MODE_PROBS, atol=0.015)
    rand = masks[modes == 0]
    assert rand.mean() == pytest.approx(0.25, abs=0.005)
    assert np.abs(rand.mean(axis=0) - 0.25).max() < 0.04  # every keypoint, about 8000 draws each
    for code, part in enumerate(masking.MODES[1:], start=1):
        expect = np.zeros(J, dtype=bool)
        expect[skeleton.PARTS[part]] = True
        assert (masks[modes == code] == expect).all()


def test_masks_round_trip(tmp_path):
    masks = masking.i2d_masks(37, seed=11)
    path = tmp_path / "sub" / "i2d_masks.npz"
    masking.save_masks(path, masks, seed=11)
    loaded, seed = masking.load_masks(path)
    np.testing.assert_array_equal(loaded, masks)
    assert seed == 11 and loaded.dtype == np.bool_
    assert [p.name for p in path.parent.iterdir()] == ["i2d_masks.npz"]  # no temporary file left
    with pytest.raises(ValueError, match=r"bool array of shape \(n, "):
        masking.save_masks(path, masks[:, :10], seed=11)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="'masks' is missing"):
        masking.load_masks(tmp_path / "other.npz")


# ------------------------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------------------------


def official_json(kp3d, ids):
    return {str(i): {"keypoints_3d": {str(j): {"x": float(p[0]), "y": float(p[1]), "z": float(p[2])}
                                      for j, p in enumerate(kp)}} for i, kp in zip(ids, kp3d)}


@pytest.fixture
def gt_file(tmp_path):
    ids = [0, 1, 2, 3, 8, 9, 10, 11]
    kp = poses(len(ids), seed=42)
    path = tmp_path / "2Dto3D_test_3d.json"
    path.write_text(json.dumps(official_json(kp, ids)))
    return path, ids, kp


def offsets(n):
    """(n, J, 3) known errors: a per-sample translation, a face shift and one finger offset."""
    off = np.zeros((n, J, 3))
    off += np.arange(n)[:, None, None] * 10.0
    off[:, FACE] += [0.0, 3.0, 4.0]
    off[:, LH.start + 2] += [1.0, 2.0, 2.0]
    return off


def test_score_official_json_predictions(gt_file, tmp_path):
    path, ids, kp = gt_file
    pred = kp + offsets(len(ids))
    perm = np.random.default_rng(0).permutation(len(ids))  # file order need not match
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(official_json(pred[perm], np.asarray(ids)[perm])))
    res = scoring.score_predictions(pred_path, path, "2Dto3D")
    expect = metrics.score_all(pred, kp)
    for k, v in expect.items():
        assert res[k] == pytest.approx(v)
    assert res["face"] == pytest.approx(5.0)
    assert res["hands_aligned"] == pytest.approx(3.0 / N_HAND / 2)
    assert res["num_samples"] == len(ids) and res["task"] == "2Dto3D"
    # a folder as ground truth picks <task>_test_3d.json
    assert scoring.score_predictions(pred_path, path.parent, "2Dto3D")["whole"] == pytest.approx(expect["whole"])


def test_simple_json_and_hdf5_predictions(gt_file, tmp_path):
    path, ids, kp = gt_file
    pred = kp + offsets(len(ids))
    expect = metrics.score_all(pred, kp)
    simple = tmp_path / "simple.json"
    simple.write_text(json.dumps({str(i): p.tolist() for i, p in zip(ids, pred)}))
    h5 = tmp_path / "pred.h5"
    with h5py.File(h5, "w") as f:
        f["ids"] = np.asarray(ids, dtype=np.int64)
        f["keypoints_3d"] = pred
    h5s = tmp_path / "pred_str.h5"
    with h5py.File(h5s, "w") as f:
        f.create_dataset("ids", data=[str(i) for i in ids], dtype=h5py.string_dtype())
        f["keypoints_3d"] = pred
    for p in (simple, h5, h5s):
        loaded_ids, loaded = scoring.load_predictions(p)
        assert loaded_ids.tolist() == [str(i) for i in ids]
        np.testing.assert_allclose(loaded, pred)
        res = scoring.score_predictions(p, path, "2Dto3D")
        assert {k: res[k] for k in expect} == pytest.approx(expect)


def test_missing_ids_are_an_error_and_extra_ids_are_ignored(gt_file, tmp_path, caplog):
    path, ids, kp = gt_file
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps({str(i): p.tolist() for i, p in zip(ids[1:] + [99], kp)}))
    with pytest.raises(ValueError, match=r"1 of the 8 ids of .* have no prediction \(e\.g\. \['0'\]\)"):
        scoring.score_predictions(pred_path, path, "2Dto3D")
    pred_path.write_text(json.dumps({str(i): p.tolist() for i, p in zip(ids[:-2], kp)}))
    with pytest.raises(ValueError, match=r"2 of the 8 ids .*'10', '11'"):
        scoring.score_predictions(pred_path, path, "2Dto3D")
    # a superset (e.g. both test sets in one file) is scored on the ground truth's ids
    pred = kp + offsets(len(ids))
    both = {str(i): p.tolist() for i, p in zip(ids, pred)} | {str(i): [[1e6] * 3] * J for i in (4, 5, 6, 7, 99)}
    pred_path.write_text(json.dumps(both))
    with caplog.at_level("INFO", logger="build_h3wb.leaderboard.scoring"):
        res = scoring.score_predictions(pred_path, path, "2Dto3D")
    assert res["whole"] == pytest.approx(metrics.score_all(pred, kp)["whole"]) and res["ignored_ids"] == 5
    assert "5 predictions are not in 2Dto3D_test_3d.json" in caplog.text


def test_cross_validation_folds_keep_whole_poses(tmp_path):
    assert scoring.cv_fold(80000, 1).tolist() == list(range(16000))  # H3WB: the official folds
    assert scoring.cv_fold(80000, 5)[[0, -1]].tolist() == [64000, 79999]
    for n in (40, 44, 57, 1000, 1236):
        folds = [scoring.cv_fold(n, f) for f in range(1, 6)]
        assert len({len(f) for f in folds}) == 1 and len(folds[0]) % 4 == 0 and len(folds[0]) > 0
        assert all(f[0] % 4 == 0 for f in folds)  # starts a pose
        assert len(np.unique(np.concatenate(folds))) == 5 * len(folds[0]) <= n
    with pytest.raises(ValueError, match="fold must be 1..5"):
        scoring.cv_fold(100, 6)
    with pytest.raises(ValueError, match="too few"):
        scoring.cv_fold(16, 1)
    # cvN scores fold N of the training file; predictions of the whole file are a superset
    kp = poses(48, seed=3)
    train = tmp_path / "2Dto3D_train.json"
    train.write_text(json.dumps(official_json(kp, range(48))))
    pred = kp + offsets(48)
    pred_path = tmp_path / "pred_cv2.json"
    pred_path.write_text(json.dumps({str(i): p.tolist() for i, p in enumerate(pred)}))
    fold = scoring.cv_fold(48, 2)
    assert fold.tolist() == list(range(8, 16))
    res = scoring.score_predictions(pred_path, tmp_path, "2Dto3D", cross_validation=2)
    assert res["num_samples"] == 8 and res["cross_validation"] == 2 and res["ground_truth"] == str(train)
    assert res["whole"] == pytest.approx(metrics.score_all(pred[fold], kp[fold])["whole"])


def test_bad_inputs(gt_file, tmp_path):
    path, ids, kp = gt_file
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps({str(i): p.tolist() for i, p in zip(ids, kp)}))
    with pytest.raises(ValueError, match="unknown task"):
        scoring.score_predictions(pred_path, path, "3Dto2D")
    with pytest.raises(ValueError, match="another task"):
        scoring.score_predictions(pred_path, path, "I2Dto3D")
    pred_path.write_text(json.dumps({str(i): p[:10].tolist() for i, p in zip(ids, kp)}))
    with pytest.raises(ValueError, match=r"expected \(N, J, 3\)"):
        scoring.load_predictions(pred_path)
    pred_path.write_text(json.dumps({"0": {"keypoints_3d": {"0": {"x": 1.0}}}}))
    with pytest.raises(ValueError, match="sample '0' 'keypoints_3d' lacks joint/axis"):
        scoring.load_predictions(pred_path)
    bad = kp.copy()
    bad[2, 3] = np.nan
    pred_path.write_text(json.dumps({str(i): p.tolist() for i, p in zip(ids, bad)}))  # json writes NaN
    with pytest.raises(ValueError, match="pred contains NaN values: 3 values in 1 of 8 samples.*complete poses"):
        scoring.score_predictions(pred_path, path, "2Dto3D")
    h5 = tmp_path / "bad.h5"
    with h5py.File(h5, "w") as f:
        f["keypoints_3d"] = kp
    with pytest.raises(ValueError, match="dataset 'ids' is missing"):
        scoring.load_predictions(h5)


def test_table(tmp_path):
    gt = poses(3)
    results = {"baseline": metrics.score_all(gt + offsets(3), gt), "partial": {"whole": 12.345}}
    table = scoring.format_table(results)
    header = table.splitlines()[0]
    for col in ("whole", "body", "face", "hands", "face aligned", "hands aligned", "PA whole*"):
        assert f"| {col} |" in header
    assert "| partial | 12.3 | - |" in table
    assert "not official" in table
    md, csv_path = tmp_path / "out" / "results.md", tmp_path / "out" / "results.csv"
    scoring.write_table(results, md, csv_path)
    assert md.read_text() == table
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["baseline", "partial"]
    assert float(rows[0]["face"]) == pytest.approx(results["baseline"]["face"])
    assert rows[1]["body"] == ""
