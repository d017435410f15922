"""Tests of TemporalAttentionLSTM, run on every Keras backend (marker `multibackend`)."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from temporal_attention.models import TemporalAttentionLSTM
from tests.attention_reference import attention_lstm_reference

pytestmark = pytest.mark.multibackend

BATCH, FRAMES, DIM, UNITS, STEPS = 3, 7, 6, 4, 5


def make_layer(scale=0.5, seed=0, layer_seed=None, **kwargs):
    """A built layer with fixed random weights, and those weights for the reference."""
    config = dict(units=UNITS, num_layers=2, num_steps=STEPS, dropout=0.0, seed=layer_seed)
    config.update(kwargs)
    layer = TemporalAttentionLSTM(**config)
    layer.build((None, FRAMES, DIM))
    rng = np.random.default_rng(seed)
    values = {}
    for variable in layer.weights:
        value = rng.uniform(-scale, scale, size=tuple(variable.shape)).astype("float32")
        variable.assign(value)
        values[variable.path.split("/", 1)[1]] = value.astype("float64")
    reference = {
        "w_a": values.get("attention_state_kernel", np.zeros((UNITS, 1)))[:, 0],
        "u_a": values.get("attention_feature_kernel", np.zeros((DIM, 1)))[:, 0],
        "b_a": values.get("attention_bias", 0.0),
        "init_kernel": values.get("initial_state_kernel"),
        "init_bias": values.get("initial_state_bias"),
        "layers": [
            tuple(
                values[f"lstm_cell_{k}/{name}"] for name in ("kernel", "recurrent_kernel", "bias")
            )
            for k in range(1, config["num_layers"] + 1)
        ],
    }
    return layer, reference


def random_features(seed=1, batch=BATCH, frames=FRAMES):
    return np.random.default_rng(seed).normal(size=(batch, frames, DIM)).astype("float32")


def run(layer, features, **kwargs):
    outputs, weights = layer(features, return_attention_weights=True, **kwargs)
    return ops.convert_to_numpy(outputs), ops.convert_to_numpy(weights)


# === Equations ===


@pytest.mark.parametrize("use_attention", [True, False])
@pytest.mark.parametrize("state_initializer", ["mean_feature", "zeros"])
def test_matches_numpy_reference_of_equations_3_to_6(use_attention, state_initializer):
    layer, reference = make_layer(use_attention=use_attention, state_initializer=state_initializer)
    features = random_features()
    outputs, weights = run(layer, features)
    expected_outputs, expected_weights = attention_lstm_reference(
        features, reference, STEPS, use_attention=use_attention
    )
    assert outputs.shape == (BATCH, STEPS, UNITS)
    assert weights.shape == (BATCH, STEPS, FRAMES)
    np.testing.assert_allclose(outputs, expected_outputs, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)


def test_three_layers_match_reference():
    layer, reference = make_layer(num_layers=3)
    features = random_features()
    outputs, _ = run(layer, features)
    expected, _ = attention_lstm_reference(features, reference, STEPS)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_attention_changes_over_steps_and_differs_from_uniform():
    layer, _ = make_layer(scale=1.0)
    _, weights = run(layer, random_features())
    assert np.abs(weights - 1.0 / FRAMES).max() > 1e-3
    assert np.abs(weights[:, 1:] - weights[:, :-1]).max() > 1e-6


def test_first_layer_step_equals_keras_lstm_cell():
    """The precomputed-projection path uses Keras' own gate layout and activations."""
    layer, _ = make_layer()
    cell = layer.cells[0]
    rng = np.random.default_rng(3)
    x = ops.convert_to_tensor(rng.normal(size=(BATCH, DIM)).astype("float32"))
    h, c = (ops.convert_to_tensor(rng.normal(size=(BATCH, UNITS)), "float32") for _ in range(2))
    expected, (expected_h, expected_c) = cell(x, [h, c])
    projected = ops.matmul(x, cell.kernel)
    output, (new_h, new_c) = layer._first_layer_step(projected, [h, c])
    for got, want in ((output, expected), (new_h, expected_h), (new_c, expected_c)):
        np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(want), atol=1e-6)


@pytest.mark.parametrize("use_attention", [True, False])
def test_precomputed_projection_equals_running_the_cell_on_x_t(use_attention):
    fast, _ = make_layer(scale=1.0, use_attention=use_attention, dropout=0.3, seed=2)
    slow, _ = make_layer(
        scale=1.0, use_attention=use_attention, dropout=0.3, seed=2,
        precompute_input_projection=False,
    )  # fmt: skip
    features = random_features()
    for got, want in zip(run(slow, features), run(fast, features), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("use_attention", [True, False])
def test_unrolled_steps_equal_the_scanned_loop(use_attention):
    """`unroll=True` (num_steps copies of the step) and the default loop give one result,
    with dropout on and padded frames."""
    config = dict(scale=1.0, use_attention=use_attention, dropout=0.3, seed=2, layer_seed=5)
    scanned, reference = make_layer(**config, unroll=False)
    unrolled, _ = make_layer(**config, unroll=True)
    features = random_features()
    mask = np.ones((BATCH, FRAMES), bool)
    mask[1, 4:] = False
    for training in (False, True):  # one seed, so the same dropout masks
        got = run(scanned, features, mask=mask, training=training)
        want = run(unrolled, features, mask=mask, training=training)
        for got_part, want_part in zip(got, want, strict=True):
            np.testing.assert_allclose(got_part, want_part, atol=1e-5)
    expected, _ = attention_lstm_reference(
        features[:1], reference, STEPS, use_attention=use_attention
    )
    np.testing.assert_allclose(run(unrolled, features[:1])[0], expected, atol=1e-5)


def test_training_steps_through_the_loop_equal_unrolled_ones():
    """Gradients through the scanned loop equal those through the unrolled steps."""
    rng = np.random.default_rng(6)
    features = random_features(seed=7, batch=8)
    labels = rng.integers(0, 3, size=(8, STEPS))
    trained = []
    for unroll in (False, True):
        layer, _ = make_layer(scale=0.5, unroll=unroll)
        assert make_layer()[0].unroll is None  # the default: loop on JAX only
        inputs = keras.Input((FRAMES, DIM))
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(layer(inputs)))
        model.layers[-1].set_weights([np.full((UNITS, 3), 0.1, "float32"), np.zeros(3, "float32")])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        for _ in range(3):
            model.train_on_batch(features, labels)
        trained.append(model.get_weights())
    for scanned, unrolled in zip(*trained, strict=True):
        np.testing.assert_allclose(scanned, unrolled, atol=1e-5)


# === Properties of the attention weights ===


def test_attention_rows_sum_to_one():
    layer, _ = make_layer(scale=1.0)
    _, weights = run(layer, random_features())
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    assert (weights >= 0).all()


def test_ratio_of_weights_never_exceeds_e_squared():
    # Large weights saturate the tanh of eq. 5: the ratio reaches its bound, never more.
    layer, _ = make_layer(scale=3.0)
    features = 10 * random_features(frames=20)
    _, weights = run(layer, features)
    ratio = weights.max(axis=-1) / weights.min(axis=-1)
    assert ratio.max() <= math.e**2 * (1 + 1e-4)
    assert ratio.max() > 5.0  # saturated: the bound is approached, so the test can fail


def test_without_attention_weights_are_uniform():
    layer, _ = make_layer(use_attention=False, scale=1.0)
    _, weights = run(layer, random_features())
    np.testing.assert_allclose(weights, 1.0 / FRAMES, atol=1e-7)
    assert not any(variable.name.startswith("attention") for variable in layer.weights)


def test_invariant_to_frame_order():
    layer, _ = make_layer(scale=1.0)
    features = random_features()
    permutation = np.random.default_rng(5).permutation(FRAMES)
    outputs, weights = run(layer, features)
    permuted_outputs, permuted_weights = run(layer, features[:, permutation])
    np.testing.assert_allclose(permuted_outputs, outputs, atol=1e-5)
    np.testing.assert_allclose(permuted_weights, weights[:, :, permutation], atol=1e-6)


# === Masks ===


def padded(features, num_real, fill):
    """Features with frames from `num_real` on replaced by `fill`, and the mask."""
    result = features.copy()
    result[:, num_real:] = fill
    mask = np.zeros(features.shape[:2], bool)
    mask[:, :num_real] = True
    return result, mask


@pytest.mark.parametrize("use_attention", [True, False])
def test_masked_frames_get_zero_weight_and_change_nothing(use_attention):
    layer, _ = make_layer(scale=1.0, use_attention=use_attention)
    features = random_features()
    num_real = 4
    # Padding by repeating the last real frame, as the sample builder does, and by noise.
    for fill in (features[:, num_real - 1 : num_real], 100.0):
        padded_features, mask = padded(features, num_real, fill)
        outputs, weights = run(layer, padded_features, mask=mask)
        expected_outputs, expected_weights = run(layer, features[:, :num_real])
        assert (weights[:, :, num_real:] == 0).all()
        np.testing.assert_allclose(outputs, expected_outputs, atol=1e-5)
        np.testing.assert_allclose(weights[:, :, :num_real], expected_weights, atol=1e-6)


def test_mask_with_different_lengths_matches_reference():
    layer, reference = make_layer(scale=1.0)
    features = random_features()
    mask = np.ones((BATCH, FRAMES), bool)
    mask[0, 5:] = False
    mask[1, 2:] = False
    outputs, weights = run(layer, features, mask=mask)
    expected_outputs, expected_weights = attention_lstm_reference(
        features, reference, STEPS, mask=mask
    )
    np.testing.assert_allclose(outputs, expected_outputs, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)


def test_keras_mask_from_masking_layer_is_honoured():
    layer, _ = make_layer(scale=1.0)
    features = random_features()
    num_real = 5
    zero_padded, _ = padded(features, num_real, 0.0)
    inputs = keras.Input((FRAMES, DIM))
    model = keras.Model(inputs, layer(keras.layers.Masking(0.0)(inputs)))
    masked_outputs = ops.convert_to_numpy(model(zero_padded))
    expected, _ = run(layer, features[:, :num_real])
    np.testing.assert_allclose(masked_outputs, expected, atol=1e-5)


# === Dropout ===


def test_dropout_only_in_training():
    layer, _ = make_layer(dropout=0.5, use_attention=False, scale=1.0)
    features = random_features()
    inference = ops.convert_to_numpy(layer(features, training=False))
    np.testing.assert_allclose(inference, ops.convert_to_numpy(layer(features)), atol=0)
    training = ops.convert_to_numpy(layer(features, training=True))
    assert np.abs(training - inference).max() > 1e-4


def test_dropout_is_not_applied_to_recurrent_state():
    # With one layer and zero-weight input kernel, the input is ignored; any change
    # in training mode would have to come from dropout on recurrent connections.
    layer, _ = make_layer(dropout=0.9, num_layers=1, scale=1.0)
    layer.cells[0].kernel.assign(np.zeros(layer.cells[0].kernel.shape, "float32"))
    features = random_features()
    inference = ops.convert_to_numpy(layer(features, training=False))
    training = ops.convert_to_numpy(layer(features, training=True))
    np.testing.assert_allclose(training, inference, atol=1e-6)


# === Configuration and serialization ===


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": 0}, "units"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_steps": 0}, "num_steps=0"),
        ({"dropout": 1.0}, "dropout"),
        ({"state_initializer": "random"}, "state_initializer"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TemporalAttentionLSTM(**kwargs)


def test_unknown_feature_size_raises():
    with pytest.raises(ValueError, match="feature size"):
        TemporalAttentionLSTM(units=4).build((None, 5, None))


def test_get_config_round_trip():
    layer = TemporalAttentionLSTM(
        units=8,
        num_layers=3,
        num_steps=7,
        use_attention=False,
        dropout=0.25,
        state_initializer="zeros",
        kernel_regularizer=keras.regularizers.L2(1e-3),
        precompute_input_projection=False,
        unroll=True,
        seed=4,
    )
    config = layer.get_config()
    restored = TemporalAttentionLSTM.from_config(config)
    assert restored.get_config() == config
    assert (restored.units, restored.num_layers, restored.num_steps) == (8, 3, 7)
    assert restored.use_attention is False and restored.state_initializer == "zeros"
    assert isinstance(restored.kernel_regularizer, keras.regularizers.L2)
    assert restored.precompute_input_projection is False and restored.unroll is True


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    layer, _ = make_layer(scale=1.0)
    inputs = keras.Input((FRAMES, DIM))
    outputs = keras.layers.Dense(3)(layer(inputs))
    model = keras.Model(inputs, outputs)
    features = random_features()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[1], TemporalAttentionLSTM)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded(features)), ops.convert_to_numpy(model(features))
    )


def test_works_in_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((FRAMES, DIM)),
            TemporalAttentionLSTM(units=UNITS, num_steps=STEPS),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    assert model(random_features()).shape == (BATCH, STEPS, 2)


def test_batched_result_equals_per_item_results():
    layer, _ = make_layer(scale=1.0)
    features = random_features()
    batched, _ = run(layer, features)
    for index in range(BATCH):
        single, _ = run(layer, features[index : index + 1])
        np.testing.assert_allclose(single[0], batched[index], atol=1e-5)
