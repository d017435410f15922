"""Video decoding with OpenCV: any container OpenCV reads, RGB uint8 frames at 256x340.

Example:

    video = read_video("UCF-101/Punch/v_Punch_g01_c01.avi")
    video.frames.shape  # (frames, 256, 340, 3), uint8 RGB
    video.fps, video.source_size  # 25.0, (240, 320)

    reader = VideoReader("long_video.mp4")  # any length: one chunk in memory at a time
    for chunk in reader.chunks(32):         # (<= 32, 256, 340, 3) uint8 RGB
        ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Two-stream convention (Wang et al. 2015): frames resized to 256x340 before cropping 224.
FRAME_HEIGHT = 256
FRAME_WIDTH = 340
# Frames decoded at a time by `VideoReader`: 32 x 256 x 340 x 3 bytes = 8 MB.
DEFAULT_CHUNK_FRAMES = 32

# Containers whose header frame count is exact (AVI: an index of every frame). A decoded
# count short of it by more than FRAME_COUNT_TOLERANCE frames means the file is truncated
# or its stream is damaged.
EXACT_COUNT_SUFFIXES = (".avi",)
FRAME_COUNT_TOLERANCE = 0
# Other containers (.mp4, .mkv, .webm, .mov, ...) state a nominal count: an mp4 edit list
# hides frames its sample table counts, and Matroska stores no count at all (OpenCV
# estimates duration x frame rate, far off at a variable frame rate). There a video is
# truncated when its decoded frames end more than this many seconds before the duration
# that its header states.
END_TOLERANCE_SECONDS = 0.5


def single_threaded_opencv() -> None:
    """A worker process's initializer: parallelism comes from the processes, so each runs
    OpenCV on one thread, which also keeps its results reproducible."""
    cv2.setNumThreads(1)


class VideoError(ValueError):
    """A video cannot be used. The message names the file, the problem and what to do."""


@dataclass(frozen=True)
class Video:
    """A decoded video.

    Attributes:
        path: The file it was read from.
        frames: `(frames, height, width, 3)` uint8 RGB, resized (256x340 by default).
        fps: Frames per second stated by the container (0.0 when it states none).
        source_size: `(height, width)` of the stored frames, before resizing.
    """

    path: str
    frames: np.ndarray  # (frames, 256, 340, 3) uint8 RGB
    fps: float
    source_size: tuple[int, int]  # (height, width) before resizing

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV frame (BGR, BGRA or grayscale) to `(height, width, 3)` uint8 RGB."""
    if frame.ndim == 2 or frame.shape[-1] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.shape[-1] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such file. Check --video-root and the split files.")
    if not path.is_file():
        raise VideoError(f"{path}: not a file (a folder?). Point to a video file.")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied. Make the file readable (chmod).")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes). Re-download or re-copy it.")


def _truncation(
    path: Path, decoded: int, stated_count: int, fps: float, end_seconds: float | None
) -> str | None:
    """Why a fully read video counts as truncated or corrupt, or `None` (see the rule in
    `read_video`). `end_seconds`: when the last decoded frame ends, from its timestamp."""
    if stated_count <= 0 or decoded >= stated_count - FRAME_COUNT_TOLERANCE:
        return None
    counted = f"{decoded} of the {stated_count} frames its header states could be decoded"
    if path.suffix.lower() in EXACT_COUNT_SUFFIXES or fps <= 0 or end_seconds is None:
        return f"truncated or corrupt: {counted}"
    stated_seconds = stated_count / fps
    if end_seconds < stated_seconds - END_TOLERANCE_SECONDS:
        return (
            f"truncated or corrupt: its frames end at {end_seconds:.2f} s of the "
            f"{stated_seconds:.2f} s its header states ({counted})"
        )
    return None


class VideoReader:
    """A video decoded chunk by chunk: memory holds one chunk of frames, whatever the
    video's length. Each pass over `chunks()` decodes the file again.

    Args:
        path: Any container and codec the installed OpenCV reads (.avi, .mp4, .mkv, ...).
        height: Output frame height (default 256); `None` (with `width=None`) keeps the
            stored size.
        width: Output frame width (default 340).

    Example:

        reader = VideoReader("UCF-101/Punch/v_Punch_g01_c01.avi")
        for chunk in reader.chunks(32):     # (<= 32, 256, 340, 3) uint8 RGB
            ...
        reader.num_frames, reader.fps, reader.source_size  # set by the pass

    Raises:
        ValueError: a bad size.
        VideoError: at construction, the path is missing or unreadable; during a pass,
            the file is not a video OpenCV can open, it has zero frames, or it is
            truncated or corrupt (found at the end of the pass: write nothing before
            the pass is over). The message names the file.

    Truncated or corrupt: fewer frames decode than the header states, and

    - in an AVI file (an index counts every frame, so the count is exact): by any
      number of frames (`FRAME_COUNT_TOLERANCE`, 0);
    - in any other container (.mp4, .mkv, .webm, .mov, ...), whose count is nominal
      (an edit list hides frames, Matroska's count is duration x an estimated frame
      rate, wrong at a variable frame rate): the last decoded frame ends (its
      timestamp plus the previous frame interval) more than `END_TOLERANCE_SECONDS`
      (0.5 s) before the header's duration, stated count / fps. Time, unlike the count,
      does not depend on the frame rate. Without usable timestamps, the AVI rule.

    So a file cut anywhere but in its last half second is caught in every container;
    a variable-frame-rate phone video, or an mp4 whose edit list hides a few frames,
    is read in full.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        height: int | None = FRAME_HEIGHT,
        width: int | None = FRAME_WIDTH,
    ):
        if (height is None) != (width is None):
            raise ValueError(
                f"Give both height and width or neither. Received: {height=}, {width=}"
            )
        if height is not None and (height < 1 or width < 1):
            raise ValueError(f"Expected height, width >= 1. Received: {height=}, {width=}")
        self.path = Path(path)
        self.height, self.width = height, width
        _check_readable(self.path)
        self.num_frames: int | None = None  # frames decoded by the last full pass
        self.fps = 0.0  # stated by the container (0.0 when it states none)
        self.source_size = (0, 0)  # (height, width) of the stored frames

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        frame = to_rgb(frame)
        if self.height is not None and frame.shape[:2] != (self.height, self.width):
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return frame  # (height, width, 3) uint8 RGB

    def chunks(self, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> Iterator[np.ndarray]:
        """Yields the frames, `(<= chunk_frames, height, width, 3)` uint8 RGB, in order;
        every chunk holds `chunk_frames` frames but the last. Checks the video as the
        class docstring says; sets `num_frames`, `fps` and `source_size`."""
        if chunk_frames < 1:
            raise ValueError(f"Expected chunk_frames >= 1. Received: {chunk_frames=}")
        path = self.path
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise VideoError(
                    f"{path}: OpenCV cannot open it as a video (not a video, or an "
                    "unsupported codec). Check the file, or re-encode it (e.g. ffmpeg -i "
                    "in out.mp4)."
                )
            stated_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            self.num_frames = None
            chunk, decoded = [], 0
            times = [0.0, 0.0]  # timestamps (ms) of the last two decoded frames
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                times = [times[1], float(capture.get(cv2.CAP_PROP_POS_MSEC))]
                self.source_size = (int(frame.shape[0]), int(frame.shape[1]))
                chunk.append(self._frame(frame))
                decoded += 1
                if len(chunk) == chunk_frames:
                    yield np.stack(chunk)  # (chunk_frames, height, width, 3)
                    chunk = []
        finally:
            capture.release()
        if decoded == 0:
            raise VideoError(
                f"{path}: the video has zero decodable frames. Re-download or drop it."
            )
        end_seconds = None
        if decoded >= 2 and times[1] > times[0]:  # timestamps usable
            end_seconds = (2 * times[1] - times[0]) / 1000.0  # last start + last interval
        problem = _truncation(path, decoded, stated_count, self.fps, end_seconds)
        if problem:
            raise VideoError(f"{path}: {problem}. Re-download or re-copy the file.")
        self.num_frames = decoded
        if chunk:
            yield np.stack(chunk)  # (< chunk_frames, height, width, 3)


def read_video(
    path: str | os.PathLike,
    height: int | None = FRAME_HEIGHT,
    width: int | None = FRAME_WIDTH,
) -> Video:
    """Decodes every frame of a video file into memory, RGB uint8 resized to
    `(height, width)`: for short videos and tests (a long one: `VideoReader`).

    Args:
        path, height, width: As for `VideoReader` (default size 256x340; `None, None`
            keeps the stored size).

    Returns:
        A `Video`; `frames` is `(frames, height, width, 3)` uint8 RGB. Grayscale and
        4-channel streams are converted to RGB.

    Raises:
        VideoError: the path is missing or unreadable, the file is not a video OpenCV
            can open, it has zero frames, or it is truncated or corrupt (the rule is
            `VideoReader`'s). The message names the file.
    """
    reader = VideoReader(path, height, width)
    chunks = list(reader.chunks())
    frames = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return Video(
        path=str(reader.path), frames=frames, fps=reader.fps, source_size=reader.source_size
    )


def write_video(path: str | os.PathLike, frames_rgb: np.ndarray, fps: float = 25.0) -> Path:
    """Writes `(frames, height, width, 3)` uint8 RGB (or `(frames, height, width)` gray)
    frames with `cv2.VideoWriter`: Motion-JPEG for `.avi` (safe everywhere), mp4v for
    `.mp4`. Used by tests and synthetic data; returns the path."""
    path = Path(path)
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.dtype != np.uint8 or frames_rgb.ndim not in (3, 4):
        raise ValueError(
            "Expected uint8 frames (frames, height, width[, 3]). "
            f"Received: dtype={frames_rgb.dtype}, shape={frames_rgb.shape}"
        )
    is_color = frames_rgb.ndim == 4
    codec = "mp4v" if path.suffix.lower() == ".mp4" else "MJPG"
    height, width = frames_rgb.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height), is_color
    )
    if not writer.isOpened():
        raise VideoError(f"{path}: OpenCV cannot write a {codec} video here.")
    try:
        for frame in frames_rgb:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if is_color else frame)
    finally:
        writer.release()
    return path
