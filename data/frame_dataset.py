"""Frame-level batches for ConvNet fine-tuning (section 3.2): crops, flips, video labels.

Each training image is one RGB frame (appearance) or one 5-pair flow stack
(motion) and carries its video's label. A batch is a pure function of the
iteration number and the seed, so a resumed run sees exactly the batches an
uninterrupted run would have seen.

A clip's loader gives all its images (a decoded video, a flow file), or is a
`StoredClip`, which reads from a frame store (`data.frame_store`) only the images a
batch draws: the same draws, the same batch as a loader of all the store's images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras
import numpy as np

from data.crops import center_crop, flip_flow_stack, random_crop_and_flip
from data.frame_store import FrameStore, StoredVideo
from models.two_stream_vgg16 import preprocess_images, stream_input_shape

__all__ = [
    "FrameDataset",
    "StoredClip",
    "center_crop",
    "flip_flow_stack",
    "random_crop_and_flip",
]

# A clip: a callable returning its images (frames or flow stacks), and its label.
ClipLoader = Callable[[], np.ndarray]
# uint8 crops and the stream to the network's float32 inputs, e.g.
# models.two_stream_vgg16.preprocess_images (VGG16's, the default).
Preprocess = Callable[[np.ndarray, str], np.ndarray]


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
        if stream not in ("appearance", "motion"):
            raise ValueError(f"Expected stream 'appearance' or 'motion'. Received: {stream!r}")
        self.store_root, self.video_id, self.stream = store_root, video_id, stream
        self._video: StoredVideo | None = None

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


# === Dataset ===


class FrameDataset(keras.utils.PyDataset):
    """Batches of augmented, preprocessed frames (or flow stacks) with video labels.

    Batch `iteration` draws `batch_size / frames_per_clip` clips uniformly
    (with replacement), `frames_per_clip` random images of each, then a random
    crop and flip per image, seeded by `(seed, iteration)`.

    Args:
        clips: `(loader, label)` pairs; `loader()` returns the clip's uint8
            images `(num_images, height, width, channels)`: RGB frames for
            the appearance stream, 10-channel flow stacks for motion. A
            `StoredClip` loader is read at random access: only the drawn images.
        stream: `"appearance"` or `"motion"`.
        batch_size: Images per batch.
        num_batches: Length of the dataset (the number of iterations).
        crop_size: Side of the random crops. Default 224.
        frames_per_clip: Images taken from each loaded clip; more means fewer
            clip loads per batch and less diverse batches. Default 1.
        seed: Seed of the sampling and augmentation. Default 0.
        preprocess: `preprocess(crops, stream)`, the backbone's preprocessing of
            uint8 crops. Default `models.two_stream_vgg16.preprocess_images` (VGG16:
            "caffe" RGB, uint8 - 128 flow); EfficientNet-Lite's is
            `models.efficientnet_lite.preprocess_images`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Returns (per item):
        `(images, labels)`: float32 `(batch_size, crop_size, crop_size, channels)`
        preprocessed for the stream, int32 `(batch_size,)`.
    """

    def __init__(
        self,
        clips: Sequence[tuple[ClipLoader, int]],
        *,
        stream: str,
        batch_size: int,
        num_batches: int,
        crop_size: int = 224,
        frames_per_clip: int = 1,
        seed: int = 0,
        preprocess: Preprocess = preprocess_images,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not clips:
            raise ValueError("Expected at least one clip. Received: clips=[]")
        if batch_size < 1 or frames_per_clip < 1 or batch_size % frames_per_clip:
            raise ValueError(
                "Expected batch_size a positive multiple of frames_per_clip. Received: "
                f"batch_size={batch_size}, frames_per_clip={frames_per_clip}"
            )
        self.clips = list(clips)
        self.stream = stream
        self.channels = stream_input_shape(stream)[-1]
        self.batch_size = batch_size
        self._length = num_batches
        self.crop_size = crop_size
        self.frames_per_clip = frames_per_clip
        self.seed = seed
        self.preprocess = preprocess

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
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
            images.append(clip_images)
            labels.extend([label] * self.frames_per_clip)
        images = np.concatenate(images)  # (batch, height, width, channels) uint8
        crops = random_crop_and_flip(
            images, self.crop_size, rng, flow=self.stream == "motion"
        )  # (batch, crop, crop, channels) uint8
        return self.preprocess(crops, self.stream), np.asarray(labels, dtype=np.int32)
