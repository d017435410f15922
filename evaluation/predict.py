"""One video in, the top-5 classes and a Fig. 1 style attention figure out.

    python -m evaluation.predict my_video.mp4 \
        --appearance-run runs/ucf101/split1/appearance/attention \
        --motion-run runs/ucf101/split1/motion/attention --output predictions/my_video

The video is decoded (256x340), its features are extracted with the network recorded
in each run's `config.json` (the feature store's recipe: backbone, weights file, input
size, feature layer, preprocessing), cut into 30-frame samples and scored the paper's
way (last-10 mean, sample mean, 1/3 appearance + 2/3 motion). The motion stream
computes TV-L1 flow first (slow on a CPU: about a second a frame at 256x340).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from data.video import FRAME_HEIGHT, FRAME_WIDTH
from evaluation.scoring import TWO_STREAM_WEIGHTS
from figures.attention import load_run, plot_attention, video_attention


def rebuild_extractor(recipe: dict):
    """The feature network a run's features were made with, from its recorded recipe."""
    from training.extract_features import build_extractor

    weights = recipe.get("weights")
    if weights is None or str(weights).lower() == "none":
        raise ValueError(
            "This run's features came from a randomly initialised network (weights='none'), "
            "which cannot be rebuilt. Extract features with --weights imagenet or a .keras file."
        )
    if str(weights) != "imagenet" and not os.path.exists(weights):
        raise ValueError(f"The run's feature network weights are not found: weights={weights}")
    return build_extractor(
        recipe["stream"],
        backbone=recipe.get("backbone", "VGG16"),
        feature_layer=recipe.get("feature_layer", "fc1"),
        weights=weights,
        input_size=int(recipe.get("input_size", 224)),
        fc_units=int(recipe.get("fc_units", recipe["feature_dim"])),
        width_multiplier=float(recipe.get("width_multiplier", 1.0)),
        batch_norm=bool(recipe.get("batch_norm", False)),
    )


def resize_frames(frames: np.ndarray, size) -> np.ndarray:
    """Frames resized to `size` (height, width) as `data.video.read_video` resizes them."""
    height, width = (int(value) for value in size)
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack(
        [cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR) for frame in frames]
    )


def video_features(frames: np.ndarray, recipe: dict, flow_method: str | None = None) -> np.ndarray:
    """`(positions, dim)` features of RGB frames (as decoded), made as `recipe` says.

    Frames are resized to the recipe's `frame_size` (appearance) or `flow_size`
    (motion), 256x340 when not recorded. The flow method is `flow_method`, else
    the recipe's `flow_method`, else TV-L1.
    """
    from data.optical_flow import compute_flow, flow_stacks
    from training.extract_features import extract_video_features, prepare_images

    stream = recipe["stream"]
    default_size = (FRAME_HEIGHT, FRAME_WIDTH)
    if stream == "appearance":
        images = resize_frames(frames, recipe.get("frame_size", default_size))
    else:
        frames = resize_frames(frames, recipe.get("flow_size", default_size))
        method = flow_method or recipe.get("flow_method", "tvl1")
        images = flow_stacks(compute_flow(frames, method))
    preprocess = recipe.get("preprocess", "caffe")
    images = prepare_images(
        images,
        stream,
        input_size=int(recipe.get("input_size", 224)),
        preprocess="caffe" if stream == "motion" else preprocess,
    )
    return extract_video_features(rebuild_extractor(recipe), images, batch_size=32)


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
        `(C,)`, `class_names`, `frames` (the decoded video), and per stream
        `frame_weights` and `stream_scores`.
    """
    from data.video import read_video

    if not runs:
        raise ValueError("Expected at least one of --appearance-run, --motion-run.")
    frames = read_video(video_path, None, None).frames  # (frames, height, width, 3) as stored
    stream_scores, frame_weights, class_names = {}, {}, None
    for stream, run_dir in runs.items():
        config, model = load_run(run_dir)
        if config["train"]["stream"] != stream:
            raise ValueError(f"{run_dir} is a {config['train']['stream']} run, given as {stream}.")
        if class_names is not None and tuple(config["class_names"]) != class_names:
            raise ValueError("The appearance and motion runs have different classes.")
        class_names = tuple(config["class_names"])
        features = video_features(frames, config["features"], flow_method)  # (positions, dim)
        train = config["train"]
        result = video_attention(model, features, train["num_frames"], train["stride"])
        stream_scores[stream] = result["video_score"]
        frame_weights[stream] = result["frame_weights"]
    if len(stream_scores) == 2:
        scores = weights[0] * stream_scores["appearance"] + weights[1] * stream_scores["motion"]
    else:
        scores = next(iter(stream_scores.values()))
    order = np.argsort(scores)[::-1][:top_k]
    return {
        "top": [(class_names[index], float(scores[index])) for index in order],
        "scores": scores,
        "class_names": class_names,
        "frames": frames,
        "frame_weights": frame_weights,
        "stream_scores": stream_scores,
    }


# === Command line ===


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("video", type=Path, help="any video file OpenCV reads")
    parser.add_argument("--appearance-run", type=Path, default=None)
    parser.add_argument("--motion-run", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("predictions"), help="folder")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--flow-method", default=None, help="default: the motion run's recorded method, or tvl1"
    )
    parser.add_argument("--weights", type=float, nargs=2, default=TWO_STREAM_WEIGHTS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    runs = {
        stream: run
        for stream, run in (("appearance", args.appearance_run), ("motion", args.motion_run))
        if run is not None
    }
    result = predict_video(
        args.video, runs, weights=tuple(args.weights), flow_method=args.flow_method,
        top_k=args.top_k,
    )  # fmt: skip
    print(f"{args.video} ({' + '.join(runs)}):")
    for rank, (name, probability) in enumerate(result["top"], start=1):
        print(f"  {rank}. {name:<30s} {probability:.3f}")
    args.output.mkdir(parents=True, exist_ok=True)
    figure = args.output / f"{args.video.stem}_attention"
    result["figure"] = plot_attention(
        result["frames"], result["frame_weights"], figure,
        title=f"{args.video.name}: {result['top'][0][0]} ({result['top'][0][1]:.2f})",
    )  # fmt: skip
    (args.output / f"{args.video.stem}_top{args.top_k}.json").write_text(
        json.dumps({"video": str(args.video), "top": result["top"]}, indent=2)
    )
    print(f"figure: {result['figure'][0]}")
    return result


if __name__ == "__main__":
    main()
