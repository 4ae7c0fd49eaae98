"""Helpers shared by the stage modules: build directory, source and progress bars."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from build_h3wb.sources.base import Source

log = logging.getLogger(__name__)


def build_dir(cfg: DictConfig) -> Path:
    """The build directory (absolute)."""
    return Path(cfg.build.dir).expanduser().resolve()


def make_source(cfg: DictConfig) -> Source:
    """Instantiate the configured source."""
    return instantiate(cfg.data, _convert_="all")


def progress(iterable, **kwargs) -> tqdm:
    """A tqdm progress bar on stderr (quiet when stderr is not a terminal, unless forced by the caller)."""
    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def plain(cfg: DictConfig) -> dict:
    """A config node as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)
