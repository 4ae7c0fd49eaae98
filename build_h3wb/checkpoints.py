"""Weights-only model checkpoints: plain types and tensors, written atomically, loaded with ``weights_only=True``.

Every network of the project (completion, 2D corrector) is saved as one dict ``{"format", "config" (plain dict),
"state_dict", "extra", ...}``, so loading never unpickles code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import torch

from build_h3wb.artifacts import atomic_path

_Config = TypeVar("_Config")


def check_plain(value: object, where: str) -> None:
    """Raise TypeError unless value is made of plain types that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict keys must be str or int, got {type(k).__name__}")
            check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where}: {type(value).__name__} cannot go into a weights-only checkpoint; use plain types")


def config_from_dict(cls: type[_Config], d: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> _Config:
    """A network's configuration dataclass ``cls`` from the plain dict a checkpoint stores.

    Args:
        cls: the dataclass.
        d: field name -> value; a key that is not a field raises ValueError naming it.
        defaults: values of the fields ``d`` lacks (none: every field ``cls`` requires must be in ``d``).
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; expected a subset of {sorted(known)}")
    return cls(**{**(defaults or {}), **d})


def save_weights_only(path: str | os.PathLike, fmt: str, model: torch.nn.Module, config: dict,
                      extra: Mapping | None = None, **fields: Any) -> None:
    """Write ``{"format": fmt, **fields, "config", "state_dict" (CPU tensors), "extra"}`` atomically to ``path``.

    Raises:
        TypeError: ``extra`` (or a field) holds something other than plain types and tensors.
    """
    extra = dict(extra or {})
    check_plain(extra, "extra")
    check_plain(fields, "fields")
    payload = {"format": fmt, **fields, "config": config,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extra": extra}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def load_weights_only(path: str | os.PathLike, fmt: str, what: str, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_weights_only` and check its format.

    Args:
        path: the file.
        fmt: the expected ``format`` value.
        what: what the checkpoint holds, for the error message (e.g. ``"completion"``).
        device: where the tensors are mapped.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file cannot be read as a checkpoint (damaged, truncated, not a torch file, or holding
            more than plain types), or is not a ``fmt`` checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for a damaged or foreign file
        raise ValueError(f"{path}: not a readable {what} checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: expected key 'format' = {fmt!r}, found {found!r}")
    return ckpt
