"""Helpers shared by the stage modules: build directory, source, plain config (progress: ``build_h3wb.progress``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from build_h3wb.progress import progress  # noqa: F401 (the stages' progress helper)
from build_h3wb.sources.base import Source

log = logging.getLogger(__name__)


def frame_chunks(T: int, chunk: int, before: int = 0, after: int = 0) -> Iterator[tuple[slice, slice, slice]]:
    """Cover ``T`` frames in chunks of ``chunk``, each read with ``before`` / ``after`` frames of context.

    Yields:
        ``(read, write, keep)``: the frames to read (the chunk and its context, clipped to the recording), the
        frames of the chunk in the recording, and the same frames as rows of what was read. An empty recording
        gives one empty chunk, so a consumer always has arrays of the right trailing shapes.
    """
    if chunk < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk}")
    if T == 0:
        yield slice(0, 0), slice(0, 0), slice(0, 0)
    for s in range(0, T, chunk):
        e = min(s + chunk, T)
        lo, hi = max(0, s - before), min(T, e + after)
        yield slice(lo, hi), slice(s, e), slice(s - lo, e - lo)


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
