"""Tests of the two-stream VGG16: architecture, cross-modality init, extractors, preprocessing."""

import keras
import numpy as np
import pytest

from temporal_attention.models.feature_extraction import FeatureRecipe, build_extractor
from temporal_attention.models.two_stream_vgg16 import (
    build_stream_vgg16,
    build_vgg16,
    copy_weights_by_name,
    cross_modality_kernel,
    feature_extractor,
    load_pretrained,
    preprocess_flow,
    preprocess_rgb,
)

TINY = {"input_size": 32, "fc_units": 16}


def randomise(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every weight (biases too) distinct random values."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_architecture_matches_keras_vgg16_layer_by_layer():
    ours = build_vgg16((32, 32, 3), fc_units=4096)
    keras_vgg = keras.applications.VGG16(weights=None, include_top=True, input_shape=(32, 32, 3))

    def named_layers(model):
        # Input layers get process-wide counters in their names (input_layer_6): skip them.
        return [
            (layer.name, [w.shape for w in layer.weights])
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]

    assert named_layers(ours) == named_layers(keras_vgg)
    assert len(named_layers(ours)) == 22


def test_cross_modality_initialisation_weight_by_weight():
    rgb = randomise(build_stream_vgg16("appearance", weights=None, num_classes=5, **TINY))
    flow = build_stream_vgg16("motion", weights=None, num_classes=5, **TINY)
    copied = copy_weights_by_name(rgb, flow)
    assert len(copied) == 16  # 13 convolutions and 3 dense layers

    rgb_kernel, rgb_bias = rgb.get_layer("block1_conv1").get_weights()
    flow_kernel, flow_bias = flow.get_layer("block1_conv1").get_weights()
    assert flow_kernel.shape == (3, 3, 10, 64)
    for channel in range(10):
        np.testing.assert_allclose(flow_kernel[:, :, channel], rgb_kernel.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(flow_bias, rgb_bias)
    for rgb_layer, flow_layer in zip(rgb.layers[2:], flow.layers[2:], strict=True):
        assert rgb_layer.name == flow_layer.name
        for rgb_weight, flow_weight in zip(
            rgb_layer.get_weights(), flow_layer.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(flow_weight, rgb_weight)


def test_cross_modality_kernel_matches_a_hand_computed_value():
    kernel = np.zeros((1, 1, 3, 2), dtype="float32")
    kernel[0, 0, :, 0] = [1.0, 2.0, 6.0]
    kernel[0, 0, :, 1] = [-3.0, 0.0, 0.0]
    converted = cross_modality_kernel(kernel, 10)
    assert converted.shape == (1, 1, 10, 2)
    np.testing.assert_allclose(converted[0, 0, :, 0], np.full(10, 3.0))
    np.testing.assert_allclose(converted[0, 0, :, 1], np.full(10, -1.0))


def test_weights_from_a_keras_file_rgb_source_is_converted_flow_source_copied(tmp_path):
    rgb = randomise(build_stream_vgg16("appearance", weights=None, num_classes=5, **TINY), 1)
    rgb_path = tmp_path / "rgb.keras"
    rgb.save(rgb_path)
    motion = build_stream_vgg16("motion", weights=rgb_path, num_classes=7, **TINY)
    kernel = motion.get_layer("block1_conv1").get_weights()[0]
    np.testing.assert_allclose(
        kernel, cross_modality_kernel(rgb.get_layer("block1_conv1").get_weights()[0], 10)
    )
    # New classes: the classifier keeps its fresh initialisation, its width is 7.
    assert motion.get_layer("predictions").get_weights()[0].shape == (16, 7)

    flow_path = tmp_path / "flow.keras"
    randomise(motion, 2).save(flow_path)
    extractor = build_extractor(FeatureRecipe(stream="motion", weights=str(flow_path), **TINY))
    for layer in extractor.layers[1:]:
        for ours, theirs in zip(
            layer.get_weights(), motion.get_layer(layer.name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)


def test_mismatched_source_raises_naming_the_layer():
    source = build_vgg16((32, 32, 3), fc_units=16)
    target = build_vgg16((32, 32, 3), fc_units=8)
    with pytest.raises(ValueError, match="fc1"):
        copy_weights_by_name(source, target)


@pytest.mark.parametrize("weights", ["imagenet21k", "model.onnx"])
def test_unknown_weights_raise(weights):
    with pytest.raises(ValueError, match="weights="):
        load_pretrained(build_vgg16((32, 32, 3), fc_units=4), weights)


@pytest.mark.parametrize(("stream", "channels"), [("appearance", 3), ("motion", 10)])
def test_extractors_at_full_size_output_4096_fc6_features(stream, channels):
    extractor = build_extractor(FeatureRecipe(stream=stream, weights="none"))
    assert extractor.input_shape == (None, 224, 224, channels)
    assert extractor.output_shape == (None, 4096)
    assert extractor.layers[-1].name == "fc1"
    images = np.random.default_rng(0).normal(size=(2, 224, 224, channels)).astype("float32")
    features = extractor.predict_on_batch(images)
    assert features.shape == (2, 4096)
    assert features.min() >= 0.0  # FC6 after its ReLU


def test_feature_extractor_shares_weights_and_names_a_missing_layer():
    model = randomise(build_stream_vgg16("appearance", weights=None, **TINY))
    extractor = feature_extractor(model)
    images = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    fc1 = keras.Model(model.input, model.get_layer("fc1").output).predict_on_batch(images)
    np.testing.assert_allclose(extractor.predict_on_batch(images), fc1)
    with pytest.raises(ValueError, match="fc6"):
        feature_extractor(model, "fc6")


def test_preprocess_rgb_is_keras_caffe_mode():
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    expected = keras.applications.vgg16.preprocess_input(frames.astype("float32"))
    np.testing.assert_allclose(preprocess_rgb(frames), expected, rtol=1e-6)
    red = np.array([[[255, 0, 0]]], dtype=np.uint8)
    np.testing.assert_allclose(preprocess_rgb(red)[0, 0], [-103.939, -116.779, 255 - 123.68])
    with pytest.raises(ValueError, match="shape"):
        preprocess_rgb(np.zeros((2, 4, 4, 10), dtype=np.uint8))


def test_preprocess_flow_centres_uint8_at_128():
    stacks = np.array([0, 127, 128, 255], dtype=np.uint8).reshape(1, 1, 4, 1)
    stacks = np.repeat(stacks, 10, axis=-1)
    processed = preprocess_flow(stacks)
    assert processed.dtype == np.float32
    np.testing.assert_array_equal(processed[0, 0, :, 0], [-128.0, -1.0, 0.0, 127.0])
    with pytest.raises(ValueError, match="dtype"):
        preprocess_flow(stacks.astype("float32"))


def test_width_multiplier_scales_every_convolution():
    quarter = build_vgg16((32, 32, 3), fc_units=8, width_multiplier=0.25)
    full = build_vgg16((32, 32, 3), fc_units=8)
    for layer in full.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert quarter.get_layer(layer.name).filters == layer.filters // 4
    with pytest.raises(ValueError, match="width_multiplier"):
        build_vgg16((32, 32, 3), width_multiplier=0.0)


def test_batch_norm_variant_keeps_vgg16_names_and_loads_into_itself():
    model = build_vgg16((32, 32, 3), fc_units=8, width_multiplier=0.25, batch_norm=True)
    names = [layer.name for layer in model.layers]
    assert "block1_conv1_bn" in names and "block5_conv3_relu" in names
    assert model.get_layer("block1_conv1").activation.__name__ == "linear"
    plain = build_vgg16((32, 32, 3), fc_units=8, width_multiplier=0.25)
    assert "block1_conv1_bn" not in [layer.name for layer in plain.layers]
    assert plain.get_layer("block1_conv1").activation.__name__ == "relu"


def test_imagenet_weights_without_network_say_where_the_file_goes(monkeypatch, tmp_path):
    def offline(**kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="vgg16_weights_tf_dim_ordering_tf_kernels.h5") as error:
        load_pretrained(build_vgg16((32, 32, 3), fc_units=4), "imagenet")
    assert str(tmp_path / "models") in str(error.value) and "URL fetch" in str(error.value)
