"""How long Table 1 takes: every stage of the pipeline, as a user runs it, on N real clips.

    python -m benchmarks.pipeline_benchmark \
        --video-root ../shared/data/ucf101_subset/UCF-101 \
        --split-dir ../shared/data/ucf101_subset/ucfTrainTestlist \
        --clips 96 --output pipeline.jsonl --markdown pipeline.md
    python -m benchmarks.pipeline_benchmark --tiny  # CPU smoke run, about a minute

Each stage's own command (`training.extract_frames`, `training.compute_flow`,
`training.finetune_convnet`, `training.extract_features`, `training.train_attention`)
runs in this process from an argv list (built in one function per stage below:
`extract_frames_argv`, ...) on `--clips` clips of split 1 (taken evenly across the
classes of `--classes`, written as official-format lists into a temporary work folder;
the videos are read where they are). Per stage it reports:

- `items_per_s`: end to end, as the stage runs (decoding, feeding, the network, writing);
  fine-tuning leaves out its first iteration (compile) and the batches its workers drew
  meanwhile (`finetune_warmup`: timed, they would make a short run look faster than its
  feed), attention training its first epoch;
- `feed_only_items_per_s` (fine-tuning, extraction): the stage's own worker processes
  drawing or reading its images with no network, timed the same way;
- `host_profile` (with `--profile-ms`): where the host threads were while the stage ran
  (`benchmarks.host_profile`);
- `device_only_items_per_s`: the same network, built the same way, on a batch already on
  the device (no feeding): `train_on_batch` for fine-tuning, `predict_on_batch` for
  extraction, `benchmarks.fit_benchmark.run_keras_case` for attention training;
- `ratio`: end to end / device only, the share of the accelerator the stage uses;
- `peak_host_bytes` (this process and its finished children, `resource.getrusage`)
  and `peak_device_bytes` (`runtime.devices`), both peaks since the benchmark began;
- `projected_hours_ucf101` / `_hmdb51`: `projected_items(stage, dataset) / items_per_s
  / 3600` for the paper's recipe (`PaperRecipe`, `DATASET_SIZES`). Flow is shown but left
  out of the total (its GPU solver is measured by `benchmarks.flow_benchmark`).

Weights do not change speed: `--weights none` (the default) builds the same networks
with random weights, so no ImageNet file is needed.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from temporal_attention.data.crops import CROP_SIZE
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.devices import device_name, peak_device_bytes

STAGES = (
    "decode",
    "flow",
    "finetune_spatial",
    "finetune_temporal",
    "extract_appearance",
    "extract_motion",
    "attention",
)
# Shown, never added to the total.
EXCLUDED_FROM_TOTAL = ("flow",)
UNITS = {
    "decode": "frames",
    "flow": "flow pairs",
    "finetune_spatial": "images",
    "finetune_temporal": "flow stacks",
    "extract_appearance": "images",
    "extract_motion": "flow stacks",
    "attention": "samples",
}
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ucf101_subset"


# === The paper's recipe, and the datasets' sizes ===


@dataclass(frozen=True)
class DatasetSize:
    """What the projection needs of a dataset."""

    videos: int
    frames: int  # every frame of every video
    train_fraction: float  # share of the videos in a split's training list


DATASET_SIZES = {
    # 13,320 videos, about 2.5 million frames; split 1 trains on 9,537 videos.
    "ucf101": DatasetSize(videos=13_320, frames=2_500_000, train_fraction=9_537 / 13_320),
    # 6,766 videos (the official split files); 70 training videos of 100 per class. The
    # frame count is an assumption (about 93 frames a clip), not read from the dataset.
    "hmdb51": DatasetSize(videos=6_766, frames=630_000, train_fraction=0.7),
}


@dataclass(frozen=True)
class PaperRecipe:
    """Section 3.2 of the paper: what Table 1 costs per dataset."""

    splits: int = 3  # every stage after decoding runs once per split (nets differ)
    spatial_iterations: int = 10_000
    temporal_iterations: int = 30_000
    finetune_batch_size: int = 256
    stack_length: int = 5  # flow pairs per motion image: frames - 5 stacks a video
    attention_runs_per_split: int = 4  # 2 streams x (attention, baseline)
    attention_epochs: int = 30
    sample_stride: int = 30  # 30-frame samples, no overlap


def projected_epochs(stage: str, recipe: PaperRecipe = PaperRecipe()) -> int:
    """Epochs of attention training for Table 1 (each pays the epoch's fixed overhead)."""
    if stage != "attention":
        return 0
    return recipe.splits * recipe.attention_runs_per_split * recipe.attention_epochs


def projected_items(stage: str, dataset: str, recipe: PaperRecipe = PaperRecipe()) -> float:
    """Items (in `UNITS[stage]`) the stage processes for Table 1 on `dataset`."""
    size = DATASET_SIZES[dataset]
    stacks = size.frames - size.videos * recipe.stack_length
    samples = size.frames * size.train_fraction / recipe.sample_stride  # an epoch
    items = {
        "decode": size.frames,  # once: the frame store serves every split
        "flow": size.frames - size.videos,  # once
        "finetune_spatial": recipe.splits * recipe.spatial_iterations * recipe.finetune_batch_size,
        "finetune_temporal": recipe.splits
        * recipe.temporal_iterations
        * recipe.finetune_batch_size,
        "extract_appearance": recipe.splits * size.frames,
        "extract_motion": recipe.splits * stacks,
        "attention": recipe.splits
        * recipe.attention_runs_per_split
        * recipe.attention_epochs
        * samples,
    }
    return float(items[stage])


# === Settings ===


@dataclass(frozen=True)
class BenchmarkConfig:
    """Sizes of one benchmark run; defaults are the paper's networks on 96 clips."""

    video_root: Path = field(default=DEFAULT_DATA / "UCF-101", metadata={"help": "the clips"})
    split_dir: Path = field(
        default=DEFAULT_DATA / "ucfTrainTestlist", metadata={"help": "official split lists"}
    )
    classes: tuple[str, ...] = field(
        default=("BabyCrawling", "Punch", "PushUps"),
        metadata={"help": "comma-separated; the clips are taken from these in turn"},
    )
    clips: int = field(default=96, metadata={"help": "clips of split 1, train and test"})
    stages: tuple[str, ...] = field(
        default=STAGES, metadata={"help": "comma-separated, run in pipeline order"}
    )
    height: int = field(default=FRAME_HEIGHT, metadata={"help": "decoded frame (and flow) height"})
    width: int = field(default=FRAME_WIDTH, metadata={"help": "decoded frame (and flow) width"})
    input_size: int = field(default=CROP_SIZE, metadata={"help": "the network's square input"})
    backbone: str = field(
        default="VGG16", metadata={"choices": ("VGG16", "EfficientNetLite0"), "help": "network"}
    )
    weights: str = field(default="none", metadata={"help": "none: random weights (the same speed)"})
    width_multiplier: float = field(default=1.0, metadata={"help": "VGG16 only: conv widths"})
    fc_units: int = field(default=4096, metadata={"help": "VGG16 only: fully connected units"})
    iterations: int = field(
        default=20,
        metadata={
            "help": "timed fine-tuning iterations, after one that compiles and finetune_warmup more"
        },
    )
    batch_size: int = field(default=256, metadata={"help": "fine-tuning batch"})
    extract_batch_size: int = field(default=128, metadata={"help": "extraction batch"})
    attention_preset: str = field(
        default="paper", metadata={"help": "training.train_attention --preset"}
    )
    attention_batch_size: int = field(default=32, metadata={"help": "attention training batch"})
    attention_epochs: int = field(
        default=3, metadata={"help": "attention training epochs (the first compiles)"}
    )
    precision: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "float32", "mixed_bfloat16"),
            "help": "fine-tuning and extraction; auto: bf16 on a GPU, else float32",
        },
    )
    flow_method: str = field(default="dis", metadata={"help": "training.compute_flow --method"})
    flow_batch_pairs: int = field(
        default=0, metadata={"help": "tvl1_keras: pairs a batch (0: compute_flow's default)"}
    )
    flow_compact_to: int = field(
        default=-1, metadata={"help": "tvl1_keras: compaction (-1: compute_flow's default)"}
    )
    workers: int | None = field(
        default=None, metadata={"help": "worker processes of each stage (default: one a core)"}
    )
    device_repeats: int = field(
        default=10, metadata={"help": "timed device-only batches (after 2 warm-up batches)"}
    )
    profile_ms: float = field(
        default=0.0,
        metadata={
            "help": "sample the host threads' stacks every this many ms while a stage runs "
            "(benchmarks.host_profile; 0: not sampled)"
        },
    )


TINY = dict(
    clips=6,  # every class has a training clip (the trainer refuses a class without)
    height=36,
    width=48,
    input_size=32,
    width_multiplier=0.0625,
    fc_units=8,
    iterations=2,
    batch_size=4,
    extract_batch_size=16,
    attention_preset="tiny",
    attention_batch_size=4,
    attention_epochs=2,
    workers=1,
    device_repeats=3,
)
# Named settings of `--preset`; `--tiny` is `--preset tiny`.
PRESETS = {"paper": BenchmarkConfig(), "tiny": BenchmarkConfig(**TINY)}


@dataclass(frozen=True)
class PipelineBenchmarkConfig:
    """The command line: the run's settings, and where its records and stores go."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    tiny: bool = field(
        default=False, metadata={"help": "CPU sizes, the same as --preset tiny: " + str(TINY)}
    )
    output: Path | None = field(default=None, metadata={"help": "append one JSON line per stage"})
    markdown: Path | None = field(default=None, metadata={"help": "write the table to this file"})
    work_dir: Path | None = field(
        default=None, metadata={"help": "keep the stores here (default: temp)"}
    )


def _source_flags(config: BenchmarkConfig, lists: Path) -> list[str]:
    return [
        "--video-root", str(config.video_root), "--split-dir", str(lists), "--split", "1",
        "--classes", ",".join(config.classes),
    ]  # fmt: skip


def _network_flags(config: BenchmarkConfig) -> list[str]:
    flags = ["--backbone", config.backbone, "--weights", config.weights]
    if config.backbone == "VGG16":
        flags += ["--width-multiplier", str(config.width_multiplier)]
        flags += ["--fc-units", str(config.fc_units)]
    return flags


def _workers(config: BenchmarkConfig) -> int:
    from temporal_attention.runtime.jobs import default_workers

    return config.workers or default_workers()


# === Each stage's command line ===


def extract_frames_argv(config: BenchmarkConfig, lists: Path, frames: Path) -> list[str]:
    """`python -m training.extract_frames` into the frame store."""
    return [
        *_source_flags(config, lists),
        "--output", str(frames),
        "--height", str(config.height), "--width", str(config.width),
        "--workers", str(_workers(config)),
    ]  # fmt: skip


def compute_flow_argv(
    config: BenchmarkConfig, lists: Path, output: Path, layout: str = "frames"
) -> list[str]:
    """`python -m training.compute_flow` with a CPU method, into the frame store (layout
    "frames", which fine-tuning and extraction read) or a flow store (layout "npz")."""
    return [
        *_source_flags(config, lists),
        "--output", str(output), "--layout", layout, "--method", config.flow_method,
        "--height", str(config.height), "--width", str(config.width),
        "--workers", str(_workers(config)),
    ] + (["--batch-pairs", str(config.flow_batch_pairs)] if config.flow_batch_pairs else []) + (
        ["--compact-to", str(config.flow_compact_to)] if config.flow_compact_to >= 0 else []
    )  # fmt: skip


def finetune_warmup(config: BenchmarkConfig) -> int:
    """Fine-tuning iterations left out after the first (it compiles): the batches its
    workers draw ahead (`runtime.process_feed.default_ahead`, the stage's default), made
    while it compiled, so that the timed ones are drawn at the feed's own pace."""
    from temporal_attention.runtime.process_feed import default_ahead

    return default_ahead(_workers(config))


def finetune_argv(
    config: BenchmarkConfig, lists: Path, output_dir: Path, stream: str, frame_root: Path
) -> list[str]:
    """`python -m training.finetune_convnet` for `1 + finetune_warmup + iterations`
    iterations, fed from the frame store by worker processes, at the
    benchmark's precision."""
    return [
        *_source_flags(config, lists),
        "--preset", "spatial" if stream == "appearance" else "temporal",
        "--output-dir", str(output_dir),
        "--max-iterations", str(1 + finetune_warmup(config) + config.iterations),
        "--batch-size", str(config.batch_size),
        "--crop-size", str(config.input_size),
        "--height", str(config.height), "--width", str(config.width),
        *_network_flags(config),
        "--frame-root", str(frame_root), "--workers", str(_workers(config)),
        "--precision", config.precision, "--data-parallel", "auto",
    ]  # fmt: skip


def extract_features_argv(
    config: BenchmarkConfig, lists: Path, store: Path, stream: str, frame_root: Path
) -> list[str]:
    """`python -m training.extract_features` of every frame (or flow stack) of the clips."""
    argv = [
        *_source_flags(config, lists),
        "--stream", stream, "--store", str(store),
        "--input-size", str(config.input_size),
        "--height", str(config.height), "--width", str(config.width),
        "--batch-size", str(config.extract_batch_size),
        "--precision", config.precision,
        *_network_flags(config),
        # Fed from the frame store by worker processes, all devices used.
        "--frame-root", str(frame_root), "--workers", str(_workers(config)),
        "--data-parallel", "auto",
    ]  # fmt: skip
    return argv


def train_attention_argv(
    config: BenchmarkConfig, lists: Path, store: Path, runs: Path
) -> list[str]:
    """`python -m training.train_attention` on the appearance features, all clips trained."""
    return [
        *_source_flags(config, lists),
        "--store", str(store), "--runs", str(runs), "--preset", config.attention_preset,
        "--stream", "appearance",
        "--batch-size", str(config.attention_batch_size),
        "--epochs", str(config.attention_epochs), "--validation-fraction", "0",
    ]  # fmt: skip


# === The clips ===


# Share of split 1's videos in its test list (3,783 of 13,320).
TEST_SHARE = 3_783 / 13_320


def _class_lines(list_file: Path, classes: Sequence[str]) -> dict[str, list[str]]:
    by_class = {name: [] for name in classes}
    for line in list_file.read_text(encoding="utf-8-sig").splitlines():
        name = line.strip().split("/")[0]
        if line.strip() and name in by_class:
            by_class[name].append(line.strip())
    return by_class


def choose_clips(
    split_dir: Path, classes: Sequence[str], count: int
) -> tuple[list[str], list[str]]:
    """`count` lines of split 1's lists, `(train, test)`, evenly across `classes` (taken
    in turn), about `TEST_SHARE` of them (at least one) from the test list, each spread
    evenly over its class's list so that they come from several groups."""
    if count < 2:
        raise ValueError(f"Expected --clips >= 2 (a training and a test clip). Received: {count}")
    num_test = max(1, round(count * TEST_SHARE))
    slots = [classes[index % len(classes)] for index in range(count)]  # in turn
    chosen = []
    for subset, names in (
        ("train", slots[: count - num_test]),
        ("test", slots[count - num_test :]),
    ):
        lines = _class_lines(Path(split_dir) / f"{subset}list01.txt", classes)
        picked = []
        for name in classes:
            wanted, members = names.count(name), lines[name]
            if wanted > len(members):
                raise ValueError(
                    f"Expected --clips small enough for {name}'s {len(members)} {subset} clips "
                    f"in {split_dir}. Received: clips={count}"
                )
            picks = np.linspace(0, len(members) - 1, wanted).round().astype(int)
            picked += [members[pick] for pick in picks] if wanted else []
        chosen.append(picked)
    return chosen[0], chosen[1]


def write_split_lists(
    folder: Path, split_dir: Path, train_lines: Sequence[str], test_lines: Sequence[str]
) -> Path:
    """Official-format split-1 lists naming only the chosen clips (CRLF line ends)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_bytes((Path(split_dir) / "classInd.txt").read_bytes())
    for name, lines in (("trainlist01.txt", train_lines), ("testlist01.txt", test_lines)):
        (folder / name).write_bytes("".join(f"{line}\r\n" for line in lines).encode())
    return folder


# === Measuring ===


class RowClock:
    """When each data row of a CSV log (written and flushed a row at a time) appears.

    A background thread polls the file; `times[k]` is when row `k + 1` was first seen.
    """

    def __init__(self, path: Path, interval: float = 0.002):
        self.path, self.interval, self.times = Path(path), interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _rows(self) -> int:
        try:
            return max(self.path.read_bytes().count(b"\n") - 1, 0)  # less the header
        except OSError:
            return 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            rows, now = self._rows(), time.perf_counter()
            self.times += [now] * (rows - len(self.times))
            self._stop.wait(self.interval)

    def __enter__(self) -> RowClock:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        rows, now = self._rows(), time.perf_counter()
        self.times += [now] * (rows - len(self.times))

    def seconds_after(self, rows: int) -> float:
        """Wall time from row `rows` (1-based) to the last: that of all rows after it."""
        if len(self.times) < rows + 1:
            raise ValueError(
                f"Expected >= {rows + 1} rows in {self.path}. Received: {len(self.times)}"
            )
        return self.times[-1] - self.times[rows - 1]


def peak_host_bytes() -> int:
    """Peak resident memory of this process plus that of its largest finished child."""
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return 1024 * (self_kib + children_kib)


def _device_rate(step: Callable[[], None], items_per_step: int, repeats: int) -> float:
    """Items/s of `step()` (which waits for its result) after two warm-up calls."""
    for _ in range(2):
        step()
    began = time.perf_counter()
    for _ in range(repeats):
        step()
    return items_per_step * repeats / (time.perf_counter() - began)


def _device_batch(shape: tuple[int, ...], num_classes: int, seed: int = 0, *, uint8: bool = False):
    """A float32 batch and int32 labels, moved to the device once."""
    import keras

    rng = np.random.default_rng(seed)
    if uint8:
        images = keras.ops.convert_to_tensor(rng.integers(0, 256, shape, dtype=np.uint8))
    else:
        images = keras.ops.convert_to_tensor(rng.standard_normal(shape, dtype=np.float32))
    labels = keras.ops.convert_to_tensor(rng.integers(0, num_classes, shape[0]).astype("int32"))
    return images, labels


def finetune_device_rate(stage_config, num_classes: int, repeats: int) -> float:
    """Images/s of `train_on_batch` of the fine-tuning stage's network, compiled as the
    stage compiles it, on one batch already on the device."""
    import keras

    from temporal_attention.models.image_preprocessing import with_preprocessing
    from temporal_attention.runtime.devices import resolve_precision
    from temporal_attention.training import finetune_convnet

    settings = stage_config.settings
    keras.utils.set_random_seed(settings.seed)
    precision = resolve_precision(stage_config.precision)
    network = finetune_convnet.build_network(stage_config, num_classes, precision)
    # The model the stage trains: uint8 crops in, preprocessed on the device.
    mode = finetune_convnet.preprocessing_mode(stage_config.backbone, settings.stream)
    model = with_preprocessing(network, mode)
    finetune_convnet.compile_for_finetuning(model, settings)
    channels = model.input_shape[-1]
    shape = (settings.batch_size, settings.crop_size, settings.crop_size, channels)
    images, labels = _device_batch(shape, num_classes, uint8=True)
    # train_on_batch returns the metrics as NumPy values: each call waits for its step.
    step = lambda: model.train_on_batch(images, labels)  # noqa: E731
    return _device_rate(step, settings.batch_size, repeats)


def extract_device_rate(stage_config, repeats: int) -> float:
    """Images/s of `predict_on_batch` of the extraction stage's network on one batch
    already on the device (the call `models.feature_extraction` makes per batch)."""
    from temporal_attention.models.feature_extraction import (
        build_extractor,
        identify_weights,
        uint8_extractor,
    )
    from temporal_attention.runtime.devices import resolve_precision

    recipe = identify_weights(stage_config.recipe)
    recipe = dataclasses.replace(recipe, precision=resolve_precision(recipe.precision))
    # The model the stage runs: uint8 crops in, preprocessed on the device.
    extractor = uint8_extractor(build_extractor(recipe), recipe)
    size, channels = recipe.input_size, extractor.input_shape[-1]
    images, _ = _device_batch((stage_config.batch_size, size, size, channels), 1, uint8=True)
    step = lambda: extractor.predict_on_batch(images)  # noqa: E731
    return _device_rate(step, stage_config.batch_size, repeats)


def attention_device_rate(train_config, feature_dim: int, num_classes: int, steps: int) -> float:
    """Samples/s of `model.fit` of the attention model on arrays already on the device:
    `benchmarks.fit_benchmark.run_keras_case` at the training stage's sizes, in float32
    (train_attention has no precision setting: it trains in Keras' default float32)."""
    import keras

    from benchmarks.fit_benchmark import FitCase, run_keras_case

    policy = keras.config.dtype_policy()
    case = FitCase(
        model=train_config.model,
        precision="float32",
        batch_size=train_config.batch_size,
        num_frames=train_config.num_frames,
        feature_dim=feature_dim,
        units=train_config.units,
        num_layers=train_config.num_layers,
        num_steps=train_config.num_steps,
        num_classes=num_classes,
        steps=max(steps, 1),
        epochs=max(train_config.epochs, 2),
        seed=train_config.seed,
    )
    try:
        return run_keras_case(case)["samples_per_s"]
    finally:
        keras.config.set_dtype_policy(policy)  # run_keras_case sets it globally


# === The stages ===


@dataclass(frozen=True)
class WorkFolders:
    """Where one benchmark run keeps its lists, stores and runs."""

    root: Path

    @property
    def lists(self) -> Path:  # the chosen clips' split files
        return self.root / "lists"

    @property
    def frames(self) -> Path:  # the frame store: frames and flow images
        return self.root / "frames"

    @property
    def runs(self) -> Path:  # attention runs
        return self.root / "runs"

    def finetune(self, stream: str) -> Path:
        return self.root / f"finetune_{stream}"

    def features(self, stream: str) -> Path:
        return self.root / f"features_{stream}"


@dataclass(frozen=True)
class Measurement:
    """What one stage's run gave."""

    items: float  # timed items, in UNITS[stage]
    seconds: float  # their wall time, end to end
    device_rate: float | None  # the same network's device-only items/s; None: no network
    argv: tuple[str, ...]  # the stage's command line
    # Attention training: seconds an epoch spends outside its batches (checkpoints, logs),
    # which the projection adds for every epoch of Table 1.
    epoch_overhead_s: float | None = None
    # The flow stage with tvl1_keras: OpenCV's DualTVL1 (the reference) on a sample of the
    # same pairs, one single-thread process a core, pairs/s.
    opencv_tvl1_rate: float | None = None
    # Fine-tuning and extraction: the same clips' images read (and cropped) by the same
    # worker processes, no network, items/s (what the machine's cores feed).
    feed_rate: float | None = None
    # `benchmarks.host_profile.StackSampler.summary()` of the stage's run (--profile-ms).
    host_profile: dict | None = None


def _checked(report, stage: str):
    if report.failures:
        first = report.failures[0]
        raise RuntimeError(
            f"{stage}: {len(report.failures)} videos failed (first: {first.item_id}: "
            f"{first.message})"
        )
    return report


def _timed(function: Callable, *arguments):
    began = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - began


def _sampled(config: BenchmarkConfig, function: Callable, *arguments):
    """`function(*arguments)` and its host profile: a `StackSampler`'s summary when
    `config.profile_ms`, else None."""
    if not config.profile_ms:
        return function(*arguments), None
    from benchmarks.host_profile import StackSampler

    with StackSampler(config.profile_ms / 1000) as sampler:
        result = function(*arguments)
    return result, sampler.summary()


def run_decode(config: BenchmarkConfig, work: WorkFolders) -> Measurement:
    from temporal_attention.training import extract_frames

    argv = extract_frames_argv(config, work.lists, work.frames)
    (report, seconds), profile = _sampled(
        config, _timed, extract_frames.run, extract_frames.parse_args(argv)
    )
    return Measurement(
        _checked(report, "decode").frames, seconds, None, tuple(argv), host_profile=profile
    )


def run_flow(config: BenchmarkConfig, work: WorkFolders) -> Measurement:
    """The flow stage. For `tvl1_keras` the solver is compiled first, outside the timing
    (once per run of the stage, whatever the dataset's size), and its device-only rate is
    that of one batch of real frames already on the device (`flow_device_rate`)."""
    from temporal_attention.training import compute_flow

    argv = compute_flow_argv(config, work.lists, work.frames)
    stage_config, _ = compute_flow.resolve_settings(compute_flow.parse_args(argv))
    device = opencv = None
    if stage_config.settings.method == "tvl1_keras":
        pairs = _stage_pairs(work.frames)  # walked once, for both references
        device = flow_device_rate(stage_config, pairs, work.frames, config.device_repeats)
        opencv = opencv_tvl1_rate(stage_config, pairs, _workers(config))
    (report, seconds), profile = _sampled(config, _timed, compute_flow.run, stage_config)
    pairs = _checked(report, "flow").frames - report.done  # frames - 1 a video
    return Measurement(
        pairs, seconds, device, tuple(argv), opencv_tvl1_rate=opencv, host_profile=profile
    )


def _stage_pairs(frames_root: Path) -> list[tuple[Path, Path]]:
    """(frame, next frame) image paths of every video of the frame store, in list order:
    the pairs the flow stage computes, in its order."""
    folders = sorted(path.parent for path in Path(frames_root).rglob("img_00001.jpg"))
    return [
        pair for folder in folders for pair in itertools.pairwise(sorted(folder.glob("img_*.jpg")))
    ]


def _gray(path: Path, settings) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or image.shape != (settings.height, settings.width):
        raise ValueError(f"Expected a {settings.height}x{settings.width} frame: {path}")
    return image  # uint8, as the stage sends them


def opencv_tvl1_rate(stage_config, pairs: list[tuple[Path, Path]], workers: int) -> float | None:
    """Pairs/s of OpenCV's DualTVL1 (`benchmarks.flow_benchmark.time_speed`: `workers`
    single-thread processes) on 4 pairs a worker spread over the stage's `pairs`
    (`_stage_pairs`); None where OpenCV lacks its contrib modules (which hold DualTVL1)."""
    import cv2

    from benchmarks.flow_benchmark import time_speed

    if not hasattr(cv2, "optflow"):  # OpenCV without its contrib modules: no DualTVL1
        print("OpenCV DualTVL1 not timed: this OpenCV has no cv2.optflow (contrib modules).")
        return None
    picks = np.linspace(0, len(pairs) - 1, min(len(pairs), 4 * workers)).round().astype(int)
    first = [_gray(pairs[pick][0], stage_config.settings) for pick in picks]
    second = [_gray(pairs[pick][1], stage_config.settings) for pick in picks]
    return time_speed("tvl1", first, second, workers, batch=len(first))["pairs_per_s"]


def flow_device_rate(
    stage_config, pairs: list[tuple[Path, Path]], frames_root: Path, repeats: int
) -> float:
    """Pairs/s of `data.tvl1` alone (the stage's batch size, compaction, uint8 frames in and
    quantised flow out: `data.tvl1.stage_flow`) on batches
    already on the device: `repeats` batches of the stage's own pairs, taken as the stage
    takes them (consecutive pairs in list order, across videos) at places spread over the
    frame store (`pairs`, from `_stage_pairs(frames_root)`). A batch runs until its
    slowest pair converges, so the rate depends on the frames: these are the stage's own."""
    import keras

    from temporal_attention.data.tvl1 import TVL1Settings, batch_solver

    settings, count = stage_config.settings, stage_config.batch_pairs
    if len(pairs) < count:
        raise ValueError(
            f"Expected at least {count} frame pairs (the stage's batch) under {frames_root}; "
            f"found {len(pairs)}. Use more clips or a smaller flow batch."
        )
    starts = np.linspace(0, len(pairs) - count, max(1, repeats)).round().astype(int)

    batches = [
        tuple(
            keras.ops.convert_to_tensor(
                np.stack([_gray(pair[side], settings) for pair in pairs[at : at + count]])
            )
            for side in (0, 1)
        )
        for at in starts
    ]
    solver = batch_solver(
        count, TVL1Settings(), stage_config.compact_to, quantize=True
    )  # the stage's
    keras.ops.convert_to_numpy(solver(*batches[0])[:, :1, :1])  # compiles, untimed
    seconds = 0.0
    for first, second in batches:
        began = time.perf_counter()
        keras.ops.convert_to_numpy(solver(first, second)[:, :1, :1])
        seconds += time.perf_counter() - began
    return count * len(batches) / seconds


def run_finetune(config: BenchmarkConfig, work: WorkFolders, stream: str) -> Measurement:
    from temporal_attention.training import finetune_convnet

    output_dir = work.finetune(stream)
    argv = finetune_argv(config, work.lists, output_dir, stream, work.frames)
    stage_config = finetune_convnet.parse_args(argv)
    with RowClock(output_dir / finetune_convnet.LOG_NAME) as clock:
        _, profile = _sampled(config, finetune_convnet.run, stage_config)
    items = config.iterations * config.batch_size  # the rows after the first and warm-up
    device = finetune_device_rate(stage_config, len(config.classes), config.device_repeats)
    feed = finetune_feed_rate(stage_config, finetune_warmup(config), config.iterations)
    return Measurement(
        items,
        clock.seconds_after(1 + finetune_warmup(config)),
        device,
        tuple(argv),
        feed_rate=feed,
        host_profile=profile,
    )


def finetune_feed_rate(stage_config, warmup: int, iterations: int) -> float:
    """Images/s of the fine-tuning stage's feed alone: `1 + warmup + iterations` of its
    batches drawn by its own worker processes (`data.frame_batches.draw_batch` in
    `runtime.process_feed.ordered_map`, the stage's number of workers and batches ahead)
    and received here, with no network; the last `iterations` are timed, as in the
    stage's rate."""
    from temporal_attention.data.frame_batches import draw_batch
    from temporal_attention.runtime.process_feed import ordered_map
    from temporal_attention.training.finetune_convnet import (
        batch_workers,
        stage_clips,
        training_batches,
    )

    _, _, clips = stage_clips(stage_config)
    batches = training_batches(clips, stage_config.settings)
    feed = ordered_map(
        functools.partial(draw_batch, batches),
        range(1 + warmup + iterations),
        workers=batch_workers(stage_config),
    )
    images, began = 0, None
    try:
        for index, (batch, _) in enumerate(feed):
            if index == warmup:  # batch 1 + warmup received: the clock starts
                began = time.perf_counter()
            elif began is not None:
                images += len(batch)
    finally:
        feed.close()
    return images / (time.perf_counter() - began)


def run_extract(config: BenchmarkConfig, work: WorkFolders, stream: str) -> Measurement:
    """Every image of every clip; the rate leaves out the first video (it compiles)."""
    from temporal_attention.training import extract_features

    store = work.features(stream)
    argv = extract_features_argv(config, work.lists, store, stream, work.frames)
    stage_config = extract_features.parse_args(argv)
    report, profile = _sampled(config, extract_features.run, stage_config)
    _checked(report, f"extract {stream}")
    timed = report.completed[1:] or report.completed
    items = sum(result.frames for result in timed)
    seconds = sum(result.seconds for result in timed)
    device = extract_device_rate(stage_config, config.device_repeats)
    feed = extract_feed_rate(stage_config)
    return Measurement(items, seconds, device, tuple(argv), feed_rate=feed, host_profile=profile)


def extract_feed_rate(stage_config) -> float:
    """Images/s of the extraction stage's feed alone: its clips' images read and cropped
    by the stage's own feed (`training.extract_features.read_pieces`, the same number of
    worker processes), with no network; the first video is left out, as in the stage's rate
    (here it holds the workers' start). Raises on a video that cannot be read."""
    from temporal_attention.training.extract_features import image_fields, image_source, read_pieces

    clips = list(stage_config.source.load(on_missing="skip").subset(stage_config.subset))
    fields = image_fields(stage_config, [clip.video_id for clip in clips])
    source = image_source(stage_config, dataclasses.replace(stage_config.recipe, **fields))
    pieces = read_pieces(source, clips, stage_config.workers)
    images, began = 0, None
    try:
        for piece in pieces:
            if piece["error"] is not None:
                raise RuntimeError(f"extraction feed: {piece['video_id']}: {piece['error']}")
            if began is not None:
                images += len(piece["images"])
            elif piece["last"]:  # the first video read: the clock starts
                began = time.perf_counter()
    finally:
        pieces.close()
    if began is None or images == 0:
        raise RuntimeError("extraction feed: fewer than 2 videos to time")
    return images / (time.perf_counter() - began)


def run_attention(config: BenchmarkConfig, work: WorkFolders) -> Measurement:
    """Training on the appearance features; the rate leaves out the first epoch."""
    from temporal_attention.data.feature_store import FeatureStore
    from temporal_attention.data.samples import SampleDataset
    from temporal_attention.training import train_attention
    from temporal_attention.training.runs import Run

    argv = train_attention_argv(config, work.lists, work.features("appearance"), work.runs)
    stage_config = train_attention.parse_args(argv)
    train = stage_config.train
    if train.epochs < 2:
        raise ValueError(f"Expected --attention-epochs >= 2. Received: {train.epochs}")
    split = stage_config.source.load()
    samples = SampleDataset(
        FeatureStore(stage_config.store),
        [(clip.video_id, clip.label) for clip in split.train],
        batch_size=train.batch_size,
        num_frames=train.num_frames,
        stride=train.stride,
    )
    clock = _batch_clock()
    _, profile = _sampled(
        config,
        functools.partial(
            train_attention.train,
            train,
            split=split,
            store_root=stage_config.store,
            run_dir=Run.for_config(stage_config.runs, train).root,
            extra_callbacks=[clock],
            verbose=0,
        ),
    )
    # Epochs after the first (it compiles): their batches after the first one, whose
    # time holds the epoch's start; an epoch's overhead is the rest of its wall time.
    items = seconds = overhead = 0.0
    epochs = clock.epochs[1:]
    for batch_ends, began, ended in epochs:
        span = batch_ends[-1] - batch_ends[0]
        items += (len(batch_ends) - 1) * train.batch_size
        seconds += span
        overhead += (ended - began) - span * len(batch_ends) / max(len(batch_ends) - 1, 1)
    device = attention_device_rate(train, samples.feature_dim, len(config.classes), len(samples))
    if seconds <= 0:  # one batch an epoch (tiny runs): whole epochs, overhead included
        items = samples.num_samples * len(epochs)
        seconds = sum(ended - began for _, began, ended in epochs)
        return Measurement(items, seconds, device, tuple(argv), host_profile=profile)
    return Measurement(
        items,
        seconds,
        device,
        tuple(argv),
        epoch_overhead_s=max(overhead / len(epochs), 0.0),
        host_profile=profile,
    )


def _batch_clock():
    """A Keras callback that records when each training batch ends (waiting for its loss,
    so that it is the step's end, not its dispatch) and when each epoch begins and ends."""
    import keras

    class BatchClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []  # (batch end times, epoch began, epoch ended)

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(([], time.perf_counter(), None))

        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))  # waits for the step
            self.epochs[-1][0].append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            batch_ends, began, _ = self.epochs[-1]
            self.epochs[-1] = (batch_ends, began, time.perf_counter())

    return BatchClock()


def stage_record(stage: str, measured: Measurement) -> dict:
    """One JSON line: the rates, their ratio, the peaks so far and the projections."""
    rate = measured.items / measured.seconds
    device_rate = measured.device_rate
    return {
        "stage": stage,
        "unit": UNITS[stage],
        "items": measured.items,
        "seconds": measured.seconds,
        "items_per_s": rate,
        "device_only_items_per_s": device_rate,
        "ratio": rate / device_rate if device_rate else None,
        "peak_host_bytes": peak_host_bytes(),
        "peak_device_bytes": peak_device_bytes(),
        "epoch_overhead_s": measured.epoch_overhead_s,
        "opencv_tvl1_items_per_s": measured.opencv_tvl1_rate,
        "feed_only_items_per_s": measured.feed_rate,
        "ratio_to_feed": rate / measured.feed_rate if measured.feed_rate else None,
        "host_profile": measured.host_profile,
        **{
            f"projected_hours_{dataset}": (
                projected_items(stage, dataset) / rate
                + projected_epochs(stage) * (measured.epoch_overhead_s or 0.0)
            )
            / 3600
            for dataset in DATASET_SIZES
        },
        "argv": list(measured.argv),
    }


def run_benchmark(
    config: BenchmarkConfig, work_root: Path, output: Path | None = None
) -> list[dict]:
    """Runs the asked stages in pipeline order on the chosen clips; one record each,
    appended to `output` (JSON lines) as soon as it is measured."""
    import keras

    unknown = set(config.stages) - set(STAGES)
    if unknown:
        raise ValueError(f"Expected stages among {STAGES}. Received: {sorted(unknown)}")
    work = WorkFolders(Path(work_root))
    if work.root.exists() and any(work.root.iterdir()):
        raise ValueError(
            f"Expected an empty or new --work-dir (a stage skips what it finds done). "
            f"Received: {work.root}, which holds files"
        )
    write_split_lists(
        work.lists, config.split_dir, *choose_clips(config.split_dir, config.classes, config.clips)
    )
    asked = set(config.stages)
    runners = {
        "decode": lambda: run_decode(config, work),
        "flow": lambda: run_flow(config, work),
        "finetune_spatial": lambda: run_finetune(config, work, "appearance"),
        "finetune_temporal": lambda: run_finetune(config, work, "motion"),
        "extract_appearance": lambda: run_extract(config, work, "appearance"),
        "extract_motion": lambda: run_extract(config, work, "motion"),
        "attention": lambda: run_attention(config, work),
    }
    common = {
        "device": device_name(),
        "backend": keras.backend.backend(),
        "settings": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
    }
    # What a stage reads but was not asked for is made untimed: the frame store's frames
    # (every stage after decoding), its flow (the motion stages), the appearance features
    # (attention training).
    needs = {
        "decode": asked - {"decode", "flow"} and "decode" not in asked,
        "flow": asked & {"finetune_temporal", "extract_motion"} and "flow" not in asked,
        "extract_appearance": "attention" in asked and "extract_appearance" not in asked,
    }
    records = []
    for stage in STAGES:
        if needs.get(stage):
            print(f"=== {stage} (untimed: a later stage reads it)", flush=True)
            runners[stage]()
        if stage in asked:
            print(f"=== {stage}", flush=True)
            records.append({**stage_record(stage, runners[stage]()), **common})
            if output is not None:  # as it goes: a run stopped later keeps what it measured
                output.parent.mkdir(parents=True, exist_ok=True)
                with output.open("a") as file:
                    file.write(json.dumps(records[-1]) + "\n")
    return records


# === Report ===


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def format_markdown(records: Sequence[dict]) -> str:
    """The table: one row per stage, and the total of the projections without flow."""
    if not records:
        return "no stages run\n"
    first = records[0]
    settings = first["settings"]
    lines = [
        f"{first['backend']} on {first['device']}; {settings['clips']} clips, input "
        f"{settings['input_size']}, {settings['backbone']}, fine-tuning batch "
        f"{settings['batch_size']}, {settings['precision']}",
        "",
        "| stage | unit | end to end /s | device only /s | share of GPU used | peak host GiB "
        "| peak device GiB | UCF101 hours | HMDB51 hours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for record in records:
        excluded = " (not in total)" if record["stage"] in EXCLUDED_FROM_TOTAL else ""
        lines.append(
            f"| {record['stage']}{excluded} | {record['unit']} | "
            f"{_number(record['items_per_s'])} | {_number(record['device_only_items_per_s'])} | "
            f"{_number(record['ratio'], 2)} | {_gib(record['peak_host_bytes'])} | "
            f"{_gib(record['peak_device_bytes'])} | "
            f"{_number(record['projected_hours_ucf101'])} | "
            f"{_number(record['projected_hours_hmdb51'])} |"
        )
    totals = total_hours(records)
    lines.append(
        f"| total (without flow) | | | | | | | {_number(totals['ucf101'])} | "
        f"{_number(totals['hmdb51'])} |"
    )
    for record in records:
        opencv = record.get("opencv_tvl1_items_per_s")
        if opencv:
            device = record["device_only_items_per_s"] or 0.0
            lines.append(
                f"\nOpenCV DualTVL1 on a sample of the same pairs, one process a core: "
                f"{_number(opencv)} pairs/s; the stage {record['items_per_s'] / opencv:,.1f}x "
                f"that, the solver alone {device / opencv:,.1f}x."
            )
    for record in records:
        feed = record.get("feed_only_items_per_s")
        if feed:
            lines.append(
                f"\n{record['stage']}: the feed alone (the same workers reading and cropping, "
                f"no network) {_number(feed)} {record['unit']}/s; the stage "
                f"{record['items_per_s'] / feed:.2f} of that."
            )
    for record in records:
        profile = record.get("host_profile")
        if profile:
            from benchmarks.host_profile import format_summary

            lines.append(
                f"\n{record['stage']}: where the host threads were, sampled every "
                f"{profile['interval_s'] * 1000:g} ms over {profile['seconds']:.1f} s "
                f"(about {profile['compiling_s']:.1f} s of compiling left out):\n"
            )
            lines.append(format_summary(profile))
    return "\n".join(lines) + "\n"


def total_hours(records: Sequence[dict]) -> dict[str, float]:
    """Projected hours of the stages run, flow left out, per dataset."""
    counted = [record for record in records if record["stage"] not in EXCLUDED_FROM_TOTAL]
    return {
        dataset: sum(record[f"projected_hours_{dataset}"] for record in counted)
        for dataset in DATASET_SIZES
    }


# === Command line ===


def parse_args(argv: Sequence[str] | None = None) -> PipelineBenchmarkConfig:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--tiny" in argv:
        argv = ["--preset", "tiny", *argv]
    return parse_config(
        PipelineBenchmarkConfig,
        argv,
        prog="python -m benchmarks.pipeline_benchmark",
        doc=__doc__,
        presets=PRESETS,
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    config = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pipeline_benchmark_") as temporary:
        records = run_benchmark(config.benchmark, config.work_dir or Path(temporary), config.output)
    table = format_markdown(records)
    print(table)
    if config.markdown is not None:
        config.markdown.write_text(table)
    return records


if __name__ == "__main__":
    exit_on_error(main)
