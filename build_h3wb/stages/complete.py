"""Stage ``complete``: train the completion network on the complete triangulated poses and fill the holes.

Which network fills the holes (``complete.init``; recorded in the log, ``complete/model.json`` and the manifest's
``network``): by default one trained from scratch on the build's complete triangulated poses ("build");
with ``complete.init=prior`` a build-independent prior fine-tuned on them ("prior fine-tuned on the build"); and,
whatever ``init`` says, the prior as it is when the build has fewer than ``complete.min_train_poses`` complete poses
("prior"; e.g. a detector that never finds the face). The prior is ``complete.checkpoint`` when given (then always
the starting point: fine-tuned where there are enough complete poses, whatever ``init`` says), else the
network trained on the synthetic generator's ground-truth poses of ``complete.prior`` (its own subjects and seed;
cached, see ``build_h3wb.completion.prior``).

Reads ``triangulate/`` and writes:
- ``complete/model.pt`` (state dict + config, loadable with ``weights_only=True``) and ``complete/model.json``
  (config, training history, data sizes); a finished checkpoint is reused while the configuration is unchanged
  (both ``model.json`` and the hash stored in the checkpoint must match);
- ``complete/<subject>/<sequence>.h5``: ``keypoints_3d`` (T, J, 3) float32 world mm, every triangulated keypoint
  kept as it was and the missing ones filled (NaN only where the pose has no root to normalise around; a hand with
  holes whose wrist jumps away from the neighbouring frames' is filled from the body and their wrist, not from its
  own observed keypoints: ``complete.anchor_jump_mm``, ``build_h3wb.completion.temporal``);
  ``filled`` (T, J) bool, what the network filled; ``frames``;
- ``complete/evaluation.json`` (synthetic capture): error of the filled keypoints against ground truth by part,
  beside the nearest-pose and low-rank baselines on the same poses.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_h5, open_h5, read_json, write_json
from build_h3wb.build import Build
from build_h3wb.completion.config import ARCHITECTURE_FIELDS, CompletionConfig
from build_h3wb.memory import release_freed_memory
from build_h3wb.sources.base import Recording
from build_h3wb.stages.common import make_source, plain, progress

log = logging.getLogger(__name__)

#: ``complete.init``: train on the build from scratch, or fine-tune the build-independent prior.
INIT_MODES = ("scratch", "prior")


def run(cfg: DictConfig) -> dict:
    """Train (or reuse) the network and complete every triangulated sequence."""
    from build_h3wb.completion.temporal import anchor_displaced_hands
    from build_h3wb.completion.train import complete_poses, resolve_device, save_checkpoint, train_completion

    build = Build.from_config(cfg)
    root = build.root
    inputs = build.inputs("complete")
    tri = inputs["triangulate"]
    ccfg = cfg.complete
    model_cfg: CompletionConfig = OmegaConf.to_object(ccfg.model)
    if ccfg.init not in INIT_MODES:
        raise ValueError(f"complete.init: expected one of {INIT_MODES}, got {ccfg.init!r}")
    # what determines the output: every setting but the device, the baseline comparison and where the prior is cached
    stage_config = {k: v for k, v in plain(ccfg).items() if k not in ("device", "baseline_eval_poses")}
    stage_config["prior"].pop("cache_dir")
    stage_config["checkpoint"] = _file_identity(ccfg.checkpoint)
    robust_mm = _per_keypoint(stage_config["robust_fill_mm"])
    sd = build.stage_dir("complete", stage_config, inputs)
    if sd.up_to_date(tri["units"]):
        log.info("complete: up to date in %s", sd.root)
        return sd.read_manifest()["counts"]
    device = resolve_device(ccfg.device)
    ckpt = sd.root / "model.pt"
    info_path = sd.root / "model.json"
    reused = _reusable_checkpoint(ckpt, info_path, sd.hash, device)
    if reused is not None:
        model, info = reused
        log.info("complete: reusing the finished checkpoint %s (network: %s)", ckpt, info.get("network"))
    else:
        train, val, bank = _training_poses(root, tri["units"], ccfg.max_train_poses, ccfg.val_share, ccfg.seed)
        n_complete = len(train) + len(val)
        enough = n_complete >= ccfg.min_train_poses
        info = {"config_hash": sd.hash, "config": stage_config, "device": device, "complete_poses": n_complete,
                "train_poses": len(train) if enough else 0, "val_poses": len(val) if enough else 0}
        init = None
        if not enough or ccfg.init == "prior" or ccfg.checkpoint:  # a given checkpoint is always the start
            init, info["prior"] = _prior(ccfg, model_cfg, device)
            if not enough:
                log.warning("complete: only %d complete triangulated poses (complete.min_train_poses=%d): filling "
                            "with the prior as it is (%s)", n_complete, ccfg.min_train_poses,
                            info["prior"]["what"])
        if enough:
            train_cfg = model_cfg if init is None else _fine_tune_config(init.cfg, model_cfg)
            log.info("complete: %s on %d complete poses (%d held out) on %s",
                     "training" if init is None else "fine-tuning the prior", len(train), len(val), device)
            model, info["history"] = train_completion(train, train_cfg, device=device, seed=ccfg.seed,
                                                      val_poses=val if len(val) else None,
                                                      progress=sys.stderr.isatty(), mask_bank=bank, init=init)
            save_cfg = train_cfg
        else:
            model, save_cfg = init.to(device), init.cfg
        info["network"] = "build" if init is None else ("prior fine-tuned on the build" if enough else "prior")
        save_checkpoint(ckpt, model, save_cfg, {"config_hash": sd.hash, "network": info["network"]})
        write_json(info_path, info)
    log.info("complete: network: %s", _describe(info))
    release_freed_memory()  # what the training freed

    filled_total = {p: 0 for p in skeleton.REPORT_PARTS}
    computed = displaced_total = 0
    for u in progress(tri["units"], desc="complete", unit="seq"):
        out = sd.sequence_path(u["subject"], u["sequence"])
        if sd.is_done(out):
            continue
        with open_h5(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") as f:
            kp = f["keypoints_3d"][:].astype(np.float64)
            frames = f["frames"][:]
        inputs, displaced = anchor_displaced_hands(kp, frames, ccfg.anchor_jump_mm, ccfg.anchor_window)
        done, filled = complete_poses(model, kp, device=device, robust_mm=robust_mm, inputs=inputs)
        displaced_total += int(displaced.sum())
        with atomic_h5(out, sd.unit_attrs(u)) as g:
            g.create_dataset("keypoints_3d", data=done.astype(np.float32))
            g.create_dataset("filled", data=filled)
            g.create_dataset("frames", data=frames)
        computed += 1
        for p, sl in skeleton.REPORT_PARTS.items():
            filled_total[p] += int(filled[:, sl].sum())
        release_freed_memory()  # the heap does not keep every recording's temporaries (build_h3wb.memory)
    counts = {"computed": computed, "sequences": len(tri["units"]), "train_poses": info["train_poses"],
              "device": device, "network": info["network"], "complete_poses": info.get("complete_poses")}
    if "prior" in info:
        counts["prior"] = info["prior"]
    if computed:
        counts["filled_keypoints"] = filled_total
        counts["displaced_hands"] = displaced_total
        log.info("complete: %d hands with holes taken as found at the wrong place (wrist more than %g mm from its "
                 "neighbouring frames'): filled from the body and the neighbours' wrist", displaced_total,
                 ccfg.anchor_jump_mm)
    if ccfg.baseline_eval_poses > 0:
        evaluation = evaluate_filling(root, tri["units"], cfg, ccfg.baseline_eval_poses, ccfg.seed)
        if evaluation:
            write_json(sd.root / "evaluation.json", evaluation)
            log.info("complete: error of the filled keypoints vs ground truth (mm, mean):\n%s",
                     format_filling_table(evaluation))
    sd.write_manifest(counts, units=tri["units"])
    return counts


def _file_identity(path: str) -> dict | None:
    """A checkpoint file named by the configuration, by path and content (sha256), so editing it recomputes."""
    if not path:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"complete.checkpoint: no file at {p}")
    return {"path": str(p.resolve()), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def _reusable_checkpoint(ckpt: Path, info_path: Path, stage_hash: str, device: str):
    """(model, info) of a finished checkpoint of this configuration, or None when there is none to reuse.

    Both the training record and the hash stored inside the checkpoint must match ``stage_hash``; a checkpoint file
    that cannot be read raises ValueError naming it.
    """
    from build_h3wb.completion.train import load_checkpoint

    if not (ckpt.exists() and info_path.exists()) or read_json(info_path).get("config_hash") != stage_hash:
        return None
    model, _, extra = load_checkpoint(ckpt, device)
    if extra.get("config_hash") != stage_hash:
        log.warning("complete: %s holds config hash %s, not this configuration's %s (%s says it does): training "
                    "again", ckpt, extra.get("config_hash"), stage_hash, info_path.name)
        return None
    return model, read_json(info_path)


def _prior(ccfg: DictConfig, model_cfg: CompletionConfig, device: str):
    """The build-independent network: ``complete.checkpoint`` when given, else the (cached) synthetic prior."""
    from build_h3wb.completion.prior import SyntheticPriorData, synthetic_prior
    from build_h3wb.completion.train import load_checkpoint

    if ccfg.checkpoint:
        path = Path(ccfg.checkpoint).expanduser()
        model, _, _ = load_checkpoint(path, device)
        return model, {"what": f"checkpoint {path}", "path": str(path)}
    p = ccfg.prior
    data = SyntheticPriorData(subjects=tuple(p.subjects), actions=tuple(p.actions), seed=p.seed,
                              duration_s=p.duration_s, fps=p.fps)
    model, info = synthetic_prior(data, model_cfg, p.cache_dir, seed=ccfg.seed, device=device,
                                  progress=sys.stderr.isatty())
    info.pop("history", None)
    what = (f"synthetic prior trained on {info['poses']} ground-truth poses of {', '.join(data.subjects)} "
            f"(seed {data.seed}), {'cached' if info['cached'] else 'trained now'}: {info['path']}")
    return model, info | {"what": what}


def _fine_tune_config(prior: CompletionConfig, wanted: CompletionConfig) -> CompletionConfig:
    """The prior's architecture with the training settings of ``complete.model``."""
    return replace(prior, **{f.name: getattr(wanted, f.name) for f in fields(CompletionConfig)
                             if f.name not in ARCHITECTURE_FIELDS})


def _describe(info: dict) -> str:
    """One line: which network fills the holes, and on what it was trained."""
    if info["network"] == "build":
        return f"trained on the build's {info['train_poses']} complete poses"
    if info["network"] == "prior":
        return f"{info['prior']['what']} (the build has {info['complete_poses']} complete poses)"
    return f"{info['prior']['what']}, fine-tuned on the build's {info['train_poses']} complete poses"


def _per_keypoint(per_part: dict) -> np.ndarray | None:
    """Per-part thresholds -> (J,) per keypoint (inf where a part has none); None for an empty mapping."""
    if not per_part:
        return None
    names = ("body", "feet", "face", "left_hand", "right_hand")  # the order of skeleton.part_ids()
    unknown = set(per_part) - set(names)
    if unknown:
        raise ValueError(f"complete.robust_fill_mm: unknown part(s) {sorted(unknown)}; parts are {names}")
    return np.array([float(per_part.get(n, np.inf)) for n in names])[skeleton.part_ids()]


def _training_poses(root, units, max_poses: int, val_share: float, seed: int) -> tuple[np.ndarray, ...]:
    """Training data from the triangulated poses, read per sequence: memory bounded by ``max_poses``, not the build.

    Two passes over ``triangulate/``: the first counts each sequence's complete poses and hole patterns, the random
    draw is made on those counts, the second copies only the drawn rows into place. The draw is the one a single
    concatenation of every sequence would give (same seed, same order), so a build smaller than the cap trains on
    exactly the poses it always did.

    Returns:
        The complete poses (at most ``max_poses``, drawn at random) split into train (N, J, 3) and validation
        (M, J, 3), world mm, and the hole patterns of the incomplete ones (at most ``max_poses``; (K, J) bool,
        True = missing) that teach the network what is really missing.
    """
    paths = [root / "triangulate" / u["subject"] / f"{u['sequence']}.h5" for u in units]

    def rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
        """A sequence's (T, J, 3) float32 world mm poses and their (T, J) missing keypoints."""
        with open_h5(path) as f:
            kp = f["keypoints_3d"][:]
        missing = np.isnan(kp).any(-1)  # (T, J)
        return kp, missing

    counts = []
    for path in paths:  # pass 1: how many complete poses and hole patterns each sequence has
        _, missing = rows(path)
        counts.append((int((~missing.any(1)).sum()), int(_hole_rows(missing).sum())))
    n_poses, n_holes = sum(c[0] for c in counts), sum(c[1] for c in counts)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n_poses)[:max_poses]
    n_val = int(round(val_share * len(idx)))
    bank_idx = rng.permutation(n_holes)[:max_poses]
    slot = np.full(n_poses, -1, dtype=np.int64)  # global complete pose -> its row in the draw, -1 not drawn
    slot[idx] = np.arange(len(idx))
    bank_slot = np.full(n_holes, -1, dtype=np.int64)
    bank_slot[bank_idx] = np.arange(len(bank_idx))
    J = skeleton.NUM_KEYPOINTS
    drawn = np.empty((len(idx), J, 3), dtype=np.float32)  # (n, J, 3) world mm, in draw order
    bank = np.empty((len(bank_idx), J), dtype=bool)  # (k, J) True = missing
    at_pose = at_hole = 0
    for path, (n_p, n_h) in zip(paths, counts):  # pass 2: copy the drawn rows into place
        if not (slot[at_pose : at_pose + n_p] >= 0).any() and not (bank_slot[at_hole : at_hole + n_h] >= 0).any():
            at_pose, at_hole = at_pose + n_p, at_hole + n_h
            continue
        kp, missing = rows(path)
        for src, dst, where in ((kp[~missing.any(1)], drawn, slot[at_pose : at_pose + n_p]),
                                (missing[_hole_rows(missing)], bank, bank_slot[at_hole : at_hole + n_h])):
            mine = where >= 0
            dst[where[mine]] = src[mine]
        at_pose, at_hole = at_pose + n_p, at_hole + n_h
    return drawn[n_val:].astype(np.float64), drawn[:n_val].astype(np.float64), bank


def _hole_rows(missing: np.ndarray) -> np.ndarray:
    """(T, J) missing -> (T,) bool: incomplete poses with both hips, whose hole patterns feed the mask bank."""
    return missing.any(1) & ~missing[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]].any(1)


def evaluate_filling(root, units, cfg: DictConfig, max_poses: int, seed: int) -> dict | None:
    """Error of the filled keypoints against ground truth by part, for the network and the two baselines.

    The network is scored on every incomplete pose (streamed per sequence); the baselines, with at most
    ``complete.max_train_poses`` complete poses to draw from, on a random subset of at most ``max_poses`` incomplete
    poses (the nearest-pose search is quadratic), and the network again on the same subset. Memory stays bounded
    by those two sizes, whatever the size of the build.
    """
    from build_h3wb.completion.baselines import lowrank_completion, nearest_pose_completion

    source = make_source(cfg)
    paths = [(u, root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") for u in units]
    counts = []  # pass 1: how many incomplete (and complete) poses each sequence has
    for _, path in paths:
        with open_h5(path) as f:
            kp = f["keypoints_3d"][:]
        complete = np.isfinite(kp).all((1, 2))
        counts.append((int((~complete & _has_root(kp)).sum()), int(complete.sum())))
    n_inc, n_comp = sum(c[0] for c in counts), sum(c[1] for c in counts)
    rng = np.random.default_rng(seed)
    sub = rng.permutation(n_inc)[:max_poses]
    take = np.zeros(n_inc, bool)
    take[sub] = True
    keep_train = np.zeros(n_comp, bool)
    keep_train[rng.permutation(n_comp)[: cfg.complete.max_train_poses]] = True
    train, picked, all_err = [], {}, _ErrorSums()
    i_inc = i_comp = 0
    for (u, path), (ni, nc) in zip(paths, counts):  # pass 2: stream, keep only the subset
        with open_h5(path) as f:
            kp = f["keypoints_3d"][:].astype(np.float64)
            frames = f["frames"][:]
        with open_h5(root / "complete" / u["subject"] / f"{u['sequence']}.h5") as f:
            net = f["keypoints_3d"][:].astype(np.float64)
        complete = np.isfinite(kp).all((1, 2))
        train.append(kp[complete][keep_train[i_comp : i_comp + nc]])
        i_comp += nc
        sel = np.flatnonzero(~complete & _has_root(kp))
        if not len(sel):
            continue
        gt = source.ground_truth(Recording(u["subject"], u["action"], u["sequence"]), frames[sel])
        if gt is None:
            return None
        hole = np.isnan(kp[sel]).any(-1)
        all_err.add(net[sel], gt, hole)
        mine = take[i_inc : i_inc + ni]
        for k, row in zip(np.flatnonzero(mine) + i_inc, np.flatnonzero(mine)):
            picked[int(k)] = (kp[sel[row]].copy(), net[sel[row]].copy(), gt[row].copy())  # not views of the sequence
        i_inc += ni
        release_freed_memory()
    out = {"incomplete_poses": n_inc, "filled_keypoints": all_err.keypoints, "network_all": all_err.means()}
    train_p = np.concatenate(train)
    if not len(sub) or len(train_p) < 2:
        log.info("complete: %d complete poses, %d incomplete: no baseline comparison", len(train_p), len(sub))
        return out
    tri_p, net_p, gt_p = (np.stack([picked[int(k)][j] for k in sub]) for j in range(3))
    hole = np.isnan(tri_p).any(-1)  # (n, J)
    t = time.perf_counter()
    nn_fill = nearest_pose_completion(train_p, tri_p)
    t_nn = time.perf_counter() - t
    t = time.perf_counter()
    lr_fill = lowrank_completion(train_p, tri_p)
    t_lr = time.perf_counter() - t
    out["subset_poses"] = len(sub)
    out["network"] = _errors(net_p, gt_p, hole)
    out["nearest_pose"] = _errors(nn_fill, gt_p, hole) | {"seconds": round(t_nn, 2)}
    out["low_rank"] = _errors(lr_fill, gt_p, hole) | {"seconds": round(t_lr, 2)}
    return out


def _has_root(kp: np.ndarray) -> np.ndarray:
    """(T, J, 3) -> (T,) bool: both hips present."""
    return np.isfinite(kp[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]]).all((1, 2))


class _ErrorSums:
    """Streaming mean error of hole keypoints by part."""

    def __init__(self) -> None:
        self.sum = dict.fromkeys(skeleton.REPORT_PARTS, 0.0)
        self.n = dict.fromkeys(skeleton.REPORT_PARTS, 0)
        self.keypoints = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> None:
        err = np.linalg.norm(pred - gt, axis=-1)
        self.keypoints += int(hole.sum())
        for p, sl in skeleton.REPORT_PARTS.items():
            e = err[:, sl][hole[:, sl]]
            e = e[np.isfinite(e)]
            self.sum[p] += float(e.sum())
            self.n[p] += e.size

    def means(self) -> dict:
        return {p: round(self.sum[p] / self.n[p], 2) if self.n[p] else None for p in self.sum}


def _errors(pred: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> dict:
    """Mean world error (mm) of the hole keypoints, by part."""
    err = np.linalg.norm(pred - gt, axis=-1)
    res = {}
    for p, sl in skeleton.REPORT_PARTS.items():
        e = err[:, sl][hole[:, sl]]
        e = e[np.isfinite(e)]
        res[p] = round(float(e.mean()), 2) if e.size else None
    return res


def format_filling_table(ev: dict) -> str:
    """Markdown table of :func:`evaluate_filling`."""
    parts = list(skeleton.REPORT_PARTS)
    if "network" not in ev:
        return "network on all incomplete poses: " + ", ".join(f"{p} {ev['network_all'][p]}" for p in parts)
    lines = ["| method | " + " | ".join(parts) + " |", "|---" * (len(parts) + 1) + "|"]
    for m in ("network", "nearest_pose", "low_rank"):
        lines.append(f"| {m} | " + " | ".join(str(ev[m][p]) for p in parts) + " |")
    lines.append(f"(on {ev['subset_poses']} of {ev['incomplete_poses']} incomplete poses; network on all: "
                 + ", ".join(f"{p} {ev['network_all'][p]}" for p in parts) + ")")
    return "\n".join(lines)
