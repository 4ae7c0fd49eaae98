"""The measures without ground truth order builds as their true error does (a tiny case of the benchmark)."""

import sys

import numpy as np
from conftest import REPO

from build_h3wb.sources.synthetic import SyntheticSource

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_measures_ranking import MEASURES, build_variant, detector, spearman  # noqa: E402


def test_measures_rank_three_builds_like_the_true_error():
    source = SyntheticSource(subjects=["S1"], actions=["Greeting"], duration_s=3.0)
    builds = [build_variant(source, detector(noise, outliers), robust)
              for noise, outliers, robust in ((0.5, 0.0, True), (1.0, 1.0, True), (2.0, 2.0, False))]
    truth = np.array([b["true_body_error_mm"] for b in builds])
    assert np.all(np.diff(truth) > 0)  # the builds get worse in this order
    for m in MEASURES:
        values = np.array([b[m] for b in builds])
        assert np.all(np.diff(values) >= 0) and values[-1] > values[0], (m, values)  # (few frames: ties at 0)
    assert spearman(truth, truth[::-1]) == -1.0 and spearman(truth, 2 * truth) == 1.0
