"""The draw of a fine-tuning batch (section 3.2), in NumPy only: clips, images, crops, flips.

`FrameBatches(clips, ...).draw(iteration)` gives batch `iteration` as uint8 crops and
int32 labels, a pure function of `(seed, iteration)`; the network preprocesses them on
the device (`models.image_preprocessing`). `training.finetune_convnet` calls `draw` in
worker processes (`runtime.process_feed.ordered_map`), which is why this module imports no
Keras, and why a `FrameBatches` pickles when its clips' loaders do (`functools.partial`
of module-level functions, `StoredClip`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np

from temporal_attention.data.crops import CROP_SIZE, random_crop_and_flip
from temporal_attention.data.frame_store import FrameStore, StoredVideo, common_kind
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH, read_video

# A clip: a callable returning its images (frames or flow stacks), and its label.
ClipLoader = Callable[[], np.ndarray]
# Channels of the images of each stream: RGB frames, 5-pair flow stacks.
STREAM_CHANNELS = {"appearance": 3, "motion": 10}


class StoredClip:
    """A clip of a frame store, read at random access: `num_images` and `read(indices)`
    in place of a loader of all its images. The folder is opened on first use (its
    markers read), so a list of clips costs nothing until batches are drawn.

    Args:
        store_root: The frame store (`training.extract_frames`'s `--output`).
        video_id: E.g. "Punch/v_Punch_g01_c01".
        stream: "appearance" (RGB frames) or "motion" (5-pair flow stacks).
    """

    def __init__(self, store_root: str | os.PathLike, video_id: str, stream: str):
        if stream not in STREAM_CHANNELS:
            raise ValueError(f"Expected stream 'appearance' or 'motion'. Received: {stream!r}")
        self.store_root, self.video_id, self.stream = store_root, video_id, stream
        self._video: StoredVideo | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_video": None}  # reopened in the worker that reads it

    def _opened(self) -> StoredVideo:
        if self._video is None:
            self._video = FrameStore(self.store_root).video(self.video_id)
        return self._video

    @property
    def num_images(self) -> int:
        """Frames (appearance) or flow stacks (motion) of the clip."""
        video = self._opened()
        return video.num_frames if self.stream == "appearance" else video.num_stacks

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Images `indices`: `(n, H, W, 3)` frames or `(n, H, W, 10)` stacks, uint8."""
        video = self._opened()
        if self.stream == "appearance":
            return video.read_frames(indices)
        return video.read_flow_stacks(indices)

    def __call__(self) -> np.ndarray:
        """All the clip's images, as a loader gives them."""
        return self.read(range(self.num_images))

    @property
    def part(self) -> str:
        """The frame store part the clip reads: "frames" or "flow"."""
        return "frames" if self.stream == "appearance" else "flow"


def decoded_rgb_frames(
    path: str | os.PathLike, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH
) -> np.ndarray:
    """A loader of all of a video's frames, decoded at `height` x `width`:
    `(frames, height, width, 3)` uint8 RGB (`functools.partial` it with a path)."""
    return read_video(path, height, width).frames


@dataclasses.dataclass(frozen=True)
class FrameBatches:
    """Batches of uint8 crops (or flow-stack crops) with their videos' labels.

    Batch `iteration` draws `batch_size / frames_per_clip` clips uniformly (with
    replacement), `frames_per_clip` random images of each, then a random crop and flip
    per image, seeded by `(seed, iteration)`.

    Args:
        clips: `(loader, label)` pairs; `loader()` returns the clip's uint8 images
            `(num_images, height, width, channels)`. A `StoredClip` loader is read at
            random access: only the drawn images; they must all hold images of one size
            (and flow of one method), checked from their markers when the batches are
            made (`data.frame_store.common_kind`), so that the size a run records is the
            size it trained on.
        stream: `"appearance"` (3 channels) or `"motion"` (10 channels).
        batch_size: Images per batch, a multiple of `frames_per_clip`.
        crop_size: Side of the random crops. Default 224.
        frames_per_clip: Images taken from each drawn clip. Default 1.
        seed: Seed of the sampling and augmentation. Default 0.
    """

    clips: tuple[tuple[ClipLoader, int], ...]
    stream: str
    batch_size: int
    crop_size: int = CROP_SIZE
    frames_per_clip: int = 1
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "clips", tuple(self.clips))
        if not self.clips:
            raise ValueError("Expected at least one clip. Received: clips=[]")
        if self.stream not in STREAM_CHANNELS:
            raise ValueError(
                f"Expected stream in {tuple(STREAM_CHANNELS)}. Received: stream={self.stream!r}"
            )
        if (
            self.batch_size < 1
            or self.frames_per_clip < 1
            or self.batch_size % self.frames_per_clip
        ):
            raise ValueError(
                "Expected batch_size a positive multiple of frames_per_clip. Received: "
                f"batch_size={self.batch_size}, frames_per_clip={self.frames_per_clip}"
            )
        stored = [loader for loader, _ in self.clips if isinstance(loader, StoredClip)]
        if stored:  # raises FrameStoreError naming two folders of different kinds
            common_kind([clip._opened() for clip in stored], stored[0].part)

    @property
    def channels(self) -> int:
        return STREAM_CHANNELS[self.stream]

    def draw(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `iteration`: uint8 `(batch, crop, crop, channels)`, int32 `(batch,)`."""
        rng = np.random.default_rng((self.seed, iteration))
        num_clips = self.batch_size // self.frames_per_clip
        clip_indices = rng.integers(0, len(self.clips), size=num_clips)
        images, labels = [], []
        for clip_index in clip_indices:
            loader, label = self.clips[clip_index]
            if isinstance(loader, StoredClip):  # random access: read only the picks
                num_images = loader.num_images
                if num_images == 0:
                    raise ValueError(f"Clip {clip_index} (label {label}) has no images.")
                picks = rng.integers(0, num_images, size=self.frames_per_clip)
                clip_images = loader.read(picks)  # (frames_per_clip, height, width, channels)
            else:
                clip_images = np.asarray(loader())  # (num_images, height, width, channels)
                if len(clip_images) == 0:
                    raise ValueError(f"Clip {clip_index} (label {label}) has no images.")
                picks = rng.integers(0, len(clip_images), size=self.frames_per_clip)
                clip_images = clip_images[picks]
            if clip_images.ndim != 4 or clip_images.shape[-1] != self.channels:
                raise ValueError(
                    f"Clip {clip_index} gave images of shape {clip_images.shape}; the "
                    f"{self.stream} stream needs (num_images, height, width, {self.channels})."
                )
            images.extend(clip_images)  # (height, width, channels) each, not copied
            labels.extend([label] * self.frames_per_clip)
        crops = random_crop_and_flip(
            images, self.crop_size, rng, flow=self.stream == "motion"
        )  # (batch, crop, crop, channels) uint8, cropped without stacking the images first
        return crops, np.asarray(labels, dtype=np.int32)


def draw_batch(batches: FrameBatches, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """`batches.draw(iteration)`, as a module-level function for worker processes."""
    return batches.draw(iteration)
