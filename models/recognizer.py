"""The attention recogniser of section 2: layer, per-step softmax, loss and optimiser.

`build_attention_model` returns the paper's model, `(batch, frames, features)` in,
`(batch, num_steps, num_classes)` class probabilities out (eq. 7), compiled with
the loss of eq. 8 and the Theano-style Adadelta of section 3.2.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from temporal_attention.models.temporal_attention_lstm import TemporalAttentionLSTM

# Paper silent. Eq. 8 sums the cross-entropy over the 30 steps (about 30 * ln C
# at the start), so a weak decay keeps the squared-weight term a small fraction
# of the loss; 1e-5 * sum(theta^2) is about 0.05 for the default initialisation.
DEFAULT_WEIGHT_DECAY = 1e-5
# Paper silent. 0.5 is the rate of Zaremba et al. (the paper's LSTM, eq. 3) and of
# the attention models this paper descends from (Sharma et al. 2015).
DEFAULT_DROPOUT = 0.5
# Section 3.2: the score of a sample is the mean of the last 10 steps.
NUM_SCORED_STEPS = 10
# The optional standardisation of frame features (build_attention_model).
NORMALIZATION_LAYER = "feature_normalization"


def paper_optimizer(learning_rate: float = 1.0) -> keras.optimizers.Optimizer:
    """Adadelta as in Theano (Zeiler 2012): learning rate 1.0, rho 0.95, eps 1e-6."""
    if learning_rate <= 0:
        raise ValueError(f"Expected learning_rate > 0. Received: learning_rate={learning_rate}")
    return keras.optimizers.Adadelta(learning_rate=learning_rate, rho=0.95, epsilon=1e-6)


@keras.saving.register_keras_serializable(package="temporal_attention")
class StepwiseCrossEntropy(keras.losses.Loss):
    """Cross-entropy summed over the steps, the video label at every step (eq. 8).

    `y_true`: integer labels `(batch,)` (repeated at every step) or
    `(batch, steps)`; or class distributions `(batch, 1, classes)` (repeated at every
    step) or `(batch, steps, classes)`, the soft labels of mixup (`data.samples.
    MixupDataset`, an extension). `y_pred`: probabilities `(batch, steps, classes)`.
    Returns one value per sample; the default reduction averages the batch.
    The weight-decay term of eq. 8 comes from the layers' `L2` regularizers.
    """

    def __init__(self, name: str = "stepwise_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if len(y_true.shape) == 3:  # class distributions, (batch, 1 or steps, classes)
            targets = ops.broadcast_to(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
            return ops.sum(ops.categorical_crossentropy(targets, y_pred), axis=-1)  # (batch,)
        batch_size, num_steps = ops.shape(y_pred)[0], ops.shape(y_pred)[1]
        labels = ops.reshape(ops.cast(y_true, "int32"), (batch_size, -1))
        labels = ops.broadcast_to(labels, (batch_size, num_steps))  # (batch, steps)
        step_losses = ops.sparse_categorical_crossentropy(labels, y_pred)  # (batch, steps)
        return ops.sum(step_losses, axis=-1)


def last_steps_scores(probabilities, num_last_steps: int = NUM_SCORED_STEPS):
    """Sample score of section 3.2: mean of the last steps' class probabilities."""
    return ops.mean(probabilities[:, -num_last_steps:, :], axis=1)  # (batch, classes)


@keras.saving.register_keras_serializable(package="temporal_attention")
class LastStepsAccuracy(keras.metrics.MeanMetricWrapper):
    """Sample accuracy of the mean of the last `num_last_steps` steps (section 3.2)."""

    def __init__(
        self, num_last_steps: int = NUM_SCORED_STEPS, name="last_steps_accuracy", **kwargs
    ):
        self.num_last_steps = num_last_steps
        super().__init__(fn=self._accuracy, name=name, **kwargs)

    def _accuracy(self, y_true, y_pred):
        batch_size = ops.shape(y_pred)[0]
        if len(y_true.shape) == 3:  # class distributions: their most likely class
            labels = ops.cast(ops.argmax(y_true[:, 0, :], axis=-1), "int32")
        else:
            labels = ops.reshape(ops.cast(y_true, "int32"), (batch_size, -1))[:, 0]
        predicted = ops.argmax(last_steps_scores(y_pred, self.num_last_steps), axis=-1)
        return ops.cast(ops.equal(ops.cast(predicted, "int32"), labels), "float32")

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_last_steps": self.num_last_steps}


def build_attention_model(
    num_classes: int,
    *,
    feature_dim: int = 4096,
    num_frames: int | None = 30,
    units: int = 512,
    num_layers: int = 2,
    num_steps: int = 30,
    use_attention: bool = True,
    dropout: float = DEFAULT_DROPOUT,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    state_initializer: str = "mean_feature",
    frame_mask_input: bool = False,
    precompute_input_projection: bool = True,
    unroll: bool | None = None,
    feature_mean: np.ndarray | None = None,
    feature_variance: np.ndarray | None = None,
    learning_rate: float = 1.0,
    compile: bool = True,
    jit_compile: bool | str = "auto",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """The paper's recogniser: temporal attention LSTM and a softmax at every step.

    Args:
        num_classes: Number of action classes C.
        feature_dim: Size of a frame feature (4096 for VGG16 FC6).
        num_frames: Frames per sample (30, section 3.2); `None` for any length.
        units, num_layers, num_steps, use_attention, dropout, state_initializer,
            precompute_input_projection, unroll, seed: passed to
            `TemporalAttentionLSTM`.
            `dropout` also acts on the top layer's output before the
            classifier (Zaremba et al.).
        weight_decay: gamma of eq. 8, as `L2(gamma)` on every parameter
            (kernels, recurrent kernels, biases, attention and classifier).
        frame_mask_input: If `True`, the model takes a second input
            `frame_mask` `(batch, frames)` (bool, `True` for real frames), for
            samples padded to `num_frames`.
        feature_mean, feature_variance: Per-dimension statistics `(feature_dim,)`
            of the training features. Given, a `feature_normalization` layer
            standardises every frame feature before the attention LSTM (an
            extension; the paper feeds FC6 as is). Default `None`: no scaling.
        learning_rate: Of the paper's Adadelta (Zeiler 2012: 1.0).
        compile: Compile with `StepwiseCrossEntropy`, the paper's Adadelta and
            `LastStepsAccuracy`.
        jit_compile: Passed to `model.compile`: `"auto"` (Keras' default: XLA on
            TensorFlow and JAX) or `False` (TensorFlow: plain graphs; JAX: eager).

    Returns:
        A Functional `keras.Model` with layers `temporal_attention_lstm`,
        `output_dropout` and `classifier`, output `(batch, num_steps, C)`.
    """
    if num_classes < 2:
        raise ValueError(f"Expected num_classes >= 2. Received: num_classes={num_classes}")
    if weight_decay < 0:
        raise ValueError(f"Expected weight_decay >= 0. Received: weight_decay={weight_decay}")
    decay = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None

    # === Inputs ===
    features = keras.Input((num_frames, feature_dim), name="features")
    inputs = features
    frame_mask = None
    if frame_mask_input:
        frame_mask = keras.Input((num_frames,), dtype="bool", name="frame_mask")
        inputs = {"features": features, "frame_mask": frame_mask}

    # === Layers ===
    attention_lstm = TemporalAttentionLSTM(
        units=units,
        num_layers=num_layers,
        num_steps=num_steps,
        use_attention=use_attention,
        dropout=dropout,
        state_initializer=state_initializer,
        kernel_regularizer=decay,
        recurrent_regularizer=decay,
        bias_regularizer=decay,
        attention_regularizer=decay,
        precompute_input_projection=precompute_input_projection,
        unroll=unroll,
        seed=seed,
        name="temporal_attention_lstm",
    )
    output_dropout = keras.layers.Dropout(
        dropout, noise_shape=(None, 1, units), seed=seed, name="output_dropout"
    )
    classifier = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=decay,
        bias_regularizer=decay,
        dtype="float32",  # under a mixed dtype policy too: the softmax and loss in float32
        name="classifier",
    )

    normalization = None
    if (feature_mean is None) != (feature_variance is None):
        raise ValueError("Expected feature_mean and feature_variance together, or neither.")
    if feature_mean is not None:
        normalization = keras.layers.Normalization(
            axis=-1,
            mean=np.asarray(feature_mean, dtype=np.float32),
            variance=np.asarray(feature_variance, dtype=np.float32),
            name=NORMALIZATION_LAYER,
        )

    # === Graph ===
    frames = normalization(features) if normalization is not None else features
    hidden = attention_lstm(frames, mask=frame_mask)  # (batch, steps, units)
    probabilities = classifier(output_dropout(hidden))  # (batch, steps, classes), eq. 7
    if name is None:
        name = "temporal_attention" if use_attention else "mean_pooling_baseline"
    model = keras.Model(inputs, probabilities, name=name)
    if compile:
        model.compile(
            optimizer=paper_optimizer(learning_rate),
            loss=StepwiseCrossEntropy(),
            metrics=[LastStepsAccuracy()],
            jit_compile=jit_compile,
        )
    return model


def build_attention_readout(model: keras.Model) -> keras.Model:
    """A model computing `model`'s outputs together with the attention weights.

    Outputs a dict: `probabilities` `(batch, steps, classes)` and `attention`
    `(batch, steps, frames)`. Use it on a trained model for Fig. 1 style plots.
    The attention layer is a copy holding the trained weights at the time of
    the call (Keras wires a reused layer by the outputs of its first call, so
    the model's own layer cannot also return its weights); the classifier is
    shared.
    """
    trained = model.get_layer("temporal_attention_lstm")
    attention_lstm = TemporalAttentionLSTM.from_config(trained.get_config())
    inputs = model.input
    if isinstance(inputs, dict):
        features, frame_mask = inputs["features"], inputs["frame_mask"]
    else:
        features, frame_mask = inputs, None
    if any(layer.name == NORMALIZATION_LAYER for layer in model.layers):
        features = model.get_layer(NORMALIZATION_LAYER)(features)
    hidden, attention = attention_lstm(features, mask=frame_mask, return_attention_weights=True)
    attention_lstm.set_weights(trained.get_weights())
    probabilities = model.get_layer("classifier")(model.get_layer("output_dropout")(hidden))
    return keras.Model(
        inputs,
        {"probabilities": probabilities, "attention": attention},
        name=f"{model.name}_readout",
    )
