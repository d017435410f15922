"""One video in, the top-5 classes and a Fig. 1 style attention figure out.

    python -m evaluation.predict my_video.mp4 \
        --appearance-run runs/ucf101/split1/appearance/attention \
        --motion-run runs/ucf101/split1/motion/attention --output predictions/my_video

The video is decoded (256x340) chunk by chunk, so memory does not grow with its length.
Its features are extracted with the network recorded in each run's `config.json` (the
feature store's recipe: backbone, weights file, input size, feature layer,
preprocessing), cut into 30-frame samples and scored the paper's way (last-10 mean,
sample mean, 1/3 appearance + 2/3 motion). The motion stream computes TV-L1 flow first
(slow on a CPU: about a second a frame at 256x340).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from temporal_attention.data.optical_flow import iter_flow, iter_flow_stacks
from temporal_attention.data.video import VideoReader
from temporal_attention.evaluation.attention import video_attention
from temporal_attention.evaluation.scoring import TWO_STREAM_WEIGHTS, check_trained, fuse_scores
from temporal_attention.figures.attention import plot_attention, thumbnail_indices
from temporal_attention.models.feature_extraction import (
    FeatureRecipe,
    build_extractor,
    extract_chunked_features,
    file_sha256,
)
from temporal_attention.runtime.atomic_files import check_output_folder
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.training.runs import Run


def rebuild_extractor(recipe: FeatureRecipe):
    """The feature network a run's features were made with, from its recorded recipe."""
    weights = recipe.network_weights
    if weights is None:
        raise ValueError(
            "This run's features came from a randomly initialised network (weights='none'), "
            "which cannot be rebuilt. Extract features with --weights imagenet or a .keras file."
        )
    if weights != "imagenet" and not os.path.exists(weights):
        raise ValueError(f"The run's feature network weights are not found: weights={weights}")
    if recipe.weights_sha256 is not None and file_sha256(weights) != recipe.weights_sha256:
        raise ValueError(
            f"{weights} is not the file this run's features were made with (its content "
            "changed since: another fine-tuning?). Extract the features again with it and "
            "retrain, or point to the original file."
        )
    return build_extractor(recipe)


def video_images(
    video_path: str | os.PathLike, recipe: FeatureRecipe, flow_method: str | None = None
) -> Iterator[np.ndarray]:
    """The network's uint8 inputs for one video, chunk by chunk, made as `recipe` says:
    RGB frames at the recipe's frame size (appearance), or flow stacks of frames at its
    flow size (motion, 256x340 when not recorded), flow by `flow_method`, else the
    recipe's, else TV-L1. The video is decoded as the chunks are used."""
    if recipe.stream == "appearance":
        return VideoReader(video_path, recipe.height, recipe.width).chunks()
    height, width = recipe.flow_size or (recipe.height, recipe.width)
    frames = VideoReader(video_path, height, width).chunks()
    return iter_flow_stacks(iter_flow(frames, flow_method or recipe.flow_method or "tvl1"))


def video_features(
    video_path: str | os.PathLike, recipe: FeatureRecipe, flow_method: str | None = None
) -> np.ndarray:
    """`(positions, dim)` features of one video file (`video_images`), made by the
    network `recipe` records. Memory holds one chunk of frames (and of flow) and one
    batch, plus the features, whatever the video's length."""
    images = video_images(video_path, recipe, flow_method)
    return extract_chunked_features(rebuild_extractor(recipe), images, recipe, batch_size=32)


class Thumbnails(Sequence):
    """A video's frames for the figure: `len()` is its frame count, but only the
    `thumbnail_indices` frames are kept (as stored, decoded once more), so that a
    long video is never held in memory."""

    def __init__(self, video_path: str | os.PathLike, num_frames: int, num_thumbnails: int = 8):
        self.num_frames = int(num_frames)
        wanted = {int(index) for index in thumbnail_indices(self.num_frames, num_thumbnails)}
        self.frames, position = {}, 0
        for chunk in VideoReader(video_path, None, None).chunks():
            for frame in chunk:  # (height, width, 3) uint8 RGB, as stored
                if position in wanted:
                    self.frames[position] = frame.copy()  # not a view keeping the chunk
                position += 1

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self.frames:
            raise IndexError(f"Frame {index} is not kept; kept: {sorted(self.frames)}")
        return self.frames[index]


def predict_video(
    video_path: str | os.PathLike,
    runs: dict[str, str | os.PathLike],
    *,
    weights: tuple[float, float] = TWO_STREAM_WEIGHTS,
    flow_method: str | None = None,
    top_k: int = 5,
) -> dict:
    """Scores one video with the runs of one or both streams.

    Args:
        runs: `stream -> run folder`, streams "appearance" and/or "motion".

    Returns:
        A dict: `top` (`[(class name, probability), ...]`, best first), `scores`
        `(C,)`, `class_names`, `frames` (the figure's `Thumbnails` of the video), and
        per stream `frame_weights` and `stream_scores`.

    The video is decoded chunk by chunk, once per stream and once for the thumbnails:
    memory does not grow with its length, only the features do.
    """
    if not runs:
        raise ValueError("Expected at least one of --appearance-run, --motion-run.")
    for run_dir in runs.values():  # a finished training's model, not its best epoch so far
        Run(run_dir).load_config()
        check_trained(Run(run_dir))
    reader = VideoReader(video_path, None, None)
    for _ in reader.chunks():  # checks the file and counts its frames, before any network
        pass
    stream_scores, frame_weights, class_names = {}, {}, None
    for stream, run_dir in runs.items():
        trained = Run(run_dir)
        record = trained.load_config()
        if record.train.stream != stream:
            raise ValueError(f"{run_dir} is a {record.train.stream} run, given as {stream}.")
        if class_names is not None and record.class_names != class_names:
            raise ValueError("The appearance and motion runs have different classes.")
        class_names = record.class_names
        features = video_features(video_path, record.features, flow_method)  # (positions, dim)
        result = video_attention(
            trained.load_model(), features, record.train.num_frames, record.train.stride
        )
        stream_scores[stream] = result["video_score"]
        frame_weights[stream] = result["frame_weights"]
    if len(stream_scores) == 2:
        scores = fuse_scores(stream_scores["appearance"], stream_scores["motion"], weights)
    else:
        scores = next(iter(stream_scores.values()))
    order = np.argsort(scores)[::-1][:top_k]
    return {
        "top": [(class_names[index], float(scores[index])) for index in order],
        "scores": scores,
        "class_names": class_names,
        "frames": Thumbnails(video_path, reader.num_frames),
        "frame_weights": frame_weights,
        "stream_scores": stream_scores,
    }


# === Stage ===


@dataclass(frozen=True)
class PredictConfig:
    """One video, the runs that score it, where the figure and the top classes go."""

    video: Path = field(metadata={"positional": True, "help": "any video file OpenCV reads"})
    appearance_run: Path | None = field(
        default=None, metadata={"help": "run folder of the appearance stream's recogniser"}
    )
    motion_run: Path | None = field(
        default=None, metadata={"help": "run folder of the motion stream's recogniser"}
    )
    output: Path = field(default=Path("predictions"), metadata={"help": "folder"})
    top_k: int = 5
    flow_method: str | None = field(
        default=None, metadata={"help": "default: the motion run's recorded method, or tvl1"}
    )
    weights: tuple[float, float] = field(default=TWO_STREAM_WEIGHTS, metadata={"nargs": 2})


def run(config: PredictConfig) -> dict:
    """Prints the top classes; writes `<video>_attention.png/.pdf` and `<video>_top<k>.json`
    under `output`; returns `predict_video`'s result with `figure` (the written paths)."""
    runs = {
        stream: folder
        for stream, folder in (("appearance", config.appearance_run), ("motion", config.motion_run))
        if folder is not None
    }
    check_output_folder(config.output, "--output folder")  # before the networks run
    result = predict_video(
        config.video, runs, weights=tuple(config.weights), flow_method=config.flow_method,
        top_k=config.top_k,
    )  # fmt: skip
    print(f"{config.video} ({' + '.join(runs)}):")
    for rank, (name, probability) in enumerate(result["top"], start=1):
        print(f"  {rank}. {name:<30s} {probability:.3f}")
    config.output.mkdir(parents=True, exist_ok=True)
    figure = config.output / f"{config.video.stem}_attention"
    result["figure"] = plot_attention(
        result["frames"], result["frame_weights"], figure,
        title=f"{config.video.name}: {result['top'][0][0]} ({result['top'][0][1]:.2f})",
    )  # fmt: skip
    (config.output / f"{config.video.stem}_top{config.top_k}.json").write_text(
        json.dumps({"video": str(config.video), "top": result["top"]}, indent=2)
    )
    print(f"figure: {result['figure'][0]}")
    return result


# === Command line ===


def main(argv: Sequence[str] | None = None) -> dict:
    return run(parse_config(PredictConfig, argv, prog="python -m evaluation.predict", doc=__doc__))


if __name__ == "__main__":
    exit_on_error(main)
