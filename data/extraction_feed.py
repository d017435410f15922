"""The images of feature extraction, read and cropped in worker processes, uint8.

`training.extract_features` cuts its videos into `ReadTask`s and maps `read_crops`
over them with `runtime.process_feed.ordered_map`, so that decoding (or JPEG reading) and
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
  (`data.video.VideoReader`);
- "flow_store": the flow stacks of the `.npz` flow store (`data.flow_store`);
- "frames": RGB frames (`img_*.jpg`) or flow stacks (`flow_x/flow_y_*.jpg`) of the
  frame store (`data.frame_store`), read at random access.

A video is cut into tasks of `chunk_images` images (default: 24 MiB of crops, 167 RGB
frames or 50 flow stacks at 224x224), so that a long video never sits whole in
memory. A frame store task reads only its images. A video file or an `.npz` flow file
can only be read from its start: task k decodes (or inflates) the images before its
own and drops them, so a video of K tasks costs about (K + 1) / 2 times its decoding
(nothing more for a video of one task: most of UCF101's RGB videos). The counts come
from the container's stated frame count and the flow file's metadata; the last task
reads to the real end and checks the video as `VideoReader` does, so a video with more
or fewer frames than stated gives all its frames, or fails, as read in one pass.
A stored image (of a frame store or a flow store) must be of the source's `height` x
`width` where they are given: the images read are checked (their array's shape, no
second decoding), and a video of another size fails, named, rather than giving
features recorded at a size they were not made at.

Kept free of Keras: the workers import only this module (and NumPy, OpenCV).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from temporal_attention.data.crops import CROP_SIZE, center_crop
from temporal_attention.data.flow_store import FlowStore
from temporal_attention.data.frame_store import FrameStore, FrameStoreError
from temporal_attention.data.npz_files import read_npz_metadata
from temporal_attention.data.optical_flow import STACK_LENGTH, flow_stacks
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH, VideoReader

IMAGE_KINDS = ("video", "flow_store", "frames")
# Bytes of uint8 crops per task: 167 RGB crops or 50 flow stacks at 224x224. With
# `ordered_map`'s 2 tasks in flight per worker, 15 workers hold about 0.7 GiB.
TASK_BYTES = 24 << 20


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
    input_size: int = CROP_SIZE
    # "video": the decoded frame size (None: 256x340); "flow_store" and "frames": the
    # size every stored image must have (None: not checked).
    height: int | None = None
    width: int | None = None
    # Images per task; None: as many as fit in `TASK_BYTES`.
    chunk_images: int | None = None

    def __post_init__(self):
        if self.kind not in IMAGE_KINDS:
            raise ValueError(f"Expected kind in {IMAGE_KINDS}. Received: kind={self.kind!r}")
        if self.kind == "video" and self.stream != "appearance":
            raise ValueError("Flow stacks come from a flow store or a frame store, not a video.")
        if self.kind != "video" and self.root is None:
            raise ValueError(f"An image source of kind {self.kind!r} needs its root folder.")
        if self.kind == "video":
            object.__setattr__(self, "height", self.height or FRAME_HEIGHT)
            object.__setattr__(self, "width", self.width or FRAME_WIDTH)
        if self.chunk_images is None:
            channels = 3 if self.stream == "appearance" else 2 * STACK_LENGTH
            per_image = self.input_size * self.input_size * channels
            object.__setattr__(self, "chunk_images", max(TASK_BYTES // per_image, 1))
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


def count_images(source: ImageSource, video_id: str, path: str | None = None) -> int:
    """Frames (appearance) or flow stacks (motion) of one video, as stated: from the frame
    store's markers, the video container's frame count or the flow file's metadata; 0
    when there are none or the count cannot be read."""
    if source.kind == "video":
        capture = cv2.VideoCapture(str(path))
        try:
            return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        finally:
            capture.release()
    if source.kind == "flow_store":
        try:
            metadata = read_npz_metadata(FlowStore(source.root).path_for(video_id)) or {}
        except (OSError, ValueError):
            return 0
        return max(int(metadata.get("num_frames", 0)) - STACK_LENGTH, 0)  # flows - 4
    try:
        video = FrameStore(source.root).video(video_id)
    except FrameStoreError:
        return 0
    return video.num_frames if source.stream == "appearance" else video.num_stacks


def plan_tasks(source: ImageSource, videos: Iterable[tuple[str, str | None]]) -> Iterator[ReadTask]:
    """The tasks of `videos` (`(video_id, video path)` pairs), in order: one per chunk of
    `source.chunk_images` images (at least one per video; a video file's or flow file's
    last task has `stop` None: it reads to the end)."""
    for video_id, path in videos:
        count = count_images(source, video_id, path)
        path = None if path is None else str(path)
        starts = range(0, max(count, 1), source.chunk_images)
        for start in starts:
            last = start == starts[-1]
            stop = min(start + source.chunk_images, count)
            if last and source.kind != "frames":
                stop = None
            yield ReadTask(video_id, path, start, stop, last=last)


def _check_size(source: ImageSource, images: np.ndarray, task: ReadTask) -> None:
    """Raises `ValueError` when stored `images` `(n, H, W, channels)` are not of the
    source's size (where it is given)."""
    expected = (source.height, source.width)
    if source.height is None or source.width is None or images.shape[1:3] == expected:
        return
    where = source.root if source.kind == "frames" else f"{source.root}/{task.video_id}.npz"
    raise ValueError(
        f"{where}: the images of {task.video_id} are {images.shape[1]}x{images.shape[2]}, "
        f"the other videos' {expected[0]}x{expected[1]}: one store holds images of one "
        "size. Write this video's images again at that size."
    )


def _read_frame_store(source: ImageSource, task: ReadTask) -> np.ndarray:
    video = FrameStore(source.root).video(task.video_id)
    stop = task.stop if task.stop is not None else count_images(source, task.video_id)
    if stop <= task.start:
        part = "frames" if source.stream == "appearance" else "flow stacks"
        raise FrameStoreError(f"{video.folder}: no {part} for {task.video_id}.")
    if source.stream == "appearance":
        frames = video.read_frames(range(task.start, stop))  # (n, H, W, 3)
        _check_size(source, frames, task)
        return center_crop(frames, source.input_size)
    # Each flow once, cropped, then stacked: stacks start .. stop - 1 need flows
    # start .. stop + 3.
    flows = np.stack(
        [video.read_flow(index) for index in range(task.start, stop + STACK_LENGTH - 1)]
    )
    _check_size(source, flows, task)
    return flow_stacks(center_crop(flows, source.input_size))  # (n, size, size, 10)


def _chunks(source: ImageSource, task: ReadTask) -> Iterator[np.ndarray]:
    if source.kind == "video":
        return VideoReader(task.path, source.height, source.width).chunks()
    return FlowStore(source.root).iter_stacks(task.video_id)  # (n, H, W, 10) chunks


def _read_sequential(source: ImageSource, task: ReadTask) -> list[np.ndarray]:
    """The crops of images `start .. stop` of a file read from its start: the images
    before `start` are read and dropped; a task with `stop` None reads to the end (and
    so runs the reader's checks of the whole file)."""
    crops, position = [], 0
    chunks = _chunks(source, task)
    try:
        for chunk in chunks:  # (n, H, W, channels)
            if source.kind == "flow_store":
                _check_size(source, chunk, task)
            begin, end = position, position + len(chunk)
            position = end
            if end <= task.start:
                continue
            if task.stop is not None and begin >= task.stop:
                break
            low = max(task.start - begin, 0)
            high = len(chunk) if task.stop is None else min(task.stop - begin, len(chunk))
            crops.append(np.ascontiguousarray(center_crop(chunk[low:high], source.input_size)))
            if task.stop is not None and end >= task.stop:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return crops


def read_crops(source: ImageSource, task: ReadTask) -> dict:
    """The central crops of one task's images, or its error (never raised, so that one
    bad video does not stop a job): `{"video_id", "start", "last", "images", "error"}`,
    with `images` uint8 `(n, input_size, input_size, channels)` or None."""
    result = {"video_id": task.video_id, "start": task.start, "last": task.last}
    try:
        if source.kind == "frames":
            images = _read_frame_store(source, task)
        else:
            crops = _read_sequential(source, task)
            if not crops and task.start == 0:
                raise ValueError(f"{task.video_id}: no images.")
            channels = 3 if source.stream == "appearance" else 2 * STACK_LENGTH
            empty = np.zeros((0, source.input_size, source.input_size, channels), np.uint8)
            # A task past the real end of a video shorter than stated holds no image.
            images = empty if not crops else crops[0] if len(crops) == 1 else np.concatenate(crops)
    except Exception as error:  # noqa: BLE001 - reported with the video, the job goes on
        return {**result, "images": None, "error": f"{type(error).__name__}: {error}"}
    return {**result, "images": np.ascontiguousarray(images, dtype=np.uint8), "error": None}
