import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.sources.base import Source
from build_h3wb.sources.synthetic import SyntheticSource


def test_sequences_frames_and_ground_truth():
    src = SyntheticSource(["S1", "S8"], ["Walking", "Phoning"], repeats=2, duration_s=2.0)
    assert isinstance(src, Source)
    seqs = src.sequences()
    assert [s.key for s in seqs][:3] == ["S1/Walking 1", "S1/Walking 2", "S1/Phoning 1"]
    assert len(seqs) == 8
    frames = src.frames(seqs[0])
    assert frames[0] == 0 and (np.diff(frames) == 5).all() and len(frames) == 20
    gt = src.ground_truth(seqs[0], frames)
    assert gt.shape == (20, skeleton.NUM_KEYPOINTS, 3) and np.isfinite(gt).all()
    # repeats differ; a frame range alone gives the same poses as the whole sequence
    assert not np.allclose(gt, src.ground_truth(seqs[1], frames))
    assert np.array_equal(src.ground_truth(seqs[0], frames[7:9]), gt[7:9])
    assert src.rig(seqs[0]).names == ("54138969", "55011271", "58860488", "60457274")


def test_batches_cover_the_frames_in_order():
    src = SyntheticSource(["S5"], ["Greeting"], duration_s=3.0)
    seq = src.sequences()[0]
    frames = src.frames(seq)
    batches = list(src.batches(seq, "58860488", frames, batch_size=8))
    assert np.array_equal(np.concatenate([b.frames for b in batches]), frames)
    assert all(b.camera.name == "58860488" and b.images is None for b in batches)
    assert np.array_equal(np.concatenate([b.world_keypoints for b in batches]), src.ground_truth(seq, frames))


def test_the_subject_stays_inside_every_view():
    src = SyntheticSource(["S1", "S5", "S6", "S7", "S8"], ["Walking", "WalkDog", "Directions"], duration_s=20.0)
    for seq in src.sequences():
        X = src.ground_truth(seq, src.frames(seq))
        for cam in src.rig(seq):
            assert cam.in_image(cam.project(X)).mean() > 0.999, (seq.key, cam.name)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"subjects": ["S3"]}, "S3"), ({"actions": ["Juggling"]}, "Juggling"), ({"stride": 0}, "stride")],
)
def test_bad_settings(kwargs, match):
    args = {"subjects": ["S1"], "actions": ["Walking"]} | kwargs
    with pytest.raises(ValueError, match=match):
        SyntheticSource(**args)


def test_any_rig_from_a_file(tmp_path):
    from build_h3wb.detectors.simulated import default_simulated_detector
    from build_h3wb.geometry.cameras import save_rig
    from build_h3wb.sources.synthetic import looked_at_xy, ring_rig
    rig = ring_rig()  # four portrait 1088x1920 cameras
    path = tmp_path / "portrait.json"
    save_rig(rig, path)
    src = SyntheticSource(["S1"], ["Walking"], duration_s=4.0, rig=str(path))
    seq = src.sequences()[0]
    assert src.rig(seq).names == rig.names and src.describe()["rig"] == str(path)
    assert np.allclose(looked_at_xy(rig), 0.0, atol=1e-6)
    frames = src.frames(seq)
    det = default_simulated_detector(pixel_scale=2.0)
    out = np.concatenate([det(b) for b in src.batches(seq, "cam02", frames, 16)])
    assert out.shape == (len(frames), skeleton.NUM_KEYPOINTS, 3)
    assert np.isfinite(out[:, :17, 0]).mean() > 0.8  # the person is in view
    assert (out[..., 1][np.isfinite(out[..., 1])] > 1088).any()  # portrait: rows beyond the width are used
