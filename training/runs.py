"""Training runs: their settings (`TrainConfig`, presets) and their folders (`Run`).

A run is one attention model (or its mean-pooling baseline) trained for one stream of
one split. Its folder is `<runs>/<dataset>/split<k>/<stream>/<model>/`:

    config.json        the record: settings, classes, train/validation/test videos,
                       the feature store (absolute path) and the recipe of its features
    model.keras        the best epoch (validation accuracy of the last-10 score)
    backup/            the last finished epoch, for resuming (removed when fit completes)
    history.csv        one row per epoch (loss, accuracy, validation loss, accuracy)
    tensorboard/       Keras' TensorBoard logs (every backend)
    test_scores.npz    per-video test scores (`evaluation.scoring`)
    metrics.json       test accuracy, per-class accuracy, confusion matrix
    training.lock      while a trainer runs: its pid (a second trainer is refused)

Every stage that reads or writes a run (training, scoring, tables, attention, predict,
the demo) goes through `Run`:

    run = Run.for_config("runs", TrainConfig(stream="motion"))
    record = run.load_config()       # RunRecord: TrainConfig, FeatureRecipe, videos, ...
    model = run.load_model()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from temporal_attention.data.splits import DATASETS, HOLD_OUTS, SPLITS
from temporal_attention.models.feature_extraction import FeatureRecipe
from temporal_attention.models.recognizer import DEFAULT_DROPOUT, DEFAULT_WEIGHT_DECAY
from temporal_attention.models.two_stream_vgg16 import STREAMS
from temporal_attention.runtime.atomic_files import LockHeldError, PidLock

MODELS = ("attention", "baseline")
# Frame features as stored ("none", the paper's) or standardised with the training
# part's per-dimension mean and variance (an extension).
FEATURE_SCALINGS = ("none", "standardize")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; defaults are the paper's (section 3.2) where it
    speaks, and the documented choices where it is silent."""

    dataset: str = field(default="ucf101", metadata={"choices": DATASETS})
    split: int = field(default=1, metadata={"choices": SPLITS})  # official split 1, 2 or 3
    # "appearance" (RGB) or "motion" (flow stacks).
    stream: str = field(default="appearance", metadata={"choices": STREAMS})
    # "attention" (eqs. 4-6) or "baseline" (the mean of the features).
    model: str = field(default="attention", metadata={"choices": MODELS})
    units: int = 512  # LSTM memory cells per layer (paper: 512)
    num_layers: int = 2  # stacked LSTM layers (paper: 2)
    num_steps: int = 30  # recurrent steps (paper: 30)
    num_frames: int = 30  # frames per sample (paper: 30)
    stride: int = 30  # frames between sample starts (paper silent: no overlap)
    # Frames between the training samples' starts; None: `stride`. An extension: a
    # smaller value trains on overlapping windows (temporal augmentation); validation
    # and test keep `stride`.
    train_stride: int | None = field(
        default=None,
        metadata={"help": "frames between training samples' starts (extension; default: stride)"},
    )
    dropout: float = DEFAULT_DROPOUT  # paper silent: Zaremba et al.'s 0.5
    weight_decay: float = DEFAULT_WEIGHT_DECAY  # gamma of eq. 8 (paper silent)
    epochs: int = 30  # paper silent; the best epoch on validation is kept
    # Stop after this many epochs without a better validation score (0: never).
    patience: int = field(
        default=0, metadata={"help": "stop after this many epochs without progress (0: never)"}
    )
    learning_rate: float = 1.0  # of Adadelta (paper: Adadelta; Zeiler's 1.0)
    # Alpha of mixup on the training samples (data.samples.MixupDataset; Zhang et al.
    # 2018). An extension: 0, the paper's, trains on the samples as they are.
    mixup: float = field(
        default=0.0, metadata={"help": "alpha of mixup on training samples (extension; 0: off)"}
    )
    # "standardize": frame features minus the training part's mean, over its std.
    feature_scaling: str = field(default="none", metadata={"choices": FEATURE_SCALINGS})
    batch_size: int = 32  # samples per batch (paper silent)
    validation_fraction: float = 0.1  # of the training list (paper silent)
    # "group": whole UCF101 groups (same actors and scenes), as the official test lists
    # are made; "video": any videos. HMDB51 has no groups: by video either way.
    validation_by: str = field(default="group", metadata={"choices": HOLD_OUTS})
    seed: int = field(
        default=0, metadata={"help": "seed of the validation hold-out, shuffling, init, dropout"}
    )
    # Class subset; None = all.
    classes: tuple[str, ...] | None = field(
        default=None, metadata={"help": "comma-separated class subset"}
    )

    def __post_init__(self):
        finite = math.isfinite
        checks = {  # name: (valid, what is expected)
            "stream": (self.stream in STREAMS, f"one of {STREAMS}"),
            "model": (self.model in MODELS, f"one of {MODELS}"),
            "split": (self.split in SPLITS, f"one of {SPLITS}"),
            "units": (self.units >= 1, "an integer >= 1"),
            "num_layers": (self.num_layers >= 1, "an integer >= 1"),
            "num_steps": (self.num_steps >= 1, "an integer >= 1"),
            "num_frames": (self.num_frames >= 1, "an integer >= 1"),
            "stride": (self.stride >= 1, "an integer >= 1"),
            "train_stride": (
                self.train_stride is None or self.train_stride >= 1,
                "None or an integer >= 1",
            ),
            # A rate of 1 drops every unit: nothing would train.
            "dropout": (finite(self.dropout) and 0 <= self.dropout < 1, "a number in [0, 1)"),
            "weight_decay": (
                finite(self.weight_decay) and self.weight_decay >= 0,
                "a finite number >= 0",
            ),
            "epochs": (self.epochs >= 1, "an integer >= 1"),
            "patience": (self.patience >= 0, "an integer >= 0"),
            "learning_rate": (
                finite(self.learning_rate) and self.learning_rate > 0,
                "a finite number > 0",
            ),
            "mixup": (finite(self.mixup) and self.mixup >= 0, "a finite number >= 0"),
            "feature_scaling": (
                self.feature_scaling in FEATURE_SCALINGS,
                f"one of {FEATURE_SCALINGS}",
            ),
            "batch_size": (self.batch_size >= 1, "an integer >= 1"),
            "validation_fraction": (
                0 <= self.validation_fraction < 1,
                "a number in [0, 1)",
            ),
            "validation_by": (self.validation_by in HOLD_OUTS, f"one of {HOLD_OUTS}"),
            "seed": (self.seed >= 0, "an integer >= 0"),
        }
        for name, (valid, expected) in checks.items():
            if not valid:
                raise ValueError(
                    f"Invalid {name}: expected {expected}. Received: {name}={getattr(self, name)!r}"
                )
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))


PRESETS = {
    # The paper's model with the documented choices where it is silent.
    "paper": TrainConfig(),
    # Seconds on a CPU: for smoke runs and tests on generated data.
    "tiny": TrainConfig(units=8, num_layers=1, num_steps=12, epochs=2, batch_size=8),
    # The CPU demo's (evaluation.demo): the paper's model with 64 cells per layer.
    "demo": TrainConfig(units=64),
}


@dataclass(frozen=True)
class RunRecord:
    """What `config.json` holds, typed.

    Attributes:
        train: The run's settings.
        class_names: The classes; labels index them.
        feature_store: The folder of the features it was trained on (absolute, so
            that the run is scored from any working folder; records written before
            may hold the path as it was given).
        features: How those features were made.
        feature_dim: Their size.
        train_videos, validation_videos, test_videos: `(video_id, label)` pairs.
        backend, keras_version: Where it was trained.
        precision: The Keras dtype policy it trained under ("float32", the paper's
            arithmetic, or a mixed policy: `train_attention --precision`); "" in records
            written before it was recorded (float32).
        video_root, split_dir: The split's videos and list files (absolute); None in
            records written before they were recorded.
    """

    train: TrainConfig
    class_names: tuple[str, ...]
    feature_store: Path
    features: FeatureRecipe
    feature_dim: int | None
    train_videos: tuple[tuple[str, int], ...]
    validation_videos: tuple[tuple[str, int], ...]
    test_videos: tuple[tuple[str, int], ...]
    backend: str = ""
    keras_version: str = ""
    video_root: Path | None = None
    split_dir: Path | None = None
    precision: str = ""

    def to_json(self) -> dict:
        features = self.features.metadata()
        if self.feature_dim is not None:
            features["feature_dim"] = self.feature_dim
        return {
            "train": dataclasses.asdict(self.train),
            "class_names": list(self.class_names),
            "feature_store": str(self.feature_store),
            "features": features,
            "train_videos": [list(item) for item in self.train_videos],
            "validation_videos": [list(item) for item in self.validation_videos],
            "test_videos": [list(item) for item in self.test_videos],
            "backend": self.backend,
            "keras_version": self.keras_version,
            "video_root": None if self.video_root is None else str(self.video_root),
            "split_dir": None if self.split_dir is None else str(self.split_dir),
            "precision": self.precision,
        }

    @classmethod
    def from_json(cls, record: dict) -> RunRecord:
        def videos(key):
            return tuple((str(video_id), int(label)) for video_id, label in record[key])

        def path(key):
            return None if record.get(key) is None else Path(record[key])

        return cls(
            train=TrainConfig(**record["train"]),
            class_names=tuple(record["class_names"]),
            feature_store=Path(record["feature_store"]),
            features=FeatureRecipe.from_metadata(record["features"]),
            feature_dim=record["features"].get("feature_dim"),
            train_videos=videos("train_videos"),
            validation_videos=videos("validation_videos"),
            test_videos=videos("test_videos"),
            backend=record.get("backend", ""),
            keras_version=record.get("keras_version", ""),
            video_root=path("video_root"),
            split_dir=path("split_dir"),
            precision=record.get("precision", ""),
        )


class Run:
    """One run folder: its paths, its record, its model."""

    CONFIG = "config.json"
    MODEL = "model.keras"
    BACKUP = "backup"
    HISTORY = "history.csv"
    TENSORBOARD = "tensorboard"
    SCORES = "test_scores.npz"
    METRICS = "metrics.json"
    LOCK = "training.lock"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def for_config(cls, runs_root: str | os.PathLike, config: TrainConfig) -> Run:
        """`<runs_root>/<dataset>/split<k>/<stream>/<model>`."""
        return cls(
            Path(runs_root) / config.dataset / f"split{config.split}" / config.stream / config.model
        )

    @classmethod
    def find(cls, runs_root: str | os.PathLike, scored: bool = False) -> list[Run]:
        """The runs laid out by `for_config` under `runs_root`, sorted by path: those
        holding a record, or (`scored`) those holding test scores."""
        marker = cls.SCORES if scored else cls.CONFIG
        found = sorted(Path(runs_root).glob(f"*/split*/*/*/{marker}"))
        return [cls(path.parent) for path in found if cls(path.parent).key is not None]

    @property
    def key(self) -> tuple[str, int, str, str] | None:
        """`(dataset, split, stream, model)` of a folder laid out by `for_config`
        (None for a folder elsewhere)."""
        parts = self.root.parts[-4:]
        if len(parts) < 4 or not parts[1].startswith("split") or not parts[1][5:].isdigit():
            return None
        dataset, split, stream, model = parts
        return dataset, int(split[5:]), stream, model

    # === Paths ===

    @property
    def config_path(self) -> Path:
        return self.root / self.CONFIG

    @property
    def model_path(self) -> Path:
        return self.root / self.MODEL

    @property
    def backup_dir(self) -> Path:
        return self.root / self.BACKUP

    @property
    def history_path(self) -> Path:
        return self.root / self.HISTORY

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / self.TENSORBOARD

    @property
    def scores_path(self) -> Path:
        return self.root / self.SCORES

    @property
    def metrics_path(self) -> Path:
        return self.root / self.METRICS

    @property
    def lock_path(self) -> Path:
        return self.root / self.LOCK

    # === State ===

    def has_record(self) -> bool:
        return self.config_path.is_file()

    def is_trained(self) -> bool:
        """Training finished: a best model, and no backup of an unfinished fit."""
        return self.model_path.is_file() and not self.backup_dir.exists()

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Holds the folder for one trainer (creating it) for the block.

        The folders it creates are removed again when the block leaves them empty (a
        training refused inside it leaves nothing behind).

        Raises:
            ValueError: A file stands where the folder or one above it should be, or
                another trainer, in any process, holds it. A lock left by a killed
                trainer is taken over (`runtime.atomic_files.PidLock`).
        """
        created = self._missing_folders()
        lock = PidLock(self.lock_path)
        try:
            lock.acquire()
        except LockHeldError as held:
            holder = f"process {held.pid}" if held.pid is not None else "another process"
            raise ValueError(
                f"{self.root} is being trained by {holder}; wait for it or use another "
                "--runs folder"
            ) from None
        try:
            yield
        finally:
            lock.release()
            for folder in created:  # the run folder first, then those above it
                try:
                    folder.rmdir()
                except OSError:  # not empty (or made anew by another trainer): kept
                    break

    def _missing_folders(self) -> list[Path]:
        """The run folder and the folders above it that do not exist yet, deepest
        first.

        Raises:
            ValueError: The nearest existing one is not a folder (a file given as
                --runs, say).
        """
        missing = []
        for path in (self.root, *self.root.parents):
            if path.is_dir():
                return missing
            if os.path.lexists(path):
                raise ValueError(
                    f"{path} is a file, not a folder: the run folder {self.root} cannot be "
                    "made there. Give --runs a folder (or a path that does not exist yet)."
                )
            missing.append(path)
        return missing

    # === Contents ===

    def clear(self) -> None:
        """Deletes everything in the folder but the lock of the trainer holding it."""
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            if entry.name == self.LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def write_record(self, record: RunRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(record.to_json(), indent=2))

    def load_config(self) -> RunRecord:
        """The run's record (`config.json`), typed."""
        if not self.config_path.is_file():
            raise ValueError(
                f"{self.root} is not a run folder (no {self.CONFIG}). Train it with "
                "`python -m training.train_attention`."
            )
        return RunRecord.from_json(json.loads(self.config_path.read_text()))

    def load_model(self):
        """The best model (`model.keras`)."""
        import keras

        if not self.model_path.is_file():
            raise ValueError(f"{self.root} has no {self.MODEL}: it is not trained yet.")
        return keras.saving.load_model(self.model_path)

    def write_metrics(self, metrics: dict) -> None:
        self.metrics_path.write_text(json.dumps(metrics, indent=2))

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)
