"""Scores the paper's way (section 3.2): last 10 steps, video mean, two-stream fusion.

    sample score   = mean of the softmax outputs of the last 10 steps   (samples, C)
    video score    = mean of its samples' scores                        (videos, C)
    two-stream     = 1/3 appearance + 2/3 motion (weights are parameters)
    accuracy       = per split; the reported figure is the mean over the splits

A trained run is scored once on its test split; the per-video class scores, labels and
video ids go to `test_scores.npz` in the run folder, so fusion and tables never need
the models again:

    python -m evaluation.scoring --run runs/ucf101/split1/appearance/attention
    python -m evaluation.scoring --fuse runs/ucf101/split1/appearance/attention \
        runs/ucf101/split1/motion/attention

Averaging is linear, so fusing video scores equals averaging fused sample scores
whenever both streams cut a video into the same samples. They need not: a motion
stream has 5 fewer flow stacks than the video has frames, hence fusion pairs videos
(by id), not samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from data.feature_store import FeatureStore
from data.samples import SampleDataset
from models.feature_extraction import FeatureRecipe
from models.recognizer import NUM_SCORED_STEPS, last_steps_scores
from runtime.config_flags import exit_on_error, parse_config
from training.runs import Run

# Section 3.2: 1/3 appearance + 2/3 motion.
TWO_STREAM_WEIGHTS = (1.0 / 3.0, 2.0 / 3.0)


# === Scores ===


def sample_scores(probabilities: np.ndarray, num_last_steps: int = NUM_SCORED_STEPS) -> np.ndarray:
    """Mean of the last `num_last_steps` steps: `(samples, steps, C)` to `(samples, C)`."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 3:
        raise ValueError(
            "Expected probabilities (samples, steps, classes). "
            f"Received: shape={probabilities.shape}"
        )
    if not 1 <= num_last_steps <= probabilities.shape[1]:
        raise ValueError(
            f"Expected 1 <= num_last_steps <= steps={probabilities.shape[1]}. "
            f"Received: num_last_steps={num_last_steps}"
        )
    scores = last_steps_scores(probabilities, num_last_steps)  # (samples, C)
    return np.asarray(keras.ops.convert_to_numpy(scores), dtype=np.float64)


def video_scores(
    scores: np.ndarray, sample_video_index: np.ndarray, num_videos: int | None = None
) -> np.ndarray:
    """Mean of each video's sample scores: `(samples, C)` to `(videos, C)`.

    `sample_video_index[s]` is the video of sample `s` (e.g.
    `data.samples.SampleDataset.sample_video_index`). Every video needs >= 1 sample.
    """
    scores = np.asarray(scores, dtype=np.float64)
    index = np.asarray(sample_video_index, dtype=np.int64)
    if scores.ndim != 2 or index.shape != (scores.shape[0],):
        raise ValueError(
            "Expected scores (samples, classes) and sample_video_index (samples,). "
            f"Received: shapes {scores.shape} and {index.shape}"
        )
    num_videos = int(index.max()) + 1 if num_videos is None else num_videos
    counts = np.bincount(index, minlength=num_videos)  # (videos,)
    if np.any(counts == 0):
        raise ValueError(f"Videos without samples: indices {np.flatnonzero(counts == 0).tolist()}")
    totals = np.zeros((num_videos, scores.shape[1]))
    np.add.at(totals, index, scores)
    return totals / counts[:, None]  # (videos, C)


def fuse_scores(
    appearance: np.ndarray, motion: np.ndarray, weights: tuple[float, float] = TWO_STREAM_WEIGHTS
) -> np.ndarray:
    """Two-stream score: `weights[0] * appearance + weights[1] * motion` (paper: 1/3, 2/3)."""
    appearance, motion = np.asarray(appearance), np.asarray(motion)
    if appearance.shape != motion.shape:
        raise ValueError(
            f"Expected scores of one shape. Received: {appearance.shape} and {motion.shape}"
        )
    if len(weights) != 2 or min(weights) < 0:
        raise ValueError(f"Expected two weights >= 0. Received: weights={weights}")
    return weights[0] * appearance + weights[1] * motion


# === Accuracy ===


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest score is the label."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],) or len(labels) == 0:
        raise ValueError(
            f"Expected scores (n, C), labels (n,), n >= 1. Received: {scores.shape}, {labels.shape}"
        )
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def confusion_matrix(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`(C, C)` counts: row = true class, column = predicted class."""
    predicted = np.argmax(np.asarray(scores), axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), predicted), 1)
    return matrix


def per_class_accuracy(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`(C,)` accuracy of each true class; NaN for a class with no test video."""
    matrix = confusion_matrix(scores, labels, num_classes)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def mean_over_splits(accuracies: dict[int, float]) -> tuple[float, list[int]]:
    """The reported figure: mean accuracy over the splits present, and which splits."""
    if not accuracies:
        raise ValueError("Expected at least one split's accuracy. Received: {}")
    splits = sorted(accuracies)
    return float(np.mean([accuracies[split] for split in splits])), splits


# === Per-video scores of a run ===


@dataclass(frozen=True)
class VideoScores:
    """Per-video class scores of one run on its test split (`test_scores.npz`).

    Attributes:
        video_ids: `(videos,)` ids, e.g. "Punch/v_Punch_g01_c01".
        labels: `(videos,)` true class indices.
        scores: `(videos, C)` video scores (mean over samples of the last-10 means).
        class_names: `(C,)` names; `labels` index them.
    """

    video_ids: tuple[str, ...]
    labels: np.ndarray
    scores: np.ndarray
    class_names: tuple[str, ...]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            video_ids=np.asarray(self.video_ids, dtype=str),
            labels=np.asarray(self.labels, dtype=np.int64),
            scores=np.asarray(self.scores, dtype=np.float64),
            class_names=np.asarray(self.class_names, dtype=str),
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> VideoScores:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                video_ids=tuple(data["video_ids"].tolist()),
                labels=data["labels"],
                scores=data["scores"],
                class_names=tuple(data["class_names"].tolist()),
            )

    def accuracy(self) -> float:
        return accuracy(self.scores, self.labels)

    def metrics(self) -> dict:
        """Accuracy, per-class accuracy and confusion matrix, JSON-ready."""
        num_classes = len(self.class_names)
        per_class = per_class_accuracy(self.scores, self.labels, num_classes)
        return {
            "accuracy": self.accuracy(),
            "num_videos": len(self.video_ids),
            "per_class_accuracy": {
                name: (None if np.isnan(value) else float(value))
                for name, value in zip(self.class_names, per_class, strict=True)
            },
            "confusion_matrix": confusion_matrix(self.scores, self.labels, num_classes).tolist(),
            "class_names": list(self.class_names),
        }


def fuse_video_scores(
    appearance: VideoScores, motion: VideoScores, weights=TWO_STREAM_WEIGHTS
) -> VideoScores:
    """Two-stream scores of the videos, paired by video id (both runs must hold the
    same videos and classes)."""
    if appearance.class_names != motion.class_names:
        raise ValueError(
            "Expected both streams to have the same classes. Received: "
            f"{appearance.class_names} and {motion.class_names}"
        )
    if set(appearance.video_ids) != set(motion.video_ids):
        only = sorted(set(appearance.video_ids) ^ set(motion.video_ids))
        raise ValueError(f"The streams were scored on different videos, e.g. {only[:5]}")
    position = {video_id: index for index, video_id in enumerate(motion.video_ids)}
    order = np.asarray([position[video_id] for video_id in appearance.video_ids])
    if not np.array_equal(motion.labels[order], appearance.labels):
        raise ValueError("The streams disagree on the labels of some videos.")
    return VideoScores(
        video_ids=appearance.video_ids,
        labels=appearance.labels,
        scores=fuse_scores(appearance.scores, motion.scores[order], weights),
        class_names=appearance.class_names,
    )


def predict_video_scores(model, dataset, num_last_steps: int = NUM_SCORED_STEPS) -> np.ndarray:
    """`(videos, C)` scores of a model on an unshuffled `data.samples.SampleDataset`."""
    if dataset.shuffle:
        raise ValueError("Expected an unshuffled SampleDataset (shuffle=False) to score.")
    probabilities = model.predict(dataset, verbose=1)  # (samples, steps, C)
    return video_scores(
        sample_scores(probabilities, num_last_steps),
        dataset.sample_video_index,
        num_videos=len(dataset.video_ids),
    )


def score_run(
    run: Run | str | os.PathLike,
    store_root: str | os.PathLike | None = None,
    batch_size: int = 64,
    model=None,
) -> dict:
    """Scores a run's best model (`model.keras`) on its test split.

    Reads the run's record (the test videos, labels, classes and feature store) and
    writes `test_scores.npz` and `metrics.json`. Returns the metrics. `model`: that
    best model already in memory (`training.train_attention.ModelCache.best`), so that
    it is not loaded and traced again; default: loaded from `model.keras`.
    """
    run = run if isinstance(run, Run) else Run(run)
    record = run.load_config()
    store = FeatureStore(store_root or record.feature_store)
    items = list(record.test_videos)
    for video_id, _ in items:  # the test features must be those the model was trained on
        stored = FeatureRecipe.from_metadata(store.read_metadata(video_id))
        if stored != record.features:
            raise ValueError(
                f"{store.path_for(video_id)} was made with another recipe than the features "
                f"{run.root} was trained on (weights {stored.weights!r} against "
                f"{record.features.weights!r}, ...). Score with the run's own store, or "
                "train the run again on these features."
            )
    dataset = SampleDataset(
        store,
        items,
        batch_size=batch_size,
        num_frames=record.train.num_frames,
        stride=record.train.stride,
    )
    scores = VideoScores(
        video_ids=tuple(video_id for video_id, _ in items),
        labels=np.asarray([label for _, label in items], dtype=np.int64),
        scores=predict_video_scores(model if model is not None else run.load_model(), dataset),
        class_names=record.class_names,
    )
    scores.save(run.scores_path)
    metrics = {**scores.metrics(), "split": record.train.split, "scored_with": Run.MODEL}
    run.write_metrics(metrics)
    return metrics


def load_scores(run: Run) -> VideoScores:
    """The per-video test scores of a scored run."""
    return VideoScores.load(run.scores_path)


# === Stage ===


@dataclass(frozen=True)
class ScoringConfig:
    """Score run folders (`run`), or fuse two scored runs' streams (`fuse`)."""

    run: tuple[Path, ...] | None = field(
        default=None, metadata={"nargs": "+", "help": "run folders to score"}
    )
    fuse: tuple[Path, Path] | None = field(
        default=None,
        metadata={
            "nargs": 2,
            "metavar": ("APPEARANCE_RUN", "MOTION_RUN"),
            "help": "print the two-stream accuracy of two scored runs",
        },
    )
    store: Path | None = field(default=None, metadata={"help": "override the run's store"})
    weights: tuple[float, float] = field(default=TWO_STREAM_WEIGHTS, metadata={"nargs": 2})
    batch_size: int = 64

    def __post_init__(self):
        if (self.run is None) == (self.fuse is None):
            raise ValueError("Expected exactly one of --run and --fuse.")


def run(config: ScoringConfig) -> dict:
    """`run`: scores each run, returns `run folder -> metrics`; `fuse`: returns the
    appearance, motion and two-stream accuracy of two scored runs."""
    if config.fuse:
        appearance, motion = (load_scores(Run(folder)) for folder in config.fuse)
        fused = fuse_video_scores(appearance, motion, tuple(config.weights))
        result = {
            "appearance": appearance.accuracy(),
            "motion": motion.accuracy(),
            "two_stream": fused.accuracy(),
        }
        print(", ".join(f"{name} {100 * value:.1f}%" for name, value in result.items()))
        return result
    results = {}
    for folder in config.run:
        metrics = score_run(Run(folder), config.store, config.batch_size)
        print(
            f"{folder}: accuracy {100 * metrics['accuracy']:.1f}% on {metrics['num_videos']} videos"
        )
        results[str(folder)] = metrics
    return results


# === Command line ===


def parse_args(argv: Sequence[str] | None = None) -> ScoringConfig:
    return parse_config(ScoringConfig, argv, prog="python -m evaluation.scoring", doc=__doc__)


def main(argv: Sequence[str] | None = None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    exit_on_error(main)
