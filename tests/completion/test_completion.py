import os

import numpy as np
import pytest
import torch

from build_h3wb import skeleton
from build_h3wb.completion.baselines import lowrank_completion, mean_pose_completion, nearest_pose_completion
from build_h3wb.completion.config import CompletionConfig
from build_h3wb.completion.model import CompletionNet
from build_h3wb.completion.train import (
    DEFAULT_MASK_PROBS,
    MASK_MODES,
    complete_poses,
    denormalize_poses,
    load_checkpoint,
    make_masks,
    normalize_poses,
    resolve_device,
    save_checkpoint,
    train_completion,
)
from build_h3wb.synthetic.motion import ACTIONS, generate_motion

J = skeleton.NUM_KEYPOINTS
HIPS = [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]
TINY = dict(width=256, num_blocks=2, epochs=8, batch_size=128, warmup_epochs=1)


def _motion(subjects, step_s):
    t = np.arange(0.0, 20.0, step_s)
    return np.concatenate([generate_motion(s, a, t) for s in subjects for a in ACTIONS])


@pytest.fixture(scope="module")
def data():
    """Train on four subjects, test on a held-out one (S8) with make_masks holes."""
    train = _motion(("S1", "S5", "S6", "S7"), 0.4)  # (3000, J, 3)
    test = _motion(("S8",), 0.5)  # (600, J, 3)
    hidden = make_masks(len(test), np.random.default_rng(7))
    holes = test.copy()
    holes[hidden] = np.nan
    return train, test, hidden, holes


@pytest.fixture(scope="module")
def trained(data):
    train = data[0]
    model, history = train_completion(train, CompletionConfig.from_conf(**TINY), seed=0, progress=False)
    return model, history


def _part_errors(pred, gt, hidden):
    e = np.linalg.norm(pred - gt, axis=-1)  # (N, J)
    return {p: float(e[:, sl][hidden[:, sl]].mean()) for p, sl in skeleton.REPORT_PARTS.items()}


# ---------------------------------------------------------------------------------------------------------------
# Masks and normalisation


def test_make_masks_shape_seeded_and_hips_kept():
    m = make_masks(500, np.random.default_rng(3))
    assert m.shape == (500, J) and m.dtype == bool
    assert np.array_equal(m, make_masks(500, np.random.default_rng(3)))
    assert not np.array_equal(m, make_masks(500, np.random.default_rng(4)))
    assert not m[:, HIPS].any()
    assert m.any(1).all()  # every pose loses something


def _whole(m, part):
    return m[:, skeleton.PARTS[part]].all(1)


@pytest.mark.parametrize("mode", MASK_MODES)
def test_make_masks_each_mode(mode):
    m = make_masks(400, np.random.default_rng(0), {mode: 1.0})
    face, left, right = _whole(m, "face"), _whole(m, "left_hand"), _whole(m, "right_hand")
    if mode == "face":
        assert face.all()
    elif mode == "hand":
        assert (left | right).all() and 0.3 < left.mean() < 0.7
    elif mode == "hand_face":
        assert face.all() and (left | right).all()
    elif mode == "both_hands":
        assert (left & right).all()
    else:  # random and chunks: holes, but rarely a whole part
        assert m.any(1).all() and face.mean() < 0.05 and (left & right).mean() < 0.05
    assert not m[:, HIPS].any()


def test_make_masks_default_mixes_all_modes():
    m = make_masks(2000, np.random.default_rng(1))
    face, left, right = _whole(m, "face"), _whole(m, "left_hand"), _whole(m, "right_hand")
    assert (face & ~left & ~right).mean() > 0.05  # face only
    assert ((left ^ right) & ~face).mean() > 0.05  # one hand only
    assert ((left ^ right) & face).mean() > 0.03  # a hand and the face
    assert (left & right).mean() > 0.05  # both hands
    partial = ~face & ~left & ~right
    assert partial.mean() > 0.2  # random keypoints and chunks
    assert m[partial][:, skeleton.REPORT_PARTS["body"]].any()  # random mode reaches the body
    assert set(DEFAULT_MASK_PROBS) == set(MASK_MODES)


def test_make_masks_bad_probs():
    with pytest.raises(ValueError, match="unknown mask modes"):
        make_masks(3, np.random.default_rng(0), {"elbows": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        make_masks(3, np.random.default_rng(0), {"face": 0.0})


def test_normalize_round_trip_and_frame():
    poses = generate_motion("S1", "Walking", np.arange(0, 5, 0.5))
    norm, root, rot = normalize_poses(poses, 1000.0)
    np.testing.assert_allclose(skeleton.root(norm), 0.0, atol=1e-12)
    hips = norm[:, skeleton.LEFT_HIP] - norm[:, skeleton.RIGHT_HIP]
    np.testing.assert_allclose(hips[:, 1], 0.0, atol=1e-12)
    assert (hips[:, 0] > 0).all()
    np.testing.assert_allclose(denormalize_poses(norm, root, rot, 1000.0), poses, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Network, training and inference


def test_forward_shapes_with_and_without_prior():
    x = torch.randn(5, J, 3)
    vis = torch.rand(5, J) > 0.3
    for rank in (0, 4):
        net = CompletionNet(CompletionConfig.from_conf(width=32, num_blocks=1, prior_rank=rank))
        if rank:
            net.fit_prior(np.random.default_rng(0).normal(size=(20, J, 3)))
        assert net(x, vis).shape == (5, J, 3)


def test_train_history_and_determinism(data):
    train = data[0][:300]
    cfg = CompletionConfig.from_conf(width=32, num_blocks=1, epochs=2, batch_size=64)
    m1, h1 = train_completion(train, cfg, seed=5, progress=False, val_poses=train[:50])
    m2, _ = train_completion(train, cfg, seed=5, progress=False)
    assert not m1.training
    assert h1["epoch"] == [1, 2] and len(h1["train_hidden_mm"]) == 2 and len(h1["val_hidden_mm"]) == 2
    assert len(h1["time_s"]) == 2 and h1["train_time_s"] > 0 and h1["num_params"] > 0
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k


def test_complete_poses_keeps_observed_bitwise(trained, data):
    model, _ = trained
    _, _, hidden, holes = data
    for dtype in (np.float64, np.float32):
        q = holes.astype(dtype)
        out, filled = complete_poses(model, q)
        assert out.shape == q.shape and out.dtype == dtype and filled.shape == hidden.shape
        assert np.array_equal(filled, hidden)
        assert np.isfinite(out).all()
        assert out[~hidden].tobytes() == q[~hidden].tobytes()


def test_robust_fill_ignores_grossly_wrong_observations(trained, data):
    model, _ = trained
    _, test, hidden, holes = data
    rng = np.random.default_rng(3)
    bad_obs = ~hidden & (rng.random(hidden.shape) < 0.03)
    bad_obs[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]] = False
    corrupt = holes.copy()
    corrupt[bad_obs] += rng.choice([-1.0, 1.0], size=(bad_obs.sum(), 3)) * 800.0  # observations 1.4 m off
    plain, _ = complete_poses(model, corrupt)
    robust, filled = complete_poses(model, corrupt, robust_mm=100.0)
    assert np.array_equal(filled, hidden)
    assert robust[~hidden].tobytes() == corrupt[~hidden].tobytes()  # observations are still returned as given
    e_plain = _part_errors(plain, test, hidden)["whole"]
    e_robust = _part_errors(robust, test, hidden)["whole"]
    assert e_robust < 0.8 * e_plain
    # on clean input the robust pass changes little
    clean, _ = complete_poses(model, holes)
    clean_robust, _ = complete_poses(model, holes, robust_mm=100.0)
    assert _part_errors(clean_robust, test, hidden)["whole"] < 1.1 * _part_errors(clean, test, hidden)["whole"]


def test_complete_poses_inputs_set_what_the_network_sees(trained, data):
    model, _ = trained
    _, test, _, _ = data
    hand, wrist = skeleton.PARTS["left_hand"], skeleton.index("left_wrist")
    hidden = np.zeros(test.shape[:2], dtype=bool)
    hidden[:, hand.start + 5 : hand.stop] = True  # most fingers lost, the rest of the hand and the wrist misplaced
    q = test.copy()
    q[hidden] = np.nan
    q[:, [wrist, *range(hand.start, hand.start + 5)]] += [250.0, -100.0, 0.0]
    inputs = q.copy()
    inputs[:, hand] = np.nan
    inputs[:, wrist] = test[:, wrist]  # the network is told where the wrist is and not shown the misplaced hand
    plain, _ = complete_poses(model, q)
    anchored, filled = complete_poses(model, q, inputs=inputs)
    assert np.array_equal(filled, hidden)  # the holes of poses are filled, not those of inputs
    assert anchored[~hidden].tobytes() == q[~hidden].tobytes()  # observations returned as given
    e_plain = _part_errors(plain, test, hidden)["hands"]
    e_anchored = _part_errors(anchored, test, hidden)["hands"]
    assert e_anchored < 0.5 * e_plain
    bad = inputs.copy()
    bad[:, skeleton.LEFT_HIP] += 1.0
    with pytest.raises(ValueError, match="hips"):
        complete_poses(model, q, inputs=bad)


def test_complete_poses_root_missing_left_unfilled(trained, data):
    model, _ = trained
    q = data[3][:20].copy()
    q[:5, skeleton.LEFT_HIP] = np.nan
    q[5:8, skeleton.RIGHT_HIP, 2] = np.nan  # one coordinate missing counts as missing
    out, filled = complete_poses(model, q)
    assert not filled[:8].any()
    assert np.array_equal(np.isnan(out[:8]), np.isnan(q[:8]))
    assert np.isfinite(out[8:]).all() and filled[8:].any()


def test_complete_poses_complete_input_unchanged(trained, data):
    model, _ = trained
    test = data[1][:10]
    out, filled = complete_poses(model, test)
    assert not filled.any() and out.tobytes() == test.tobytes()


def test_net_beats_baselines_on_held_out_subject(trained, data):
    model, _ = trained
    train, test, hidden, holes = data
    net = _part_errors(complete_poses(model, holes)[0], test, hidden)
    near = _part_errors(nearest_pose_completion(train, holes), test, hidden)
    low = _part_errors(lowrank_completion(train, holes), test, hidden)
    for part in ("face", "hands", "whole"):
        assert net[part] < near[part], (part, net, near)
        assert net[part] < low[part], (part, net, low)


def test_baselines_beat_mean_pose_fill(data):
    train, test, hidden, holes = data
    mean = _part_errors(mean_pose_completion(train, holes), test, hidden)
    for fn in (nearest_pose_completion, lowrank_completion):
        out = fn(train, holes)
        assert out[~hidden].tobytes() == holes[~hidden].tobytes()
        err = _part_errors(out, test, hidden)
        for part in ("body", "face", "hands"):
            assert err[part] < mean[part], (fn.__name__, part, err, mean)


def test_baselines_leave_rootless_poses(data):
    train, _, _, holes = data
    q = holes[:6].copy()
    q[:2, skeleton.RIGHT_HIP] = np.nan
    for fn in (nearest_pose_completion, lowrank_completion, mean_pose_completion):
        out = fn(train, q)
        assert np.array_equal(np.isnan(out[:2]), np.isnan(q[:2]))
        assert np.isfinite(out[2:]).all()


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints, devices, errors


def test_checkpoint_round_trip(trained, data, tmp_path):
    model, _ = trained
    holes = data[3][:50]
    path = tmp_path / "sub" / "completion.pt"
    save_checkpoint(path, model, model.cfg, {"epochs": 8, "subjects": ["S1", "S5"], "err": 1.5})
    assert os.listdir(path.parent) == ["completion.pt"]  # no temporary file left
    loaded, cfg, extra = load_checkpoint(path)
    assert cfg == model.cfg and extra == {"epochs": 8, "subjects": ["S1", "S5"], "err": 1.5}
    assert not loaded.training
    assert np.array_equal(complete_poses(loaded, holes)[0], complete_poses(model, holes)[0])
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["config"], dict) and raw["config"]["width"] == model.cfg.width


def test_checkpoint_errors(trained, tmp_path):
    model, _ = trained
    with pytest.raises(TypeError, match="weights-only"):
        save_checkpoint(tmp_path / "x.pt", model, model.cfg, {"a": np.zeros(3)})
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="no completion checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="unknown CompletionConfig keys"):
        CompletionConfig.from_dict({"width": 8, "depth": 3})
    old = CompletionConfig.from_dict({"width": 8})  # a checkpoint written before the other settings existed
    assert old.width == 8 and old.num_blocks == CompletionConfig.from_conf().num_blocks  # the rest: conf/ values


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bad_shapes_raise(trained):
    model, _ = trained
    bad = np.zeros((5, 10, 3))
    with pytest.raises(ValueError, match=r"\(5, 10, 3\)"):
        complete_poses(model, bad)
    with pytest.raises(ValueError, match=r"\(5, 10, 3\)"):
        train_completion(bad, CompletionConfig.from_conf(epochs=1), progress=False)
    good = np.zeros((4, J, 3))
    for fn in (nearest_pose_completion, lowrank_completion, mean_pose_completion):
        with pytest.raises(ValueError, match=r"\(5, 10, 3\)"):
            fn(bad, good)
        with pytest.raises(ValueError, match=r"\(5, 10, 3\)"):
            fn(good, bad)
    nan = np.zeros((4, J, 3))
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="complete"):
        train_completion(nan, CompletionConfig.from_conf(epochs=1), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_and_complete_on_gpu(data):
    train, _, hidden, holes = data
    cfg = CompletionConfig.from_conf(width=64, num_blocks=1, epochs=1)
    model, _ = train_completion(train, cfg, device="cuda", progress=False)
    assert next(model.parameters()).is_cuda
    out, filled = complete_poses(model, holes, device="cuda")
    assert np.array_equal(filled, hidden) and out[~hidden].tobytes() == holes[~hidden].tobytes()
