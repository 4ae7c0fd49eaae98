"""One module per pipeline stage; each has a short ``run(cfg)`` that reads artifacts, computes and writes."""

from __future__ import annotations

import importlib
import logging

from omegaconf import DictConfig

from build_h3wb.build import PIPELINE, STAGES

log = logging.getLogger(__name__)


def run_stage(cfg: DictConfig) -> None:
    """Run ``cfg.stage`` (or every stage for ``all``)."""
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}; choose one of {list(STAGES)}")
    names = PIPELINE if cfg.stage == "all" else (cfg.stage,)
    for name in names:
        log.info("=== stage %s ===", name)
        importlib.import_module(f"build_h3wb.stages.{name}").run(cfg)
