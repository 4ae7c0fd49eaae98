import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.completion.temporal import anchor_displaced_hands
from build_h3wb.synthetic.motion import generate_motion

LEFT_HAND = skeleton.PARTS["left_hand"]
LEFT_WRIST = skeleton.index("left_wrist")
RIGHT_HAND = skeleton.PARTS["right_hand"]


@pytest.fixture(scope="module")
def walk():
    """Two seconds of walking at 10 poses/s (frame numbers of a 50 fps video, every fifth), world mm."""
    frames = np.arange(0, 100, 5)
    return generate_motion("S1", "Walking", frames / 50.0), frames


def test_displaced_hand_is_anchored_at_its_neighbours_wrist(walk):
    poses, frames = walk
    kp = poses.copy()
    kp[7, LEFT_HAND.start + 5 : LEFT_HAND.stop] = np.nan  # most fingers lost...
    kp[7, [LEFT_WRIST, *range(LEFT_HAND.start, LEFT_HAND.start + 5)]] += [250.0, -100.0, 0.0]  # ...the rest misplaced
    kp[3, RIGHT_HAND.start + 10 : RIGHT_HAND.stop] = np.nan  # holes, but in place
    inputs, displaced = anchor_displaced_hands(kp, frames, max_jump_mm=80.0, window=2)
    assert displaced.shape == (len(kp), 2)
    assert np.argwhere(displaced).tolist() == [[7, 0]]
    assert np.isnan(inputs[7, LEFT_HAND]).all()
    np.testing.assert_allclose(inputs[7, LEFT_WRIST], np.median(kp[[5, 6, 8, 9], LEFT_WRIST], axis=0))
    assert np.linalg.norm(inputs[7, LEFT_WRIST] - poses[7, LEFT_WRIST]) < 60.0  # back near the true wrist
    others = np.ones(kp.shape[:2], dtype=bool)
    others[7, [LEFT_WRIST, *range(LEFT_HAND.start, LEFT_HAND.stop)]] = False
    np.testing.assert_array_equal(inputs[others], kp[others])  # every other keypoint as given, NaN included


def test_misplaced_hand_without_holes_and_a_lone_frame_are_left(walk):
    poses, frames = walk
    kp = poses.copy()
    kp[7, [LEFT_WRIST, *range(LEFT_HAND.start, LEFT_HAND.stop)]] += 300.0  # complete: nothing to fill
    kp[12, LEFT_HAND] = np.nan
    kp[[10, 11, 13, 14], LEFT_WRIST] = np.nan  # no neighbour sees the wrist: nothing to compare with
    kp[12, LEFT_WRIST] += 300.0
    inputs, displaced = anchor_displaced_hands(kp, frames, max_jump_mm=80.0, window=2)
    assert not displaced.any()
    np.testing.assert_array_equal(inputs, kp)


def test_neighbours_are_counted_in_frame_steps(walk):
    poses, frames = walk
    kp = poses[[0, 1, 2, 3, 4, 15, 16]].copy()  # a gap of 11 steps between rows 4 and 5
    fr = frames[[0, 1, 2, 3, 4, 15, 16]]
    kp[5, LEFT_HAND.start + 1 : LEFT_HAND.stop] = np.nan
    kp[5, LEFT_WRIST] += 300.0
    _, displaced = anchor_displaced_hands(kp, fr, max_jump_mm=80.0, window=2)
    assert not displaced.any()  # only row 6 lies within two steps of row 5
    _, displaced = anchor_displaced_hands(kp, fr, max_jump_mm=80.0, window=12)
    assert displaced[5, 0] and displaced.sum() == 1


def test_off_and_bad_input(walk):
    poses, frames = walk
    kp = poses.copy()
    kp[7, LEFT_HAND.start + 1 : LEFT_HAND.stop] = np.nan
    kp[7, LEFT_WRIST] += 300.0
    for jump, window in ((0.0, 2), (80.0, 0)):
        inputs, displaced = anchor_displaced_hands(kp, frames, jump, window)
        assert not displaced.any()
        np.testing.assert_array_equal(inputs, kp)
    with pytest.raises(ValueError, match="frames"):
        anchor_displaced_hands(kp, frames[::-1], 80.0, 2)
    with pytest.raises(ValueError, match="shapes"):
        anchor_displaced_hands(kp[:, :10], frames, 80.0, 2)
    with pytest.raises(ValueError, match="shapes"):
        anchor_displaced_hands(kp, frames[:-1], 80.0, 2)
