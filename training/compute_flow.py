"""Decode the videos of a split and store their optical flow, one `.npz` per video.

    python -m training.compute_flow --dataset ucf101 \
        --video-root ../shared/data/ucf101_subset/UCF-101 \
        --split-dir ../shared/data/ucf101_subset/ucfTrainTestlist \
        --split 1 --classes BabyCrawling,Punch,PushUps --subset all \
        --output runs/flow_tvl1 --method tvl1 --workers 2 --shard 0/1

`--method auto` (the default) is `tvl1_keras` (this project's TV-L1 in keras.ops) where the
Keras backend sees a GPU and the solver's self-check on a known flow passes there
(`data.tvl1.self_check`, at the batch's shape), and OpenCV's `tvl1` elsewhere; the method
used is printed and stored with every file. OpenCV's methods run one video per worker
process; `tvl1_keras` runs in this process, `--batch-pairs` pairs of consecutive frames at
a time across videos, compacted down to `--compact-to` pairs as pairs converge (the same
flow), with `--workers` decoding threads (`data.batched_flow`).

Output: `<output>/<video_id>.npz` holding `flow` `(frames - 1, 256, 340, 2)` uint8
(bound 20) and JSON metadata; with `--layout frames`, the same quantised flow as
`<output>/<video_id>/flow_x_00001.jpg`, `flow_y_00001.jpg` ... (grayscale JPEG,
`--jpeg-quality`, dense_flow's 95 by default) and `flow.json`, into a frame store
(`data.frame_store`, the folders `training.extract_frames` writes). Decoding happens
here, chunk by chunk (`training.extract_frames` stores the decoded frames, if wanted),
and memory holds one chunk of frames and flow, whatever a video's length.
A re-run skips every complete file; a killed run resumes to identical files (atomic
writes, deterministic single-threaded OpenCV); with `--layout frames` a video whose flow
images are not as its marker records ("damaged") is computed again. One store holds
flow of one method and size: a run of another (the method "auto" resolves to) into a
store that has flow is refused before any flow is computed. Failures are listed in
`<output>/failures[-shard-i-of-n].jsonl` (`failures-flow...` with `--layout frames`);
the exit status is 1 if any video failed.
Ctrl-C stops every worker within seconds (exit status 130); complete files are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2

from temporal_attention.data.batched_flow import run_batched
from temporal_attention.data.flow_store import FlowSettings, FlowStore, flow_metadata
from temporal_attention.data.frame_store import (
    DEFAULT_FLOW_JPEG_QUALITY,
    FrameStore,
    check_jpeg_quality,
)
from temporal_attention.data.optical_flow import iter_flow
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

LAYOUTS = ("npz", "frames")
# tvl1_keras: decoding and writing threads at most (more leave the device no faster).
MAX_DECODERS, MAX_WRITERS = 8, 8


@dataclass(frozen=True)
class ComputeFlowConfig:
    """Which videos, how (`FlowSettings`), into which flow store, with how many workers."""

    source: SplitSource
    output: Path = field(metadata={"help": "flow store root"})
    settings: FlowSettings = FlowSettings()  # method "auto": see the module's docstring
    subset: str = field(default="all", metadata={"choices": SUBSETS})
    workers: int = field(default_factory=default_workers, metadata={"help": "processes"})
    shard: str | None = field(default=None, metadata={"help": "'i/n', 0-based: this does 1/n"})
    limit: int | None = field(default=None, metadata={"help": "only the first N clips"})
    # npz: a flow store (`data.flow_store`); frames: flow_x/flow_y JPEGs in a frame store.
    layout: str = field(default="npz", metadata={"choices": LAYOUTS})
    # JPEG quality of the flow images of layout "frames" (dense_flow's: 95).
    jpeg_quality: int = field(
        default=DEFAULT_FLOW_JPEG_QUALITY, metadata={"help": "--layout frames only"}
    )
    # tvl1_keras: frame pairs per batch on the device (one compiled shape; the last batch
    # is padded), and compaction: as pairs converge, the ones still iterating are gathered
    # into batches of half the size, down to `compact_to` pairs (0: never; the same flow,
    # less work, a longer compilation). On one H200, 96 clips at 256 x 340, end to end:
    # 392 pairs/s with the defaults (128, 16), 398 with 256 and 16, 249 with 32 and none
    # (docs/data_pipeline.md); 256 pairs take about 1.5x the device memory of 128.
    batch_pairs: int = field(default=128, metadata={"help": "tvl1_keras only"})
    compact_to: int = field(default=16, metadata={"help": "tvl1_keras only"})

    def __post_init__(self):
        parse_shard(self.shard)
        if self.workers < 1:
            raise ValueError(f"Expected --workers >= 1. Received: workers={self.workers}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"Expected layout in {LAYOUTS}. Received: layout={self.layout!r}")
        check_jpeg_quality(self.jpeg_quality)
        if self.batch_pairs < 1:
            raise ValueError(f"Expected --batch-pairs >= 1. Received: {self.batch_pairs}")
        if self.compact_to < 0:
            raise ValueError(f"Expected --compact-to >= 0. Received: {self.compact_to}")

    def frame_store_settings(self) -> dict:
        """The settings a frame store's `flow.json` records: the flow's and the quality."""
        return {**asdict(self.settings), "jpeg_quality": self.jpeg_quality}


def flow_one_video(video_id: str, video_path: str, output: str, settings: FlowSettings):
    """Decodes one video chunk by chunk, computes its flow, stores it. Returns a `JobResult`.

    Memory holds one chunk of frames and of flow, whatever the video's length: the flow
    waits in a temporary file (`FlowStore.spool`) until the video is decoded and
    checked, then is written as one `.npz` (the file `compute_flow` of all frames gives).
    """
    start = time.perf_counter()
    store = FlowStore(output)
    try:
        reader = VideoReader(video_path, settings.height, settings.width)
        with store.spool(video_id) as flow:
            try:
                for chunk in iter_flow(reader.chunks(), settings.method):  # (n, H, W, 2)
                    flow.append(chunk)
            except ValueError:
                if reader.num_frames is None:  # not "fewer than 2 frames": the video failed
                    raise
            metadata = flow_metadata(video_id, video_path, reader, settings)
            try:
                store.write(video_id, flow, metadata)
            except OSError as error:
                return JobResult(
                    video_id, "failed", f"{store.path_for(video_id)}: cannot write ({error})."
                )
    except (VideoError, ValueError, cv2.error, MemoryError) as error:
        return JobResult(video_id, "failed", str(error))
    seconds = time.perf_counter() - start
    return JobResult(video_id, "done", frames=reader.num_frames, seconds=seconds)


def flow_one_video_to_frames(
    video_id: str, video_path: str, output: str, settings: FlowSettings, jpeg_quality: int
):
    """`flow_one_video` into a frame store: the same quantised flow, as flow_x/flow_y
    JPEGs written as they are computed, then `flow.json`. A video that fails leaves no
    flow images."""
    start = time.perf_counter()
    store = FrameStore(output)
    try:
        reader = VideoReader(video_path, settings.height, settings.width)
        writer = store.flow_writer(video_id, {**asdict(settings), "jpeg_quality": jpeg_quality})
        try:
            try:
                for chunk in iter_flow(reader.chunks(), settings.method):  # (n, H, W, 2)
                    writer.append(chunk)
            except ValueError:
                if reader.num_frames is None:  # not "fewer than 2 frames": the video failed
                    raise
            writer.finish(flow_metadata(video_id, video_path, reader, settings))
        except (ValueError, cv2.error, OSError):
            writer.discard()
            raise
    except (VideoError, ValueError, cv2.error, MemoryError) as error:
        return JobResult(video_id, "failed", str(error))
    except OSError as error:
        folder = store.folder_for(video_id)
        return JobResult(video_id, "failed", f"{folder}: cannot write ({error}).")
    seconds = time.perf_counter() - start
    return JobResult(video_id, "done", frames=reader.num_frames, seconds=seconds)


def _status(config: ComputeFlowConfig, video_id: str) -> tuple[str, Path]:
    """The video's flow status in the config's store and layout, and where it is."""
    if config.layout == "frames":
        store = FrameStore(config.output)
        status = store.status(video_id, "flow", config.frame_store_settings())
        return status, store.folder_for(video_id)
    store = FlowStore(config.output)
    return store.status(video_id, config.settings), store.path_for(video_id)


def check_one_kind(config: ComputeFlowConfig) -> None:
    """Raises `ValueError` when the config's store holds flow of another method or size
    than the config's (resolved) settings make."""
    remedy = "use another --output, or the store's --method, --height and --width."
    if config.layout == "frames":
        FrameStore(config.output).check_holds_only("flow", config.settings.kind, remedy)
    else:
        FlowStore(config.output).check_holds_only(config.settings.kind, remedy)


def resolve_settings(config: ComputeFlowConfig) -> tuple[ComputeFlowConfig, str]:
    """`config` with method "auto" made one (see the module's docstring), and a line
    saying what was chosen and why (empty if nothing was)."""
    settings, note = config.settings, ""
    if settings.method == "auto":
        from temporal_attention.runtime.devices import gpu_visible

        if not gpu_visible():
            note = "method auto: tvl1 (OpenCV DualTVL1; the Keras backend sees no GPU)"
            settings = settings.resolve(on_gpu=False)
        else:
            from temporal_attention.data.tvl1 import SELF_CHECK_MAX_EPE, self_check

            error, passed = self_check(
                config.batch_pairs, settings.height, settings.width, compact_to=config.compact_to
            )
            settings = settings.resolve(on_gpu=passed)
            note = (
                f"method auto: {settings.method} (a GPU; tvl1_keras's self-check on a known "
                f"flow: {error:.3f} px end-point error, bound {SELF_CHECK_MAX_EPE}"
                + (")" if passed else ": failed, so OpenCV's tvl1 is used)")
            )
    return replace(config, settings=settings), note


def run(config: ComputeFlowConfig) -> JobReport:
    """Computes the flow of every video not yet complete in the store; returns the report
    (failures, listed in `<output>/failures[-shard-i-of-n].jsonl`, include a file of
    other settings, never overwritten, and listed videos missing on disk)."""
    shard_index, shard_count = parse_shard(config.shard)
    check_output_folder(config.output, "flow store" if config.layout == "npz" else "frame store")
    split = config.source.load(on_missing="skip")
    # After the checks of the inputs: on a GPU, "auto" compiles the solver for its check.
    config, note = resolve_settings(config)
    if note:
        print(note)
    settings = config.settings
    check_one_kind(config)
    clips = shard_items(split.subset(config.subset)[: config.limit], config.shard)
    # A frame store holds the frames' log too (failures-frames.jsonl): this one is the flow's.
    log_stem = "failures" if config.layout == "npz" else "failures-flow"
    log_name = (
        f"{log_stem}.jsonl"
        if shard_count == 1
        else (f"{log_stem}-shard-{shard_index}-of-{shard_count}.jsonl")
    )
    tasks, skipped, external, failures = [], 0, 0, []
    for clip in clips:
        status, where = _status(config, clip.video_id)
        if status == "complete":
            skipped += 1
        elif status == "external":  # flow images without a marker: dense_flow's, kept
            external += 1
        elif status == "mismatch":
            failures.append(
                JobResult(
                    clip.video_id,
                    "failed",
                    f"{where} exists with other flow settings; not "
                    "overwritten. Use another --output or delete it.",
                )
            )
        else:
            task = (clip.video_id, str(clip.path), str(config.output), settings)
            tasks.append(task if config.layout == "npz" else (*task, config.jpeg_quality))
    failures += [
        JobResult(missing.clip.video_id, "failed", f"missing on disk: {missing}")
        for missing in shard_items(split.missing_in(config.subset), config.shard)
    ]
    print(
        f"{len(clips)} clips in shard {shard_index}/{shard_count}: {skipped} already complete, "
        + (f"{external} external (kept as they are), " if external else "")
        + f"{len(tasks)} to compute ({settings.method}, {settings.height}x{settings.width})"
    )
    if settings.method == "tvl1_keras":  # one process, batches across videos
        report = run_batched(
            tasks,
            config.layout,
            config.batch_pairs,
            decoders=min(config.workers, MAX_DECODERS),
            writers=min(config.workers, MAX_WRITERS),
            compact_to=config.compact_to,
        )
    else:
        report = run_jobs(
            flow_one_video if config.layout == "npz" else flow_one_video_to_frames,
            tasks,
            config.workers,
            description=f"flow {settings.method}",
            initializer=single_threaded_opencv,
        )
    report.skipped += skipped + external
    report.failures = failures + report.failures
    log_path = Path(config.output) / log_name
    write_failure_log(log_path, report.failures)
    print(report.summary(log_path))
    return report


def parse_args(argv: Sequence[str] | None = None) -> ComputeFlowConfig:
    return parse_config(
        ComputeFlowConfig, argv, prog="python -m training.compute_flow", doc=__doc__
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0: all complete, 1: failures, 2: bad input,
    130: interrupted)."""
    return exit_status(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    exit_on_error(main)
