"""Per-frame attention of a trained run (Fig. 1 of the paper), and its CLI.

A video's features are cut into 30-frame samples; the trained model gives each sample
attention weights `(steps, frames)`. A frame's weight is the mean over the last 10
steps (the steps that are scored, section 3.2), mapped back to the frame's index in
the video (padded frames excluded; with overlapping samples, the mean of its samples).
Within one sample the weights sum to 1, so 1/30 is what a mean-pooling baseline gives.

    python -m evaluation.attention --run runs/ucf101/split1/appearance/attention \
        --motion-run runs/ucf101/split1/motion/attention \
        --video UCF-101/Punch/v_Punch_g01_c01.avi --video-id Punch/v_Punch_g01_c01 \
        --output figures/punch_attention

writes `punch_attention.png` and `.pdf` (one bar row per stream, `figures.attention`).
The thumbnails are the frames of `--video`, which must be the file of `--video-id`
(named after it, with as many frames as its stored features say), or the figure would
draw one clip's attention under another clip's frames.
With `--key-frames key_frames.csv` it also plots, over the run's test videos, the
attention mass on annotated key frames against what uniform attention would give.

Positions: appearance feature i is frame i; motion feature i is the flow stack of
frames i..i+5 and is drawn at frame i (its first frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import keras
import numpy as np
from tqdm import tqdm

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.key_frames import read_key_frames
from temporal_attention.data.optical_flow import STACK_LENGTH
from temporal_attention.data.samples import make_samples, sample_starts
from temporal_attention.data.video import read_video
from temporal_attention.evaluation.scoring import check_trained, sample_scores
from temporal_attention.figures.attention import plot_attention, plot_key_frame_mass
from temporal_attention.models.recognizer import (
    NUM_SCORED_STEPS,
    build_attention_readout,
    last_steps_scores,
)
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.training.runs import Run

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
    per_sample = keras.ops.convert_to_numpy(last_steps_scores(attention, num_last_steps))
    per_sample = np.asarray(per_sample, dtype=np.float64)  # (samples, frames)
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


def run_frame_weights(
    trained: Run, video_ids: Sequence[str], model=None, max_samples: int = 512
) -> dict[str, np.ndarray]:
    """`video_id -> (positions,)` frame weights of a run's model (see `video_attention`),
    for videos of the run's feature store. The samples of many videos go through one
    readout model in one `predict` call, up to `max_samples` samples at a time (memory:
    `max_samples * 30 * dim` floats), so a short video costs no call of its own."""
    if max_samples < 1:
        raise ValueError(f"Expected max_samples >= 1. Received: max_samples={max_samples}")
    record = trained.load_config()
    num_frames, stride = record.train.num_frames, record.train.stride
    model = model if model is not None else trained.load_model()
    store = FeatureStore(record.feature_store)
    readout = build_attention_readout(model)
    weights = {}
    pending: list[tuple[str, int, np.ndarray, np.ndarray]] = []  # id, positions, samples, masks

    def flush():
        samples = np.concatenate([item[2] for item in pending])  # (samples, frames, dim)
        masks = np.concatenate([item[3] for item in pending])  # (samples, frames)
        inputs = {"features": samples, "frame_mask": masks}
        # In one batch: the new readout model is traced once, not once per batch shape.
        outputs = readout.predict(inputs, batch_size=len(samples), verbose=0)
        attention = np.asarray(outputs["attention"])  # (samples, steps, frames)
        first = 0
        for video_id, positions, video_samples, video_masks in pending:
            last = first + len(video_samples)
            starts = sample_starts(positions, num_frames, stride)
            weights[video_id] = frame_attention(
                attention[first:last], starts, video_masks, positions
            )
            first = last
        pending.clear()

    for video_id in tqdm(video_ids, desc=f"attention {record.train.stream}", unit="video"):
        features, _ = store.read(video_id)  # (positions, dim)
        samples, masks = make_samples(features, num_frames, stride)
        if pending and sum(len(item[2]) for item in pending) + len(samples) > max_samples:
            flush()
        pending.append((video_id, len(features), samples, masks))
    if pending:
        flush()
    return {video_id: weights[video_id] for video_id in video_ids}


def key_frame_mass(weights: np.ndarray, key_frames: set[int]) -> tuple[float, float]:
    """`(attention mass on the key frames, mass uniform attention would give)`."""
    weights = np.asarray(weights, dtype=np.float64)
    inside = np.zeros(len(weights), dtype=bool)
    inside[[frame for frame in key_frames if 0 <= frame < len(weights)]] = True
    return float(weights[inside].sum() / weights.sum()), float(inside.mean())


def key_frame_masses(
    weights: dict[str, np.ndarray], key_frames: dict[str, set[int]]
) -> list[tuple[float, float]]:
    """`key_frame_mass` of every video of `weights` (all must have key frames)."""
    return [key_frame_mass(weights[video_id], key_frames[video_id]) for video_id in weights]


# === Stage ===


@dataclass(frozen=True)
class AttentionConfig:
    """Which runs, which video to draw (or which key frames to measure), where to write."""

    run: Path = field(metadata={"help": "a run folder (any stream)"})
    motion_run: Path | None = field(default=None, metadata={"help": "a second stream's run"})
    video_id: str | None = field(default=None, metadata={"help": "video to plot (run's store)"})
    video: Path | None = field(default=None, metadata={"help": "its file, for thumbnails"})
    key_frames: Path | None = field(default=None, metadata={"help": "CSV of key frames"})
    output: Path = Path("figures/attention")

    def __post_init__(self):
        if self.video_id and self.video is None:
            raise ValueError("--video-id needs --video (the file) for the thumbnails.")
        if self.video_id and Path(self.video).stem != PurePosixPath(self.video_id).name:
            raise ValueError(
                f"--video {self.video} is not the file of --video-id {self.video_id} (that "
                f"is named {PurePosixPath(self.video_id).name}.<ext>): the thumbnails would "
                "show another clip. Give the file of the video to draw."
            )


def check_video_frames(trained: Run, video_id: str, video: Path, num_frames: int) -> None:
    """Raises `ValueError` unless the `num_frames` frames of the file `video` are those
    the run's features of `video_id` were made from (appearance: a feature per frame;
    motion: one per stack of `STACK_LENGTH` flows, so `STACK_LENGTH` fewer)."""
    record = trained.load_config()
    store = FeatureStore(record.feature_store)
    positions = int(store.read_metadata(video_id)["num_frames"])
    expected = positions + (STACK_LENGTH if record.train.stream == "motion" else 0)
    if num_frames != expected:
        raise ValueError(
            f"{video} has {num_frames} frames, but the {record.train.stream} features of "
            f"{video_id} ({store.path_for(video_id)}) were made from {expected}: it is not "
            "that video's file. Give the file the features were extracted from."
        )


def run(config: AttentionConfig) -> list[Path]:
    """Draws the Fig. 1 figure and/or the key-frame mass plot; returns the written files."""
    runs = [Run(folder) for folder in (config.run, config.motion_run) if folder is not None]
    streams = [trained.load_config().train.stream for trained in runs]
    for trained in runs:
        check_trained(trained)
    written = []
    if config.video_id:
        frames = read_video(config.video).frames  # the thumbnails: checked before the models
        for trained in runs:
            check_video_frames(trained, config.video_id, config.video, len(frames))
        weights = {
            stream: run_frame_weights(trained, [config.video_id])[config.video_id]
            for stream, trained in zip(streams, runs, strict=True)
        }
        written += plot_attention(frames, weights, config.output, title=config.video_id)
    if config.key_frames:
        key_frames = read_key_frames(config.key_frames)
        masses = {}
        for stream, trained in zip(streams, runs, strict=True):
            tested = trained.load_config().test_videos
            videos = [video for video, _ in tested if video in key_frames]
            masses[stream] = key_frame_masses(run_frame_weights(trained, videos), key_frames)
        output = config.output.with_name(config.output.name + "_key_frames")
        written += plot_key_frame_mass(masses, output)
    for path in written:
        print(f"wrote {path}")
    return written


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return run(
        parse_config(AttentionConfig, argv, prog="python -m evaluation.attention", doc=__doc__)
    )


if __name__ == "__main__":
    exit_on_error(main)
