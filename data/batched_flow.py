"""The flow stage for `tvl1_keras`: the frame pairs of many videos in one batch on the device.

`training.compute_flow` runs OpenCV's methods one video per worker process. `tvl1_keras`
(`data.tvl1`) computes on the Keras backend's device, which one process per video, giving
it one video's pairs at a time, left mostly idle (95 pairs/s on one H200, in batches of 32;
263 here with the same batches, 392 with the defaults, 128 pairs compacted to 16). Here
one process keeps the device busy:

- decoding threads read the videos ahead, chunk by chunk, to grayscale (OpenCV releases
  the interpreter lock while it decodes);
- the main thread fills batches of `batch_pairs` consecutive-frame pairs, videos in
  order (a batch may end one video and begin the next; the last one is padded with its
  last pair), sends it as uint8 and starts it on the device before it fetches the flow
  of the one before, so that the host prepares batch k + 1 while the device computes
  batch k; the flow comes back quantised on the device (`data.tvl1.stage_flow`), uint8;
- writer threads write each video's quantised flow, in order, to the video's
  `.npz` spool or its flow_x/flow_y JPEGs; all of one video's writes go to one thread.

The files are those `compute_flow`'s per-video path writes: the same metadata, the same
atomic writes, a failed video leaves nothing, a killed run resumes. A pair's flow does
not depend on the other pairs of its batch (each stops on its own; `data.tvl1`), so the
flow equals `iter_flow(..., "tvl1_keras")`'s for the same batch shape (tested). Memory holds
a few batches and one chunk per video being decoded, whatever the videos' lengths.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from temporal_attention.data.flow_store import FlowSettings, FlowStore, flow_metadata
from temporal_attention.data.frame_store import FrameStore
from temporal_attention.data.video import VideoError, VideoReader
from temporal_attention.runtime.jobs import JobReport, JobResult

# Writes waiting per writer thread before the main thread waits: bounds the batches held.
_WRITER_QUEUE = 8
# Decoded chunks waiting per video before its decoding thread waits (16 chunks of 32
# frames: 45 MB at 256 x 340), so that the videos after the current one are decoded ahead.
_DECODED_QUEUE = 16
_POLL_SECONDS = 0.1


@dataclass
class _End:
    """The end of a video's frames: its metadata (as the per-video path stores it), or why
    it failed."""

    metadata: dict | None = None
    error: str | None = None


@dataclass
class _Video:
    """One video in flight: where its frames come from and where its flow goes."""

    index: int
    video_id: str
    path: str
    decoded: queue.Queue = field(default_factory=lambda: queue.Queue(_DECODED_QUEUE))
    start: float = field(default_factory=time.perf_counter)
    num_frames: int = 0
    failed: bool = False  # its batch failed on the device: the rest of it is dropped


@dataclass
class _Segment:
    """Consecutive pairs of one video inside a batch (`count` may be 0: an end marker)."""

    video: _Video
    start: int
    count: int
    end: _End | None = None


# === Decoding ===


def _decode(video: _Video, settings: FlowSettings, stop: threading.Event) -> None:
    """Puts the video's grayscale chunks `(n, H, W)` uint8 on `video.decoded`, then an `_End`."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                video.decoded.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    try:
        reader = VideoReader(video.path, settings.height, settings.width)
        for chunk in reader.chunks():  # (n, H, W, 3) uint8 RGB
            gray = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in chunk])
            if not put(gray):
                return
        end = _End(metadata=flow_metadata(video.video_id, video.path, reader, settings))
    except (VideoError, ValueError, cv2.error, MemoryError) as error:
        end = _End(error=str(error))
    except Exception as error:  # noqa: BLE001 - recorded as this video's failure
        end = _End(error=f"{type(error).__name__}: {error}")
    put(end)


# === Writing ===


class _Sink:
    """Where one video's flow goes: a `FlowStore` spool (layout npz) or a flow writer of a
    `FrameStore` (layout frames)."""

    def __init__(self, layout: str, output: str, video_id: str, settings: dict):
        self.layout, self.video_id = layout, video_id
        if layout == "npz":
            self.store = FlowStore(output)
            self.where = self.store.path_for(video_id)
            self.writer = self.store.spool(video_id)
        else:
            self.store = FrameStore(output)
            self.where = self.store.folder_for(video_id)
            self.writer = self.store.flow_writer(video_id, settings)

    def append(self, flow_uint8: np.ndarray) -> None:
        self.writer.append(flow_uint8)

    def finish(self, metadata: dict) -> None:
        if self.layout == "npz":
            try:
                self.store.write(self.video_id, self.writer, metadata)
            finally:
                self.writer.close()
        else:
            self.writer.finish(metadata)

    def discard(self) -> None:
        if self.layout == "npz":
            self.writer.close()
        else:
            self.writer.discard()


class _Writers:
    """Writer threads; the work of one video always goes to the same thread, in order.
    Each video ends with one `JobResult` given to `record` (from a writer thread)."""

    def __init__(self, count: int, layout: str, output: str, settings: dict, record: Callable):
        self.layout, self.output, self.settings, self.record = layout, output, settings, record
        self.queues = [queue.Queue(_WRITER_QUEUE) for _ in range(count)]
        self.sinks: dict[int, _Sink | str] = {}  # video index -> sink, or why it failed
        self.threads = [
            threading.Thread(target=self._serve, args=(work,), daemon=True) for work in self.queues
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, video: _Video, kind: str, payload=None) -> None:
        work = self.queues[video.index % len(self.queues)]
        while True:  # in steps, so that Ctrl-C is seen while the writers are behind
            try:
                return work.put((video, kind, payload), timeout=_POLL_SECONDS)
            except queue.Full:
                continue

    def close(self) -> None:
        for work in self.queues:
            work.put(None)
        for thread in self.threads:
            thread.join()

    def _serve(self, work: queue.Queue) -> None:
        while (item := work.get()) is not None:
            video, kind, payload = item
            try:
                self._do(video, kind, payload)
            except Exception as error:  # noqa: BLE001 - the video fails, the run goes on
                self._fail(video, f"{type(error).__name__}: {error}")

    def _do(self, video: _Video, kind: str, payload) -> None:
        sink = self.sinks.get(video.index)
        if kind == "open":
            try:
                self.sinks[video.index] = _Sink(
                    self.layout, self.output, video.video_id, self.settings
                )
            except OSError as error:
                self.sinks[video.index] = f"{self.output}/{video.video_id}: cannot write ({error})."
            return
        if not isinstance(sink, _Sink):  # failed already (a message): nothing more to write
            if kind == "end":
                self.sinks.pop(video.index, None)
                self.record(JobResult(video.video_id, "failed", payload.error or str(sink)))
            return
        if kind == "flow":
            try:
                sink.append(payload)  # uint8 flow, quantised on the device (stage_flow)
            except OSError as error:
                self._fail(video, f"{sink.where}: cannot write ({error}).")
            return
        end: _End = payload  # kind == "end"
        del self.sinks[video.index]
        if end.error is not None:
            sink.discard()
            self.record(JobResult(video.video_id, "failed", end.error))
            return
        try:
            sink.finish(end.metadata)
        except (OSError, ValueError) as error:
            sink.discard()
            self.record(
                JobResult(video.video_id, "failed", f"{sink.where}: cannot write ({error}).")
            )
            return
        seconds = time.perf_counter() - video.start
        self.record(JobResult(video.video_id, "done", frames=video.num_frames, seconds=seconds))

    def _fail(self, video: _Video, message: str) -> None:
        sink = self.sinks.get(video.index)
        if isinstance(sink, _Sink):
            try:
                sink.discard()
            except OSError:
                pass
        if video.index in self.sinks:
            self.sinks[video.index] = message


# === The device ===


class _Batches:
    """Fills batches of pairs, starts each on the device, hands the flow of the one before
    to the writers."""

    def __init__(
        self,
        batch_pairs: int,
        writers: _Writers,
        on_pairs: Callable[[int], None],
        compact_to: int = 0,
    ):
        self.batch_pairs, self.writers, self.on_pairs = batch_pairs, writers, on_pairs
        self.compact_to = compact_to
        self.first: list[np.ndarray] = []  # (n, H, W) uint8 each
        self.second: list[np.ndarray] = []
        self.segments: list[_Segment] = []
        self.count = 0
        self.in_flight = None  # (device tensor or None, segments)

    def add(self, video: _Video, first: np.ndarray, second: np.ndarray) -> None:
        """Adds a video's consecutive pairs `first[k] -> second[k]`, starting full batches."""
        offset = 0
        while offset < len(first):
            take = min(self.batch_pairs - self.count, len(first) - offset)
            self.first.append(first[offset : offset + take])
            self.second.append(second[offset : offset + take])
            self.segments.append(_Segment(video, self.count, take))
            self.count += take
            offset += take
            if self.count == self.batch_pairs:
                self.launch()

    def end(self, video: _Video, end: _End) -> None:
        """The video's end, handed on after its last pairs."""
        self.segments.append(_Segment(video, self.count, 0, end))

    def launch(self) -> None:
        """Starts the current batch (padded to `batch_pairs`), then hands on the one before."""
        result = None
        if self.count:
            from temporal_attention.data.tvl1 import (
                padded_to,
                tvl1_flow_dispatch,
            )  # Keras: not in OpenCV's workers

            first = padded_to(np.concatenate(self.first), self.batch_pairs)
            second = padded_to(np.concatenate(self.second), self.batch_pairs)
            result = tvl1_flow_dispatch(  # running; uint8 frames in, uint8 flow out
                first, second, compact_to=self.compact_to, quantize=True
            )
        launched = (result, self.segments)
        self.first, self.second, self.segments, self.count = [], [], [], 0
        self.hand_on()
        self.in_flight = launched

    def hand_on(self) -> None:
        """Waits for the batch in flight and gives each video its part of the flow."""
        if self.in_flight is None:
            return
        result, segments = self.in_flight
        self.in_flight = None
        flow, error = None, None
        if result is not None:
            from keras import ops

            try:
                flow = np.asarray(ops.convert_to_numpy(result))  # (batch, H, W, 2) uint8
            except Exception as failure:  # noqa: BLE001 - the batch's videos fail
                error = f"flow on the device failed: {type(failure).__name__}: {failure}"
        for segment in segments:
            if segment.video.failed:
                continue
            if error is not None:
                self.writers.submit(segment.video, "end", _End(error=error))
                segment.video.failed = True
                continue
            if segment.count:
                pairs = flow[segment.start : segment.start + segment.count]
                self.writers.submit(segment.video, "flow", pairs)
                self.on_pairs(segment.count)
            if segment.end is not None:
                self.writers.submit(segment.video, "end", segment.end)

    def flush(self) -> None:
        """Starts what is left and hands on everything."""
        if self.count or self.segments:
            self.launch()
        self.hand_on()


# === The stage ===


def _get(source: queue.Queue):
    while True:  # in steps, so that Ctrl-C is seen while decoding is behind
        try:
            return source.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue


def run_batched(
    tasks: Sequence[tuple],
    layout: str,
    batch_pairs: int,
    decoders: int,
    writers: int,
    description: str = "flow tvl1_keras",
    compact_to: int = 0,
):
    """Computes the flow of `tasks` (compute_flow's: `(video_id, path, output, settings[,
    jpeg_quality])`) in batches of `batch_pairs` pairs across videos, compacted down to
    `compact_to` pairs as pairs converge (`data.tvl1.tvl1_flow`; 0: never); returns a
    `JobReport`.

    Ctrl-C stops the threads within a second and raises `KeyboardInterrupt` again
    (complete files are kept; a video being written is left unfinished, as a kill
    would, and is computed again by the next run)."""
    if batch_pairs < 1 or decoders < 1 or writers < 1:
        raise ValueError(
            "Expected batch_pairs, decoders, writers >= 1. Received: "
            f"{batch_pairs=}, {decoders=}, {writers=}"
        )
    report, lock = JobReport(), threading.Lock()
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=description, unit="video", dynamic_ncols=True)
    pairs_done = [0]

    def record(result) -> None:
        with lock:
            report.add(result)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                pairs_per_s=f"{pairs_done[0] / elapsed:.1f}", failed=len(report.failures)
            )
            bar.update(1)

    def count_pairs(count: int) -> None:
        pairs_done[0] += count

    if not tasks:
        bar.close()
        return report
    settings: FlowSettings = tasks[0][3]
    sink_settings = {**asdict(settings), "jpeg_quality": tasks[0][4]} if layout == "frames" else {}
    stop = threading.Event()
    videos = [_Video(index, video_id, path) for index, (video_id, path, *_rest) in enumerate(tasks)]
    output = tasks[0][2]
    writer_pool = _Writers(writers, layout, output, sink_settings, record)
    batches = _Batches(batch_pairs, writer_pool, count_pairs, compact_to)
    decoding = [0]  # videos handed to decoding threads so far

    def start_decoding(up_to: int) -> None:
        while decoding[0] < min(up_to, len(videos)):
            video = videos[decoding[0]]
            thread = threading.Thread(target=_decode, args=(video, settings, stop), daemon=True)
            thread.start()
            decoding[0] += 1

    threads_before = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallelism comes from the threads here, not from OpenCV's pool
    try:
        for video in videos:
            start_decoding(video.index + decoders)  # this video and the next ones
            video.start = time.perf_counter()
            writer_pool.submit(video, "open")
            previous = None
            while True:
                item = _get(video.decoded)
                if isinstance(item, _End):
                    batches.end(video, item)
                    break
                video.num_frames += len(item)
                frames = item if previous is None else np.concatenate([previous[None], item])
                previous = item[-1]
                if len(frames) >= 2:
                    batches.add(video, frames[:-1], frames[1:])
        batches.flush()
    except BaseException:
        stop.set()
        bar.close()
        raise
    finally:
        cv2.setNumThreads(threads_before)
    writer_pool.close()
    bar.close()
    report.seconds = time.perf_counter() - start
    return report
