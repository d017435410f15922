"""One experiment from one config file: videos on disk to Tables 1-3, Fig. 1 and the probe.

    python -m evaluation.experiment evaluation/experiments/ucf101_subset.toml
    python -m evaluation.experiment evaluation/experiments/ucf101.toml --plan
    python -m evaluation.experiment --print-config > my_experiment.toml

Every stage is the project's own (`run(config)`, as its command line calls it), in
order, for every split of the config:

 1. frames: the frame store, RGB JPEGs (`training.extract_frames`);
 2. flow: flow images beside them (`training.compute_flow --layout frames`);
 3. fine-tuning: a spatial and a temporal net per split (`training.finetune_convnet`),
    where fine-tuned features are among the candidates;
 4. features: per stream, of the frozen net (one store for every split) and/or of
    each split's fine-tuned nets (`training.extract_features`);
 5. the paper's recipe: the attention model and the mean-pooling baseline per
    stream on each candidate's features (`training.train_attention`);
 6. features chosen per stream on the validation parts (`evaluation.selection`);
 7. the other recipes on the chosen features; the recipe chosen on validation;
 8. scoring of every run on its test list (`evaluation.scoring`), Tables 1-3 of each
    recipe (`evaluation.tables`), the linear probe on the chosen features as a
    reference row (`evaluation.linear_probe`), Fig. 1 style figures of test videos
    of split `splits[0]` (`evaluation.attention`).

Each stage skips what is done, so re-running the command resumes; an interrupted
stage resumes as the stages do, except a training stopped in the middle, which is
trained again from its first epoch (so that results do not depend on where the run was
stopped). A stage that records failures stops the runner (exit status 1, the failures
named). Trainings and scorings run `train_jobs` at once. Choices read validation parts
only; the test lists are read only to score. `--plan` prints every stage, what of it is done, and
the time and disk the rest will take (`evaluation.stage_rates`: this work folder's
measured rates, or another run's given with `--rates`), before any work.

The config file (TOML, or JSON) holds the whole experiment as the stages' own config
dataclasses, nested: `[source]` (`data.splits.SplitSource`), `[frames]`
(`FrameSettings`), `[flow]` (`FlowSettings`), `[recipe]` (`FeatureRecipe`), `[finetune]`
(`FinetuneStage`), `[spatial]` / `[temporal]` (`FinetuneConfig`), `[train]`
(`TrainConfig`) and `[recipes]` (name = the `[train]` fields it changes). A key left
out keeps the default that `--print-config` shows; an unknown key, or one the runner
sets itself (a run's split, stream, model), is refused naming the file. The results
folder records the config it was made from as `experiment.toml`, which re-makes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import os
import re
import shutil
import sys
import time
import tomllib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pandas as pd

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.flow_store import FlowSettings
from temporal_attention.data.frame_store import FrameSettings, FrameStore, encode_jpeg
from temporal_attention.data.splits import SplitSource
from temporal_attention.data.video import VideoError, VideoReader
from temporal_attention.evaluation import (
    attention,
    linear_probe,
    scoring,
    selection,
    stage_rates,
    tables,
)
from temporal_attention.evaluation.stage_rates import Rate
from temporal_attention.models.feature_extraction import FeatureRecipe
from temporal_attention.models.two_stream_vgg16 import STREAMS
from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.batch_jobs import run_jobs
from temporal_attention.runtime.config_flags import exit_on_error, optional_inner, set_by
from temporal_attention.runtime.devices import PRECISIONS
from temporal_attention.runtime.jobs import JobResult, default_workers
from temporal_attention.training import (
    compute_flow,
    extract_features,
    extract_frames,
    finetune_convnet,
    train_attention,
)
from temporal_attention.training.finetune_convnet import (
    FINAL_NAME,
    FinetuneConfig,
    FinetuneConvnetConfig,
)
from temporal_attention.training.runs import MODELS, PRESETS, Run, TrainConfig

FEATURE_SETS = ("finetuned", "frozen")
# The net fine-tuned for each stream, and its preset in `training.finetune_convnet`.
NETS = {"appearance": "spatial", "motion": "temporal"}
# The fine-tuning schedule's fields an iteration's time depends on: a rate measured on a
# short schedule plans a long one of the same batch.
FINETUNE_SPEED = ("batch_size", "crop_size", "frames_per_clip", "checkpoint_every")
PAPER_RECIPE = "paper"
CONFIG_NAME = "experiment.toml"


@dataclass(frozen=True)
class FinetuneStage:
    """How both ConvNets are fine-tuned (`training.finetune_convnet`); the backbone and
    its shape are the features' (`[recipe]`), the schedules `[spatial]` / `[temporal]`."""

    # Weights to start from: "imagenet" (the paper's), "none" or a file.
    weights: str = "imagenet"
    # EfficientNet-Lite only: dropout before its classifier (ImageNet training: 0.2).
    top_dropout: float = 0.2
    # Initial kernels of a network trained from scratch (loaded weights replace them).
    kernel_initializer: str = "glorot_uniform"
    # Processes drawing batches; -1: the stage's default (cores less one).
    workers: int = -1
    # "auto": mixed_bfloat16 on a GPU, float32 elsewhere; or float32, mixed_float16,
    # mixed_bfloat16.
    precision: str = "auto"
    # "auto": data parallel over every device JAX sees; "off": one device.
    data_parallel: str = "auto"
    # Extension: leave out of fine-tuning the validation part that `[train]` holds out
    # (so that choosing on validation is not flattered); false: the paper's whole list.
    hold_out_validation: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment; every stage's settings are its own config's fields."""

    # Where the videos and the official split files are, the dataset ("ucf101" or
    # "hmdb51") and an optional class subset. Its `split` is set per split.
    source: SplitSource
    # A name for the results (figures, tables).
    name: str = "experiment"
    # Official splits to run (the paper reports the mean over 1, 2 and 3).
    splits: tuple[int, ...] = (1, 2, 3)
    # Frames, flow, nets, features and runs go here.
    work_dir: Path = Path("runs/experiment")
    # Tables, choices, probe, figures and the config go here.
    results_dir: Path = Path("evaluation/results/experiment")
    # Processes of the frame and flow stages; 0: every core.
    workers: int = 0
    # The frame store: size the frames are stored at, JPEG quality.
    frames: FrameSettings = FrameSettings()
    # Optical flow: method ("auto": tvl1_keras on a GPU, OpenCV's tvl1 elsewhere) and size.
    flow: FlowSettings = FlowSettings()
    # Candidate features of each stream: "finetuned" (the paper's: ConvNets fine-tuned
    # per split) and/or "frozen" (the ImageNet backbone as is). With both, each stream
    # takes the one of the better mean validation accuracy (paper recipe).
    features: tuple[str, ...] = FEATURE_SETS
    # How features are made (backbone, its layer and shape, crop, precision); `weights`
    # is the frozen candidate's (fine-tuned features read each split's nets).
    recipe: FeatureRecipe = FeatureRecipe()
    # Extraction: videos' frames per batch, and reading processes (-1: the stage's default).
    extract_batch_size: int = 64
    extract_workers: int = -1
    # Fine-tuning of both nets, and each net's schedule (section 3.2's by default).
    finetune: FinetuneStage = FinetuneStage()
    spatial: FinetuneConfig = finetune_convnet.SPATIAL_PAPER
    temporal: FinetuneConfig = finetune_convnet.TEMPORAL_PAPER
    # Every attention and baseline run (section 3.2's by default); its dataset, split,
    # stream, model and classes are set by the runner.
    train: TrainConfig = PRESETS["paper"]
    # Recipes to compare, each the `[train]` fields it changes; the first is also the
    # one the features are chosen with. The recipe of the best mean validation accuracy
    # is reported (Tables 1-3 of every recipe are written).
    recipes: dict = field(default_factory=lambda: {PAPER_RECIPE: {}})
    # XLA-compile each run's training step (off: plain graphs, faster for tiny models
    # on a CPU); JAX: keep compiled programs here, shared by the runs (empty: off).
    jit_compile: bool = True
    compile_cache: str = ""
    # The trainings' Keras dtype policy (`train_attention --precision`): float32, the
    # paper's arithmetic; mixed_bfloat16 (or "auto": on a GPU) is an extension for speed.
    train_precision: str = "float32"
    # Trainings (and scorings) at once, each in a process of its own (1: one after
    # another in this process). One attention model leaves a GPU mostly idle; several fill it
    # (on a GPU each process then takes device memory as it needs it, not all at once).
    train_jobs: int = 1
    # Fig. 1 style figures: these test videos of split `splits[0]` (ids such as
    # "Punch/v_Punch_g01_c01"); empty: the first test video of each class, at most
    # `num_figures`.
    figure_videos: tuple[str, ...] = ()
    num_figures: int = 3
    # The linear probe on the chosen features, as a reference row.
    probe: bool = True

    def __post_init__(self):
        if self.train_jobs < 1:
            raise ValueError(f"Expected train_jobs >= 1. Received: train_jobs={self.train_jobs}")
        if not self.splits or not set(self.splits) <= {1, 2, 3}:
            raise ValueError(f"Expected splits among 1, 2, 3. Received: splits={self.splits}")
        if not self.features or not set(self.features) <= set(FEATURE_SETS):
            raise ValueError(
                f"Expected features among {FEATURE_SETS}. Received: features={self.features}"
            )
        if self.train_precision not in PRECISIONS:
            raise ValueError(
                f"Expected train_precision in {PRECISIONS}. Received: {self.train_precision!r}"
            )
        if not self.recipes:
            raise ValueError("Expected at least one recipe in [recipes].")
        for name, changes in self.recipes.items():
            if not re.fullmatch(r"[\w.-]+", name):
                raise ValueError(f"Expected a recipe name of letters, digits, _ . -: {name!r}")
            if not isinstance(changes, dict):
                raise ValueError(f"Expected [recipes] {name} to be a table of [train] fields.")
            self.recipe_settings(name)  # every change is a field with a valid value

    def recipe_settings(self, name: str) -> TrainConfig:
        """`[train]` with the changes of recipe `name` (unknown fields are named)."""
        return _with_values(self.train, self.recipes[name], f"[recipes] {name}")


# Fields that the runner sets itself: not in a config file.
SET_BY_RUNNER = {
    SplitSource: {"split"},
    FeatureRecipe: {"stream", "height", "width", "flow_method", "flow_size", "image_source"},
    FinetuneConfig: {"stream"},
    TrainConfig: {"dataset", "split", "stream", "model", "classes"},
}


# === The config file ===


def _comments(config_type) -> dict[str, str]:
    """Each field's comment: its `help`, else the comment lines just above it in the
    class's source (or at the end of its line)."""
    found, last = {}, ""
    try:
        lines = inspect.getsource(config_type).splitlines()
    except (OSError, TypeError):
        lines = []
    for index, line in enumerate(lines):
        match = re.match(r"\s+(\w+): [^=]+(?:=.*)?$", line)
        if not match:
            continue
        above = []
        for previous in reversed(lines[:index]):
            if not previous.strip().startswith("#"):
                break
            above.insert(0, previous.strip().lstrip("#").strip())
        trailing = line.partition("  # ")[2]
        comment = " ".join(above) or trailing
        if not comment and index and re.match(r"\s+\w+: ", lines[index - 1]):
            comment = last  # one comment above a group of fields
        found.setdefault(match.group(1), comment)
        last = found[match.group(1)]
    for item in dataclasses.fields(config_type):
        if item.metadata.get("help"):
            found[item.name] = item.metadata["help"]
        elif not found.get(item.name) and item.metadata.get("choices"):
            found[item.name] = "one of " + ", ".join(map(str, item.metadata["choices"]))
    return found


def _settable(config_type) -> list[dataclasses.Field]:
    """The fields of `config_type` that a config file may set."""
    skipped = SET_BY_RUNNER.get(config_type, set())
    return [
        item
        for item in dataclasses.fields(config_type)
        if item.init and item.name not in skipped and item.metadata.get("flag", True)
    ]


def _convert(value, kind, where: str):
    """A value read from the file as the field's type (Path, tuple, nested dataclass)."""
    if value is None:
        return None
    kind = optional_inner(kind)
    origin = typing.get_origin(kind)
    if kind is Path:
        return Path(value)
    if origin is tuple or kind is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list. Received: {value!r}")
        inner = typing.get_args(kind)[0] if typing.get_args(kind) else object
        return tuple(_convert(item, inner, where) for item in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _with_values(base, values: dict, where: str):
    """`base` (a config dataclass instance) with the file's `values` set, nested tables
    building nested configs from `base`'s; unknown keys are named."""
    config_type = type(base)
    hints = typing.get_type_hints(config_type)
    allowed = {item.name for item in _settable(config_type)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown or runner-set keys {unknown}; expected some of {sorted(allowed)}."
        )
    changes = {}
    for name, value in values.items():
        kind, current = hints[name], getattr(base, name)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name}: expected a table.")
            changes[name] = _with_values(current, value, f"{where}.{name}")
        else:
            changes[name] = _convert(value, kind, f"{where}.{name}")
    try:
        # From what `base` sets, not every field: `__post_init__` derives again what
        # depends on a changed field (a backbone's feature layer, say).
        return config_type(**{**set_by(config_type, base), **changes})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def _derived(instance, item: dataclasses.Field) -> bool:
    """Whether a field that defaults to None holds what its class derives (from the
    other fields) rather than a value of its own."""
    if item.default is not None:
        return False
    value = getattr(instance, item.name)
    if value is None:
        return False
    settings = set_by(type(instance), instance)
    settings.pop(item.name, None)
    try:
        return getattr(type(instance)(**settings), item.name) == value
    except (TypeError, ValueError):
        return False


def config_from_mapping(values: dict, where: str = "the config") -> ExperimentConfig:
    """The experiment of a parsed config file (`where` names it in errors)."""
    values = dict(values)
    source = values.pop("source", None)
    if not isinstance(source, dict) or not {"video_root", "split_dir"} <= set(source):
        raise ValueError(f"{where}: expected a [source] table with video_root and split_dir.")
    base = ExperimentConfig(
        source=SplitSource(Path(source["video_root"]), Path(source["split_dir"]))
    )
    values["source"] = source
    return _with_values(base, values, where)


def load_config(path: str | Path) -> ExperimentConfig:
    """Reads a `.toml` (or `.json`) experiment file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"Cannot read the experiment config {path}: {error.strerror}.") from None
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from None
    return config_from_mapping(values, str(path))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"Cannot write {value!r} as TOML.")


def _table_lines(instance) -> tuple[list[str], list[tuple[str, object]]]:
    """`key = value` lines (each after its comment) of a config's plain fields, and its
    nested configs to write as tables."""
    lines, nested = [], []
    comments = _comments(type(instance))
    for item in _settable(type(instance)):
        value = getattr(instance, item.name)
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            nested.append((item.name, value))
            continue
        if comments.get(item.name):
            lines.append(f"# {comments[item.name]}")
        if value is None:
            lines.append(f"# {item.name} = (none)")
        elif _derived(instance, item):
            lines.append(f"# {item.name} = {_toml_value(value)} (derived; set it to change it)")
        else:
            lines.append(f"{item.name} = {_toml_value(value)}")
    return lines, nested


def to_toml(config: ExperimentConfig) -> str:
    """The config as a TOML file that `load_config` reads back to the same config, each
    field after its comment."""
    doc = (ExperimentConfig.__doc__ or "").strip()
    out = [f"# {doc}", "# python -m evaluation.experiment THIS_FILE [--plan]", ""]
    top, nested = _table_lines(config)
    out += top
    for name, value in nested:
        out.append("")
        if name == "recipes":
            out.append("# Recipes to compare: name = the [train] fields it changes.")
            out.append("[recipes]")
            out += [f"{key} = {_toml_value(changes)}" for key, changes in value.items()]
            continue
        doc = " ".join((type(value).__doc__ or "").split("\n\n")[0].split())
        out.append(f"# {doc}")
        out.append(f"[{name}]")
        lines, deeper = _table_lines(value)
        out += lines
        if deeper:
            raise TypeError(f"[{name}] has nested tables, which to_toml does not write.")
    return "\n".join(out) + "\n"


# === Paths ===


def frames_root(config: ExperimentConfig) -> Path:
    return config.work_dir / "frames"


def net_dir(config: ExperimentConfig, split: int, stream: str) -> Path:
    return config.work_dir / "convnets" / f"split{split}" / NETS[stream]


def feature_store(config: ExperimentConfig, features: str, split: int, stream: str) -> Path:
    """The frozen features serve every split; fine-tuned ones are each split's."""
    if features == "frozen":
        return config.work_dir / "features" / "frozen" / stream
    return config.work_dir / "features" / "finetuned" / f"split{split}" / stream


def runs_root(config: ExperimentConfig, features: str, recipe: str) -> Path:
    """Runs of one recipe on one feature set ("chosen": each stream's chosen features)."""
    return config.work_dir / "runs" / features / recipe


def source_of(config: ExperimentConfig, split: int) -> SplitSource:
    return dataclasses.replace(config.source, split=split)


def train_settings(
    config: ExperimentConfig, recipe: str, split: int, stream: str, model: str
) -> TrainConfig:
    return dataclasses.replace(
        config.recipe_settings(recipe),
        dataset=config.source.dataset,
        split=split,
        stream=stream,
        model=model,
        classes=config.source.classes,
    )


def all_clips(config: ExperimentConfig) -> list:
    """Every video of the selected classes (split 1's lists hold each once)."""
    split = source_of(config, 1).load()
    return [*split.train, *split.test]


def all_video_ids(config: ExperimentConfig) -> list[str]:
    return [clip.video_id for clip in all_clips(config)]


# Videos whose frame count is read from their header to estimate the rest's.
FRAME_COUNT_SAMPLE = 200


def frame_counts(clips: Sequence) -> dict[str, float]:
    """Each video's frames, from its header; beyond `FRAME_COUNT_SAMPLE` videos, the mean
    of that many evenly spaced ones stands for the others (an estimate for `--plan`)."""
    step = max(1, len(clips) // FRAME_COUNT_SAMPLE)
    counted = {}
    for clip in clips[::step]:
        capture = cv2.VideoCapture(str(clip.path))
        counted[clip.video_id] = max(0.0, capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
    mean = sum(counted.values()) / max(1, len(counted))
    return {clip.video_id: counted.get(clip.video_id, mean) for clip in clips}


def measure_frame_rate(config: ExperimentConfig, clips: Sequence, videos: int = 3) -> Rate | None:
    """The frame store's rate, measured now: the first 24 frames of `videos` videos
    decoded, resized and JPEG-encoded in this process, the time divided by the stage's
    processes. None when no video can be read."""
    settings, frames, seconds, written = config.frames, 0, 0.0, 0
    step = max(1, len(clips) // videos)
    for clip in list(clips[::step])[:videos]:
        start = time.perf_counter()
        try:
            chunk = next(VideoReader(clip.path, settings.height, settings.width).chunks(24))
        except (VideoError, StopIteration):
            continue
        for frame in chunk:
            written += len(encode_jpeg(frame[..., ::-1], settings.jpeg_quality))
        seconds += time.perf_counter() - start
        frames += len(chunk)
    if not frames:
        return None
    workers = config.workers or default_workers()
    return Rate(
        seconds=seconds / frames / workers,
        bytes=written / frames,
        units=frames,
        unit="frames",
        machine=stage_rates.machine(),
        settings=dataclasses.asdict(settings),
        source=f"measured now: {frames} frames of {videos} videos, one process, / {workers}",
    )


# === Stages ===


def _stage_configs(config: ExperimentConfig):
    """The configs of the data stages, built once (errors before any work)."""
    every = source_of(config, 1)
    workers = {"workers": config.workers} if config.workers > 0 else {}
    frames = extract_frames.ExtractFramesConfig(
        source=every, output=frames_root(config), settings=config.frames, **workers
    )
    flow = compute_flow.ComputeFlowConfig(
        source=every,
        output=frames_root(config),
        settings=config.flow,
        layout="frames",
        **workers,
    )
    return frames, flow


def finetune_config(config: ExperimentConfig, split: int, stream: str) -> FinetuneConvnetConfig:
    recipe, options = config.recipe, config.finetune
    hold_out = {}
    if options.hold_out_validation:
        hold_out = {
            "hold_out_fraction": config.train.validation_fraction,
            "hold_out_by": config.train.validation_by,
            "hold_out_seed": config.train.seed,
        }
    return FinetuneConvnetConfig(
        source=source_of(config, split),
        output_dir=net_dir(config, split, stream),
        settings=config.spatial if stream == "appearance" else config.temporal,
        frame_root=frames_root(config),
        height=config.frames.height,
        width=config.frames.width,
        weights=options.weights,
        backbone=recipe.backbone,
        top_dropout=options.top_dropout,
        fc_units=recipe.fc_units,
        width_multiplier=recipe.width_multiplier,
        kernel_initializer=options.kernel_initializer,
        batch_norm=recipe.batch_norm,
        workers=None if options.workers < 0 else options.workers,
        precision=options.precision,
        data_parallel=options.data_parallel,
        **hold_out,
    )


def extract_config(
    config: ExperimentConfig, features: str, split: int, stream: str
) -> extract_features.ExtractFeaturesConfig:
    weights = config.recipe.weights
    if features == "finetuned":
        weights = str(net_dir(config, split, stream) / FINAL_NAME)
    recipe = dataclasses.replace(
        config.recipe,
        stream=stream,
        weights=weights,
        height=config.frames.height,
        width=config.frames.width,
        image_source="frames",
    )
    workers = {} if config.extract_workers < 0 else {"workers": config.extract_workers}
    return extract_features.ExtractFeaturesConfig(
        source=source_of(config, split),
        store=feature_store(config, features, split, stream),
        recipe=recipe,
        frame_root=frames_root(config),
        batch_size=config.extract_batch_size,
        **workers,
    )


def train_config(
    config: ExperimentConfig, features: str, recipe: str, split: int, stream: str, model: str,
    root: Path | None = None,
) -> train_attention.TrainAttentionConfig:  # fmt: skip
    return train_attention.TrainAttentionConfig(
        video_root=config.source.video_root,
        split_dir=config.source.split_dir,
        store=feature_store(config, features, split, stream),
        train=train_settings(config, recipe, split, stream, model),
        runs=root or runs_root(config, features, recipe),
        jit_compile=config.jit_compile,
        compile_cache=Path(config.compile_cache) if config.compile_cache else None,
        precision=config.train_precision,
    )


def trained(train: train_attention.TrainAttentionConfig) -> bool:
    return Run.for_config(train.runs, train.train).is_trained()


def epochs_logged(train: train_attention.TrainAttentionConfig) -> int:
    """The epochs a training has finished so far (rows of its `history.csv`)."""
    path = Run.for_config(train.runs, train.train).history_path
    try:
        with open(path, "rb") as handle:
            return max(0, handle.read().count(b"\n") - 1)
    except OSError:
        return 0


def iterations_logged(folder: Path) -> int:
    """The last iteration a fine-tuning has logged (`log.csv`'s last row), 0 if none."""
    try:
        with open(folder / finetune_convnet.LOG_NAME, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return int(last.split(b",", 1)[0])
    except (OSError, ValueError):
        return 0


def _choices_path(config: ExperimentConfig) -> Path:
    return config.work_dir / "choices.json"


def read_choices(config: ExperimentConfig) -> dict:
    path = _choices_path(config)
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_choices(config: ExperimentConfig, choices: dict) -> None:
    with atomic_write(_choices_path(config)) as path:
        path.write_text(json.dumps(choices, indent=2))


@dataclass
class Stage:
    """One stage of the plan: a name, its units of work (name, done?) and the work; the
    amount of work left in `unit`s, the folders it writes and the settings its speed
    depends on (`evaluation.stage_rates`)."""

    name: str
    units: Callable[[], list[tuple[str, bool | None]]]
    work: Callable[[], None]
    unit: str = "stage"
    left: Callable[[], float] | None = None
    writes: Callable[[], list[Path]] = lambda: []
    settings: dict = field(default_factory=dict)
    key: str = ""
    # The units done so far, read while the stage works (`stage_rates.Progress`); None:
    # the units left when it began less those left now.
    done: Callable[[], float] | None = None
    # The networks or runs left, for a stage whose disk grows by job, not by unit.
    jobs_left: Callable[[], float] | None = None

    def __post_init__(self):
        self.key = self.key or self.name

    def amount_left(self) -> float:
        if self.left is not None:
            return float(self.left())
        units = self.units()
        return float(any(not state for _, state in units))


class StageFailed(RuntimeError):
    """A stage finished with failures (recorded and listed); the later stages would
    read what is missing, so the runner stops there."""


_MODELS: train_attention.ModelCache | None = None


def _train_job(label: str, train: train_attention.TrainAttentionConfig) -> JobResult:
    """One training, a `runtime.batch_jobs` task; a process's trainings share its models
    (`training.train_attention.ModelCache`: one trace per architecture)."""
    global _MODELS
    if _MODELS is None:
        _MODELS = train_attention.ModelCache()
    start = time.perf_counter()
    if Run.for_config(train.runs, train.train).root.exists():  # stopped in the middle
        # Trained again from its first epoch: a resume (Keras' BackupAndRestore) puts back
        # the weights and the optimizer, not the data order's and dropout's random state,
        # so it would not end where an uninterrupted training does.
        train = dataclasses.replace(train, overwrite=True)
    train_attention.run(train, verbose=0, models=_MODELS)
    return JobResult(label, "done", seconds=time.perf_counter() - start)


def _score_job(label: str, root: str) -> JobResult:
    """Scores one run on its test list (`evaluation.scoring.score_run`), a
    `runtime.batch_jobs` task: the runs to score at once are `train_jobs`, as trainings."""
    start = time.perf_counter()
    scoring.run(scoring.ScoringConfig(run=(root,)))  # prints the run's accuracy
    return JobResult(label, "done", seconds=time.perf_counter() - start)


def _check_report(stage: str, report) -> None:
    if report is not None and report.failures:
        lines = [f"  {failure.item_id}: {failure.message}" for failure in report.failures[:10]]
        more = len(report.failures) - len(lines)
        raise StageFailed(
            f"{stage}: {len(report.failures)} failed:\n" + "\n".join(lines)
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nThe rest is written. Fix or remove these videos (or leave their classes out "
            "of [source] classes) and run the same command again: it goes on from here."
        )  # fmt: skip


def runs_of(config: ExperimentConfig, features: str, recipe: str) -> dict[tuple, Run]:
    """`{(split, stream, model): Run}` of one recipe's runs under `runs_root`."""
    return {
        (split, stream, model): Run.for_config(
            runs_root(config, features, recipe),
            train_settings(config, recipe, split, stream, model),
        )
        for split in config.splits
        for stream in STREAMS
        for model in MODELS
    }


def stages(config: ExperimentConfig) -> list[Stage]:
    """Every stage of the experiment, in order."""
    frames, flow = _stage_configs(config)
    splits, sets, streams = config.splits, list(config.features), STREAMS
    recipes = list(config.recipes)
    first = recipes[0]
    clips = functools.cache(lambda: all_clips(config))  # read once, when asked
    video_ids = functools.cache(lambda: [clip.video_id for clip in clips()])
    counts = functools.cache(lambda: frame_counts(clips()))
    train_videos = functools.cache(
        lambda: {k: len(source_of(config, k).load().train) for k in splits}
    )

    def frame_units(part):
        store = FrameStore(frames_root(config))
        return [(video, store.status(video, part) == "complete") for video in video_ids()]

    def frames_left(part):
        return lambda: sum(counts()[video] for video, done in frame_units(part) if not done)

    nets = [(split, stream) for split in splits for stream in streams if "finetuned" in sets]

    def net_done(split, stream):
        return (net_dir(config, split, stream) / FINAL_NAME).is_file()

    def finetune_work(stream):
        for split, net_stream in nets:
            if net_stream == stream and not net_done(split, stream):
                print(f"--- fine-tuning the {NETS[stream]} net of split {split}", flush=True)
                finetune_convnet.run(finetune_config(config, split, stream))

    def schedule(stream):
        return config.spatial if stream == "appearance" else config.temporal

    def feature_jobs(stream):
        return [
            (features, split)
            for features in sets
            for split in (splits if features == "finetuned" else splits[:1])
        ]

    def stored(features, split, stream):
        store = FeatureStore(feature_store(config, features, split, stream))
        return {video for video in video_ids() if store.path_for(video).is_file()}

    def feature_units(stream):
        def units():
            result, videos = [], video_ids()
            for features, split in feature_jobs(stream):
                count = len(stored(features, split, stream))
                result.append((f"{features} split {split}: {count} of {len(videos)} videos",
                               count == len(videos)))  # fmt: skip
            return result

        return units

    def feature_frames_left(stream):
        def left():
            total = 0.0
            for features, split in feature_jobs(stream):
                done = stored(features, split, stream)
                total += sum(n for video, n in counts().items() if video not in done)
            return total

        return left

    def feature_work(stream):
        for features, split in feature_jobs(stream):
            print(f"--- {features} {stream} features (split {split})", flush=True)
            job = extract_config(config, features, split, stream)
            _check_report(f"{features} {stream} features of split {split}",
                          extract_features.run(job))  # fmt: skip

    def candidate_trainings():
        return [
            train_config(config, features, first, split, stream, model)
            for features in sets
            for split in splits
            for stream in streams
            for model in MODELS
        ]

    def train_units(trainings):
        return [
            (
                f"{t.train.stream} {t.train.model} split {t.train.split} on {t.runs}",
                trained(t),
            )
            for t in trainings
        ]

    def video_epochs_left(trainings):
        return lambda: sum(
            train_videos()[t.train.split] * t.train.epochs for t in trainings() if not trained(t)
        )

    def video_epochs_done(trainings):
        return lambda: sum(train_videos()[t.train.split] * epochs_logged(t) for t in trainings())

    def trainings_left(trainings):
        return lambda: sum(not trained(t) for t in trainings())

    def train_all(trainings):
        waiting = [train for train in trainings if not trained(train)]
        if not waiting:
            return
        tasks = [
            (f"{t.train.stream} {t.train.model} split {t.train.split} ({t.runs})", t)
            for t in waiting
        ]
        jobs = min(config.train_jobs, len(tasks))
        print(f"--- {len(tasks)} trainings, {jobs} at once", flush=True)
        report = run_jobs(_train_job, tasks, workers=jobs, description="trainings", unit="run")
        _check_report("trainings", report)

    def choose_features():
        candidates = {features: runs_of(config, features, first) for features in sets}
        table = selection.candidate_table(candidates)
        chosen = {stream: selection.choose(table, stream) for stream in streams}
        markdown = selection.write_choice(
            table, chosen, streams, config.results_dir / "choice_features", "Features"
        )
        print(markdown)
        _write_choices(config, {**read_choices(config), "features": chosen})
        copies = runs_of(config, "chosen", first)  # the first recipe's runs, under "chosen"
        for key, target in copies.items():
            source = candidates[chosen[key[1]]][key]
            if target.model_path.is_file():
                if target.config_path.read_text() == source.config_path.read_text():
                    continue
                shutil.rmtree(target.root)
            target.root.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source.root, target.root, ignore=shutil.ignore_patterns("*.lock"))

    def recipe_trainings():
        chosen = read_choices(config).get("features") or {}
        return [
            train_config(
                config,
                chosen.get(stream, sets[0]),
                recipe,
                split,
                stream,
                model,
                root=runs_root(config, "chosen", recipe),
            )  # fmt: skip
            for recipe in recipes[1:]
            for split in splits
            for stream in streams
            for model in MODELS
        ]

    def choose_recipe():
        candidates = {recipe: runs_of(config, "chosen", recipe) for recipe in recipes}
        table = selection.candidate_table(candidates)
        chosen = selection.choose(table)
        print(
            selection.write_choice(
                table, {"both streams": chosen}, streams,
                config.results_dir / "choice_recipe", "Recipes",
            )
        )  # fmt: skip
        _write_choices(config, {**read_choices(config), "recipe": chosen})

    def chosen_runs():
        return [run for recipe in recipes for run in runs_of(config, "chosen", recipe).values()]

    def score_work():
        waiting = [run for run in chosen_runs() if not scoring.is_scored(run)]
        if not waiting:
            return
        for run in waiting:  # every run, before the first is scored
            scoring.check_trained(run)
        jobs = min(config.train_jobs, len(waiting))
        tasks = [(str(run.root), str(run.root)) for run in waiting]
        print(f"--- {len(tasks)} runs to score, {jobs} at once", flush=True)
        report = run_jobs(_score_job, tasks, workers=jobs, description="scoring", unit="run")
        _check_report("scoring", report)

    def table_work():
        for recipe in recipes:
            tables.run(
                tables.TablesConfig(
                    runs=runs_root(config, "chosen", recipe),
                    output=config.results_dir / f"tables_{recipe}",
                )
            )
        chosen = read_choices(config).get("recipe")
        if chosen:
            with atomic_write(config.results_dir / "chosen_recipe.txt") as path:
                path.write_text(chosen + "\n")

    def probe_work():
        chosen = read_choices(config).get("features") or {}
        parts = []
        for split in splits:
            output = config.work_dir / "probe" / f"split{split}"
            probe = linear_probe.LinearProbeConfig(
                source=source_of(config, split),
                output=output,
                appearance_store=feature_store(config, chosen["appearance"], split, "appearance"),
                motion_store=feature_store(config, chosen["motion"], split, "motion"),
                splits=(split,),
                validation_by=config.train.validation_by,
            )
            parts.append(linear_probe.run(probe))
        table = pd.concat(parts, ignore_index=True)
        with atomic_write(config.results_dir / "linear_probe.csv") as path:
            table.to_csv(path, index=False)
        with atomic_write(config.results_dir / "linear_probe.md") as path:
            path.write_text(linear_probe.to_markdown(table))

    def figure_videos():
        split = source_of(config, splits[0]).load()
        if config.figure_videos:
            known = {clip.video_id: clip for clip in split.test}
            missing = [video for video in config.figure_videos if video not in known]
            if missing:
                raise ValueError(
                    f"figure_videos {missing} are not test videos of split {splits[0]}."
                )
            return [known[video] for video in config.figure_videos]
        first_of_class = {}
        for clip in split.test:
            first_of_class.setdefault(clip.label, clip)
        return list(first_of_class.values())[: config.num_figures]

    def figure_work():
        recipe = read_choices(config).get("recipe", first)
        root = runs_root(config, "chosen", recipe)
        for clip in figure_videos():
            runs = {
                stream: Run.for_config(
                    root, train_settings(config, recipe, splits[0], stream, "attention")
                ).root
                for stream in streams
            }
            name = clip.video_id.replace("/", "_")
            attention.run(
                attention.AttentionConfig(
                    run=runs["appearance"],
                    motion_run=runs["motion"],
                    video_id=clip.video_id,
                    video=clip.path,
                    output=config.results_dir / "figures" / name,
                )
            )

    def files_units(*paths, after=lambda: []):
        """Done: each file exists and is newer than every file `after()` lists (what it
        is made from), so that results left by another work folder are made again."""

        def units():
            sources = [path for path in after() if path.is_file()]
            newest = max((path.stat().st_mtime_ns for path in sources), default=0)
            return [(str(path), path.is_file() and path.stat().st_mtime_ns >= newest)
                    for path in paths]  # fmt: skip

        return units

    def chosen(kind, *paths):
        """Done: the choice is in this work folder's choices.json and its files exist."""
        return lambda: [
            (str(path), path.is_file() and kind in read_choices(config)) for path in paths
        ]

    def scores():
        return [run.scores_path for run in chosen_runs()]

    frame_folder = lambda: [frames_root(config)]  # noqa: E731
    recipe = config.recipe
    feature_settings = {
        "backbone": recipe.backbone, "input_size": recipe.input_size,
        "precision": recipe.precision, "batch_size": config.extract_batch_size,
    }  # fmt: skip
    train_speed = {
        name: getattr(config.train, name)
        for name in (
            "units",
            "num_layers",
            "num_steps",
            "num_frames",
            "stride",
            "train_stride",
            "batch_size",
        )
    }
    train_speed |= {"backbone": recipe.backbone, "jobs": config.train_jobs}

    def finetune_speed(stream):
        """What an iteration's time depends on (not the schedule's length or rates)."""
        return {
            "backbone": recipe.backbone, "precision": config.finetune.precision,
            "data_parallel": config.finetune.data_parallel, "workers": config.finetune.workers,
            **{name: getattr(schedule(stream), name) for name in FINETUNE_SPEED},
        }  # fmt: skip

    results = config.results_dir
    result = [
        Stage(
            "frames",
            lambda: frame_units("frames"),
            lambda: _check_report("frames", extract_frames.run(frames)),
            unit="frames", left=frames_left("frames"), writes=frame_folder,
            settings=dataclasses.asdict(config.frames),
        ),
        Stage(
            "flow",
            lambda: frame_units("flow"),
            lambda: _check_report("flow", compute_flow.run(flow)),
            unit="frames", left=frames_left("flow"), writes=frame_folder,
            settings=dataclasses.asdict(config.flow),
        ),
    ]  # fmt: skip
    for stream in streams if nets else ():
        result.append(
            Stage(
                f"fine-tuning the {NETS[stream]} nets",
                lambda stream=stream: [
                    (f"split {k}", net_done(k, stream)) for k, s in nets if s == stream
                ],
                functools.partial(finetune_work, stream),
                unit="iterations",
                left=lambda stream=stream: sum(
                    schedule(stream).max_iterations for k, s in nets
                    if s == stream and not net_done(k, stream)
                ),
                writes=lambda stream=stream: [net_dir(config, k, stream) for k in splits],
                settings=finetune_speed(stream),
                key=f"finetune_{NETS[stream]}",
                done=lambda stream=stream: sum(
                    iterations_logged(net_dir(config, k, s)) for k, s in nets if s == stream
                ),
                jobs_left=lambda stream=stream: sum(
                    not net_done(k, s) for k, s in nets if s == stream
                ),
            )
        )  # fmt: skip
    for stream in streams:
        result.append(
            Stage(
                f"{stream} features",
                feature_units(stream),
                functools.partial(feature_work, stream),
                unit="frames", left=feature_frames_left(stream),
                writes=lambda stream=stream: [
                    feature_store(config, features, split, stream)
                    for features, split in feature_jobs(stream)
                ],
                settings=feature_settings, key=f"features_{stream}",
            )
        )  # fmt: skip
    result += [
        Stage(
            f"train recipe {first} on {', '.join(sets)} features",
            lambda: train_units(candidate_trainings()),
            lambda: train_all(candidate_trainings()),
            unit="video-epochs", left=video_epochs_left(candidate_trainings),
            writes=lambda: [config.work_dir / "runs"], settings=train_speed, key="train",
            done=video_epochs_done(candidate_trainings),
            jobs_left=trainings_left(candidate_trainings),
        ),
        Stage(
            "choose features per stream (validation)",
            chosen("features", results / "choice_features.csv"),
            choose_features,
        ),
    ]  # fmt: skip
    if len(config.recipes) > 1:
        result += [
            Stage(
                f"train recipes {', '.join(recipes[1:])} on the chosen features",
                lambda: train_units(recipe_trainings()),
                lambda: train_all(recipe_trainings()),
                unit="video-epochs", left=video_epochs_left(recipe_trainings),
                writes=lambda: [config.work_dir / "runs"], settings=train_speed, key="train",
                done=video_epochs_done(recipe_trainings),
                jobs_left=trainings_left(recipe_trainings),
            ),
        ]  # fmt: skip
    result += [
        Stage(
            "choose the recipe (validation)",
            chosen("recipe", results / "choice_recipe.csv"),
            choose_recipe,
        ),
        Stage(
            "score on the test lists",
            lambda: [(str(run.root), scoring.is_scored(run)) for run in chosen_runs()],
            score_work,
        ),
        Stage(
            "tables 1-3",
            files_units(
                *(results / f"tables_{recipe}" / "table1.csv" for recipe in recipes), after=scores
            ),
            table_work,
        ),
    ]
    if config.probe:
        probe = files_units(results / "linear_probe.csv", after=lambda: [_choices_path(config)])
        result.append(Stage("linear probe", probe, probe_work))
    if config.num_figures > 0 or config.figure_videos:
        result.append(
            Stage(
                "Fig. 1 figures",
                lambda: files_units(
                    *(
                        results / "figures" / f"{clip.video_id.replace('/', '_')}.png"
                        for clip in figure_videos()
                    ),
                    after=lambda: [_choices_path(config)],
                )(),
                figure_work,
            )
        )
    return result


# === Plan and run ===


def rates_path(config: ExperimentConfig) -> Path:
    return config.work_dir / "rates.json"


def _estimate(stage: Stage, left: float, known: list, here: str):
    """(seconds, bytes, where the rate comes from) of the work left; None where no
    rate is known."""
    rate, note = stage_rates.choose(stage.key, stage.settings, here, known)
    if rate is None:
        return None, None, "no rate yet"
    source = rate.source + (f"; {note}" if note else "")
    jobs = stage.jobs_left() if stage.jobs_left is not None else None
    return *rate.estimate(left, jobs), source


def plan(config: ExperimentConfig, rates: Sequence[Path] = ()) -> str:
    """What each stage has done and has left, read from disk, with the time and disk the
    rest will take (`evaluation.stage_rates`); nothing is run."""
    lines = [f"Experiment {config.name}: {config.source.dataset}, splits {list(config.splits)}"]
    classes = config.source.classes
    lines.append(f"classes: {', '.join(classes) if classes else 'all'}")
    lines.append(f"work: {config.work_dir}, results: {config.results_dir}")
    here = stage_rates.machine()
    lines.append(f"this machine: {here}")
    known = [stage_rates.read_rates(rates_path(config))]
    known += [stage_rates.read_rates(path) for path in rates]
    all_stages = stages(config)
    if all_stages[0].key not in {key for records in known for key in records}:
        measured = measure_frame_rate(config, all_clips(config))
        if measured is not None:
            known.append({all_stages[0].key: measured})
    total_seconds = total_bytes = 0.0
    unknown = []
    for index, stage in enumerate(all_stages, 1):
        units = stage.units()
        done = sum(bool(state) for _, state in units)
        state = "done" if units and done == len(units) else f"{done} of {len(units)} done"
        if not units:
            state = "nothing to do"
        line = f"{index:2d}. {stage.name}: {state}"
        left = stage.amount_left() if state not in ("done", "nothing to do") else 0.0
        if left:
            seconds, written, source = _estimate(stage, left, known, here)
            amount = f"{left:,.0f} {stage.unit} left" if stage.unit != "stage" else "to run"
            if seconds is None:
                unknown.append(str(index))
                line += f"; {amount}: {source}"
            else:
                total_seconds, total_bytes = total_seconds + seconds, total_bytes + written
                line += (
                    f"; {amount}: about {stage_rates.duration(seconds)}, "
                    f"{stage_rates.size(written)} ({source})"
                )
        lines.append(line)
    lines.append(
        f"left: about {stage_rates.duration(total_seconds)} and {stage_rates.size(total_bytes)}"
        + (f", besides stages {', '.join(unknown)} (no rate yet)" if unknown else "")
        + "; trainings stop early on validation, so theirs is an upper bound"
    )
    return "\n".join(lines)


def record_config(config: ExperimentConfig) -> Path:
    """Writes the config into the results folder; a different one already there is
    refused (the results would mix two experiments)."""
    config.results_dir.mkdir(parents=True, exist_ok=True)
    path = config.results_dir / CONFIG_NAME
    text = to_toml(config)
    if path.is_file() and load_config(path) != config:
        raise ValueError(
            f"{path} records another experiment than this config: give this one its own "
            "results_dir and work_dir, or delete that folder to make it again."
        )
    if not path.is_file() or path.read_text() != text:
        with atomic_write(path) as written:
            written.write_text(text)
    return path


def _add_stage_time(config: ExperimentConfig, stage: str, seconds: float, here: str) -> None:
    """`stage_times.csv`: each stage's seconds, summed over the runs that resumed it."""
    path = config.results_dir / "stage_times.csv"
    table = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["stage", "seconds"])
    previous = table.loc[table["stage"] == stage, "seconds"].sum()
    table = table[table["stage"] != stage]
    row = {"stage": stage, "seconds": round(previous + seconds, 1), "machine": here}
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    with atomic_write(path) as written:
        table.to_csv(written, index=False)


def run(config: ExperimentConfig) -> dict:
    """Every stage, in order, each skipping what is done; records each stage's time
    (`stage_times.csv`) and rates (`evaluation.stage_rates`).

    Raises:
        StageFailed: a stage recorded failures (named); the command resumes once
            they are fixed.
    """
    for split in config.splits:  # every split's lists are read (and checked) first
        source_of(config, split).load()
    record_config(config)
    if config.train_jobs > 1:
        # Every process, this one too, takes device memory as it needs it (not most of
        # it at its first use), so that the trainings at once fit beside each other.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    here = stage_rates.machine()
    times = []
    began = time.perf_counter()
    all_stages = stages(config)
    for index, stage in enumerate(all_stages, 1):
        start = time.perf_counter()
        if all(done for _, done in stage.units()):
            print(f"=== {index} of {len(all_stages)}: {stage.name}: done ===", flush=True)
            continue
        left = stage.amount_left()
        header = f"\n=== {index} of {len(all_stages)}: {stage.name} (at {start - began:.0f} s)"
        if left:
            known = [stage_rates.read_rates(rates_path(config))]
            seconds, _, source = _estimate(stage, left, known, here)
            if seconds is not None:
                header += f", about {stage_rates.duration(seconds)} ({source})"
        print(header + " ===", flush=True)
        written = stage_rates.folder_bytes(stage.writes()) if left else 0
        jobs = stage.jobs_left() if left and stage.jobs_left is not None else None
        if stage.done is None:  # nothing done yet of the `left` just measured
            progress = stage_rates.Progress(
                functools.partial(_done_from_left, stage, left), first=0
            )
        else:
            progress = stage_rates.Progress(stage.done)
        try:
            with progress:
                stage.work()
        finally:  # a stage stopped with Ctrl-C records what it took and did, too
            took = time.perf_counter() - start
            times.append({"stage": stage.name, "seconds": round(took, 1)})
            _add_stage_time(config, stage.name, took, here)
            if left:
                _record_rate(config, stage, progress, took, written, jobs, here)
    return {"choices": read_choices(config), "stage_times": times}


def _done_from_left(stage: Stage, left_at_start: float) -> float:
    return left_at_start - stage.amount_left()


def _record_rate(config, stage, progress, took, written_before, jobs_before, here) -> None:
    """Records what a unit of `stage` took (`evaluation.stage_rates`): its start apart
    from the time a unit takes after it, read from its progress; its disk per unit, or
    per job for a stage that counts jobs."""
    worked = progress.total()
    if worked <= 0:
        return
    start, seconds = stage_rates.steady_rate(progress.samples, took, worked)
    written = max(0, stage_rates.folder_bytes(stage.writes()) - written_before)
    per_job = jobs_before is not None
    if per_job:
        jobs = jobs_before - stage.jobs_left()
        if jobs <= 0:
            return
    stage_rates.record_rate(
        rates_path(config),
        stage.key,
        stage_rates.Rate(
            seconds=seconds, bytes=written / (jobs if per_job else worked), units=worked,
            unit=stage.unit, machine=here, settings=stage.settings, start=start,
            bytes_per="job" if per_job else "unit",
        ),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.experiment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", type=Path, help="experiment file (.toml or .json)")
    parser.add_argument("--plan", action="store_true", help="print the plan and exit")
    parser.add_argument(
        "--rates",
        type=Path,
        action="append",
        default=[],
        help="with --plan: another run's rates.json, for the stages this work folder has "
        "not timed yet (repeatable; e.g. evaluation/results/ucf101_subset/record/rates.json)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the config (defaults without one)"
    )
    args = parser.parse_args(argv)
    if args.print_config:
        if args.config is None:
            config = ExperimentConfig(source=SplitSource(Path("UCF-101"), Path("ucfTrainTestlist")))
        else:
            config = load_config(args.config)
        sys.stdout.write(to_toml(config))
        return config
    if args.config is None:
        parser.error("the experiment config file is required (or --print-config)")
    config = load_config(args.config)
    for path in args.rates:
        if not path.is_file():
            raise ValueError(f"--rates {path}: no such file.")
    if args.plan:
        text = plan(config, args.rates)
        print(text)
        return text
    try:
        return run(config)
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_on_error(main)
