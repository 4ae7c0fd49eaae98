"""The export stage projects through LazyViews: its files are those of the writers given every view at once."""

import json

import numpy as np
from conftest import assert_same_tree

from build_h3wb.export import (
    H3WB_FILES,
    read_hdf5,
    sequence_views,
    write_flat_npz,
    write_h3wb_json,
    write_hdf5,
    write_official_npz,
)
from build_h3wb.stages.export import read_sequences


def test_stage_files_are_the_all_at_once_files(smoke_build, tmp_path):
    """The smoke build's export (streamed) against the writers given the list of every sequence's views."""
    manifest = json.loads((smoke_build / "export" / "manifest.json").read_text())
    cfg = manifest["config"]
    units = json.loads((smoke_build / "filter" / "manifest.json").read_text())["units"]
    sequences = read_sequences(smoke_build, units, cfg["poses"])
    views = sequence_views(sequences, cfg["bbox_margin"])
    split = cfg["split"]
    write_h3wb_json(tmp_path / "json", sequences, split, rgb_test_seed=cfg["rgb_test_seed"],
                    decimals=cfg["decimals"] if cfg["decimals"] >= 0 else None, i2d_mask_seed=cfg["i2d_mask_seed"],
                    views=views)
    write_hdf5(tmp_path / "h3wb.h5", sequences, split, bbox_margin=cfg["bbox_margin"], views=views)
    write_flat_npz(tmp_path / "h3wb_flat.npz", sequences, views=views)
    write_official_npz(tmp_path / "h3wb_videopose3d.npz", sequences, split, views=views)
    built = smoke_build / "export"
    for name in H3WB_FILES:
        assert (built / "json" / name).read_bytes() == (tmp_path / "json" / name).read_bytes(), name
    a, b = read_hdf5(built / "h3wb.h5"), read_hdf5(tmp_path / "h3wb.h5")
    assert sorted(a) == sorted(b)
    for key in a:
        if key not in ("attrs", "cameras"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (built / "h3wb_flat.npz").read_bytes() == (tmp_path / "h3wb_flat.npz").read_bytes()
    with (np.load(built / "h3wb_videopose3d.npz", allow_pickle=True) as x,
          np.load(tmp_path / "h3wb_videopose3d.npz", allow_pickle=True) as y):
        assert x.files == y.files
        for key in x.files:
            assert_same_tree(x[key].item(), y[key].item(), key)
