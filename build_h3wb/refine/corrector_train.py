"""Training of a :class:`~build_h3wb.refine.corrector.PartCorrector` from 2D whole-body annotations.

Annotations are a COCO-WholeBody-style JSON file: ``images`` (``id``, ``file_name``) and ``annotations``
(``image_id`` and the part's keypoints) beside an image folder. Two layouts are read:

* the official COCO-WholeBody layout (Jin et al., ECCV 2020): body in ``keypoints`` (17 x 3), face and hands in
  ``face_kpts`` (68 x 3), ``lefthand_kpts`` and ``righthand_kpts`` (21 x 3 each), with the flags ``face_valid``,
  ``lefthand_valid``, ``righthand_valid`` (an annotation whose flag is false has no such part);
* a flat layout: all 133 keypoints in ``keypoints`` (133 x 3) in the order of ``skeleton.NAMES``.

Each triplet is ``[x, y, v]`` in pixels; ``v > 0`` marks an annotated keypoint. A part instance with fewer than
``min_annotated`` of its keypoints annotated is skipped (counted per reason in ``PartAnnotations.skipped``).

A training sample imitates what the corrector meets in the pipeline (:func:`simulate_detector_noise`): the
annotated keypoints plus detector-like noise (Gaussian with a per-sample scale, occasional outliers, a few
missing keypoints) are the input, the crop box is built around that noisy input (as :func:`correct_part` does) and
then randomly scaled and shifted, the annotation is the target. Loss: L1 on the corrected keypoints (crop-normalised
units) plus a binary cross-entropy that trains the confidence to tell whether a corrected keypoint lies within
``conf_threshold`` of the annotation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from build_h3wb import skeleton
from build_h3wb.progress import progress as progress_bar
from build_h3wb.refine.corrector import (
    CorrectorConfig,
    PartCorrector,
    correct_part,
    crop,
    crop_to_normalised,
    images_to_tensor,
    part_crop_box,
    to_crop,
)

log = logging.getLogger(__name__)

#: Part -> (keypoint key, validity flag key) in the official COCO-WholeBody layout.
OFFICIAL_KEYS: dict[str, tuple[str, str]] = {
    "face": ("face_kpts", "face_valid"),
    "left_hand": ("lefthand_kpts", "lefthand_valid"),
    "right_hand": ("righthand_kpts", "righthand_valid"),
}


@dataclass
class CorrectorTrainConfig:
    """Training settings of a part corrector.

    Noise sizes are fractions of the part's size (the largest extent of its annotated keypoints).

    Attributes:
        epochs: passes over the training samples (each with fresh noise and crop jitter).
        batch_size: samples per optimisation step.
        lr: peak AdamW learning rate (cosine decay to 1% of it).
        weight_decay: AdamW weight decay.
        noise_min: smallest per-sample standard deviation of the Gaussian input noise.
        noise_max: largest one (drawn log-uniformly in between, so late-iteration small errors are trained too).
        outlier_prob: probability that an input keypoint is an outlier.
        outlier_min: smallest outlier displacement.
        outlier_max: largest outlier displacement.
        missing_prob: probability that an input keypoint is missing (score 0).
        box_scale_jitter: the crop box side is scaled by a factor in ``1 +- box_scale_jitter``.
        box_shift_jitter: the crop box centre moves by up to this share of its side in x and y.
        conf_threshold: confidence target: 1 where the corrected keypoint is within this distance of the
            annotation, in crop-normalised units (0.03 = 6.7 px of a 224 px crop).
        conf_weight: weight of the confidence loss.
        min_annotated: share of a part's keypoints that must be annotated for the instance to be used.
        val_fraction: share of the part instances held out to report the error before/after correction.
        num_workers: DataLoader worker processes (0: load in the main process).
        seed: seed of the split, the noise and the initial weights.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    noise_min: float = 0.02
    noise_max: float = 0.15
    outlier_prob: float = 0.08
    outlier_min: float = 0.15
    outlier_max: float = 0.5
    missing_prob: float = 0.05
    box_scale_jitter: float = 0.15
    box_shift_jitter: float = 0.08
    conf_threshold: float = 0.03
    conf_weight: float = 0.2
    min_annotated: float = 0.5
    val_fraction: float = 0.1
    num_workers: int = 0
    seed: int = 0

    def to_dict(self) -> dict:
        """The configuration as a plain dict."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# Annotations.


@dataclass
class PartAnnotations:
    """The annotated instances of one part.

    Attributes:
        part: part name.
        image_paths: (N,) image file of each instance.
        keypoints: (N, K, 3) float64 [x, y, v] in pixels, ``v > 0`` where annotated.
        skipped: reason -> number of annotations skipped for it.
    """

    part: str
    image_paths: list[Path]
    keypoints: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_paths)

    def subset(self, idx: np.ndarray) -> PartAnnotations:
        """The instances ``idx``."""
        return PartAnnotations(self.part, [self.image_paths[i] for i in idx], self.keypoints[idx], dict(self.skipped))


def _part_triplets(ann: dict, part: str, where: str) -> np.ndarray | None:
    """(K, 3) [x, y, v] of ``part`` in one annotation, None where the official validity flag is false."""
    sl = skeleton.PARTS[part]
    K = sl.stop - sl.start
    key, flag = OFFICIAL_KEYS[part]
    if key in ann:
        if flag in ann and not ann[flag]:
            return None
        values, expected = ann[key], K * 3
    elif "keypoints" in ann and len(ann["keypoints"]) == skeleton.NUM_KEYPOINTS * 3:
        key, values, expected = "keypoints", ann["keypoints"], skeleton.NUM_KEYPOINTS * 3
    else:
        n = len(ann.get("keypoints", []))
        raise ValueError(f"{where}: no {part} keypoints: expected key {key!r} ({K * 3} values, official "
                         f"COCO-WholeBody layout) or 'keypoints' with {skeleton.NUM_KEYPOINTS * 3} values, found "
                         f"'keypoints' with {n} values and keys {sorted(ann)}")
    if len(values) != expected:
        raise ValueError(f"{where}: key {key!r} has {len(values)} values, expected {expected} ([x, y, v] per keypoint)")
    kp = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    return kp if key != "keypoints" else kp[sl]


def load_part_annotations(
    annotations: str | os.PathLike, images_dir: str | os.PathLike, part: str, min_annotated: float = 0.5
) -> PartAnnotations:
    """Read the annotated instances of one part from a COCO-WholeBody-style file (see the module docstring).

    Args:
        annotations: the JSON file.
        images_dir: folder the images' ``file_name`` entries are relative to.
        part: ``left_hand``, ``right_hand`` or ``face``.
        min_annotated: share of the part's keypoints that must be annotated (``v > 0``) to use an instance.

    Returns:
        The usable instances, in file order.

    Raises:
        FileNotFoundError: the annotation file, the image folder or a referenced image is missing.
        ValueError: malformed file, an annotation without the part's keys or with a wrong keypoint count, or no
            usable instance of the part.
    """
    if part not in OFFICIAL_KEYS:
        raise ValueError(f"part: expected one of {sorted(OFFICIAL_KEYS)}, got {part!r}")
    annotations, images_dir = Path(annotations), Path(images_dir)
    if not annotations.is_file():
        raise FileNotFoundError(f"annotation file {annotations} not found")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} not found (for annotations {annotations})")
    try:
        data = json.loads(annotations.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{annotations}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise ValueError(f"{annotations}: expected a JSON object with lists 'images' and 'annotations'")
    files: dict[object, str] = {}
    for i, im in enumerate(data["images"]):
        if "id" not in im or "file_name" not in im:
            raise ValueError(f"{annotations}: images[{i}] lacks key 'id' or 'file_name'")
        files[im["id"]] = im["file_name"]

    paths: list[Path] = []
    kps: list[np.ndarray] = []
    skipped = {"part not valid": 0, "too few annotated keypoints": 0}
    for i, ann in enumerate(data["annotations"]):
        where = f"{annotations}: annotations[{i}] (id {ann.get('id')})"
        if ann.get("image_id") not in files:
            raise ValueError(f"{where}: key 'image_id' = {ann.get('image_id')!r} is not the id of an entry of 'images'")
        kp = _part_triplets(ann, part, where)
        if kp is None:
            skipped["part not valid"] += 1
            continue
        if (kp[:, 2] > 0).mean() < min_annotated:
            skipped["too few annotated keypoints"] += 1
            continue
        path = images_dir / files[ann["image_id"]]
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image {path} not found")
        paths.append(path)
        kps.append(kp)
    if not paths:
        raise ValueError(f"{annotations}: no annotation has the part {part!r} with at least {min_annotated:.0%} of its "
                         f"keypoints annotated (key {OFFICIAL_KEYS[part][0]!r} or 133-keypoint 'keypoints'); "
                         f"skipped: {skipped}")
    log.info("%s: %d %s instances (skipped: %s)", annotations, len(paths), part, skipped)
    return PartAnnotations(part, paths, np.stack(kps), skipped)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; FileNotFoundError where it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------------------------
# Samples.


def simulate_detector_noise(
    kp: np.ndarray, rng: np.random.Generator, cfg: CorrectorTrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Turn annotated part keypoints into detector-like input: noise, outliers, missing keypoints, scores.

    Args:
        kp: (N, K, 3) [x, y, v] annotated keypoints in pixels (``v > 0`` annotated).
        rng: random generator.
        cfg: noise settings (fractions of each instance's size).

    Returns:
        noisy (N, K, 3) [x, y, score] in pixels, NaN where missing (not annotated or dropped); and the per-instance
        size (N,) in pixels used as the noise unit.
    """
    N, K = kp.shape[:2]
    ann = kp[..., 2] > 0  # (N, K)
    xy = np.where(ann[..., None], kp[..., :2], np.nan)
    size = np.maximum(np.nanmax(xy, 1) - np.nanmin(xy, 1), 1.0).max(-1)  # (N,)
    sigma = np.exp(rng.uniform(np.log(cfg.noise_min), np.log(cfg.noise_max), N)) * size  # (N,) pixels
    noise = rng.normal(size=(N, K, 2)) * sigma[:, None, None]
    outlier = rng.random((N, K)) < cfg.outlier_prob
    angle = rng.uniform(0, 2 * np.pi, (N, K))
    dist = rng.uniform(cfg.outlier_min, cfg.outlier_max, (N, K)) * size[:, None]
    jump = np.stack([np.cos(angle), np.sin(angle)], -1) * dist[..., None]
    noise = np.where(outlier[..., None], jump, noise)
    err = np.linalg.norm(noise, axis=-1) / size[:, None]  # (N, K) in part sizes
    score = np.exp(-((err / 0.1) ** 2)) * rng.uniform(0.6, 1.0, (N, K))  # detector-like: lower where worse
    present = ann & (rng.random((N, K)) >= cfg.missing_prob)
    out = np.concatenate([xy + noise, score[..., None]], -1)
    out[~present] = np.nan
    return out, size


def make_sample(
    image: np.ndarray, kp: np.ndarray, noisy: np.ndarray, rng: np.random.Generator, model_cfg: CorrectorConfig,
    train_cfg: CorrectorTrainConfig,
) -> dict[str, np.ndarray]:
    """One training sample: crop around the noisy input (jittered box) and the targets in crop coordinates.

    Args:
        image: (H, W, 3) uint8 RGB.
        kp: (K, 3) annotation [x, y, v] in pixels.
        noisy: (K, 3) simulated detection [x, y, score] in pixels, NaN where missing.
        rng: random generator for the box jitter.
        model_cfg: crop size and box margin.
        train_cfg: box jitter.

    Returns:
        ``crop`` (S, S, 3) uint8, ``kp_in`` (K, 2) and ``scores`` (K,) network input (missing: centre, 0),
        ``target`` (K, 2) crop-normalised annotation, ``mask`` (K,) bool where the annotation exists and the input
        keypoint is present (missing keypoints stay missing in :func:`correct_part`, so they are not trained).
    """
    S = model_cfg.crop_size
    present = np.isfinite(noisy).all(-1)
    if not present.any():  # every keypoint dropped: box from the annotation
        noisy_box_src = np.where((kp[:, 2] > 0)[:, None], kp[:, :2], np.nan)
    else:
        noisy_box_src = noisy[:, :2]
    box = part_crop_box(noisy_box_src, model_cfg.margin, model_cfg.min_box_px)
    box[2] *= 1 + rng.uniform(-train_cfg.box_scale_jitter, train_cfg.box_scale_jitter)
    box[:2] += rng.uniform(-train_cfg.box_shift_jitter, train_cfg.box_shift_jitter, 2) * box[2]
    patch, A = crop(image, box, S)
    kp_in = np.where(present[:, None], crop_to_normalised(to_crop(np.nan_to_num(noisy[:, :2]), A), S), 0.5)
    return {
        "crop": patch,
        "kp_in": kp_in.astype(np.float32),
        "scores": np.where(present, np.clip(noisy[:, 2], 0, 1), 0.0).astype(np.float32),
        "target": crop_to_normalised(to_crop(kp[:, :2], A), S).astype(np.float32),
        "mask": (kp[:, 2] > 0) & present,
    }


class PartCropDataset(Dataset):
    """Training samples of one part: fresh noise and crop jitter on every access (see :func:`make_sample`)."""

    def __init__(self, data: PartAnnotations, model_cfg: CorrectorConfig, train_cfg: CorrectorTrainConfig) -> None:
        self.data, self.model_cfg, self.train_cfg = data, model_cfg, train_cfg
        self.rng = np.random.default_rng(train_cfg.seed)

    def reseed(self, seed: int) -> None:
        """Reseed the sample noise (called per DataLoader worker and epoch)."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        kp = self.data.keypoints[i]
        noisy, _ = simulate_detector_noise(kp[None], self.rng, self.train_cfg)
        return make_sample(read_image(self.data.image_paths[i]), kp, noisy[0], self.rng, self.model_cfg,
                           self.train_cfg)


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.reseed(int(torch.initial_seed() % 2**32))


# ----------------------------------------------------------------------------------------------------------------
# Training and evaluation.


def corrector_loss(
    kp_out: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cfg: CorrectorTrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 on the annotated keypoints plus the weighted confidence BCE.

    Args:
        kp_out: (B, K, 2) corrected keypoints, crop-normalised.
        logits: (B, K) confidence logits.
        target: (B, K, 2) annotation, crop-normalised.
        mask: (B, K) bool, where the annotation exists.
        cfg: ``conf_threshold`` and ``conf_weight``.

    Returns:
        The total loss and the L1 term alone (both scalars).
    """
    m = mask.float()
    denom = m.sum().clamp_min(1.0)
    l1 = ((kp_out - target).abs().sum(-1) * m).sum() / denom
    hit = ((kp_out.detach() - target).norm(dim=-1) < cfg.conf_threshold).float()  # (B, K)
    bce = (F.binary_cross_entropy_with_logits(logits, hit, reduction="none") * m).sum() / denom
    return l1 + cfg.conf_weight * bce, l1


def evaluate_corrector(
    model: PartCorrector, data: PartAnnotations, train_cfg: CorrectorTrainConfig, seed: int,
    device: torch.device | str = "cpu", iterations: int | None = None,
) -> dict[str, float]:
    """Error of the simulated detections before and after correction, on annotated instances.

    Args:
        model: the corrector.
        data: instances to evaluate on (held out from training).
        train_cfg: the noise model (:func:`simulate_detector_noise`).
        seed: seed of the simulated noise.
        device: where to run the model.
        iterations: network passes; None: the model's default.

    Returns:
        ``median_px_before``, ``median_px_after``, ``mean_px_before``, ``mean_px_after`` over the keypoints that
        are annotated and present in the input, and ``n_keypoints``.
    """
    rng = np.random.default_rng(seed)
    noisy, _ = simulate_detector_noise(data.keypoints, rng, train_cfg)
    corrected = np.empty_like(noisy, dtype=np.float32)
    for lo in range(0, len(data), 256):  # a chunk of images in memory at a time
        hi = min(lo + 256, len(data))
        images = [read_image(p) for p in data.image_paths[lo:hi]]
        corrected[lo:hi] = correct_part(model, images, noisy[lo:hi], device=device, iterations=iterations)
    ok = np.isfinite(noisy).all(-1) & np.isfinite(corrected).all(-1) & (data.keypoints[..., 2] > 0)
    before = np.linalg.norm(noisy[..., :2] - data.keypoints[..., :2], axis=-1)[ok]
    after = np.linalg.norm(corrected[..., :2] - data.keypoints[..., :2], axis=-1)[ok]
    return {
        "median_px_before": float(np.median(before)),
        "median_px_after": float(np.median(after)),
        "mean_px_before": float(np.mean(before)),
        "mean_px_after": float(np.mean(after)),
        "n_keypoints": int(ok.sum()),
    }


def train_corrector(
    model_cfg: CorrectorConfig,
    train_cfg: CorrectorTrainConfig,
    data: PartAnnotations,
    device: torch.device | str = "cpu",
    backbone_weights: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[PartCorrector, dict]:
    """Train a part corrector on annotated instances.

    A share ``val_fraction`` of the instances (at least one, when there are ten or more) is held out; the error
    before/after correction on it is logged and returned.

    Args:
        model_cfg: the corrector's architecture; ``model_cfg.part`` must equal ``data.part``.
        train_cfg: training settings.
        data: annotated instances (:func:`load_part_annotations`).
        device: where to train.
        backbone_weights: optional local torchvision resnet18 state-dict file to initialise the backbone.
        progress: report the epochs (a bar on a terminal, log lines elsewhere: ``build_h3wb.progress``).

    Returns:
        The trained model in eval mode and a plain-types summary (losses per epoch, training time, validation
        errors, counts) fit for the checkpoint's ``extra``.
    """
    if model_cfg.part != data.part:
        raise ValueError(f"model_cfg.part is {model_cfg.part!r} but the annotations are for {data.part!r}")
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    order = rng.permutation(len(data))
    n_val = int(round(len(data) * train_cfg.val_fraction)) if len(data) >= 10 else 0
    val, train = data.subset(order[:n_val]), data.subset(order[n_val:])
    dataset = PartCropDataset(train, model_cfg, train_cfg)
    loader = DataLoader(
        dataset, batch_size=train_cfg.batch_size, shuffle=True, drop_last=len(train) > train_cfg.batch_size,
        num_workers=train_cfg.num_workers, worker_init_fn=_worker_init if train_cfg.num_workers else None,
        persistent_workers=False,
    )
    model = PartCorrector(model_cfg, backbone_weights).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    total = train_cfg.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * s / total)))
    history: list[float] = []
    t0 = time.perf_counter()
    for epoch in progress_bar(range(train_cfg.epochs), desc=f"corrector {model_cfg.part}", unit="epoch",
                              enabled=progress):
        dataset.reseed(train_cfg.seed * 100003 + epoch)
        model.train()
        l1_sum, n = 0.0, 0
        for batch in loader:
            kp_out, _, logits = model(
                images_to_tensor(batch["crop"].numpy(), device), batch["kp_in"].to(device), batch["scores"].to(device)
            )
            loss, l1 = corrector_loss(kp_out, logits, batch["target"].to(device), batch["mask"].to(device), train_cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            l1_sum, n = l1_sum + float(l1.detach()) * len(batch["crop"]), n + len(batch["crop"])
        history.append(l1_sum / max(n, 1))
        log.debug("epoch %d: L1 %.4f (crop-normalised)", epoch, history[-1])
    seconds = time.perf_counter() - t0
    model.eval()
    summary: dict = {
        "train_instances": len(train),
        "val_instances": len(val),
        "train_seconds": seconds,
        "epoch_l1": history,
        "train_config": train_cfg.to_dict(),
        "skipped": dict(data.skipped),
    }
    log.info("trained the %s corrector on %d instances in %.1f s (final L1 %.4f)", model_cfg.part, len(train),
             seconds, history[-1] if history else float("nan"))
    if len(val):
        summary["val"] = evaluate_corrector(model, val, train_cfg, seed=train_cfg.seed + 1, device=device)
        log.info("held-out %s: median error %.2f px before, %.2f px after correction", model_cfg.part,
                 summary["val"]["median_px_before"], summary["val"]["median_px_after"])
    return model, summary
