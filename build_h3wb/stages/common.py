"""Helpers shared by the stage modules: build directory, source, plain config (progress: ``build_h3wb.progress``)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from build_h3wb.progress import progress  # noqa: F401 (the stages' progress helper)
from build_h3wb.sources.base import Source

log = logging.getLogger(__name__)


def build_dir(cfg: DictConfig) -> Path:
    """The build directory (absolute), as :class:`build_h3wb.build.Build` resolves it."""
    from build_h3wb.build import Build

    return Build.from_config(cfg).root


def make_source(cfg: DictConfig) -> Source:
    """Instantiate the configured source."""
    return instantiate(cfg.data, _convert_="all")


def plain(cfg: DictConfig) -> dict:
    """A config node as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)
