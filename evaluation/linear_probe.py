"""A reference row for Table 1: softmax regression on each video's mean frame feature.

Not the paper's method: a plain linear classifier that shows how much a stream's
features hold before any temporal model. Per stream and split:

1. each video's feature is the mean of its stored frame features;
2. features are standardised with the training list's mean and standard deviation;
3. a softmax regression with L2 penalty `l2` is fitted by full-batch gradient
   descent (convex: the result depends on the data only, not on a seed or backend);
   `l2` is chosen from `L2_GRID` on a validation part held out of the training list as
   `training.train_attention` holds it out (whole UCF101 groups), then the classifier
   is refitted on the whole training list;
4. test accuracy per stream, and two-stream as 1/3 appearance + 2/3 motion of the
   class probabilities (the paper's fusion).

    python -m evaluation.linear_probe --video-root UCF-101 --split-dir ucfTrainTestlist \
        --splits 1 2 3 --appearance-store features/appearance \
        --motion-store features/motion --output evaluation/results/linear_probe

writes `linear_probe.csv` (one row per split and stream) and `linear_probe.md` (the
mean over the splits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.splits import SPLITS, SplitSource, hold_out_validation
from temporal_attention.evaluation.scoring import TWO_STREAM_WEIGHTS
from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.config_flags import exit_on_error, parse_config

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
ITERATIONS = 1000
VALIDATION_FRACTION = 0.1  # as training.runs.TrainConfig


def mean_features(store: FeatureStore, video_ids: Sequence[str]) -> np.ndarray:
    """`(videos, dim)` float64: the mean stored frame feature of each video."""
    return np.stack(
        [store.read(video_id)[0].astype(np.float64).mean(axis=0) for video_id in video_ids]
    )


def fit_softmax(
    features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weights `(dim, classes)` and biases `(classes,)` minimising the mean cross-entropy
    plus `l2 / 2 * |W|^2`, by `ITERATIONS` steps of gradient descent with step
    `1 / L` (L bounds the curvature: `0.5 * |X|_2^2 / n + l2`)."""
    num_videos, dim = features.shape
    targets = np.eye(num_classes)[labels]  # (videos, classes)
    design = np.concatenate([features, np.ones((num_videos, 1))], axis=1)  # bias column
    step = 1.0 / (0.5 * np.linalg.norm(design, 2) ** 2 / num_videos + l2)
    weights = np.zeros((dim + 1, num_classes))
    penalty = np.ones((dim + 1, 1))
    penalty[-1] = 0.0  # the bias is not penalised
    for _ in range(ITERATIONS):
        probabilities = softmax(design @ weights)
        gradient = design.T @ (probabilities - targets) / num_videos + l2 * penalty * weights
        weights -= step * gradient
    return weights[:-1], weights[-1]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(array - mean) / std for array in (train, *others)]


def probe_stream(store: FeatureStore, split, validation_by: str = "group") -> dict:
    """Test probabilities `(test videos, classes)` of one stream, the chosen `l2` and
    the validation accuracy of each candidate."""
    num_classes = len(split.class_names)
    fit_part, validation = hold_out_validation(
        split.train, VALIDATION_FRACTION, seed=0, by=validation_by
    )
    validation_accuracy = {}
    if validation:
        train_x, validation_x = _standardise(
            mean_features(store, [clip.video_id for clip in fit_part]),
            mean_features(store, [clip.video_id for clip in validation]),
        )
        train_y = np.array([clip.label for clip in fit_part])
        validation_y = np.array([clip.label for clip in validation])
        for l2 in L2_GRID:
            weights, biases = fit_softmax(train_x, train_y, num_classes, l2)
            predicted = np.argmax(validation_x @ weights + biases, axis=1)
            validation_accuracy[l2] = float(np.mean(predicted == validation_y))
    # The best validation accuracy; ties go to the strongest penalty.
    best = max(L2_GRID, key=lambda l2: (validation_accuracy.get(l2, 0.0), l2))
    train_x, test_x = _standardise(
        mean_features(store, [clip.video_id for clip in split.train]),
        mean_features(store, [clip.video_id for clip in split.test]),
    )
    weights, biases = fit_softmax(
        train_x, np.array([clip.label for clip in split.train]), num_classes, best
    )
    return {
        "probabilities": softmax(test_x @ weights + biases),
        "l2": best,
        "validation_accuracy": validation_accuracy,
    }


@dataclass(frozen=True)
class LinearProbeConfig:
    """The probe of each stream's stored features, on one or more splits."""

    source: SplitSource
    output: Path = field(metadata={"help": "folder for linear_probe.csv and .md"})
    appearance_store: Path | None = field(default=None, metadata={"help": "feature store"})
    motion_store: Path | None = field(default=None, metadata={"help": "feature store"})
    splits: tuple[int, ...] | None = field(
        default=None, metadata={"nargs": "+", "help": "default: --split"}
    )
    validation_by: str = field(default="group", metadata={"choices": ("group", "video")})


def run(config: LinearProbeConfig) -> pd.DataFrame:
    """Probes every stream given on every split; writes and returns the rows."""
    stores = {
        stream: FeatureStore(path)
        for stream, path in (
            ("appearance", config.appearance_store),
            ("motion", config.motion_store),
        )
        if path is not None
    }
    if not stores:
        raise ValueError("Expected --appearance-store and/or --motion-store.")
    splits = config.splits or (config.source.split,)
    if not set(splits) <= set(SPLITS):
        raise ValueError(f"Expected splits in {SPLITS}. Received: splits={splits}")
    rows = []
    for split_number in splits:
        split = dataclasses.replace(config.source, split=split_number).load()
        labels = np.array([clip.label for clip in split.test])
        probabilities = {}
        for stream, store in stores.items():
            probe = probe_stream(store, split, config.validation_by)
            probabilities[stream] = probe["probabilities"]
            rows.append(_row(split_number, stream, probe["probabilities"], labels, probe["l2"]))
        if len(probabilities) == 2:
            fused = (
                TWO_STREAM_WEIGHTS[0] * probabilities["appearance"]
                + TWO_STREAM_WEIGHTS[1] * probabilities["motion"]
            )
            rows.append(_row(split_number, "two-stream", fused, labels, None))
    table = pd.DataFrame(rows)
    config.output.mkdir(parents=True, exist_ok=True)
    with atomic_write(config.output / "linear_probe.csv") as path:
        table.to_csv(path, index=False)
    markdown = to_markdown(table)
    with atomic_write(config.output / "linear_probe.md") as path:
        path.write_text(markdown)
    print(markdown)
    return table


def _row(split: int, stream: str, probabilities, labels, l2) -> dict:
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    return {"split": split, "stream": stream, "accuracy": 100.0 * accuracy, "l2": l2,
            "test_videos": len(labels)}  # fmt: skip


def to_markdown(table: pd.DataFrame) -> str:
    """One line per stream: the accuracy of each split and their mean."""
    splits = sorted(table["split"].unique())
    header = "| linear probe (mean feature) | " + " | ".join(f"split {s}" for s in splits)
    lines = [header + " | mean |", "|---|" + "---:|" * (len(splits) + 1)]
    for stream in ("appearance", "motion", "two-stream"):
        rows = table[table["stream"] == stream].set_index("split")
        if rows.empty:
            continue
        cells = [f"{rows.loc[s, 'accuracy']:.1f}" if s in rows.index else "-" for s in splits]
        lines.append(f"| {stream} | " + " | ".join(cells) + f" | {rows['accuracy'].mean():.1f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> LinearProbeConfig:
    return parse_config(
        LinearProbeConfig, argv, prog="python -m evaluation.linear_probe", doc=__doc__
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    return run(parse_args(argv))


if __name__ == "__main__":
    exit_on_error(main)
