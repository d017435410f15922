"""The images of feature extraction, read and cropped in worker processes, uint8.

`training.extract_features` cuts its videos into `ReadTask`s and maps `read_crops`
over them with `data.process_feed.ordered_map`, so that decoding (or JPEG reading) and
central cropping run in worker processes while the network runs on the previous
batches. Each result holds uint8 crops `(n, input_size, input_size, channels)`: a
quarter of float32's bytes, preprocessed on the device
(`models.image_preprocessing.with_preprocessing`).

    source = ImageSource("frames", "appearance", root="frames/ucf101", input_size=224)
    tasks = plan_tasks(source, [(video_id, path), ...])   # chunks of a frame store video
    for result in ordered_map(functools.partial(read_crops, source), tasks, workers=4):
        result["video_id"], result["images"], result["last"], result["error"]

Where the images come from (`ImageSource.kind`):

- "video": RGB frames decoded from the video file at `height` x `width`
  (`data.video.VideoReader`); one task per video (a video decodes from its start).
- "flow_store": the flow stacks of the `.npz` flow store (`data.flow_store`); one task
  per video.
- "frames": RGB frames (`img_*.jpg`) or flow stacks (`flow_x/flow_y_*.jpg`) of the
  frame store (`data.frame_store`), read at random access: one task per chunk of
  `chunk_images` images, so a long video never sits whole in memory.

Kept free of Keras: the workers import only this module (and NumPy, OpenCV).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from data.crops import center_crop
from data.flow_store import FlowStore
from data.frame_store import FrameStore, FrameStoreError
from data.optical_flow import STACK_LENGTH, flow_stacks
from data.video import VideoReader

IMAGE_KINDS = ("video", "flow_store", "frames")
# Images per task of a frame store video (a multiple of usual batch sizes).
DEFAULT_CHUNK_IMAGES = 64


@dataclass(frozen=True)
class ImageSource:
    """Where a stream's images come from and how they are cropped."""

    # "video", "flow_store" or "frames" (see the module docstring).
    kind: str
    # "appearance" (RGB frames) or "motion" (10-channel flow stacks).
    stream: str
    # The flow store ("flow_store") or frame store ("frames") folder; None for "video".
    root: str | None = None
    # Side of the central square crop.
    input_size: int = 224
    # "video": the decoded frame size.
    height: int = 256
    width: int = 340
    # "frames": images per task.
    chunk_images: int = DEFAULT_CHUNK_IMAGES

    def __post_init__(self):
        if self.kind not in IMAGE_KINDS:
            raise ValueError(f"Expected kind in {IMAGE_KINDS}. Received: kind={self.kind!r}")
        if self.kind == "video" and self.stream != "appearance":
            raise ValueError("Flow stacks come from a flow store or a frame store, not a video.")
        if self.kind != "video" and self.root is None:
            raise ValueError(f"An image source of kind {self.kind!r} needs its root folder.")
        if self.chunk_images < 1:
            raise ValueError(f"Expected chunk_images >= 1. Received: {self.chunk_images}")


@dataclass(frozen=True)
class ReadTask:
    """Images `start .. stop` (stop None: to the end) of one video."""

    video_id: str
    path: str | None = None  # the video file ("video")
    start: int = 0
    stop: int | None = None
    last: bool = True  # the video's last task


def count_images(source: ImageSource, video_id: str) -> int:
    """Frames (appearance) or flow stacks (motion) of a frame store video; 0 when the
    store has none of them (missing, partial, or only the other part)."""
    try:
        video = FrameStore(source.root).video(video_id)
    except FrameStoreError:
        return 0
    return video.num_frames if source.stream == "appearance" else video.num_stacks


def plan_tasks(source: ImageSource, videos: Iterable[tuple[str, str | None]]) -> Iterator[ReadTask]:
    """The tasks of `videos` (`(video_id, video path)` pairs), in order: one per video,
    or, from a frame store, one per chunk of `source.chunk_images` images."""
    for video_id, path in videos:
        if source.kind != "frames":
            yield ReadTask(video_id, None if path is None else str(path))
            continue
        count = count_images(source, video_id)
        starts = range(0, max(count, 1), source.chunk_images)
        for start in starts:
            stop = min(start + source.chunk_images, count)
            yield ReadTask(video_id, None, start, stop, last=start == starts[-1])


def _read_frame_store(source: ImageSource, task: ReadTask) -> np.ndarray:
    video = FrameStore(source.root).video(task.video_id)
    stop = task.stop if task.stop is not None else count_images(source, task.video_id)
    if stop <= task.start:
        part = "frames" if source.stream == "appearance" else "flow stacks"
        raise FrameStoreError(f"{video.folder}: no {part} for {task.video_id}.")
    if source.stream == "appearance":
        frames = video.read_frames(range(task.start, stop))  # (n, H, W, 3)
        return center_crop(frames, source.input_size)
    # Each flow once, cropped, then stacked: stacks start .. stop - 1 need flows
    # start .. stop + 3.
    flows = np.stack(
        [video.read_flow(index) for index in range(task.start, stop + STACK_LENGTH - 1)]
    )
    return flow_stacks(center_crop(flows, source.input_size))  # (n, size, size, 10)


def _chunks(source: ImageSource, task: ReadTask) -> Iterator[np.ndarray]:
    if source.kind == "video":
        return VideoReader(task.path, source.height, source.width).chunks()
    return FlowStore(source.root).iter_stacks(task.video_id)  # (n, H, W, 10) chunks


def read_crops(source: ImageSource, task: ReadTask) -> dict:
    """The central crops of one task's images, or its error (never raised, so that one
    bad video does not stop a job): `{"video_id", "start", "last", "images", "error"}`,
    with `images` uint8 `(n, input_size, input_size, channels)` or None."""
    result = {"video_id": task.video_id, "start": task.start, "last": task.last}
    try:
        if source.kind == "frames":
            images = _read_frame_store(source, task)
        else:
            crops = [
                np.ascontiguousarray(center_crop(chunk, source.input_size))
                for chunk in _chunks(source, task)
            ]
            if not crops:
                raise ValueError(f"{task.video_id}: no images.")
            images = crops[0] if len(crops) == 1 else np.concatenate(crops)
    except Exception as error:  # noqa: BLE001 - reported with the video, the job goes on
        return {**result, "images": None, "error": f"{type(error).__name__}: {error}"}
    return {**result, "images": np.ascontiguousarray(images, dtype=np.uint8), "error": None}
