"""The linear-probe reference row: a convex fit, chosen on validation, scored on test."""

import numpy as np
import pandas as pd
import pytest

from temporal_attention.evaluation.linear_probe import L2_GRID, fit_softmax, main, softmax
from tests.evaluation_fixtures import synthetic_split, write_separable_features


def test_fit_reaches_the_optimum_of_the_penalised_loss():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 5))
    labels = rng.integers(0, 3, 60)
    weights, biases = fit_softmax(features, labels, 3, l2=0.1)
    probabilities = softmax(features @ weights + biases)
    targets = np.eye(3)[labels]
    gradient_w = features.T @ (probabilities - targets) / 60 + 0.1 * weights
    gradient_b = (probabilities - targets).mean(axis=0)
    assert np.abs(gradient_w).max() < 1e-4 and np.abs(gradient_b).max() < 1e-4


def test_probe_reads_the_class_from_separable_features_and_fuses(tmp_path):
    split = synthetic_split(tmp_path, clips_per_class=6)
    write_separable_features(tmp_path / "appearance", split, seed=1)
    write_separable_features(tmp_path / "motion", split, stream="motion", seed=2)
    table = main(
        [
            "--video-root", str(tmp_path / "UCF-101"),
            "--split-dir", str(tmp_path / "ucfTrainTestlist"),
            "--appearance-store", str(tmp_path / "appearance"),
            "--motion-store", str(tmp_path / "motion"), "--output", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    assert list(table["stream"]) == ["appearance", "motion", "two-stream"]
    assert (table["accuracy"] == 100.0).all()
    assert set(table["l2"].dropna()) <= set(L2_GRID)
    written = pd.read_csv(tmp_path / "out/linear_probe.csv")
    assert list(written["accuracy"]) == list(table["accuracy"])
    assert "| two-stream | 100.0 | 100.0 |" in (tmp_path / "out/linear_probe.md").read_text()


def test_probe_needs_a_store_and_known_splits(tmp_path):
    synthetic_split(tmp_path)
    argv = ["--video-root", str(tmp_path / "UCF-101"), "--split-dir",
            str(tmp_path / "ucfTrainTestlist"), "--output", str(tmp_path)]  # fmt: skip
    with pytest.raises(ValueError, match="store"):
        main(argv)
    with pytest.raises(ValueError, match="splits"):
        main([*argv, "--appearance-store", str(tmp_path), "--splits", "4"])
