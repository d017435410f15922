"""Decode every video of a split once: check it, and index its frame count, fps and size.

    python -m training.decode_videos --dataset ucf101 \
        --video-root ../shared/data/ucf101_subset/UCF-101 \
        --split-dir ../shared/data/ucf101_subset/ucfTrainTestlist \
        --split 1 --classes BabyCrawling,Punch,PushUps --output runs/videos_split1.csv

Run it first on a new dataset: it finds corrupt, truncated, empty and missing videos
(named in the summary and in `<output>.failures.jsonl`) before hours of flow or
feature extraction. Decoded frames are not stored (256x340 RGB for all of UCF101 would
be hundreds of GB); later stages decode again. The CSV (video_id, label, num_frames,
fps, source_height, source_width) is written atomically at the end; the exit status
is 1 if any video failed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporal_attention.data.splits import SUBSETS, SplitSource
from temporal_attention.data.video import VideoError, VideoReader
from temporal_attention.runtime.atomic_files import atomic_write, check_output_folder
from temporal_attention.runtime.batch_jobs import run_jobs
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.jobs import (
    JobReport,
    JobResult,
    default_workers,
    exit_status,
    parse_shard,
    shard_items,
    write_failure_log,
)

COLUMNS = ("video_id", "label", "num_frames", "fps", "source_height", "source_width")


@dataclass(frozen=True)
class DecodeVideosConfig:
    """Which videos to check, and where the index goes."""

    source: SplitSource
    output: Path = field(metadata={"help": "CSV index to write"})
    subset: str = field(default="all", metadata={"choices": SUBSETS})
    workers: int = field(default_factory=default_workers, metadata={"help": "processes"})
    shard: str | None = field(default=None, metadata={"help": "'i/n', 0-based: this does 1/n"})

    def __post_init__(self):
        parse_shard(self.shard)
        if self.workers < 1:
            raise ValueError(f"Expected --workers >= 1. Received: workers={self.workers}")
        if Path(self.output).is_dir():
            raise ValueError(f"--output {self.output} is a folder. Give the CSV file to write.")


def decode_one_video(video_id: str, video_path: str, label: int) -> JobResult:
    """Decodes one video at its stored size; the message holds its CSV row as JSON (a
    video id may hold commas)."""
    try:
        video = VideoReader(video_path, height=None, width=None)
        for _ in video.chunks():  # one chunk in memory at a time, whatever the length
            pass
    except VideoError as error:
        return JobResult(video_id, "failed", str(error))
    height, width = video.source_size
    row = [video_id, label, video.num_frames, f"{video.fps:.3f}", height, width]
    return JobResult(video_id, "done", json.dumps(row), frames=video.num_frames)


def run(config: DecodeVideosConfig) -> JobReport:
    """Decodes every video of the config's subset; writes the CSV index (split order) and
    the failure log; returns the report."""
    check_output_folder(Path(config.output).parent, "folder of the index")
    split = config.source.load(on_missing="skip")
    clips = shard_items(split.subset(config.subset), config.shard)
    tasks = [(clip.video_id, str(clip.path), clip.label) for clip in clips]
    report = run_jobs(decode_one_video, tasks, config.workers, description="decode")
    results = {}  # video_id -> CSV row as JSON, kept in split order below
    report.failures = [
        JobResult(missing.clip.video_id, "failed", f"missing on disk: {missing}")
        for missing in shard_items(split.missing_in(config.subset), config.shard)
    ] + report.failures
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in report.completed:
        results[result.item_id] = result.message
    for clip in clips:
        if clip.video_id in results:
            writer.writerow(json.loads(results[clip.video_id]))
    output = Path(config.output)
    with atomic_write(output) as temp:
        temp.write_text(buffer.getvalue())
    log_path = output.with_name(output.name + ".failures.jsonl")
    write_failure_log(log_path, report.failures)
    print(report.summary(log_path))
    print(f"Index of {len(results)} videos written to {output}")
    return report


def parse_args(argv: Sequence[str] | None = None) -> DecodeVideosConfig:
    return parse_config(
        DecodeVideosConfig, argv, prog="python -m training.decode_videos", doc=__doc__
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0: all decoded, 1: failures, 2: bad input,
    130: interrupted)."""
    return exit_status(
        lambda: run(parse_args(argv)),
        interrupted="no index was written; run the command again",
    )


if __name__ == "__main__":
    exit_on_error(main)
