"""models.image_preprocessing: uint8 images preprocessed in the model, as the NumPy functions do."""

import keras
import numpy as np
import pytest

from temporal_attention.models import efficientnet_lite, two_stream_vgg16
from temporal_attention.models.image_preprocessing import (
    MODES,
    ImagePreprocessing,
    with_preprocessing,
)

pytestmark = pytest.mark.multibackend


def _images(channels: int) -> np.ndarray:
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, size=(2, 5, 6, channels), dtype=np.uint8)
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images


def _reference(mode: str, images: np.ndarray) -> np.ndarray:
    if mode == "caffe":
        return two_stream_vgg16.preprocess_rgb(images)
    if mode == "uint8-128":
        return two_stream_vgg16.preprocess_flow(images)
    if mode == efficientnet_lite.PREPROCESS_MODE:
        return efficientnet_lite.preprocess_rgb(images)
    if mode == efficientnet_lite.FLOW_PREPROCESS:
        return efficientnet_lite.preprocess_flow(images)
    return keras.applications.imagenet_utils.preprocess_input(images.astype(np.float32), mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_matches_the_numpy_preprocessing(mode):
    images = _images(10 if "128" in mode else 3)
    output = keras.ops.convert_to_numpy(ImagePreprocessing(mode)(images))
    expected = _reference(mode, images)
    assert output.dtype == np.float32 and output.shape == images.shape
    if mode in ("tf", "torch"):
        np.testing.assert_allclose(output, expected, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(output, expected)


def test_with_preprocessing_is_the_network_of_preprocessed_images():
    keras.utils.set_random_seed(0)
    network = keras.Sequential(
        [keras.Input((5, 6, 3)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D()]
    )
    model = with_preprocessing(network, "caffe")
    images = _images(3)
    assert model.input.dtype == "uint8"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images)),
        keras.ops.convert_to_numpy(network(two_stream_vgg16.preprocess_rgb(images))),
        rtol=1e-6,
        atol=1e-6,
    )
    restored = ImagePreprocessing.from_config(ImagePreprocessing("caffe").get_config())
    assert restored.mode == "caffe"


def test_bad_modes_and_channels():
    with pytest.raises(ValueError, match="Expected mode"):
        ImagePreprocessing("bgr")
    with pytest.raises(ValueError, match="RGB images"):
        ImagePreprocessing("caffe")(np.zeros((1, 4, 4, 10), np.uint8))
