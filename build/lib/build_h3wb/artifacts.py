"""The build directory: stable artifact paths, atomic writes, and manifests that mark finished work.

Layout::

    <build.dir>/
      <stage>/manifest.json                 written last: config, its hash, upstream hashes, counts, versions
      <stage>/<subject>/<sequence>.h5       one file per sequence, written atomically (temp file + os.replace)
      <stage>/summary.json                  stage-level counts (also printed)
      logs/<date>/<time>_<stage>/           Hydra's run folder: the log and the resolved config only

Every per-sequence file carries the stage's ``config_hash`` in its attributes. A stage run again skips the
sequences whose file exists with the same hash (an interrupted run resumes), and stops with an error naming the
differing settings when the build directory was made with another configuration (``build.overwrite=true``
replaces it instead).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

log = logging.getLogger(__name__)

ARTIFACT_VERSION = 1


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once (os.umask can only be read by setting it)


class BuildDirError(RuntimeError):
    """The build directory holds artifacts that do not fit the current run."""


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two nested configurations, as ``key: old -> new`` lines."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "<absent>") != b.get(k, "<absent>")]


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; artifacts get the usual permissions
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    """Read a JSON artifact with an error that names the file."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as err:
        raise BuildDirError(f"{path} is corrupt (not valid JSON: {err}); delete it and run the stage again") from err


class StageDir:
    """One stage's folder in the build directory, bound to the configuration of the current run.

    Args:
        build_dir: the build directory.
        stage: stage name.
        config: the settings that determine this stage's output (including upstream hashes).
        overwrite: replace artifacts made with a different configuration instead of raising.
    """

    def __init__(self, build_dir: Path, stage: str, config: Mapping[str, Any], overwrite: bool = False) -> None:
        self.root = Path(build_dir) / stage
        self.stage = stage
        self.config = dict(config)
        self.hash = config_hash(self.config)
        self.overwrite = overwrite

    @property
    def manifest_path(self) -> Path:
        """The stage manifest, written last."""
        return self.root / "manifest.json"

    def sequence_path(self, subject: str, sequence: str) -> Path:
        """Stable path of one sequence's artifact."""
        return self.root / subject / f"{sequence}.h5"

    def check_compatible(self) -> None:
        """Stop if the folder holds output of another configuration (unless overwriting, which clears it)."""
        if not self.root.exists():
            return
        old_config = None
        if self.manifest_path.exists():
            manifest = read_json(self.manifest_path)
            if manifest.get("config_hash") != self.hash:
                old_config = manifest.get("config", {})
        else:
            for f in sorted(self.root.glob("*/*.h5")):
                h = read_attrs(f).get("config_hash")
                if h != self.hash:
                    old_config = json.loads(read_attrs(f).get("config", "{}"))
                    break
        if old_config is None:
            return
        diff = config_diff(old_config, self.config)
        if not self.overwrite:
            raise BuildDirError(
                f"{self.root} holds '{self.stage}' output made with a different configuration:\n  "
                + "\n  ".join(diff or ["(upstream artifacts changed)"])
                + "\nUse another build.dir, or build.overwrite=true to replace it."
            )
        log.warning("build.overwrite=true: replacing %s (%s)", self.root, "; ".join(diff) or "upstream changed")
        for f in self.root.rglob("*"):
            if f.is_file():
                f.unlink()

    def is_done(self, path: Path) -> bool:
        """True when ``path`` exists, is readable and was written with the current configuration."""
        if not path.exists():
            return False
        try:
            return read_attrs(path).get("config_hash") == self.hash
        except BuildDirError as err:
            log.warning("%s; it will be recomputed", err)
            return False

    def unit_attrs(self, unit: Mapping[str, str], **extra: Any) -> dict[str, Any]:
        """Attributes of one sequence's artifact: its identity, the stage config and its hash."""
        return {"subject": unit["subject"], "action": unit["action"], "sequence": unit["sequence"],
                "config_hash": self.hash, "config": self.config, **extra}

    def write_manifest(self, counts: Mapping[str, Any], units: list[str]) -> None:
        """Mark the stage finished: configuration, hash, versions, units and counts."""
        from build_h3wb import __version__

        write_json(
            self.manifest_path,
            {
                "stage": self.stage,
                "config_hash": self.hash,
                "config": self.config,
                "build_h3wb_version": __version__,
                "artifact_version": ARTIFACT_VERSION,
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "units": units,
                "counts": dict(counts),
            },
        )

    def read_manifest(self) -> dict[str, Any]:
        """The finished stage's manifest, or a clear error when the stage has not finished."""
        if not self.manifest_path.exists():
            raise BuildDirError(
                f"stage '{self.stage}' has not finished in {self.root.parent} (no {self.manifest_path.name}); "
                f"run `python -m build_h3wb stage={self.stage} build.dir={self.root.parent}` first"
            )
        return read_json(self.manifest_path)


def finished_manifest(build_dir: Path, stage: str) -> dict[str, Any]:
    """Read the manifest of an upstream stage, with a clear error when it has not finished."""
    path = Path(build_dir) / stage / "manifest.json"
    if not path.exists():
        raise BuildDirError(
            f"stage '{stage}' has not finished in {build_dir} (no {path}); "
            f"run `python -m build_h3wb stage={stage} build.dir={build_dir}` first"
        )
    return read_json(path)


@contextlib.contextmanager
def atomic_h5(path: Path, attrs: Mapping[str, Any]) -> Iterator[h5py.File]:
    """Open a new HDF5 file to fill; it appears at ``path`` only when the block finishes without error."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, default=_json_default)
            yield f


def read_attrs(path: Path) -> dict[str, Any]:
    """Attributes of an HDF5 artifact; a clear error when the file is unreadable."""
    try:
        with h5py.File(path, "r") as f:
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as err:
        raise BuildDirError(f"{path} is unreadable or truncated ({err})") from err


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 artifact for reading, with a clear error naming the file."""
    try:
        return h5py.File(path, "r")
    except (OSError, FileNotFoundError) as err:
        raise BuildDirError(f"{path} is missing, unreadable or truncated ({err})") from err


def require_dataset(f: h5py.File, name: str, shape_tail: tuple[int, ...] | None = None) -> h5py.Dataset:
    """Get a dataset from an artifact, checking its trailing shape; errors name the file, the key and the shapes."""
    if name not in f:
        raise BuildDirError(f"{f.filename}: dataset {name!r} is missing (found {sorted(f.keys())})")
    ds = f[name]
    if shape_tail is not None and tuple(ds.shape[-len(shape_tail):]) != tuple(shape_tail):
        raise BuildDirError(f"{f.filename}: dataset {name!r} has shape {ds.shape}, expected (..., {shape_tail})")
    return ds
