"""Tests of feature extraction: batched results equal a direct predict, store, resume, backbones."""

import dataclasses

import keras
import numpy as np
import pytest

from temporal_attention.data.crops import center_crop
from temporal_attention.models.feature_extraction import (
    FeatureRecipe,
    build_extractor,
    describe_network,
    extract_chunked_features,
    extract_video_features,
    prepare_images,
)
from temporal_attention.models.two_stream_vgg16 import (
    build_stream_vgg16,
    copy_weights_by_name,
    cross_modality_kernel,
    feature_extractor,
    preprocess_flow,
    preprocess_rgb,
)

TINY = {"input_size": 32, "fc_units": 16}


def recipe(stream: str, **settings) -> FeatureRecipe:
    return FeatureRecipe(stream=stream, **{"weights": "none", "precision": "float32", **settings})


def generated_video(channels: int, num_images: int = 7, seed: int = 0) -> np.ndarray:
    """A short uint8 video (or flow-stack sequence), 40x48, a moving bright square on noise."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 120, size=(num_images, 40, 48, channels), dtype=np.uint8)
    for index in range(num_images):
        video[index, 10:20, 4 + 3 * index : 14 + 3 * index] = 250
    return video


def tiny_extractor(stream: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_extractor(recipe(stream, **TINY))


@pytest.mark.parametrize(
    ("stream", "channels", "preprocess"),
    [("appearance", 3, preprocess_rgb), ("motion", 10, preprocess_flow)],
)
def test_batched_extraction_equals_a_direct_predict(stream, channels, preprocess):
    extractor = tiny_extractor(stream)
    video = generated_video(channels)
    images = prepare_images(video, recipe(stream, input_size=32))
    np.testing.assert_array_equal(images, preprocess(center_crop(video, 32)))

    features = extract_video_features(extractor, images, batch_size=3)  # 3 + 3 + 1 (padded)
    assert features.shape == (7, 16) and features.dtype == np.float32
    direct = extractor.predict(images, batch_size=7, verbose=0)
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-5)


def test_extraction_is_batched_never_per_frame():
    extractor = tiny_extractor("appearance")
    calls = []
    original = extractor.predict_on_batch

    def spy(batch):
        calls.append(len(batch))
        return original(batch)

    extractor.predict_on_batch = spy
    images = prepare_images(generated_video(3, num_images=10), recipe("appearance", **TINY))
    extract_video_features(extractor, images, batch_size=4)
    assert calls == [4, 4, 4]


@pytest.mark.filterwarnings("ignore:This model usually expects")
def test_other_keras_applications_backbones_and_named_layers():
    extractor = build_extractor(
        recipe("motion", backbone="MobileNetV2", feature_layer="out_relu", input_size=32)
    )
    assert extractor.input_shape == (None, 32, 32, 10)
    assert extractor.output_shape == (None, 1, 1, 1280)
    # Cross-modality conversion of another backbone's first convolution.
    rgb = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3))
    flow = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 10))
    copy_weights_by_name(rgb, flow)
    np.testing.assert_allclose(
        flow.get_layer("Conv1").get_weights()[0],
        cross_modality_kernel(rgb.get_layer("Conv1").get_weights()[0], 10),
    )
    with pytest.raises(ValueError, match="NoSuchNet"):
        build_extractor(recipe("appearance", backbone="NoSuchNet"))
    with pytest.raises(ValueError, match="fc9"):
        build_extractor(recipe("appearance", feature_layer="fc9", **TINY))


def test_unknown_preprocess_mode_raises():
    with pytest.raises(ValueError, match="'caffee'"):
        prepare_images(generated_video(3), recipe("appearance", input_size=32, preprocess="caffee"))


def test_mixed_precision_extraction_returns_float32_close_to_float32():
    images = prepare_images(generated_video(3), recipe("appearance", **TINY))
    reference = extract_video_features(tiny_extractor("appearance"), images, batch_size=4)
    keras.utils.set_random_seed(0)
    mixed_extractor = build_extractor(recipe("appearance", precision="mixed_bfloat16", **TINY))
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was
    assert mixed_extractor.layers[-1].compute_dtype == "bfloat16"
    features = extract_video_features(mixed_extractor, images, batch_size=4)
    assert features.dtype == np.float32
    scale = np.abs(reference).max()
    assert scale > 0
    np.testing.assert_allclose(features, reference, atol=0.05 * scale)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_keras_file_is_loaded_and_cut_at_its_feature_layer(tmp_path, precision):
    keras.utils.set_random_seed(1)
    network = build_stream_vgg16("motion", weights=None, input_size=32, fc_units=12)
    network.save(tmp_path / "net.keras")
    # Widths come from the file, not from the recipe (whose fc_units say 4096).
    loaded = recipe("motion", weights=str(tmp_path / "net.keras"), input_size=32)
    extractor = build_extractor(dataclasses.replace(loaded, precision=precision))
    assert extractor.layers[-1].compute_dtype == (
        "float32" if precision == "float32" else "bfloat16"
    )
    assert describe_network(loaded, extractor).fc_units == 12
    images = prepare_images(generated_video(10), loaded)
    expected = feature_extractor(network).predict(images, verbose=0)
    features = extract_video_features(extractor, images, batch_size=4)
    tolerance = 1e-5 if precision == "float32" else 0.05 * np.abs(expected).max()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=tolerance)
    with pytest.raises(ValueError, match="input_size=64"):
        build_extractor(dataclasses.replace(loaded, input_size=64))
    with pytest.raises(ValueError, match="appearance"):
        build_extractor(recipe("appearance", weights=loaded.weights, input_size=32))


def test_the_recipe_round_trips_through_its_metadata():
    appearance = recipe("appearance", height=64, width=85, precision="mixed_bfloat16")
    assert appearance.metadata()["frame_size"] == [64, 85]
    assert FeatureRecipe.from_metadata(appearance.metadata()) == appearance
    motion = recipe("motion", preprocess="tf", flow_method="farneback", flow_size=(64, 85))
    assert motion.preprocess == "uint8-128"  # flow stacks are never preprocessed otherwise
    assert "frame_size" not in motion.metadata()
    assert motion.metadata()["flow_size"] == [64, 85]
    assert FeatureRecipe.from_metadata(motion.metadata()) == motion
    # Metadata of a stored video carries more keys; only the recipe's are read.
    stored = {**motion.metadata(), "num_frames": 12, "video_id": "A/v1"}
    assert FeatureRecipe.from_metadata(stored) == motion
    partial = recipe("motion", flow_method="tvl1")  # flow size unknown
    assert FeatureRecipe.from_metadata(partial.metadata()) == partial


def test_chunks_of_any_size_give_the_same_batches():
    extractor = tiny_extractor("motion")
    motion = recipe("motion", **TINY)
    video = generated_video(10, num_images=23)
    expected = extract_video_features(extractor, prepare_images(video, motion), batch_size=4)
    for size in (1, 3, 4, 9, 23):
        chunks = [video[start : start + size] for start in range(0, 23, size)]
        features = extract_chunked_features(extractor, chunks, motion, batch_size=4)
        np.testing.assert_array_equal(features, expected)
    with pytest.raises(ValueError, match="no images"):
        extract_chunked_features(extractor, [], motion)
