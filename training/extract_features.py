"""Per-frame ConvNet features for every video of a split (paper section 2.1), into the store.

Appearance: the FC6 (`fc1`) feature of every RGB frame; motion: of every
5-pair flow stack. Each image is the central `input_size` square of the
256x340 frame (paper silent; see docs), run through the network in batches
(`models.feature_extraction`). The stage is a pipeline that keeps an accelerator fed:

- `--workers N` processes (default: the cores less one; 0: this process) decode the
  videos, or read the `.npz` flow store, or with `--frame-root` the frame store's JPEG
  frames / flow (`data.extraction_feed`, mapped by `runtime.process_feed.ordered_map`), and
  cut the central crops while the network runs on earlier batches;
- the crops travel as uint8 and are preprocessed on the device, by the model's first
  layer (`uint8_extractor`: bit for bit the host preprocessing's features);
- batches of `--batch-size` rows run across consecutive videos, split back per video
  (`extract_streamed_features`): no padded last batch per video;
- `--precision auto` (the default) is mixed_bfloat16 where the backend sees a GPU,
  float32 elsewhere, resolved before the recipe is recorded;
- `--data-parallel auto` (the default) splits every batch over the devices with
  `keras.distribution.DataParallel` when the JAX backend sees several.

Memory does not grow with a video's length (it is read in tasks of 24 MiB of crops),
only its features do. A video whose features are already in the store with the same recipe
(including where its images came from, `image_source`) is skipped, so an interrupted
run resumes to the same features, and `--shard i/n` splits the videos across processes
or machines.

    python -m training.extract_features --stream appearance \
        --weights runs/spatial/final.keras --video-root UCF-101 \
        --split-dir ucfTrainTestlist --store features/ucf101/appearance
    python -m training.extract_features --stream motion --frame-root frames/ucf101 \
        --weights runs/temporal/final.keras --video-root UCF-101 \
        --split-dir ucfTrainTestlist --store features/ucf101/motion
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import keras
from tqdm import tqdm

from temporal_attention.data.extraction_feed import (
    ImageSource,
    count_images,
    plan_tasks,
    read_crops,
)
from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.flow_store import FlowStore
from temporal_attention.data.frame_store import FrameStore
from temporal_attention.data.splits import SUBSETS, SplitSource
from temporal_attention.models.feature_extraction import (
    FeatureRecipe,
    build_extractor,
    default_image_source,
    describe_network,
    identify_weights,
    uint8_extractor,
)
from temporal_attention.runtime.atomic_files import check_output_folder
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.devices import data_parallel_distribution, resolve_precision
from temporal_attention.runtime.jobs import (
    JobReport,
    JobResult,
    default_workers,
    exit_status,
    parse_shard,
    shard_items,
    write_failure_log,
)
from temporal_attention.runtime.process_feed import ordered_map
from temporal_attention.runtime.streaming import extract_streamed_features

DATA_PARALLEL = ("auto", "off")
# Threads that write features while the network runs: 4 were busy 95 % of the time at
# 9,251 VGG16 images/s (float16, deflated) on an H200 machine, and held extraction there.
WRITE_THREADS = 8


@dataclass(frozen=True)
class ExtractFeaturesConfig:
    """What to extract, from where, into which store."""

    source: SplitSource
    store: Path = field(metadata={"help": "feature store root"})
    recipe: FeatureRecipe = FeatureRecipe()
    subset: str = field(default="all", metadata={"choices": SUBSETS})
    flow_root: Path | None = field(default=None, metadata={"help": "flow store (motion)"})
    # A frame store (data.frame_store): RGB frames (img_*.jpg) or flow (flow_x/flow_y)
    # read from it instead of decoding videos / the .npz flow store; recorded in the
    # recipe (image_source "frames"), as its JPEG images give other features.
    frame_root: Path | None = field(
        default=None, metadata={"help": "frame store to read frames / flow from"}
    )
    batch_size: int = 64
    # Processes that read, decode and crop while the network runs; 0: this process.
    workers: int = field(
        default_factory=lambda: default_workers(reserve=1),
        metadata={"help": "reading processes (default: cores - 1; 0: this process)"},
    )
    # "auto": keras.distribution.DataParallel over every device when the JAX backend
    # sees more than one (batch_size must divide by their count); "off": one device.
    data_parallel: str = field(
        default="auto",
        metadata={"choices": DATA_PARALLEL, "help": "auto: JAX DataParallel over all devices"},
    )
    shard: str = field(default="0/1", metadata={"help": "i/n: this process's share of videos"})

    def __post_init__(self):
        if self.recipe.stream == "motion" and self.flow_root is None and self.frame_root is None:
            raise ValueError(
                "The motion stream needs --flow-root (from training.compute_flow) or "
                "--frame-root (from training.compute_flow --layout frames)."
            )
        if self.workers < 0:
            raise ValueError(f"Expected workers >= 0. Received: workers={self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1. Received: batch_size={self.batch_size}")
        if self.data_parallel not in DATA_PARALLEL:
            raise ValueError(
                f"Expected data_parallel in {DATA_PARALLEL}. Received: {self.data_parallel!r}"
            )
        parse_shard(self.shard)


def read_pieces(source: ImageSource, clips: Sequence, workers: int) -> Iterator[dict]:
    """The clips' images as `data.extraction_feed.read_crops` pieces, in order, read and
    centrally cropped in `workers` processes (`runtime.process_feed.ordered_map`): the feed
    of `extract_videos`. Close it when done."""
    tasks = plan_tasks(source, ((clip.video_id, getattr(clip, "path", None)) for clip in clips))
    return ordered_map(functools.partial(read_crops, source), tasks, workers=workers)


def extract_videos(
    extractor: keras.Model,
    clips: Sequence,
    source: ImageSource,
    store,
    *,
    recipe: FeatureRecipe,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> JobReport:
    """Extract and store the features of every clip not yet complete in `store`, fed by
    `workers` processes.

    The clips' images are read and centrally cropped by `data.extraction_feed.read_crops`
    in worker processes (`runtime.process_feed.ordered_map`), a few tasks ahead of the
    network, and arrive as uint8 crops; `extractor` takes them as they are (it is
    `models.feature_extraction.uint8_extractor`'s, preprocessing on the device). Batches
    of `batch_size` rows run across videos (`extract_streamed_features`), so no video's
    last batch is padded. A clip that cannot be read or extracted is recorded as a
    failure and the job goes on; nothing already stored is touched.

    Args:
        clips: Objects with `video_id` and `path` (e.g. `data.splits.Clip`).
        source: Where the images come from (`data.extraction_feed.ImageSource`).
        store: A `data.feature_store.FeatureStore` (`is_complete`, `write`).
        recipe: How the features are made; its `metadata()` is written with each
            video's features, and a stored video counts as done only when it matches
            (a file of before `image_source` was recorded counts as the stream's
            default source).

    Returns:
        A `runtime.jobs.JobReport`: `done`, `skipped`, `failures`, `frames` (images
        extracted) and `seconds` (of the whole run, reading and network overlapped).
    """
    metadata = recipe.metadata()
    older_files = {"image_source": default_image_source(recipe.stream)}
    report = JobReport()
    todo = []
    for clip in clips:
        if store.is_complete(clip.video_id, metadata, defaults=older_files):
            report.add(JobResult(clip.video_id, "skipped"))
        else:
            todo.append(clip)
    began = last = time.perf_counter()
    pieces = read_pieces(source, todo, workers)
    bar = tqdm(total=len(todo), desc=f"extract {recipe.stream}", unit="video", disable=not progress)
    # Writing a video's features (deflated, atomic) takes about as long as extracting it:
    # WRITE_THREADS threads write while the network goes on (zlib releases the GIL).
    writes: collections.deque = collections.deque()  # (video_id, frames, seconds, future)

    def settle(limit: int) -> None:  # records the oldest writes until `limit` are pending
        while len(writes) > limit:
            video_id, frames, seconds, future = writes.popleft()
            try:
                future.result()
            except Exception as write_error:  # noqa: BLE001 - recorded, the job goes on
                report.add(
                    JobResult(video_id, "failed", f"{type(write_error).__name__}: {write_error}")
                )
                continue
            report.add(JobResult(video_id, "done", frames=frames, seconds=seconds))
            bar.update(1)
            bar.set_postfix(img_s=f"{report.frames / max(time.perf_counter() - began, 1e-9):.1f}")

    with ThreadPoolExecutor(WRITE_THREADS, "write-features") as writer:
        try:
            for video_id, features, error in extract_streamed_features(
                extractor, pieces, batch_size
            ):
                if error is not None:
                    report.add(JobResult(video_id, "failed", error))
                    bar.update(1)
                    continue
                # A video's seconds: since the video before it was extracted (streamed
                # batches overlap videos; the first video's include the compilation).
                now = time.perf_counter()
                # Image i is frame i (appearance) or the stack of flows i..i+4 (motion).
                video_metadata = {
                    **metadata,
                    "num_images": len(features),
                    "frame_indices": list(range(len(features))),
                }
                future = writer.submit(store.write, video_id, features, video_metadata)
                writes.append((video_id, len(features), now - last, future))
                last = now
                settle(2 * WRITE_THREADS)
        finally:
            pieces.close()
            settle(0)  # every submitted write finishes (or fails) before returning
            bar.close()
    report.seconds = time.perf_counter() - began
    return report


def image_source(config: ExtractFeaturesConfig, recipe: FeatureRecipe) -> ImageSource:
    """Where `run` reads the config's images: the frame store, the videos or the flow
    store; stored images are checked to be of the size the recipe records."""
    if config.frame_root is not None:
        kind, root = "frames", str(config.frame_root)
    elif recipe.stream == "appearance":
        kind, root = "video", None
    else:
        kind, root = "flow_store", str(config.flow_root)
    # The size the images are read at (video) or must have (stored: checked as read).
    size = recipe.flow_size if recipe.stream == "motion" else (recipe.height, recipe.width)
    height, width = size if size is not None else (None, None)
    return ImageSource(
        kind, recipe.stream, root=root, input_size=recipe.input_size, height=height, width=width
    )


def frame_store_recipe(config: ExtractFeaturesConfig, video_ids: Sequence[str]) -> dict:
    """The recipe fields a frame store sets, after checking that it holds every one of
    `video_ids`' frames (appearance) or flow (motion), undamaged and of one kind
    (`data.frame_store.FrameStore.check_videos`): the image size, and for motion how
    the flow was made (from its markers; None for external folders).

    Raises:
        ValueError: before any work, naming the folder and the command that writes
            what is missing, a damaged file, or two videos of different kinds.
    """
    root, stream = config.frame_root, config.recipe.stream
    probe = ImageSource("frames", stream, root=str(root))
    missing = [video_id for video_id in video_ids if count_images(probe, video_id) == 0]
    if missing:
        command = (
            f"python -m training.extract_frames --output {root} ..."
            if stream == "appearance"
            else f"python -m training.compute_flow --layout frames --output {root} ..."
        )
        part = "frames (img_*.jpg)" if stream == "appearance" else "flow (flow_x/flow_y_*.jpg)"
        shown = ", ".join(str(FrameStore(root).folder_for(video_id)) for video_id in missing[:3])
        raise ValueError(
            f"{len(missing)} of the {len(video_ids)} videos to extract have no complete "
            f"{part} in the frame store {root} (e.g. {shown}). Write them with `{command}` "
            "(the same split and shard), or drop --frame-root."
        )
    fields = {"image_source": "frames"}
    if not video_ids:
        return fields
    part = "frames" if stream == "appearance" else "flow"
    # Every video's files as their markers record, all of one size (flow: and method).
    kind = FrameStore(root).check_videos(video_ids, part)
    if stream == "appearance":
        return {**fields, "height": kind["image_size"][0], "width": kind["image_size"][1]}
    return {**fields, "flow_method": kind["method"], "flow_size": kind["image_size"]}


def image_fields(config: ExtractFeaturesConfig, video_ids: Sequence[str]) -> dict:
    """The recipe fields that the config's images set (`frame_store_recipe` for a frame
    store, the flow store's recipe for motion from it, which refuses files of two
    methods or sizes; none for videos)."""
    if config.frame_root is not None:
        return frame_store_recipe(config, video_ids)
    if config.recipe.stream == "motion":
        return FlowStore(config.flow_root).recipe(video_ids)
    return {}


def run(config: ExtractFeaturesConfig) -> JobReport:
    """Extracts the features of the config's videos into its store; returns the report
    (its failures include listed videos missing on disk, and go to a failure log)."""
    shard_index, shard_count = parse_shard(config.shard)
    check_output_folder(config.store, "feature store")
    split = config.source.load(on_missing="skip")
    clips = shard_items(split.subset(config.subset), config.shard)
    recipe = identify_weights(config.recipe)
    recipe = dataclasses.replace(recipe, precision=resolve_precision(recipe.precision))
    recipe = dataclasses.replace(recipe, **image_fields(config, [clip.video_id for clip in clips]))
    image_size = recipe.flow_size if recipe.stream == "motion" else (recipe.height, recipe.width)
    if image_size is not None and recipe.input_size > min(image_size):
        raise ValueError(
            f"Expected --input-size <= the {recipe.stream} images' height and width "
            f"({image_size[0]}x{image_size[1]}). Received: input_size={recipe.input_size}"
        )
    distribution = data_parallel_distribution(config.data_parallel, config.batch_size)
    scope = distribution.scope() if distribution is not None else contextlib.nullcontext()
    with scope:
        network = build_extractor(recipe)
        recipe = describe_network(recipe, network)
        extractor = uint8_extractor(network, recipe)
        where = f"{len(clips)} videos (shard {shard_index}/{shard_count}) -> {config.store}"
        print(f"{where}; {recipe.precision}, {config.workers} reading workers")
        if distribution is not None:
            print(f"data parallel over {len(distribution.device_mesh.devices.flat)} devices")
        report = extract_videos(
            extractor,
            clips,
            image_source(config, recipe),
            FeatureStore(config.store),
            recipe=recipe,
            batch_size=config.batch_size,
            workers=config.workers,
        )
    report.failures += [
        JobResult(missing.clip.video_id, "failed", f"missing on disk: {missing}")
        for missing in shard_items(split.missing_in(config.subset), config.shard)
    ]
    suffix = "" if shard_count == 1 else f"-shard-{shard_index}-of-{shard_count}"
    log_path = Path(config.store) / f"failures-{recipe.stream}{suffix}.jsonl"
    write_failure_log(log_path, report.failures)
    print(report.summary(log_path))
    return report


def parse_args(argv: Sequence[str] | None = None) -> ExtractFeaturesConfig:
    return parse_config(
        ExtractFeaturesConfig, argv, prog="python -m training.extract_features", doc=__doc__
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0: all complete, 1: failures, 2: bad input)."""
    return exit_status(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    exit_on_error(main)
