"""The refine stage on a triangulate artifact of an older layout: a clear error naming the file, nothing written."""

import shutil

import h5py
import pytest

from build_h3wb.artifacts import BuildDirError
from tests.conftest import run_stage


def test_refine_names_a_triangulate_file_of_the_old_views_last_layout(smoke_build, tmp_path):
    root = tmp_path / "build"
    shutil.copytree(smoke_build, root)
    shutil.rmtree(root / "refine")
    path = sorted((root / "triangulate").glob("*/*.h5"))[0]
    with h5py.File(path, "r+") as f:  # what the views-last layout (before layout 2) stored: (T, C)
        swapped = f["swapped"][:]
        del f["swapped"]
        f["swapped"] = swapped.T
    with pytest.raises(BuildDirError, match=r"dataset 'swapped' has shape .*stage=triangulate") as err:
        run_stage(root, "stage=refine", "experiment=smoke", "refine.workers=1")
    assert str(path) in str(err.value)
    assert not (root / "refine" / "manifest.json").exists()
