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

Scores belong to one model: `test_scores.npz` and `metrics.json` record the SHA-256 of
the `model.keras` they were computed from (and its epoch). A run whose training is
unfinished is not scored; scores whose model file has changed since (a resumed or
retrained run), or that record no model, are stale: every reader (`load_scores`,
`load_metrics`, the tables) refuses them, and `--fuse` scores such a run again. A model
whose scores are not finite (a loss gone NaN) is a failed run, never an accuracy.

Averaging is linear, so fusing video scores equals averaging fused sample scores
whenever both streams cut a video into the same samples. They need not: a motion
stream has 5 fewer flow stacks than the video has frames, hence fusion pairs videos
(by id), not samples.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.samples import SampleDataset
from temporal_attention.models.feature_extraction import FeatureRecipe, file_sha256
from temporal_attention.models.recognizer import NUM_SCORED_STEPS, last_steps_scores
from temporal_attention.models.two_stream_vgg16 import STREAMS
from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.training.runs import Run

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
    """Fraction of rows whose highest score is the label (scores must be finite)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],) or len(labels) == 0:
        raise ValueError(
            f"Expected scores (n, C), labels (n,), n >= 1. Received: {scores.shape}, {labels.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Expected finite scores. Received: NaN or inf in {num_non_finite(scores)} of "
            f"{len(scores)} rows (a model whose training diverged?)"
        )
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def num_non_finite(scores: np.ndarray) -> int:
    """Rows of `(n, C)` scores holding NaN or inf."""
    return int(np.sum(~np.all(np.isfinite(np.asarray(scores)), axis=1)))


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
        model_sha256: SHA-256 of the `model.keras` that gave the scores; None for
            scores of no single model file (fused ones) or of a file that predates it.
        model_epoch: That model's epoch as `history.csv` counts them (from 0); None
            when unknown.
    """

    video_ids: tuple[str, ...]
    labels: np.ndarray
    scores: np.ndarray
    class_names: tuple[str, ...]
    model_sha256: str | None = None
    model_epoch: int | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the `.npz` atomically: a reader finds the old file or the new one."""
        path = Path(path)
        with atomic_write(path, suffix=".npz") as temporary:
            np.savez(
                temporary,
                video_ids=np.asarray(self.video_ids, dtype=str),
                labels=np.asarray(self.labels, dtype=np.int64),
                scores=np.asarray(self.scores, dtype=np.float64),
                class_names=np.asarray(self.class_names, dtype=str),
                model_sha256=np.asarray(self.model_sha256 or "", dtype=str),
                model_epoch=np.asarray(-1 if self.model_epoch is None else self.model_epoch),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> VideoScores:
        """The file as written, checked for nothing (a run's scores: `load_scores`)."""
        with np.load(path, allow_pickle=False) as data:
            sha256 = str(data["model_sha256"]) if "model_sha256" in data else ""
            epoch = int(data["model_epoch"]) if "model_epoch" in data else -1
            return cls(
                video_ids=tuple(data["video_ids"].tolist()),
                labels=data["labels"],
                scores=data["scores"],
                class_names=tuple(data["class_names"].tolist()),
                model_sha256=sha256 or None,
                model_epoch=None if epoch < 0 else epoch,
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


# === Which model the scores belong to ===


def check_trained(run: Run) -> None:
    """Raises `ValueError` unless `run` finished training: a `model.keras` and no
    `backup/` of an interrupted fit (whose `model.keras` is only the best epoch so far)."""
    if not run.model_path.is_file():
        raise ValueError(
            f"{run.root} has no {Run.MODEL}: it is not trained. Train it with "
            "`python -m training.train_attention`."
        )
    if not run.is_trained():
        raise ValueError(
            f"{run.root}: training is unfinished ({Run.BACKUP}/ holds an interrupted fit; "
            f"{Run.MODEL} is only its best epoch so far). Resume it: run "
            "`python -m training.train_attention` again with the same flags (a fit whose "
            "loss diverged: with --overwrite and a smaller --learning-rate), then score it."
        )


def model_epoch(run: Run) -> int | None:
    """The epoch `model.keras` holds, as `history.csv` counts them (from 0): the first
    with the best validation last-10 accuracy (the training checkpoint's choice; the
    training last-10 accuracy without a validation part). None when unknown."""
    if not run.history_path.is_file():
        return None
    with open(run.history_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for monitor in ("val_last_steps_accuracy", "last_steps_accuracy"):
        values = np.asarray([_number(row.get(monitor)) for row in rows])
        if len(values) and np.isfinite(values).any():
            best = int(np.nanargmax(values))
            epoch = rows[best].get("epoch", "")
            return int(epoch) if epoch.isdigit() else best
    return None


def _number(text: str | None) -> float:
    """A `history.csv` value; NaN for an empty or "NA" one (Keras' CSVLogger)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _score_again(run: Run) -> str:
    return f"score it again: python -m evaluation.scoring --run {run.root}"


def stale_scores(run: Run, model_sha256: str | None, file: Path) -> str | None:
    """Why scores recorded as computed from `model_sha256` are not those of the run's
    `model.keras` now (`file`: where they were read), or None when they are."""
    if model_sha256 is None:
        return (
            f"{file} does not record which {Run.MODEL} it was computed from (written "
            "before scores recorded their model), so it may be stale"
        )
    if model_sha256 != file_sha256(run.model_path):
        return (
            f"{file} was computed from another {Run.MODEL} than the one now in {run.root} "
            "(trained or resumed since): it is stale"
        )
    return None


def _scores_problem(run: Run) -> tuple[VideoScores | None, str | None]:
    """The run's stored test scores and why they are not usable now (None: they are)."""
    if not run.scores_path.is_file():
        return None, f"{run.root} is not scored (no {Run.SCORES})"
    scores = VideoScores.load(run.scores_path)
    problem = stale_scores(run, scores.model_sha256, run.scores_path)
    if problem is None and num_non_finite(scores.scores):
        problem = f"{run.scores_path} holds NaN or inf scores: a failed run"
    return scores, problem


def load_scores(run: Run) -> VideoScores:
    """The per-video test scores of a trained run, computed from its `model.keras` as it
    is now.

    Raises:
        ValueError: The run's training is unfinished, it is not scored, or its scores
            are stale (its model changed since, or they record no model); the message
            names the run and says what to do.
    """
    check_trained(run)
    scores, problem = _scores_problem(run)
    if problem is not None:
        raise ValueError(f"{problem}; {_score_again(run)}")
    return scores


def load_metrics(run: Run) -> dict:
    """The run's `metrics.json`, checked as `load_scores` checks its scores."""
    check_trained(run)
    if not run.metrics_path.is_file():
        raise ValueError(f"{run.root} is not scored (no {Run.METRICS}); {_score_again(run)}")
    metrics = json.loads(run.metrics_path.read_text())
    problem = stale_scores(run, metrics.get("model_sha256"), run.metrics_path)
    if problem is not None:
        raise ValueError(f"{problem}; {_score_again(run)}")
    return metrics


# === Scoring a run ===


def score_run(
    run: Run | str | os.PathLike,
    store_root: str | os.PathLike | None = None,
    batch_size: int = 64,
    model=None,
) -> dict:
    """Scores a run's best model (`model.keras`) on its test split.

    Reads the run's record (the test videos, labels, classes and feature store) and
    writes `test_scores.npz` and `metrics.json`, both naming the model file (SHA-256)
    and its epoch. Returns the metrics. `model`: that best model already in memory
    (`training.train_attention.ModelCache.best`), so that it is not loaded and traced
    again; default: loaded from `model.keras`.

    Raises:
        ValueError: The run's training is unfinished, its test features are not those
            it was trained on, `model.keras` changed while it was scored, or its scores
            are not finite (a failed run: nothing is written).
    """
    run = run if isinstance(run, Run) else Run(run)
    record = run.load_config()
    check_trained(run)
    model_sha256 = file_sha256(run.model_path)
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
        model_sha256=model_sha256,
        model_epoch=model_epoch(run),
    )
    if num_non_finite(scores.scores):
        raise ValueError(
            f"{run.root} is a failed run: its {Run.MODEL} gives NaN or inf scores on "
            f"{num_non_finite(scores.scores)} of {len(items)} test videos (its training "
            "diverged). Nothing was written; train it again (e.g. with a lower "
            "--learning-rate or another --seed)."
        )
    if file_sha256(run.model_path) != model_sha256:
        raise ValueError(
            f"{run.model_path} changed while it was being scored (a trainer writing it?). "
            "Nothing was written; score it again once its training is over."
        )
    scores.save(run.scores_path)
    metrics = {
        **scores.metrics(),
        "split": record.train.split,
        "scored_with": Run.MODEL,
        "model_sha256": model_sha256,
        "model_epoch": scores.model_epoch,
    }
    with atomic_write(run.metrics_path) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2))
    return metrics


def fusable_runs(appearance: Run, motion: Run) -> None:
    """Raises `ValueError` unless `appearance` and `motion` are two runs of those
    streams (their test videos and classes are compared with their scores)."""
    if appearance.root.resolve() == motion.root.resolve():
        raise ValueError(
            f"{appearance.root} is given twice: fuse an appearance run with a motion run."
        )
    for trained, stream in zip((appearance, motion), STREAMS, strict=True):
        recorded = trained.load_config().train.stream
        if recorded != stream:
            raise ValueError(
                f"{trained.root} is a {recorded} run, given as the {stream} run: "
                "--fuse takes APPEARANCE_RUN MOTION_RUN, in that order."
            )


def is_scored(run: Run) -> bool:
    """Whether `run` holds scores of its current model (`load_metrics` accepts them):
    scores of an earlier model, or of none recorded, are to be scored again."""
    try:
        load_metrics(run)
    except ValueError:
        return False
    return True


def current_scores(run: Run, store_root=None, batch_size: int = 64) -> VideoScores:
    """`load_scores`, but a trained run whose scores are missing or stale is scored
    (again) first, as the scoring stage may."""
    check_trained(run)
    _, problem = _scores_problem(run)
    if problem is not None:
        print(f"{problem}: scoring it again.")
        score_run(run, store_root, batch_size)
    return load_scores(run)


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
        runs = [Run(folder) for folder in config.fuse]
        fusable_runs(*runs)
        for trained in runs:  # both, before either is scored again
            check_trained(trained)
        appearance, motion = (
            current_scores(trained, config.store, config.batch_size) for trained in runs
        )
        try:
            fused = fuse_video_scores(appearance, motion, tuple(config.weights))
        except ValueError as error:
            raise ValueError(
                f"{runs[0].root} and {runs[1].root} cannot be fused: {error}"
            ) from None
        result = {
            "appearance": appearance.accuracy(),
            "motion": motion.accuracy(),
            "two_stream": fused.accuracy(),
        }
        print(", ".join(f"{name} {100 * value:.1f}%" for name, value in result.items()))
        return result
    for folder in config.run:  # every run, before the first is scored
        Run(folder).load_config()
        check_trained(Run(folder))
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
