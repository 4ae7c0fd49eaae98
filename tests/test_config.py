"""Every config group option composes, and typos fail at composition."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from build_h3wb.config import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# options with mandatory values (detectors load their models on first use, so they build offline)
REQUIRED = {
    "data/rig": ["data.root=/capture", "data.calibration=/capture/calibration.toml"],
    "detector/files": ["detector.root=/detections"],
    "data/detections": ["detector=files", "detector.root=/detections", "data.calibration=/detections/calib.toml"],
}


PLUGIN_GROUPS = [p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("experiment", "__pycache__")]


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_changes_something(experiment):
    base, cfg = _compose(), _compose(f"experiment={experiment}")
    assert OmegaConf.to_container(cfg) != OmegaConf.to_container(base)


@pytest.mark.parametrize("group", PLUGIN_GROUPS)
def test_every_option_composes_and_instantiates(group):
    for option in sorted((CONF / group).glob("*.yaml")):
        cfg = _compose(f"{group}={option.stem}", *REQUIRED.get(f"{group}/{option.stem}", []))
        assert OmegaConf.select(cfg, group) is not None
        obj = instantiate(cfg[group], _convert_="all")
        assert hasattr(obj, "describe") and isinstance(obj.describe(), dict)


def test_defaults_are_the_synthetic_capture():
    cfg = _compose()
    assert cfg.stage == "all" and cfg.build.dir == "outputs/default"
    assert cfg.data._target_.endswith("SyntheticSource") and cfg.detector._target_.endswith("SimulatedDetector")
    assert list(cfg.data.subjects) == ["S1", "S5", "S6", "S7", "S8"]


@pytest.mark.parametrize(
    "override", ["triangulate.min_scor=0.1", "data.subject=[S1]", "detector.noize=1", "bild.dir=x"]
)
def test_typos_fail_when_composing(override):
    with pytest.raises(ConfigCompositionException):
        _compose(override)


def test_wrong_types_fail_when_composing():
    with pytest.raises(ConfigCompositionException):
        _compose("triangulate.robust=maybe")
    with pytest.raises(ConfigCompositionException):
        _compose("data.duration_s=long")
