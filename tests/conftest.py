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
