"""The completion stage's training data: read per sequence, drawn as one concatenation would be, capped."""

import json

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import open_h5
from build_h3wb.stages.complete import _training_poses


def concatenated_draw(root, units, max_poses, val_share, seed):
    """The reference: every sequence's poses concatenated in memory, then the same random draw."""
    poses, holes = [], []
    for u in units:
        with open_h5(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5") as f:
            kp = f["keypoints_3d"][:]
        missing = np.isnan(kp).any(-1)
        poses.append(kp[~missing.any(1)])
        holes.append(missing[missing.any(1) & ~missing[:, [skeleton.LEFT_HIP, skeleton.RIGHT_HIP]].any(1)])
    allp, bank = np.concatenate(poses), np.concatenate(holes)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(allp))[:max_poses]
    n_val = int(round(val_share * len(idx)))
    bank = bank[rng.permutation(len(bank))[:max_poses]]
    return allp[idx[n_val:]].astype(np.float64), allp[idx[:n_val]].astype(np.float64), bank


def test_training_poses_are_the_concatenated_draw_and_honour_the_cap(smoke_build):
    units = json.loads((smoke_build / "triangulate" / "manifest.json").read_text())["units"]
    n_complete = None
    for cap in (10**6, 40):
        got = _training_poses(smoke_build, units, cap, 0.1, 3)
        want = concatenated_draw(smoke_build, units, cap, 0.1, 3)
        for g, w, name in zip(got, want, ("train", "val", "bank")):
            assert g.dtype == w.dtype and g.shape == w.shape, (cap, name)
            np.testing.assert_array_equal(g, w, err_msg=f"cap {cap}: {name}")
        train, val, bank = got
        assert np.isfinite(train).all() and np.isfinite(val).all()
        if n_complete is None:  # no cap: every complete pose of the build
            n_complete = len(train) + len(val)
            assert n_complete > 40 and len(bank) > 40
        else:
            assert len(train) + len(val) == 40 and len(val) == 4 and len(bank) == 40
            assert bank.any(1).all()  # hole patterns only
