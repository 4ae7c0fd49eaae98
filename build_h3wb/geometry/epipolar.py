"""Two-view epipolar geometry of a calibrated rig: essential matrices and the symmetric epipolar distance.

Points are undistorted normalised homogeneous coordinates ``(x, y, 1)``; the essential matrix of views a and b
satisfies ``x_b^T E x_a = 0``. The symmetric epipolar distance is Hartley and Zisserman (2004), eq. 11.9 (here the
mean of the two point-to-line distances, in normalised units: multiply by a focal length for pixels).
"""

from __future__ import annotations

import numpy as np

from build_h3wb.geometry.cameras import Rig


def cross_matrix(t: np.ndarray) -> np.ndarray:
    """(3, 3) matrix ``[t]_x`` with ``[t]_x v = t x v``."""
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def essential_matrix(rig: Rig, a: int, b: int) -> np.ndarray:
    """(3, 3) essential matrix E with ``x_b^T E x_a = 0`` for undistorted normalised points of views a and b."""
    ca, cb = rig[a], rig[b]
    R = cb.R @ ca.R.T
    t = cb.t - R @ ca.t
    return cross_matrix(t) @ R


def symmetric_epipolar_distance(xa: np.ndarray, xb: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Mean distance of each point to the other's epipolar line, normalised units.

    Args:
        xa: (..., 3) homogeneous undistorted normalised points of view a.
        xb: (..., 3) the same of view b (broadcast against ``xa``).
        E: (3, 3) essential matrix of (a, b) (:func:`essential_matrix`).

    Returns:
        (...) distances; NaN or inf where a line is degenerate.
    """
    lines_b = xa @ E.T  # (..., 3) epipolar lines in view b of view a's points
    lines_a = xb @ E  # (..., 3) epipolar lines in view a of view b's points
    num = np.abs((xb * lines_b).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * num * (1.0 / np.linalg.norm(lines_b[..., :2], axis=-1)
                            + 1.0 / np.linalg.norm(lines_a[..., :2], axis=-1))
