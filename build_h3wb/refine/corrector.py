"""Optional 2D part corrector: a network that refines one view's hand or face keypoints from an image crop.

The original H3WB build refined hands and faces per view in 2D before triangulating them again: a corrector sees a
crop of the part and the part's current keypoints and returns corrected keypoints with a confidence, applied
iteratively like a denoiser. This module holds that network and the functions that apply it; training from 2D
annotations is in :mod:`build_h3wb.refine.corrector_train`. It is an option: the default pipeline does not use it.

Architecture (:class:`PartCorrector`):

1. A convolutional backbone on the crop (B, 3, S, S): torchvision's ResNet-18 (built with ``weights=None``,
   optionally initialised from a local torchvision state-dict file; He et al., "Deep residual learning", CVPR 2016)
   or, for tests and small data, a four-layer ``tiny`` CNN. Two maps are used: a *local* map (ResNet ``layer2``,
   stride 8; tiny: stride 4) and the deepest map, pooled to a global feature.
2. Local evidence per keypoint: the local map (reduced by a 1x1 conv) is sampled bilinearly on a small grid (one
   feature cell apart) around each keypoint's current position, so the network sees where the part's edges are
   relative to each point, not only a pooled summary of the crop.
3. A residual MLP (pre-norm blocks, as in Martinez et al., ICCV 2017) on the flattened keypoints, their scores,
   the local evidence and the global feature gives each keypoint a context vector (the part's shape: which
   finger, how far along it); a small head shared by all keypoints maps local evidence and context to an offset,
   added to the input position (its last layer starts at zero, so an untrained corrector is the identity), and a
   confidence logit. Sharing the head lets every keypoint's training data teach the same "move towards the
   evidence" mapping.

Coordinates: the network works in *crop-normalised* coordinates, ``(u + 0.5) / S`` where ``u`` is the pixel
coordinate in the S x S crop (pixel centres at integers), so the crop spans [0, 1]; this is also
``grid_sample``'s convention with ``align_corners=False`` after mapping to [-1, 1].

Application (:func:`correct_part`, :func:`correct_detections`): square crop around the current estimate
(:func:`part_crop_box`, :func:`crop`), one network pass, keypoints mapped back to image pixels, repeated
``iterations`` times (each pass re-crops around the new estimate). Missing keypoints (NaN) are handled so: a part
instance with fewer than ``min_visible`` of its keypoints present is returned unchanged; otherwise the missing
keypoints enter the network at the box centre with score 0 (as in training) but stay NaN in the output: the
corrector moves keypoints a detector reported, it does not invent new ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from build_h3wb import skeleton
from build_h3wb.checkpoints import config_from_dict, load_weights_only, save_weights_only

log = logging.getLogger(__name__)

#: Parts a corrector can be trained for.
CORRECTABLE_PARTS: tuple[str, ...] = ("left_hand", "right_hand", "face")
#: Backbones :class:`PartCorrector` can build.
BACKBONES: tuple[str, ...] = ("resnet18", "tiny")
#: Value of the ``format`` key of a corrector checkpoint.
CHECKPOINT_FORMAT = "build_h3wb.part_corrector/1"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class CorrectorConfig:
    """Architecture and application settings of a part corrector (plain types only; stored in its checkpoint).

    Attributes:
        part: the part it corrects: ``left_hand``, ``right_hand`` or ``face`` (a key of ``skeleton.PARTS``).
        crop_size: side S of the square crop in pixels (224 for ResNet-18 as in the original build; 64 for tests).
        backbone: ``resnet18`` (torchvision, built without downloaded weights) or ``tiny`` (a four-layer CNN).
        local_channels: channels of the local feature map after its 1x1 reduction.
        sample_grid: the local map is sampled on a ``sample_grid`` x ``sample_grid`` grid around each keypoint.
        point_features: width of each keypoint's local-evidence and context vectors.
        hidden: width of the residual MLP.
        num_blocks: residual blocks of the MLP.
        margin: crop box side = largest extent of the part's keypoints times ``1 + 2 * margin``.
        min_box_px: smallest crop box side in image pixels (a part collapsed to a point still gets a crop).
        iterations: network passes per call of :func:`correct_part` (each re-crops around the new estimate).
        min_visible: share of the part's keypoints that must be present for the part to be corrected.
    """

    part: str = "left_hand"
    crop_size: int = 224
    backbone: str = "resnet18"
    local_channels: int = 32
    sample_grid: int = 3
    point_features: int = 32
    hidden: int = 512
    num_blocks: int = 2
    margin: float = 0.25
    min_box_px: float = 16.0
    iterations: int = 2
    min_visible: float = 0.5

    def __post_init__(self) -> None:
        if self.part not in CORRECTABLE_PARTS:
            raise ValueError(f"CorrectorConfig.part: expected one of {CORRECTABLE_PARTS}, got {self.part!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"CorrectorConfig.backbone: expected one of {BACKBONES}, got {self.backbone!r}")
        if self.crop_size < 32 or self.crop_size % 16:
            raise ValueError(f"CorrectorConfig.crop_size: expected a multiple of 16, >= 32, got {self.crop_size}")
        if self.iterations < 1:
            raise ValueError(f"CorrectorConfig.iterations: expected >= 1, got {self.iterations}")
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"CorrectorConfig.min_visible: expected in (0, 1], got {self.min_visible}")

    @property
    def num_keypoints(self) -> int:
        """K, the number of keypoints of the part."""
        s = skeleton.PARTS[self.part]
        return s.stop - s.start

    def to_dict(self) -> dict:
        """The configuration as a plain dict (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> CorrectorConfig:
        """Build from a plain dict; unknown keys raise ValueError."""
        return config_from_dict(cls, d)


# ----------------------------------------------------------------------------------------------------------------
# The network.


class _ResBlock(nn.Module):
    """Pre-norm residual block: x + Linear(GELU(Linear(LayerNorm(x))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W) -> (B, W)."""
        return x + self.net(x)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _TinyBackbone(nn.Module):
    """Four stride-2 conv layers: local map at stride 4 (32 channels), deep map at stride 16 (96 channels)."""

    local_dim, deep_dim = 32, 96

    def __init__(self) -> None:
        super().__init__()
        self.local = nn.Sequential(_conv(3, 24, 2), _conv(24, 32, 2), _conv(32, 32, 1))
        self.deep = nn.Sequential(_conv(32, 64, 2), _conv(64, 96, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> local (B, 32, S/4, S/4), deep (B, 96, S/16, S/16)."""
        local = self.local(x)
        return local, self.deep(local)


class _ResNet18Backbone(nn.Module):
    """torchvision ResNet-18 trunk: local map = ``layer2`` (stride 8, 128 channels), deep = ``layer4`` (512)."""

    local_dim, deep_dim = 128, 512

    def __init__(self, weights_file: str | os.PathLike | None) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if weights_file is not None:
            path = Path(weights_file)
            if not path.is_file():
                raise FileNotFoundError(f"backbone weights file {path} not found (a torchvision resnet18 state dict)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing:
                raise ValueError(f"{path}: not a torchvision resnet18 state dict; missing keys {missing[:5]}...")
            log.info("initialised the ResNet-18 backbone from %s (ignored keys: %s)", path, unexpected)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        self.deep = nn.Sequential(net.layer3, net.layer4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> local (B, 128, S/8, S/8), deep (B, 512, S/32, S/32)."""
        local = self.stem(x)
        return local, self.deep(local)


class PartCorrector(nn.Module):
    """Corrects the 2D keypoints of one part (a hand or the face) from an image crop; see the module docstring.

    Args:
        cfg: architecture settings.
        backbone_weights: optional local torchvision ``resnet18`` state-dict file to initialise the backbone with
            (only for ``backbone="resnet18"``; nothing is downloaded).
    """

    def __init__(self, cfg: CorrectorConfig, backbone_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.backbone == "resnet18":
            self.backbone: nn.Module = _ResNet18Backbone(backbone_weights)
        else:
            if backbone_weights is not None:
                raise ValueError("backbone_weights is only for backbone='resnet18'")
            self.backbone = _TinyBackbone()
        K, G = cfg.num_keypoints, cfg.sample_grid
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.reduce = nn.Conv2d(self.backbone.local_dim, cfg.local_channels, 1)
        self.point = nn.Sequential(nn.Linear(cfg.local_channels * G * G, cfg.point_features), nn.GELU())
        self.global_proj = nn.Linear(self.backbone.deep_dim, cfg.hidden)
        self.inp = nn.Linear(K * (cfg.point_features + 3), cfg.hidden)
        self.blocks = nn.Sequential(*[_ResBlock(cfg.hidden) for _ in range(cfg.num_blocks)])
        self.context = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Linear(cfg.hidden, K * cfg.point_features))
        self.head = nn.Sequential(  # shared by all keypoints: local evidence + the part's context -> offset, logit
            nn.Linear(2 * cfg.point_features, cfg.point_features * 2), nn.GELU(), nn.Linear(cfg.point_features * 2, 3)
        )
        nn.init.zeros_(self.head[-1].weight)  # starts as the identity with confidence 0.5
        nn.init.zeros_(self.head[-1].bias)

    def forward(
        self, crops: torch.Tensor, kp: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Correct one pass.

        Args:
            crops: (B, 3, S, S) float RGB in [0, 1].
            kp: (B, K, 2) current keypoints, crop-normalised ([0, 1] spans the crop); no NaN.
            scores: (B, K) input scores in [0, 1] (0 for a missing keypoint).

        Returns:
            kp_out (B, K, 2) corrected keypoints, crop-normalised (``kp`` plus a residual); confidence (B, K) in
            [0, 1]; its logits (B, K), for the training loss.
        """
        cfg = self.cfg
        if crops.ndim != 4 or crops.shape[1:] != (3, cfg.crop_size, cfg.crop_size):
            raise ValueError(f"crops: expected (B, 3, {cfg.crop_size}, {cfg.crop_size}), got {tuple(crops.shape)}")
        if kp.shape != (crops.shape[0], cfg.num_keypoints, 2) or scores.shape != kp.shape[:2]:
            B0, K0 = crops.shape[0], cfg.num_keypoints
            raise ValueError(f"kp, scores: expected ({B0}, {K0}, 2) and ({B0}, {K0}), got {tuple(kp.shape)} and "
                             f"{tuple(scores.shape)}")
        B, K = kp.shape[:2]
        local, deep = self.backbone((crops - self.mean) / self.std)
        local = self.reduce(local)  # (B, C, h, w)
        G, h = cfg.sample_grid, local.shape[-1]
        steps = (torch.arange(G, device=kp.device, dtype=kp.dtype) - (G - 1) / 2) * (2.0 / h)  # one cell apart
        offsets = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), -1).reshape(1, 1, G * G, 2)
        grid = (kp * 2 - 1).unsqueeze(2) + offsets  # (B, K, G*G, 2) in grid_sample's [-1, 1]
        samples = F.grid_sample(local, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        samples = samples.permute(0, 2, 1, 3).reshape(B, K, -1)  # (B, K, C*G*G)
        local_feat = self.point(samples)  # (B, K, P)
        per_point = torch.cat([local_feat, kp - 0.5, scores.unsqueeze(-1)], -1)  # (B, K, P+3)
        x = self.inp(per_point.reshape(B, -1)) + self.global_proj(deep.mean((2, 3)))  # (B, hidden)
        context = self.context(self.blocks(x)).view(B, K, -1)  # (B, K, P)
        out = self.head(torch.cat([local_feat, context], -1))  # (B, K, 3)
        logits = out[..., 2]
        return kp + out[..., :2], torch.sigmoid(logits), logits


# ----------------------------------------------------------------------------------------------------------------
# Crops.


def part_crop_box(kp2d: np.ndarray, margin: float = 0.25, min_size: float = 16.0) -> np.ndarray:
    """Square crop boxes around parts' keypoints.

    Args:
        kp2d: (..., K, 2) or (..., K, 3) keypoints in image pixels; NaN rows are ignored.
        margin: the box side is the largest extent (width or height) of the keypoints times ``1 + 2 * margin``.
        min_size: smallest box side in pixels.

    Returns:
        (..., 3) [cx, cy, side] in pixels: centre of the keypoints' bounding box and the square's side; all NaN
        where a part has no keypoint.
    """
    kp2d = np.asarray(kp2d, dtype=np.float64)
    if kp2d.ndim < 2 or kp2d.shape[-1] not in (2, 3):
        raise ValueError(f"kp2d: expected (..., K, 2) or (..., K, 3), got shape {kp2d.shape}")
    xy = kp2d[..., :2]
    ok = np.isfinite(xy).all(-1, keepdims=True)  # (..., K, 1)
    with np.errstate(all="ignore"):
        lo = np.where(ok, xy, np.inf).min(-2)  # (..., 2)
        hi = np.where(ok, xy, -np.inf).max(-2)
        centre = (lo + hi) / 2
        side = np.maximum((hi - lo).max(-1) * (1 + 2 * margin), min_size)
    box = np.concatenate([centre, side[..., None]], -1)
    box[~ok.any((-2, -1))] = np.nan
    return box


def crop_affine(box: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 affine map from image pixels to crop pixels of a square box.

    The box's continuous extent ``[cx - side/2, cx + side/2]`` maps to ``[-0.5, size - 0.5]`` (pixel centres at
    integers in both images).

    Args:
        box: (3,) [cx, cy, side] in image pixels.
        size: crop side in pixels.

    Returns:
        (2, 3) float64 matrix A: ``crop_px = A[:, :2] @ image_px + A[:, 2]``.
    """
    cx, cy, side = (float(v) for v in box)
    if not (np.isfinite([cx, cy, side]).all() and side > 0):
        raise ValueError(f"box: expected finite [cx, cy, side] with side > 0, got {box}")
    s = size / side
    return np.array([[s, 0.0, size / 2 - 0.5 - s * cx], [0.0, s, size / 2 - 0.5 - s * cy]])


def crop(image: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a square box out of an image and resample it to ``size`` x ``size`` (bilinear; zero outside).

    Args:
        image: (H, W, 3) uint8 image.
        box: (3,) [cx, cy, side] in pixels (see :func:`part_crop_box`).
        size: crop side in pixels.

    Returns:
        The crop (size, size, 3) uint8 and the affine A (2, 3) from image to crop pixels; map keypoints with
        :func:`to_crop` and back with :func:`from_crop`.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected (H, W, 3), got shape {image.shape}")
    A = crop_affine(box, size)
    out = cv2.warpAffine(image, A, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, A


def to_crop(xy: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Map (..., 2) image pixels to crop pixels with the affine A (2, 3) of :func:`crop`."""
    return xy @ A[:, :2].T + A[:, 2]


def from_crop(uv: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Map (..., 2) crop pixels back to image pixels (the inverse of :func:`to_crop`)."""
    return (uv - A[:, 2]) @ np.linalg.inv(A[:, :2]).T


def crop_to_normalised(uv: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels (..., 2) -> crop-normalised coordinates ``(u + 0.5) / size`` ([0, 1] spans the crop)."""
    return (uv + 0.5) / size


def normalised_to_crop(n: np.ndarray, size: int) -> np.ndarray:
    """Crop-normalised coordinates (..., 2) -> crop pixels (inverse of :func:`crop_to_normalised`)."""
    return n * size - 0.5


def images_to_tensor(crops: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(B, S, S, 3) uint8 RGB crops -> (B, 3, S, S) float32 in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------------------------------------------
# Application.


def _check_images(images: np.ndarray | Sequence[np.ndarray], B: int) -> Sequence[np.ndarray]:
    if len(images) != B:
        raise ValueError(f"images: expected {B} images (one per keypoint row), got {len(images)}")
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"images[{i}]: expected (H, W, 3) uint8 RGB, got shape {im.shape} dtype {im.dtype}")
    return images


@torch.no_grad()
def correct_part(
    model: PartCorrector,
    images: np.ndarray | Sequence[np.ndarray],
    kp2d: np.ndarray,
    device: torch.device | str | None = None,
    iterations: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Correct one part's 2D keypoints in a batch of images, iteratively.

    Each iteration crops a square box around the current estimate (:func:`part_crop_box` with the model's
    ``margin``), runs the network once and maps the result back to image pixels.

    Args:
        model: a trained :class:`PartCorrector` (put in eval mode here).
        images: (B, H, W, 3) uint8 RGB, or a sequence of B such images of any sizes.
        kp2d: (B, K, 3) [x, y, score] of the model's part in image pixels; NaN (any of the three) where missing.
        device: where to run the model; None: the model's device.
        iterations: network passes; None: ``model.cfg.iterations``.
        batch_size: crops per network call.

    Returns:
        (B, K, 3) float32 [x, y, confidence] in image pixels, confidence in [0, 1] from the corrector. Rows with
        fewer than ``min_visible`` of the K keypoints present are returned unchanged (with their input scores);
        missing keypoints stay NaN.
    """
    cfg = model.cfg
    K, S = cfg.num_keypoints, cfg.crop_size
    kp2d = np.asarray(kp2d, dtype=np.float64)
    if kp2d.ndim != 3 or kp2d.shape[1:] != (K, 3):
        raise ValueError(f"kp2d: expected (B, {K}, 3) [x, y, score] for part {cfg.part!r}, got shape {kp2d.shape}")
    B = kp2d.shape[0]
    images = _check_images(images, B)
    device = next(model.parameters()).device if device is None else torch.device(device)
    model.to(device).eval()
    iterations = cfg.iterations if iterations is None else int(iterations)

    present = np.isfinite(kp2d).all(-1)  # (B, K)
    out = kp2d.copy()
    out[~present] = np.nan
    rows = np.flatnonzero(present.mean(1) >= cfg.min_visible)
    if len(rows) == 0:
        return out.astype(np.float32)
    xy = kp2d[rows, :, :2].copy()  # (N, K, 2) current estimate, image pixels
    scores = np.where(present[rows], np.clip(kp2d[rows, :, 2], 0, 1), 0.0)  # (N, K)
    conf = np.zeros_like(scores)
    for _ in range(iterations):
        boxes = part_crop_box(np.where(present[rows, :, None], xy, np.nan), cfg.margin, cfg.min_box_px)
        for lo in range(0, len(rows), batch_size):
            idx = np.arange(lo, min(lo + batch_size, len(rows)))
            crops, mats = zip(*(crop(images[rows[i]], boxes[i], S) for i in idx))
            mats = np.stack(mats)  # (n, 2, 3)
            uv = np.einsum("nij,nkj->nki", mats[:, :, :2], xy[idx]) + mats[:, None, :, 2]  # (n, K, 2) crop px
            n_in = crop_to_normalised(uv, S)
            n_in = np.where(present[rows[idx], :, None], n_in, 0.5)  # missing: box centre, score 0
            n_out, c, _ = model(
                images_to_tensor(np.stack(crops), device),
                torch.as_tensor(n_in, dtype=torch.float32, device=device),
                torch.as_tensor(scores[idx], dtype=torch.float32, device=device),
            )
            uv_out = normalised_to_crop(n_out.double().cpu().numpy(), S)
            inv = np.linalg.inv(mats[:, :, :2])  # (n, 2, 2)
            xy[idx] = np.einsum("nij,nkj->nki", inv, uv_out - mats[:, None, :, 2])
            conf[idx] = c.double().cpu().numpy()
    res = np.concatenate([xy, conf[..., None]], -1)
    res[~present[rows]] = np.nan
    out[rows] = res
    return out.astype(np.float32)


def correct_detections(
    model_by_part: Mapping[str, PartCorrector],
    images: np.ndarray | Sequence[np.ndarray],
    kp2d: np.ndarray,
    device: torch.device | str | None = None,
    iterations: int | None = None,
) -> np.ndarray:
    """Correct the hand and face keypoints of one view's frames with per-part correctors; the rest is unchanged.

    This is the entry point for the refine stage: run it on each view's detections before re-triangulating the
    parts. The third channel of a corrected keypoint becomes the corrector's confidence.

    Args:
        model_by_part: part name (``left_hand``, ``right_hand``, ``face``) -> its trained corrector; parts without
            a corrector are left as they are.
        images: (B, H, W, 3) uint8 RGB frames of one view (or a sequence of B such images).
        kp2d: (B, J, 3) whole-body [x, y, score] in pixels, NaN where missing.
        device: where to run the models; None: each model's own device.
        iterations: network passes; None: each model's configured ``iterations``.

    Returns:
        (B, J, 3) float32, a corrected copy of ``kp2d``.
    """
    J = skeleton.NUM_KEYPOINTS
    kp2d = np.asarray(kp2d)
    if kp2d.ndim != 3 or kp2d.shape[1:] != (J, 3):
        raise ValueError(f"kp2d: expected (B, {J}, 3) whole-body [x, y, score], got shape {kp2d.shape}")
    out = kp2d.astype(np.float32, copy=True)
    for part, model in model_by_part.items():
        if part != model.cfg.part:
            raise ValueError(f"model_by_part[{part!r}] is a corrector for part {model.cfg.part!r}")
        sl = skeleton.PARTS[part]
        out[:, sl] = correct_part(model, images, kp2d[:, sl], device=device, iterations=iterations)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints.


def save_corrector(path: str | os.PathLike, model: PartCorrector, extra: Mapping | None = None) -> None:
    """Save a corrector atomically: ``{"format", "config" (dict), "state_dict", "extra"}``, plain types and tensors.

    The file loads with ``torch.load(weights_only=True)``; ``extra`` (e.g. training statistics) must hold plain
    types only. Written to a temporary file and moved into place with ``os.replace``.
    """
    save_weights_only(path, CHECKPOINT_FORMAT, model, model.cfg.to_dict(), extra)
    log.info("saved %s corrector to %s", model.cfg.part, path)


def load_corrector(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[PartCorrector, dict]:
    """Load a checkpoint written by :func:`save_corrector` (with ``torch.load(weights_only=True)``).

    Returns:
        The model in eval mode on ``device`` and the checkpoint's ``extra`` dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a corrector checkpoint, or a bad configuration in it.
    """
    ckpt = load_weights_only(path, CHECKPOINT_FORMAT, "corrector", device)
    try:
        cfg = CorrectorConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: key 'config': {e}") from None
    model = PartCorrector(cfg)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), dict(ckpt.get("extra", {}))
