import dataclasses

import numpy as np
import pytest
import torch

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import h36m_rig
from build_h3wb.leaderboard.lifter import (
    LifterConfig,
    LifterStats,
    ResidualLifter,
    centre_and_scale_2d,
    load_lifter,
    plot_learning_curve,
    predict,
    save_lifter,
    train_lifter,
)
from build_h3wb.leaderboard.masking import i2d_masks
from build_h3wb.leaderboard.metrics import mpjpe_whole
from build_h3wb.synthetic.motion import generate_motion

J = skeleton.NUM_KEYPOINTS
ACTIONS = ("Walking", "Sitting", "Eating", "Greeting", "Phoning", "Directions")
SMALL = dict(width=256, num_blocks=2, dropout=0.1, epochs=12, batch_size=64, lr=1e-3, lr_decay=0.9)


def views(times, actions=ACTIONS):
    """2D (N, J, 2) px (pinhole) and 3D (N, J, 3) mm = R X of S1 poses through the four S1 cameras."""
    rig = h36m_rig("S1")
    vol = rig.capture_volume
    X = np.concatenate([generate_motion("S1", a, times, center_xy_mm=tuple(vol["center_xy"]),
                                        half_extent_xy_mm=tuple(vol["half_extent_xy"])) for a in actions])
    kp2d = np.concatenate([cam.project(X, distort_points=False) for cam in rig])
    kp3d = np.concatenate([X @ cam.R.T for cam in rig])
    return kp2d, kp3d


@pytest.fixture(scope="module")
def data():
    train = views(np.arange(0.0, 12.0, 0.25))  # 6 actions x 48 frames x 4 cameras = 1152
    test = views(np.arange(12.1, 16.0, 0.4))  # later times, unseen frames
    return train, test


@pytest.fixture(scope="module")
def trained(data):
    (x, y), (tx, ty) = data
    cfg = LifterConfig(**SMALL)
    return (cfg, *train_lifter(x, y, cfg, seed=0, val=(tx, ty), progress=False))


@pytest.fixture(scope="module")
def trained_i2d(data):
    (x, y), (tx, ty) = data
    cfg = LifterConfig(**SMALL, i2d=True, mask_seed=3)
    return (cfg, *train_lifter(x, y, cfg, seed=0, val=(tx, ty), progress=False))


def mean_pose_baseline(train_3d, test_3d):
    rel = train_3d - skeleton.root(train_3d)[:, None]
    return mpjpe_whole(np.broadcast_to(rel.mean(0), test_3d.shape), test_3d)


def test_config_presets():
    assert LifterConfig().width == 1024 and LifterConfig.large().width == 2048
    assert LifterConfig.large(epochs=3).epochs == 3
    with pytest.raises(ValueError, match="batch_size"):
        LifterConfig(batch_size=1)


def test_model_shapes():
    for i2d in (False, True):
        model = ResidualLifter(LifterConfig(width=32, i2d=i2d)).eval()
        out = model(torch.zeros(5, J, 2), torch.zeros(5, J, dtype=torch.bool))
        assert out.shape == (5, J, 3)
    with pytest.raises(ValueError, match="mask"):
        ResidualLifter(LifterConfig(width=32, i2d=True))(torch.zeros(5, J, 2))


def test_centre_and_scale_ignores_hidden_keypoints(data):
    (x, _), _ = data
    hidden = np.zeros(x.shape[:2], dtype=bool)
    a = centre_and_scale_2d(x[:10], hidden[:10])
    np.testing.assert_allclose(skeleton.root(a), 0.0, atol=1e-9)
    # hiding a hand and putting garbage there changes nothing else
    h = hidden[:10].copy()
    h[:, skeleton.PARTS["left_hand"]] = True
    xg = x[:10].copy()
    xg[:, skeleton.PARTS["left_hand"]] = np.nan
    b = centre_and_scale_2d(xg, h)
    np.testing.assert_allclose(b[~h], a[~h])
    assert np.all(b[h] == 0)


@pytest.mark.slow
def test_train_shapes_and_history(data, trained):
    _, (tx, ty) = data
    cfg, model, stats, history = trained
    assert isinstance(stats, LifterStats) and stats.mean_2d.shape == (J, 2) and stats.std_3d.shape == (J, 3)
    assert len(history["train_mpjpe"]) == len(history["val_mpjpe"]) == cfg.epochs
    assert history["lr"][1] == pytest.approx(cfg.lr * cfg.lr_decay)
    assert history["train_mpjpe"][-1] < history["train_mpjpe"][0]
    pred = predict(model, stats, tx)
    assert pred.shape == (len(tx), J, 3) and np.isfinite(pred).all()
    np.testing.assert_allclose(skeleton.root(pred), 0.0, atol=1e-6)


@pytest.mark.slow
def test_lifting_beats_mean_pose(data, trained):
    (x, y), (tx, ty) = data
    _, model, stats, history = trained
    baseline = mean_pose_baseline(y, ty)
    err = mpjpe_whole(predict(model, stats, tx), ty)
    assert err < 0.6 * baseline, (err, baseline)
    assert history["val_mpjpe"][-1] == pytest.approx(err, rel=1e-4)


@pytest.mark.slow
def test_i2d_lifting_beats_mean_pose(data, trained_i2d):
    (x, y), (tx, ty) = data
    _, model, stats, _ = trained_i2d
    masks = i2d_masks(len(tx), seed=99)
    baseline = mean_pose_baseline(y, ty)
    err = mpjpe_whole(predict(model, stats, tx, masks), ty)
    assert err < 0.7 * baseline, (err, baseline)


@pytest.mark.slow
def test_masked_inputs_are_zeroed_and_mask_matters(data, trained_i2d):
    _, (tx, _) = data
    _, model, stats, _ = trained_i2d
    masks = i2d_masks(len(tx), seed=5)
    garbage = tx.copy()
    garbage[masks] = 1e6  # values under the mask must not matter
    np.testing.assert_allclose(predict(model, stats, garbage, masks), predict(model, stats, tx, masks), atol=1e-9)
    nan_in = tx.copy()
    nan_in[masks] = np.nan  # NaN counts as hidden
    np.testing.assert_allclose(predict(model, stats, nan_in), predict(model, stats, tx, masks), atol=1e-9)
    assert not np.allclose(predict(model, stats, tx, masks), predict(model, stats, tx))
    # the mask itself is an input: same (zeroed) coordinates, different mask -> different output
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    predict(model, stats, tx[:4], masks[:4])
    x_in = seen[-1]
    assert torch.all(x_in[torch.from_numpy(masks[:4])] == 0)
    m = torch.from_numpy(masks[:4])
    with torch.no_grad():
        a, b = model(x_in, m), model(x_in, torch.zeros_like(m))
    assert not torch.allclose(a, b)


@pytest.mark.slow
def test_2d_lifter_refuses_masks(data, trained):
    _, (tx, _) = data
    _, model, stats, _ = trained
    with pytest.raises(ValueError, match="i2d"):
        predict(model, stats, tx, i2d_masks(len(tx), seed=0))


@pytest.mark.slow
def test_save_load_round_trip(tmp_path, data, trained):
    _, (tx, _) = data
    cfg, model, stats, history = trained
    path = tmp_path / "sub" / "lifter.pt"
    save_lifter(path, model, cfg, stats, history)
    assert [p.name for p in path.parent.iterdir()] == ["lifter.pt"]  # no temporary file left
    model2, cfg2, stats2, history2 = load_lifter(path, "cpu")
    assert cfg2 == cfg
    assert history2["val_mpjpe"] == pytest.approx(history["val_mpjpe"])
    for f in dataclasses.fields(LifterStats):
        np.testing.assert_array_equal(getattr(stats2, f.name), getattr(stats, f.name))
    np.testing.assert_array_equal(predict(model2, stats2, tx), predict(model, stats, tx))


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"format": "other"}, path)
    with pytest.raises(ValueError, match="format"):
        load_lifter(path)


@pytest.mark.slow
def test_learning_curve_png(tmp_path, trained):
    *_, history = trained
    path = tmp_path / "curve.png"
    plot_learning_curve(history, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bad_shapes_raise(data, trained):
    (x, y), _ = data
    _, model, stats, _ = trained
    cfg = LifterConfig(**{**SMALL, "epochs": 1})
    with pytest.raises(ValueError, match=rf"\(N, {J}, 2\).*\(4, 17, 2\)"):
        train_lifter(np.zeros((4, 17, 2)), y[:4], cfg, progress=False)
    with pytest.raises(ValueError, match=r"\(4, 17, 3\)"):
        train_lifter(x[:4], np.zeros((4, 17, 3)), cfg, progress=False)
    with pytest.raises(ValueError, match=rf"\(3, {J}, 3\)"):
        train_lifter(x[:3], y[:4], cfg, progress=False)
    with pytest.raises(ValueError, match=r"\(5, 10, 2\)"):
        predict(model, stats, x[:5, :10])
    with pytest.raises(ValueError, match=rf"mask.*\(5, {J}\).*\(5, 10\)"):
        predict(model, stats, x[:5], np.zeros((5, 10), dtype=bool))
