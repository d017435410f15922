"""The backbones' input preprocessing as a Keras layer: uint8 images in, on the device.

Fine-tuning and extraction send uint8 crops to the device (a quarter of float32's
bytes) and preprocess them there, as the first layer of the model:

    model = with_preprocessing(network, "caffe")   # network takes float32 caffe input
    model.predict(uint8_crops)                      # the same as network(preprocess(crops))

Modes (the names `models.feature_extraction.FeatureRecipe.preprocess` uses):

| mode | images | output |
|---|---|---|
| "caffe" | RGB | BGR minus the ImageNet means (VGG16: `models.two_stream_vgg16.preprocess_rgb`) |
| "tf" | RGB | x / 127.5 - 1 |
| "torch" | RGB | (x / 255 - mean) / std, ImageNet's |
| "efficientnet_lite" | RGB | (x - 127) / 128 (`models.efficientnet_lite.preprocess_rgb`) |
| "uint8-128" | flow | x - 128 (VGG16: `models.two_stream_vgg16.preprocess_flow`) |
| "(uint8-128)/128" | flow | (x - 128) / 128 (`models.efficientnet_lite.preprocess_flow`) |

The layer computes in float32 whatever the model's dtype policy (its output is cast by
the next layer, as a float32 input would be), so "caffe", "efficientnet_lite" and both
flow modes give exactly the NumPy functions' values (tested); "tf" and "torch" agree to
float32 rounding.
"""

from __future__ import annotations

import keras
import numpy as np

from temporal_attention.models import efficientnet_lite
from temporal_attention.models.two_stream_vgg16 import CAFFE_BGR_MEAN, FLOW_ZERO

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RGB_MODES = ("caffe", "tf", "torch", efficientnet_lite.PREPROCESS_MODE)
FLOW_MODES = ("uint8-128", efficientnet_lite.FLOW_PREPROCESS)
MODES = RGB_MODES + FLOW_MODES


@keras.saving.register_keras_serializable(package="temporal_attention")
class ImagePreprocessing(keras.layers.Layer):
    """uint8 (or float) images `(..., height, width, channels)` to a backbone's input.

    Args:
        mode: One of `MODES` (see the module's table).
        **kwargs: `keras.layers.Layer` arguments; the dtype is always float32.
    """

    def __init__(self, mode: str, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Expected mode in {MODES}. Received: mode={mode!r}")
        self.mode = mode

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.mode in RGB_MODES and channels != 3:
            raise ValueError(
                f"Mode {self.mode!r} preprocesses RGB images (3 channels). Received: "
                f"input_shape={tuple(input_shape)}"
            )
        self.built = True

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(IMAGENET_MEAN)
            std = keras.ops.convert_to_tensor(IMAGENET_STD)
            return (x / 255.0 - mean) / std
        if self.mode == efficientnet_lite.PREPROCESS_MODE:
            return (x - efficientnet_lite.RGB_CENTER) / efficientnet_lite.RGB_SCALE
        if self.mode == "uint8-128":
            return x - FLOW_ZERO
        return (x - efficientnet_lite.FLOW_ZERO) / efficientnet_lite.FLOW_SCALE

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "mode": self.mode}


def with_preprocessing(network: keras.Model, mode: str, name: str | None = None) -> keras.Model:
    """`network` behind an `ImagePreprocessing(mode)` layer: a model of uint8 images.

    The returned model shares `network`'s layers and weights (training one trains the
    other); its input has `network`'s shape and dtype uint8.
    """
    inputs = keras.Input(network.input_shape[1:], dtype="uint8", name="uint8_images")
    outputs = network(ImagePreprocessing(mode, name="preprocessing")(inputs))
    return keras.Model(inputs, outputs, name=name or f"{network.name}_uint8")
