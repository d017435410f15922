"""Decode the videos of a split and store their optical flow, one `.npz` per video.

    python -m training.compute_flow --dataset ucf101 \
        --video-root ../shared/data/ucf101_subset/UCF-101 \
        --split-dir ../shared/data/ucf101_subset/ucfTrainTestlist \
        --split 1 --classes BabyCrawling,Punch,PushUps --subset all \
        --output runs/flow_tvl1 --method tvl1 --workers 2 --shard 0/1

Output: `<output>/<video_id>.npz` holding `flow` `(frames - 1, 256, 340, 2)` uint8
(bound 20) and JSON metadata. Decoding happens here, in memory: decoded frames are not
stored (the feature extractor decodes again; decoding costs far less than flow).
A re-run skips every complete file; a killed run resumes to identical files (atomic
writes, deterministic single-threaded OpenCV). Failures are listed in
`<output>/failures[-shard-i-of-n].jsonl`; the exit status is 1 if any video failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from data.batch_jobs import (
    JobResult,
    default_workers,
    parse_shard,
    run_jobs,
    shard_items,
    write_failure_log,
)
from data.npz_files import read_npz_metadata
from data.optical_flow import FLOW_BOUND, FLOW_METHODS, STACK_LENGTH, compute_flow, save_flow
from data.splits import add_split_arguments, load_split
from data.video import FRAME_HEIGHT, FRAME_WIDTH, VideoError, read_video


@dataclass(frozen=True)
class FlowSettings:
    """How flow is computed; stored in each file's metadata and checked on re-runs."""

    method: str = "tvl1"  # "tvl1" (the paper's lineage), "farneback" or "dis"
    height: int = FRAME_HEIGHT  # frames are resized to height x width before flow
    width: int = FRAME_WIDTH
    bound: float = FLOW_BOUND  # values clipped to [-bound, bound], stored as uint8

    def __post_init__(self):
        if self.method not in FLOW_METHODS:
            raise ValueError(f"Expected method in {FLOW_METHODS}. Received: method={self.method!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(
                f"Expected height, width >= 8. Received: height={self.height}, width={self.width}"
            )


def flow_path(output: Path, video_id: str) -> Path:
    """Where the flow of `video_id` is stored: `<output>/<video_id>.npz`."""
    return output / f"{video_id}.npz"


def flow_status(path: Path, settings: FlowSettings) -> str:
    """ "missing", "complete", "corrupt" (unreadable: recompute) or "mismatch" (other
    settings: never overwritten)."""
    if not path.exists():
        return "missing"
    try:
        metadata = read_npz_metadata(path) or {}
    except (OSError, ValueError):
        return "corrupt"
    stored = {key: metadata.get(key) for key in asdict(settings)}
    return "complete" if stored == asdict(settings) else "mismatch"


def _single_thread_opencv() -> None:
    """Parallelism comes from processes; one OpenCV thread each keeps results reproducible."""
    cv2.setNumThreads(1)


def flow_one_video(video_id: str, video_path: str, output_path: str, settings: FlowSettings):
    """Decodes one video, computes its flow, stores it. Returns a `JobResult`."""
    start = time.perf_counter()
    try:
        video = read_video(video_path, settings.height, settings.width)
        if video.num_frames < STACK_LENGTH + 1:
            raise ValueError(
                f"{video_path}: too short for one flow stack: {video.num_frames} frame(s), "
                f"a stack needs {STACK_LENGTH + 1}. Drop this video from the split."
            )
        flow = compute_flow(video.frames, settings.method)  # (frames - 1, H, W, 2)
    except (VideoError, ValueError, cv2.error, MemoryError) as error:
        return JobResult(video_id, "failed", str(error))
    metadata = {
        **asdict(settings),
        "video_id": video_id,
        "source_file": Path(video_path).name,
        "num_frames": video.num_frames,
        "fps": video.fps,
        "source_size": list(video.source_size),
    }
    try:
        save_flow(output_path, flow, metadata)
    except OSError as error:
        return JobResult(video_id, "failed", f"{output_path}: cannot write ({error}).")
    return JobResult(video_id, "done", frames=video.num_frames, seconds=time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.compute_flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_split_arguments(parser)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--method", choices=FLOW_METHODS, default=FlowSettings.method)
    parser.add_argument("--height", type=int, default=FlowSettings.height)
    parser.add_argument("--width", type=int, default=FlowSettings.width)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--shard", default=None, help="'i/n', 0-based: this process does 1/n")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0: all complete, 1: failures, 2: bad input)."""
    args = build_parser().parse_args(argv)
    try:
        settings = FlowSettings(args.method, args.height, args.width)
        shard_index, shard_count = parse_shard(args.shard)
        split = load_split(
            args.dataset,
            args.video_root,
            args.split_dir,
            args.split,
            args.classes,
            on_missing="skip",
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clips = shard_items(split.subset(args.subset)[: args.limit], args.shard)
    log_name = (
        "failures.jsonl"
        if shard_count == 1
        else (f"failures-shard-{shard_index}-of-{shard_count}.jsonl")
    )
    tasks, skipped, failures = [], 0, []
    for clip in clips:
        path = flow_path(args.output, clip.video_id)
        status = flow_status(path, settings)
        if status == "complete":
            skipped += 1
        elif status == "mismatch":
            failures.append(
                JobResult(
                    clip.video_id,
                    "failed",
                    f"{path} exists with other flow settings; not overwritten. "
                    "Use another --output or delete it.",
                )
            )
        else:
            tasks.append((clip.video_id, str(clip.path), str(path), settings))
    failures += [
        JobResult(missing.clip.video_id, "failed", f"missing on disk: {missing}")
        for missing in shard_items(split.missing_in(args.subset), args.shard)
    ]
    print(
        f"{len(clips)} clips in shard {shard_index}/{shard_count}: {skipped} already complete, "
        f"{len(tasks)} to compute ({settings.method}, {settings.height}x{settings.width})"
    )
    report = run_jobs(
        flow_one_video,
        tasks,
        args.workers,
        description=f"flow {settings.method}",
        initializer=_single_thread_opencv,
    )
    report.skipped += skipped
    report.failures = failures + report.failures
    log_path = args.output / log_name
    write_failure_log(log_path, report.failures)
    print(report.summary(log_path))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
