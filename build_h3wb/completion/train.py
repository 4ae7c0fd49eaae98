"""Training and inference of the completion network: normalisation, training masks, training loop, checkpoints.

Poses are normalised around the root (mid-hip, :func:`build_h3wb.skeleton.root`), optionally rotated about the
world vertical (z up) so the right-to-left hip line points along +x, and divided by ``scale_mm``. A pose whose root
is missing (either hip not observed) cannot be normalised and is never filled, by the network or the baselines.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from build_h3wb import skeleton
from build_h3wb.checkpoints import load_weights_only, save_weights_only
from build_h3wb.completion.config import ARCHITECTURE_FIELDS
from build_h3wb.completion.model import CompletionConfig, CompletionNet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "build_h3wb.completion/1"

#: Modes of :func:`make_masks` and their default probabilities.
MASK_MODES: tuple[str, ...] = ("random", "chunks", "face", "hand", "hand_face", "both_hands")
DEFAULT_MASK_PROBS: dict[str, float] = {
    "random": 0.15, "chunks": 0.25, "face": 0.15, "hand": 0.2, "hand_face": 0.1, "both_hands": 0.15,
}
_MAX_CHUNKS = 4  # "chunks" mode hides 1.._MAX_CHUNKS chunks
_EXTRA_CHUNKS_P = 0.3  # share of whole-part masks that also lose a few chunks elsewhere
_RANDOM_RATE = (0.05, 0.5)  # per-pose hiding rate range of the "random" mode


# ----------------------------------------------------------------------------------------------------------------
# Shapes and normalisation.


def check_poses(poses: np.ndarray, name: str = "poses") -> np.ndarray:
    """Return ``poses`` as a float array after checking it is (N, J, 3); raise ValueError naming the shape if not."""
    arr = np.asarray(poses)
    if arr.ndim != 3 or arr.shape[1:] != (skeleton.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected {name} of shape (N, {skeleton.NUM_KEYPOINTS}, 3), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def normalize_poses(
    poses: np.ndarray, scale_mm: float = 1000.0, yaw_normalize: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root-centre, yaw-align and scale poses.

    Args:
        poses: (N, J, 3) world millimetres, z up, NaN where missing.
        scale_mm: millimetres per normalised unit.
        yaw_normalize: rotate about z so the right-to-left hip line points along +x.

    Returns:
        normalised (N, J, 3) float64 units of ``scale_mm`` (NaN where missing, all NaN where the root is missing),
        root (N, 3) mm, rotation (N, 3, 3) world -> normalised frame.
    """
    poses = check_poses(poses).astype(np.float64, copy=False)
    root = skeleton.root(poses)  # (N, 3)
    rot = np.broadcast_to(np.eye(3), (len(poses), 3, 3)).copy()
    if yaw_normalize:
        hips = poses[:, skeleton.LEFT_HIP] - poses[:, skeleton.RIGHT_HIP]  # (N, 3)
        theta = np.arctan2(hips[:, 1], hips[:, 0])  # heading of the hip line
        c, s = np.cos(-theta), np.sin(-theta)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
    norm = np.einsum("nij,nkj->nki", rot, poses - root[:, None]) / scale_mm  # (N, J, 3)
    return norm, root, rot


def denormalize_poses(norm: np.ndarray, root: np.ndarray, rot: np.ndarray, scale_mm: float = 1000.0) -> np.ndarray:
    """Inverse of :func:`normalize_poses`: norm (N, J, 3), root (N, 3) mm, rot (N, 3, 3) -> (N, J, 3) world mm."""
    return np.einsum("nji,nkj->nki", rot, np.asarray(norm, dtype=np.float64) * scale_mm) + root[:, None]


def fill_missing(
    poses: np.ndarray,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    scale_mm: float = 1000.0,
    yaw_normalize: bool = True,
    inputs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the missing keypoints of poses with a predictor working on normalised poses.

    Poses whose root is missing are left as they are (NaN stays NaN); complete poses are not passed to ``predict``.
    A keypoint with any NaN coordinate counts as missing.

    Args:
        poses: (N, J, 3) world mm, NaN where missing.
        predict: maps (x (n, J, 3) normalised, 0 at missing keypoints; visible (n, J) bool) to (n, J, 3) normalised
            predictions of all keypoints (only the missing ones are used).
        scale_mm: normalisation scale.
        yaw_normalize: normalise the heading.
        inputs: (N, J, 3) world mm, what ``predict`` sees instead of ``poses`` (NaN: not used as input; e.g.
            observed keypoints not trusted, or replaced by a better estimate); its hips must be those of ``poses``.
            None: ``poses``. The holes filled are those of ``poses`` either way.

    Returns:
        filled (N, J, 3) mm, with the observed keypoints bitwise as given, and filled_mask (N, J) bool, True where a
        missing keypoint was filled.
    """
    poses = check_poses(poses)
    hips = [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]
    if inputs is None:
        inputs = poses
    else:
        inputs = check_poses(inputs, "inputs")
        if inputs.shape != poses.shape or not np.array_equal(inputs[:, hips], poses[:, hips], equal_nan=True):
            raise ValueError(f"inputs of shape {inputs.shape} must have the shape and the hips of poses "
                             f"(shape {poses.shape})")
    visible = np.isfinite(poses).all(-1)  # (N, J)
    root_ok = visible[:, skeleton.LEFT_HIP] & visible[:, skeleton.RIGHT_HIP]
    todo = np.flatnonzero(root_ok & ~visible.all(1))
    out = poses.copy()
    filled = np.zeros(visible.shape, dtype=bool)
    if len(todo) == 0:
        return out, filled
    hole = ~visible[todo]
    vis = np.isfinite(inputs[todo]).all(-1)  # (n, J) what the predictor sees
    norm, root, rot = normalize_poses(inputs[todo], scale_mm, yaw_normalize)
    norm = np.where(vis[..., None], norm, 0.0)
    pred = denormalize_poses(predict(norm, vis), root, rot, scale_mm)  # (n, J, 3) mm
    block = out[todo]
    block[hole] = pred[hole]
    out[todo] = block
    filled[todo] = hole
    return out, filled


# ----------------------------------------------------------------------------------------------------------------
# Training masks.


def _chunks() -> np.ndarray:
    """(C, J) bool: contiguous groups that triangulation tends to lose together (fingers, face regions, feet)."""
    rows = []
    for side in ("left", "right"):
        hand = skeleton.PARTS[f"{side}_hand"]
        for f in range(5):  # thumb .. pinky, 4 joints each after the hand root
            rows.append(range(hand.start + 1 + 4 * f, hand.start + 5 + 4 * f))
        rows.append(range(hand.start + 1, hand.stop))  # all fingers, palm root seen
        rows.append([skeleton.index(f"{side}_{n}") for n in ("big_toe", "small_toe", "heel")])
    face0 = skeleton.PARTS["face"].start
    jaw = skeleton.FACE_REGIONS["jaw"]
    half = len(jaw) // 2
    rows += [range(face0 + jaw.start, face0 + jaw.start + half + 1), range(face0 + jaw.start + half, face0 + jaw.stop)]
    rows += [range(face0 + r.start, face0 + r.stop) for r in skeleton.FACE_REGIONS.values()]
    out = np.zeros((len(rows), skeleton.NUM_KEYPOINTS), dtype=bool)
    for i, r in enumerate(rows):
        out[i, list(r)] = True
    return out


def _part_mask(*names: str) -> np.ndarray:
    """(J,) bool, True on the named parts."""
    m = np.zeros(skeleton.NUM_KEYPOINTS, dtype=bool)
    for n in names:
        m[skeleton.PARTS[n]] = True
    return m


def make_masks(n: int, rng: np.random.Generator, probs: dict | None = None) -> np.ndarray:
    """Draw hole patterns like those triangulation leaves.

    Each pose gets one mode: ``random`` (each keypoint hidden with a per-pose rate in 5-50%), ``chunks`` (1-4
    contiguous groups: a finger, all fingers of a hand, a foot, half the jaw, a brow, an eye, the nose, the mouth),
    ``face`` (the whole face), ``hand`` (one whole hand, left or right at random), ``hand_face`` (one hand and the
    face) or ``both_hands``. A share of the whole-part modes also loses a few chunks elsewhere. The hips are never
    hidden: without them the pose cannot be normalised.

    Args:
        n: number of poses.
        rng: random generator (the masks are a function of its state).
        probs: mode -> relative probability; modes left out get 0; None uses :data:`DEFAULT_MASK_PROBS`.

    Returns:
        (n, J) bool, True = hidden.
    """
    probs = DEFAULT_MASK_PROBS if probs is None else dict(probs)
    unknown = sorted(set(probs) - set(MASK_MODES))
    if unknown:
        raise ValueError(f"unknown mask modes {unknown}; expected some of {MASK_MODES}")
    p = np.array([float(probs.get(m, 0.0)) for m in MASK_MODES])
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"mask probabilities must be non-negative with a positive sum, got {probs}")
    j = skeleton.NUM_KEYPOINTS
    mode = rng.choice(len(MASK_MODES), size=n, p=p / p.sum())  # (n,)
    # Every random quantity is drawn for every pose, so a pose's mask does not depend on the others' modes.
    rate = rng.uniform(*_RANDOM_RATE, size=n)
    random = rng.random((n, j)) < rate[:, None]
    chunks = _chunks()
    k = rng.integers(1, _MAX_CHUNKS + 1, size=n)
    pick = rng.integers(len(chunks), size=(n, _MAX_CHUNKS))
    chunked = np.zeros((n, j), dtype=bool)
    for i in range(_MAX_CHUNKS):
        chunked |= chunks[pick[:, i]] & (i < k)[:, None]
    left = rng.random(n) < 0.5
    extra = rng.random(n) < _EXTRA_CHUNKS_P
    face, lhand, rhand = _part_mask("face"), _part_mask("left_hand"), _part_mask("right_hand")
    hand = np.where(left[:, None], lhand, rhand)  # (n, J)
    whole = {"face": face[None], "hand": hand, "hand_face": hand | face, "both_hands": (lhand | rhand)[None]}
    masks = np.zeros((n, j), dtype=bool)
    masks[mode == MASK_MODES.index("random")] = random[mode == MASK_MODES.index("random")]
    masks[mode == MASK_MODES.index("chunks")] = chunked[mode == MASK_MODES.index("chunks")]
    for name, m in whole.items():
        sel = mode == MASK_MODES.index(name)
        masks[sel] = np.broadcast_to(m, (n, j))[sel] | (chunked[sel] & extra[sel, None])
    masks[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]] = False
    return masks


def draw_masks(n: int, rng: np.random.Generator, cfg: CompletionConfig, bank: np.ndarray | None) -> np.ndarray:
    """Training masks: :func:`make_masks`, with a share ``cfg.real_mask_share`` replaced by real hole patterns.

    Args:
        n: number of poses.
        rng: random generator.
        cfg: supplies ``mask_probs`` and ``real_mask_share``.
        bank: (K, J) bool patterns really met (True = missing), or None for synthetic masks only.

    Returns:
        (n, J) bool, True = hidden; the hips are never hidden.
    """
    masks = make_masks(n, rng, cfg.mask_probs)
    if bank is not None and len(bank) and cfg.real_mask_share > 0:
        if bank.ndim != 2 or bank.shape[1] != skeleton.NUM_KEYPOINTS:
            raise ValueError(f"expected a mask bank (K, {skeleton.NUM_KEYPOINTS}), got shape {bank.shape}")
        real = rng.random(n) < cfg.real_mask_share
        masks[real] = bank[rng.integers(len(bank), size=int(real.sum()))]
        masks[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]] = False
    return masks


# ----------------------------------------------------------------------------------------------------------------
# Training.


def _augment(norm: np.ndarray, rng: np.random.Generator, cfg: CompletionConfig) -> np.ndarray:
    """Random left-right mirror (labels swapped, x negated) and scale about the root: (N, J, 3) -> (N, J, 3)."""
    out = norm.copy()
    if cfg.flip_augment:
        flip = rng.random(len(out)) < 0.5
        out[flip] = skeleton.flip_left_right(out[flip]) * np.array([-1.0, 1.0, 1.0])
    if cfg.scale_augment > 0:
        out *= rng.uniform(1 - cfg.scale_augment, 1 + cfg.scale_augment, size=(len(out), 1, 1))
    return out


def _loss(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Euclidean error (normalised units) on the hidden and on the visible keypoints; pred, target (B, J, 3)."""
    dist = torch.sqrt(((pred - target) ** 2).sum(-1) + 1e-12)  # (B, J)
    hid = (~visible).to(dist.dtype)
    vis = visible.to(dist.dtype)
    return (dist * hid).sum() / hid.sum().clamp(min=1.0), (dist * vis).sum() / vis.sum().clamp(min=1.0)


def _complete_training_poses(poses: np.ndarray, name: str) -> np.ndarray:
    poses = check_poses(poses, name)
    if not np.isfinite(poses).all():
        raise ValueError(f"{name} must be complete (no NaN); {int((~np.isfinite(poses)).any(-1).sum())} "
                         f"keypoints of shape {poses.shape} are missing")
    return poses


def _adamw(model: CompletionNet, cfg: CompletionConfig) -> torch.optim.Optimizer:
    """AdamW, in its fused form where this torch and device have one (about 3x faster steps on a CPU)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device (or torch < 2.4 on a CPU)
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def _masked_error_mm(
    model: CompletionNet, x: torch.Tensor, visible: torch.Tensor, batch_size: int, scale_mm: float
) -> float:
    """Mean error (mm) of the hidden keypoints: x (N, J, 3) normalised targets, visible (N, J) bool."""
    model.eval()
    total, count = 0.0, 0.0
    for b in range(0, len(x), batch_size):
        xb, vb = x[b:b + batch_size], visible[b:b + batch_size]
        dist = torch.linalg.vector_norm(model(xb, vb) - xb, dim=-1)  # (B, J)
        total += float((dist * ~vb).sum())
        count += float((~vb).sum())
    return scale_mm * total / max(count, 1.0)


def train_completion(
    poses: np.ndarray,
    cfg: CompletionConfig,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    val_poses: np.ndarray | None = None,
    mask_bank: np.ndarray | None = None,
    init: CompletionNet | None = None,
) -> tuple[CompletionNet, dict]:
    """Train the completion network on complete poses with holes drawn fresh each epoch (:func:`draw_masks`).

    The loss is the mean Euclidean error of the hidden keypoints plus ``visible_loss_weight`` times that of the
    observed ones; AdamW with linear warm-up and cosine decay. Deterministic given ``seed`` on the CPU.

    Args:
        poses: (N, J, 3) complete poses, world millimetres, z up.
        cfg: hyper-parameters.
        device: torch device ("cpu", "cuda", ...; see :func:`resolve_device`).
        seed: seeds the masks, augmentations, shuffling and the weight initialisation.
        progress: show a tqdm progress bar over epochs.
        val_poses: (M, J, 3) complete poses scored after each epoch with fixed masks, or None.
        mask_bank: (K, J) bool hole patterns really met (True = missing), e.g. those of the incomplete
            triangulated poses; a share ``cfg.real_mask_share`` of the training masks is drawn from it.
        init: a trained network to fine-tune (a copy; its linear prior is kept, not refitted); its architecture
            fields (:data:`~build_h3wb.completion.config.ARCHITECTURE_FIELDS`) must equal ``cfg``'s. None: a new
            network with its linear prior fitted on ``poses``.

    Returns:
        The trained model in eval mode on ``device``, and a history dict of per-epoch lists: ``epoch``,
        ``train_hidden_mm`` (training error of the hidden keypoints, mm, with dropout), ``val_hidden_mm`` (if
        val_poses), ``time_s`` (since the start), plus ``train_time_s``, ``num_params`` and, with ``cfg.patience``,
        ``best_epoch`` (the epoch whose weights are returned).

    Raises:
        ValueError: poses not complete or of the wrong shape; ``cfg.patience`` without validation poses; ``init``
            of another architecture.
    """
    poses = _complete_training_poses(poses, "poses")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    norm = normalize_poses(poses, cfg.scale_mm, cfg.yaw_normalize)[0]  # (N, J, 3)
    if init is None:
        model = CompletionNet(cfg)
        model.fit_prior(norm)
    else:
        differ = [k for k in ARCHITECTURE_FIELDS if getattr(init.cfg, k) != getattr(cfg, k)]
        if differ:
            raise ValueError(f"cannot fine-tune a network whose {differ} differ from the configuration's: "
                             + ", ".join(f"{k} {getattr(init.cfg, k)!r} vs {getattr(cfg, k)!r}" for k in differ))
        model = copy.deepcopy(init).cpu()
        model.cfg = cfg
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = _adamw(model, cfg)
    steps = max(1, math.ceil(len(norm) / cfg.batch_size))
    total, warm = cfg.epochs * steps, cfg.warmup_epochs * steps

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    val = None
    if val_poses is not None:
        vp = _complete_training_poses(val_poses, "val_poses")
        vn = normalize_poses(vp, cfg.scale_mm, cfg.yaw_normalize)[0]
        vm = draw_masks(len(vn), np.random.default_rng([seed, 1]), cfg, mask_bank)
        val = (torch.from_numpy(vn.astype(np.float32)).to(device), torch.from_numpy(~vm).to(device))
    history: dict = {"epoch": [], "train_hidden_mm": [], "time_s": []}
    if val is not None:
        history["val_hidden_mm"] = []
    if cfg.patience > 0 and val is None:
        raise ValueError(f"patience={cfg.patience} needs validation poses (val_poses), got none")
    best = (math.inf, 0, None)  # validation error, epoch, weights
    log.info("training completion net (%d parameters) on %d poses, %d epochs x %d steps, device %s",
             n_params, len(norm), cfg.epochs, steps, device)
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc="completion", unit="epoch", disable=not progress)
    for epoch in bar:
        x = torch.from_numpy(_augment(norm, rng, cfg).astype(np.float32)).to(device)  # (N, J, 3)
        visible = torch.from_numpy(~draw_masks(len(norm), rng, cfg, mask_bank)).to(device)  # (N, J)
        perm = torch.from_numpy(rng.permutation(len(norm))).to(device)
        noise = None
        if cfg.input_noise_mm > 0:
            noise = torch.from_numpy(rng.normal(0, cfg.input_noise_mm / cfg.scale_mm, x.shape).astype(np.float32))
            noise = noise.to(device)
        model.train()
        hid_sum = 0.0
        for b in range(steps):
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb, vb = x[idx], visible[idx]
            inp = xb if noise is None else xb + noise[idx]
            loss_hid, loss_vis = _loss(model(inp, vb), xb, vb)
            loss = loss_hid + cfg.visible_loss_weight * loss_vis
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            hid_sum += float(loss_hid.detach())
        history["epoch"].append(epoch + 1)
        history["train_hidden_mm"].append(cfg.scale_mm * hid_sum / steps)
        postfix = {"train_mm": f"{history['train_hidden_mm'][-1]:.1f}"}
        if val is not None:
            history["val_hidden_mm"].append(_masked_error_mm(model, *val, 4096, cfg.scale_mm))
            postfix["val_mm"] = f"{history['val_hidden_mm'][-1]:.1f}"
        history["time_s"].append(time.perf_counter() - t0)
        bar.set_postfix(postfix)
        if cfg.patience > 0:
            if history["val_hidden_mm"][-1] < best[0]:
                best = (history["val_hidden_mm"][-1], epoch + 1, copy.deepcopy(model.state_dict()))
            elif epoch + 1 - best[1] >= cfg.patience:
                log.info("completion: validation error not better than %.2f mm (epoch %d) for %d epochs: stopping",
                         best[0], best[1], cfg.patience)
                break
    if best[2] is not None:
        model.load_state_dict(best[2])
        history["best_epoch"] = best[1]
    history["train_time_s"] = time.perf_counter() - t0
    history["num_params"] = n_params
    log.info("completion net trained in %.1f s: hidden-keypoint error %.1f mm (train)%s", history["train_time_s"],
             history["train_hidden_mm"][-1] if history["epoch"] else float("nan"),
             f", {history['val_hidden_mm'][-1]:.1f} mm (val)" if val is not None and cfg.epochs else "")
    return model.eval(), history


# ----------------------------------------------------------------------------------------------------------------
# Inference.


def complete_poses(
    model: CompletionNet,
    poses: np.ndarray,
    device: str = "cpu",
    batch_size: int = 4096,
    robust_mm: float | np.ndarray | None = None,
    inputs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the missing keypoints with the network.

    Poses whose root is missing (either hip NaN) cannot be normalised: they are returned unfilled (their NaN kept)
    with ``filled_mask`` False. A keypoint with any NaN coordinate counts as missing. The model is moved to
    ``device`` and put in eval mode.

    With ``robust_mm``, observed keypoints that the network's linear pose model cannot explain (fit residual above
    ``robust_mm``; e.g. the survivors of a left/right swap) are not trusted as input: the holes are filled by a
    second pass without them. They are still returned as observed; the hips are always trusted.

    Args:
        model: a trained :class:`CompletionNet`.
        poses: (N, J, 3) world millimetres, z up, NaN where missing.
        device: torch device to run on.
        batch_size: poses per forward pass.
        robust_mm: residual above which an observed keypoint is ignored as input, one number or (J,) per keypoint
            (None: trust all; needs a model with a linear prior, ``prior_rank > 0``).
        inputs: (N, J, 3) world mm, what the network sees instead of ``poses`` (see :func:`fill_missing`; e.g.
            :func:`build_h3wb.completion.temporal.anchor_displaced_hands`); None: ``poses``.

    Returns:
        filled (N, J, 3) mm, same dtype as ``poses`` (float64 for non-float input), observed keypoints bitwise as
        given; filled_mask (N, J) bool, True where a missing keypoint was filled by the network.
    """
    cfg = model.cfg
    model.to(device).eval()

    robust = robust_mm is not None and cfg.prior_rank > 0
    if robust:
        limit = np.broadcast_to(np.asarray(robust_mm, dtype=np.float32), (skeleton.NUM_KEYPOINTS,))
        limit = torch.from_numpy(limit.copy()).to(device)  # (J,) mm
    hips = [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]

    def predict(x: np.ndarray, visible: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, dtype=np.float32)
        with torch.inference_mode():
            for b in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[b:b + batch_size].astype(np.float32)).to(device)  # (B, J, 3)
                vb = torch.from_numpy(visible[b:b + batch_size]).to(device)  # (B, J)
                if robust:
                    resid = (model.prior_completion(xb, vb) - xb).norm(dim=-1) * cfg.scale_mm  # (B, J) mm
                    bad = vb & (resid > limit)
                    bad[:, hips] = False
                    vb = vb & ~bad
                out[b:b + batch_size] = model(xb * vb[..., None], vb).cpu().numpy()
        return out

    return fill_missing(poses, predict, cfg.scale_mm, cfg.yaw_normalize, inputs)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and devices.


def save_checkpoint(path: str | os.PathLike, model: CompletionNet, cfg: CompletionConfig, extra: dict) -> None:
    """Save weights, configuration (as a plain dict) and ``extra`` (plain types) atomically to ``path``.

    The file is written to a temporary file in the same directory and moved into place with ``os.replace``, so an
    interrupted save never leaves a half-written checkpoint.
    """
    save_weights_only(path, CHECKPOINT_FORMAT, model, cfg.to_dict(), extra, num_keypoints=skeleton.NUM_KEYPOINTS)
    log.info("saved completion checkpoint %s", path)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[CompletionNet, CompletionConfig, dict]:
    """Load a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``).

    Returns:
        The model in eval mode on ``device``, its configuration and the ``extra`` dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a completion checkpoint, or one for another keypoint layout.
    """
    ckpt = load_weights_only(path, CHECKPOINT_FORMAT, "completion", device)
    if ckpt.get("num_keypoints") != skeleton.NUM_KEYPOINTS:
        raise ValueError(f"{path}: key 'num_keypoints' is {ckpt.get('num_keypoints')}, expected "
                         f"{skeleton.NUM_KEYPOINTS}")
    try:
        cfg = CompletionConfig.from_dict(ckpt["config"])
    except ValueError as e:
        raise ValueError(f"{path}: key 'config': {e}") from None
    model = CompletionNet(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: key 'state_dict' does not fit its configuration: {str(e)[:300]}") from None
    return model.to(device).eval(), cfg, ckpt.get("extra", {})


def resolve_device(device: str) -> str:
    """Map "auto" to "cuda" when CUDA is available, else "cpu"; other names are returned as given.

    Raises:
        ValueError: "cuda..." requested but CUDA is not available.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return device
