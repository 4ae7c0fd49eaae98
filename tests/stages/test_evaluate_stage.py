"""The evaluate stage scores all stages in one pass: same numbers as scoring each on its own, ground truth made once."""

import json
import shutil

import h5py
import numpy as np

from build_h3wb.artifacts import finished_manifest
from build_h3wb.evaluation import ErrorStats
from build_h3wb.sources.base import Recording
from build_h3wb.stages.common import make_source
from build_h3wb.stages.evaluate import evaluate_stages
from tests.conftest import compose_config


class CountingSource:
    """A real source whose ground-truth calls are counted (frames asked for, per sequence)."""

    def __init__(self, source) -> None:
        self.source = source
        self.frames_asked: dict[str, int] = {}

    def ground_truth(self, seq, frames):
        self.frames_asked[seq.key] = self.frames_asked.get(seq.key, 0) + len(frames)
        return self.source.ground_truth(seq, frames)


def _direct(root, stage, source, selected_only=False):
    """A stage's error table computed the plain way: every sequence at once, the selection applied by hand."""
    stats = ErrorStats()
    for u in finished_manifest(root, stage)["units"]:
        with h5py.File(root / stage / u["subject"] / f"{u['sequence']}.h5", "r") as f:
            frames, pred = f["frames"][:], f["keypoints_3d"][:].astype(np.float64)
        if selected_only:
            with h5py.File(root / "filter" / u["subject"] / f"{u['sequence']}.h5", "r") as f:
                keep = f["selected"][:]
            frames, pred = frames[keep], pred[keep]
        if len(frames):
            stats.add(pred, source.ground_truth(Recording(u["subject"], u["action"], u["sequence"]), frames))
    return stats.table()


def test_one_pass_scores_like_each_stage_alone_and_makes_the_ground_truth_once(smoke_build, tmp_path):
    root = tmp_path / "build"
    shutil.copytree(smoke_build, root)
    cfg = compose_config(root, "experiment=smoke")
    source = CountingSource(make_source(cfg))
    stages = ["triangulate", "complete", "refine"]
    results = evaluate_stages(root, stages, source, selected_stage="refine")
    assert list(results) == [*stages, "dataset"]
    plain = make_source(cfg)
    for name, stage, sel in [(s, s, False) for s in stages] + [("dataset", "refine", True)]:
        want = _direct(root, stage, plain, sel)
        for variant in ("absolute", "root_relative"):
            for part in ("whole", "body", "face", "hands"):
                got, exp = results[name][variant][part], want[variant][part]
                assert got["n"] == exp["n"], (name, variant, part)
                assert np.isclose(got["mean_mm"], exp["mean_mm"], rtol=1e-9, atol=1e-9), (name, variant, part)
        assert json.loads((root / "evaluate" / f"{name}.json").read_text())["poses"] == results[name]["poses"]
    selected = sum(int(h5py.File(root / "filter" / u["subject"] / f"{u['sequence']}.h5", "r")["selected"][:].sum())
                   for u in finished_manifest(root, "filter")["units"])
    assert results["dataset"]["poses"] == selected < results["refine"]["poses"]
    # the ground truth of every frame was made once, not once per stage
    for u in finished_manifest(root, "triangulate")["units"]:
        with h5py.File(root / "triangulate" / u["subject"] / f"{u['sequence']}.h5", "r") as f:
            n = len(f["frames"])
        assert source.frames_asked[f"{u['subject']}/{u['sequence']}"] == n
