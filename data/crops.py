"""Crops and flips of uint8 frames and flow stacks, in NumPy only.

Kept free of Keras so that the worker processes that feed fine-tuning and extraction
(`runtime.process_feed`) import nothing heavier than NumPy and OpenCV.
"""

from __future__ import annotations

import numpy as np

# Side of the square crop the networks see (section 3.2; Simonyan and Zisserman 2014).
CROP_SIZE = 224


def flip_flow_stack(stacks: np.ndarray) -> np.ndarray:
    """Mirror uint8 flow stacks `(..., height, width, 10)` left-right.

    Mirroring negates the horizontal flow: the x channels (0, 2, ..., 8) become
    255 - x (uint8 flow is symmetric around 127.5); y channels only move.
    """
    flipped = np.array(stacks[..., ::-1, :])  # (..., height, width, 10), width reversed
    flipped[..., 0::2] = 255 - flipped[..., 0::2]
    return flipped


def random_crop_and_flip(
    images: np.ndarray, crop_size: int, rng: np.random.Generator, *, flow: bool = False
) -> np.ndarray:
    """A random `crop_size` square of each image, mirrored with probability 1/2.

    Args:
        images: uint8 `(num_images, height, width, channels)`, or a sequence of
            `(height, width, channels)` images of one shape: they need not be stacked
            first (a fine-tuning batch of 256 flow stacks is 223 MB before its crops,
            51 MB after).
        crop_size: Side of the crop, at most the image's height and width.
        rng: The generator that draws the offsets and flips.
        flow: Whether the images are flow stacks (`flip_flow_stack` on flips).

    Returns:
        uint8 `(num_images, crop_size, crop_size, channels)`.
    """
    if isinstance(images, np.ndarray):
        num_images, height, width, _ = images.shape
    else:
        shapes = {np.shape(image) for image in images}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise ValueError(
                "Expected images of one shape (height, width, channels). Received shapes: "
                f"{sorted(shapes)}"
            )
        num_images, (height, width, _) = len(images), next(iter(shapes))
    if crop_size > min(height, width):
        raise ValueError(
            f"Expected crop_size <= image height and width ({height}x{width}). "
            f"Received: crop_size={crop_size}"
        )
    tops = rng.integers(0, height - crop_size + 1, size=num_images)
    lefts = rng.integers(0, width - crop_size + 1, size=num_images)
    flips = rng.random(num_images) < 0.5
    crops = []
    for image, top, left, flip in zip(images, tops, lefts, flips, strict=True):
        crop = image[top : top + crop_size, left : left + crop_size]  # (crop, crop, channels)
        if flip:
            crop = flip_flow_stack(crop) if flow else crop[:, ::-1]
        crops.append(crop)
    return np.stack(crops)


def center_crop(images: np.ndarray, crop_size: int) -> np.ndarray:
    """The central `crop_size` square of `(num_images, height, width, channels)` images."""
    height, width = images.shape[1:3]
    if crop_size > min(height, width):
        raise ValueError(
            f"Expected crop_size <= image height and width ({height}x{width}). "
            f"Received: crop_size={crop_size}"
        )
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    return images[:, top : top + crop_size, left : left + crop_size]
