"""Disk cost and random-access read speed of a frame store, against decoding the video.

    python -m benchmarks.frame_store_benchmark --store frames/ucf101_subset \
        --video-root ../shared/data/ucf101_subset/UCF-101 --reads 300 --video-reads 20

Reads the markers of every video folder whose frames are complete under `--store` (written by
`training.extract_frames`, and `training.compute_flow --layout frames` for flow) and
reports:

- disk: the images' bytes (from the markers) and the space they take on disk (the
  files' allocated blocks) per frame, per video, and scaled to the
  whole of UCF101 (13,320 videos, about 2.5 million frames) at the measured bytes a
  frame;
- `frames/s (store)`: `--reads` random (video, frame) pairs, each one
  `StoredVideo.read_frame`, one JPEG; `flow stacks/s (store)`: as many 10-JPEG stacks,
  where the store holds flow;
- `frames/s (video)`: one frame read without a store: `read_video` of the whole clip
  at the store's size, then one frame of it, on
  `--video-reads` random clips (needs `--video-root`, the clips' folder), and the
  mean absolute difference of the stored frame from the decoded one (JPEG's error).

One process, one thread of OpenCV, the page cache as it is (a first read of a store
from disk is slower than a second one). The report is printed and, with `--output`,
written as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from temporal_attention.data.frame_store import FrameStore
from temporal_attention.data.video import read_video
from temporal_attention.runtime.config_flags import exit_on_error, parse_config

UCF101_VIDEOS = 13_320
UCF101_FRAMES = 2_500_000  # about: 13,320 clips of 186 frames on average


@dataclass(frozen=True)
class FrameStoreBenchmarkConfig:
    """Which store, how many reads of each kind."""

    store: Path = field(metadata={"help": "frame store root"})
    video_root: Path | None = field(default=None, metadata={"help": "the clips' folder"})
    reads: int = field(default=300, metadata={"help": "random reads from the store"})
    video_reads: int = field(default=20, metadata={"help": "clips decoded whole"})
    seed: int = field(default=0, metadata={"help": "seed of the random picks"})
    output: Path | None = field(default=None, metadata={"help": "JSON report to write"})

    def __post_init__(self):
        if self.reads < 1 or self.video_reads < 0:
            raise ValueError(
                f"Expected reads >= 1, video_reads >= 0. Received: {self.reads}, {self.video_reads}"
            )


def _complete_videos(store: FrameStore) -> list[str]:
    """The ids of the video folders whose frames are complete."""
    video_ids = []
    for marker in sorted(store.root.rglob("frames.json")):
        video_id = str(marker.parent.relative_to(store.root))
        if store.status(video_id) == "complete":
            video_ids.append(video_id)
    if not video_ids:
        raise ValueError(
            f"{store.root}: no complete video folder. Run `python -m training.extract_frames` "
            f"with --output {store.root} first."
        )
    return video_ids


def disk_cost(store: FrameStore, video_ids: Sequence[str]) -> dict:
    """Bytes of the frame and flow images and the disk space of the folders."""
    frames = flows = frame_bytes = flow_bytes = 0
    allocated = {"img": 0, "flow": 0}  # blocks on disk of img_*.jpg, flow_*.jpg
    for video_id in video_ids:
        frames_marker = store.marker(video_id, "frames")
        frames += frames_marker["num_frames"]
        frame_bytes += frames_marker["bytes"]
        flow_marker = store.marker(video_id, "flow")
        if flow_marker and flow_marker.get("state") == "complete":
            flows += flow_marker["num_flows"]
            flow_bytes += flow_marker["bytes"]
        for path in store.folder_for(video_id).iterdir():
            kind = path.name.split("_", 1)[0]
            if kind in allocated:
                allocated[kind] += path.stat().st_blocks * 512
    report = {
        "videos": len(video_ids),
        "frames": frames,
        "frame_bytes": frame_bytes,
        "bytes_per_frame": frame_bytes / frames,
        "bytes_per_video": frame_bytes / len(video_ids),
        "allocated_bytes_per_frame": allocated["img"] / frames,
        "ucf101_frame_bytes": frame_bytes / frames * UCF101_FRAMES,
    }
    if flows:
        report |= {
            "flows": flows,
            "flow_bytes": flow_bytes,
            "flow_bytes_per_flow": flow_bytes / flows,
            "allocated_bytes_per_flow": allocated["flow"] / flows,
            "ucf101_flow_bytes": flow_bytes / flows * (UCF101_FRAMES - UCF101_VIDEOS),
        }
    return report


def read_speed(config: FrameStoreBenchmarkConfig, store: FrameStore, video_ids) -> dict:
    """Frames (and flow stacks) a second, read at random from the store and, for
    comparison, by decoding the whole clip for one frame."""
    rng = np.random.default_rng(config.seed)
    videos = [store.video(video_id) for video_id in video_ids]
    picks = rng.integers(0, len(videos), size=config.reads)
    start = time.perf_counter()
    for pick in picks:
        videos[pick].read_frame(rng.integers(0, videos[pick].num_frames))
    report = {"frames_per_s_store": config.reads / (time.perf_counter() - start)}
    with_flow = [video for video in videos if video.num_stacks]
    if with_flow:
        picks = rng.integers(0, len(with_flow), size=config.reads)
        start = time.perf_counter()
        for pick in picks:
            with_flow[pick].read_flow_stack(rng.integers(0, with_flow[pick].num_stacks))
        report["flow_stacks_per_s_store"] = config.reads / (time.perf_counter() - start)
    if config.video_root is not None and config.video_reads:
        picks = rng.integers(0, len(videos), size=config.video_reads)
        seconds, errors = 0.0, []
        for pick in picks:
            marker = videos[pick].frames_marker
            path = Path(config.video_root) / Path(video_ids[pick]).parent / marker["source_file"]
            start = time.perf_counter()
            frames = read_video(path, marker["height"], marker["width"]).frames
            index = rng.integers(0, len(frames))
            frame = frames[index]
            seconds += time.perf_counter() - start
            errors.append(np.abs(videos[pick].read_frame(index).astype(int) - frame).mean())
        report["frames_per_s_video"] = config.video_reads / seconds
        report["mean_abs_error_vs_video"] = float(np.mean(errors))  # JPEG's, grey levels
    return report


def run(config: FrameStoreBenchmarkConfig) -> dict:
    """Measures the store; prints the report (and writes it with `--output`)."""
    cv2.setNumThreads(1)
    store = FrameStore(config.store)
    video_ids = _complete_videos(store)
    report = {**disk_cost(store, video_ids), **read_speed(config, store, video_ids)}
    mebibyte, gibibyte = 2**20, 2**30
    lines = [
        f"{report['videos']} videos, {report['frames']} frames in {config.store}",
        f"frames: {report['bytes_per_frame'] / 1024:.1f} KiB a frame, "
        f"{report['bytes_per_video'] / mebibyte:.2f} MiB a video; on disk (blocks) "
        f"{report['allocated_bytes_per_frame'] / 1024:.1f} KiB a frame",
        f"UCF101 ({UCF101_FRAMES:,} frames): {report['ucf101_frame_bytes'] / gibibyte:.1f} GiB "
        "of frames",
    ]
    if "flows" in report:
        lines.append(
            f"flow: {report['flows']} fields, {report['flow_bytes_per_flow'] / 1024:.1f} KiB a "
            f"field (x and y; on disk {report['allocated_bytes_per_flow'] / 1024:.1f} KiB); "
            f"UCF101: {report['ucf101_flow_bytes'] / gibibyte:.1f} GiB of flow"
        )
    lines.append(f"random frames/s, store: {report['frames_per_s_store']:.0f}")
    if "flow_stacks_per_s_store" in report:
        lines.append(f"random flow stacks/s, store: {report['flow_stacks_per_s_store']:.0f}")
    if "frames_per_s_video" in report:
        lines.append(
            f"random frames/s, decoding the whole clip (no store): "
            f"{report['frames_per_s_video']:.2f}; stored frames differ from the decoded ones "
            f"by {report['mean_abs_error_vs_video']:.2f} grey levels on average (JPEG)"
        )
    print("\n".join(lines))
    if config.output is not None:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        Path(config.output).write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    return run(
        parse_config(
            FrameStoreBenchmarkConfig,
            argv,
            prog="python -m benchmarks.frame_store_benchmark",
            doc=__doc__,
        )
    )


if __name__ == "__main__":
    exit_on_error(main)
