"""Accuracy of built 3D poses against ground truth: running per-part statistics of the per-keypoint errors.

The errors and their centrings come from the one metrics module, :func:`build_h3wb.leaderboard.metrics.
keypoint_errors` (all in millimetres; its NaN policy: a keypoint that was not built, or whose centre was not, has
no error, and means are over the keypoints with one):

- ``absolute``: world position error, what triangulation gets right or wrong;
- ``root_relative``: both poses centred on their own mid-hip (joints left_hip, right_hip), as H3WB's leaderboard
  scores whole body, body (with feet), face and hands;
- ``face_aligned``: the face centred on the nose; ``hands_aligned``: each hand centred on its own root (wrist); its
  mean is the leaderboard's ``(MPJPE_left + MPJPE_right) / 2``, its median and p95 pool both hands.

On the same arrays the means of :class:`ErrorStats` are the leaderboard scorer's numbers
(:func:`build_h3wb.leaderboard.metrics.score_all`), with NaN too.
"""

from __future__ import annotations

import numpy as np

from build_h3wb import skeleton
from build_h3wb.leaderboard.metrics import keypoint_errors

__all__ = ["ErrorStats", "format_table", "keypoint_errors"]

HIST_MAX_MM = 2000.0
HIST_BIN_MM = 0.25


class ErrorStats:
    """Streaming per-part error statistics (mean, median, p95) and coverage, with flat memory."""

    VARIANT_PARTS = {
        "absolute": ("whole", "body", "face", "hands"),
        "root_relative": ("whole", "body", "face", "hands"),
        "face_aligned": ("face",),
        "hands_aligned": ("hands",),
    }

    #: Per-hand sums behind the ``hands_aligned`` mean (left and right averaged, as the leaderboard).
    HANDS = ("left_hand", "right_hand")

    def __init__(self) -> None:
        nbins = int(HIST_MAX_MM / HIST_BIN_MM) + 1
        self.sum = {(v, p): 0.0 for v, ps in self.VARIANT_PARTS.items() for p in ps}
        self.hand_sum = dict.fromkeys(self.HANDS, 0.0)
        self.hand_count = dict.fromkeys(self.HANDS, 0)
        self.count = dict.fromkeys(self.sum, 0)
        self.hist = {k: np.zeros(nbins, dtype=np.int64) for k in self.sum}
        self.built = dict.fromkeys(skeleton.REPORT_PARTS, 0)
        self.total = dict.fromkeys(skeleton.REPORT_PARTS, 0)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add the poses of one sequence: pred and gt (T, J, 3) mm."""
        errs = keypoint_errors(pred, gt)
        built = np.isfinite(pred).all(-1)
        for p, sl in skeleton.REPORT_PARTS.items():
            self.built[p] += int(built[:, sl].sum())
            self.total[p] += built[:, sl].size
        for (v, p), _ in self.sum.items():
            e = errs[v][:, skeleton.REPORT_PARTS[p]]
            e = e[np.isfinite(e)]
            self.sum[(v, p)] += float(e.sum())
            self.count[(v, p)] += e.size
            idx = np.minimum((e / HIST_BIN_MM).astype(np.int64), len(self.hist[(v, p)]) - 1)
            self.hist[(v, p)] += np.bincount(idx, minlength=len(self.hist[(v, p)]))
        for hand in self.HANDS:
            e = errs["hands_aligned"][:, skeleton.PARTS[hand]]
            e = e[np.isfinite(e)]
            self.hand_sum[hand] += float(e.sum())
            self.hand_count[hand] += e.size

    def mean(self, variant: str, part: str) -> float:
        """Mean error in mm (NaN if none); ``hands_aligned`` averages the two hands' means, as the leaderboard."""
        if variant == "hands_aligned":
            means = [self.hand_sum[h] / self.hand_count[h] for h in self.HANDS if self.hand_count[h]]
            return float(np.mean(means)) if means else float("nan")
        n = self.count[(variant, part)]
        return self.sum[(variant, part)] / n if n else float("nan")

    def _quantile(self, key: tuple[str, str], q: float) -> float:
        h = self.hist[key]
        n = h.sum()
        if n == 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(h), q * n))
        return (i + 0.5) * HIST_BIN_MM

    def table(self) -> dict:
        """Variant -> part -> {mean, median, p95 (mm), n}, plus ``coverage``: part -> share of keypoints built."""
        out: dict = {}
        for v, p in self.sum:
            n = self.count[(v, p)]
            out.setdefault(v, {})[p] = {
                "mean_mm": round(self.mean(v, p), 2) if n else None,
                "median_mm": round(self._quantile((v, p), 0.5), 2) if n else None,
                "p95_mm": round(self._quantile((v, p), 0.95), 2) if n else None,
                "n": n,
            }
        out["coverage"] = {p: round(self.built[p] / max(self.total[p], 1), 4) for p in self.built}
        return out

    def histogram(self, variant: str = "absolute", bin_mm: float = 2.0, max_mm: float = 200.0) -> dict:
        """Counts of keypoint errors per part in ``bin_mm`` bins up to ``max_mm`` (the last bin holds the rest)."""
        factor = int(round(bin_mm / HIST_BIN_MM))
        nb = int(round(max_mm / bin_mm))
        out = {"bin_mm": bin_mm, "variant": variant}
        for (v, p), h in self.hist.items():
            if v != variant:
                continue
            coarse = np.add.reduceat(h, np.arange(0, len(h), factor))
            out[p] = np.r_[coarse[:nb], coarse[nb:].sum()].astype(int).tolist()
        return out


def format_table(table: dict) -> str:
    """A Markdown table of :meth:`ErrorStats.table`."""
    lines = ["| error (mm) | part | mean | median | p95 | keypoints |", "|---|---|---|---|---|---|"]
    for v, parts in table.items():
        if v == "coverage":
            continue
        for p, r in parts.items():
            lines.append(f"| {v} | {p} | {r['mean_mm']} | {r['median_mm']} | {r['p95_mm']} | {r['n']} |")
    cov = ", ".join(f"{p} {100 * s:.1f}%" for p, s in table["coverage"].items())
    lines.append(f"\nKeypoints built: {cov}")
    return "\n".join(lines)
