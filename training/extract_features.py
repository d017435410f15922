"""Per-frame ConvNet features for every video of a split (paper section 2.1), into the store.

Appearance: the FC6 (`fc1`) feature of every RGB frame; motion: of every
5-pair flow stack. Each image is the central `input_size` square of the
256x340 frame (paper silent; see docs), preprocessed as the stream needs, and
run through the network in batches. A video whose features are already in the
store with the same settings is skipped, so an interrupted run resumes, and
`--shard i/n` splits the videos across processes or machines.

    python -m training.extract_features --stream appearance \
        --weights runs/spatial/final.keras --video-root UCF-101 \
        --split-dir ucfTrainTestlist --store features/ucf101/appearance
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from data.batch_jobs import JobReport, JobResult, parse_shard, shard_items, write_failure_log
from data.splits import add_split_arguments
from models.two_stream_vgg16 import (
    FEATURE_LAYER,
    build_stream_vgg16,
    copy_weights_by_name,
    feature_extractor,
    preprocess_flow,
    stream_input_shape,
)
from training.frame_dataset import center_crop

DEFAULT_BACKBONE = "VGG16"
# Modes of keras.applications.imagenet_utils.preprocess_input for RGB frames.
PREPROCESS_MODES = ("caffe", "tf", "torch")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


# === Networks ===


def build_extractor(
    stream: str,
    *,
    backbone: str = DEFAULT_BACKBONE,
    feature_layer: str = FEATURE_LAYER,
    weights: str | os.PathLike | None = "imagenet",
    input_size: int = 224,
    fc_units: int = 4096,
    width_multiplier: float = 1.0,
    batch_norm: bool = False,
) -> keras.Model:
    """A network from its input to `feature_layer`, for `stream`'s images.

    Args:
        stream: `"appearance"` (3 channels) or `"motion"` (10 channels).
        backbone: `"VGG16"` (the paper's; built by `build_stream_vgg16`, so
            fine-tuned `.keras` files load) or the name of any
            `keras.applications` model (e.g. `"ResNet50"`); for motion its
            3-channel first convolution is converted cross-modally.
        feature_layer: The layer whose output is the feature. Default `fc1`
            (FC6 after its ReLU).
        weights: `"imagenet"`, `None`, or a file (see `load_pretrained` for
            VGG16; other backbones take what their constructor takes).
        input_size: Side of the square input. Default 224.
        fc_units: Width of VGG16's FC layers (tests use a few).
        width_multiplier: Scales VGG16's convolution filters (1.0: VGG16).
        batch_norm: VGG16-BN (see `build_vgg16`), e.g. for nets trained from scratch.
    """
    input_shape = stream_input_shape(stream, input_size)
    if backbone == DEFAULT_BACKBONE:
        model = build_stream_vgg16(
            stream,
            weights=weights,
            input_size=input_size,
            fc_units=fc_units,
            width_multiplier=width_multiplier,
            batch_norm=batch_norm,
        )
        return feature_extractor(model, feature_layer)
    if width_multiplier != 1.0 or batch_norm:
        raise ValueError(
            "width_multiplier and batch_norm apply to VGG16 only. Received: "
            f"backbone={backbone!r}, width_multiplier={width_multiplier}, batch_norm={batch_norm}"
        )
    constructor = getattr(keras.applications, backbone, None)
    if not callable(constructor):
        raise ValueError(
            f"Expected a keras.applications model name. Received: backbone={backbone!r}"
        )
    if stream == "appearance":
        model = constructor(weights=weights, include_top=True, input_shape=input_shape)
    else:
        model = constructor(weights=None, include_top=True, input_shape=input_shape)
        if weights is not None:
            copy_weights_by_name(constructor(weights=weights, include_top=True), model)
    return feature_extractor(model, feature_layer)


# === Images and features ===


def prepare_images(
    images: np.ndarray, stream: str, *, input_size: int = 224, preprocess: str = "caffe"
) -> np.ndarray:
    """Central crops of uint8 frames or flow stacks, preprocessed for the network.

    RGB frames use `keras.applications.imagenet_utils.preprocess_input` in mode
    `preprocess` ("caffe" for VGG16); flow stacks always become uint8 - 128.
    Returns float32 `(num_images, input_size, input_size, channels)`.
    """
    crops = center_crop(np.asarray(images), input_size)  # (num_images, size, size, channels)
    if stream == "motion":
        return preprocess_flow(crops)
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(f"Expected preprocess in {PREPROCESS_MODES}. Received: {preprocess!r}")
    return keras.applications.imagenet_utils.preprocess_input(
        crops.astype(np.float32), mode=preprocess
    )


def extract_video_features(
    extractor: keras.Model, images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Run `extractor` over preprocessed `images` in batches; returns float32 `(num_images, dim)`.

    The last batch is padded to `batch_size` (repeating its last image), so
    every call has one shape, hence one compiled graph; padding rows are dropped.
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
    num_images = len(images)
    if num_images == 0:
        raise ValueError("Expected at least one image. Received: images of length 0")
    features = []
    for start in range(0, num_images, batch_size):
        batch = images[start : start + batch_size]  # (<= batch_size, height, width, channels)
        num_real = len(batch)
        if num_real < batch_size:
            padding = np.repeat(batch[-1:], batch_size - num_real, axis=0)
            batch = np.concatenate([batch, padding])
        output = extractor.predict_on_batch(batch)  # (batch_size, dim)
        features.append(np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32)[:num_real])
    return np.concatenate(features)  # (num_images, dim)


def extract_clips(
    extractor: keras.Model,
    clips: Sequence,
    load_images: Callable,
    store,
    *,
    stream: str,
    metadata: dict,
    input_size: int = 224,
    preprocess: str = "caffe",
    batch_size: int = 64,
    progress: bool = True,
) -> JobReport:
    """Extract and store the features of every clip not yet complete in `store`.

    A clip that cannot be loaded or extracted is recorded as a failure and the
    job goes on with the rest; nothing already stored is touched.

    Args:
        clips: Objects with `video_id` (e.g. `data.splits.Clip`).
        load_images: `load_images(clip)` gives uint8 frames or flow stacks.
        store: A `data.feature_store.FeatureStore` (`is_complete`, `write`).
        metadata: Settings written with each video's features; a stored video
            counts as done only when they match.

    Returns:
        A `data.batch_jobs.JobReport`: `done`, `skipped`, `failures`, and
        `frames` (images extracted).
    """
    report = JobReport()
    bar = tqdm(clips, desc=f"extract {stream}", unit="video", disable=not progress)
    for clip in bar:
        if store.is_complete(clip.video_id, metadata):
            report.add(JobResult(clip.video_id, "skipped"))
            continue
        began = time.perf_counter()
        try:
            images = prepare_images(
                load_images(clip), stream, input_size=input_size, preprocess=preprocess
            )
            features = extract_video_features(extractor, images, batch_size)  # (images, dim)
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


# === Command line ===


def _load_rgb_frames(clip, height: int, width: int) -> np.ndarray:
    from data.video import read_video

    return read_video(clip.path, height, width).frames  # (frames, height, width, 3) uint8 RGB


def _load_flow_stacks(clip, flow_root: Path) -> np.ndarray:
    from data.optical_flow import flow_stacks, load_flow

    return flow_stacks(load_flow(flow_root / f"{clip.video_id}.npz"))  # (stacks, 256, 340, 10)


def _flow_recipe(clips, flow_root: Path) -> dict:
    """How the flow was made (method, frame size), from the first readable flow file."""
    from data.npz_files import read_npz_metadata

    for clip in clips:
        try:
            flow_metadata = read_npz_metadata(Path(flow_root) / f"{clip.video_id}.npz") or {}
        except (OSError, ValueError):
            continue
        if "method" in flow_metadata:
            return {
                "flow_method": flow_metadata["method"],
                "flow_size": [flow_metadata["height"], flow_metadata["width"]],
            }
    return {}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.extract_features", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stream", choices=("appearance", "motion"), required=True)
    add_split_arguments(parser)
    parser.add_argument("--flow-root", type=Path, default=None, help="<video_id>.npz flow files")
    parser.add_argument("--height", type=int, default=256, help="decoded RGB frame height")
    parser.add_argument("--width", type=int, default=340, help="decoded RGB frame width")
    parser.add_argument("--store", type=Path, required=True, help="feature store root")
    parser.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a file")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="keras.applications name")
    parser.add_argument("--feature-layer", default=FEATURE_LAYER)
    parser.add_argument("--preprocess", choices=PREPROCESS_MODES, default="caffe")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--fc-units", type=int, default=4096)
    parser.add_argument("--width-multiplier", type=float, default=1.0, help="VGG16 conv widths")
    parser.add_argument("--batch-norm", action="store_true", help="VGG16-BN (as fine-tuned)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--shard", default="0/1", help="i/n: this process's share of videos")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0: all complete, 1: failures, 2: bad input)."""
    from data.feature_store import FeatureStore
    from data.splits import load_split

    args = parse_args(argv)
    try:
        if args.stream == "motion" and args.flow_root is None:
            raise ValueError("The motion stream needs --flow-root (from training.compute_flow).")
        shard_index, shard_count = parse_shard(args.shard)
        classes = args.classes.split(",") if args.classes else None
        split = load_split(
            args.dataset,
            args.video_root,
            args.split_dir,
            split=args.split,
            classes=classes,
            on_missing="skip",
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clips = shard_items(split.subset(args.subset), args.shard)
    if args.stream == "appearance":
        load_images = functools.partial(_load_rgb_frames, height=args.height, width=args.width)
    else:
        load_images = functools.partial(_load_flow_stacks, flow_root=args.flow_root)

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(args.precision)
    try:
        extractor = build_extractor(
            args.stream,
            backbone=args.backbone,
            feature_layer=args.feature_layer,
            weights=None if args.weights.lower() == "none" else args.weights,
            input_size=args.input_size,
            fc_units=args.fc_units,
            width_multiplier=args.width_multiplier,
            batch_norm=args.batch_norm,
        )
        metadata = {
            "stream": args.stream,
            "backbone": args.backbone,
            "feature_layer": args.feature_layer,
            "weights": str(args.weights),
            "input_size": args.input_size,
            "fc_units": args.fc_units,
            "width_multiplier": args.width_multiplier,
            "batch_norm": args.batch_norm,
            "crop": "center",
            "preprocess": "uint8-128" if args.stream == "motion" else args.preprocess,
            "precision": args.precision,
        }
        if args.stream == "appearance":
            metadata["frame_size"] = [args.height, args.width]
        else:
            metadata.update(_flow_recipe(clips, args.flow_root))
        print(f"{len(clips)} videos (shard {shard_index}/{shard_count}) -> {args.store}")
        report = extract_clips(
            extractor,
            clips,
            load_images,
            FeatureStore(args.store),
            stream=args.stream,
            metadata=metadata,
            input_size=args.input_size,
            preprocess=args.preprocess,
            batch_size=args.batch_size,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    report.failures += [
        JobResult(missing.clip.video_id, "failed", f"missing on disk: {missing}")
        for missing in shard_items(split.missing_in(args.subset), args.shard)
    ]
    suffix = "" if shard_count == 1 else f"-shard-{shard_index}-of-{shard_count}"
    log_path = Path(args.store) / f"failures-{args.stream}{suffix}.jsonl"
    write_failure_log(log_path, report.failures)
    print(report.summary(log_path))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
