import numpy as np
import pytest

from build_h3wb import skeleton


def test_layout_sizes_and_parts():
    assert skeleton.NUM_KEYPOINTS == len(skeleton.NAMES) == 133
    sizes = {p: s.stop - s.start for p, s in skeleton.PARTS.items()}
    assert sizes == {"body": 17, "feet": 6, "face": 68, "left_hand": 21, "right_hand": 21, "hands": 42}
    assert skeleton.REPORT_PARTS["body"] == slice(0, 23)
    assert skeleton.NAMES[skeleton.PARTS["left_hand"].start] == "left_hand_root"
    assert skeleton.NAMES[skeleton.PARTS["right_hand"].stop - 1] == "right_pinky_finger4"


def test_flip_index_is_an_involution_that_swaps_sides():
    f = skeleton.FLIP_INDEX
    assert (f[f] == np.arange(skeleton.NUM_KEYPOINTS)).all()
    for i, name in enumerate(skeleton.NAMES):
        j = f[i]
        if name.startswith("left_"):
            assert skeleton.NAMES[j] == "right_" + name[5:]
    assert f[skeleton.PARTS["face"].start] == skeleton.PARTS["face"].start + 16


def test_bones_are_in_range_and_connect_hands_to_wrists():
    b = skeleton.BONES
    assert b.min() >= 0 and b.max() < skeleton.NUM_KEYPOINTS
    pairs = {tuple(x) for x in b.tolist()}
    assert (skeleton.LEFT_WRIST, skeleton.LEFT_HAND_ROOT) in pairs
    assert len(skeleton.RIGID_BONES) == 65 + 2 - 2  # without the ear-shoulder links


def test_root_and_flip_check_shapes():
    kp = np.random.default_rng(0).normal(size=(4, 133, 3))
    assert np.allclose(skeleton.root(kp), (kp[:, 11] + kp[:, 12]) / 2)
    assert skeleton.flip_left_right(kp).shape == kp.shape
    with pytest.raises(ValueError, match="133"):
        skeleton.root(np.zeros((4, 17, 3)))
    with pytest.raises(KeyError, match="unknown keypoint"):
        skeleton.index("left_tail")


def test_part_ids():
    ids = skeleton.part_ids()
    assert (ids[:17] == 0).all() and (ids[17:23] == 1).all() and (ids[23:91] == 2).all()
    assert (ids[91:112] == 3).all() and (ids[112:] == 4).all()
    assert skeleton.part_of(100) == "left_hand"


def test_box_diagonal_counts_only_valid_keypoints():
    uv = np.array([[[0.0, 0.0], [30.0, 40.0], [1e4, 1e4], [np.nan, np.nan]]])  # (1, 4, 2) px
    valid = np.array([[True, True, False, False]])
    np.testing.assert_allclose(skeleton.box_diagonal(uv, valid), [50.0])  # the far point does not count
    both = skeleton.box_diagonal(np.stack([uv, uv]), np.stack([valid, np.zeros_like(valid)]))  # (2, 1)
    assert both.shape == (2, 1) and both[0, 0] == 50.0 and np.isnan(both[1, 0])  # none valid: NaN
    with pytest.raises(ValueError, match=r"\(\.\.\., K, 2\)"):
        skeleton.box_diagonal(uv, valid[:, :3])
