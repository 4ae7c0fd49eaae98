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
import errno
import hashlib
import io
import json
import logging
import os
import re
import socket
import tempfile
import time
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


_HOST = socket.gethostname().replace(".", "_")
#: Temporary files of :func:`atomic_path` are ``.<name>.<host>-<pid>.<random><suffix>``, so a sweep can tell whose.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9]+)+$")
#: Temporary files of another machine (a cluster job on a shared disk) are swept once they are this old.
FOREIGN_TEMP_AGE_S = 24 * 3600.0


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on error it is removed.

    The one atomic writer of the project: JSON, HDF5, checkpoints, images and videos all go through it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; artifacts get the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildDirError(f"no space left on the device writing {path} ({err.strerror}); nothing was "
                                "replaced: free some space and run the stage again (it resumes)") from err
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(folder: Path) -> int:
    """Remove the temporary files that writers killed mid-write left under ``folder``; returns how many.

    A temp file of this machine is removed when its writer's process is gone; one of another machine (a cluster
    job writing to a shared disk) when it is older than :data:`FOREIGN_TEMP_AGE_S`. Live writers are left alone,
    so shards running side by side are safe.
    """
    if not Path(folder).is_dir():
        return 0
    removed = 0
    now = time.time()
    for f in Path(folder).rglob(".*"):
        m = _TEMP_RE.match(f.name)
        if m is None or not f.is_file():
            continue
        if m["host"] == _HOST:
            dead = int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))
        else:
            dead = now - f.stat().st_mtime > FOREIGN_TEMP_AGE_S
        if dead:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


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
        config: the settings that determine this stage's output.
        overwrite: replace artifacts made with a different configuration instead of raising.
        upstream: the config hash of every stage this one reads, by stage name; it joins the configuration (so a
            changed input changes this stage's hash) and the manifest (so readers can check the chain).
    """

    def __init__(self, build_dir: Path, stage: str, config: Mapping[str, Any], overwrite: bool = False,
                 upstream: Mapping[str, str] | None = None) -> None:
        self.root = Path(build_dir) / stage
        self.stage = stage
        self.upstream = dict(upstream or {})
        self.config = {**config, "upstream": self.upstream} if upstream is not None else dict(config)
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
        """True when ``path`` exists, is readable, was written with the current configuration and is whole.

        Whole: every dataset the writer recorded (attribute ``datasets``, see :func:`atomic_h5`) is still there.
        """
        if not path.exists():
            return False
        try:
            with open_h5(path) as f:
                attrs = dict(f.attrs)
                if attrs.get("config_hash") != self.hash:
                    return False
                missing = sorted(set(json.loads(attrs.get("datasets", "[]"))) - set(f.keys()))
        except BuildDirError as err:
            log.warning("%s; it will be recomputed", err)
            return False
        if missing:
            log.warning("%s lacks dataset(s) %s; it will be recomputed", path, ", ".join(missing))
        return not missing

    def up_to_date(self, units: list[Mapping[str, str]]) -> bool:
        """True when the stage finished with this configuration and every unit's artifact is still whole.

        A stage that finds itself up to date keeps its manifest (and its counts) instead of rewriting it.
        """
        if not self.manifest_path.exists():
            return False
        manifest = read_json(self.manifest_path)
        if manifest.get("config_hash") != self.hash or manifest.get("units") != list(units):
            return False
        return all(self.is_done(self.sequence_path(u["subject"], u["sequence"])) for u in units)

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
                "upstream": self.upstream,
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


class StaleInputError(BuildDirError):
    """A stage's output was built on an upstream output that has since been rebuilt differently."""


def finished_manifest(build_dir: Path, stage: str, _below: str | None = None) -> dict[str, Any]:
    """Read a finished stage's manifest and check its upstream hash chain, all the way up.

    Every manifest records the config hash of each stage it read (``upstream``). If an upstream stage has been
    rebuilt since (its manifest's hash differs), ``stage`` is stale and so is everything built on it.

    Raises:
        BuildDirError: the stage has not finished (names the command that runs it).
        StaleInputError: the stage, or one above it, was built on other upstream output (names the stale stage
            and the command that rebuilds it).
    """
    build_dir = Path(build_dir)
    path = build_dir / stage / "manifest.json"
    if not path.exists():
        needed = f" (needed by '{_below}')" if _below else ""
        raise BuildDirError(
            f"stage '{stage}' has not finished in {build_dir}{needed} (no {path}); "
            f"run `build-h3wb stage={stage} build.dir={build_dir}` first"
        )
    manifest = read_json(path)
    for up, recorded in (manifest.get("upstream") or {}).items():
        current = finished_manifest(build_dir, up, _below=stage)
        if current.get("config_hash") != recorded:
            raise StaleInputError(
                f"stage '{stage}' in {build_dir} is stale: it was built on '{up}' output {recorded}, but '{up}' has "
                f"since been rebuilt ({current.get('config_hash')}). Rebuild it and what follows: "
                f"`build-h3wb stage={stage} build.dir={build_dir} build.overwrite=true` (then the stages after it), "
                f"or `build-h3wb stage=all build.dir={build_dir} build.overwrite=true`"
            )
    return manifest


@contextlib.contextmanager
def atomic_h5(path: Path, attrs: Mapping[str, Any]) -> Iterator[h5py.File]:
    """Open a new HDF5 file to fill; it appears at ``path`` only when the block finishes without error.

    The file is built in memory and written out in one piece, so a failing disk (full, gone) surfaces as a plain
    ``OSError`` from the write, not inside the HDF5 library (whose failed close leaves it in a state that crashes
    the interpreter on exit). Per-sequence artifacts are a few tens of MB at most.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, default=_json_default)
        yield f
        f.attrs["datasets"] = json.dumps(sorted(f.keys()))  # what a whole file holds (see StageDir.is_done)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def read_attrs(path: Path) -> dict[str, Any]:
    """Attributes of an HDF5 artifact; a clear error when the file is unreadable."""
    try:
        with h5py.File(path, "r") as f:
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as err:
        raise BuildDirError(f"{path} is unreadable or truncated ({err})") from err


class ArtifactFile(h5py.File):
    """An HDF5 artifact opened for reading: a missing dataset is an error naming the file and what it holds."""

    def __getitem__(self, name: Any) -> Any:
        try:
            return super().__getitem__(name)
        except KeyError:
            if isinstance(name, str) and name not in self:
                raise BuildDirError(
                    f"{self.filename}: dataset {name!r} is missing (found {sorted(self.keys())}); the file is "
                    "damaged or from another version: delete it and run its stage again"
                ) from None
            raise


def open_h5(path: Path) -> ArtifactFile:
    """Open an HDF5 artifact for reading, with clear errors naming the file (also for a missing dataset)."""
    try:
        return ArtifactFile(path, "r")
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
