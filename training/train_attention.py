"""Trains the attention recogniser (or its mean-pooling baseline) for one stream and split.

Features come from the feature store (`training.extract_features`); 30-frame samples
(section 3.2) are fed to `model.fit` with the paper's loss (eq. 8) and Adadelta. A
validation subset, held out from the training list by whole UCF101 groups (HMDB51: by
video), picks the best epoch.
Each run writes one folder, `training.runs.Run` (its layout is described there):

    python -m training.train_attention --stream appearance --model attention \
        --video-root UCF-101 --split-dir ucfTrainTestlist --split 1 \
        --store features/ucf101/appearance --runs runs

Re-running the same command after an interruption resumes from the last finished
epoch; re-running a finished run does nothing (`--overwrite` retrains). Scoring on the
test list is the next stage: `python -m evaluation.scoring --run <run folder>`.

Inputs that do not make one run are refused before anything is written: settings that
cannot train (`TrainConfig`), fewer than 2 classes or a class without training videos,
features missing, invalid or of two recipes (every train, validation and test video's
must match). A loss that becomes NaN or infinite ends the fit as a failed run
(`TrainingDivergedError`), never as a trained one.

`--precision` sets the recogniser's Keras dtype policy: float32 (the default, the paper's
arithmetic), or an extension for speed on a GPU: mixed_bfloat16 (or "auto", which is
mixed_bfloat16 where the backend sees a GPU), mixed_float16 (with loss scaling). The
classifier's softmax stays float32; the run's `config.json` records the policy.
TensorBoard logs go to the run's `tensorboard/` on every backend.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import importlib.util
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from temporal_attention.data.feature_store import FeatureStore, FeatureStoreError
from temporal_attention.data.samples import MixupDataset, SampleDataset
from temporal_attention.data.splits import SplitSource, hold_out_validation
from temporal_attention.models.feature_extraction import FeatureRecipe
from temporal_attention.models.recognizer import build_attention_model
from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.devices import (
    PRECISIONS,
    dtype_policy,
    keep_tensorflow_on_the_host,
    resolve_precision,
    use_compilation_cache,
)
from temporal_attention.training.runs import PRESETS, Run, RunRecord, TrainConfig


@dataclass(frozen=True)
class TrainAttentionConfig:
    """The training stage: the split's files, the feature store, the run's settings."""

    video_root: Path = field(metadata={"help": "folder of the videos (UCF-101/ or HMDB51)"})
    split_dir: Path = field(metadata={"help": "folder of the official split files"})
    store: Path = field(metadata={"help": "feature store of the stream"})
    train: TrainConfig = PRESETS["paper"]
    runs: Path = field(default=Path("runs"), metadata={"help": "root of run folders"})
    overwrite: bool = field(default=False, metadata={"help": "delete a previous run first"})
    # Keras' default ("auto": XLA on TensorFlow and JAX); --no-jit-compile gives plain
    # TensorFlow graphs, which trace and run faster for small models on a CPU
    # (docs/synthetic_and_demo.md). The same model either way, up to rounding.
    jit_compile: bool = field(default=True, metadata={"help": "XLA-compile the steps"})
    # JAX only (runtime.devices.use_compilation_cache): compiled steps are kept in this
    # folder and loaded by later runs of the same shapes (the 12 runs of a split's Table 1
    # share two architectures). None: every process compiles its own.
    compile_cache: Path | None = field(
        default=None, metadata={"help": "JAX: keep compiled steps here for later runs"}
    )
    # The recogniser's Keras dtype policy (module docstring): float32 is the paper's.
    precision: str = field(
        default="float32",
        metadata={
            "choices": PRECISIONS,
            "help": "dtype policy; mixed_bfloat16 (auto: on a GPU) is an extension for speed",
        },
    )

    @property
    def source(self) -> SplitSource:
        train = self.train
        return SplitSource(
            self.video_root, self.split_dir, train.dataset, train.split, train.classes
        )


# === Data ===


# === Models kept between trainings ===


class ModelCache:
    """Compiled recognisers kept between trainings in one process, one per architecture.

    Building and compiling a recogniser is cheap, but TensorFlow traces its graph at the
    first training step and again at the first validation (the unrolled steps, forward
    and backward: 15-25 s on a 2-core CPU, most of a short training). A training given
    a cache takes the model of the same architecture that an earlier training used, puts
    back the initial state of a model newly built with its own seed (weights, random
    seed states, optimizer slots), and so trains as that new model would, bit for bit,
    without tracing again. Feature statistics (`feature_scaling="standardize"`) are
    constants of the graph, so other statistics make another model.

        cache = ModelCache()
        for seed in (0, 1, 2):
            run = train(dataclasses.replace(config, seed=seed), ..., models=cache)
            score_run(run, model=cache.best(run))  # scored without another trace
    """

    def __init__(self):
        self._models: dict[tuple, keras.Model] = {}
        self._run_keys: dict[Path, tuple] = {}  # run folder -> the key it trained with

    def __len__(self) -> int:
        return len(self._models)

    def model(self, run: Run | None = None, **arguments) -> keras.Model:
        """A compiled `build_attention_model(**arguments)` in the initial state that
        `keras.utils.set_random_seed(arguments["seed"])` then building it would give;
        `run`: the run it is about to train (for `best`)."""
        _seed_keras(arguments["seed"])
        fresh = build_attention_model(**arguments)
        # The dtype policy it is built under (`train --precision`) makes another graph.
        key = (*_architecture_key(arguments), ("dtype_policy", keras.config.dtype_policy().name))
        if run is not None:
            self._run_keys[Path(run.root).resolve()] = key
        cached = self._models.get(key)
        if cached is None:
            self._models[key] = fresh
            return fresh
        for target, source in zip(cached.variables, fresh.variables, strict=True):
            target.assign(source)  # weights and the seed generators' states
        for model in (cached, fresh):
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        for target, source in zip(
            cached.optimizer.variables, fresh.optimizer.variables, strict=True
        ):
            target.assign(source)  # iterations and Adadelta's accumulators
        # A resumed fit leaves the epoch it resumed at on the model (Keras'
        # BackupAndRestore sets `_initial_epoch`, which every later `fit` starts from).
        cached._initial_epoch = None
        return cached

    def best(self, run: Run) -> keras.Model:
        """`run`'s best epoch (`model.keras`) in the model of this cache that trained
        it, whose steps are traced already, so that scoring or reading attention with
        it costs no new trace; a run that no model of this cache trained (a finished
        run found on disk, say) is loaded from its file (`run.load_model()`)."""
        key = self._run_keys.get(Path(run.root).resolve())
        if key is None:
            return run.load_model()
        model = self._models[key]
        model.load_weights(run.model_path)
        return model


def _seed_keras(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)`, except that on TensorFlow it leaves
    TensorFlow's own global seed alone: setting that clears TensorFlow's caches of
    instantiated functions, so that every graph traced before is set up again at its
    next call (7-10 s for a recogniser on a 2-core CPU). Keras draws its random numbers
    with stateless ops from its own global seed generator, which this resets (Keras'
    `set_random_seed` does the same through these attributes), so a model built after
    it has the weights it has after `set_random_seed`; the tests compare the two."""
    if keras.backend.backend() != "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state  # what set_random_seed sets
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def _architecture_key(arguments: dict) -> tuple:
    """What makes two recognisers one graph: every argument but the seed (which only
    sets initial values); arrays by their bytes."""
    key = []
    for name, value in sorted(arguments.items()):
        if name == "seed":
            continue
        if isinstance(value, np.ndarray):
            value = (value.shape, str(value.dtype), hashlib.sha256(value.tobytes()).hexdigest())
        key.append((name, value))
    return tuple(key)


# === Training ===


def best_so_far(history_path: Path, monitor: str) -> float | None:
    """The best (highest) `monitor` value of the finished epochs in `history.csv`, or
    None before the first; `model.keras` holds that epoch."""
    if not history_path.is_file():
        return None
    with open(history_path, newline="") as handle:
        values = [float(row[monitor]) for row in csv.DictReader(handle) if row.get(monitor)]
    values = [value for value in values if np.isfinite(value)]
    return max(values) if values else None


class StopWithoutProgress(keras.callbacks.Callback):
    """Early stopping: ends the fit once the best `monitor` value is `patience` epochs
    old. The epochs before a resume are read from `history.csv`, so a resumed fit stops
    where an uninterrupted one would (Keras' EarlyStopping starts counting afresh)."""

    def __init__(self, history_path: Path, monitor: str, patience: int):
        super().__init__()
        self.history_path, self.monitor, self.patience = history_path, monitor, patience
        self.values: list[float] = []

    def on_train_begin(self, logs=None):
        self.values = []
        if self.history_path.is_file():
            with open(self.history_path, newline="") as handle:
                self.values = [float(row[self.monitor]) for row in csv.DictReader(handle)]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        self.values.append(float(value))
        best_epoch = int(np.nanargmax(self.values)) if np.isfinite(self.values).any() else 0
        if len(self.values) - 1 - best_epoch >= self.patience:
            self.model.stop_training = True


class TrainingDivergedError(ValueError):
    """The loss of a fit became NaN or infinite; the message names the run and epoch."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Ends a fit whose loss (training, or validation) is NaN or infinite by raising
    `TrainingDivergedError`, before the epoch is checkpointed or logged. The fit ends
    without its `on_train_end`, so the resume backup stays and the run is not
    `Run.is_trained()`: nothing scores it as a model. (Keras' TerminateOnNaN stops the
    fit as if it had finished.)"""

    def __init__(self, run: Run):
        super().__init__()
        self.run, self.epoch = run, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"batch {batch + 1} of ")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, "")

    def _check(self, logs, where: str) -> None:
        for name, value in (logs or {}).items():
            if name.endswith("loss") and not np.isfinite(value):
                raise TrainingDivergedError(
                    f"{self.run.root}: {name} became {float(value)} in {where}epoch "
                    f"{self.epoch + 1} (history.csv's epoch {self.epoch}); the run is "
                    "not trained and is not scored. Train it again with --overwrite and "
                    "a smaller --learning-rate (or check its features)."
                )


class BestCheckpoint(keras.callbacks.Callback):
    """Keras' `ModelCheckpoint(save_best_only=True, mode="max")`, written atomically
    (`runtime.atomic_files`): a fit stopped while it saves (Ctrl-C) leaves the previous
    best `model.keras` whole, not a truncated file."""

    def __init__(self, path: Path, monitor: str, best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if self.best is not None and not value > self.best:  # a tie keeps the earlier
            return
        self.best = float(value)
        with atomic_write(self.path, suffix=".keras") as temporary:
            self.model.save(temporary)


def backed_up_epochs(run: Run) -> int:
    """Epochs that the resume backup holds (Keras' BackupAndRestore resumes at this
    one); 0 without a backup."""
    path = run.backup_dir / "training_metadata.json"
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def keep_backed_up_history(run: Run) -> None:
    """Drops from `history.csv` the epochs past the resume backup: a fit stopped after
    logging an epoch but before backing it up runs that epoch again on resume, and
    logs it again."""
    if not run.history_path.is_file():
        return
    epochs = backed_up_epochs(run)
    with open(run.history_path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    if len(kept) < len(rows):
        with atomic_write(run.history_path) as temporary:
            with open(temporary, "w", newline="") as handle:
                csv.writer(handle).writerows(kept)


def make_callbacks(
    run: Run, has_validation: bool, patience: int = 0
) -> list[keras.callbacks.Callback]:
    """A stop on a non-finite loss, CSV log, best checkpoint, resume backup (in this
    order at an epoch's end: an epoch is backed up only once logged and checkpointed),
    early stopping when `patience` > 0, and TensorBoard.

    On a resumed fit the history keeps the backed-up epochs only, and the checkpoint
    starts from the best of them, so that a worse epoch after the resume does not
    replace it."""
    monitor = "val_last_steps_accuracy" if has_validation else "last_steps_accuracy"
    keep_backed_up_history(run)
    best = best_so_far(run.history_path, monitor) if run.model_path.is_file() else None
    callbacks = [
        StopOnNonFiniteLoss(run),  # first: before a diverged epoch is saved
        keras.callbacks.CSVLogger(str(run.history_path), append=True),
        BestCheckpoint(run.model_path, monitor, best),
        keras.callbacks.BackupAndRestore(str(run.backup_dir)),
    ]
    if patience > 0:  # after the logger: the epochs before a resume come from its file
        callbacks.insert(1, StopWithoutProgress(run.history_path, monitor, patience))
    if tensorboard_available():
        keep_tensorflow_on_the_host()  # under JAX or PyTorch it only writes the files
        callbacks.append(keras.callbacks.TensorBoard(str(run.tensorboard_dir)))
    return callbacks


def tensorboard_available() -> bool:
    """Keras' TensorBoard callback writes through `tf.summary` on every backend: it needs
    TensorFlow and the `tensorboard` package (both in requirements.txt)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def feature_statistics(store: FeatureStore, clips: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance `(dim,)` float32 over every frame of `clips`
    (the training part: never validation or test videos); the variance is floored at 1%
    of its mean over dimensions."""
    total, total_squares, count = None, None, 0
    for clip in clips:
        features = store.read(clip.video_id)[0].astype(np.float64)  # (frames, dim)
        if total is None:
            total, total_squares = np.zeros(features.shape[1]), np.zeros(features.shape[1])
        total += features.sum(axis=0)
        total_squares += np.square(features).sum(axis=0)
        count += len(features)
    mean = total / count
    variance = np.maximum(total_squares / count - np.square(mean), 0.0)
    # A dimension (nearly) constant in training would blow up where it varies at test
    # time: its variance is floored at 1% of the mean variance.
    variance = np.maximum(variance, 0.01 * variance.mean())
    return mean.astype(np.float32), variance.astype(np.float32)


def check_features(store: FeatureStore, clips: Sequence) -> None:
    """Reads every clip's features once before training (`FeatureStore.read` checks
    shape, dtype and finiteness), so that a bad file, in the test list too, stops the
    run before the first epoch rather than during it or at scoring; then checks that
    all were made by one recipe (`check_one_recipe`)."""
    problems, recipes = [], {}
    for clip in tqdm(clips, desc="check features", unit="video", leave=False):
        try:
            recipes[clip.video_id] = _recipe_of(store.read(clip.video_id)[1])
        except FeatureStoreError as error:
            problems.append(str(error))
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(f"{len(problems)} feature file(s) cannot be used:\n  {shown}{more}")
    check_one_recipe(store, recipes)


def _recipe_of(metadata: dict) -> dict:
    """What makes a stored video's features comparable with another's: the recipe's
    fields and the feature size."""
    recipe = dataclasses.asdict(FeatureRecipe.from_metadata(metadata))
    return {**recipe, "feature_dim": metadata.get("feature_dim")}


def check_one_recipe(store: FeatureStore, recipes: dict[str, dict]) -> None:
    """Refuses videos whose features differ in recipe (`_recipe_of`; the first video's
    is the reference): one model cannot be trained and scored on features of two
    networks (another seed of a random network, other weights, another layer)."""
    reference_id, reference = next(iter(recipes.items()))
    differing = {video_id: recipe for video_id, recipe in recipes.items() if recipe != reference}
    if not differing:
        return
    video_id, recipe = next(iter(differing.items()))
    fields = ", ".join(
        f"{name} {reference[name]!r} vs {recipe[name]!r}"
        for name in reference
        if reference[name] != recipe[name]
    )
    raise ValueError(
        f"The feature store {store.root} mixes features of different recipes: "
        f"{store.path_for(reference_id)} and {store.path_for(video_id)} differ in {fields} "
        f"({len(differing)} of the run's {len(recipes)} videos differ from the first). "
        "A run needs the features of one network for all its videos: extract them again "
        "into an empty --store folder."
    )


def _check_stream(recipe: FeatureRecipe, store: FeatureStore, stream: str) -> None:
    if recipe.stream != stream:
        raise ValueError(
            f"The store {store.root} holds {recipe.stream!r} features; "
            f"this run trains stream={stream!r}."
        )


def train(
    config: TrainConfig,
    *,
    split,
    store_root: str | Path,
    run_dir: str | Path,
    overwrite: bool = False,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    models: ModelCache | None = None,
    jit_compile: bool = True,
    video_root: str | Path | None = None,
    split_dir: str | Path | None = None,
    precision: str = "float32",
) -> Run:
    """Trains one run into `run_dir` (resuming an unfinished one) and returns it.

    Args:
        config: The run's settings.
        split: A `data.splits.Split` (the classes, training and test clips).
        store_root: Feature store of `config.stream`.
        run_dir: The run folder; an unfinished run there is resumed, a finished one
            is left as it is.
        overwrite: Delete a previous run in `run_dir` first (once the inputs are
            checked).
        extra_callbacks: Appended to the run's callbacks (tests interrupt with one).
        models: Compiled models of earlier trainings (`ModelCache`), so that another
            seed of one architecture is not traced again; None: a new model.
        jit_compile: XLA-compile the model's steps (Keras' "auto"); False: plain
            TensorFlow graphs (on JAX: eager). Speed only.
        video_root, split_dir: Where `split` was read from, recorded (absolute) in
            the run's record; None: not recorded.
        precision: The recogniser's Keras dtype policy (`runtime.devices.PRECISIONS`;
            "auto": mixed_bfloat16 on a GPU), recorded in the run's record. float32 is
            the paper's arithmetic; a mixed policy is an extension for speed.

    Raises:
        ValueError: Inputs that do not make a run, found before anything is written:
            fewer than 2 classes or a class without training videos, features missing,
            invalid, of two recipes or of another stream. Or another process is
            training into `run_dir` (one trainer per run folder:
            `Run.training_lock`), or `run_dir` holds a run of other settings.
        TrainingDivergedError: The loss became NaN or infinite; the run is left
            unfinished (not `Run.is_trained()`).
    """
    precision = resolve_precision(precision)
    folder = Run(run_dir)
    store = FeatureStore(store_root)
    train_clips, validation_clips = hold_out_validation(
        split.train, config.validation_fraction, config.seed, config.validation_by
    )
    check_classes(split, train_clips)
    metadata = store.read_metadata(train_clips[0].video_id)
    recipe = FeatureRecipe.from_metadata(metadata)
    if "stream" in metadata:
        _check_stream(recipe, store, config.stream)
    record = RunRecord(
        train=config,
        class_names=tuple(split.class_names),
        feature_store=Path(store_root).resolve(),
        features=recipe,
        feature_dim=metadata.get("feature_dim"),
        train_videos=tuple((clip.video_id, clip.label) for clip in train_clips),
        validation_videos=tuple((clip.video_id, clip.label) for clip in validation_clips),
        test_videos=tuple((clip.video_id, clip.label) for clip in split.test),
        backend=keras.backend.backend(),
        keras_version=keras.__version__,
        video_root=None if video_root is None else Path(video_root).resolve(),
        split_dir=None if split_dir is None else Path(split_dir).resolve(),
        precision=precision,
    )
    with folder.training_lock():
        return _train_locked(
            folder,
            config,
            record,
            split=split,
            store=store,
            train_clips=train_clips,
            validation_clips=validation_clips,
            overwrite=overwrite,
            extra_callbacks=extra_callbacks,
            verbose=verbose,
            models=models,
            jit_compile=jit_compile,
            precision=precision,
        )


def check_classes(split, train_clips: Sequence) -> None:
    """Refuses a split that cannot train a recogniser: fewer than 2 classes, or a class
    without a training video once the validation part is held out."""
    names = tuple(split.class_names)
    if len(names) < 2:
        raise ValueError(
            f"A recogniser needs at least 2 classes; the split has {len(names)} "
            f"({', '.join(names) or 'none'}). Give --classes two or more class names, or "
            "leave it out for all."
        )
    counts = np.bincount([clip.label for clip in train_clips], minlength=len(names))
    empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
    if empty:
        listed = np.bincount([clip.label for clip in split.train], minlength=len(names))
        shown = ", ".join(f"{name} ({listed[names.index(name)]} listed)" for name in empty)
        raise ValueError(
            f"No training video is left of class(es) {shown} once the validation part is "
            "held out. Give them training videos, or a smaller --validation-fraction or "
            "--validation-by video."
        )


def warn_small_validation(class_names: Sequence[str], validation_clips: Sequence) -> None:
    """Prints one warning line (stderr) naming the classes with fewer than 2 validation
    videos, when there is a validation part: the best epoch is then picked on a coarse
    estimate. Small subsets are legitimate: it does not refuse."""
    if not validation_clips:
        return
    counts = np.bincount([clip.label for clip in validation_clips], minlength=len(class_names))
    few = [(name, int(count)) for name, count in zip(class_names, counts, strict=True) if count < 2]
    if few:
        shown = ", ".join(f"{name}: {count}" for name, count in few)
        print(
            f"warning: the validation part ({len(validation_clips)} videos), which picks "
            f"the best epoch, holds fewer than 2 videos of {len(few)} class(es) ({shown}); "
            "a larger --validation-fraction gives a steadier choice.",
            file=sys.stderr,
        )


def _train_locked(
    folder: Run,
    config: TrainConfig,
    record: RunRecord,
    *,
    split,
    store: FeatureStore,
    train_clips: Sequence,
    validation_clips: Sequence,
    overwrite: bool,
    extra_callbacks: Sequence[keras.callbacks.Callback],
    verbose: int | str,
    models: ModelCache | None,
    jit_compile: bool,
    precision: str,
) -> Run:
    """`train` with the run folder's lock held."""
    if folder.has_record() and not overwrite:
        previous = folder.load_config()
        changed = [
            key
            for key in ("train", "class_names", "train_videos", "features")
            if getattr(previous, key) != getattr(record, key)
        ]
        if changed:
            raise ValueError(
                f"{folder.root} holds a run with other settings ({', '.join(changed)} differ). "
                "Use another --runs folder, or --overwrite to replace it."
            )
        if folder.is_trained():
            print(f"{folder.root}: already trained; --overwrite retrains it.")
            return folder
    check_features(store, [*train_clips, *validation_clips, *split.test])
    warn_small_validation(split.class_names, validation_clips)
    if overwrite:
        folder.clear()
    folder.write_record(record)

    def dataset(clips, shuffle, stride=config.stride):
        return SampleDataset(
            store,
            [(clip.video_id, clip.label) for clip in clips],
            batch_size=config.batch_size,
            num_frames=config.num_frames,
            stride=stride,
            shuffle=shuffle,
            seed=config.seed,
            dtype=None,  # the store's: cast to float32 on the device, half the bytes there
        )

    statistics = {}
    if config.feature_scaling == "standardize":
        mean, variance = feature_statistics(store, train_clips)
        statistics = {"feature_mean": mean, "feature_variance": variance}
    train_data = dataset(train_clips, shuffle=True, stride=config.train_stride or config.stride)
    fit_data = train_data
    if config.mixup > 0:
        fit_data = MixupDataset(train_data, len(split.class_names), config.mixup, seed=config.seed)
    validation_data = dataset(validation_clips, shuffle=False) if validation_clips else None
    if models is None:
        keras.utils.set_random_seed(config.seed)
    # A cache's model seeds Keras itself.
    build = build_attention_model if models is None else functools.partial(models.model, folder)
    with dtype_policy(precision):
        model = build(
            num_classes=len(split.class_names),
            feature_dim=train_data.feature_dim,
            num_frames=config.num_frames,
            units=config.units,
            num_layers=config.num_layers,
            num_steps=config.num_steps,
            use_attention=config.model == "attention",
            dropout=config.dropout,
            weight_decay=config.weight_decay,
            frame_mask_input=True,
            learning_rate=config.learning_rate,
            jit_compile="auto" if jit_compile else False,
            seed=config.seed,
            **statistics,
        )
    model.fit(
        fit_data,
        validation_data=validation_data,
        epochs=config.epochs,
        callbacks=[
            *make_callbacks(folder, validation_data is not None, config.patience),
            *extra_callbacks,
        ],
        verbose=verbose,
    )
    return folder


def run(
    config: TrainAttentionConfig, verbose: int | str = "auto", models: ModelCache | None = None
) -> Run:
    """Trains the stage's run into `<runs>/<dataset>/split<k>/<stream>/<model>`
    (`models`: see `train`)."""
    split = config.source.load()
    run_folder = Run.for_config(config.runs, config.train)
    train_config = config.train
    if config.compile_cache is not None and not use_compilation_cache(config.compile_cache):
        print(f"--compile-cache is JAX's: {keras.backend.backend()} compiles as before.")
    print(
        f"{train_config.stream} {train_config.model}, {train_config.dataset} split "
        f"{train_config.split} -> {run_folder.root}"
    )
    return train(
        train_config,
        split=split,
        store_root=config.store,
        run_dir=run_folder.root,
        overwrite=config.overwrite,
        verbose=verbose,
        models=models,
        jit_compile=config.jit_compile,
        video_root=config.video_root,
        split_dir=config.split_dir,
        precision=config.precision,
    )


# === Command line ===


def parse_args(argv: Sequence[str] | None = None) -> TrainAttentionConfig:
    return parse_config(
        TrainAttentionConfig,
        argv,
        prog="python -m training.train_attention",
        doc=__doc__,
        presets=PRESETS,
    )


def main(argv: Sequence[str] | None = None) -> Run:
    """Runs the CLI; returns the trained run. Bad settings, a run folder of other
    settings, or one that another process is training raise `ValueError`, which the
    command (`exit_on_error`) prints as one `error:` line with exit status 2."""
    trained = run(parse_args(argv))
    print(f"Score it on the test list: python -m evaluation.scoring --run {trained.root}")
    return trained


if __name__ == "__main__":
    exit_on_error(main)
