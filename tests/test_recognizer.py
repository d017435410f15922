"""Tests of the attention recogniser (eqs. 7-8, Adadelta), run on every Keras backend."""

import keras
import numpy as np
import pytest
from keras import ops

from temporal_attention.models import (
    LastStepsAccuracy,
    StepwiseCrossEntropy,
    TemporalAttentionLSTM,
    build_attention_model,
    build_attention_readout,
)
from tests.attention_reference import softmax_classifier_reference

pytestmark = pytest.mark.multibackend

FRAMES, DIM, UNITS, STEPS, CLASSES = 8, 6, 4, 5, 3


def tiny_model(**kwargs):
    config = dict(
        feature_dim=DIM, num_frames=FRAMES, units=UNITS, num_steps=STEPS, dropout=0.0, seed=0
    )
    config.update(kwargs)
    return build_attention_model(CLASSES, **config)


def random_features(batch=4, frames=FRAMES, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, frames, DIM)).astype("float32")


def sparse_key_frames(num_videos, rng, frames=30, dim=8, num_key=3, signal=2.0, marker=4.0):
    """Toy videos where only `num_key` frames carry the label, at random positions.

    Every frame is N(0, 1) noise; a key frame adds `signal` on the dimension of its
    class and `marker` on the last dimension. Mean pooling dilutes the signal by
    num_key / frames; attention can find the key frames by their marker.
    """
    features = rng.normal(size=(num_videos, frames, dim)).astype("float32")
    labels = rng.integers(0, CLASSES, num_videos)
    key_frames = np.zeros((num_videos, frames), bool)
    for index in range(num_videos):
        key = rng.choice(frames, num_key, replace=False)
        key_frames[index, key] = True
        features[index, key, labels[index]] += signal
        features[index, key, dim - 1] += marker
    return features, labels, key_frames


# === Model, loss and optimiser ===


def test_outputs_a_softmax_at_every_step_matching_eq_7():
    model = tiny_model()
    features = random_features()
    probabilities = ops.convert_to_numpy(model(features))
    assert probabilities.shape == (4, STEPS, CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    hidden = ops.convert_to_numpy(model.get_layer("temporal_attention_lstm")(features))
    kernel, bias = (ops.convert_to_numpy(w) for w in model.get_layer("classifier").weights)
    expected = softmax_classifier_reference(hidden, kernel, bias)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_stepwise_cross_entropy_sums_steps_and_averages_batch():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(CLASSES), size=(4, STEPS)).astype("float32")
    labels = np.array([0, 2, 1, 2])
    expected = -np.log(probabilities[np.arange(4), :, labels]).sum(axis=1).mean()
    loss = StepwiseCrossEntropy()
    np.testing.assert_allclose(float(loss(labels, probabilities)), expected, rtol=1e-5)
    per_step_labels = np.repeat(labels[:, None], STEPS, axis=1)
    np.testing.assert_allclose(float(loss(per_step_labels, probabilities)), expected, rtol=1e-5)


def test_stepwise_cross_entropy_of_class_distributions_mixes_the_labels_losses():
    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(CLASSES), size=(4, STEPS)).astype("float32")
    first, second = np.array([0, 2, 1, 2]), np.array([1, 1, 0, 0])
    weights = np.array([1.0, 0.3, 0.5, 0.9], "float32")
    eye = np.eye(CLASSES, dtype="float32")
    targets = weights[:, None] * eye[first] + (1 - weights[:, None]) * eye[second]
    loss = StepwiseCrossEntropy()
    per_sample = [
        -np.log(probabilities[np.arange(4), :, labels]).sum(axis=1) for labels in (first, second)
    ]
    expected = (weights * per_sample[0] + (1 - weights) * per_sample[1]).mean()
    np.testing.assert_allclose(float(loss(targets[:, None], probabilities)), expected, rtol=1e-5)
    one_hot = eye[first][:, None]  # one-hot distributions: the integer labels' loss
    np.testing.assert_allclose(
        float(loss(one_hot, probabilities)), float(loss(first, probabilities)), rtol=1e-5
    )
    metric = LastStepsAccuracy()
    metric.update_state(targets[:, None], probabilities)
    expected_accuracy = LastStepsAccuracy()
    expected_accuracy.update_state(np.argmax(targets, axis=-1), probabilities)
    assert float(metric.result()) == pytest.approx(float(expected_accuracy.result()))


def test_last_steps_accuracy_uses_mean_of_last_ten_steps():
    probabilities = np.zeros((2, 30, CLASSES), "float32")
    probabilities[:, :20, 0] = 1.0  # early steps vote for class 0
    probabilities[:, 20:, 1] = 1.0  # the last 10 vote for class 1
    metric = LastStepsAccuracy()
    metric.update_state(np.array([1, 0]), probabilities)
    assert float(metric.result()) == pytest.approx(0.5)


def test_weight_decay_covers_every_parameter():
    gamma = 1e-3
    model = tiny_model(weight_decay=gamma)
    model(random_features())
    expected = gamma * sum(float(np.sum(ops.convert_to_numpy(w) ** 2)) for w in model.weights)
    assert len(model.losses) == len(model.trainable_weights)
    total = sum(float(ops.convert_to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(total, expected, rtol=1e-4)


def test_compiled_with_the_paper_adadelta_and_loss():
    model = tiny_model()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    assert float(optimizer.learning_rate) == pytest.approx(1.0)
    assert optimizer.rho == pytest.approx(0.95)
    assert optimizer.epsilon == pytest.approx(1e-6)
    assert isinstance(model.loss, StepwiseCrossEntropy)


def test_jit_compile_is_keras_default_unless_turned_off():
    assert tiny_model().jit_compile == tiny_model(jit_compile="auto").jit_compile
    assert tiny_model(jit_compile=False).jit_compile is False


def test_paper_defaults():
    model = build_attention_model(101, compile=False)
    layer = model.get_layer("temporal_attention_lstm")
    assert model.input_shape == (None, 30, 4096)
    assert model.output_shape == (None, 30, 101)
    assert (layer.units, layer.num_layers, layer.num_steps) == (512, 2, 30)
    assert layer.use_attention and layer.state_initializer == "mean_feature"


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        build_attention_model(1)
    with pytest.raises(ValueError, match="weight_decay"):
        build_attention_model(3, weight_decay=-1.0)


# === Masks and readout ===


def test_frame_mask_input_padded_equals_unpadded():
    model = tiny_model(frame_mask_input=True, num_frames=None)
    features = random_features()
    num_real = 5
    padded = features.copy()
    padded[:, num_real:] = features[:, num_real - 1 : num_real]  # repeat the last frame
    mask = np.zeros((4, FRAMES), bool)
    mask[:, :num_real] = True
    got = model({"features": padded, "frame_mask": mask})
    want = model({"features": features[:, :num_real], "frame_mask": mask[:, :num_real]})
    np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(want), atol=1e-5)


@pytest.mark.parametrize("frame_mask_input", [False, True])
def test_readout_returns_the_model_outputs_and_the_layer_attention(frame_mask_input):
    model = tiny_model(frame_mask_input=frame_mask_input)
    features = random_features()
    inputs = features
    if frame_mask_input:
        inputs = {"features": features, "frame_mask": np.ones((4, FRAMES), bool)}
    readout = build_attention_readout(model)
    result = readout.predict(inputs, verbose=0)
    np.testing.assert_allclose(result["probabilities"], model.predict(inputs, verbose=0), atol=1e-5)
    _, attention = model.get_layer("temporal_attention_lstm")(
        features, return_attention_weights=True
    )
    np.testing.assert_allclose(result["attention"], ops.convert_to_numpy(attention), atol=1e-6)


def test_saved_model_loads_with_custom_objects_and_identical_predictions(tmp_path):
    model = tiny_model(frame_mask_input=True)
    inputs = {"features": random_features(), "frame_mask": np.ones((4, FRAMES), bool)}
    model.fit(inputs, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.get_layer("temporal_attention_lstm"), TemporalAttentionLSTM)
    assert isinstance(loaded.loss, StepwiseCrossEntropy)
    np.testing.assert_array_equal(
        loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
    )


# === Training ===


def test_fit_lowers_the_loss():
    rng = np.random.default_rng(2)
    features, labels, _ = sparse_key_frames(128, rng, frames=FRAMES, dim=DIM, num_key=4)
    keras.utils.set_random_seed(0)
    model = tiny_model(dropout=0.5)
    history = model.fit(features, labels, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]


def test_attention_beats_mean_pooling_when_few_frames_carry_the_label():
    """The paper's claim on a toy: 3 key frames among 30, found by attention. A result of
    learning, tested on the default backend only (40 s on JAX, 30 on PyTorch): the other
    backends' arithmetic is this file's and test_temporal_attention_lstm.py's to check."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a learning result: tested on the default backend (tensorflow)")
    rng = np.random.default_rng(0)
    train_features, train_labels, _ = sparse_key_frames(1200, rng)
    test_features, test_labels, key_frames = sparse_key_frames(600, rng)
    accuracy = {}
    for use_attention in (True, False):
        keras.utils.set_random_seed(0)
        model = build_attention_model(
            CLASSES, feature_dim=8, units=16, num_steps=5, use_attention=use_attention,
            dropout=0.0, seed=0,
        )  # fmt: skip
        model.fit(train_features, train_labels, epochs=20, batch_size=32, verbose=0)
        result = model.evaluate(test_features, test_labels, verbose=0, return_dict=True)
        accuracy[use_attention] = result["last_steps_accuracy"]
        if use_attention:
            attention = build_attention_readout(model).predict(test_features, verbose=0)
            weights = attention["attention"][:, -1]  # (videos, frames) at the last step
            key_mass = float((weights * key_frames).sum(axis=-1).mean())
    print(f"accuracy attention={accuracy[True]:.3f} mean pooling={accuracy[False]:.3f}")
    print(f"attention mass on key frames {key_mass:.3f} (their share of frames 0.100)")
    assert accuracy[True] >= accuracy[False] + 0.1
    assert key_mass > 0.15  # 1.5 times the uniform share


@pytest.mark.parametrize("use_attention", [True, False])
def test_jit_compiled_training(use_attention):
    if keras.backend.backend() == "torch":
        pytest.skip("jit_compile=True is an XLA option (TensorFlow, JAX); torch runs eagerly")
    rng = np.random.default_rng(3)
    features, labels, _ = sparse_key_frames(64, rng, frames=FRAMES, dim=DIM, num_key=4)
    model = tiny_model(use_attention=use_attention, compile=False)
    model.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-6),
        loss=StepwiseCrossEntropy(),
        jit_compile=True,
    )
    history = model.fit(features, labels, epochs=6, batch_size=16, verbose=0)
    assert model.jit_compile
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
