"""Tests of frame-level batches (data/frame_batches.py, data/crops.py): crops, flips, flow
x-inversion, labels, determinism."""

import numpy as np
import pytest

from temporal_attention.data import frame_store
from temporal_attention.data.crops import center_crop, flip_flow_stack, random_crop_and_flip
from temporal_attention.data.frame_batches import FrameBatches, StoredClip
from temporal_attention.data.frame_store import FrameSettings, FrameStore


def test_flip_flow_stack_mirrors_and_inverts_only_x_channels():
    rng = np.random.default_rng(0)
    stacks = rng.integers(0, 256, size=(2, 4, 6, 10), dtype=np.uint8)
    flipped = flip_flow_stack(stacks)
    for channel in range(10):
        mirrored = stacks[:, :, ::-1, channel]
        expected = 255 - mirrored if channel % 2 == 0 else mirrored
        np.testing.assert_array_equal(flipped[..., channel], expected)
    np.testing.assert_array_equal(flip_flow_stack(flipped), stacks)  # an involution


def test_flip_of_uint8_flow_negates_the_horizontal_flow():
    flow = np.array([-20.0, -7.5, 0.0, 3.25, 20.0])  # pixels/frame, bound 20
    encoded = np.round(255 * (flow + 20) / 40).astype(np.uint8)
    decoded_flipped = (255 - encoded.astype(float)) * 40 / 255 - 20
    np.testing.assert_allclose(decoded_flipped, -flow, atol=40 / 255)


@pytest.mark.parametrize("flow", [False, True])
def test_random_crop_and_flip_takes_crops_of_the_source(flow):
    channels = 10 if flow else 3
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(16, 12, 20, channels), dtype=np.uint8)
    crops = random_crop_and_flip(images, 8, np.random.default_rng(2), flow=flow)
    assert crops.shape == (16, 8, 8, channels) and crops.dtype == np.uint8
    num_flipped = 0
    for image, crop in zip(images, crops, strict=True):
        unflipped = flip_flow_stack(crop) if flow else crop[:, ::-1]
        windows = np.lib.stride_tricks.sliding_window_view(image, (8, 8, channels))[:, :, 0]
        found_plain = (windows == crop).all(axis=(2, 3, 4)).any()
        found_flipped = (windows == unflipped).all(axis=(2, 3, 4)).any()
        assert found_plain or found_flipped
        num_flipped += int(found_flipped and not found_plain)
    assert 0 < num_flipped < 16  # both cases occur


def test_crops_larger_than_the_image_raise():
    images = np.zeros((1, 10, 12, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="crop_size=11"):
        random_crop_and_flip(images, 11, np.random.default_rng(0))
    with pytest.raises(ValueError, match="crop_size=11"):
        center_crop(images, 11)


def test_center_crop_is_central():
    images = np.arange(1 * 6 * 8 * 1, dtype=np.uint8).reshape(1, 6, 8, 1)
    np.testing.assert_array_equal(center_crop(images, 4), images[:, 1:5, 2:6])


def constant_clip(value: int, channels: int, num_images: int = 5):
    return lambda: np.full((num_images, 12, 14, channels), value, dtype=np.uint8)


@pytest.mark.parametrize(("stream", "channels"), [("appearance", 3), ("motion", 10)])
def test_batches_carry_the_video_label(stream, channels):
    # Each clip's pixels hold its label, so a batch shows which clip each image came from.
    clips = [(constant_clip(label, channels), label) for label in range(4)]
    batches = FrameBatches(
        tuple(clips), stream=stream, batch_size=12, crop_size=8, frames_per_clip=3
    )
    images, labels = batches.draw(1)
    assert images.shape == (12, 8, 8, channels) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int32
    for image, label in zip(images, labels, strict=True):
        raw = np.full((8, 8, channels), label, dtype=np.uint8)
        if stream == "appearance":
            np.testing.assert_array_equal(image, raw)
        else:  # a flipped stack has 255 - label in its x channels
            assert np.array_equal(image, raw) or np.array_equal(image, flip_flow_stack(raw))
    # frames_per_clip consecutive images come from one clip.
    assert (labels.reshape(4, 3) == labels.reshape(4, 3)[:, :1]).all()


def test_a_batch_is_a_function_of_seed_and_iteration():
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, size=(6, 12, 14, 3), dtype=np.uint8) for _ in range(5)]
    clips = [((lambda video=video: video), label) for label, video in enumerate(videos)]

    def make(seed):
        return FrameBatches(
            tuple(clips), stream="appearance", batch_size=8, crop_size=8, seed=seed
        ).draw

    first, again, other_seed = make(0), make(0), make(1)
    np.testing.assert_array_equal(first(2)[0], again(2)[0])
    np.testing.assert_array_equal(first(2)[1], again(2)[1])
    assert not np.array_equal(first(2)[0], first(3)[0])
    assert not np.array_equal(first(2)[0], other_seed(2)[0])


def test_wrong_channels_and_batch_size_raise():
    with pytest.raises(ValueError, match="motion stream needs"):
        FrameBatches(((constant_clip(0, 3), 0),), stream="motion", batch_size=2, crop_size=8).draw(
            0
        )
    with pytest.raises(ValueError, match="frames_per_clip=3"):
        FrameBatches(
            ((constant_clip(0, 3), 0),),
            stream="appearance",
            batch_size=4,
            crop_size=224,
            frames_per_clip=3,
        )


@pytest.mark.parametrize(("stream", "channels"), [("appearance", 3), ("motion", 10)])
def test_a_stored_clip_reads_only_the_drawn_images_and_gives_the_same_batch(
    stream, channels, tmp_path, monkeypatch
):
    store, rng = FrameStore(tmp_path), np.random.default_rng(0)
    for video_id in ("A/v1", "A/v2"):
        frames = rng.integers(0, 256, size=(10, 12, 14, 3), dtype=np.uint8)
        writer = store.frames_writer(video_id, FrameSettings(12, 14))
        writer.append(frames)
        writer.finish({})
        writer = store.flow_writer(video_id, {"jpeg_quality": 95})
        writer.append(frames[:9, ..., :2])
        writer.finish({})
    stored = [
        (StoredClip(tmp_path, video_id, stream), label)
        for label, video_id in enumerate(("A/v1", "A/v2"))
    ]
    whole = [((lambda clip=clip: clip()), label) for clip, label in stored]  # all images

    def batch(clips):
        return FrameBatches(
            tuple(clips), stream=stream, batch_size=4, crop_size=8, frames_per_clip=2
        ).draw(2)

    reads = []  # image files read
    original = frame_store._read_image
    monkeypatch.setattr(
        frame_store,
        "_read_image",
        lambda path, *args, **kwargs: reads.append(path) or original(path, *args, **kwargs),
    )
    images, labels = batch(stored)
    # The batch's images only: a frame's JPEG, or a stack's 5 x and 5 y JPEGs.
    assert len(reads) == 4 * (1 if stream == "appearance" else 10)
    assert images.shape == (4, 8, 8, channels)
    expected_images, expected_labels = batch(whole)  # the same draws from every image
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_crops_of_a_list_of_images_equal_those_of_their_stack():
    images = np.random.default_rng(3).integers(0, 256, (5, 12, 14, 10), dtype=np.uint8)
    stacked = random_crop_and_flip(images, 8, np.random.default_rng(1), flow=True)
    listed = random_crop_and_flip(list(images), 8, np.random.default_rng(1), flow=True)
    np.testing.assert_array_equal(listed, stacked)
    with pytest.raises(ValueError, match="images of one shape"):
        random_crop_and_flip([images[0], images[1, :10]], 8, np.random.default_rng(1))
