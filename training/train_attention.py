"""Trains the attention recogniser (or its mean-pooling baseline) for one stream and split.

Features come from the feature store (`training.extract_features`); 30-frame samples
(section 3.2) are fed to `model.fit` with the paper's loss (eq. 8) and Adadelta. A
validation subset, held out from the training list by video, picks the best epoch.
Each run writes one folder (see `run_dir_for`):

    runs/<dataset>/split<k>/<stream>/<attention|baseline>/
        config.json        settings, classes, train/validation/test videos, feature recipe
        model.keras        the best epoch (validation accuracy of the last-10 score)
        backup/            last finished epoch, for resuming (removed when fit completes)
        history.csv        one row per epoch (loss, accuracy, validation loss, accuracy)
        tensorboard/       TensorFlow backend only
        test_scores.npz    per-video test scores (evaluation.scoring)
        metrics.json       test accuracy, per-class accuracy, confusion matrix

    python -m training.train_attention --stream appearance --model attention \
        --video-root UCF-101 --split-dir ucfTrainTestlist --split 1 \
        --store features/ucf101/appearance --runs runs

Re-running the same command after an interruption resumes from the last finished
epoch; re-running a finished run does nothing (`--overwrite` retrains).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from models.recognizer import DEFAULT_DROPOUT, DEFAULT_WEIGHT_DECAY, build_attention_model

MODELS = ("attention", "baseline")
STREAMS = ("appearance", "motion")
# Feature-store metadata that says how the features were made (predict rebuilds it).
FEATURE_RECIPE_KEYS = (
    "stream", "backbone", "feature_layer", "weights", "input_size", "crop", "preprocess",
    "precision", "feature_dim", "fc_units", "width_multiplier", "batch_norm", "frame_size",
    "flow_method", "flow_size",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; defaults are the paper's (section 3.2) where it
    speaks, and the documented choices where it is silent."""

    dataset: str = "ucf101"  # "ucf101" or "hmdb51"
    split: int = 1  # official split 1, 2 or 3
    stream: str = "appearance"  # "appearance" (RGB) or "motion" (flow stacks)
    model: str = "attention"  # "attention" (eq. 4-6) or "baseline" (mean of the features)
    units: int = 512  # LSTM memory cells per layer (paper: 512)
    num_layers: int = 2  # stacked LSTM layers (paper: 2)
    num_steps: int = 30  # recurrent steps (paper: 30)
    num_frames: int = 30  # frames per sample (paper: 30)
    stride: int = 30  # frames between sample starts (paper silent: no overlap)
    dropout: float = DEFAULT_DROPOUT  # paper silent: Zaremba et al.'s 0.5
    weight_decay: float = DEFAULT_WEIGHT_DECAY  # gamma of eq. 8 (paper silent)
    epochs: int = 30  # paper silent; the best epoch on validation is kept
    batch_size: int = 32  # samples per batch (paper silent)
    validation_fraction: float = 0.1  # of each class's training videos (paper silent)
    seed: int = 0  # validation hold-out, shuffling, initialisation, dropout
    classes: tuple[str, ...] | None = None  # class subset; None = all

    def __post_init__(self):
        checks = {
            "stream": self.stream in STREAMS,
            "model": self.model in MODELS,
            "split": self.split in (1, 2, 3),
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "validation_fraction": 0.0 <= self.validation_fraction < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Invalid {name}. Received: {name}={getattr(self, name)!r}")


PRESETS = {
    # The paper's model with the documented choices where it is silent.
    "paper": TrainConfig(),
    # Seconds on a CPU: for smoke runs and tests on generated data.
    "tiny": TrainConfig(units=8, num_layers=1, num_steps=12, epochs=2, batch_size=8),
}


def run_dir_for(runs_root: str | os.PathLike, config: TrainConfig) -> Path:
    """`<runs_root>/<dataset>/split<k>/<stream>/<model>`."""
    return Path(runs_root) / config.dataset / f"split{config.split}" / config.stream / config.model


# === Data ===


def hold_out_validation(clips: Sequence, fraction: float, seed: int = 0) -> tuple[list, list]:
    """Splits training clips into (train, validation) by video, per class.

    Each class gives `round(fraction * n)` of its `n` videos (at least 1 when
    `fraction > 0` and it has 2 or more), chosen with `seed`. UCF101 groups
    (g01..g25) are not kept together: the official test split already does that.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[int, list] = {}
    for clip in clips:
        by_label.setdefault(clip.label, []).append(clip)
    held_out = set()
    for label in sorted(by_label):
        members = by_label[label]
        count = int(round(fraction * len(members)))
        if fraction > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        for index in rng.permutation(len(members))[:count]:
            held_out.add(members[index].video_id)
    train = [clip for clip in clips if clip.video_id not in held_out]
    validation = [clip for clip in clips if clip.video_id in held_out]
    return train, validation


def feature_recipe(store, video_id: str, stream: str) -> dict:
    """How the stored features were made (from the store's metadata)."""
    metadata = store.read_metadata(video_id)
    stored_stream = metadata.get("stream")
    if stored_stream is not None and stored_stream != stream:
        raise ValueError(
            f"The store {store.root} holds {stored_stream!r} features; "
            f"this run trains stream={stream!r}."
        )
    return {key: metadata[key] for key in FEATURE_RECIPE_KEYS if key in metadata}


# === Training ===


def make_callbacks(run_dir: Path, has_validation: bool) -> list[keras.callbacks.Callback]:
    """Best checkpoint, resume backup, CSV log, and TensorBoard on TensorFlow."""
    monitor = "val_last_steps_accuracy" if has_validation else "last_steps_accuracy"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "model.keras"), monitor=monitor, mode="max", save_best_only=True
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    return callbacks


def tensorboard_available() -> bool:
    """Keras' TensorBoard callback writes through `tf.summary`: TensorFlow backend only,
    with the `tensorboard` package installed."""
    import importlib.util

    return (
        keras.backend.backend() == "tensorflow"
        and importlib.util.find_spec("tensorboard") is not None
    )


def _run_record(config, split, train, validation, store_root, recipe) -> dict:
    return {
        "train": dataclasses.asdict(config),
        "class_names": list(split.class_names),
        "feature_store": str(store_root),
        "features": recipe,
        "train_videos": [[clip.video_id, clip.label] for clip in train],
        "validation_videos": [[clip.video_id, clip.label] for clip in validation],
        "test_videos": [[clip.video_id, clip.label] for clip in split.test],
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
    }


def train(
    config: TrainConfig,
    *,
    split,
    store_root: str | os.PathLike,
    run_dir: str | os.PathLike,
    overwrite: bool = False,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict:
    """Trains one run into `run_dir`, then scores its best model on `split.test`.

    Args:
        config: The run's settings.
        split: A `data.splits.Split` (the classes, training and test clips).
        store_root: Feature store of `config.stream`.
        run_dir: The run folder; an unfinished run there is resumed.
        overwrite: Delete a previous run in `run_dir` first.
        extra_callbacks: Appended to the run's callbacks (tests interrupt with one).

    Returns:
        The test metrics (also in `metrics.json`).
    """
    from data.feature_store import FeatureStore
    from data.samples import SampleDataset
    from evaluation.scoring import METRICS_FILE, score_run

    run_dir = Path(run_dir)
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    store = FeatureStore(store_root)
    train_clips, validation_clips = hold_out_validation(
        split.train, config.validation_fraction, config.seed
    )
    recipe = feature_recipe(store, train_clips[0].video_id, config.stream)
    record = _run_record(config, split, train_clips, validation_clips, store_root, recipe)
    config_path = run_dir / "config.json"
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        changed = [
            key
            for key in ("train", "class_names", "train_videos")
            if previous.get(key) != record[key]
        ]
        if changed:
            raise ValueError(
                f"{run_dir} holds a run with other settings ({', '.join(changed)} differ). "
                "Use another --runs folder, or --overwrite to replace it."
            )
        if (run_dir / METRICS_FILE).is_file():
            print(f"{run_dir}: already trained and scored; --overwrite retrains it.")
            return json.loads((run_dir / METRICS_FILE).read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(record, indent=2))

    def dataset(clips, shuffle):
        return SampleDataset(
            store,
            [(clip.video_id, clip.label) for clip in clips],
            batch_size=config.batch_size,
            num_frames=config.num_frames,
            stride=config.stride,
            shuffle=shuffle,
            seed=config.seed,
        )

    train_data = dataset(train_clips, shuffle=True)
    validation_data = dataset(validation_clips, shuffle=False) if validation_clips else None
    keras.utils.set_random_seed(config.seed)
    model = build_attention_model(
        len(split.class_names),
        feature_dim=train_data.feature_dim,
        num_frames=config.num_frames,
        units=config.units,
        num_layers=config.num_layers,
        num_steps=config.num_steps,
        use_attention=config.model == "attention",
        dropout=config.dropout,
        weight_decay=config.weight_decay,
        frame_mask_input=True,
        seed=config.seed,
    )
    model.fit(
        train_data,
        validation_data=validation_data,
        epochs=config.epochs,
        callbacks=[*make_callbacks(run_dir, validation_data is not None), *extra_callbacks],
        verbose=verbose,
    )
    metrics = score_run(run_dir, store_root, batch_size=config.batch_size)
    print(f"{run_dir}: test accuracy {100 * metrics['accuracy']:.1f}%")
    return metrics


# === Command line ===


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_attention", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--video-root", type=Path, required=True)
    parser.add_argument("--split-dir", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True, help="feature store of the stream")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="root of run folders")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--classes", default=None, help="comma-separated class subset")
    for field in dataclasses.fields(TrainConfig):
        if field.name == "classes":
            continue
        kind = type(field.default) if field.default is not None else str
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=None)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset, with every flag given on the command line overriding its field."""
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainConfig)
        if field.name != "classes" and getattr(args, field.name) is not None
    }
    if args.classes:
        overrides["classes"] = tuple(args.classes.split(","))
    return dataclasses.replace(PRESETS[args.preset], **overrides)


def main(argv: Sequence[str] | None = None) -> dict:
    from data.splits import load_split

    args = parse_args(argv)
    config = config_from_args(args)
    split = load_split(
        config.dataset, args.video_root, args.split_dir, split=config.split, classes=config.classes
    )
    run_dir = run_dir_for(args.runs, config)
    print(f"{config.stream} {config.model}, {config.dataset} split {config.split} -> {run_dir}")
    return train(
        config, split=split, store_root=args.store, run_dir=run_dir, overwrite=args.overwrite
    )


if __name__ == "__main__":
    main()
