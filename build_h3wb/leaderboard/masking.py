"""The I2D-to-3D input masks of H3WB (ICCV 2023), drawn from a seed and stored once.

Rule from the official README: each sample gets one mode; with probability 0.4 every keypoint is masked
independently with probability 0.25 (``random``), with 0.2 the whole face is masked (``face``), with 0.2 the whole
left hand (``left_hand``), with 0.2 the whole right hand (``right_hand``). Generate the masks of a test split once
(:func:`i2d_masks`), store them (:func:`save_masks`) and give every method the same stored masks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path

#: The masking modes, in the order of :data:`MODE_PROBS` and of the codes :func:`i2d_mask_modes` returns.
MODES: tuple[str, ...] = ("random", "face", "left_hand", "right_hand")
MODE_PROBS: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)
#: Per-keypoint masking probability in the ``random`` mode.
RANDOM_KEYPOINT_PROB = 0.25

MASKS_FORMAT = "build_h3wb.i2d_masks/1"


def _draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int mode codes into :data:`MODES` and (n, J) bool masks, from one seeded generator."""
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    modes = rng.choice(len(MODES), size=n, p=MODE_PROBS)  # (n,)
    masks = rng.random((n, skeleton.NUM_KEYPOINTS)) < RANDOM_KEYPOINT_PROB  # (n, J)
    masks[modes != 0] = False
    for code, part in enumerate(MODES[1:], start=1):
        rows = modes == code
        masks[rows, skeleton.PARTS[part]] = True
    return modes, masks


def i2d_masks(n: int, seed: int) -> np.ndarray:
    """Draw the I2D masks of ``n`` samples (the H3WB README's rule, see the module docstring).

    Args:
        n: number of samples.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same masks.

    Returns:
        (n, J) bool, True = keypoint masked (hidden from the method), J = ``skeleton.NUM_KEYPOINTS``.
    """
    return _draw(n, seed)[1]


def i2d_mask_modes(n: int, seed: int) -> np.ndarray:
    """The mode of each sample drawn by :func:`i2d_masks` with the same ``n`` and ``seed``.

    Returns:
        (n,) int64 codes into :data:`MODES` (0 random, 1 face, 2 left hand, 3 right hand).
    """
    return _draw(n, seed)[0].astype(np.int64)


def save_masks(path: str | os.PathLike, masks: np.ndarray, seed: int) -> None:
    """Store masks in a small compressed npz (atomic write; no pickled objects).

    Args:
        path: destination ``.npz``.
        masks: (n, J) bool, True = masked, row i for the i-th sample of the split file in ascending id order.
        seed: the seed they were drawn with (stored for provenance).
    """
    masks = np.asarray(masks)
    J = skeleton.NUM_KEYPOINTS
    if masks.ndim != 2 or masks.shape[1] != J or masks.dtype != np.bool_:
        raise ValueError(f"masks must be a bool array of shape (n, {J}), got {masks.dtype} {masks.shape}")
    meta = {"format": MASKS_FORMAT, "seed": int(seed), "num_samples": int(masks.shape[0]), "num_keypoints": J,
            "modes": list(MODES), "mode_probs": list(MODE_PROBS), "random_keypoint_prob": RANDOM_KEYPOINT_PROB}
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, masks=np.packbits(masks, axis=1), metadata=np.array([json.dumps(meta)]))


def load_masks(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read masks written by :func:`save_masks`.

    Returns:
        ``(masks, seed)``: (n, J) bool (True = masked) and the seed they were drawn with.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        for key in ("masks", "metadata"):
            if key not in z.files:
                raise ValueError(f"{path}: key {key!r} is missing (found {sorted(z.files)}); not an I2D mask file")
        meta = json.loads(str(z["metadata"][0]))
        packed = z["masks"]
    if meta.get("format") != MASKS_FORMAT:
        raise ValueError(f"{path}: format is {meta.get('format')!r}, expected {MASKS_FORMAT!r}")
    J = meta["num_keypoints"]
    if J != skeleton.NUM_KEYPOINTS:
        raise ValueError(f"{path}: masks are for {J} keypoints, expected {skeleton.NUM_KEYPOINTS}")
    masks = np.unpackbits(packed, axis=1, count=J).astype(bool)  # (n, J)
    if masks.shape[0] != meta["num_samples"]:
        raise ValueError(f"{path}: holds {masks.shape[0]} rows, metadata says {meta['num_samples']}")
    return masks, int(meta["seed"])
