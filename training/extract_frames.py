"""Decode each video of a split once into the frame store: one JPEG per frame, random access.

    python -m training.extract_frames --dataset ucf101 \
        --video-root ../shared/data/ucf101_subset/UCF-101 \
        --split-dir ../shared/data/ucf101_subset/ucfTrainTestlist \
        --split 1 --classes BabyCrawling,Punch,PushUps --subset all \
        --output frames/ucf101 --workers 2

Output: `<output>/<video_id>/img_00001.jpg ...` (RGB, resized to 256x340 by default,
JPEG quality 90) and `frames.json`, the marker written last (`data.frame_store`): the
dense_flow / mmaction2 rawframes layout. A re-run skips every complete folder and
writes again one whose writer was stopped (marker "writing") or whose frame files are
not as its marker records (missing, truncated: "damaged"); a folder of frames
without a marker (brought from dense_flow or mmaction2) is read as it is and never
overwritten. One store holds frames of one size: a run of another --height/--width
into a store that has frames is refused before any work. Failures are listed in
`<output>/failures-frames[-shard-i-of-n].jsonl` and leave no frames behind; the exit
status is 1 if any video failed. Ctrl-C stops every worker within seconds (exit status
130); complete folders are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from temporal_attention.data.frame_store import FrameSettings, FrameStore, kind_label
from temporal_attention.data.splits import SUBSETS, SplitSource
from temporal_attention.data.video import VideoError, VideoReader, single_threaded_opencv
from temporal_attention.runtime.atomic_files import check_output_folder
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


@dataclass(frozen=True)
class ExtractFramesConfig:
    """Which videos, at which size and JPEG quality (`FrameSettings`), into which store."""

    source: SplitSource
    output: Path = field(metadata={"help": "frame store root"})
    settings: FrameSettings = FrameSettings()
    subset: str = field(default="all", metadata={"choices": SUBSETS})
    workers: int = field(default_factory=default_workers, metadata={"help": "processes"})
    shard: str | None = field(default=None, metadata={"help": "'i/n', 0-based: this does 1/n"})
    limit: int | None = field(default=None, metadata={"help": "only the first N clips"})

    def __post_init__(self):
        parse_shard(self.shard)
        if self.workers < 1:
            raise ValueError(f"Expected --workers >= 1. Received: workers={self.workers}")


def frames_one_video(video_id: str, video_path: str, output: str, settings: FrameSettings):
    """Decodes one video chunk by chunk into its folder of JPEG frames, then writes its
    marker. Returns a `JobResult` (its message: the bytes written). A video that fails
    (unreadable, truncated: found at the end of the pass) leaves no frames."""
    start = time.perf_counter()
    store = FrameStore(output)
    try:
        reader = VideoReader(video_path, settings.height, settings.width)
        writer = store.frames_writer(video_id, settings)
        try:
            for chunk in reader.chunks():  # (<= 32, height, width, 3) uint8 RGB
                writer.append(chunk)
            marker = writer.finish(
                {
                    "source_file": Path(video_path).name,
                    "fps": reader.fps,
                    "source_size": list(reader.source_size),
                }
            )
        except (VideoError, ValueError, cv2.error, OSError):
            writer.discard()
            raise
    except (VideoError, ValueError, cv2.error, MemoryError) as error:
        return JobResult(video_id, "failed", str(error))
    except OSError as error:
        return JobResult(
            video_id, "failed", f"{store.folder_for(video_id)}: cannot write ({error})."
        )
    seconds = time.perf_counter() - start
    return JobResult(
        video_id, "done", str(marker["bytes"]), frames=reader.num_frames, seconds=seconds
    )


def run(config: ExtractFramesConfig) -> JobReport:
    """Writes the frames of every video of the config's subset not yet complete in the
    store; returns the report (failures, listed in
    `<output>/failures-frames[-shard-i-of-n].jsonl`, include a folder of other settings,
    never overwritten, and listed videos missing on disk)."""
    settings, store = config.settings, FrameStore(config.output)
    shard_index, shard_count = parse_shard(config.shard)
    check_output_folder(config.output, "frame store")
    split = config.source.load(on_missing="skip")
    store.check_holds_only(
        "frames",
        kind_label("frames", (settings.height, settings.width)),
        "use another --output, or the store's --height and --width.",
    )
    clips = shard_items(split.subset(config.subset)[: config.limit], config.shard)
    suffix = "" if shard_count == 1 else f"-shard-{shard_index}-of-{shard_count}"
    tasks, skipped, external, damaged, failures = [], 0, 0, 0, []
    for clip in clips:
        status = store.status(clip.video_id, "frames", asdict(settings))
        damaged += status == "damaged"
        if status == "complete":
            skipped += 1
        elif status == "external":
            external += 1
        elif status == "mismatch":
            failures.append(
                JobResult(
                    clip.video_id,
                    "failed",
                    f"{store.folder_for(clip.video_id)} holds frames of other settings; not "
                    "overwritten. Use another --output or delete that folder.",
                )
            )
        else:  # missing, partial (a stopped writer's), damaged, corrupt marker
            tasks.append((clip.video_id, str(clip.path), str(config.output), settings))
    failures += [
        JobResult(missing.clip.video_id, "failed", f"missing on disk: {missing}")
        for missing in shard_items(split.missing_in(config.subset), config.shard)
    ]
    print(
        f"{len(clips)} clips in shard {shard_index}/{shard_count}: {skipped} already complete, "
        f"{external} external (frames without a marker, kept as they are), {len(tasks)} to "
        f"write ({settings.height}x{settings.width}, JPEG quality {settings.jpeg_quality})"
        + (
            f", {damaged} of them damaged (a frame file not as its marker records)"
            if damaged
            else ""
        )
    )
    report = run_jobs(
        frames_one_video, tasks, config.workers, "frames", initializer=single_threaded_opencv
    )
    report.skipped += skipped + external
    report.failures = failures + report.failures
    log_path = Path(config.output) / f"failures-frames{suffix}.jsonl"
    write_failure_log(log_path, report.failures)
    print(report.summary(log_path))
    written = sum(int(result.message) for result in report.completed)
    if report.frames:
        print(
            f"wrote {written / 2**20:.1f} MiB: {written / report.frames / 1024:.1f} KiB a "
            f"frame, {written / report.done / 2**20:.2f} MiB a video"
        )
    return report


def parse_args(argv: Sequence[str] | None = None) -> ExtractFramesConfig:
    return parse_config(
        ExtractFramesConfig, argv, prog="python -m training.extract_frames", doc=__doc__
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0: all complete, 1: failures, 2: bad input,
    130: interrupted)."""
    return exit_status(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    exit_on_error(main)
