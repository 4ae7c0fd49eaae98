"""Typed Hydra configuration: one dataclass schema per config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` extend these schemas (``defaults: [<name>_schema]``), so a misspelled key or a
value of the wrong type fails when the configuration is composed, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

STAGES = ("detect", "triangulate", "evaluate", "all")


@dataclass
class BuildConfig:
    """Where artifacts go.

    Attributes:
        dir: build directory (relative paths are taken from the directory the command was started in).
        overwrite: replace artifacts made with a different configuration instead of stopping with an error.
    """

    dir: str = "outputs/default"
    overwrite: bool = False


@dataclass
class SyntheticDataConfig:
    """The synthetic Human3.6M-like capture (see ``build_h3wb.sources.synthetic``)."""

    _target_: str = "build_h3wb.sources.synthetic.SyntheticSource"
    subjects: list[str] = field(default_factory=lambda: ["S1", "S5", "S6", "S7", "S8"])
    actions: list[str] = field(
        default_factory=lambda: [
            "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
            "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
        ]
    )  # fmt: skip
    repeats: int = 1  # sub-actions per action ("Walking 1", "Walking 2", ...)
    duration_s: float = 20.0  # length of every sequence
    video_fps: float = 50.0  # frame rate of the simulated video (Human3.6M: 50)
    stride: int = 5  # keep every stride-th video frame (H3WB: 5, a 10 fps grid)
    seed: int = 0


@dataclass
class SimulatedDetectorConfig:
    """The simulated whole-body detector (see ``build_h3wb.detectors.simulated``); pixels at Human3.6M's 1000 px.

    The defaults are tuned so the default capture triangulates like H3WB's build on Human3.6M with OpenPifPaf: of
    the poses whose every keypoint was seen in at least one view, about 30% are complete after triangulation, and
    hands and face are what is missing most (see README). Per-part settings are dictionaries over the parts
    ``body, feet, face, left_hand, right_hand``.
    """

    _target_: str = "build_h3wb.detectors.simulated.SimulatedDetector"
    seed: int = 0
    noise_px: dict[str, float] = field(
        default_factory=lambda: {"body": 2.0, "feet": 3.5, "face": 1.5, "left_hand": 3.0, "right_hand": 3.0}
    )  # median pixel noise (per axis) of a clearly seen keypoint
    noise_spread_part: float = 0.4  # log-normal spread of the noise level shared by a part in one view and frame
    noise_spread: float = 0.25  # log-normal spread of the noise level of single keypoints
    score_scale_px: float = 10.0  # score = base_score * exp(-noise level / score_scale_px) + N(0, 0.03)
    base_score: float = 0.9
    miss_prob: dict[str, float] = field(
        default_factory=lambda: {"body": 0.005, "feet": 0.01, "face": 0.001, "left_hand": 0.004, "right_hand": 0.004}
    )  # single keypoints not found in one view
    part_miss_prob: dict[str, float] = field(
        default_factory=lambda: {"face": 0.04, "left_hand": 0.03, "right_hand": 0.03}
    )  # the whole part not found in one view
    occluded_report_prob: dict[str, float] = field(
        default_factory=lambda: {"body": 0.97, "feet": 0.95, "face": 0.6, "left_hand": 0.85, "right_hand": 0.85}
    )  # an occluded keypoint is still reported (a guess) with this probability, else missing
    occluded_score_factor: float = 0.55  # a guess scores this fraction of what the keypoint would score if seen
    occluded_noise_factor: float = 2.0  # guesses are this much noisier (plus 3 px)
    face_min_cos: float = -0.6  # a head landmark is lost once its outward normal turns this far from the camera
    face_part_min_cos: float = -0.45  # the face is found at all while it faces the camera at least this much
    torso_radius_mm: float = 150.0  # capsules around torso, head and limbs hide what is behind them
    limb_radius_mm: float = 45.0
    head_radius_mm: float = 95.0
    outlier_prob: dict[str, float] = field(
        default_factory=lambda: {"body": 0.01, "feet": 0.01, "face": 0.001, "left_hand": 0.002, "right_hand": 0.002}
    )  # single keypoints grossly off (50-300 px) with a confident score
    part_outlier_prob: dict[str, float] = field(
        default_factory=lambda: {"face": 0.01, "left_hand": 0.03, "right_hand": 0.03}
    )  # a whole part found at the wrong place in one view (shifted 50-300 px), still confident
    swap_prob: float = 0.01  # left/right swap of the whole body in one view
    hand_swap_prob: float = 0.02  # left/right swap of the two hands in one view
    edge_margin_px: float = 2.0  # keypoints this close to the image border are lost (out of frame)


@dataclass
class DetectConfig:
    """Detection stage settings."""

    batch_size: int = 64  # frames per detector call
    chunk_frames: int = 250  # frames held in memory at once per sequence


@dataclass
class TriangulateConfig:
    """Triangulation settings (see ``build_h3wb.triangulation.triangulate``)."""

    min_score: float = 0.3
    opposing_angle_deg: float = 140.0
    robust: bool = True
    outlier_threshold_px: float = 15.0
    undistort_iterations: int = 5
    chunk_frames: int = 250  # frames triangulated at once (memory stays flat with sequence length)


@dataclass
class EvaluateConfig:
    """Evaluation settings.

    Attributes:
        stage: which stage's 3D output to score; ``latest`` picks the last stage that has run.
    """

    stage: str = "latest"


@dataclass
class Config:
    """The whole configuration. ``stage`` picks what runs: one stage name or ``all``."""

    stage: str = "all"
    build: BuildConfig = field(default_factory=BuildConfig)
    data: Any = MISSING
    detector: Any = MISSING
    detect: DetectConfig = field(default_factory=DetectConfig)
    triangulate: TriangulateConfig = field(default_factory=TriangulateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="data", name="synthetic_schema", node=SyntheticDataConfig)
    cs.store(group="detector", name="simulated_schema", node=SimulatedDetectorConfig)
