"""data.tvl1 (TV-L1 in keras.ops) against OpenCV's DualTVL1 with the same parameters: end-
point error on real UCF101 frames warped by known flows, agreement on real consecutive
frames, and the small operators against their OpenCV counterparts."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from keras import ops

from benchmarks.flow_benchmark import known_flow_set
from temporal_attention.data import tvl1
from temporal_attention.data.flow_quantization import dequantize_flow, quantize_flow
from temporal_attention.data.tvl1 import TVL1Settings, tvl1_flow
from temporal_attention.data.video import read_video

CLIP = Path(__file__).resolve().parents[2] / "shared/data/ucf101_subset/UCF-101/PushUps"
HEIGHT, WIDTH = 64, 85  # small, so that CI's CPU compiles and runs it in about a minute
MARGIN = np.s_[6:-6, 6:-6]  # pixels whose source may lie outside the frame are left out


def gray_frames(count=3):
    video = read_video(CLIP / "v_PushUps_g01_c01.avi")
    return [
        cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (WIDTH, HEIGHT), cv2.INTER_AREA)
        for frame in video.frames[:count]
    ]


@pytest.fixture(scope="module")
def flows():
    if not CLIP.is_dir():
        pytest.skip(f"{CLIP} not found (the real clips live in ../shared/data)")
    frames = gray_frames()
    known = list(known_flow_set(frames[0]).values())  # translation, rotation, zoom
    first = [frames[0]] * 3 + frames[:2]
    second = [pair[0] for pair in known] + frames[1:3]
    ours = tvl1_flow(np.stack(first), np.stack(second))  # one batch: one compilation
    opencv = cv2.optflow.DualTVL1OpticalFlow_create()
    theirs = np.stack([opencv.calc(a, b, None) for a, b in zip(first, second, strict=True)])
    truth = np.stack([pair[1] for pair in known])
    return ours, theirs, truth


def end_point_error(flow, truth):
    return np.linalg.norm(flow - truth, axis=-1)[:, MARGIN[0], MARGIN[1]].mean(axis=(1, 2))


@pytest.mark.jax
def test_end_point_error_on_known_flows_within_1_1_of_opencv(flows):
    ours, theirs, truth = flows
    ours_epe, theirs_epe = end_point_error(ours[:3], truth), end_point_error(theirs[:3], truth)
    # Measured (64 x 85, JAX): ours 0.033 / 0.108 / 0.073 px against OpenCV's
    # 0.026 / 0.130 / 0.091 (translation, rotation, zoom): 0.87x on average.
    assert ours_epe.mean() <= 1.1 * theirs_epe.mean()
    assert (ours_epe < 0.15).all()  # every field is recovered to a small fraction of a pixel


@pytest.mark.jax
def test_quantised_flow_agrees_with_opencv_on_real_frames(flows):
    ours, theirs, _ = flows
    difference = np.abs(
        quantize_flow(ours[3:]).astype(np.int16) - quantize_flow(theirs[3:]).astype(np.int16)
    )
    # Measured (64 x 85, JAX): mean 0.26 levels, 99.84 % of the values within 2 levels.
    assert difference.mean() < 0.6
    assert (difference <= 2).mean() > 0.98


def test_divergence_is_minus_the_adjoint_of_the_forward_gradient():
    rng = np.random.default_rng(0)
    u, px, py = (rng.normal(size=(2, 7, 9)).astype("float32") for _ in range(3))
    px[:, :, -1], py[:, -1] = 0, 0  # as the dual variables are: their gradients are zero there
    ux, uy = (ops.convert_to_numpy(d) for d in tvl1.forward_gradient(ops.convert_to_tensor(u)))
    div = ops.convert_to_numpy(
        tvl1.divergence(ops.convert_to_tensor(px), ops.convert_to_tensor(py))
    )
    np.testing.assert_allclose((ux * px + uy * py).sum(), -(u * div).sum(), rtol=1e-4)


def test_median_filter_equals_opencv():
    image = np.random.default_rng(1).normal(size=(11, 13)).astype("float32")
    ours = ops.convert_to_numpy(tvl1.median_filter(ops.convert_to_tensor(image[None]), 5))[0]
    np.testing.assert_allclose(ours, cv2.medianBlur(image, 5), atol=1e-6)


def test_median_network_selects_the_median_of_any_odd_count():
    rng = np.random.default_rng(3)
    for count in (1, 3, 9, 25, 49):
        network = tvl1.median_network(count)
        for values in [*rng.normal(size=(50, count)), rng.integers(0, 3, size=count)]:
            wires = list(values)
            for a, b, _, _ in network:
                wires[a], wires[b] = min(wires[a], wires[b]), max(wires[a], wires[b])
            assert wires[count // 2] == np.median(values)
    image = rng.integers(0, 4, size=(2, 9, 10)).astype("float32")  # many ties
    ours = ops.convert_to_numpy(tvl1.median_filter(ops.convert_to_tensor(image), 7))
    padded = np.pad(image, ((0, 0), (3, 3), (3, 3)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (7, 7), axis=(1, 2))
    np.testing.assert_array_equal(ours, np.median(windows, axis=(-2, -1)))


def test_cubic_warp_equals_opencv_remap_inside_the_frame():
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, size=(12, 14)).astype("float32")
    # OpenCV's remap rounds positions to 1/32 pixel: positions on that grid compare exactly.
    dx, dy = (rng.integers(-48, 48, size=(12, 14)).astype("float32") / 32 for _ in range(2))
    (ours,) = tvl1.warp_bicubic(
        [ops.convert_to_tensor(image[None])], ops.convert_to_tensor(dx[None]),
        ops.convert_to_tensor(dy[None]),
    )  # fmt: skip
    ys, xs = np.mgrid[0:12, 0:14].astype("float32")
    theirs = cv2.remap(image, xs + dx, ys + dy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    inside = np.s_[3:-3, 3:-3]  # the edge is replicated differently (positions vs taps)
    np.testing.assert_allclose(ops.convert_to_numpy(ours)[0][inside], theirs[inside], atol=1e-3)


def test_settings_and_bad_input():
    assert TVL1Settings() == TVL1Settings(
        tau=0.25,
        lambda_=0.15,
        theta=0.3,
        scales=5,
        warps=5,
        epsilon=0.01,
        inner_iterations=30,
        outer_iterations=10,
        scale_step=0.8,
        median_filtering=5,
    )  # fmt: skip OpenCV's documented defaults
    with pytest.raises(ValueError, match="one shape"):
        tvl1_flow(np.zeros((2, 16, 16)), np.zeros((2, 16, 17)))
    with pytest.raises(ValueError, match="at least 8"):
        tvl1_flow(np.zeros((1, 4, 16)), np.zeros((1, 4, 16)))


def test_iter_flow_batches_the_pairs_of_each_chunk_and_crosses_chunk_borders(monkeypatch):
    """`iter_flow(..., "tvl1_keras")` sends padded batches of TVL1_KERAS_PAIRS pairs and
    yields one field per consecutive pair, in order, the pair across a chunk border too."""
    from temporal_attention.data import optical_flow

    calls = []

    def fake_flow(first, second):  # flow (x, y) = (first frame's value, second's) / 10
        calls.append(first.shape[0])
        return quantize_flow(np.stack([first, second], -1).astype(np.float32) / 10)

    monkeypatch.setattr(tvl1, "stage_flow", fake_flow)
    monkeypatch.setattr(optical_flow, "TVL1_KERAS_PAIRS", 4)
    values = np.arange(1, 12, dtype=np.uint8) * 10  # 11 frames, each of one gray value
    frames = np.repeat(values[:, None, None, None], 3, axis=-1) * np.ones((1, 8, 9, 3), np.uint8)
    chunks = [frames[:6], frames[6:7], frames[7:]]  # 6 + 1 + 4 frames
    flows = list(optical_flow.iter_flow(iter(chunks), "tvl1_keras"))
    assert [len(f) for f in flows] == [5, 1, 4]
    assert calls == [4, 4, 4, 4]  # 5 pairs -> 4 + 1 padded; then 1 padded; then 4
    joined = dequantize_flow(np.concatenate(flows))
    np.testing.assert_allclose(joined[:, 0, 0, 0], values[:-1] / 10, atol=0.1)
    np.testing.assert_allclose(joined[:, 0, 0, 1], values[1:] / 10, atol=0.1)


def test_compaction_sizes_halve_down_to_the_smallest():
    assert tvl1.compaction_sizes(256, 16) == [256, 128, 64, 32, 16]
    assert tvl1.compaction_sizes(5, 2) == [5, 3, 2]
    assert tvl1.compaction_sizes(32, 0) == [32]
    assert tvl1.compaction_sizes(4, 8) == [4]


@pytest.mark.jax
def test_compacted_and_stage_solvers_give_each_pair_the_reference_flow():
    """Pairs that converge at very different speeds (identical frames stop at once, known
    shifts and real motion later), in rounds short enough that pairs stop within a round
    and leave the batch before its median: the compacted solver (batches 6 -> 3 -> 2)
    gives every pair the flow of the reference, which iterates the whole batch; and the
    batched stage's variant (uint8 frames to the device, compacted, the flow quantised
    there) gives exactly `quantize_flow` of the reference."""
    if not CLIP.is_dir():
        pytest.skip(f"{CLIP} not found (the real clips live in ../shared/data)")
    frames = [cv2.resize(f, (40, 32), interpolation=cv2.INTER_AREA) for f in gray_frames(4)]
    shifted = [
        np.clip(pair[0], 0, 255).astype(np.uint8) for pair in known_flow_set(frames[0]).values()
    ]
    first = np.stack([frames[0], frames[1], frames[0], frames[2], frames[0], frames[0]])
    second = np.stack([frames[0], frames[2], shifted[0], frames[3], shifted[1], shifted[2]])
    settings = TVL1Settings(scales=1, warps=2, inner_iterations=8, outer_iterations=3, epsilon=0.03)
    reference = tvl1_flow(first, second, settings)
    assert np.abs(reference).max() > 0.1  # the pairs do move
    np.testing.assert_array_equal(tvl1_flow(first, second, settings, compact_to=2), reference)
    expected = quantize_flow(reference)
    assert len(np.unique(expected)) > 20  # many levels: the rounding is exercised
    got = tvl1.stage_flow(first, second, settings, compact_to=2)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_a_batch_too_small_to_compact_gets_the_plain_solver():
    settings = TVL1Settings(scales=2)
    assert tvl1.batch_solver(4, settings, 16) is tvl1.compiled_solver(settings, 0)
    assert tvl1.batch_solver(4, settings, 3, quantize=True) is tvl1.compiled_solver(
        settings, 0, quantize=True
    )  # 4 -> 2 would be under 3
    assert tvl1.batch_solver(4, settings, 2) is tvl1.compiled_solver(settings, 2)
