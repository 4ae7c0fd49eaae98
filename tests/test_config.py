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


PLUGIN_GROUPS = ["data", "detector"]  # options that build a component (`_target_`)
STAGE_GROUPS = [p.name for p in CONF.iterdir() if p.is_dir() and p.name not in (*PLUGIN_GROUPS, "experiment",
                                                                                 "__pycache__")]


@pytest.mark.parametrize("group", STAGE_GROUPS)
def test_every_stage_option_composes_with_every_value_set(group):
    options = sorted((CONF / group).glob("*.yaml"))
    assert "default.yaml" in [o.name for o in options]
    for option in options:
        cfg = _compose(f"{group}={option.stem}")
        assert OmegaConf.missing_keys(cfg[group]) == set(), f"{option} leaves values unset"


def test_the_values_live_in_yaml_not_in_the_schema():
    from dataclasses import MISSING as NO_DEFAULT
    from dataclasses import fields, is_dataclass

    import build_h3wb.config as schema

    for name in dir(schema):
        cls = getattr(schema, name)
        if not (isinstance(cls, type) and is_dataclass(cls) and cls.__module__ == schema.__name__) or name == "Config":
            continue
        for f in fields(cls):
            nested = f.default_factory is not NO_DEFAULT and is_dataclass(f.default_factory)
            assert nested or f.default == "???", f"{name}.{f.name} has a value in Python; put it in conf/"


def test_the_completion_network_takes_its_values_from_yaml_only():
    from dataclasses import MISSING as NO_DEFAULT
    from dataclasses import fields

    from build_h3wb.completion.config import CompletionConfig
    from build_h3wb.completion.prior import SyntheticPriorData

    for cls in (CompletionConfig, SyntheticPriorData):
        for f in fields(cls):
            assert f.default is NO_DEFAULT and f.default_factory is NO_DEFAULT, f"{cls.__name__}.{f.name} has a value"
    assert OmegaConf.to_object(_compose().complete.model) == CompletionConfig.from_conf()
    changed = OmegaConf.to_object(_compose("complete.model.width=32", "complete.model.lr=1").complete.model)
    assert changed == CompletionConfig.from_conf(width=32, lr=1.0) and changed.lr == 1.0
    with pytest.raises(ValueError, match="unknown CompletionConfig keys"):
        CompletionConfig.from_conf(depth=3)


@pytest.mark.parametrize("group", PLUGIN_GROUPS)
def test_plugin_defaults_in_python_equal_the_yaml_values(group):
    """A constructor default kept for Python callers must not drift from the option file's value."""
    import inspect

    from hydra.utils import get_class

    for option in sorted((CONF / group).glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(option), resolve=False)
        signature = inspect.signature(get_class(values["_target_"]).__init__)
        for name, p in signature.parameters.items():
            written = values.get(name)
            if p.default is inspect.Parameter.empty or written is None or "${" in str(written):
                continue
            default = list(p.default) if isinstance(p.default, tuple) else p.default
            assert default == written, f"{option.name}: {name} is {written!r}, its Python default {p.default!r}"


def test_lifter_defaults_in_python_equal_the_yaml_values():
    """The lifter's dataclass keeps defaults for Python callers; those the stage also sets must equal its YAML."""
    import dataclasses

    from build_h3wb.leaderboard.lifter import LifterConfig

    written = OmegaConf.to_container(OmegaConf.load(CONF / "lifter" / "default.yaml"))
    shared = [f.name for f in dataclasses.fields(LifterConfig) if f.name in written]
    assert {"epochs", "width", "batch_size", "lr_decay", "num_blocks", "dropout", "lr", "weight_decay"} <= set(shared)
    for name in shared:
        assert getattr(LifterConfig(), name) == written[name], name


def test_triangulate_plain_is_the_baseline():
    cfg = _compose("triangulate=plain")
    assert cfg.triangulate.robust is False and cfg.triangulate.min_score == _compose().triangulate.min_score


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
