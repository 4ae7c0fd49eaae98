"""The OpenPifPaf whole-body detector on locally built checkpoints (no weights can be downloaded in CI).

Two whole-body networks are saved the way OpenPifPaf saves checkpoints: OpenPifPaf's shufflenetv2k16 with random
weights (the real architecture, which finds nobody), and a "beacon" network (OpenPifPaf's Shell and CIF/CAF heads
on an average-pooling base) whose heads are set by hand so that every keypoint of a person is found at the centre of
each bright square in the image: this gives detections at known pixels to test coordinates, resizing, ordering and
batching through OpenPifPaf's own decoder.
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from build_h3wb import skeleton
from build_h3wb.config import register_configs
from build_h3wb.detectors.base import check_detections
from build_h3wb.detectors.openpifpaf import (
    OpenPifPafDetector,
    keypoint_order,
    preprocess,
    resolve_device,
    to_original_pixels,
)
from build_h3wb.sources.base import FrameBatch

# OpenPifPaf is compiled by its own set-up target (`make openpifpaf`, which `make test` runs)
openpifpaf = pytest.importorskip("openpifpaf")
from openpifpaf.decoder.utils import nms  # noqa: E402
from openpifpaf.plugins.coco import CocoKp  # noqa: E402
from openpifpaf.plugins.wholebody import Wholebody  # noqa: E402
from openpifpaf.plugins.wholebody.constants import WHOLEBODY_KEYPOINTS  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
J = skeleton.NUM_KEYPOINTS
PERMUTATION = np.random.default_rng(7).permutation(J)  # network keypoint k is skeleton keypoint PERMUTATION[k]
UNPICKLED = []  # Payload.__setstate__ records here that a checkpoint's object was built


class Payload:
    """A class a checkpoint may pickle; loading it is only allowed when listed in extra_safe_globals."""

    def __init__(self):
        self.note = "built while unpickling"

    def __setstate__(self, state):
        UNPICKLED.append(state)
        self.__dict__.update(state)


def beacon_network(head_metas, never_found=None):
    """A Shell whose heads see every bright 16 px cell as all keypoints of one person, at the cell centre.

    The CIF field ``never_found`` (an index into the network's keypoints), if given, is never confident.
    """
    base = torch.nn.Sequential(torch.nn.AvgPool2d(17, stride=16, padding=8, count_include_pad=False))
    base.stride, base.out_features, base.name = 16, 3, "beacon"  # what OpenPifPaf reads from a base network
    heads = [openpifpaf.network.heads.CompositeField4(meta, 3) for meta in head_metas]
    with torch.no_grad():
        for head in heads:
            nc = head.n_components  # [width, confidence, regressions (2 per vector), scales]
            weight = torch.zeros_like(head.conv.weight)
            bias = torch.zeros_like(head.conv.bias)
            for f in range(head.n_fields):
                weight[f * nc + 1] = 4.0 / 3.0  # confidence logit 4 * mean normalised colour - 2: white ~7, black ~-10
                bias[f * nc + 1] = -2.0
                bias[f * nc + nc - head.n_scales:(f + 1) * nc] = 5.0  # wide joint scale: neighbour cells reinforce
            if never_found is not None and head.meta.name == "cif":
                weight[never_found * nc + 1] = 0.0
                bias[never_found * nc + 1] = -20.0
            head.conv.weight.copy_(weight)
            head.conv.bias.copy_(bias)  # regressions 0: each cell points at its own centre
    net = openpifpaf.network.nets.Shell(base, heads)
    openpifpaf.network.nets.model_defaults(net)
    return net.eval()


def save_checkpoint(path, model, **extra):
    torch.save({"model": model, "epoch": 0, "meta": {"version": openpifpaf.__version__, **extra}}, path)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("openpifpaf")
    torch.manual_seed(0)
    # OpenPifPaf's own factory, whole-body heads, shufflenetv2k16 base (no pretrained weights exist for it: no download)
    k16, _ = openpifpaf.network.Factory(base_name="shufflenetv2k16").factory(head_metas=Wholebody().head_metas)
    beacon = beacon_network(Wholebody().head_metas)
    paths = {
        "k16": save_checkpoint(d / "random_k16_wholebody.pkl", k16),
        "beacon": save_checkpoint(d / "beacon_wholebody.pkl", beacon),
        "coco": save_checkpoint(d / "beacon_coco17.pkl", beacon_network(CocoKp().head_metas)),
        "getcwd": save_checkpoint(d / "getcwd.pkl", beacon, hook=os.getcwd),
        "torch_function": save_checkpoint(d / "torch_function.pkl", beacon, hook=torch.hub.load),
        "payload": save_checkpoint(d / "payload.pkl", beacon, payload=Payload()),
    }
    # keypoints in another order (by name) than the skeleton's; the network's last keypoint is never found
    metas = Wholebody().head_metas
    for meta in metas:
        meta.keypoints = [meta.keypoints[k] for k in PERMUTATION]
    paths["permuted"] = save_checkpoint(d / "beacon_permuted.pkl", beacon_network(metas, never_found=J - 1))
    legacy = d / "legacy.pkl"
    torch.save({"model": beacon, "epoch": 0}, legacy, _use_new_zipfile_serialization=False)
    paths["legacy"] = legacy
    return paths


def squares(shape, centers, size=48, values=None):
    """(B, H, W, 3) uint8 black images with a bright size x size square per (image, cx, cy[, value])."""
    images = np.zeros(shape, dtype=np.uint8)
    for k, (i, cx, cy) in enumerate(centers):
        value = 255 if values is None else values[k]
        images[i, cy - size // 2:cy + size // 2, cx - size // 2:cx + size // 2] = value
    return images


def frames(images):
    return FrameBatch(sequence=None, camera=None, frames=np.arange(len(images)), images=images)


def square_center(cx, cy):
    """Centre of a square drawn by ``squares`` in pixel coordinates (pixel centres at integers)."""
    return np.array([cx - 0.5, cy - 0.5])


def test_random_shufflenet_checkpoint_loads_and_runs_on_cpu(checkpoints):
    from skimage.data import astronaut
    from skimage.transform import resize

    img = (resize(astronaut(), (192, 256), anti_aliasing=True) * 255).astype(np.uint8)
    images = np.stack([img, img[:, ::-1], img[::-1]])
    det = OpenPifPafDetector(checkpoint=str(checkpoints["k16"]), device="cpu", batch_size=2, max_people=3)
    out = det(frames(images))
    assert det.device.type == "cpu" and next(det._model.parameters()).device.type == "cpu"
    assert det._model.base_net.name == "shufflenetv2k16"
    assert out.shape == (3, 3, J, 3) and out.dtype == np.float32
    missing = np.isnan(out)
    assert (missing.all(-1) | ~missing.any(-1)).all()  # a keypoint is all NaN or all finite
    np.testing.assert_array_equal(check_detections(out, 3, det.name), out)


def test_detections_are_at_the_bright_squares_in_original_pixels(checkpoints):
    centers = [(0, 160, 100), (1, 64, 172), (2, 250, 60)]
    images = squares((3, 240, 320, 3), centers)
    out = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu")(frames(images))
    assert out.shape == (3, 4, J, 3) and out.dtype == np.float32
    for i, cx, cy in centers:
        assert np.isfinite(out[i, 0]).all()  # the whole body found
        assert np.isnan(out[i, 1:]).all()  # nobody else
        err = np.abs(out[i, 0, :, :2] - square_center(cx, cy)).max()
        assert err <= 8.0, err  # half a network cell
        assert (out[i, 0, :, 2] > 0.15).all() and (out[i, 0, :, 2] <= 1).all()


def test_candidates_best_first_and_at_most_max_people(checkpoints):
    centers = [(0, 64, 64), (0, 256, 64), (0, 160, 176)]  # on the network's 16 px grid: equal but for brightness
    images = squares((1, 240, 320, 3), centers, values=[190, 255, 210])  # brighter: higher confidence
    expected = [square_center(256, 64), square_center(160, 176), square_center(64, 64)]
    out4 = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", max_people=4)(frames(images))
    assert np.isfinite(out4[0, :3]).all() and np.isnan(out4[0, 3]).all()
    for p in range(3):
        assert np.abs(out4[0, p, :, :2] - expected[p]).max() <= 8.0
    mean_score = out4[0, :3, :, 2].mean(-1)
    assert mean_score[0] > mean_score[1] > mean_score[2]
    out2 = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", max_people=2)(frames(images))
    assert out2.shape == (1, 2, J, 3)
    np.testing.assert_allclose(out2[0], out4[0, :2])


def test_batch_size_does_not_change_detections(checkpoints):
    rng = np.random.default_rng(0)
    centers = [(i, int(rng.integers(30, 290)), int(rng.integers(30, 210))) for i in range(5)]
    images = squares((5, 240, 320, 3), centers, values=rng.integers(200, 256, 5))
    out2 = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", batch_size=2)(frames(images))
    out8 = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", batch_size=8)(frames(images))
    assert np.isfinite(out2[:, 0]).all()
    np.testing.assert_allclose(out2, out8, atol=1e-4)


@pytest.mark.parametrize("long_edge, size, tol", [(160, 96, 16.0), (640, 48, 8.0)])
def test_long_edge_resize_maps_back_to_original_pixels(checkpoints, long_edge, size, tol):
    centers = [(0, 100, 90), (1, 220, 150)]
    images = squares((2, 240, 320, 3), centers, size=size)
    det = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", long_edge=long_edge)
    out = det(frames(images))
    for i, cx, cy in centers:
        assert np.isfinite(out[i, 0]).all()
        err = np.abs(out[i, 0, :, :2] - square_center(cx, cy)).max()
        assert err <= tol, err  # unmapped coordinates would be off by a factor of 2 (> 45 px here)
        assert (out[i, 0, :, 0] >= 0).all() and (out[i, 0, :, 0] <= 319).all()


@pytest.mark.parametrize("long_edge", [0, 48, 150, 200])
def test_preprocess_and_inverse_mapping_agree(long_edge):
    H, W, x0, y0 = 60, 80, 30, 21
    img = torch.zeros(1, 3, H, W)
    img[0, :, y0, x0] = 1.0  # one bright pixel
    x, (sx, sy), (left, top) = preprocess(img, long_edge)
    Hp, Wp = x.shape[-2:]
    assert (Hp - 1) % 16 == 0 and (Wp - 1) % 16 == 0 and Hp >= H * sy and Wp >= W * sx
    if long_edge:
        assert max(round(W * sx), round(H * sy)) == long_edge
    # the bright pixel's centroid in the network input maps back onto the pixel
    h, w = round(H * sy), round(W * sx)
    bright = torch.zeros(Hp, Wp, dtype=torch.float64)
    bright[top:top + h, left:left + w] = x[0, 0, top:top + h, left:left + w] - x[0, 0, top, left]  # minus black
    yy, xx = torch.meshgrid(torch.arange(Hp), torch.arange(Wp), indexing="ij")
    total = bright.sum().item()
    centroid = np.array([[[(bright * xx).sum().item() / total, (bright * yy).sum().item() / total, 1.0]]])
    back = to_original_pixels(centroid, (sx, sy), (left, top), (H, W))
    # (sampling a resized pixel moves its centroid by < 0.01 px; other pixel conventions are off by 0.2-0.5 px)
    np.testing.assert_allclose(back[0, 0, :2], [x0, y0], atol=0.05)


def test_to_original_pixels_drops_missing_and_outside():
    data = np.array([[[10.0, 10.0, 0.9], [10.0, 10.0, 0.0], [-3.0, 10.0, 0.9], [10.0, 70.0, 0.8]]])
    out = to_original_pixels(data, (1.0, 1.0), (2, 4), (50, 40))
    np.testing.assert_allclose(out[0, 0], [8.0, 6.0, 0.9], rtol=1e-6)
    assert np.isnan(out[0, 1:]).all()  # score 0, left of the image, below it


def test_keypoint_order_maps_openpifpaf_names_onto_the_skeleton():
    np.testing.assert_array_equal(keypoint_order(WHOLEBODY_KEYPOINTS), np.arange(J))
    assert WHOLEBODY_KEYPOINTS[skeleton.PARTS["face"].start] == "f_24"
    perm = np.random.default_rng(0).permutation(J)
    np.testing.assert_array_equal(keypoint_order([WHOLEBODY_KEYPOINTS[k] for k in perm]), perm)
    with pytest.raises(ValueError, match="not a whole-body model.*17 keypoints"):
        keypoint_order(WHOLEBODY_KEYPOINTS[:17])
    with pytest.raises(ValueError, match="'lh_30'"):  # a left-hand name with a face index
        keypoint_order(list(WHOLEBODY_KEYPOINTS[:-1]) + ["lh_30"])


def test_network_keypoint_order_is_mapped_onto_the_skeleton(checkpoints):
    det = OpenPifPafDetector(checkpoint=str(checkpoints["permuted"]), device="cpu", max_people=1)
    out = det(frames(squares((1, 240, 320, 3), [(0, 160, 120)])))
    found = np.isfinite(out[0, 0, :, 0])
    assert np.flatnonzero(~found).tolist() == [PERMUTATION[J - 1]]  # the network's never-found keypoint


def test_wrong_layout_checkpoint_is_refused(checkpoints):
    det = OpenPifPafDetector(checkpoint=str(checkpoints["coco"]), device="cpu")
    with pytest.raises(ValueError, match=r"not a whole-body model: its CIF head has 17 keypoints"):
        det(frames(squares((1, 64, 64, 3), [])))


def test_unsafe_globals_are_refused_before_unpickling(checkpoints):
    with pytest.raises(ValueError, match=r"posix\.getcwd.*extra_safe_globals"):
        OpenPifPafDetector(checkpoint=str(checkpoints["getcwd"]), device="cpu").load()
    with pytest.raises(ValueError, match=r"torch\.hub\.load"):  # a torch function: refused too
        OpenPifPafDetector(checkpoint=str(checkpoints["torch_function"]), device="cpu").load()
    name = f"{Payload.__module__}.{Payload.__qualname__}"
    UNPICKLED.clear()
    with pytest.raises(ValueError, match=rf"\['{name}'\]"):
        OpenPifPafDetector(checkpoint=str(checkpoints["payload"]), device="cpu").load()
    assert UNPICKLED == []  # refused before anything was built
    # allowed by the user: loads and detects
    det = OpenPifPafDetector(checkpoint=str(checkpoints["payload"]), device="cpu", extra_safe_globals=[name])
    out = det(frames(squares((1, 240, 320, 3), [(0, 160, 120)])))
    assert len(UNPICKLED) == 1 and np.isfinite(out[0, 0]).all()
    with pytest.raises(ValueError, match="cannot import 'no_such_module.Thing'"):
        OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), extra_safe_globals=["no_such_module.Thing"]).load()


def test_legacy_checkpoint_format_is_refused(checkpoints):
    with pytest.raises(ValueError, match="not in PyTorch's zip format"):
        OpenPifPafDetector(checkpoint=str(checkpoints["legacy"]), device="cpu").load()


def test_missing_checkpoint_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.pkl"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        OpenPifPafDetector(checkpoint=str(missing))


def test_images_none_is_an_error(checkpoints):
    det = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu")
    with pytest.raises(ValueError, match=r"batch\.images"):
        det(FrameBatch(sequence=None, camera=None, frames=np.arange(2), images=None))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\) uint8"):
        det(frames(np.zeros((2, 32, 32), dtype=np.uint8)))


def test_instance_threshold_filters_and_is_not_leaked(checkpoints, caplog):
    before = nms.Keypoints.get_instance_threshold()
    images = squares((1, 240, 320, 3), [(0, 160, 120)])  # instance score about 0.5
    low = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", instance_threshold=0.05)
    high = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", instance_threshold=0.9)
    with caplog.at_level(logging.INFO):
        assert np.isfinite(low(frames(images))[0, 0]).all()
        assert np.isnan(high(frames(images))).all()
    assert nms.Keypoints.get_instance_threshold() == before
    assert not [r for r in caplog.records if r.name.startswith("openpifpaf.decoder")]  # no line per frame
    assert logging.getLogger("openpifpaf.decoder").level == logging.NOTSET


def test_registered_name_uses_torch_hub_cache_and_downloads_once(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = openpifpaf.CHECKPOINT_URLS["shufflenetv2k16-wholebody"]
    downloads = []

    def fake_download(src, dst, **kwargs):  # stands in for the network
        downloads.append((src, dst))
        shutil.copy(checkpoints["beacon"], dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    for _ in range(2):
        det = OpenPifPafDetector(checkpoint="shufflenetv2k16-wholebody", device="cpu")
        assert det.describe()["checkpoint_url"] == url
        out = det(frames(squares((1, 240, 320, 3), [(0, 160, 120)])))
        assert np.isfinite(out[0, 0]).all()
    assert downloads == [(url, str(tmp_path / "hub" / "checkpoints" / Path(url).name))]


def test_describe_names_the_settings_and_versions(checkpoints):
    d = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu", batch_size=3).describe()
    assert d["detector"] == "openpifpaf" and d["checkpoint"] == str(checkpoints["beacon"])
    assert len(d["checkpoint_sha256"]) == 64 and d["openpifpaf_version"] == openpifpaf.__version__
    assert d["torch_version"] == torch.__version__ and "torchvision_version" in d
    assert "batch_size" not in d and "device" not in d  # they do not change the detections
    d2 = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), instance_threshold=0.3).describe()
    assert d2["instance_threshold"] == 0.3 and d2["checkpoint_sha256"] == d["checkpoint_sha256"]
    d3 = OpenPifPafDetector(checkpoint=str(checkpoints["k16"])).describe()
    assert d3["checkpoint_sha256"] != d["checkpoint_sha256"]


def test_settings_are_checked():
    for bad in ({"batch_size": 0}, {"long_edge": -1}, {"max_people": 0}, {"instance_threshold": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            OpenPifPafDetector(checkpoint="shufflenetv2k30-wholebody", **bad)
    with pytest.raises(ValueError, match="detector.device"):
        resolve_device("gpu0")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_hydra_composes_and_instantiates(checkpoints):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config",
                      overrides=["detector=openpifpaf", f"detector.checkpoint={checkpoints['beacon']}",
                                 "detector.device=cpu", "detector.max_people=2"])
    det = instantiate(cfg.detector)
    assert isinstance(det, OpenPifPafDetector)
    assert det.checkpoint == str(checkpoints["beacon"]) and det.batch_size == 8 and det.max_people == 2
    out = det(frames(squares((1, 240, 320, 3), [(0, 160, 120)])))
    assert out.shape == (1, 2, J, 3) and np.isfinite(out[0, 0]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(checkpoints):
    images = squares((3, 240, 320, 3), [(0, 160, 100), (1, 64, 172), (2, 250, 60)])
    cpu = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cpu")(frames(images))
    gpu = OpenPifPafDetector(checkpoint=str(checkpoints["beacon"]), device="cuda", long_edge=0)(frames(images))
    np.testing.assert_allclose(gpu, cpu, atol=1e-2)
