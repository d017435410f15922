"""Fine-tune the appearance or motion VGG16 on video frames, the paper's way (section 3.2).

Mini-batch SGD with momentum 0.9. Spatial net: learning rate 0.001, divided by
10 every 4,000 iterations, stopped at 10,000. Temporal net: 0.005, divided by
10 every 10,000 iterations, stopped at 30,000. Both start from ImageNet (the
temporal net cross-modally). Each frame (or flow stack) carries its video's
label; random crops and horizontal flips.

Writes to `--output-dir`: `checkpoint.npz` every `checkpoint_every` iterations
(weights, optimizer state, dropout seeds, iteration; written atomically, and
a rerun of the same command resumes from it exactly), `log.csv` (loss and
accuracy per iteration) and, at the end, `final.keras`, which
`training.extract_features --weights` reads.

    python -m training.finetune_convnet --preset spatial \
        --video-root UCF-101 --split-dir ucfTrainTestlist --output-dir runs/spatial

`--backbone EfficientNetLite0` (or 1, 2) fine-tunes EfficientNet-Lite instead, from
ImageNet weights that work offline (`models.efficientnet_lite`), with its own
preprocessing and `--top-dropout`; VGG16 stays the default.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from data.atomic_files import atomic_write, check_output_folder
from data.config_flags import exit_on_error, parse_config
from data.flow_store import FlowStore
from data.frame_dataset import FrameDataset, Preprocess
from data.splits import SplitSource
from data.video import read_video
from models import efficientnet_lite
from models.two_stream_vgg16 import STREAMS, build_stream_vgg16, preprocess_images


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
    momentum: float = 0.9
    # Paper silent; 256 as in Wang et al. 2015, whose procedure the paper follows.
    batch_size: int = 256
    # Section 3.2: 224x224 inputs, cropped from 256x340 frames.
    crop_size: int = 224
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
    seed: int = 0

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


def compile_for_finetuning(model: keras.Model, config: FinetuneConfig) -> keras.Model:
    """Compile `model` with SGD + momentum on the step schedule, and build the optimizer."""
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(config), momentum=config.momentum
    )
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
    """Restore a `save_checkpoint` file into a compiled `model`; returns the iteration."""
    with np.load(path) as arrays:
        for prefix, variables in (
            ("model", model.variables),
            ("optimizer", model.optimizer.variables),
        ):
            # Paths of seed generators are numbered per process, so compare shapes.
            saved = [
                arrays[f"{prefix}/{index:04d}"] for index in range(len(arrays[f"{prefix}/paths"]))
            ]
            if [array.shape for array in saved] != [
                tuple(variable.shape) for variable in variables
            ]:
                raise ValueError(
                    f"Checkpoint {path} does not match the model ({prefix} variables differ: "
                    f"{len(saved)} saved, {len(variables)} expected, or their shapes). Use the "
                    "settings that wrote it, or another --output-dir."
                )
            for variable, array in zip(variables, saved, strict=True):
                variable.assign(array)
        return int(arrays["iteration"])


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


def finetune(
    model: keras.Model,
    dataset: FrameDataset,
    config: FinetuneConfig,
    output_dir: str | os.PathLike,
    *,
    prefetch: int = 2,
    progress: bool = True,
) -> Path:
    """Train `model` on `dataset` for `config.max_iterations`, resuming from `output_dir`.

    Args:
        model: A classifier, e.g. `build_stream_vgg16(...)`; compiled here.
        dataset: Batch `i` is the batch of iteration `i` (`len(dataset)` must
            cover `config.max_iterations`).
        config: The schedule, momentum and checkpoint interval.
        output_dir: Where `checkpoint.npz`, `log.csv` and `final.keras` go.
        prefetch: Batches loaded ahead in background threads (0: none).
        progress: Show a tqdm bar with images/s.

    Returns:
        The path of `final.keras`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if len(dataset) < config.max_iterations:
        raise ValueError(
            f"Expected a dataset of >= max_iterations={config.max_iterations} batches. "
            f"Received: len(dataset)={len(dataset)}"
        )
    compile_for_finetuning(model, config)
    checkpoint_path = output_dir / CHECKPOINT_NAME
    start = load_checkpoint(checkpoint_path, model) if checkpoint_path.exists() else 0
    schedule = learning_rate_schedule(config)
    log_file, log = _open_log(output_dir / LOG_NAME, start)
    bar = tqdm(
        total=config.max_iterations,
        initial=start,
        desc=f"finetune {config.stream}",
        unit="it",
        disable=not progress,
    )
    try:
        with ThreadPoolExecutor(max(prefetch, 1)) as pool:
            pending = {}
            for iteration in range(start, config.max_iterations):
                for ahead in range(iteration, min(iteration + prefetch + 1, config.max_iterations)):
                    if ahead not in pending:
                        pending[ahead] = pool.submit(dataset.__getitem__, ahead)
                images, labels = pending.pop(iteration).result()
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
                done = iteration + 1
                if done % config.checkpoint_every == 0 or done == config.max_iterations:
                    save_checkpoint(checkpoint_path, model, done)
                bar.update(1)
                bar.set_postfix(
                    loss=row["loss"], lr=row["learning_rate"], img_s=row["images_per_second"]
                )
    finally:
        bar.close()
        log_file.close()
    final_path = output_dir / FINAL_NAME
    model.save(final_path)
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
    output_dir: Path
    settings: FinetuneConfig = SPATIAL_PAPER
    flow_root: Path | None = dataclasses.field(
        default=None, metadata={"help": "flow store (motion)"}
    )
    height: int = dataclasses.field(default=256, metadata={"help": "decoded RGB frame height"})
    width: int = dataclasses.field(default=340, metadata={"help": "decoded RGB frame width"})
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
    workers: int = dataclasses.field(default=4, metadata={"help": "batches prefetched in threads"})

    def __post_init__(self):
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


def _load_rgb_frames(path: Path, height: int = 256, width: int = 340) -> np.ndarray:
    return read_video(path, height, width).frames  # (frames, height, width, 3) uint8 RGB


def training_dataset(
    clips, config: FinetuneConfig, preprocess: Preprocess = preprocess_images
) -> FrameDataset:
    """The batches of `config` (stream, batch size, iterations, crops, seed) over `clips`,
    preprocessed by `preprocess(crops, stream)` (the backbone's; default VGG16's)."""
    return FrameDataset(
        clips,
        stream=config.stream,
        batch_size=config.batch_size,
        num_batches=config.max_iterations,
        crop_size=config.crop_size,
        frames_per_clip=config.frames_per_clip,
        seed=config.seed,
        preprocess=preprocess,
    )


def build_network(config: FinetuneConvnetConfig, num_classes: int) -> keras.Model:
    """The classifier to fine-tune: the stage's backbone for its stream, `num_classes`
    wide, from `config.weights`, with the settings' dropout, weight decay and seed."""
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


def backbone_preprocessing(backbone: str) -> Preprocess:
    """`preprocess(crops, stream)` of `backbone`: VGG16's (caffe RGB, uint8 - 128 flow) or
    EfficientNet-Lite's ((x - 127) / 128 RGB, (uint8 - 128) / 128 flow)."""
    if backbone in efficientnet_lite.BACKBONES:
        return efficientnet_lite.preprocess_images
    return preprocess_images


def training_clips(
    split, stream: str, flow_root: Path | None, frame_size: tuple[int, int] = (256, 340)
):
    """`(loader, label)` for every training clip of a `data.splits.Split`.

    RGB frames are decoded at `frame_size` (height, width); flow is read as stored.
    """
    if stream == "motion" and flow_root is None:
        raise ValueError("The motion stream needs --flow-root (from data.optical_flow).")
    if stream == "appearance":
        return [
            (functools.partial(_load_rgb_frames, clip.path, *frame_size), clip.label)
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


def run(config: FinetuneConvnetConfig) -> Path:
    """Fine-tunes the stage's network (resuming from `output_dir`); returns `final.keras`."""
    settings = config.settings
    check_output_folder(config.output_dir, "output folder")
    if config.workers < 0:
        raise ValueError(f"Expected --workers >= 0. Received: workers={config.workers}")
    split = config.source.load()
    clips = training_clips(split, settings.stream, config.flow_root, (config.height, config.width))
    if settings.stream == "motion":
        flow_recipe = FlowStore(config.flow_root).recipe(c.video_id for c in split.train)
        image_size = flow_recipe.get("flow_size")
    else:
        image_size = (config.height, config.width)
    if image_size is not None and settings.crop_size > min(image_size):
        raise ValueError(
            f"Expected --crop-size <= the {settings.stream} images' height and width "
            f"({image_size[0]}x{image_size[1]}). Received: crop_size={settings.crop_size}"
        )
    print(f"{len(clips)} training videos, {len(split.class_names)} classes, {settings}")
    dataset = training_dataset(clips, settings, backbone_preprocessing(config.backbone))
    keras.utils.set_random_seed(settings.seed)
    model = build_network(config, len(split.class_names))
    final_path = finetune(model, dataset, settings, config.output_dir, prefetch=config.workers)
    print(f"Wrote {final_path}")
    return final_path


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
