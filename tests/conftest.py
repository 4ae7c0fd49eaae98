import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from build_h3wb.geometry.cameras import h36m_rig


@pytest.fixture(scope="session")
def rig():
    return h36m_rig("S1")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def points_in_volume(rig, n, rng):
    """(n, 3) random world points in the rig's capture volume, 0-1.9 m high."""
    (cx, cy), (hx, hy) = rig.capture_volume["center_xy"], rig.capture_volume["half_extent_xy"]
    return np.stack([rng.uniform(cx - hx, cx + hx, n), rng.uniform(cy - hy, cy + hy, n), rng.uniform(0, 1900, n)], 1)


REPO = Path(__file__).resolve().parents[1]


def run_cli(build_dir, *args, check=True, multirun=False):
    """Run ``python -m build_h3wb`` in a subprocess on ``build_dir``; fail with its output unless ``check=False``."""
    cmd = [sys.executable, "-m", "build_h3wb", *(["-m"] if multirun else []), f"build.dir={build_dir}", *args]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{out.stdout}\n{out.stderr}")
    return out


def assert_same_tree(a, b, where="/"):
    """Nested dicts of arrays equal: keys in the same order, arrays of the same dtype, shape and values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}{key}/")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b) and a == b, where


CONF = REPO / "conf"


def compose_config(build_dir, *overrides):
    """The composed configuration of ``build-h3wb build.dir=BUILD_DIR OVERRIDES`` (no subprocess, no Hydra run dir)."""
    from hydra import compose, initialize_config_dir

    from build_h3wb.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"build.dir={build_dir}", *overrides])


def run_stage(build_dir, *overrides):
    """Run a stage in this process (as ``build-h3wb`` would) and return what it returns."""
    from build_h3wb.stages import run_stage as _run

    return _run(compose_config(build_dir, *overrides))


def train_small_lifter(path):
    """Train a small I2D lifter on the synthetic capture's poses as the Human3.6M cameras see them; save it at path."""
    from build_h3wb.leaderboard.lifter import LifterConfig, save_lifter, train_lifter
    from build_h3wb.sources.synthetic import SyntheticSource

    src = SyntheticSource(subjects=["S1"], actions=["Walking", "Posing"], duration_s=4)
    kp2d, kp3d = [], []
    for seq in src.sequences():
        world = src.ground_truth(seq, src.frames(seq))  # (T, J, 3) world mm
        for cam in src.rig(seq):
            kp2d.append(cam.project(world, distort_points=False))
            kp3d.append(cam.world_to_camera(world))
    cfg = LifterConfig(width=64, num_blocks=1, epochs=2, batch_size=64, i2d=True)
    model, stats, history = train_lifter(np.concatenate(kp2d), np.concatenate(kp3d), cfg, progress=False)
    save_lifter(path, model, cfg, stats, history)
    return path


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """One finished small build (``stage=all experiment=smoke``), shared by the tests; copy it before changing it."""
    d = tmp_path_factory.mktemp("smoke") / "build"
    run_stage(d, "stage=all", "experiment=smoke")
    return d


def pytest_sessionstart(session):
    """With ``BUILD_H3WB_ALL_DETECTORS=1`` (``make test``, CI) the compiled detectors must be importable.

    Their tests ``importorskip`` them, so a geometry change can be tested without them; CI must not skip them.
    """
    import importlib.util
    import os

    if os.environ.get("BUILD_H3WB_ALL_DETECTORS") == "1":
        missing = [m for m in ("openpifpaf", "mediapipe") if importlib.util.find_spec(m) is None]
        if missing:
            raise pytest.UsageError(f"BUILD_H3WB_ALL_DETECTORS=1 but {missing} cannot be imported: run make setup")
