"""Scores against hand-computed examples: last-10 mean, video mean, fusion, accuracy."""

import numpy as np
import pytest

from evaluation.scoring import (
    VideoScores,
    accuracy,
    confusion_matrix,
    fuse_scores,
    fuse_video_scores,
    main,
    mean_over_splits,
    per_class_accuracy,
    sample_scores,
    video_scores,
)


def test_sample_score_is_mean_of_last_ten_steps_only():
    probabilities = np.zeros((1, 30, 2))
    probabilities[0, :20] = [1.0, 0.0]  # the first 20 steps say class 0 ...
    probabilities[0, 20:] = [0.2, 0.8]  # ... the last 10 say class 1
    probabilities[0, 29] = [0.7, 0.3]
    # (9 * [0.2, 0.8] + [0.7, 0.3]) / 10 = [0.25, 0.75]
    np.testing.assert_allclose(sample_scores(probabilities), [[0.25, 0.75]])
    np.testing.assert_allclose(sample_scores(probabilities, num_last_steps=1), [[0.7, 0.3]])
    with pytest.raises(ValueError, match="num_last_steps"):
        sample_scores(probabilities, num_last_steps=31)


def test_video_score_is_mean_over_its_samples():
    scores = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.2, 0.8]])
    index = np.array([0, 0, 0, 1])  # three samples of video 0, one of video 1
    np.testing.assert_allclose(video_scores(scores, index), [[1.7 / 3, 1.3 / 3], [0.2, 0.8]])
    with pytest.raises(ValueError, match="without samples"):
        video_scores(scores, index, num_videos=3)


def test_two_stream_is_one_third_appearance_two_thirds_motion():
    appearance = np.array([[0.9, 0.1]])
    motion = np.array([[0.3, 0.7]])
    # 0.9 / 3 + 2 * 0.3 / 3 = 0.5; 0.1 / 3 + 2 * 0.7 / 3 = 0.5
    np.testing.assert_allclose(fuse_scores(appearance, motion), [[0.5, 0.5]])
    np.testing.assert_allclose(fuse_scores(appearance, motion, (1.0, 0.0)), appearance)


def test_fusion_pairs_videos_by_id_not_position():
    names = ("A", "B")
    appearance = VideoScores(
        ("x", "y"), np.array([0, 1]), np.array([[0.6, 0.4], [0.0, 1.0]]), names
    )
    motion = VideoScores(("y", "x"), np.array([1, 0]), np.array([[0.3, 0.7], [0.9, 0.1]]), names)
    fused = fuse_video_scores(appearance, motion, (0.5, 0.5))
    np.testing.assert_allclose(fused.scores, [[0.75, 0.25], [0.15, 0.85]])
    other = VideoScores(("x", "z"), np.array([0, 1]), motion.scores, names)
    with pytest.raises(ValueError, match="different videos"):
        fuse_video_scores(appearance, other)


def test_accuracy_per_class_and_confusion_matrix():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.2, 0.7]])
    labels = np.array([0, 1, 1, 2])
    assert accuracy(scores, labels) == 0.75
    np.testing.assert_array_equal(
        confusion_matrix(scores, labels, 3), [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    )
    np.testing.assert_allclose(per_class_accuracy(scores, labels, 4), [1.0, 0.5, 1.0, np.nan])


def test_mean_over_splits_reports_which_splits():
    assert mean_over_splits({3: 0.8, 1: 0.9}) == (pytest.approx(0.85), [1, 3])
    with pytest.raises(ValueError):
        mean_over_splits({})


def test_scores_round_trip_and_fuse_cli(tmp_path):
    names = ("A", "B")
    appearance = VideoScores(
        ("x", "y"), np.array([0, 1]), np.array([[0.6, 0.4], [0.6, 0.4]]), names
    )
    motion = VideoScores(("x", "y"), np.array([0, 1]), np.array([[0.4, 0.6], [0.4, 0.6]]), names)
    for name, scores in (("a", appearance), ("m", motion)):
        scores.save(tmp_path / name / "test_scores.npz")
    loaded = VideoScores.load(tmp_path / "a" / "test_scores.npz")
    assert loaded.video_ids == ("x", "y") and loaded.class_names == names
    np.testing.assert_array_equal(loaded.scores, appearance.scores)
    result = main(["--fuse", str(tmp_path / "a"), str(tmp_path / "m")])
    # fused: [0.6/3 + 0.8/3, 0.4/3 + 1.2/3] = [0.467, 0.533] -> class 1 for both videos
    assert result == {"appearance": 0.5, "motion": 0.5, "two_stream": 0.5}
