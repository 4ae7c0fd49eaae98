import numpy as np
import pytest

from build_h3wb.geometry.alignment import align, umeyama


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_umeyama_recovers_a_similarity_and_ignores_nan_targets(rng):
    src = rng.normal(size=(4, 20, 3)) * 100
    R = np.stack([_rotation(rng) for _ in range(4)])
    tgt = 1.3 * np.einsum("bij,bkj->bki", R, src) + np.array([10.0, -5.0, 300.0])
    tgt[:, :3] = np.nan  # missing targets carry no weight
    R2, t2, s2 = umeyama(src, tgt, np.ones((4, 20)), scale=True)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(s2, 1.3, rtol=1e-9)
    np.testing.assert_allclose(t2, np.broadcast_to([10.0, -5.0, 300.0], (4, 3)), atol=1e-6)


def test_align_moves_source_onto_target_rigidly(rng):
    src = rng.normal(size=(2, 10, 3))
    R = np.stack([_rotation(rng) for _ in range(2)])
    tgt = np.einsum("bij,bkj->bki", R, src) + 1.0
    np.testing.assert_allclose(align(src, tgt), tgt, atol=1e-9)
    with pytest.raises(ValueError, match=r"expected source and target \(B, K, 3\)"):
        umeyama(src, tgt[:, :5], np.ones((2, 10)))
