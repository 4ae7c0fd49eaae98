import numpy as np

from build_h3wb.geometry.epipolar import essential_matrix, symmetric_epipolar_distance


def test_essential_matrix_holds_for_projected_points(rig, rng):
    X = np.array([[100.0, 500.0, 1000.0], [-300.0, 800.0, 200.0]])
    for a in range(4):
        for b in range(4):
            if a != b:
                xa = np.c_[rig[a].undistort_pixels(rig[a].project(X)), np.ones(2)]
                xb = np.c_[rig[b].undistort_pixels(rig[b].project(X)), np.ones(2)]
                residual = np.einsum("ni,ij,nj->n", xb, essential_matrix(rig, a, b), xa)
                assert np.abs(residual).max() < 1e-9


def test_symmetric_distance_is_zero_on_the_line_and_grows_off_it(rig):
    X = np.array([[100.0, 500.0, 1000.0], [-300.0, 900.0, 1400.0]])
    xa = np.c_[rig[0].undistort_pixels(rig[0].project(X)), np.ones(2)]
    xb = np.c_[rig[1].undistort_pixels(rig[1].project(X)), np.ones(2)]
    E = essential_matrix(rig, 0, 1)
    assert np.allclose(symmetric_epipolar_distance(xa, xb, E), 0.0, atol=1e-9)
    line = xa @ E.T  # epipolar lines in view b
    normal = line[:, :2] / np.linalg.norm(line[:, :2], axis=1, keepdims=True)
    moved = xb + np.c_[0.01 * normal, np.zeros(2)]  # 0.01 normalised units off the line: about 11 px
    d = symmetric_epipolar_distance(xa, moved, E)
    assert (d > 0.004).all() and (d < 0.02).all()  # half of 0.01 in view b plus the (similar) distance in view a
