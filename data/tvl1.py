"""TV-L1 optical flow in `keras.ops`, batched over frame pairs, compiled where the backend can.

    from temporal_attention.data.tvl1 import TVL1Settings, tvl1_flow
    flow = tvl1_flow(previous_gray, next_gray)  # (pairs, H, W) uint8 or float -> (pairs, H, W, 2)

Written from the equations of Zach, Pock and Bischof, "A Duality Based Approach for
Realtime TV-L1 Optical Flow" (DAGM 2007), with the refinements of Wedel, Pock, Zach,
Bischof and Cremers, "An Improved Algorithm for TV-L1 Optical Flow" (2009): a coarse to
fine image pyramid, several warps per scale, and median filtering of the flow after each
round of inner iterations. The parameters and their defaults are those OpenCV documents for
`cv2.optflow.DualTVL1OpticalFlow` (tau, lambda, theta, number of scales, warps, epsilon,
inner and outer iterations, scale step, median filter size), so the two can be compared
setting by setting.

Per scale and warp, with I1 warped by the current flow u0 and rho(u) = I1(x + u0) +
grad I1 . (u - u0) - I0(x) linearised around u0, the energy
    sum |grad u1| + |grad u2| + 1/(2 theta) |u - v|^2 + lambda |rho(v)|
is minimised by alternating (i) v from u: the thresholding step
    v = u + lambda theta grad I1        if rho(u) < -lambda theta |grad I1|^2
    v = u - lambda theta grad I1        if rho(u) >  lambda theta |grad I1|^2
    v = u - rho(u) grad I1 / |grad I1|^2  otherwise,
(ii) u = v + theta div p, and (iii) the dual variables
    p <- (p + tau / theta grad u) / (1 + tau / theta |grad u|),
until the mean squared change of u falls below epsilon^2 (per frame pair) or the
iteration limits are reached. Each outer iteration is one round of at most
`inner_iterations` of these steps followed by a median filter of u (Wedel et al.'s
outlier removal), so that the flow a warp, a level and the whole solver hand on has been
filtered. (Filtering at the start of each round instead leaves the final flow
unfiltered: at 256 x 340 that raised the rotation field's end-point error from 0.093 to
0.133 px, against OpenCV's 0.102.) Forward differences for grad u, backward ones (zero
outside the image) for div p, central differences (edge replicated) for grad I1,
bilinear warping with edge replication. Pairs are independent: each stops on its own.

Between levels only the flow is carried (bilinear resize, scaled by the levels' size
ratio); the dual variables p start from zero on every level, as they do in a solver
started afresh at each scale (Sánchez, Meinhardt-Llopis and Facciolo, "TV-L1 Optical
Flow Estimation", IPOL 2013). Carrying p resized from the coarser level instead kept
the zoom field's end-point error at 256 x 340 at 0.076 px, against 0.047 with zeros and
OpenCV's 0.044 (presumably because the resized p holds the coarser level's pattern of
where the TV term flattens the flow, which the finer level then has to undo).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import keras
import numpy as np
from keras import ops

from temporal_attention.data.flow_quantization import FLOW_BOUND, dequantize_flow


@dataclass(frozen=True)
class TVL1Settings:
    """The parameters of OpenCV's `DualTVL1OpticalFlow`, with its defaults."""

    tau: float = 0.25  # time step of the dual update
    lambda_: float = 0.15  # weight of the data term
    theta: float = 0.3  # coupling of u and v
    scales: int = 5  # pyramid levels
    warps: int = 5  # warps per level
    epsilon: float = 0.01  # stopping threshold on the change of u
    inner_iterations: int = 30  # between two median filterings
    outer_iterations: int = 10
    scale_step: float = 0.8  # size ratio of one level to the next finer one
    median_filtering: int = 5  # median filter size between outer iterations (1: none)
    interpolation: str = "cubic"  # warping: "cubic" (cubic convolution) or "linear"


# === Small image operations on (batch, height, width) tensors ===


def _pad_edge(x, top, bottom, left, right):
    """Replicates the edge rows and columns."""
    if top or bottom:
        x = ops.concatenate([x[:, :1]] * top + [x] + [x[:, -1:]] * bottom, axis=1)
    if left or right:
        x = ops.concatenate([x[:, :, :1]] * left + [x] + [x[:, :, -1:]] * right, axis=2)
    return x


def central_gradient(image):
    """(d/dx, d/dy) by central differences, the edge replicated (one-sided halves there)."""
    padded = _pad_edge(image, 1, 1, 1, 1)
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return dx, dy


def forward_gradient(u):
    """Forward differences, zero in the last column (dx) and the last row (dy)."""
    dx = ops.concatenate([u[:, :, 1:] - u[:, :, :-1], ops.zeros_like(u[:, :, :1])], axis=2)
    dy = ops.concatenate([u[:, 1:] - u[:, :-1], ops.zeros_like(u[:, :1])], axis=1)
    return dx, dy


def divergence(px, py):
    """Backward differences with zeros outside the image: minus the adjoint of
    `forward_gradient`."""
    dx = px - ops.concatenate([ops.zeros_like(px[:, :, :1]), px[:, :, :-1]], axis=2)
    dy = py - ops.concatenate([ops.zeros_like(py[:, :1]), py[:, :-1]], axis=1)
    return dx + dy


@functools.cache
def median_network(count: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The compare-exchanges that bring the median of `count` values to position
    `count // 2`: Batcher's odd-even merge sort of the next power of two, less those on
    wires past `count` (they would hold +inf and never move) and those the median does
    not depend on. Each is (a, b, the minimum to a is used, the maximum to b is used).
    For 25 values: 113 of the sort's 191."""
    width = 1 << max(count - 1, 0).bit_length()
    comparators, merged = [], 1
    while merged < width:  # merge sorted runs of `merged` into runs of 2 * merged
        k = merged
        while k >= 1:
            for j in range(k % merged, width - k, 2 * k):
                for i in range(min(k, width - j - k)):
                    if (i + j) // (2 * merged) == (i + j + k) // (2 * merged):
                        comparators.append((i + j, i + j + k))
            k //= 2
        merged *= 2
    needed, kept = {count // 2}, []
    for a, b in reversed([(a, b) for a, b in comparators if b < count]):
        if a in needed or b in needed:
            kept.append((a, b, a in needed, b in needed))
            needed |= {a, b}
    return tuple(reversed(kept))


def median_filter(x, size: int):
    """`size` x `size` median, the edge replicated (an odd size).

    Elementwise minima and maxima of the shifted windows (`median_network`), which a
    compiler fuses into one pass over the image; sorting the stacked windows instead
    writes and reads `size**2` copies of the batch."""
    if size <= 1:
        return x
    r = size // 2
    height, width = x.shape[1], x.shape[2]
    padded = _pad_edge(x, r, r, r, r)
    wires = [padded[:, i : i + height, j : j + width] for i in range(size) for j in range(size)]
    for a, b, low, high in median_network(size * size):
        wires[a], wires[b] = (
            ops.minimum(wires[a], wires[b]) if low else None,
            ops.maximum(wires[a], wires[b]) if high else None,
        )
    return wires[size * size // 2]


def warp_bilinear(images, flow_x, flow_y):
    """`images` sampled at (x + flow_x, y + flow_y), bilinear, the edge replicated.

    `images`: a list of (batch, H, W) tensors sampled at the same positions."""
    batch, height, width = images[0].shape
    ys = ops.arange(height, dtype="float32")[None, :, None]
    xs = ops.arange(width, dtype="float32")[None, None, :]
    x = ops.clip(xs + flow_x, 0.0, width - 1.0)
    y = ops.clip(ys + flow_y, 0.0, height - 1.0)
    x0, y0 = ops.floor(x), ops.floor(y)
    wx, wy = x - x0, y - y0
    x0 = ops.cast(x0, "int32")
    y0 = ops.cast(y0, "int32")
    x1 = ops.minimum(x0 + 1, width - 1)
    y1 = ops.minimum(y0 + 1, height - 1)

    def flat(yy, xx):
        return ops.reshape(yy * width + xx, (batch, height * width))

    corners = [flat(y0, x0), flat(y0, x1), flat(y1, x0), flat(y1, x1)]
    weights = [(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy]
    out = []
    for image in images:
        rows = ops.reshape(image, (batch, height * width))
        value = 0.0
        for index, weight in zip(corners, weights, strict=True):
            value = value + weight * ops.reshape(
                ops.take_along_axis(rows, index, axis=1), (batch, height, width)
            )
        out.append(value)
    return out


def _cubic_weights(t, a: float = -0.75):
    """Cubic convolution weights (Keys 1981, a = -0.75 as OpenCV's `INTER_CUBIC`) of the
    taps at -1, 0, 1, 2 for a fractional position `t` in [0, 1)."""

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def warp_bicubic(images, flow_x, flow_y):
    """`images` sampled at (x + flow_x, y + flow_y), cubic convolution, the edge
    replicated. `images`: a list of (batch, H, W) tensors sampled at the same positions."""
    batch, height, width = images[0].shape
    ys = ops.arange(height, dtype="float32")[None, :, None]
    xs = ops.arange(width, dtype="float32")[None, None, :]
    x = ops.clip(xs + flow_x, 0.0, width - 1.0)
    y = ops.clip(ys + flow_y, 0.0, height - 1.0)
    x0, y0 = ops.floor(x), ops.floor(y)
    wx, wy = _cubic_weights(x - x0), _cubic_weights(y - y0)
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    columns = [ops.clip(x0 + k, 0, width - 1) for k in (-1, 0, 1, 2)]
    rows = [ops.clip(y0 + k, 0, height - 1) * width for k in (-1, 0, 1, 2)]
    out = []
    for image in images:
        flat = ops.reshape(image, (batch, height * width))
        value = 0.0
        for row, weight_y in zip(rows, wy, strict=True):
            line = 0.0
            for column, weight_x in zip(columns, wx, strict=True):
                index = ops.reshape(row + column, (batch, height * width))
                sample = ops.reshape(
                    ops.take_along_axis(flat, index, axis=1), (batch, height, width)
                )
                line = line + weight_x * sample
            value = value + weight_y * line
        out.append(value)
    return out


def resize(x, height: int, width: int):
    """Bilinear resize of (batch, H, W), pixel centres aligned (as `cv2.INTER_LINEAR`)."""
    resized = ops.image.resize(
        x[..., None], (height, width), interpolation="bilinear", antialias=False,
        data_format="channels_last",
    )  # fmt: skip
    return resized[..., 0]


def pyramid_sizes(height: int, width: int, settings: TVL1Settings) -> list[tuple[int, int]]:
    """Level sizes, finest first: each `scale_step` times the previous one, rounded."""
    sizes = [(height, width)]
    for _ in range(settings.scales - 1):
        h, w = sizes[-1]
        h, w = int(round(h * settings.scale_step)), int(round(w * settings.scale_step))
        if min(h, w) < 8:  # too small a level to carry information
            break
        sizes.append((h, w))
    return sizes


# === The solver ===


def _inner_step(state, warped, settings: TVL1Settings):
    """One iteration (thresholding, u, dual p) for the pairs whose last change of u was
    above epsilon; the others keep their state. `state`: (u1, u2, p11, p12, p21, p22,
    error), `warped`: (I1 warped, its x and y gradients, |grad I1|^2, rho's constant)."""
    l_t = settings.lambda_ * settings.theta
    taut = settings.tau / settings.theta
    u1, u2, p11, p12, p21, p22, error = state
    i1w, i1wx, i1wy, grad, rho_c = warped
    active = (error > settings.epsilon**2)[:, None, None]
    rho = rho_c + i1wx * u1 + i1wy * u2
    large = grad > 1e-10
    safe_grad = ops.where(large, grad, 1.0)
    step = ops.where(large, -rho / safe_grad, 0.0)  # the middle case of the threshold
    step = ops.where(rho < -l_t * grad, l_t, step)
    step = ops.where(rho > l_t * grad, -l_t, step)
    v1, v2 = u1 + step * i1wx, u2 + step * i1wy
    new_u1 = v1 + settings.theta * divergence(p11, p12)
    new_u2 = v2 + settings.theta * divergence(p21, p22)
    new_error = ops.mean(ops.square(new_u1 - u1) + ops.square(new_u2 - u2), axis=(1, 2))
    u1x, u1y = forward_gradient(new_u1)
    u2x, u2y = forward_gradient(new_u2)
    ng1 = 1.0 + taut * ops.sqrt(u1x * u1x + u1y * u1y)
    ng2 = 1.0 + taut * ops.sqrt(u2x * u2x + u2y * u2y)
    updated = (
        new_u1, new_u2, (p11 + taut * u1x) / ng1, (p12 + taut * u1y) / ng1,
        (p21 + taut * u2x) / ng2, (p22 + taut * u2y) / ng2,
    )  # fmt: skip
    kept = tuple(ops.where(active, new, old) for new, old in zip(updated, state[:6], strict=True))
    return (*kept, ops.where(active[:, 0, 0], new_error, error))


def _warped(i0, i1, i1x, i1y, u1, u2, settings: TVL1Settings):
    """I1 and its gradients warped by the flow (u1, u2), and the data term's parts."""
    warp_images = warp_bicubic if settings.interpolation == "cubic" else warp_bilinear
    i1w, i1wx, i1wy = warp_images([i1, i1x, i1y], u1, u2)
    grad = i1wx * i1wx + i1wy * i1wy
    rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
    return (i1w, i1wx, i1wy, grad, rho_c)


def _median_where(mask, u, settings: TVL1Settings):
    if settings.median_filtering <= 1:
        return u
    return ops.where(mask[:, None, None], median_filter(u, settings.median_filtering), u)


def _median_both_where(mask, u1, u2, settings: TVL1Settings):
    """`_median_where` of u1 and u2 through one filter (the two stacked): one copy of the
    selection network in the compiled program instead of two, the same values."""
    if settings.median_filtering <= 1:
        return u1, u2
    both = _median_where(ops.concatenate([mask, mask]), ops.concatenate([u1, u2]), settings)
    return both[: u1.shape[0]], both[u1.shape[0] :]


def _solve_level(i0, i1, u1, u2, settings: TVL1Settings):
    """All warps at one pyramid level, from the flow (u1, u2) and zero dual variables:
    the whole batch iterates while any pair does (the reference for
    `_solve_level_compacted`)."""
    i1x, i1y = central_gradient(i1)
    threshold = settings.epsilon**2
    batch = i0.shape[0]

    def warp(_, state):
        warped = _warped(i0, i1, i1x, i1y, state[0], state[1], settings)

        def outer(_, state):
            active = state[-1] > threshold  # pairs iterating this round
            _, state = ops.while_loop(
                lambda i, s: ops.logical_and(
                    i < settings.inner_iterations, ops.any(s[-1] > threshold)
                ),
                lambda i, s: (i + 1, _inner_step(s, warped, settings)),
                (0, state),
            )  # every pair stops on its own; the loop ends when all have
            u1, u2, *rest = state  # the median after the round: the result is filtered
            return (*_median_both_where(active, u1, u2, settings), *rest)

        start_error = ops.full((batch,), np.inf, dtype="float32")
        _, state = ops.while_loop(
            lambda i, s: ops.logical_and(i < settings.outer_iterations, ops.any(s[-1] > threshold)),
            lambda i, s: (i + 1, outer(i, s)),
            (0, (*state, start_error)),
        )
        return state[:6]

    zeros = ops.zeros_like(u1)
    state = ops.fori_loop(0, settings.warps, warp, (u1, u2, zeros, zeros, zeros, zeros))
    return state[0], state[1]


def compaction_sizes(batch: int, smallest: int) -> list[int]:
    """The batch sizes a warp of `_solve_level_compacted` runs at: `batch`, then halved
    (rounded up) while the half is at least `smallest`."""
    sizes = [batch]
    while smallest > 0 and (sizes[-1] + 1) // 2 >= smallest and sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _solve_level_compacted(i0, i1, u1, u2, settings: TVL1Settings, smallest: int):
    """`_solve_level` computed on fewer pairs as they stop: in each warp, once at most
    half of the pairs still iterate, those are gathered into a batch half the size
    (`compaction_sizes`), down to `smallest`. Each pair goes through the same arithmetic
    as in `_solve_level` (an iteration or a median never mixes pairs), so the flow is the
    same; only the pairs that have stopped are no longer computed.

    Every pair that iterates has done the same number of iterations since the warp began
    (a pair that stops is done for the warp), so the rounds of `inner_iterations` end at
    the same step for all: each round's median is applied there, and to a pair that
    stopped within a round and left the batch before it ended, at the end of the warp."""
    i1x, i1y = central_gradient(i1)
    threshold = settings.epsilon**2
    batch = i0.shape[0]
    sizes = compaction_sizes(batch, smallest)

    def warp(_, full_state):
        warped = _warped(i0, i1, i1x, i1y, full_state[0], full_state[1], settings)
        start_error = ops.full((batch,), np.inf, dtype="float32")
        state = (*full_state, start_error)
        pending = ops.ones((batch,), dtype="bool")  # in this round: the median at its end
        index = ops.arange(batch, dtype="int32")  # the batch position of each slot
        results = list(full_state)
        owed = ops.zeros((batch,), dtype="bool")  # left before their round's median
        step, rounds = ops.convert_to_tensor(0), ops.convert_to_tensor(0)
        for leave_at in [*sizes[1:], 0]:  # each phase runs until at most leave_at iterate

            def iterating(step, rounds, state, pending, leave_at=leave_at):
                active = ops.sum(ops.cast(state[-1] > threshold, "int32"))
                return ops.logical_and(
                    rounds < settings.outer_iterations,
                    ops.logical_and(active > 0, active > leave_at),
                )

            def one_step(step, rounds, state, pending, warped=warped):
                state = _inner_step(state, warped, settings)
                step = step + 1
                active = state[-1] > threshold
                round_over = ops.logical_or(
                    step >= settings.inner_iterations, ops.logical_not(ops.any(active))
                )

                def end_round(state, pending):
                    u1, u2, *rest = state
                    return (*_median_both_where(pending, u1, u2, settings), *rest), active

                state, pending = ops.cond(
                    round_over, lambda: end_round(state, pending), lambda: (state, pending)
                )
                step = ops.where(round_over, 0, step)
                rounds = ops.where(round_over, rounds + 1, rounds)
                return step, rounds, state, pending

            step, rounds, state, pending = ops.while_loop(
                iterating, one_step, (step, rounds, state, pending)
            )
            active = state[-1] > threshold
            leaving = ops.logical_and(pending, ops.logical_not(active))
            pending = ops.logical_and(pending, active)
            slots = index[:, None]
            results = [
                ops.scatter_update(r, slots, s) for r, s in zip(results, state[:6], strict=True)
            ]
            owed = ops.logical_or(owed, ops.scatter_update(ops.zeros_like(owed), slots, leaving))
            if leave_at:  # the pairs still iterating first, then others to fill the batch
                keep = ops.argsort(ops.cast(ops.logical_not(active), "int32"))[:leave_at]
                state = tuple(ops.take(s, keep, axis=0) for s in state)
                warped = tuple(ops.take(w, keep, axis=0) for w in warped)
                pending = ops.take(pending, keep, axis=0)
                index = ops.take(index, keep, axis=0)
        # the median of the round in which they stopped, for the pairs that left the batch
        # before that round ended (their flow did not change since)
        u1, u2 = _median_both_where(owed, results[0], results[1], settings)
        return (u1, u2, *results[2:])

    zeros = ops.zeros_like(u1)
    state = ops.fori_loop(0, settings.warps, warp, (u1, u2, zeros, zeros, zeros, zeros))
    return state[0], state[1]


def _tvl1(i0, i1, settings: TVL1Settings, compact_to: int = 0):
    """(batch, H, W) float32 intensities in [0, 255] -> (batch, H, W, 2) flow; with
    `compact_to` > 0, by `_solve_level_compacted` down to batches of that size."""
    batch, height, width = i0.shape
    sizes = pyramid_sizes(height, width, settings)
    levels0, levels1 = [i0], [i1]
    for h, w in sizes[1:]:
        levels0.append(resize(levels0[-1], h, w))
        levels1.append(resize(levels1[-1], h, w))
    h, w = sizes[-1]
    zeros = ops.zeros((batch, h, w), dtype="float32")
    u1, u2 = zeros, zeros
    for level in range(len(sizes) - 1, -1, -1):
        if compact_to > 0:
            u1, u2 = _solve_level_compacted(
                levels0[level], levels1[level], u1, u2, settings, compact_to
            )
        else:
            u1, u2 = _solve_level(levels0[level], levels1[level], u1, u2, settings)
        if level > 0:  # to the next finer level: flow in its pixels
            h, w = sizes[level - 1]
            u1 = resize(u1, h, w) * (w / sizes[level][1])
            u2 = resize(u2, h, w) * (h / sizes[level][0])
    return ops.stack([u1, u2], axis=-1)


_COMPILED = {}


def _quantized(flow, bound: float):
    """`data.flow_quantization.quantize_flow` in `keras.ops` (the same float32 arithmetic and
    rounding half to even), so that uint8 flow, 8x fewer bytes, leaves the device."""
    clipped = ops.clip(flow, -bound, bound)
    return ops.cast(ops.round(255.0 * (clipped + bound) / (2.0 * bound)), "uint8")


def compiled_solver(settings: TVL1Settings, compact_to: int = 0, quantize: bool = False):
    """`_tvl1` for `settings` (frames of any real dtype, cast to float32 on the device;
    with `quantize`, the flow as `quantize_flow`'s uint8), compiled by the backend where it
    can be (XLA on JAX and TensorFlow; PyTorch runs it as is), once per settings. It takes
    backend tensors, so a caller that keeps its frames on the device (a benchmark of the
    solver alone) times no transfer; `tvl1_flow_dispatch` takes host arrays."""
    key = (keras.backend.backend(), settings, compact_to, quantize)
    if key not in _COMPILED:

        def function(i0, i1):
            flow = _tvl1(ops.cast(i0, "float32"), ops.cast(i1, "float32"), settings, compact_to)
            return _quantized(flow, FLOW_BOUND) if quantize else flow

        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            function = jax.jit(function)
        elif backend == "tensorflow":
            import tensorflow as tf

            function = tf.function(function, jit_compile=True, autograph=False)
        _COMPILED[key] = function
    return _COMPILED[key]


def batch_solver(batch: int, settings: TVL1Settings, compact_to: int = 0, quantize: bool = False):
    """`compiled_solver` for batches of `batch` pairs: where `compact_to` leaves no smaller
    batch to gather the pairs into (`compaction_sizes(batch, compact_to) == [batch]`), the
    plain solver, which computes the same flow (one compilation fewer, a shorter one)."""
    if len(compaction_sizes(batch, compact_to)) == 1:
        compact_to = 0
    return compiled_solver(settings, compact_to, quantize)


def _checked_pairs(previous, current) -> tuple[np.ndarray, np.ndarray, bool]:
    previous, current = np.asarray(previous), np.asarray(current)
    single = previous.ndim == 2
    if single:
        previous, current = previous[None], current[None]
    if previous.ndim != 3 or previous.shape != current.shape:
        raise ValueError(
            "Expected two (pairs, height, width) grayscale arrays of one shape. "
            f"Received: {previous.shape} and {current.shape}"
        )
    if min(previous.shape[1:]) < 8:
        raise ValueError(f"Expected frames of at least 8 x 8 pixels. Received: {previous.shape}")
    return previous, current, single


def padded_to(frames: np.ndarray, size: int) -> np.ndarray:
    """`frames` `(n, H, W)` with its last frame repeated up to `size` rows: a short batch
    keeps the one compiled shape (pairs are independent; the padding's flow is dropped)."""
    if len(frames) >= size:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], size - len(frames), 0)])


def tvl1_flow_dispatch(
    previous,
    current,
    settings: TVL1Settings = TVL1Settings(),
    compact_to: int = 0,
    quantize: bool = False,
):
    """Starts `tvl1_flow` of `(pairs, height, width)` frames on the device and returns its
    result as a backend tensor at once where the backend runs asynchronously (JAX): the
    host can prepare the next batch meanwhile. `ops.convert_to_numpy` waits for it.
    uint8 frames travel to the device as uint8 (4x fewer bytes than float32); with
    `quantize`, the result is `quantize_flow` of the flow, computed on the device: uint8."""
    previous, current, _ = _checked_pairs(previous, current)
    dtype = np.uint8 if previous.dtype == np.uint8 and current.dtype == np.uint8 else np.float32
    return batch_solver(len(previous), settings, compact_to, quantize)(
        ops.convert_to_tensor(previous.astype(dtype, copy=False)),
        ops.convert_to_tensor(current.astype(dtype, copy=False)),
    )  # (pairs, H, W, 2)


def tvl1_flow(
    previous, current, settings: TVL1Settings = TVL1Settings(), compact_to: int = 0
) -> np.ndarray:
    """TV-L1 flow from `previous[k]` to `current[k]` for every pair k.

    Args:
        previous, current: `(pairs, height, width)` grayscale frames, uint8 or float in
            [0, 255] (one pair may also be given as `(height, width)`).
        settings: `TVL1Settings` (OpenCV's defaults).
        compact_to: 0 (default): the whole batch iterates while any of its pairs does.
            A batch size k > 0: the pairs still iterating are gathered into batches of
            half the size as the others stop, down to k (`_solve_level_compacted`); the
            same flow for each pair, less work when pairs converge at different speeds,
            a longer compilation (one copy of the loop per batch size).

    Returns:
        `(pairs, height, width, 2)` float32 NumPy, the (x, y) displacement in pixels of
        each pixel of `previous` (or `(height, width, 2)` for one pair).
    """
    previous, current, single = _checked_pairs(previous, current)
    flow = tvl1_flow_dispatch(previous, current, settings, compact_to)
    flow = np.asarray(ops.convert_to_numpy(flow), dtype=np.float32)
    return flow[0] if single else flow


def stage_flow(
    previous, current, settings: TVL1Settings = TVL1Settings(), compact_to: int = 0
) -> np.ndarray:
    """The flow as the batched flow stage computes it: `(pairs, height, width)` frames
    (uint8: they travel as such) to `quantize_flow`'s `(pairs, height, width, 2)` uint8,
    quantised on the device."""
    flow = tvl1_flow_dispatch(previous, current, settings, compact_to, quantize=True)
    return np.asarray(ops.convert_to_numpy(flow), dtype=np.uint8)


# === A check on the machine at hand ===

# The known displacement of `self_check` (pixels, x and y) and its error bound: OpenCV's
# DualTVL1 errs by about 0.05 px on smooth known flows at 256 x 340; a solver that
# computes wrongly on some device errs by pixels.
SELF_CHECK_SHIFT = (1.25, -0.75)
SELF_CHECK_MAX_EPE = 0.25


def self_check(
    pairs: int, height: int, width: int, settings: TVL1Settings = TVL1Settings(), compact_to=0
):
    """The end-point error of `stage_flow` on a known flow at the given batch shape (so the
    compiled function is the one a batch of real frames uses): a smooth random texture
    and the same texture shifted by `SELF_CHECK_SHIFT`, both as uint8 frames, the flow
    dequantised (its rounding adds about 0.09 px), away from a 10 % border.
    Returns `(error_px, passed)`; `passed` is `error_px <= SELF_CHECK_MAX_EPE`."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, size=(height, width)).astype(np.float32)
    sigma = max(1.0, min(height, width) / 64)
    texture = cv2.GaussianBlur(noise, (0, 0), sigma)
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6) * 255.0
    dx, dy = SELF_CHECK_SHIFT
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    # second(x) = first(x - d): every pixel of the first frame moves by d.
    moved = cv2.remap(
        texture, grid_x - dx, grid_y - dy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    frames = [np.clip(np.rint(image), 0, 255).astype(np.uint8) for image in (texture, moved)]
    first = np.repeat(frames[0][None], pairs, axis=0)
    second = np.repeat(frames[1][None], pairs, axis=0)
    flow = dequantize_flow(stage_flow(first, second, settings, compact_to))  # (pairs, H, W, 2)
    border_y, border_x = max(1, height // 10), max(1, width // 10)
    inner = flow[:, border_y:-border_y, border_x:-border_x]
    error = float(np.sqrt((inner[..., 0] - dx) ** 2 + (inner[..., 1] - dy) ** 2).mean())
    return error, error <= SELF_CHECK_MAX_EPE
