"""The other tools' keypoint layouts and their tables to COCO-WholeBody (build_h3wb/skeleton/layouts.py)."""

import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.skeleton.layouts import (
    LAYOUTS,
    derived_joints,
    from_wholebody,
    layout,
    mapped,
    table_markdown,
    to_wholebody,
)


def test_what_each_layout_maps():
    counts = {name: int(mapped(lay).sum()) for name, lay in LAYOUTS.items()}
    # BODY_25: 17 body + 6 feet, hands 2 x 21, face 68 (the pupils, neck and mid-hip have no counterpart)
    assert counts == {"openpose_body25": 133, "openpose_coco18": 17 + 42 + 68, "coco17": 17, "halpe26": 23,
                      "halpe136": 133, "coco_wholebody": 133}
    assert LAYOUTS["openpose_body25"].size == 25 + 21 + 21 + 70 and LAYOUTS["halpe136"].size == 136
    # a source keypoint maps to at most one target and no target is fed twice
    for lay in LAYOUTS.values():
        t = lay.targets()
        assert len(np.unique(t[t >= 0])) == (t >= 0).sum()
    # spot checks against the published orders
    body25 = LAYOUTS["openpose_body25"].targets()
    assert body25[4] == skeleton.RIGHT_WRIST and body25[12] == skeleton.LEFT_HIP and body25[8] == -1
    assert body25[21] == skeleton.index("left_heel") and body25[25 + 21] == skeleton.index("right_hand_root")
    assert body25[25 + 42 + 36] == skeleton.PARTS["face"].start + 36 and (body25[-2:] == -1).all()
    halpe = LAYOUTS["halpe136"].targets()
    assert halpe[21] == skeleton.index("right_big_toe") and halpe[94] == skeleton.LEFT_HAND_ROOT
    assert halpe[135] == skeleton.PARTS["right_hand"].stop - 1 and (halpe[17:20] == -1).all()


def test_derived_joints():
    kp = np.full((2, skeleton.NUM_KEYPOINTS, 2), np.nan)
    kp[:, skeleton.LEFT_HIP], kp[:, skeleton.RIGHT_HIP] = (0, 0), (2, 4)
    kp[0, skeleton.LEFT_SHOULDER], kp[0, skeleton.RIGHT_SHOULDER] = (1, 1), (3, 1)
    kp[0, skeleton.index("left_eye")], kp[0, skeleton.index("right_ear")] = (0, 10), (4, 12)
    d = derived_joints(kp)
    np.testing.assert_allclose(d["pelvis"], [[1, 2], [1, 2]])
    np.testing.assert_allclose(d["neck"][0], [2, 1]) and np.testing.assert_allclose(d["head"][0], [2, 11])
    assert np.isnan(d["neck"][1]).all() and np.isnan(d["head"][1]).all()  # never invented from nothing


def test_to_and_from_wholebody(rng):
    kp = rng.uniform(0, 1000, (4, skeleton.NUM_KEYPOINTS, 3))
    for lay in LAYOUTS.values():
        back = to_wholebody(from_wholebody(kp, lay), lay)
        has = mapped(lay)
        np.testing.assert_allclose(back[:, has], kp[:, has], rtol=1e-6)
        assert np.isnan(back[:, ~has]).all()
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 26, 3\) keypoints of layout halpe26"):
        to_wholebody(kp, LAYOUTS["halpe26"])
    with pytest.raises(ValueError, match="unknown keypoint layout 'body25'; supported: openpose_body25"):
        layout("body25")


def test_tables_render_as_markdown():
    text = table_markdown(LAYOUTS["openpose_body25"])
    assert "| pose_keypoints_2d | 1 | none | Neck: no counterpart" in text
    assert "| face_keypoints_2d | 68 | none | right pupil: no counterpart |" in text
    assert text.count("\n") == 1 + LAYOUTS["openpose_body25"].size
