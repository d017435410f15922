"""Fig. 1 style plots: frame thumbnails along the timeline, attention weights as bars.

A video's features are cut into 30-frame samples; the trained model gives each sample
attention weights `(steps, frames)`. A frame's weight is the mean over the last 10
steps (the steps that are scored, section 3.2), mapped back to the frame's index in
the video (padded frames excluded; with overlapping samples, the mean of its samples).
Within one sample the weights sum to 1, so 1/30 is what a mean-pooling baseline gives.

    python -m figures.attention --run runs/ucf101/split1/appearance/attention \
        --motion-run runs/ucf101/split1/motion/attention \
        --video UCF-101/Punch/v_Punch_g01_c01.avi --video-id Punch/v_Punch_g01_c01 \
        --output figures/punch_attention

writes `punch_attention.png` and `.pdf` (one bar row per stream). With `--key-frames
key_frames.csv` it also plots, over the run's test videos, the attention mass on
annotated key frames against what uniform attention would give.

Positions: appearance feature i is frame i; motion feature i is the flow stack of
frames i..i+5 and is drawn at frame i (its first frame).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.recognizer import NUM_SCORED_STEPS, build_attention_readout  # noqa: E402

STREAM_COLORS = {"appearance": "tab:red", "motion": "tab:blue"}


# === Attention per frame ===


def frame_attention(
    attention: np.ndarray,
    sample_starts: np.ndarray,
    frame_masks: np.ndarray,
    num_video_frames: int,
    num_last_steps: int = NUM_SCORED_STEPS,
) -> np.ndarray:
    """Per-frame weights of a video from its samples' attention.

    Args:
        attention: `(samples, steps, frames)` weights from `build_attention_readout`.
        sample_starts: `(samples,)` first video frame of each sample.
        frame_masks: `(samples, frames)` bool, `False` on padding.
        num_video_frames: Feature positions in the video.
        num_last_steps: Steps averaged (paper: the last 10).

    Returns:
        `(num_video_frames,)` weights: each frame's mean over the last steps,
        averaged over the samples that hold it (0 for a frame in no sample).
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim != 3 or not 1 <= num_last_steps <= attention.shape[1]:
        raise ValueError(
            f"Expected attention (samples, steps, frames) with steps >= num_last_steps="
            f"{num_last_steps}. Received: shape={attention.shape}"
        )
    per_sample = attention[:, -num_last_steps:, :].mean(axis=1)  # (samples, frames)
    totals, counts = np.zeros(num_video_frames), np.zeros(num_video_frames)
    for weights, start, mask in zip(per_sample, sample_starts, frame_masks, strict=True):
        positions = int(start) + np.flatnonzero(mask)  # real frames only
        np.add.at(totals, positions, weights[mask])
        np.add.at(counts, positions, 1)
    return np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)


def video_attention(
    model, features: np.ndarray, num_frames: int = 30, stride: int = 30, readout=None
) -> dict:
    """Runs a trained recogniser on one video's features `(positions, dim)`.

    `readout`: `build_attention_readout(model)`, built here when not given; pass
    it when scoring many videos with one model.

    Returns a dict: `probabilities` `(samples, steps, C)`, `attention`
    `(samples, steps, frames)`, `video_score` `(C,)` (mean over samples of the
    last-10 means) and `frame_weights` `(positions,)` (see `frame_attention`).
    """
    from data.samples import make_samples, sample_starts
    from evaluation.scoring import sample_scores
    from models.recognizer import build_attention_readout

    samples, masks = make_samples(features, num_frames, stride)  # (samples, frames, dim)
    readout = readout or build_attention_readout(model)
    outputs = readout.predict({"features": samples, "frame_mask": masks}, verbose=0)
    probabilities = np.asarray(outputs["probabilities"])  # (samples, steps, C)
    attention = np.asarray(outputs["attention"])  # (samples, steps, frames)
    starts = sample_starts(len(features), num_frames, stride)
    return {
        "probabilities": probabilities,
        "attention": attention,
        "video_score": sample_scores(probabilities).mean(axis=0),  # (C,)
        "frame_weights": frame_attention(attention, starts, masks, len(features)),
    }


# === Fig. 1 ===


def plot_attention(
    frames: np.ndarray,
    stream_weights: dict[str, np.ndarray],
    output_path: str | os.PathLike,
    *,
    num_thumbnails: int = 8,
    title: str | None = None,
) -> list[Path]:
    """Draws the figure (see `draw_attention`) and writes it as `.png` and `.pdf`.

    `output_path` is a path without suffix (a `.png`/`.pdf` suffix is replaced).
    Returns the written paths.
    """
    figure = draw_attention(frames, stream_weights, num_thumbnails=num_thumbnails, title=title)
    return _save(figure, output_path)


def draw_attention(
    frames: np.ndarray,
    stream_weights: dict[str, np.ndarray],
    *,
    num_thumbnails: int = 8,
    title: str | None = None,
):
    """Thumbnails along the timeline with frame numbers, and one bar per frame per stream.

    Args:
        frames: `(frames, height, width, 3)` uint8 RGB video frames.
        stream_weights: `stream name -> (positions,)` weights; position i is drawn
            at frame i.
        num_thumbnails: Frames shown, evenly spaced.

    Returns:
        A matplotlib `Figure`: first the thumbnail axes, then one bar axis per stream.
    """
    if not stream_weights:
        raise ValueError("Expected at least one stream's weights. Received: {}")
    num_frames = len(frames)
    shown = np.unique(np.linspace(0, num_frames - 1, min(num_thumbnails, num_frames)).round())
    figure = plt.figure(figsize=(max(8.0, 1.2 * len(shown)), 1.6 + 1.4 * len(stream_weights)))
    grid = figure.add_gridspec(
        1 + len(stream_weights), len(shown), height_ratios=[1.2] + [1] * len(stream_weights)
    )
    for column, index in enumerate(shown.astype(int)):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(frames[index])
        axis.set_title(f"frame {index}", fontsize=8)
        axis.axis("off")
    for row, (stream, weights) in enumerate(stream_weights.items(), start=1):
        axis = figure.add_subplot(grid[row, :])
        positions = np.arange(len(weights))
        color = STREAM_COLORS.get(stream, "tab:gray")
        axis.bar(positions, weights, width=0.8, color=color, label=stream)
        axis.set_xlim(-0.5, num_frames - 0.5)
        axis.set_ylabel(f"{stream}\nattention", fontsize=8)
        axis.set_xticks(shown)
        axis.tick_params(labelsize=7)
        if row == len(stream_weights):
            axis.set_xlabel("frame")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _save(figure, output_path) -> list[Path]:
    base = Path(output_path)
    base = base.with_suffix("") if base.suffix in (".png", ".pdf") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(base.name + suffix) for suffix in (".png", ".pdf")]
    for path in paths:
        figure.savefig(path, dpi=100)
    plt.close(figure)
    return paths


# === Key frames ===


def read_key_frames(path: str | os.PathLike) -> dict[str, set[int]]:
    """Annotated key frames: `video_id -> {frame indices}`.

    The CSV has a header and either one key frame a row (`video_id,frame_index`;
    `frame` is accepted too) or one range a row (`video_id,start_frame,end_frame`,
    0-based, `end_frame` excluded: the `key_frames.csv` of `data.synthetic`).
    To read another layout, map it to this dict.
    """
    key_frames: dict[str, set[int]] = {}
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        columns = set(reader.fieldnames or ())
        for row in reader:
            frames = key_frames.setdefault(row["video_id"], set())
            if {"start_frame", "end_frame"} <= columns:
                frames.update(range(int(row["start_frame"]), int(row["end_frame"])))
            elif "frame_index" in columns or "frame" in columns:
                frames.add(int(row.get("frame_index") or row["frame"]))
            else:
                raise ValueError(
                    f"{path}: expected columns video_id,frame_index or "
                    f"video_id,start_frame,end_frame. Received: {sorted(columns)}"
                )
    return key_frames


def key_frame_mass(weights: np.ndarray, key_frames: set[int]) -> tuple[float, float]:
    """`(attention mass on the key frames, mass uniform attention would give)`."""
    weights = np.asarray(weights, dtype=np.float64)
    inside = np.zeros(len(weights), dtype=bool)
    inside[[frame for frame in key_frames if 0 <= frame < len(weights)]] = True
    return float(weights[inside].sum() / weights.sum()), float(inside.mean())


def plot_key_frame_mass(
    masses: dict[str, list[tuple[float, float]]], output_path: str | os.PathLike
) -> list[Path]:
    """Per video, attention mass on key frames against uniform attention's, per stream."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    for stream, points in masses.items():
        attention_mass, uniform_mass = np.asarray(points).T
        axis.scatter(
            uniform_mass, attention_mass, s=14, color=STREAM_COLORS.get(stream, "tab:gray"),
            label=f"{stream}: mean {attention_mass.mean():.2f} vs {uniform_mass.mean():.2f}",
        )  # fmt: skip
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="uniform attention")
    axis.set_xlabel("key-frame share of the video (uniform attention)")
    axis.set_ylabel("attention mass on key frames")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, output_path)


# === Command line ===


def load_run(run_dir: str | os.PathLike):
    """`(config, model)` of a run folder (`config.json`, `model.keras`)."""
    import keras

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    return config, keras.saving.load_model(run_dir / "model.keras")


def run_frame_weights(config: dict, model, video_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """`video_id -> (positions,)` frame weights of a run's model (see `video_attention`),
    for videos of the run's feature store; one readout model serves all the videos."""
    from tqdm import tqdm

    from data.feature_store import FeatureStore

    store, train = FeatureStore(config["feature_store"]), config["train"]
    readout = build_attention_readout(model)
    weights = {}
    for video_id in tqdm(video_ids, desc=f"attention {train['stream']}", unit="video"):
        features, _ = store.read(video_id)
        result = video_attention(model, features, train["num_frames"], train["stride"], readout)
        weights[video_id] = result["frame_weights"]
    return weights


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m figures.attention", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run", type=Path, required=True, help="a run folder (any stream)")
    parser.add_argument("--motion-run", type=Path, default=None, help="a second stream's run")
    parser.add_argument("--video-id", default=None, help="video to plot (from the run's store)")
    parser.add_argument("--video", type=Path, default=None, help="its file, for thumbnails")
    parser.add_argument("--key-frames", type=Path, default=None, help="CSV of key frames")
    parser.add_argument("--output", type=Path, default=Path("figures/attention"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    from data.video import read_video

    args = parse_args(argv)
    runs = [load_run(run) for run in [args.run, args.motion_run] if run is not None]
    written = []
    if args.video_id:
        if args.video is None:
            raise ValueError("--video-id needs --video (the file) for the thumbnails.")
        weights = {
            config["train"]["stream"]: run_frame_weights(config, model, [args.video_id])[
                args.video_id
            ]
            for config, model in runs
        }
        frames = read_video(args.video).frames
        written += plot_attention(frames, weights, args.output, title=args.video_id)
    if args.key_frames:
        key_frames = read_key_frames(args.key_frames)
        masses = {}
        for config, model in runs:
            videos = [video_id for video_id, _ in config["test_videos"] if video_id in key_frames]
            weights = run_frame_weights(config, model, videos)
            masses[config["train"]["stream"]] = [
                key_frame_mass(weights[video_id], key_frames[video_id]) for video_id in videos
            ]
        output = args.output.with_name(args.output.name + "_key_frames")
        written += plot_key_frame_mass(masses, output)
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
