import numpy as np
import pytest

from build_h3wb import skeleton
from build_h3wb.detectors.subject import choose_subject, pairwise_agreement, subject_consistency
from build_h3wb.synthetic.motion import generate_motion


def _project(rig, X, rng, noise=2.0, score=0.8):
    """(T, J, 3) world -> (C, T, J, 3) [x, y, score] with pixel noise."""
    out = []
    for cam in rig:
        uv = cam.project(X) + rng.normal(0, noise, X.shape[:-1] + (2,))
        out.append(np.concatenate([uv, np.full(X.shape[:-1] + (1,), score)], -1))
    return np.stack(out)


@pytest.fixture
def two_people(rig, rng):
    """The subject and a bystander 1.2 m away, in random candidate order; the bystander often scores higher."""
    t = np.arange(60) / 10.0
    subject = generate_motion("S1", "Walking", t, seed=0, center_xy_mm=(0, 500), half_extent_xy_mm=(700, 700))
    bystander = generate_motion("S5", "Waiting", t, seed=1, center_xy_mm=(900, 1300), half_extent_xy_mm=(100, 100))
    a = _project(rig, subject, rng, score=0.7)
    b = _project(rig, bystander, rng, score=0.9)
    swap = rng.random(a.shape[:2]) < 0.5  # (C, T): bystander listed first
    cand = np.stack([np.where(swap[..., None, None], b, a), np.where(swap[..., None, None], a, b)], axis=2)
    truth = np.where(swap, 1, 0)
    return cand, truth, subject


def test_the_subject_is_chosen_in_every_view_and_frame(rig, two_people):
    cand, truth, _ = two_people
    # the detector's own ranking alone would pick the (higher-scoring) bystander half of the time
    kp, choice, ambiguous = choose_subject(cand, rig)
    assert kp.shape == (4, cand.shape[1], skeleton.NUM_KEYPOINTS, 3) and kp.dtype == np.float32
    # both people are seen by all four views, so geometry alone cannot tell them apart: the subject performing in
    # the middle of the volume is kept, in every view and every frame, against the detector's ranking
    assert (choice == truth).all()
    np.testing.assert_array_equal(kp, np.take_along_axis(cand, choice[..., None, None, None], 2)[:, :, 0]
                                  .astype(np.float32))
    assert ambiguous.mean() < 0.5


def test_a_false_detection_in_one_view_is_rejected_by_geometry(rig, rng):
    t = np.arange(30) / 10.0
    subject = generate_motion("S1", "Walking", t, seed=0, center_xy_mm=(0, 500), half_extent_xy_mm=(700, 700))
    cand = np.full((4, 30, 2, skeleton.NUM_KEYPOINTS, 3), np.nan)
    cand[:, :, 0] = _project(rig, subject, rng, score=0.6)
    # view 2 also holds a confident "person" that exists in no other view (a poster, a reflection), listed first
    fake = _project(rig, subject + np.array([800.0, -600.0, 0.0]), rng, score=0.95)[2]
    cand[2, :, 1] = cand[2, :, 0]
    cand[2, :, 0] = fake
    agree = pairwise_agreement(cand, rig)  # (C, C, T, P, P)
    real, fake = agree[2, [0, 1, 3], :, 1, 0], agree[2, [0, 1, 3], :, 0, 0]
    assert (real > 0.9).all() and (fake.mean(0) < 0.6).all()
    kp, choice, ambiguous = choose_subject(cand, rig)
    assert (choice[2] == 1).all() and (choice[[0, 1, 3]] == 0).all()
    assert not ambiguous.any()


def test_single_candidates_pass_through_and_empty_views_stay_missing(rig, rng):
    t = np.arange(5) / 10.0
    X = generate_motion("S1", "Walking", t, seed=0, center_xy_mm=(0, 500), half_extent_xy_mm=(700, 700))
    cand = _project(rig, X, rng)[:, :, None]
    cand[1, 3] = np.nan
    kp, choice, ambiguous = choose_subject(cand, rig)
    assert (choice[1, 3] == -1) and np.isnan(kp[1, 3]).all()
    np.testing.assert_array_equal(kp[0], cand[0, :, 0].astype(np.float32))
    assert not ambiguous.any()


def test_shape_errors(rig):
    with pytest.raises(ValueError, match="expected candidates"):
        choose_subject(np.zeros((4, 2, skeleton.NUM_KEYPOINTS, 3)), rig)


def test_the_subject_stays_one_person_when_the_other_becomes_more_central(rig, rng):
    """Two people both seen everywhere; late in the sequence the bystander walks to the centre and scores higher.

    Frame by frame the bystander would win the last frames; over the sequence the subject is kept in every frame.
    """
    T = 40
    t = np.arange(T) / 10.0
    subject = generate_motion("S1", "Greeting", t, seed=0, center_xy_mm=(-200, 400), half_extent_xy_mm=(100, 100))
    other = generate_motion("S5", "Waiting", t, seed=1, center_xy_mm=(1500, 1500), half_extent_xy_mm=(50, 50))
    walk = np.clip((np.arange(T) - 26) / 4.0, 0, 1)[:, None, None]  # towards the volume's centre, frames 26-30
    other = other + walk * (np.array([100.0, 600.0, 0.0]) - other.mean((0, 1)))[None, None] * [1, 1, 0]
    a = _project(rig, subject, rng, score=0.6)
    b = _project(rig, other, rng, score=0.95)
    cand = np.stack([b, a], axis=2)  # the other person listed first
    kp, choice, ambiguous = choose_subject(cand, rig)
    assert (choice == 1).all()
    report = subject_consistency(cand, choice, rig)
    assert report["track_switches"] == 0 and report["cross_view_mismatches"] == 0
    assert report["with_rival"] == 4 * T and report["rival_px"] > 10 * report["chosen_px"]


def test_subject_consistency_counts_a_wrong_choice(rig, two_people):
    cand, truth, _ = two_people
    wrong = truth.copy()
    wrong[2, 10:] = 1 - wrong[2, 10:]  # view 2 follows the bystander from frame 10 on
    report = subject_consistency(cand, wrong, rig)
    assert report["per_view"]["58860488"]["track_switches"] == 1
    assert report["per_view"]["58860488"]["cross_view_mismatches"] == cand.shape[1] - 10
    assert report["per_view"]["54138969"]["cross_view_mismatches"] == 0
    assert subject_consistency(cand, truth, rig)["cross_view_mismatches"] == 0
    with pytest.raises(ValueError, match="choice has shape"):
        subject_consistency(cand, truth[:2], rig)


def test_epipolar_tolerance_can_scale_with_the_person(rig, rng):
    t = np.arange(10) / 10.0
    X = generate_motion("S1", "Walking", t, seed=0, center_xy_mm=(0, 500), half_extent_xy_mm=(700, 700))
    cand = _project(rig, X, rng, noise=12.0)[:, :, None]  # a detector 12 px off per axis
    fixed = pairwise_agreement(cand, rig)[0, 1, :, 0, 0]
    scaled = pairwise_agreement(cand, rig, epipolar_share=0.1)[0, 1, :, 0, 0]  # the person is ~400 px: ~40 px
    assert (scaled >= fixed).all() and scaled.mean() > fixed.mean() + 0.1
