"""Time per training step of the completion network: the previous and the current code and defaults, in one run.

A step is one batch of 256 poses through the network's forward pass (linear prior + MLP), backward pass and AdamW
update, with the masks of a training epoch. Three settings, alternated over ``--rounds`` rounds (medians), so a
busy machine slows them alike:

- before: width 512, the linear prior's normal equations as a (B, r, D) @ (D, r) product and ``linalg.solve``,
  AdamW's per-tensor loop (the code before this version; the formulation is reproduced here for the comparison);
- width 512 now: per-keypoint outer products and a Cholesky solve, fused AdamW;
- width 256 (the default until issue 11's last change) and width 128 (the default now).

The training time of a build follows as ms/step x steps/epoch x epochs (120, then 80; 40 now).

    python benchmarks/bench_completion_step.py [--rounds 5] [--steps 15] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from types import MethodType

import numpy as np
import torch

from build_h3wb.completion.config import CompletionConfig
from build_h3wb.completion.model import CompletionNet
from build_h3wb.completion.train import _loss, draw_masks, normalize_poses
from build_h3wb.synthetic.motion import ACTIONS, generate_motion


def previous_prior_completion(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The former formulation: B_o^T B_o as (B, r, D) @ (D, r), then a general solve (same result)."""
    basis = self.prior_basis  # (D, r)
    w = visible.repeat_interleave(3, dim=1).to(basis.dtype)  # (B, D)
    y = (x.flatten(1).to(basis.dtype) - self.prior_mean) * w
    a = (basis.T[None] * w[:, None, :]) @ basis + torch.diag(self.prior_ridge)  # (B, r, r)
    c = torch.linalg.solve(a, (y @ basis)[..., None])[..., 0]
    return (self.prior_mean + c @ basis.T).to(x.dtype).view(x.shape)


def setting(name: str, width: int, previous: bool, norm: np.ndarray):
    cfg = CompletionConfig.from_conf(width=width)
    torch.manual_seed(0)
    model = CompletionNet(cfg)
    model.fit_prior(norm)
    if previous:
        model.prior_completion = MethodType(previous_prior_completion, model)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return {"name": name, "cfg": cfg, "model": model, "opt": opt, "ms": []}


def time_steps(s: dict, x: torch.Tensor, visible: torch.Tensor, steps: int, batch: int) -> float:
    model, opt = s["model"], s["opt"]
    model.train()
    t = time.perf_counter()
    for b in range(steps):
        xb, vb = x[b * batch:(b + 1) * batch], visible[b * batch:(b + 1) * batch]
        hid, vis = _loss(model(xb, vb), xb, vb)
        loss = hid + 0.1 * vis
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return 1000 * (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15, help="steps per timing (15 = one epoch of the default build)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = 256
    t = np.arange(0.0, 20.0, 0.1)
    poses = np.concatenate([generate_motion(s, a, t) for s in ("S1", "S5") for a in ACTIONS])  # (6000, J, 3)
    norm = normalize_poses(poses)[0]
    n = args.steps * batch
    x = torch.from_numpy(norm[:n].astype(np.float32))
    settings = [setting("before: width 512, batched r x D prior, AdamW", 512, True, norm),
                setting("now: width 512", 512, False, norm),
                setting("now: width 256", 256, False, norm),
                setting("now: width 128 (default)", 128, False, norm)]
    rng = np.random.default_rng(0)
    for s in settings:  # warm-up
        time_steps(s, x, torch.from_numpy(~draw_masks(n, rng, s["cfg"], None)), 2, batch)
    for _ in range(args.rounds):
        visible = torch.from_numpy(~draw_masks(n, rng, CompletionConfig.from_conf(), None))
        for s in settings:
            s["ms"].append(time_steps(s, x, visible, args.steps, batch))
    before = statistics.median(settings[0]["ms"])
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {batch}, medians of {args.rounds} rounds of {args.steps} steps\n")
    print("| setting | parameters | ms / step | vs before | 15 steps x epochs (s) |")
    print("|---|---|---|---|---|")
    for s, epochs in zip(settings, (120, 120, 80, 40), strict=True):
        ms = statistics.median(s["ms"])
        params = sum(p.numel() for p in s["model"].parameters())
        print(f"| {s['name']} | {params:,} | {ms:.1f} | {before / ms:.2f}x | {ms * 15 * epochs / 1000:.0f} "
              f"({epochs} epochs) |")


if __name__ == "__main__":
    main()
