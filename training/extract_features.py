"""Per-frame ConvNet features for every video of a split (paper section 2.1), into the store.

Appearance: the FC6 (`fc1`) feature of every RGB frame; motion: of every
5-pair flow stack. Each image is the central `input_size` square of the
256x340 frame (paper silent; see docs), preprocessed as the stream needs, and
run through the network in batches (`models.feature_extraction`), a chunk of frames
or flow stacks at a time: memory does not grow with a video's length, only its
features do. A video whose features are already in the store with the same recipe is
skipped, so an interrupted run resumes, and `--shard i/n` splits the videos across
processes or machines.

    python -m training.extract_features --stream appearance \
        --weights runs/spatial/final.keras --video-root UCF-101 \
        --split-dir ucfTrainTestlist --store features/ucf101/appearance
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from data.atomic_files import check_output_folder
from data.batch_jobs import (
    JobReport,
    JobResult,
    exit_status,
    parse_shard,
    shard_items,
    write_failure_log,
)
from data.config_flags import exit_on_error, parse_config
from data.feature_store import FeatureStore
from data.flow_store import FlowStore
from data.splits import SUBSETS, SplitSource
from data.video import VideoReader
from models.feature_extraction import (
    FeatureRecipe,
    build_extractor,
    describe_network,
    extract_chunked_features,
    identify_weights,
)


@dataclass(frozen=True)
class ExtractFeaturesConfig:
    """What to extract, from where, into which store."""

    source: SplitSource
    store: Path = field(metadata={"help": "feature store root"})
    recipe: FeatureRecipe = FeatureRecipe()
    subset: str = field(default="all", metadata={"choices": SUBSETS})
    flow_root: Path | None = field(default=None, metadata={"help": "flow store (motion)"})
    batch_size: int = 64
    shard: str = field(default="0/1", metadata={"help": "i/n: this process's share of videos"})

    def __post_init__(self):
        if self.recipe.stream == "motion" and self.flow_root is None:
            raise ValueError("The motion stream needs --flow-root (from training.compute_flow).")
        parse_shard(self.shard)


def extract_clips(
    extractor: keras.Model,
    clips: Sequence,
    load_images: Callable,
    store,
    *,
    recipe: FeatureRecipe,
    batch_size: int = 64,
    progress: bool = True,
) -> JobReport:
    """Extract and store the features of every clip not yet complete in `store`.

    A clip that cannot be loaded or extracted is recorded as a failure and the
    job goes on with the rest; nothing already stored is touched.

    Args:
        clips: Objects with `video_id` (e.g. `data.splits.Clip`).
        load_images: `load_images(clip)` gives uint8 frames or flow stacks: an array,
            or an iterable of chunks of them (a video of any length, see
            `image_loader`), run batch by batch.
        store: A `data.feature_store.FeatureStore` (`is_complete`, `write`).
        recipe: How the features are made; its `metadata()` is written with each
            video's features, and a stored video counts as done only when it matches.

    Returns:
        A `data.batch_jobs.JobReport`: `done`, `skipped`, `failures`, and
        `frames` (images extracted).
    """
    metadata = recipe.metadata()
    report = JobReport()
    bar = tqdm(clips, desc=f"extract {recipe.stream}", unit="video", disable=not progress)
    for clip in bar:
        if store.is_complete(clip.video_id, metadata):
            report.add(JobResult(clip.video_id, "skipped"))
            continue
        began = time.perf_counter()
        try:
            images = load_images(clip)
            chunks = [images] if isinstance(images, np.ndarray) else images
            features = extract_chunked_features(extractor, chunks, recipe, batch_size)
            # Image i is frame i (appearance) or the stack of flows i..i+4 (motion).
            frame_indices = list(range(len(features)))
            store.write(
                clip.video_id,
                features,
                {**metadata, "num_images": len(features), "frame_indices": frame_indices},
            )
        except Exception as error:  # noqa: BLE001 - recorded, the job goes on
            report.add(JobResult(clip.video_id, "failed", f"{type(error).__name__}: {error}"))
            continue
        seconds = time.perf_counter() - began
        report.seconds += seconds
        report.add(JobResult(clip.video_id, "done", frames=len(features), seconds=seconds))
        bar.set_postfix(img_s=f"{report.frames / max(report.seconds, 1e-9):.1f}")
    return report


def image_loader(config: ExtractFeaturesConfig) -> Callable:
    """`load(clip)`: chunks of uint8 RGB frames at the recipe's size, decoded as they
    are used, or of the clip's flow stacks, read from its flow file as they are used:
    memory holds one chunk, whatever the video's length."""
    recipe = config.recipe
    if recipe.stream == "appearance":
        return lambda clip: VideoReader(clip.path, recipe.height, recipe.width).chunks()
    flow = FlowStore(config.flow_root)
    return lambda clip: flow.iter_stacks(clip.video_id)  # (n, height, width, 10) chunks


def run(config: ExtractFeaturesConfig) -> JobReport:
    """Extracts the features of the config's videos into its store; returns the report
    (its failures include listed videos missing on disk, and go to a failure log)."""
    shard_index, shard_count = parse_shard(config.shard)
    check_output_folder(config.store, "feature store")
    split = config.source.load(on_missing="skip")
    clips = shard_items(split.subset(config.subset), config.shard)
    recipe = identify_weights(config.recipe)
    if recipe.stream == "motion":
        flow_recipe = FlowStore(config.flow_root).recipe(clip.video_id for clip in clips)
        recipe = dataclasses.replace(recipe, **flow_recipe)
    image_size = recipe.flow_size if recipe.stream == "motion" else (recipe.height, recipe.width)
    if image_size is not None and recipe.input_size > min(image_size):
        raise ValueError(
            f"Expected --input-size <= the {recipe.stream} images' height and width "
            f"({image_size[0]}x{image_size[1]}). Received: input_size={recipe.input_size}"
        )
    extractor = build_extractor(recipe)
    recipe = describe_network(recipe, extractor)
    print(f"{len(clips)} videos (shard {shard_index}/{shard_count}) -> {config.store}")
    report = extract_clips(
        extractor,
        clips,
        image_loader(config),
        FeatureStore(config.store),
        recipe=recipe,
        batch_size=config.batch_size,
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
