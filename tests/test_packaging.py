"""The package as users install it: a wheel built from the checkout carries the configuration and runs a build."""

import os
import shutil
import subprocess
import sys

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(REPO), include=["build_h3wb*"]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"build_h3wb.conf"}


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """The project's wheel installed (without dependencies) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build's own build/ and egg-info never land in the checkout
    top = {".git", "outputs", "multirun", "build", "dist"}  # only at the top: conf/build/ is configuration

    def ignore(folder, names):
        here = {n for n in names if Path(folder) == REPO and (n in top or n.startswith(".venv"))}
        return here | {n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")}

    shutil.copytree(REPO, src, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("build_h3wb-*.whl")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_wheel_carries_the_configuration(wheel_site):
    conf = wheel_site / "build_h3wb" / "conf"
    shipped = sorted(p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml"))
    in_repo = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert shipped == in_repo and "config.yaml" in shipped
    assert (wheel_site / "bin" / "build-h3wb").is_file()


@pytest.mark.slow
def test_installed_wheel_builds_outside_the_checkout(wheel_site, tmp_path):
    where = _run(wheel_site, tmp_path, "-c", "import build_h3wb; print(build_h3wb.__file__)")
    assert where.stdout.strip().startswith(str(wheel_site)), where.stdout + where.stderr
    out = _run(wheel_site, tmp_path, "-m", "build_h3wb", "stage=all", "experiment=smoke", "build.dir=out")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Dataset:" in out.stdout + out.stderr
    assert (tmp_path / "out" / "export" / "manifest.json").is_file()
    cmd = _run(wheel_site, tmp_path, str(wheel_site / "bin" / "build-h3wb"), "stage=detect", "--cfg", "job")
    assert cmd.returncode == 0 and "stage: detect" in cmd.stdout, cmd.stdout + cmd.stderr
