"""Two-stream VGG16 (paper section 2.1, 3.2; Wang et al. 2015): classifiers and FC6 extractors.

The appearance (spatial) net sees one RGB frame, `(224, 224, 3)`; the motion
(temporal) net sees a stack of 5 flow pairs, `(224, 224, 10)`, channels
x1, y1, ..., x5, y5. Both are VGG16 with Keras' layer names (`block1_conv1` ...
`block5_pool`, `flatten`, `fc1`, `fc2`, `predictions`), so ImageNet weights and
fine-tuned checkpoints copy by name. The frame feature of the paper is `fc1`
(FC6, after its ReLU), 4096-d.

The motion net is initialised cross-modally: `block1_conv1`'s RGB kernel is
averaged over its 3 input channels and replicated to the 10 flow channels;
every other layer is copied as is.

Preprocessing happens outside the networks, on NumPy arrays:
`preprocess_rgb` (Keras' "caffe" mode: RGB to BGR, minus the ImageNet channel
means) and `preprocess_flow` (uint8 flow minus 128).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

# (filters, convolutions) of the five VGG16 blocks (Simonyan & Zisserman, config D).
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# The paper's frame feature: FC6 after its ReLU (Keras calls it `fc1`).
FEATURE_LAYER = "fc1"
# Section 2.1: a motion input stacks 5 flow pairs, K = 10 channels.
FLOW_STACK_CHANNELS = 10
# Keras' "caffe" mode subtracts these BGR means (ImageNet).
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
# Flow is stored as uint8 with 0 flow at 128 (255 * (v + 20) / 40, rounded).
FLOW_ZERO = 128.0
STREAMS = ("appearance", "motion")
# Keras' ImageNet VGG16 file (with the top), as `keras.applications.VGG16` caches it.
IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
# Layers whose weights depend on the number of classes; re-initialised when they differ.
CLASSIFIER_LAYERS = ("predictions",)


# === Preprocessing ===


def preprocess_rgb(frames: np.ndarray) -> np.ndarray:
    """Keras' "caffe" preprocessing of uint8 RGB frames `(..., height, width, 3)`.

    Returns float32 BGR with the ImageNet means subtracted, as
    `keras.applications.vgg16.preprocess_input` does.
    """
    frames = np.asarray(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"Expected RGB frames (..., 3). Received: shape={frames.shape}")
    bgr = frames[..., ::-1].astype(np.float32)  # (..., height, width, 3)
    return bgr - CAFFE_BGR_MEAN


def preprocess_flow(stacks: np.ndarray) -> np.ndarray:
    """uint8 flow stacks `(..., height, width, 10)` to float32 `uint8 - 128`."""
    stacks = np.asarray(stacks)
    if stacks.dtype != np.uint8:
        raise ValueError(f"Expected uint8 flow stacks. Received: dtype={stacks.dtype}")
    return stacks.astype(np.float32) - FLOW_ZERO


def preprocess_images(images: np.ndarray, stream: str) -> np.ndarray:
    """`preprocess_rgb` for the appearance stream, `preprocess_flow` for motion."""
    _check_stream(stream)
    return preprocess_rgb(images) if stream == "appearance" else preprocess_flow(images)


# === Architecture ===


def build_vgg16(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    *,
    num_classes: int = 1000,
    fc_units: int = 4096,
    dropout_rates: tuple[float, float] = (0.0, 0.0),
    weight_decay: float = 0.0,
    seed: int | None = None,
    width_multiplier: float = 1.0,
    kernel_initializer: str = "glorot_uniform",
    batch_norm: bool = False,
    name: str = "vgg16",
) -> keras.Model:
    """VGG16 with Keras' layer names and random weights, any input size and channels.

    Args:
        input_shape: `(height, width, channels)`; 32x32 is the smallest size
            the five pooling stages allow. Default `(224, 224, 3)`.
        num_classes: Width of the softmax `predictions` layer. Default 1000.
        fc_units: Width of `fc1` (FC6) and `fc2` (FC7). Default 4096; tests use
            a few units.
        dropout_rates: Dropout after `fc1` and after `fc2` (layers
            `fc1_dropout`, `fc2_dropout`, only when the rate is > 0; they hold
            no weights, so names still match Keras' VGG16). Default no dropout.
        weight_decay: Caffe-style weight decay on kernels: the gradient gains
            `weight_decay * w`, via `L2(weight_decay / 2)`. Default 0.
        seed: Seed of the dropout layers (exact resume needs fixed seeds).
        width_multiplier: Scales the filters of every convolution (1.0 is
            VGG16; 0.25 has 1/16 of its convolution FLOPs, for CPU demos).
            Pretrained weights need 1.0. Default 1.0.
        kernel_initializer: Initializer of every kernel before any weights are
            loaded. Default `"glorot_uniform"` (Keras' VGG16); `"he_normal"`
            (He et al. 2015) suits training from scratch.
        batch_norm: Batch normalisation between each convolution and its ReLU
            (layers `blockB_convC_bn`), the VGG16-BN variant that trains from
            scratch; the paper's VGG16 has none. Default `False`.
        name: Model name.

    Returns:
        A Functional `keras.Model`, `(batch, height, width, channels)` to
        class probabilities `(batch, num_classes)`.
    """
    height, width, channels = input_shape
    if min(height, width) < 32 or channels < 1:
        raise ValueError(
            "Expected input_shape (height >= 32, width >= 32, channels >= 1). "
            f"Received: input_shape={input_shape}"
        )
    if fc_units < 1:
        raise ValueError(f"Expected fc_units >= 1. Received: fc_units={fc_units}")
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1. Received: num_classes={num_classes}")
    if not all(0.0 <= rate < 1.0 for rate in dropout_rates) or len(dropout_rates) != 2:
        raise ValueError(
            f"Expected two dropout rates in [0, 1). Received: dropout_rates={dropout_rates}"
        )
    if weight_decay < 0:
        raise ValueError(f"Expected weight_decay >= 0. Received: weight_decay={weight_decay}")
    if width_multiplier <= 0:
        raise ValueError(
            f"Expected width_multiplier > 0. Received: width_multiplier={width_multiplier}"
        )
    decay = keras.regularizers.L2(weight_decay / 2) if weight_decay > 0 else None

    images = keras.Input(input_shape, name="input_layer")
    x = images  # (batch, height, width, channels)
    # === Convolutional blocks ===
    for block, (filters, num_convs) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, num_convs + 1):
            x = keras.layers.Conv2D(
                max(1, round(filters * width_multiplier)),
                3,
                padding="same",
                activation=None if batch_norm else "relu",
                kernel_initializer=kernel_initializer,
                kernel_regularizer=decay,
                name=f"block{block}_conv{conv}",
            )(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(name=f"block{block}_conv{conv}_bn")(x)
                x = keras.layers.ReLU(name=f"block{block}_conv{conv}_relu")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    # x: (batch, height / 32, width / 32, 512)

    # === Fully connected layers ===
    x = keras.layers.Flatten(name="flatten")(x)
    for index, rate in enumerate(dropout_rates, start=1):
        x = keras.layers.Dense(
            fc_units,
            activation="relu",
            kernel_initializer=kernel_initializer,
            kernel_regularizer=decay,
            name=f"fc{index}",
        )(x)  # (batch, fc_units)
        if rate > 0:
            layer_seed = None if seed is None else seed + index
            x = keras.layers.Dropout(rate, seed=layer_seed, name=f"fc{index}_dropout")(x)
    probabilities = keras.layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=decay, name="predictions"
    )(x)  # (batch, num_classes)
    return keras.Model(images, probabilities, name=name)


# === Weight transfer ===


def cross_modality_kernel(rgb_kernel: np.ndarray, num_channels: int) -> np.ndarray:
    """Average a first-layer kernel over its input channels and replicate it.

    `(kh, kw, 3, filters)` to `(kh, kw, num_channels, filters)`, every input
    channel holding the mean of the RGB kernels (Wang et al. 2015).
    """
    rgb_kernel = np.asarray(rgb_kernel)
    if rgb_kernel.ndim != 4:
        raise ValueError(
            f"Expected a conv kernel (kh, kw, in, out). Received: shape={rgb_kernel.shape}"
        )
    mean_kernel = rgb_kernel.mean(axis=2, keepdims=True)  # (kh, kw, 1, filters)
    return np.repeat(mean_kernel, num_channels, axis=2)  # (kh, kw, num_channels, filters)


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy every weighted layer of `target` from the layer of the same name in `source`.

    A convolution kernel whose input channels differ (RGB source, flow target)
    is converted with `cross_modality_kernel`; the classifier (`predictions`)
    is left as initialised when the number of classes differs. Any other
    shape mismatch, or a weighted target layer missing from `source`, raises.

    Returns:
        The names of the layers that were copied.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in target.layers:
        target_weights = layer.get_weights()
        if not target_weights:
            continue
        if layer.name not in source_layers:
            if layer.name in CLASSIFIER_LAYERS:
                continue  # a source without a classifier, e.g. a feature extractor
            raise ValueError(
                f"Layer '{layer.name}' of model '{target.name}' has no namesake in "
                f"model '{source.name}'. Source layers: {sorted(source_layers)}"
            )
        source_weights = source_layers[layer.name].get_weights()
        shapes = [w.shape for w in target_weights]
        if [w.shape for w in source_weights] == shapes:
            layer.set_weights(source_weights)
        elif _is_cross_modal(source_weights, target_weights):
            kernel, *rest = source_weights
            layer.set_weights([cross_modality_kernel(kernel, shapes[0][2]), *rest])
        elif layer.name in CLASSIFIER_LAYERS:
            continue  # new classes: keep the fresh initialisation
        else:
            raise ValueError(
                f"Layer '{layer.name}': source weights {[w.shape for w in source_weights]} "
                f"do not fit target weights {shapes}. Build the target with the "
                "source's input size and fc_units."
            )
        copied.append(layer.name)
    return copied


def _is_cross_modal(source_weights, target_weights) -> bool:
    kernel, target_kernel = source_weights[0], target_weights[0]
    return (
        len(source_weights) == len(target_weights)
        and kernel.ndim == 4
        and kernel.shape[2] == 3
        and target_kernel.shape[2] != 3
        and kernel.shape[:2] + kernel.shape[3:] == target_kernel.shape[:2] + target_kernel.shape[3:]
    )


def load_pretrained(model: keras.Model, weights: str | os.PathLike | None) -> keras.Model:
    """Fill `model` from `weights` by layer name; returns `model`.

    Args:
        weights: `None` (keep the random initialisation); `"imagenet"`
            (Keras' VGG16 file from `$KERAS_HOME/models/`, downloaded when
            online); a `.keras` model file (e.g. a fine-tuned net written by
            `training.finetune_convnet`); or a Keras-applications VGG16 `.h5`
            weights file (with or without top).
    """
    if weights is None:
        return model
    if str(weights) == "imagenet" or str(weights).endswith(".h5"):
        source = _keras_vgg16(weights)
    elif str(weights).endswith(".keras"):
        if not os.path.exists(weights):
            raise ValueError(f"Weights file not found: weights={weights}")
        source = keras.saving.load_model(weights, compile=False)
    else:
        raise ValueError(
            "Expected weights None, 'imagenet', a .keras model or a Keras VGG16 .h5 file. "
            f"Received: weights={weights}"
        )
    names = {layer.name for layer in source.layers}
    if "fc1" not in names and any(layer.name == "fc1" for layer in model.layers):
        raise ValueError(
            f"weights={weights} hold no fc1 (a 'notop' file?), but the model needs FC6."
        )
    copy_weights_by_name(source, model)
    return model


def _keras_vgg16(weights: str | os.PathLike) -> keras.Model:
    if str(weights) != "imagenet" and not os.path.exists(weights):
        raise ValueError(f"Weights file not found: weights={weights}")
    include_top = "notop" not in os.path.basename(str(weights))
    try:
        return keras.applications.VGG16(weights=str(weights), include_top=include_top)
    except Exception as error:  # noqa: BLE001 - a download without network, a bad file
        if str(weights) != "imagenet":
            raise ValueError(f"{weights}: not a Keras VGG16 weights file ({error}).") from error
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        raise ValueError(
            f"The ImageNet VGG16 weights could not be loaded ({type(error).__name__}: {error}). "
            f"Without network access, put {IMAGENET_FILE} in {cache}/, or pass the path of "
            "that file as the weights."
        ) from error


# === The two streams ===


def stream_input_shape(stream: str, input_size: int = 224) -> tuple[int, int, int]:
    """`(input_size, input_size, 3)` for appearance, `(..., 10)` for motion."""
    _check_stream(stream)
    channels = 3 if stream == "appearance" else FLOW_STACK_CHANNELS
    return (input_size, input_size, channels)


def build_stream_vgg16(
    stream: str,
    *,
    num_classes: int = 1000,
    weights: str | os.PathLike | None = "imagenet",
    input_size: int = 224,
    fc_units: int = 4096,
    dropout_rates: tuple[float, float] = (0.0, 0.0),
    weight_decay: float = 0.0,
    seed: int | None = None,
    width_multiplier: float = 1.0,
    kernel_initializer: str = "glorot_uniform",
    batch_norm: bool = False,
) -> keras.Model:
    """The appearance or motion VGG16 classifier, for fine-tuning (section 3.2).

    Args:
        stream: `"appearance"` (RGB, 3 channels) or `"motion"` (10 flow channels).
        weights: see `load_pretrained`. For the motion stream an RGB source is
            converted cross-modally; a 10-channel source (a fine-tuned motion
            net) is copied as is.
        num_classes, input_size, fc_units, dropout_rates, weight_decay, seed,
            width_multiplier, kernel_initializer, batch_norm: see `build_vgg16`.

    Returns:
        A Functional `keras.Model` named `appearance_vgg16` or `motion_vgg16`.
    """
    model = build_vgg16(
        stream_input_shape(stream, input_size),
        num_classes=num_classes,
        fc_units=fc_units,
        dropout_rates=dropout_rates,
        weight_decay=weight_decay,
        seed=seed,
        width_multiplier=width_multiplier,
        kernel_initializer=kernel_initializer,
        batch_norm=batch_norm,
        name=f"{stream}_vgg16",
    )
    return load_pretrained(model, weights)


def feature_extractor(model: keras.Model, layer: str = FEATURE_LAYER) -> keras.Model:
    """The sub-network of `model` from its input to `layer`'s output (shared weights)."""
    try:
        output = model.get_layer(layer).output
    except ValueError as error:
        names = [candidate.name for candidate in model.layers]
        raise ValueError(f"Model '{model.name}' has no layer {layer!r}. Layers: {names}") from error
    return keras.Model(model.input, output, name=f"{model.name}_{layer}")


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"Expected stream in {STREAMS}. Received: stream={stream!r}")
