"""The temporal attention LSTM of Liu, Tian and Wang (ICIP 2017), section 2.2."""

from __future__ import annotations

import keras
from keras import ops

STATE_INITIALIZERS = ("mean_feature", "zeros")

# Score given to masked frames before the softmax. Scores of real frames lie in
# [-1, 1] (eq. 5 ends in tanh), so exp(-1e4) is exactly zero in float16 and up.
_MASKED_SCORE = -1e4


@keras.saving.register_keras_serializable(package="temporal_attention")
class TemporalAttentionLSTM(keras.layers.Layer):
    """Stacked LSTM that re-weights a set of frame features at every step.

    At each of `num_steps` steps the layer scores every frame from the top
    layer's previous output (eq. 5), normalises the scores over the frames
    (eq. 6), feeds the weighted sum of the frame features (eq. 4) into a stack
    of `num_layers` LSTM layers (eq. 3) and emits the top layer's output.
    Every step reads the same set of frames, so the output does not depend on
    the order of the frames.

    Relevance score of frame `i` at step `t` (eq. 5), one scalar per frame:
    `e_i^t = tanh(w_a . h_{t-1} + u_a . v_i + b_a)`, with `h_{t-1}` the top
    layer's previous output. Because of the tanh, one frame can receive at most
    `e**2` (about 7.4) times the weight of another: this is the paper's model.

    Implementation notes:
    - The LSTM layers are `keras.layers.LSTMCell`s. Layer 1 sees
      `x_t = sum_i alpha_i v_i`, so `W x_t = sum_i alpha_i (W v_i)`: the layer
      computes `W V` and `u_a . V` once per call and each step only mixes the
      precomputed rows, with the cell's own kernel, bias and activations.
      Layers 2.. call their cell directly.
    - Dropout acts on the non-recurrent connections only (Zaremba et al.
      2014): the input of every LSTM layer. Its masks are drawn once per call
      and shared by all steps.
    - The initial `h_0, c_0` of every layer is `tanh(W_init mean_i(v_i) + b)`
      (`state_initializer="mean_feature"`, as in the Theano code of Xu et al.
      2015 and Sharma et al. 2015), or zeros.

    Args:
        units: Positive integer, cells per LSTM layer. Default 512 (paper).
        num_layers: Positive integer, stacked LSTM layers. Default 2 (paper).
        num_steps: Positive integer, recurrent steps, one output per step.
            Default 30 (paper).
        use_attention: Boolean. `False` gives the paper's baseline,
            `x_t = mean_i v_i` at every step (and no attention weights).
            Default `True`.
        dropout: Float in [0, 1), dropout rate on the input of every LSTM
            layer. Default 0.5.
        state_initializer: `"mean_feature"` (default) or `"zeros"`.
        kernel_initializer: Initializer of the input kernels (LSTM and
            initial state). Default `"glorot_uniform"`.
        recurrent_initializer: Initializer of the recurrent kernels.
            Default `"orthogonal"`.
        bias_initializer: Initializer of all biases. Default `"zeros"`.
        attention_initializer: Initializer of `w_a` and `u_a` (eq. 5).
            Default `"glorot_uniform"`.
        unit_forget_bias: Boolean, add 1 to the forget-gate bias at
            initialisation, as `keras.layers.LSTM` does. Default `True`.
        kernel_regularizer: Regularizer of the input kernels. Default `None`.
        recurrent_regularizer: Regularizer of the recurrent kernels.
            Default `None`.
        bias_regularizer: Regularizer of all biases, `b_a` included.
            Default `None`.
        attention_regularizer: Regularizer of `w_a` and `u_a`. Default `None`.
        precompute_input_projection: Boolean. `True` (default) computes
            `W V` once per call and mixes its rows at each step; `False` runs
            layer 1's `LSTMCell` on `x_t` at each step. Same result; `False`
            exists for comparison (see `benchmarks/model_benchmark.py`).
        unroll: `None` (default), `False` or `True`. `False` runs the steps as
            one compiled loop (`keras.ops.scan`: `lax.scan` on JAX), so the
            graph holds one step and its compile time does not grow with
            `num_steps`; `True` writes `num_steps` copies of the step into the
            graph. `None` loops on JAX and writes the steps out on TensorFlow
            and PyTorch (on TensorFlow the loop's steps ran 1.2x slower on a
            CPU, and Keras' TensorFlow `scan` cannot be XLA-compiled with
            `jit_compile=True`; on PyTorch both are the same Python loop).
            Same result either way.
        seed: Integer seed of the dropout masks. Default `None`.

    Call arguments:
        features: Frame features of shape `(batch, frames, features)`.
        mask: Optional boolean tensor `(batch, frames)`, `True` for real
            frames. Padded frames get zero attention and are left out of
            every mean. Propagated Keras masks are honoured.
        training: Python boolean, dropout on or off.
        return_attention_weights: Python boolean. If `True`, also return
            the attention weights.

    Returns:
        The top layer's outputs `(batch, num_steps, units)` and, if
        `return_attention_weights=True`, the attention weights
        `(batch, num_steps, frames)`, each row summing to 1 over the real
        frames (uniform for `use_attention=False`).

    Example:

    >>> features = np.random.rand(4, 30, 64).astype("float32")
    >>> layer = TemporalAttentionLSTM(units=16, num_steps=30)
    >>> outputs, weights = layer(features, return_attention_weights=True)
    >>> outputs.shape, weights.shape
    ((4, 30, 16), (4, 30, 30))
    """

    def __init__(
        self,
        units: int = 512,
        num_layers: int = 2,
        num_steps: int = 30,
        use_attention: bool = True,
        dropout: float = 0.5,
        state_initializer: str = "mean_feature",
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        attention_initializer="glorot_uniform",
        unit_forget_bias: bool = True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        attention_regularizer=None,
        precompute_input_projection: bool = True,
        unroll: bool | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("units", units), ("num_layers", num_layers), ("num_steps", num_steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Expected {name} >= 1 (an integer). Received: {name}={value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected 0 <= dropout < 1. Received: dropout={dropout!r}")
        if state_initializer not in STATE_INITIALIZERS:
            raise ValueError(
                f"Expected state_initializer in {STATE_INITIALIZERS}. "
                f"Received: state_initializer={state_initializer!r}"
            )
        self.units = units
        self.num_layers = num_layers
        self.num_steps = num_steps
        self.use_attention = bool(use_attention)
        self.dropout = float(dropout)
        self.state_initializer = state_initializer
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.attention_initializer = keras.initializers.get(attention_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.attention_regularizer = keras.regularizers.get(attention_regularizer)
        self.precompute_input_projection = bool(precompute_input_projection)
        self.unroll = None if unroll is None else bool(unroll)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

        # === Layers === (eq. 3; dropout is applied by this layer, see call)
        self.cells = [
            keras.layers.LSTMCell(
                units,
                kernel_initializer=self.kernel_initializer,
                recurrent_initializer=self.recurrent_initializer,
                bias_initializer=self.bias_initializer,
                unit_forget_bias=self.unit_forget_bias,
                kernel_regularizer=self.kernel_regularizer,
                recurrent_regularizer=self.recurrent_regularizer,
                bias_regularizer=self.bias_regularizer,
                dtype=self.dtype_policy,
                name=f"lstm_cell_{index + 1}",
            )
            for index in range(num_layers)
        ]

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "Expected features of shape (batch, frames, features) with a known "
                f"feature size. Received: input_shape={input_shape}"
            )
        feature_dim = input_shape[-1]
        self.cells[0].build((None, feature_dim))
        for cell in self.cells[1:]:
            cell.build((None, self.units))
        if self.use_attention:
            self._build_attention(feature_dim)
        if self.state_initializer == "mean_feature":
            # h_0 and c_0 of every layer in one kernel: (features, layers * 2 * units).
            self.initial_state_kernel = self.add_weight(
                name="initial_state_kernel",
                shape=(feature_dim, self.num_layers * 2 * self.units),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
            self.initial_state_bias = self.add_weight(
                name="initial_state_bias",
                shape=(self.num_layers * 2 * self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )

    def _build_attention(self, feature_dim):
        """Eq. 5: w_a (units,), u_a (features,) and the scalar b_a."""
        self.attention_state_kernel = self.add_weight(
            name="attention_state_kernel",
            shape=(self.units, 1),
            initializer=self.attention_initializer,
            regularizer=self.attention_regularizer,
        )
        self.attention_feature_kernel = self.add_weight(
            name="attention_feature_kernel",
            shape=(feature_dim, 1),
            initializer=self.attention_initializer,
            regularizer=self.attention_regularizer,
        )
        self.attention_bias = self.add_weight(
            name="attention_bias",
            shape=(),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
        )

    # --- pieces of one call -------------------------------------------------

    def _initial_states(self, mean_feature):
        batch_size = ops.shape(mean_feature)[0]
        if self.state_initializer == "zeros":
            zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
            return [[zeros, zeros] for _ in range(self.num_layers)]
        states = ops.tanh(
            ops.matmul(mean_feature, self.initial_state_kernel) + self.initial_state_bias
        )  # (batch, layers * 2 * units)
        parts = ops.split(states, 2 * self.num_layers, axis=-1)
        return [[parts[2 * k], parts[2 * k + 1]] for k in range(self.num_layers)]

    def _dropout_masks(self, features, training):
        """One mask per LSTM layer input, drawn once per call (Zaremba et al.)."""
        if not training or self.dropout == 0.0:
            return [None] * self.num_layers
        batch_size = ops.shape(features)[0]
        sizes = [ops.shape(features)[-1]] + [self.units] * (self.num_layers - 1)
        return [
            keras.random.dropout(
                ops.ones((batch_size, size), dtype=self.compute_dtype),
                rate=self.dropout,
                seed=self.seed_generator,
            )
            for size in sizes
        ]

    def _attention_weights(self, top_output, frame_scores, frame_mask):
        """Eqs. 5-6: (batch, frames) weights from the top layer's previous output."""
        state_score = ops.matmul(top_output, self.attention_state_kernel)  # (batch, 1)
        scores = ops.tanh(state_score + frame_scores + self.attention_bias)  # (batch, frames)
        if frame_mask is None:
            return ops.softmax(scores, axis=-1)
        scores = ops.where(frame_mask, scores, ops.full_like(scores, _MASKED_SCORE))
        return ops.softmax(scores, axis=-1) * ops.cast(frame_mask, scores.dtype)

    def _first_layer_step(self, projected_input, states):
        """Eq. 3 for layer 1 from the precomputed `W x_t`, in Keras' gate order."""
        cell = self.cells[0]
        hidden, carry = states
        z = projected_input + ops.matmul(hidden, cell.recurrent_kernel) + cell.bias
        input_gate, forget_gate, candidate, output_gate = ops.split(z, 4, axis=-1)
        input_gate = cell.recurrent_activation(input_gate)
        forget_gate = cell.recurrent_activation(forget_gate)
        output_gate = cell.recurrent_activation(output_gate)
        carry = forget_gate * carry + input_gate * cell.activation(candidate)
        hidden = output_gate * cell.activation(carry)
        return hidden, [hidden, carry]

    # --- the call -----------------------------------------------------------

    def call(self, features, mask=None, training=None, return_attention_weights=False):
        features = ops.cast(features, self.compute_dtype)  # (batch, frames, dim)
        if mask is not None:
            mask = ops.cast(mask, "bool")  # (batch, frames)
            frame_weights = ops.cast(mask, self.compute_dtype)
        else:
            frame_weights = ops.ones(ops.shape(features)[:2], dtype=self.compute_dtype)
        num_frames = ops.maximum(ops.sum(frame_weights, axis=-1, keepdims=True), 1.0)
        uniform_weights = frame_weights / num_frames  # (batch, frames)
        mean_feature = ops.sum(features * uniform_weights[..., None], axis=1)  # (batch, dim)

        dropout_masks = self._dropout_masks(features, training)
        dropped = features if dropout_masks[0] is None else features * dropout_masks[0][:, None, :]
        # Step-independent work, once per call.
        input_kernel = self.cells[0].kernel if self.precompute_input_projection else None
        if self.use_attention:
            frame_inputs = dropped if input_kernel is None else ops.matmul(dropped, input_kernel)
            # (batch, frames, 4 units) when precomputed, else (batch, frames, dim)
            frame_scores = ops.squeeze(
                ops.matmul(features, self.attention_feature_kernel), axis=-1
            )  # (batch, frames): u_a . v_i of eq. 5
        else:
            # Baseline: x_t = mean_i v_i at every step, so W x_t is fixed too.
            mean_input = ops.sum(dropped * uniform_weights[..., None], axis=1)  # (batch, dim)
            if input_kernel is not None:
                mean_input = ops.matmul(mean_input, input_kernel)  # (batch, 4 units)

        states = self._initial_states(mean_feature)

        def step(states):
            """One step: attention (eqs. 4-6), then every LSTM layer (eq. 3)."""
            states = [list(layer_states) for layer_states in states]
            if self.use_attention:
                weights = self._attention_weights(states[-1][0], frame_scores, mask)
                step_input = ops.squeeze(
                    ops.matmul(weights[:, None, :], frame_inputs), axis=1
                )  # eq. 4: x_t, or W x_t when precomputed
            else:
                weights, step_input = uniform_weights, mean_input
            if self.precompute_input_projection:
                hidden, states[0] = self._first_layer_step(step_input, states[0])
            else:
                hidden, states[0] = self.cells[0](step_input, states[0])
            for index in range(1, self.num_layers):
                layer_input = hidden
                if dropout_masks[index] is not None:
                    layer_input = layer_input * dropout_masks[index]
                hidden, states[index] = self.cells[index](layer_input, states[index])
            return [[h, c] for h, c in states], (hidden, weights)

        unroll = self.unroll
        if unroll is None:
            unroll = keras.backend.backend() != "jax"
        if unroll:  # num_steps copies of the step in the graph
            outputs, attention = [], []
            for _ in range(self.num_steps):
                states, (hidden, weights) = step(states)
                outputs.append(hidden)
                attention.append(weights)
            outputs = ops.stack(outputs, axis=1)  # (batch, steps, units)
            attention = ops.stack(attention, axis=1)  # (batch, steps, frames)
        else:  # one step in the graph, looped by the backend (lax.scan, tf.while_loop)

            def scan_step(carry, _):
                states, (_, weights) = step(carry[0])
                # The per-step outputs repeat the carry: TensorFlow's scan requires
                # both to have one structure. The top layer's h is the output.
                return (states, weights), (states, weights)

            _, (all_states, attention) = ops.scan(
                scan_step, (states, uniform_weights), length=self.num_steps
            )
            # (steps, batch, .) -> (batch, steps, .)
            outputs = ops.transpose(all_states[-1][0], (1, 0, 2))
            attention = ops.transpose(attention, (1, 0, 2))
        if return_attention_weights:
            return outputs, attention
        return outputs

    def compute_mask(self, inputs, mask=None):
        # The outputs are steps, not frames: every step is valid.
        return None

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "num_layers": self.num_layers,
            "num_steps": self.num_steps,
            "use_attention": self.use_attention,
            "dropout": self.dropout,
            "state_initializer": self.state_initializer,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "attention_initializer": keras.initializers.serialize(self.attention_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "attention_regularizer": keras.regularizers.serialize(self.attention_regularizer),
            "precompute_input_projection": self.precompute_input_projection,
            "unroll": self.unroll,
            "seed": self.seed,
        }
        return {**base_config, **config}
