"""Scores against hand-computed examples: last-10 mean, video mean, fusion, accuracy;
the scoring and fusion CLI on run folders written by hand."""

import dataclasses

import numpy as np
import pytest

from temporal_attention.evaluation.scoring import (
    VideoScores,
    accuracy,
    confusion_matrix,
    fuse_scores,
    fuse_video_scores,
    load_scores,
    main,
    mean_over_splits,
    model_epoch,
    per_class_accuracy,
    sample_scores,
    video_scores,
)
from temporal_attention.models.feature_extraction import file_sha256
from temporal_attention.runtime.config_flags import exit_on_error
from temporal_attention.training.runs import Run
from tests.evaluation_fixtures import TEST_IDS, TEST_LABELS, write_scored_run


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


def scored_streams(root, appearance_scores, motion_scores, class_names=("A", "B")):
    """Hand-made finished appearance and motion runs of the fixture's 4 test videos,
    holding these scores (of their model files)."""
    runs = {}
    for stream, values in (("appearance", appearance_scores), ("motion", motion_scores)):
        runs[stream] = write_scored_run(root, stream=stream, class_names=class_names)
        VideoScores(
            TEST_IDS, TEST_LABELS, np.asarray(values, dtype=float), class_names,
            model_sha256=file_sha256(runs[stream].model_path),
        ).save(runs[stream].scores_path)  # fmt: skip
    return runs["appearance"], runs["motion"]


def test_scores_round_trip_and_fuse_cli(tmp_path):
    appearance, motion = scored_streams(tmp_path, [[0.6, 0.4]] * 4, [[0.4, 0.6]] * 4)
    loaded = VideoScores.load(appearance.scores_path)
    assert loaded.video_ids == TEST_IDS and loaded.class_names == ("A", "B")
    assert loaded.model_sha256 == file_sha256(appearance.model_path)
    np.testing.assert_array_equal(loaded.scores, [[0.6, 0.4]] * 4)
    result = main(["--fuse", str(appearance.root), str(motion.root)])
    # fused: [0.6/3 + 0.8/3, 0.4/3 + 1.2/3] = [0.467, 0.533] -> class 1 for all 4 videos
    assert result == {"appearance": 0.5, "motion": 0.5, "two_stream": 0.5}


def test_fuse_refuses_one_run_twice_swapped_streams_and_unfinished_runs(tmp_path):
    appearance, motion = scored_streams(tmp_path, [[0.6, 0.4]] * 4, [[0.4, 0.6]] * 4)
    with pytest.raises(ValueError, match=f"{appearance.root} is given twice"):
        main(["--fuse", str(appearance.root), str(appearance.root)])
    with pytest.raises(ValueError, match=f"{motion.root} is a motion run, given as the appear"):
        main(["--fuse", str(motion.root), str(appearance.root)])
    motion.backup_dir.mkdir()
    with pytest.raises(ValueError, match=f"{motion.root}: training is unfinished"):
        main(["--fuse", str(appearance.root), str(motion.root)])


@pytest.mark.parametrize(
    "other, message",
    [({"video_ids": ("A/v1", "A/v2", "B/v1", "B/v9")}, "different videos"),
     ({"class_names": ("A", "C")}, "same classes")],
)  # fmt: skip
def test_fuse_refuses_streams_of_other_videos_or_classes(tmp_path, other, message):
    appearance, motion = scored_streams(tmp_path, [[0.6, 0.4]] * 4, [[0.4, 0.6]] * 4)
    scores = VideoScores.load(motion.scores_path)
    dataclasses.replace(scores, **other).save(motion.scores_path)
    with pytest.raises(ValueError, match=f"{appearance.root} and {motion.root} cannot be fused"):
        main(["--fuse", str(appearance.root), str(motion.root)])
    with pytest.raises(ValueError, match=message):
        main(["--fuse", str(appearance.root), str(motion.root)])


def test_an_unfinished_run_is_not_scored(tmp_path, capsys):
    finished = write_scored_run(tmp_path / "finished")
    run = write_scored_run(tmp_path / "killed")
    run.scores_path.unlink()
    run.backup_dir.mkdir()  # killed after an epoch: model.keras is the best so far
    with pytest.raises(SystemExit) as exit_status:  # refused before the first is scored
        exit_on_error(main, ["--run", str(finished.root), str(run.root)])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{run.root}: training is unfinished" in error
    assert "python -m training.train_attention` again with the same flags" in error
    assert not run.scores_path.exists() and not run.metrics_path.exists()
    assert not finished.metrics_path.exists()
    with pytest.raises(ValueError, match="training is unfinished"):
        load_scores(run)


def test_model_epoch_is_the_best_validation_epoch_of_the_history(tmp_path):
    run = Run(tmp_path)
    assert model_epoch(run) is None  # no history: unknown
    run.history_path.write_text(
        "epoch,last_steps_accuracy,val_last_steps_accuracy\n"
        "0,0.5,0.5\n1,0.9,0.75\n2,1.0,0.75\n3,1.0,NA\n"
    )
    assert model_epoch(run) == 1  # the first of the best: the checkpoint keeps it
    run.history_path.write_text("epoch,last_steps_accuracy\n0,0.5\n1,0.25\n")
    assert model_epoch(run) == 0


def test_accuracy_refuses_non_finite_scores():
    with pytest.raises(ValueError, match="NaN or inf in 1 of 2 rows"):
        accuracy(np.array([[np.nan, np.nan], [0.2, 0.8]]), np.array([0, 1]))
