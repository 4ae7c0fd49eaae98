"""Tests of the optional 2D part corrector: crops, model, annotation reading, training accuracy, checkpoints, CLI.

The accuracy tests train the small variant (64 px crops, tiny CNN) on synthetic "hands": 21 coloured discs at the
keypoints of a random articulated hand, joined by grey bones, on a noisy background, written as JPEGs with an
official-layout COCO-WholeBody JSON.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from build_h3wb import skeleton
from build_h3wb.refine.corrector import (
    CorrectorConfig,
    PartCorrector,
    correct_detections,
    correct_part,
    crop,
    crop_to_normalised,
    from_crop,
    load_corrector,
    normalised_to_crop,
    part_crop_box,
    save_corrector,
    to_crop,
)
from build_h3wb.refine.corrector_train import (
    CorrectorTrainConfig,
    evaluate_corrector,
    load_part_annotations,
    read_image,
    simulate_detector_noise,
    train_corrector,
)

REPO = Path(__file__).resolve().parents[2]
K_HAND = skeleton.PARTS["left_hand"].stop - skeleton.PARTS["left_hand"].start
FINGER_COLOURS = [(255, 60, 60), (60, 255, 60), (60, 120, 255), (255, 255, 60), (255, 60, 255)]
IMAGE = 96  # synthetic image side, pixels
SMALL = {"part": "left_hand", "crop_size": 64, "backbone": "tiny", "hidden": 256}


# ----------------------------------------------------------------------------------------------------------------
# Synthetic annotated hands.


def random_hand(rng, centre, size):
    """(21, 2) keypoints of an articulated 2D hand (root, then 5 fingers x 4 joints), pixels."""
    rot = rng.uniform(0, 2 * np.pi)
    pts = [np.zeros(2)]
    for f in range(5):
        ang = rot + (f - 2) * 0.35 + rng.normal(0, 0.08)
        pos = np.array([np.cos(ang), np.sin(ang)]) * 0.25 * size
        pts.append(pos.copy())
        for _ in range(3):
            ang += rng.uniform(-0.1, 0.6) * (1 if f else -1)
            pos = pos + np.array([np.cos(ang), np.sin(ang)]) * size * rng.uniform(0.1, 0.16)
            pts.append(pos.copy())
    return np.asarray(pts) + centre


def draw_hand(kp, rng):
    """(IMAGE, IMAGE, 3) uint8 RGB: noisy background, grey bones, a disc per keypoint coloured by finger."""
    img = cv2.GaussianBlur(rng.integers(0, 90, (IMAGE, IMAGE, 3)).astype(np.uint8), (3, 3), 0)
    bones = [(0, 1 + 4 * f) for f in range(5)] + [(1 + 4 * f + j, 2 + 4 * f + j) for f in range(5) for j in range(3)]
    fix = 16  # cv2 drawing with 4 fractional bits
    for a, b in bones:
        cv2.line(img, tuple(int(v) for v in kp[a] * fix), tuple(int(v) for v in kp[b] * fix), (160, 160, 160), 1,
                 cv2.LINE_AA, shift=4)
    for k, p in enumerate(kp):
        colour = (255, 255, 255) if k == 0 else FINGER_COLOURS[(k - 1) // 4]
        cv2.circle(img, tuple(int(v) for v in p * fix), int(2.2 * fix), colour, -1, cv2.LINE_AA, shift=4)
    return img


def official_annotation(i, hand):
    """An official-layout COCO-WholeBody annotation with only the left hand valid."""
    trip = np.concatenate([hand, np.full((K_HAND, 1), 2.0)], 1)
    return {"id": i, "image_id": i, "keypoints": [0.0] * 51, "foot_kpts": [0.0] * 18, "face_kpts": [0.0] * 204,
            "face_valid": False, "righthand_kpts": [0.0] * 63, "righthand_valid": False,
            "lefthand_kpts": trip.ravel().tolist(), "lefthand_valid": True, "lefthand_box": [0, 0, 1, 1]}


def make_dataset(root, n, seed):
    """Write n synthetic images and ``annotations.json`` under root; return (json path, image dir, (n, 21, 2))."""
    rng = np.random.default_rng(seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns, truth = [], [], []
    for i in range(n):
        hand = random_hand(rng, rng.uniform(0.4, 0.6, 2) * IMAGE, rng.uniform(0.45, 0.6) * IMAGE)
        name = f"{i:05d}.jpg"
        cv2.imwrite(str(img_dir / name), cv2.cvtColor(draw_hand(hand, rng), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append({"id": i, "file_name": name, "width": IMAGE, "height": IMAGE})
        anns.append(official_annotation(i, hand))
        truth.append(hand)
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path, img_dir, np.stack(truth)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two threads on a shared, loaded 2-core machine make small convolutions ~50x slower; use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("corrector_train"), 400, seed=0)


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    path, img_dir, _ = make_dataset(tmp_path_factory.mktemp("corrector_val"), 50, seed=1)
    return load_part_annotations(path, img_dir, "left_hand")


@pytest.fixture(scope="module")
def train_cfg():
    return CorrectorTrainConfig(epochs=20, batch_size=32, lr=2e-3, val_fraction=0.0)


@pytest.fixture(scope="module")
def trained(train_set, train_cfg):
    path, img_dir, _ = train_set
    data = load_part_annotations(path, img_dir, "left_hand")
    return train_corrector(CorrectorConfig(**SMALL), train_cfg, data, "cpu")


# ----------------------------------------------------------------------------------------------------------------
# Config and model.


class TestConfigAndModel:
    def test_config_errors(self):
        with pytest.raises(ValueError, match="part"):
            CorrectorConfig(part="body")
        with pytest.raises(ValueError, match="backbone"):
            CorrectorConfig(backbone="vgg")
        with pytest.raises(ValueError, match="crop_size"):
            CorrectorConfig(crop_size=50)
        with pytest.raises(ValueError, match="unknown CorrectorConfig keys"):
            CorrectorConfig.from_dict({"part": "face", "typo": 1})

    def test_num_keypoints_from_skeleton(self):
        for part in ("left_hand", "right_hand", "face"):
            sl = skeleton.PARTS[part]
            assert CorrectorConfig(part=part).num_keypoints == sl.stop - sl.start

    @pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
    def test_untrained_is_identity(self, backbone):
        cfg = CorrectorConfig(part="face", crop_size=64, backbone=backbone, hidden=64)
        model = PartCorrector(cfg).eval()
        K = cfg.num_keypoints
        kp = torch.rand(2, K, 2)
        with torch.no_grad():
            out, conf, logits = model(torch.rand(2, 3, 64, 64), kp, torch.rand(2, K))
        assert out.shape == (2, K, 2) and conf.shape == (2, K) and logits.shape == (2, K)
        torch.testing.assert_close(out, kp)
        torch.testing.assert_close(conf, torch.full((2, K), 0.5))

    def test_forward_shape_errors(self):
        model = PartCorrector(CorrectorConfig(**SMALL))
        with pytest.raises(ValueError, match=r"crops: expected \(B, 3, 64, 64\)"):
            model(torch.rand(1, 3, 32, 32), torch.rand(1, K_HAND, 2), torch.rand(1, K_HAND))
        with pytest.raises(ValueError, match="kp, scores"):
            model(torch.rand(1, 3, 64, 64), torch.rand(1, 5, 2), torch.rand(1, 5))

    def test_resnet18_trains(self, train_set):
        path, img_dir, _ = train_set
        data = load_part_annotations(path, img_dir, "left_hand").subset(np.arange(16))
        cfg = CorrectorConfig(part="left_hand", crop_size=64, backbone="resnet18", hidden=64)
        torch.manual_seed(0)
        before = PartCorrector(cfg).state_dict()
        model, summary = train_corrector(cfg, CorrectorTrainConfig(epochs=1, batch_size=8, val_fraction=0), data)
        assert summary["train_instances"] == 16 and np.isfinite(summary["epoch_l1"]).all()
        after = model.state_dict()
        assert not torch.equal(before["backbone.stem.0.weight"], after["backbone.stem.0.weight"])
        assert not torch.equal(before["head.2.weight"], after["head.2.weight"])

    def test_backbone_weights_file(self, tmp_path):
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        torch.save(net.state_dict(), tmp_path / "r18.pt")
        model = PartCorrector(CorrectorConfig(part="left_hand", crop_size=64), backbone_weights=tmp_path / "r18.pt")
        torch.testing.assert_close(model.backbone.stem[0].weight, net.conv1.weight)
        torch.testing.assert_close(model.backbone.deep[1][0].conv1.weight, net.layer4[0].conv1.weight)
        with pytest.raises(FileNotFoundError, match="backbone weights file"):
            PartCorrector(CorrectorConfig(part="left_hand", crop_size=64), backbone_weights=tmp_path / "none.pt")
        torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match="not a torchvision resnet18"):
            PartCorrector(CorrectorConfig(part="left_hand", crop_size=64), backbone_weights=tmp_path / "bad.pt")


# ----------------------------------------------------------------------------------------------------------------
# Crops.


class TestCrops:
    def test_part_crop_box(self):
        kp = np.array([[10.0, 20.0, 1], [30.0, 25.0, 1], [np.nan, np.nan, np.nan], [20.0, 40.0, 0.5]])
        box = part_crop_box(kp, margin=0.25)
        np.testing.assert_allclose(box, [20.0, 30.0, 30.0])  # extent 20 (x and y) * 1.5
        lo, hi = box[:2] - box[2] / 2, box[:2] + box[2] / 2
        assert np.all(kp[[0, 1, 3], :2] >= lo) and np.all(kp[[0, 1, 3], :2] <= hi)
        assert part_crop_box(kp[:1], margin=0.25, min_size=16)[2] == 16  # a single point
        batch = part_crop_box(np.stack([kp, np.full_like(kp, np.nan)]))
        assert batch.shape == (2, 3) and np.isnan(batch[1]).all() and np.isfinite(batch[0]).all()
        with pytest.raises(ValueError, match=r"expected \(\.\.\., K, 2\)"):
            part_crop_box(np.zeros(5))

    def test_round_trip_exact(self, rng):
        image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        xy = rng.uniform(0, 160, (50, 2))
        for box in ([80.3, 60.7, 33.3], [10.0, 5.0, 200.0], [150.2, 119.9, 7.1]):
            patch, A = crop(image, np.array(box), 64)
            assert patch.shape == (64, 64, 3) and patch.dtype == np.uint8
            assert np.abs(from_crop(to_crop(xy, A), A) - xy).max() < 1e-6
            uv = to_crop(xy, A)
            assert np.abs(normalised_to_crop(crop_to_normalised(uv, 64), 64) - uv).max() < 1e-9

    def test_crop_pixels_follow_affine(self, rng):
        """At unit scale and integer shift the crop is the image itself, and keypoints land on the same pixel."""
        image = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
        box = np.array([50.5, 40.5, 32.0])  # side == size: scale 1; extent x 34.5..66.5, first pixel centre 35
        patch, A = crop(image, box, 32)
        np.testing.assert_array_equal(patch, image[25:57, 35:67])
        np.testing.assert_allclose(to_crop(np.array([[35.0, 25.0], [41.0, 31.0]]), A), [[0, 0], [6, 6]], atol=1e-12)
        np.testing.assert_allclose(crop_to_normalised(np.array([-0.5, 31.5]), 32), [0.0, 1.0])

    def test_crop_errors(self):
        with pytest.raises(ValueError, match=r"image: expected \(H, W, 3\)"):
            crop(np.zeros((10, 10), np.uint8), np.array([5.0, 5, 5]), 8)
        with pytest.raises(ValueError, match="side > 0"):
            crop(np.zeros((10, 10, 3), np.uint8), np.array([5.0, 5, np.nan]), 8)


# ----------------------------------------------------------------------------------------------------------------
# Annotations.


class TestAnnotations:
    def test_official_layout(self, train_set):
        path, img_dir, truth = train_set
        data = load_part_annotations(path, img_dir, "left_hand")
        assert len(data) == len(truth) and data.keypoints.shape == (len(truth), K_HAND, 3)
        np.testing.assert_allclose(data.keypoints[..., :2], truth)
        assert read_image(data.image_paths[0]).shape == (IMAGE, IMAGE, 3)
        with pytest.raises(ValueError, match="no annotation has the part 'right_hand'"):
            load_part_annotations(path, img_dir, "right_hand")  # every right hand is marked not valid

    def test_flat_133_layout(self, tmp_path, rng):
        (tmp_path / "im").mkdir()
        cv2.imwrite(str(tmp_path / "im" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
        kp = np.zeros((skeleton.NUM_KEYPOINTS, 3))
        kp[skeleton.PARTS["right_hand"]] = np.c_[rng.uniform(0, 8, (K_HAND, 2)), np.ones(K_HAND)]
        doc = {"images": [{"id": 7, "file_name": "a.jpg"}],
               "annotations": [{"id": 1, "image_id": 7, "keypoints": kp.ravel().tolist()}]}
        (tmp_path / "a.json").write_text(json.dumps(doc))
        data = load_part_annotations(tmp_path / "a.json", tmp_path / "im", "right_hand")
        np.testing.assert_allclose(data.keypoints[0], kp[skeleton.PARTS["right_hand"]])
        with pytest.raises(ValueError, match="no annotation has the part 'face'"):
            load_part_annotations(tmp_path / "a.json", tmp_path / "im", "face")  # face all v = 0

    def test_errors(self, tmp_path, train_set):
        path, img_dir, _ = train_set
        with pytest.raises(FileNotFoundError, match="images folder .*missing_dir not found"):
            load_part_annotations(path, tmp_path / "missing_dir", "left_hand")
        with pytest.raises(FileNotFoundError, match="annotation file"):
            load_part_annotations(tmp_path / "none.json", img_dir, "left_hand")
        doc = json.loads(path.read_text())
        doc["annotations"] = doc["annotations"][:2]

        def write(d):
            (tmp_path / "x.json").write_text(json.dumps(d))
            return tmp_path / "x.json"

        no_part = json.loads(json.dumps(doc))
        del no_part["annotations"][1]["lefthand_kpts"]
        with pytest.raises(ValueError, match=r"annotations\[1\] \(id 1\): no left_hand keypoints: expected key "
                                             r"'lefthand_kpts'"):
            load_part_annotations(write(no_part), img_dir, "left_hand")
        wrong_count = json.loads(json.dumps(doc))
        wrong_count["annotations"][0]["lefthand_kpts"] = [1.0] * 60
        with pytest.raises(ValueError, match=r"key 'lefthand_kpts' has 60 values, expected 63"):
            load_part_annotations(write(wrong_count), img_dir, "left_hand")
        bad_image = json.loads(json.dumps(doc))
        bad_image["images"][0]["file_name"] = "gone.jpg"
        with pytest.raises(FileNotFoundError, match="gone.jpg not found"):
            load_part_annotations(write(bad_image), img_dir, "left_hand")
        with pytest.raises(ValueError, match="lists 'images' and 'annotations'"):
            load_part_annotations(write({"images": []}), img_dir, "left_hand")

    def test_noise_simulation(self, rng, train_set):
        path, img_dir, truth = train_set
        data = load_part_annotations(path, img_dir, "left_hand")
        cfg = CorrectorTrainConfig()
        noisy, size = simulate_detector_noise(data.keypoints, rng, cfg)
        assert noisy.shape == data.keypoints.shape
        missing = np.isnan(noisy).any(-1)
        assert np.isnan(noisy[missing]).all() and 0.01 < missing.mean() < 0.1
        err = np.linalg.norm(noisy[..., :2] - truth, axis=-1) / size[:, None]
        assert 0.02 < np.nanmedian(err) < 0.15 and (err > cfg.outlier_min * 0.99).mean() > 0.03
        assert np.nanmean(noisy[..., 2][err < 0.05]) > np.nanmean(noisy[..., 2][err > 0.2])  # scores track error


# ----------------------------------------------------------------------------------------------------------------
# Training and application.


@pytest.mark.slow  # trains the corrector
class TestTrainedCorrector:
    def test_training_converges(self, trained):
        _, summary = trained
        assert summary["train_instances"] == 400 and len(summary["epoch_l1"]) == 20
        assert summary["epoch_l1"][-1] < 0.7 * summary["epoch_l1"][0]

    def test_reduces_error_on_held_out_images(self, trained, val_set, train_cfg):
        model, summary = trained
        res = evaluate_corrector(model, val_set, train_cfg, seed=11)
        print(f"held-out median error {res['median_px_before']:.2f} px -> {res['median_px_after']:.2f} px, "
              f"mean {res['mean_px_before']:.2f} -> {res['mean_px_after']:.2f} px; "
              f"training {summary['train_seconds']:.1f} s")
        assert res["n_keypoints"] > 900
        assert res["median_px_after"] <= 0.7 * res["median_px_before"]
        assert res["mean_px_after"] < res["mean_px_before"]
        one = evaluate_corrector(model, val_set, train_cfg, seed=11, iterations=1)
        assert res["median_px_after"] <= one["median_px_after"] * 1.05  # a second pass does not make it worse

    def test_confidence_marks_accurate_points(self, trained, val_set, train_cfg):
        model, _ = trained
        noisy, _ = simulate_detector_noise(val_set.keypoints, np.random.default_rng(12), train_cfg)
        images = [read_image(p) for p in val_set.image_paths]
        out = correct_part(model, images, noisy)
        err = np.linalg.norm(out[..., :2] - val_set.keypoints[..., :2], axis=-1)
        ok = np.isfinite(err)
        conf, err = out[..., 2][ok], err[ok]
        assert np.all((conf >= 0) & (conf <= 1))
        good, bad = conf[err < 1.5], conf[err > 4.0]
        print(f"confidence: {good.mean():.2f} where the error is < 1.5 px (n={len(good)}), {bad.mean():.2f} where "
              f"> 4 px (n={len(bad)})")
        assert len(good) > 100 and len(bad) > 10
        assert good.mean() > bad.mean() + 0.15

    def test_missing_keypoints(self, trained, val_set):
        model, _ = trained
        images = [read_image(p) for p in val_set.image_paths[:3]]
        kp = np.concatenate([val_set.keypoints[:3, :, :2], np.ones((3, K_HAND, 1))], -1)
        kp[0, :3] = np.nan  # 18 of 21 present: corrected, the 3 missing stay NaN
        kp[1, :15] = np.nan  # 6 of 21 present (< min_visible): returned unchanged
        out = correct_part(model, images, kp)
        assert np.isnan(out[0, :3]).all() and np.isfinite(out[0, 3:]).all()
        np.testing.assert_array_equal(out[1], kp[1].astype(np.float32))
        assert np.isfinite(out[2]).all() and not np.array_equal(out[2], kp[2].astype(np.float32))
        with pytest.raises(ValueError, match=r"kp2d: expected \(B, 21, 3\)"):
            correct_part(model, images, kp[:, :20])
        with pytest.raises(ValueError, match="expected 3 images"):
            correct_part(model, images[:2], kp)

    def test_correct_detections(self, trained, val_set, rng):
        model, _ = trained
        images = np.stack([read_image(p) for p in val_set.image_paths[:4]])
        whole = rng.uniform(0, IMAGE, (4, skeleton.NUM_KEYPOINTS, 3)).astype(np.float32)
        sl = skeleton.PARTS["left_hand"]
        whole[:, sl, :2] = val_set.keypoints[:4, :, :2] + rng.normal(0, 2, (4, K_HAND, 2))
        out = correct_detections({"left_hand": model}, images, whole)
        assert out.shape == whole.shape and out.dtype == np.float32
        keep = np.ones(skeleton.NUM_KEYPOINTS, bool)
        keep[sl] = False
        np.testing.assert_array_equal(out[:, keep], whole[:, keep])
        np.testing.assert_array_equal(out[:, sl], correct_part(model, images, whole[:, sl]))
        with pytest.raises(ValueError, match="is a corrector for part 'left_hand'"):
            correct_detections({"right_hand": model}, images, whole)
        with pytest.raises(ValueError, match=r"expected \(B, 133, 3\)"):
            correct_detections({"left_hand": model}, images, whole[:, :50])

    def test_checkpoint_round_trip(self, trained, val_set, tmp_path):
        model, summary = trained
        save_corrector(tmp_path / "c.pt", model, summary)
        raw = torch.load(tmp_path / "c.pt", weights_only=True)
        assert raw["config"] == model.cfg.to_dict() and raw["extra"]["train_instances"] == 400
        loaded, extra = load_corrector(tmp_path / "c.pt")
        images = [read_image(p) for p in val_set.image_paths[:5]]
        kp = np.concatenate([val_set.keypoints[:5, :, :2] + 1.5, np.ones((5, K_HAND, 1))], -1)
        np.testing.assert_array_equal(correct_part(loaded, images, kp), correct_part(model, images, kp))
        assert extra["epoch_l1"] == summary["epoch_l1"]
        assert not list(tmp_path.glob(".*.tmp"))
        with pytest.raises(FileNotFoundError, match="no corrector checkpoint"):
            load_corrector(tmp_path / "none.pt")
        torch.save({"format": "other"}, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match="expected key 'format'"):
            load_corrector(tmp_path / "bad.pt")
        with pytest.raises(TypeError, match="weights-only checkpoint"):
            save_corrector(tmp_path / "d.pt", model, {"path": tmp_path})


# ----------------------------------------------------------------------------------------------------------------
# Command line.


@pytest.mark.slow  # trains through the command line
def test_cli(train_set, tmp_path, capsys):
    path, img_dir, _ = train_set
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "train_corrector.py"), "--annotations", str(path), "--images",
           str(img_dir), "--part", "left_hand", "--out", str(tmp_path / "c.pt"), "--epochs", "1", "--crop-size",
           "64", "--backbone", "tiny", "--device", "cpu"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "held-out (40 instances): median error" in out.stdout
    model, extra = load_corrector(tmp_path / "c.pt")
    assert model.cfg.part == "left_hand" and model.cfg.crop_size == 64 and extra["train_instances"] == 360

    spec = importlib.util.spec_from_file_location("train_corrector", REPO / "scripts" / "train_corrector.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    bad = ["--annotations", str(path), "--images", str(tmp_path / "nope"), "--part", "left_hand", "--out",
           str(tmp_path / "d.pt")]
    assert script.main(bad) == 2
    assert "images folder" in capsys.readouterr().err
    assert not (tmp_path / "d.pt").exists()
