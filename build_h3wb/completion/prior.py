"""A completion prior that does not depend on the build: the network trained on synthetic ground-truth poses.

A build whose detector never finds some part (a subject wearing a cap: no face) has no complete triangulated pose
to train the completion network on. The synthetic motion generator (:mod:`build_h3wb.synthetic.motion`) gives
complete whole-body poses by construction; the network trained on them fills such builds, and can be fine-tuned
on a build's own complete poses where there are enough.

The trained prior is cached as a completion checkpoint (``<cache_dir>/synthetic_<key>.pt``) keyed on everything
that determines it: a hash of the generated training poses, the network configuration, the training seed, the
recipe version and the package version. A cached file is checked against its key before use.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from build_h3wb import __version__, skeleton
from build_h3wb.artifacts import config_hash
from build_h3wb.completion.config import CompletionConfig
from build_h3wb.synthetic.motion import ACTIONS, generate_motion

log = logging.getLogger(__name__)

#: Bump when the recipe below changes what the prior learns from the same poses and configuration.
PRIOR_RECIPE = 1
_VAL_SHARE = 0.1  # poses held out to score each epoch (and to stop on, with ``patience``)


@dataclass(frozen=True)
class SyntheticPriorData:
    """Which synthetic poses train the prior (``complete.prior``; see ``build_h3wb.config.CompletionPriorConfig``).

    Attributes:
        subjects: synthetic subject names.
        actions: actions of ``build_h3wb.synthetic.motion.ACTIONS``; empty: all of them.
        seed: motion and body seed.
        duration_s: seconds per (subject, action).
        fps: poses per second.
    """

    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    seed: int
    duration_s: float
    fps: float

    def poses(self) -> np.ndarray:
        """(N, J, 3) complete world poses, mm, z up: every subject x action, ``fps`` poses per second."""
        if not self.subjects or self.duration_s <= 0 or self.fps <= 0:
            raise ValueError(f"complete.prior: need subjects and positive duration_s and fps, got {self}")
        t = np.arange(0.0, self.duration_s, 1.0 / self.fps)  # (T,) s
        actions = self.actions or ACTIONS
        return np.concatenate([generate_motion(s, a, t, seed=1000 * self.seed) for s in self.subjects
                               for a in actions])


def prior_key(poses: np.ndarray, cfg: CompletionConfig, seed: int) -> str:
    """Cache key of a prior trained on ``poses`` (N, J, 3) with ``cfg`` and ``seed``."""
    digest = hashlib.sha256(np.ascontiguousarray(poses, dtype=np.float64).tobytes()).hexdigest()
    return config_hash({"poses_sha256": digest, "model": cfg.to_dict(), "seed": int(seed), "recipe": PRIOR_RECIPE,
                        "build_h3wb": __version__, "num_keypoints": skeleton.NUM_KEYPOINTS})


def synthetic_prior(
    data: SyntheticPriorData,
    cfg: CompletionConfig,
    cache_dir: str | os.PathLike,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
):
    """The completion network trained on synthetic ground-truth poses, from the cache or trained and cached.

    Args:
        data: the synthetic poses to train on.
        cfg: the network configuration and training settings.
        cache_dir: cache folder (created; ``~`` expanded).
        seed: training seed.
        device: torch device.
        progress: show the training progress bar.

    Returns:
        (model in eval mode on ``device``, info dict: ``path``, ``key``, ``cached`` bool, ``poses``, ``data`` and,
        when trained now, ``history``).

    Raises:
        ValueError: a cached file under the key's name that is not a prior of that key (the file is named).
    """
    from build_h3wb.completion.train import load_checkpoint, save_checkpoint, train_completion

    poses = data.poses()
    key = prior_key(poses, cfg, seed)
    path = Path(cache_dir).expanduser() / f"synthetic_{key}.pt"
    described = {"subjects": list(data.subjects), "actions": list(data.actions or ACTIONS), "seed": data.seed,
                 "duration_s": data.duration_s, "fps": data.fps}
    info = {"path": str(path), "key": key, "poses": len(poses), "data": described}
    if path.exists():
        model, _, extra = load_checkpoint(path, device)
        if extra.get("prior_key") != key:
            raise ValueError(f"{path}: key 'extra.prior_key' is {extra.get('prior_key')!r}, expected {key!r} (a "
                             "damaged or foreign file in the prior cache; delete it to retrain)")
        log.info("complete: synthetic completion prior from the cache %s", path)
        return model, info | {"cached": True}
    rng = np.random.default_rng([seed, 7])
    idx = rng.permutation(len(poses))
    n_val = int(round(_VAL_SHARE * len(poses)))
    log.info("complete: training the synthetic completion prior on %d ground-truth poses (%s, seed %d); cached as %s",
             len(poses) - n_val, ", ".join(data.subjects), data.seed, path)
    model, history = train_completion(poses[idx[n_val:]], cfg, device=device, seed=seed, progress=progress,
                                      val_poses=poses[idx[:n_val]] if n_val else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, cfg, {"prior_key": key, "data": described})
    return model, info | {"cached": False, "history": history}
