"""Frame-level batches for ConvNet fine-tuning (section 3.2): crops, flips, video labels.

Each training image is one RGB frame (appearance) or one 5-pair flow stack
(motion) and carries its video's label. A batch is a pure function of the
iteration number and the seed, so a resumed run sees exactly the batches an
uninterrupted run would have seen.

A clip's loader gives all its images (a decoded video, a flow file), or is a
`StoredClip`, which reads from a frame store (`data.frame_store`) only the images a
batch draws: the same draws, the same batch as a loader of all the store's images.
The draw itself (uint8 crops and labels) is `data.frame_batches.FrameBatches.draw`,
Keras-free for worker processes; this dataset preprocesses it on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from data.crops import center_crop, flip_flow_stack, random_crop_and_flip
from data.frame_batches import ClipLoader, FrameBatches, StoredClip
from models.two_stream_vgg16 import preprocess_images

__all__ = [
    "FrameBatches",
    "FrameDataset",
    "StoredClip",
    "center_crop",
    "flip_flow_stack",
    "random_crop_and_flip",
]

# uint8 crops and the stream to the network's float32 inputs, e.g.
# models.two_stream_vgg16.preprocess_images (VGG16's, the default).
Preprocess = Callable[[np.ndarray, str], np.ndarray]


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
        self.batches = FrameBatches(
            tuple(clips),
            stream=stream,
            batch_size=batch_size,
            crop_size=crop_size,
            frames_per_clip=frames_per_clip,
            seed=seed,
        )
        self.clips = list(clips)
        self.stream = stream
        self.channels = self.batches.channels
        self.batch_size = batch_size
        self._length = num_batches
        self.crop_size = crop_size
        self.frames_per_clip = frames_per_clip
        self.seed = seed
        self.preprocess = preprocess

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        crops, labels = self.batches.draw(iteration)  # uint8 (batch, crop, crop, channels)
        return self.preprocess(crops, self.stream), labels
