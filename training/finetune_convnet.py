"""Fine-tune the appearance or motion VGG16 on video frames, the paper's way (section 3.2).

Mini-batch SGD with momentum 0.9. Spatial net: learning rate 0.001, divided by
10 every 4,000 iterations, stopped at 10,000. Temporal net: 0.005, divided by
10 every 10,000 iterations, stopped at 30,000. Both start from ImageNet (the
temporal net cross-modally). Each frame (or flow stack) carries its video's
label; random crops and horizontal flips.

Writes to `--output-dir`: `checkpoint.npz` every `checkpoint_every` iterations
(weights, optimizer state, dropout seeds, iteration; written atomically, and
a rerun of the same command resumes from it exactly), `settings.json`, `log.csv` (loss and
accuracy per iteration; the same rows as TensorBoard scalars in `tensorboard/`, on every
backend) and, at the end, `final.keras` (atomically), which
`training.extract_features --weights` reads.

An output folder holds one fine-tune. `settings.json` records the settings that shape
its model: every `FinetuneConfig` field but `max_iterations` and `checkpoint_every`, the
precision and preprocessing, the network (`--backbone`, `--weights` and the backbone's
own flags), the training list (`--dataset`, `--split`, `--classes`, the held-out videos)
and the images' size; once `final.keras` is written, also its iteration and SHA-256.
Not recorded, as they do not change the model: `--checkpoint-every`, `--workers`,
`--frame-root` against decoding (the same videos, as JPEG frames or decoded),
`--video-root`, `--split-dir`, `--flow-root` (where the data are), `--data-parallel`.
A rerun in that folder
- with other recorded settings is refused, naming each (the folder's and this run's);
- with a longer `--max-iterations` trains on from the checkpoint: the model is that of
  an uninterrupted run of the longer schedule (the learning rate and the batches depend
  on the iteration only); a shorter one than the folder has reached is refused;
- once finished, does nothing: `final.keras` stays byte for byte as it was, so features
  extracted from it (which record its SHA-256) stay valid.
A damaged `checkpoint.npz`, `settings.json` or `final.keras` is named, with what to do.

    python -m training.finetune_convnet --preset spatial \
        --video-root UCF-101 --split-dir ucfTrainTestlist --output-dir runs/spatial

`--backbone EfficientNetLite0` (or 1, 2) fine-tunes EfficientNet-Lite instead, from
ImageNet weights that work offline (`models.efficientnet_lite`), with its own
preprocessing and `--top-dropout`; VGG16 stays the default.

Feeding the device (none of it changes a hyper-parameter of the paper):

- `--frame-root PATH`: clips are read from a frame store (`data.frame_batches.StoredClip`:
  only the drawn JPEGs), written by `python -m training.extract_frames` (RGB) and
  `python -m training.compute_flow --layout frames` (flow; `--flow-root` is then not
  needed). Without it RGB videos are decoded whole for each draw: fine for small jobs.
- `--workers N`: processes drawing batches (`runtime.process_feed.ordered_map`), `2 N`
  batches ahead of the one training; default `default_workers()` (cores less one); 0 draws
  in this process. The batches are the same for every N, so resume stays exact.
- Batches travel as uint8 (a quarter of float32's bytes) and are preprocessed on the
  device (`models.image_preprocessing.with_preprocessing`); `final.keras` is the bare
  network of float input, as `training.extract_features` reads it.
- `--precision auto|float32|mixed_float16|mixed_bfloat16` (`runtime.devices.PRECISIONS`,
  as extraction): the Keras dtype policy of the network; auto is mixed_bfloat16 when the
  backend sees a GPU, float32 otherwise. The softmax computes in float32; float16 scales
  the loss (`compile_for_finetuning`). Recorded in `settings.json`; a checkpoint of
  another precision is not resumed.
- `--data-parallel auto|off`: with JAX and more than one device, each batch is split
  over the devices (`keras.distribution.DataParallel`); the batch size must divide by
  their number.

Model selection downstream (an extension; the paper fine-tunes on the whole training list):
`--hold-out-fraction F` (with `--hold-out-by`, `--hold-out-seed`) leaves out of fine-tuning
the validation part that `training.train_attention --validation-fraction F
--validation-by B --seed S` holds out of the same training list
(`data.splits.hold_out_validation`). Without it, features of the fine-tuned net are
fitted to the validation videos too, and the attention model's validation accuracy
overstates its test accuracy. Recorded in `settings.json`; default 0.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from temporal_attention.data.crops import CROP_SIZE
from temporal_attention.data.flow_store import FlowStore
from temporal_attention.data.frame_batches import (
    FrameBatches,
    StoredClip,
    decoded_rgb_frames,
    draw_batch,
)
from temporal_attention.data.frame_store import FrameStore
from temporal_attention.data.splits import HOLD_OUTS, SplitSource, hold_out_validation
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH
from temporal_attention.models import efficientnet_lite
from temporal_attention.models.feature_extraction import file_sha256
from temporal_attention.models.image_preprocessing import with_preprocessing
from temporal_attention.models.two_stream_vgg16 import STREAMS, build_stream_vgg16
from temporal_attention.runtime.atomic_files import atomic_write, check_output_folder
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.devices import (
    PRECISIONS,
    data_parallel_distribution,
    dtype_policy,
    resolve_precision,
    to_device,
)
from temporal_attention.runtime.jobs import default_workers
from temporal_attention.runtime.process_feed import ordered_map
from temporal_attention.runtime.summaries import ScalarWriter


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of ConvNet fine-tuning; defaults are the paper's spatial net."""

    # "appearance" (spatial net, RGB frames) or "motion" (temporal net, flow stacks);
    # chosen by the preset (spatial, temporal), not by a flag.
    stream: str = dataclasses.field(default="appearance", metadata={"flag": False})
    # Section 3.2: 0.001 (spatial), 0.005 (temporal).
    learning_rate: float = 0.001
    # Section 3.2: the learning rate is divided by 10 every lr_step iterations.
    lr_step: int = 4000
    lr_decay: float = 0.1
    # Section 3.2: 10,000 (spatial), 30,000 (temporal).
    max_iterations: int = 10000
    # Paper silent; SGD momentum 0.9, as in Wang et al. 2015.
    momentum: float = 0.9
    # Paper silent; 256 as in Wang et al. 2015, whose procedure the paper follows.
    batch_size: int = 256
    # Section 3.2: 224x224 inputs, cropped from 256x340 frames.
    crop_size: int = CROP_SIZE
    # Paper silent; 1 = every image of a batch from a different draw of a clip.
    frames_per_clip: int = 1
    # Paper silent; high dropout as Wang et al. 2015 recommend (see docs). VGG16 only.
    dropout_fc6: float = 0.9
    dropout_fc7: float = 0.8
    # Paper silent; Caffe's VGG16 value (gradient += weight_decay * w on kernels).
    weight_decay: float = 5e-4
    # Iterations between checkpoints.
    checkpoint_every: int = 1000
    # Seed of batch sampling, augmentation, dropout and the new classifier.
    seed: int = dataclasses.field(
        default=0, metadata={"help": "seed of batches, crops, dropout, the new classifier"}
    )

    def __post_init__(self):
        if self.stream not in STREAMS:
            raise ValueError(f"Expected stream in {STREAMS}. Received: stream={self.stream!r}")
        for field in ("lr_step", "max_iterations", "batch_size", "checkpoint_every"):
            if getattr(self, field) < 1:
                raise ValueError(f"Expected {field} >= 1. Received: {field}={getattr(self, field)}")
        if self.learning_rate <= 0:
            raise ValueError(
                f"Expected learning_rate > 0. Received: learning_rate={self.learning_rate}"
            )


SPATIAL_PAPER = FinetuneConfig()
TEMPORAL_PAPER = FinetuneConfig(
    stream="motion",
    learning_rate=0.005,
    lr_step=10000,
    max_iterations=30000,
    dropout_fc6=0.9,
    dropout_fc7=0.9,
)
PRESETS = {"spatial": SPATIAL_PAPER, "temporal": TEMPORAL_PAPER}

CHECKPOINT_NAME = "checkpoint.npz"
LOG_NAME = "log.csv"
FINAL_NAME = "final.keras"
SETTINGS_NAME = "settings.json"
TENSORBOARD_NAME = "tensorboard"
LOG_FIELDS = ("iteration", "learning_rate", "loss", "accuracy", "images_per_second")


# === Optimisation ===


def learning_rate_schedule(
    config: FinetuneConfig,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Step schedule: `learning_rate * lr_decay ** floor(iteration / lr_step)`."""
    return keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate,
        decay_steps=config.lr_step,
        decay_rate=config.lr_decay,
        staircase=True,
    )


def compile_for_finetuning(
    model: keras.Model, config: FinetuneConfig, precision: str = "float32"
) -> keras.Model:
    """Compile `model` with SGD + momentum on the step schedule, and build the optimizer.

    Under `precision` "mixed_float16" the loss is scaled dynamically
    (`keras.optimizers.LossScaleOptimizer`) so that float16 gradients do not underflow;
    bfloat16 has float32's range and needs no scaling."""
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(config), momentum=config.momentum
    )
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    optimizer.build(model.trainable_variables)
    return model


# === Checkpoints ===


def save_checkpoint(path: str | os.PathLike, model: keras.Model, iteration: int) -> None:
    """Write weights, optimizer state, seed states and `iteration` to `path`, atomically."""
    arrays = {"iteration": np.asarray(iteration)}
    for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
        for index, variable in enumerate(variables):
            arrays[f"{prefix}/{index:04d}"] = keras.ops.convert_to_numpy(variable)
        arrays[f"{prefix}/paths"] = np.asarray([variable.path for variable in variables])
    with atomic_write(path, suffix=".npz") as temporary:  # np.savez appends .npz otherwise
        np.savez(temporary, **arrays)


def load_checkpoint(path: str | os.PathLike, model: keras.Model) -> int:
    """Restore a `save_checkpoint` file into a compiled `model`; returns the iteration.

    A file that cannot be read (truncated, not an npz) raises a `ValueError` that names
    it; so does one of another model."""
    try:
        with np.load(path) as arrays:
            saved = {
                prefix: [
                    arrays[f"{prefix}/{index:04d}"]
                    for index in range(len(arrays[f"{prefix}/paths"]))
                ]
                for prefix in ("model", "optimizer")
            }
            iteration = int(arrays["iteration"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Checkpoint {path} is damaged ({type(error).__name__}: {error}). Remove it to "
            "start over from iteration 0, or use another --output-dir."
        ) from error
    for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
        # Paths of seed generators are numbered per process, so compare shapes.
        if [array.shape for array in saved[prefix]] != [
            tuple(variable.shape) for variable in variables
        ]:
            raise ValueError(
                f"Checkpoint {path} does not match the model ({prefix} variables differ: "
                f"{len(saved[prefix])} saved, {len(variables)} expected, or their shapes). "
                "Use the settings that wrote it, or another --output-dir."
            )
        for variable, array in zip(variables, saved[prefix], strict=True):
            variable.assign(array)
    return iteration


def _open_log(path: Path, resume_iteration: int):
    """Open the CSV log for appending, dropping rows after `resume_iteration`."""
    rows = []
    if path.exists():
        with open(path, newline="") as file:
            rows = [
                row for row in csv.DictReader(file) if int(row["iteration"]) <= resume_iteration
            ]
    file = open(path, "w", newline="")  # closed by finetune()
    writer = csv.DictWriter(file, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    file.flush()
    return file, writer


# === Training loop ===


def preprocessing_mode(backbone: str, stream: str) -> str:
    """The `models.image_preprocessing` mode of `backbone`'s input for `stream`: VGG16's
    "caffe" RGB and "uint8-128" flow, EfficientNet-Lite's "efficientnet_lite" RGB and
    "(uint8-128)/128" flow; the same values as
    `models.two_stream_vgg16.preprocess_images` and `models.efficientnet_lite.preprocess_images`."""
    if backbone in efficientnet_lite.BACKBONES:
        if stream == "appearance":
            return efficientnet_lite.PREPROCESS_MODE
        return efficientnet_lite.FLOW_PREPROCESS
    return "caffe" if stream == "appearance" else "uint8-128"


# FinetuneConfig fields that do not shape the model: how often it is saved, and how far
# it is trained (a longer run continues a shorter one exactly; `finetune` checks the rest).
UNRECORDED_FIELDS = ("max_iterations", "checkpoint_every")


def recorded_settings(config: FinetuneConfig) -> dict:
    """The fields of `config` that shape the model, for `settings.json`."""
    return {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if field.name not in UNRECORDED_FIELDS
    }


def _describe_setting(key: str, saved, value) -> tuple[str, str, str]:
    """(the folder's setting, this run's, the flags that resume it), for an error."""
    if key == "held_out_videos":  # a list, set by the --hold-out-* flags
        return f"{len(saved)} held-out videos", f"{len(value)} others", "the --hold-out-* flags"
    if key == "stream":
        flag = f"--preset {'spatial' if saved == 'appearance' else 'temporal'}"
    elif key == "preprocessing":
        flag = "the --backbone that wrote it"
    elif key == "image_size":
        flag = f"images of {saved} (--height, --width or the frame store's)"
    elif key == "classes":
        flag = f"--classes {','.join(saved)}" if saved else "no --classes"
    else:
        flag = f"--{key.replace('_', '-')} {saved}"
    return f"{key}={saved!r}", f"{key}={value!r}", flag


def _read_settings(path: Path) -> dict:
    """The settings recorded in `path`; {} where there is none."""
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        saved = error
    if not isinstance(saved, dict):
        raise ValueError(
            f"{path} is damaged ({saved}): the fine-tune in {path.parent} cannot be checked "
            f"against this run. Remove {path.parent} to start over, or use another --output-dir."
        )
    return saved


def _check_settings(folder: Path, saved: dict, settings: dict) -> None:
    """Refuse to go on with the fine-tune in `folder`, recorded with `saved`, under
    other `settings`: one error naming every setting that differs."""
    settings = json.loads(json.dumps(settings))  # tuples as lists, as recorded
    differing = [
        _describe_setting(key, saved[key], value)
        for key, value in settings.items()
        if key in saved and saved[key] != value
    ]
    if differing:
        was, now, flags = zip(*differing, strict=True)
        raise ValueError(
            f"The output folder {folder} holds a fine-tune with {', '.join(was)}; this run "
            f"has {', '.join(now)}. Rerun with {' '.join(flags)} to resume it, or use "
            f"another --output-dir, or remove {folder} to start over."
        )
    unrecorded = [key for key in settings if key not in saved]
    if unrecorded:
        print(f"{folder} did not record {', '.join(unrecorded)}: taken as this run's.")


def _write_settings(path: Path, settings: dict) -> None:
    with atomic_write(path) as temporary:
        Path(temporary).write_text(json.dumps(settings, indent=2) + "\n")


def _refuse_shorter(folder: Path, reached: int, max_iterations: int) -> None:
    raise ValueError(
        f"The output folder {folder} holds a fine-tune of {reached} iterations, past this "
        f"run's --max-iterations {max_iterations}: its model is of a longer schedule. Rerun "
        f"with --max-iterations {reached} (or more, to train on), or use another "
        f"--output-dir, or remove {folder} to start over."
    )


def _finished(folder: Path, saved: dict, max_iterations: int) -> Path | None:
    """`final.keras` of `folder` if it is that of `max_iterations` iterations, as recorded
    when it was written; None if the folder has not reached them."""
    final_path, record = folder / FINAL_NAME, saved.get("final")
    if not final_path.exists() or not isinstance(record, dict):
        return None
    iteration = record.get("iteration", 0)
    if iteration > max_iterations:
        _refuse_shorter(folder, iteration, max_iterations)
    if iteration < max_iterations:
        return None
    if file_sha256(final_path) != record.get("sha256"):
        source = (
            f"written again from {CHECKPOINT_NAME}"
            if (folder / CHECKPOINT_NAME).exists()
            else "trained again"
        )
        raise ValueError(
            f"{final_path} is damaged or was replaced: its SHA-256 is not the one recorded "
            f"in {SETTINGS_NAME} when it was written. Remove it and rerun: it is {source}."
        )
    return final_path


def _next_on_device(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> tuple | None:
    """The next of `batches` with its arrays copied to the device; None after the last."""
    batch = next(batches, None)
    if batch is None:
        return None
    images, labels = batch
    return to_device(images), to_device(labels)


def device_ahead(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple]:
    """`batches` as backend tensors: while a batch is used, the next one is taken from
    `batches` and copied to the device (`to_device`) in a thread, so the host-to-device
    transfer (128 MB a temporal batch of 256 uint8 stacks) overlaps the training step
    instead of preceding it. An error in taking batch `i + 1` (or an interruption) is
    raised once batch `i` has been used, as without this."""
    with ThreadPoolExecutor(1, "to-device") as copier:
        upcoming = copier.submit(_next_on_device, batches)
        while (batch := upcoming.result()) is not None:
            upcoming = copier.submit(_next_on_device, batches)
            yield batch


def finetune(
    network: keras.Model,
    batches: FrameBatches,
    config: FinetuneConfig,
    output_dir: str | os.PathLike,
    *,
    preprocessing: str | None = None,
    workers: int = 0,
    ahead: int | None = None,
    progress: bool = True,
    record: dict | None = None,
) -> Path:
    """Train `network` on `batches` for `config.max_iterations`, resuming from `output_dir`.

    A folder of other recorded settings (see the module docstring), or trained past
    `config.max_iterations`, is refused before anything is written; one already finished
    is left as it is.

    The batches travel as uint8 (a quarter of float32's bytes) and are preprocessed on
    the device: the model trained is `with_preprocessing(network, preprocessing)`, which
    shares `network`'s weights; `final.keras` is `network` itself (float input).

    Args:
        network: A classifier of preprocessed float input, e.g. `build_stream_vgg16(...)`.
        batches: Batch `i` is `batches.draw(i)`, the batch of iteration `i`.
        config: The schedule, momentum and checkpoint interval.
        output_dir: Where `checkpoint.npz`, `settings.json`, `log.csv` and `final.keras` go.
        preprocessing: A `models.image_preprocessing` mode. Default: VGG16's for the
            stream (`preprocessing_mode("VGG16", config.stream)`).
        workers: Processes drawing batches (`runtime.process_feed.ordered_map`); 0 draws
            each batch here when it is needed. The batches are the same either way.
        ahead: Batches drawn ahead of the one training. Default `2 * workers`.
        progress: Show a tqdm bar with images/s.
        record: More settings that shape the model, for `settings.json` (e.g. its
            training videos); like `config`'s, a folder written with others is refused.

    Returns:
        The path of `final.keras`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    preprocessing = preprocessing or preprocessing_mode("VGG16", config.stream)
    checkpoint_path, settings_path = output_dir / CHECKPOINT_NAME, output_dir / SETTINGS_NAME
    run_settings = {
        **recorded_settings(config),
        "precision": network.dtype_policy.name,
        "preprocessing": preprocessing,
        **(record or {}),
    }
    saved = _read_settings(settings_path)
    if checkpoint_path.exists() or (output_dir / FINAL_NAME).exists():
        _check_settings(output_dir, saved, run_settings)
    finished = _finished(output_dir, saved, config.max_iterations)
    if finished is not None:
        print(f"{output_dir} is complete ({config.max_iterations} iterations): left as it is.")
        return finished
    model = with_preprocessing(network, preprocessing)
    compile_for_finetuning(model, config, network.dtype_policy.name)
    start = load_checkpoint(checkpoint_path, model) if checkpoint_path.exists() else 0
    if start > config.max_iterations:
        _refuse_shorter(output_dir, start, config.max_iterations)
    _write_settings(settings_path, run_settings)  # no final.keras recorded until it is new
    schedule = learning_rate_schedule(config)
    log_file, log = _open_log(output_dir / LOG_NAME, start)
    scalars = ScalarWriter(output_dir / TENSORBOARD_NAME)  # the log's rows, for TensorBoard
    bar = tqdm(
        total=config.max_iterations,
        initial=start,
        desc=f"finetune {config.stream}",
        unit="it",
        disable=not progress,
    )
    feed = ordered_map(
        functools.partial(draw_batch, batches),
        range(start, config.max_iterations),
        workers=workers,
        ahead=ahead,
    )
    # Without a keras.distribution each batch is copied to the device in a thread while
    # the one before it trains; under one (thread-local in Keras) train_on_batch copies it.
    arrived = device_ahead(feed) if keras.distribution.distribution() is None else feed
    try:
        for iteration, (images, labels) in enumerate(arrived, start):  # uint8 images
            began = time.perf_counter()
            learning_rate = float(schedule(iteration))
            metrics = model.train_on_batch(images, labels, return_dict=True)
            images_per_second = len(images) / (time.perf_counter() - began)
            row = {
                "iteration": iteration + 1,
                "learning_rate": f"{learning_rate:.6g}",
                "loss": f"{float(metrics['loss']):.6f}",
                "accuracy": f"{float(metrics['sparse_categorical_accuracy']):.6f}",
                "images_per_second": f"{images_per_second:.1f}",
            }
            log.writerow(row)
            log_file.flush()
            scalars.write(iteration + 1, {k: float(v) for k, v in row.items() if k != "iteration"})
            done = iteration + 1
            if done % config.checkpoint_every == 0 or done == config.max_iterations:
                save_checkpoint(checkpoint_path, model, done)
            bar.update(1)
            bar.set_postfix(
                loss=row["loss"], lr=row["learning_rate"], img_s=row["images_per_second"]
            )
    finally:
        arrived.close()
        feed.close()
        bar.close()
        log_file.close()
        scalars.close()
    final_path = output_dir / FINAL_NAME
    with atomic_write(final_path, suffix=".keras") as temporary:  # Keras picks by extension
        network.save(temporary)
    final = {"iteration": config.max_iterations, "sha256": file_sha256(final_path)}
    _write_settings(settings_path, {**run_settings, "final": final})
    return final_path


# === Stage ===


# The backbones fine-tuning builds: the paper's, and EfficientNet-Lite's variants.
BACKBONES = ("VGG16", *efficientnet_lite.BACKBONES)
# Fields of FinetuneConvnetConfig that shape VGG16 only, and their defaults.
VGG16_ONLY_DEFAULTS = {
    "fc_units": 4096,
    "width_multiplier": 1.0,
    "kernel_initializer": "glorot_uniform",
    "batch_norm": False,
}


@dataclasses.dataclass(frozen=True)
class FinetuneConvnetConfig:
    """The fine-tuning stage: the data, the network to start from, the schedule."""

    source: SplitSource
    output_dir: Path = dataclasses.field(
        metadata={"help": "folder of checkpoint.npz, log.csv, final.keras (one fine-tune)"}
    )
    settings: FinetuneConfig = SPATIAL_PAPER
    flow_root: Path | None = dataclasses.field(
        default=None, metadata={"help": "flow store (motion)"}
    )
    height: int = dataclasses.field(
        default=FRAME_HEIGHT, metadata={"help": "decoded RGB frame height"}
    )
    width: int = dataclasses.field(
        default=FRAME_WIDTH, metadata={"help": "decoded RGB frame width"}
    )
    weights: str = dataclasses.field(
        default="imagenet", metadata={"help": "'imagenet', 'none' or a file"}
    )
    # "VGG16" (the paper's) or "EfficientNetLite0" (1, 2: models.efficientnet_lite).
    backbone: str = dataclasses.field(default="VGG16", metadata={"choices": BACKBONES})
    # EfficientNet-Lite: dropout before its classifier (ImageNet training: 0.2).
    top_dropout: float = dataclasses.field(
        default=0.2, metadata={"help": "EfficientNet-Lite's dropout before predictions"}
    )
    # VGG16 only: the widths and initialisation of the network built.
    fc_units: int = 4096
    width_multiplier: float = dataclasses.field(default=1.0, metadata={"help": "VGG16 conv widths"})
    kernel_initializer: str = dataclasses.field(
        default="glorot_uniform",
        metadata={
            "help": "initial kernels (he_normal trains from scratch; loaded weights replace them)"
        },
    )
    batch_norm: bool = dataclasses.field(
        default=False, metadata={"help": "VGG16-BN: batch norm after each convolution"}
    )
    frame_root: Path | None = dataclasses.field(
        default=None,
        metadata={
            "help": "frame store (training.extract_frames; flow: compute_flow --layout frames)"
        },
    )
    # Processes drawing batches; None: runtime.jobs.default_workers(reserve=1) (cores less one).
    workers: int | None = dataclasses.field(
        default=None, metadata={"help": "batch-drawing processes (0: in this process)"}
    )
    # "auto": mixed_bfloat16 when the backend sees a GPU, float32 otherwise.
    precision: str = dataclasses.field(default="auto", metadata={"choices": PRECISIONS})
    # "auto": keras.distribution.DataParallel when JAX sees more than one device.
    data_parallel: str = dataclasses.field(default="auto", metadata={"choices": ("auto", "off")})
    # Extension: leave train_attention's validation part out of fine-tuning (see above).
    hold_out_fraction: float = dataclasses.field(
        default=0.0,
        metadata={"help": "share of the training list left out, as train_attention's validation"},
    )
    hold_out_by: str = dataclasses.field(default="group", metadata={"choices": HOLD_OUTS})
    hold_out_seed: int = dataclasses.field(
        default=0, metadata={"help": "train_attention's --seed of that validation part"}
    )

    def __post_init__(self):
        if not 0.0 <= self.hold_out_fraction < 1.0:
            raise ValueError(
                "Expected --hold-out-fraction in [0, 1). Received: "
                f"hold_out_fraction={self.hold_out_fraction}"
            )
        if self.hold_out_by not in HOLD_OUTS:
            raise ValueError(f"Expected hold_out_by in {HOLD_OUTS}. Received: {self.hold_out_by!r}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"Expected --workers >= 0. Received: workers={self.workers}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Expected precision in {PRECISIONS}. Received: {self.precision!r}")
        if self.data_parallel not in ("auto", "off"):
            raise ValueError(
                f"Expected data_parallel 'auto' or 'off'. Received: {self.data_parallel!r}"
            )
        if not 0.0 <= self.top_dropout < 1.0:
            raise ValueError(
                f"Expected --top-dropout in [0, 1). Received: top_dropout={self.top_dropout}"
            )
        if self.backbone not in BACKBONES:
            raise ValueError(f"Expected backbone in {BACKBONES}. Received: {self.backbone!r}")
        if self.backbone == "VGG16":
            return
        changed = {
            name: getattr(self, name)
            for name, default in VGG16_ONLY_DEFAULTS.items()
            if getattr(self, name) != default
        }
        if changed:
            raise ValueError(
                f"{', '.join(changed)} apply to VGG16 only. Received: "
                f"backbone={self.backbone!r}, {changed}. Leave them out for EfficientNet-Lite."
            )


def training_batches(clips, config: FinetuneConfig) -> FrameBatches:
    """The batches of `config` (stream, batch size, crops, seed) over `clips`, as uint8."""
    return FrameBatches(
        tuple(clips),
        stream=config.stream,
        batch_size=config.batch_size,
        crop_size=config.crop_size,
        frames_per_clip=config.frames_per_clip,
        seed=config.seed,
    )


def build_network(
    config: FinetuneConvnetConfig, num_classes: int, precision: str = "float32"
) -> keras.Model:
    """The classifier to fine-tune: the stage's backbone for its stream, `num_classes`
    wide, from `config.weights`, with the settings' dropout, weight decay and seed, built
    under the dtype policy `precision`; its softmax (`predictions`) computes in float32."""
    with dtype_policy(precision):
        network = _build_backbone(config, num_classes)
    if precision != "float32":
        network.get_layer("predictions").dtype_policy = "float32"  # softmax in float32
    return network


def _build_backbone(config: FinetuneConvnetConfig, num_classes: int) -> keras.Model:
    settings = config.settings
    weights = None if config.weights.lower() == "none" else config.weights
    if config.backbone == "VGG16":
        return build_stream_vgg16(
            settings.stream,
            num_classes=num_classes,
            weights=weights,
            input_size=settings.crop_size,
            fc_units=config.fc_units,
            width_multiplier=config.width_multiplier,
            kernel_initializer=config.kernel_initializer,
            batch_norm=config.batch_norm,
            dropout_rates=(settings.dropout_fc6, settings.dropout_fc7),
            weight_decay=settings.weight_decay,
            seed=settings.seed,
        )
    return efficientnet_lite.build_stream_efficientnet_lite(
        settings.stream,
        variant=efficientnet_lite.BACKBONES[config.backbone],
        num_classes=num_classes,
        weights=weights,
        input_size=settings.crop_size,
        dropout_rate=config.top_dropout,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
    )


def training_clips(
    split,
    stream: str,
    flow_root: Path | None,
    frame_size: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    frame_root: Path | None = None,
):
    """`(loader, label)` for every training clip of a `data.splits.Split`.

    With `frame_root`, each clip is a `StoredClip` of that frame store (RGB frames or
    flow stacks, read at random access); otherwise RGB frames are decoded at
    `frame_size` (height, width) and flow is read from the npz store `flow_root`.
    """
    if frame_root is not None:
        return _stored_clips(split, stream, Path(frame_root))
    if stream == "motion" and flow_root is None:
        raise ValueError(
            "The motion stream needs --flow-root (from training.compute_flow) or --frame-root "
            "(from training.compute_flow --layout frames)."
        )
    if stream == "appearance":
        return [
            (functools.partial(decoded_rgb_frames, clip.path, *frame_size), clip.label)
            for clip in split.train
        ]
    flow = FlowStore(flow_root)
    missing = flow.missing(clip.video_id for clip in split.train)
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(split.train)} training videos have no flow file under "
            f"{flow_root} (first: {missing[0]}.npz). Run `python -m training.compute_flow` "
            "for the training list first."
        )
    return [
        (functools.partial(flow.read_stacks, clip.video_id), clip.label) for clip in split.train
    ]


def _stored_clips(split, stream: str, frame_root: Path):
    """The training clips as stored images, after `FrameStore.check_videos`: every one
    complete, undamaged (as its marker records) and of one size (and flow method), else
    one error naming the video or file and the command that writes it again."""
    store, part = FrameStore(frame_root), "frames" if stream == "appearance" else "flow"
    store.check_videos([clip.video_id for clip in split.train], part)
    return [(StoredClip(frame_root, clip.video_id, stream), clip.label) for clip in split.train]


def _image_size(config: FinetuneConvnetConfig, split, clips) -> tuple[int, int] | None:
    """(height, width) of the training images, where known without reading them all."""
    if config.frame_root is not None:
        return tuple(clips[0][0].read([0]).shape[1:3])
    if config.settings.stream == "motion":
        return FlowStore(config.flow_root).recipe(c.video_id for c in split.train).get("flow_size")
    return (config.height, config.width)


def stage_clips(config: FinetuneConvnetConfig) -> tuple:
    """`(split, held_out, clips)`: the split with its held-out validation videos taken
    out of the training list, those videos, and the training clips that batches draw
    from (`training_clips`)."""
    split = config.source.load()
    held_out = []
    if config.hold_out_fraction > 0:
        kept, held_out = hold_out_validation(
            split.train, config.hold_out_fraction, config.hold_out_seed, config.hold_out_by
        )
        split = dataclasses.replace(split, train=tuple(kept))
    clips = training_clips(
        split, config.settings.stream, config.flow_root, (config.height, config.width),
        config.frame_root,
    )  # fmt: skip
    return split, held_out, clips


def batch_workers(config: FinetuneConvnetConfig) -> int:
    """Processes drawing batches: `--workers`, else one a core less one (the training
    process's)."""
    return default_workers(reserve=1) if config.workers is None else config.workers


def run(config: FinetuneConvnetConfig) -> Path:
    """Fine-tunes the stage's network (resuming from `output_dir`); returns `final.keras`."""
    settings = config.settings
    check_output_folder(config.output_dir, "output folder")
    split, held_out, clips = stage_clips(config)
    image_size = _image_size(config, split, clips)
    if image_size is not None and settings.crop_size > min(image_size):
        raise ValueError(
            f"Expected --crop-size <= the {settings.stream} images' height and width "
            f"({image_size[0]}x{image_size[1]}). Received: crop_size={settings.crop_size}"
        )
    precision = resolve_precision(config.precision)
    workers = batch_workers(config)
    distribution = data_parallel_distribution(config.data_parallel, settings.batch_size)
    devices = 1 if distribution is None else len(distribution.device_mesh.devices.flat)
    print(
        f"{len(clips)} training videos ({len(held_out)} held out), "
        f"{len(split.class_names)} classes, {settings}"
    )
    print(f"precision {precision}, {workers} batch workers, data parallel over {devices} devices")
    previous = keras.distribution.distribution()
    if distribution is not None:
        keras.distribution.set_distribution(distribution)
    try:
        keras.utils.set_random_seed(settings.seed)
        network = build_network(config, len(split.class_names), precision)
        final_path = finetune(
            network,
            training_batches(clips, settings),
            settings,
            config.output_dir,
            preprocessing=preprocessing_mode(config.backbone, settings.stream),
            workers=workers,
            record={
                **network_settings(config),
                "dataset": config.source.dataset,
                "split": config.source.split,
                "classes": config.source.classes,
                "held_out_videos": sorted(clip.video_id for clip in held_out),
                "image_size": image_size,
            },
        )
    finally:
        keras.distribution.set_distribution(previous)
    print(f"Fine-tuned network: {final_path}")
    return final_path


def network_settings(config: FinetuneConvnetConfig) -> dict:
    """The stage's flags that shape its network, for `settings.json`: the backbone, the
    weights it starts from, and the backbone's own flags."""
    if config.backbone == "VGG16":
        own = {name: getattr(config, name) for name in VGG16_ONLY_DEFAULTS}
    else:
        own = {"top_dropout": config.top_dropout}
    return {"backbone": config.backbone, "weights": config.weights, **own}


# === Command line ===


def parse_args(argv: Sequence[str] | None = None) -> FinetuneConvnetConfig:
    return parse_config(
        FinetuneConvnetConfig,
        argv,
        prog="python -m training.finetune_convnet",
        doc=__doc__,
        presets=PRESETS,
    )


def main(argv: Sequence[str] | None = None) -> Path:
    return run(parse_args(argv))


if __name__ == "__main__":
    exit_on_error(main)
