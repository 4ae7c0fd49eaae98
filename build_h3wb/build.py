"""The build graph: which stage reads which, in one table, and the object that opens a build's artifacts.

Every stage declares its inputs in :data:`INPUTS`. ``poses`` there stands for the pose stage that feeds ``filter``
and ``export``, an explicit setting (``build.poses``: ``refine`` by default, or ``complete`` / ``triangulate``),
never decided by testing which files exist. A stage opens its inputs through :meth:`Build.inputs`, which reads
each input's manifest and checks the recorded upstream hash chain all the way up (see
:func:`build_h3wb.artifacts.finished_manifest`): an input built on an older upstream output stops the run with an
error naming the stale stage and the command that rebuilds it. A stage records its own inputs' hashes in its
configuration (``upstream``), so changing anything upstream changes its hash too.

``Build.stage_dir`` also sweeps the temporary files that writers killed mid-write left in the stage's folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, StageDir, finished_manifest, sweep_temp_files
from build_h3wb.geometry.cameras import Rig, rig_from_dict

log = logging.getLogger(__name__)

#: Stages that make the dataset, in the order ``stage=all`` runs them.
PIPELINE = ("detect", "triangulate", "complete", "refine", "filter", "export", "evaluate")
#: Stages whose output is a 3D pose per frame, in pipeline order (``build.poses`` picks one, ``evaluate`` scores all).
POSE_STAGES = ("triangulate", "complete", "refine")
#: Stages run on a finished build (not part of ``all``).
EXTRA_STAGES = ("benchmark", "pictures", "lifter")
#: Every stage name ``stage=`` accepts.
STAGES = (*PIPELINE, *EXTRA_STAGES, "all")

#: What each stage reads. ``poses`` is the pose stage chosen by ``build.poses``. ``evaluate`` and ``pictures``
#: also read, when they have finished, the other pose stages and ``filter`` (each checked the same way).
INPUTS: dict[str, tuple[str, ...]] = {
    "detect": (),
    "triangulate": ("detect",),
    "complete": ("triangulate",),
    "refine": ("complete",),
    "filter": ("poses",),
    "export": ("filter",),
    "evaluate": (),
    "benchmark": ("export",),
    "lifter": ("export",),
    "pictures": ("detect",),
}


@dataclass(frozen=True)
class Build:
    """One build directory and the graph between its stages.

    Attributes:
        root: the build directory (absolute).
        poses: the pose stage that feeds ``filter`` and ``export`` (one of :data:`POSE_STAGES`).
        overwrite: replace a stage's artifacts made with another configuration instead of stopping.
    """

    root: Path
    poses: str = "refine"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.poses not in POSE_STAGES:
            raise ValueError(f"build.poses={self.poses!r}; choose one of {list(POSE_STAGES)}")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Build:
        """The build of a composed configuration (``cfg.build``)."""
        return cls(Path(cfg.build.dir).expanduser().resolve(), cfg.build.poses, cfg.build.overwrite)

    def resolve(self, name: str) -> str:
        """A stage name of :data:`INPUTS`, with ``poses`` replaced by the configured pose stage."""
        return self.poses if name == "poses" else name

    def manifest(self, stage: str) -> dict[str, Any]:
        """A finished stage's manifest, its upstream chain checked; errors name the stage and how to rebuild it."""
        return finished_manifest(self.root, stage)

    def finished(self, stage: str) -> bool:
        """True when ``stage`` has written its manifest (it may still be stale: :meth:`manifest` checks that)."""
        return (self.root / stage / "manifest.json").is_file()

    def inputs(self, stage: str) -> dict[str, dict[str, Any]]:
        """The manifests of everything ``stage`` reads (see :data:`INPUTS`), checked; keyed by real stage name."""
        return {self.resolve(n): self.manifest(self.resolve(n)) for n in INPUTS[stage]}

    def stage_dir(self, stage: str, settings: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Any]],
                  folder: str | None = None) -> StageDir:
        """The stage's folder bound to its settings plus its inputs' hashes; stale temp files swept, config checked.

        Args:
            stage: the stage name.
            settings: the settings that determine the stage's output.
            inputs: the manifests it read (from :meth:`inputs`); their hashes join its configuration.
            folder: the folder under the build directory (default: the stage's name; a filter sweep job's own).
        """
        sd = StageDir(self.root, folder or stage, settings, overwrite=self.overwrite,
                      upstream={name: m["config_hash"] for name, m in inputs.items()})
        swept = sweep_temp_files(sd.root)
        if swept:
            log.info("%s: removed %d temporary file(s) left by interrupted writers", stage, swept)
        sd.check_compatible()
        return sd

    def sequence_path(self, stage: str, unit: Mapping[str, str]) -> Path:
        """Where ``stage`` keeps one sequence's artifact (``<stage>/<subject>/<sequence>.h5``)."""
        return self.root / stage / unit["subject"] / f"{unit['sequence']}.h5"


def source_fps(detect_manifest: Mapping[str, Any]) -> float:
    """The capture's frame rate as the detect manifest records its source (0.0 when the source does not know it).

    Sources with videos record ``video_fps``; detections without videos (``data=detections``) record ``data.fps``
    as ``fps``. No rate is assumed: stages that need one (triangulate's jump check and smoothing, filter's jump test)
    turn that part off and say so.
    """
    src = detect_manifest.get("config", {}).get("source", {})
    return float(src.get("video_fps") or src.get("fps") or 0.0)


def read_rig(attrs: Mapping[str, Any], path: str | Path) -> Rig:
    """The rig stored in a detection artifact's ``rig`` attribute (JSON); errors name the file."""
    if "rig" not in attrs:
        raise BuildDirError(f"{path}: attribute 'rig' is missing (found {sorted(attrs)})")
    return rig_from_dict(json.loads(attrs["rig"]), source=f"{path} (attribute 'rig')")
