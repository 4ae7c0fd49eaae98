"""stage=triangulate on a synthetic capture seen by a portrait rig from a file (data.rig), with wrong limbs."""

import json

import h5py
import numpy as np
from conftest import run_cli

from build_h3wb import skeleton
from build_h3wb.geometry.cameras import save_rig
from build_h3wb.sources.synthetic import ring_rig


def test_portrait_rig_from_a_file_through_triangulate(tmp_path):
    rig_file = tmp_path / "portrait.json"
    save_rig(ring_rig(), rig_file)
    args = ["data.subjects=[S1]", "data.actions=[Posing]", "data.duration_s=4", f"data.rig={rig_file}",
            "detector.pixel_scale=2.0", "detector.limb_fault_prob=1.0"]
    build = tmp_path / "build"
    run_cli(build, "stage=detect", *args)
    out = run_cli(build, "stage=triangulate", *args)
    with h5py.File(build / "triangulate" / "S1" / "Posing 1.h5") as f:
        X = f["keypoints_3d"][:]
        assert [c.decode() for c in f["cameras"][:]] == ["cam01", "cam02", "cam03", "cam04"]
        thr = f["threshold_px"][:]
        check = f["sequence_check"][:]
        assert f["swapped"].shape == thr.shape == (4, len(X)) and check.shape == X.shape[:2]  # views first
        sync = json.loads(f.attrs["camera_agreement"])
    # the person is about twice as large as in Human3.6M's images: so are the thresholds (3% of ~850 px)
    assert 15.0 < np.median(thr) < 40.0
    assert np.isfinite(X[:, skeleton.REPORT_PARTS["body"], 0]).mean() > 0.95
    assert set(np.unique(check)) <= {0, 1, 2, 3}
    assert set(sync) == {"cam01", "cam02", "cam03", "cam04"} and not any(r["out_of_sync"] for r in sync.values())
    s = json.loads((build / "triangulate" / "summary.json").read_text())
    for key in ("views_with_swaps_fixed", "keypoints_resolved_by_sequence_check",
                "keypoints_dropped_by_sequence_check", "keypoints_recovered_by_sequence_check", "cameras"):
        assert key in s
    assert "median body residual against the other views" in out.stdout + out.stderr
