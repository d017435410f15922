"""NumPy reference of the paper's equations 3-7, written from the paper, for tests.

Weights use Keras' LSTM layout: kernel (inputs, 4 units) with gates in the order
input, forget, candidate (g), output.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    """Eq. 3 (Zaremba et al.) for one step of one layer."""
    z = x @ kernel + h @ recurrent_kernel + bias
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return h, c


def attention_lstm_reference(features, weights, num_steps, use_attention=True, mask=None):
    """Run eqs. 3-6 on `features` (batch, frames, dim).

    `weights`: dict with `w_a` (units,), `u_a` (dim,), `b_a` (), `init_kernel`
    (dim, layers * 2 * units) and `init_bias` (or `None` for zero states), and
    `layers`: a list of (kernel, recurrent_kernel, bias).
    Returns outputs (batch, steps, units) and attention (batch, steps, frames).
    """
    features = np.asarray(features, dtype=np.float64)
    batch, frames, _ = features.shape
    valid = np.ones((batch, frames), bool) if mask is None else np.asarray(mask, bool)
    layers = weights["layers"]
    units = layers[0][1].shape[0]
    outputs = np.zeros((batch, num_steps, units))
    attention = np.zeros((batch, num_steps, frames))
    for b in range(batch):
        v = features[b][valid[b]]  # (real frames, dim)
        mean_v = v.mean(axis=0)
        if weights.get("init_kernel") is None:
            states = [(np.zeros(units), np.zeros(units)) for _ in layers]
        else:
            init = np.tanh(mean_v @ weights["init_kernel"] + weights["init_bias"])
            parts = np.split(init, 2 * len(layers))
            states = [(parts[2 * k], parts[2 * k + 1]) for k in range(len(layers))]
        for t in range(num_steps):
            h_top = states[-1][0]
            if use_attention:
                e = np.tanh(h_top @ weights["w_a"] + v @ weights["u_a"] + weights["b_a"])  # eq. 5
                alpha = np.exp(e) / np.exp(e).sum()  # eq. 6
            else:
                alpha = np.full(len(v), 1.0 / len(v))
            x = alpha @ v  # eq. 4
            new_states = []
            for k, (kernel, recurrent_kernel, bias) in enumerate(layers):
                h, c = lstm_step(x, *states[k], kernel, recurrent_kernel, bias)
                new_states.append((h, c))
                x = h
            states = new_states
            outputs[b, t] = states[-1][0]
            attention[b, t, valid[b]] = alpha
    return outputs, attention


def softmax_classifier_reference(outputs, kernel, bias):
    """Eq. 7 at every step: (batch, steps, units) -> (batch, steps, classes)."""
    logits = outputs @ kernel + bias
    logits = logits - logits.max(axis=-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
