"""Optical flow: known global shift recovered by each method, quantisation, stacks, I/O."""

import cv2
import numpy as np
import pytest

from temporal_attention.data.flow_quantization import FLOW_BOUND, dequantize_flow, quantize_flow
from temporal_attention.data.npz_files import SpooledArray
from temporal_attention.data.optical_flow import (
    FLOW_METHODS,
    STACK_LENGTH,
    compute_flow,
    compute_flow_float,
    flow_stacks,
    iter_flow,
    iter_flow_stacks,
    load_flow,
    load_flow_chunks,
    read_rawframes,
    save_flow,
)
from temporal_attention.data.video import VideoError, read_video, write_video
from tests.synthetic_videos import shifted_texture_frames

# Mean end-point error (pixels) allowed in the interior, per method, on a 64x80 texture
# moving (2, -1) px per frame, through an MJPG file. Measured: tvl1 0.016, farneback 0.022,
# dis 0.022 (see docs/data_pipeline.md); the bounds leave a margin.
EPE_BOUNDS = {"tvl1": 0.08, "farneback": 0.1, "dis": 0.12}
SHIFT = (2.0, -1.0)


@pytest.fixture(scope="module")
def shifted_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow") / "shift.avi"
    write_video(path, shifted_texture_frames(6, 64, 80, SHIFT, seed=3))
    return read_video(path, 64, 80).frames  # (6, 64, 80, 3), decoded from the file


@pytest.mark.parametrize("method", ["tvl1", "farneback", "dis"])
def test_each_method_recovers_a_known_global_shift(shifted_video, method, record_property):
    flow = compute_flow_float(shifted_video, method)  # (5, 64, 80, 2)
    interior = flow[:, 12:-12, 12:-12]  # borders see texture entering the frame
    end_point_error = float(np.linalg.norm(interior - np.array(SHIFT), axis=-1).mean())
    record_property(f"epe_{method}", end_point_error)
    print(f"{method}: mean flow {interior.mean((0, 1, 2))}, end-point error {end_point_error:.3f}")
    np.testing.assert_allclose(interior.mean((0, 1, 2)), SHIFT, atol=0.1)
    assert end_point_error < EPE_BOUNDS[method]


def test_quantised_flow_keeps_the_shift(shifted_video):
    flow = compute_flow(shifted_video, "farneback")
    assert flow.shape == (5, 64, 80, 2) and flow.dtype == np.uint8
    recovered = dequantize_flow(flow)[:, 12:-12, 12:-12].mean((0, 1, 2))
    np.testing.assert_allclose(recovered, SHIFT, atol=0.1)


def test_static_video_gives_zero_flow_at_code_128():
    frames = np.repeat(shifted_texture_frames(1, 32, 40), 3, axis=0)
    flow = compute_flow(frames, "tvl1")
    assert np.abs(flow.astype(int) - 128).max() <= 1


def test_quantize_clips_and_rounds():
    values = np.array([-100.0, -20.0, 0.0, 20.0, 55.0, 0.08, 0.07])
    np.testing.assert_array_equal(quantize_flow(values), [0, 0, 128, 255, 255, 128, 128])
    # 255 * (v + 20) / 40 is 128.775 at 0.2 and 126.86 at -0.1: rounded, not truncated
    np.testing.assert_array_equal(quantize_flow(np.array([0.2, -0.1])), [129, 127])
    grid = np.linspace(-FLOW_BOUND, FLOW_BOUND, 1001)
    assert (
        np.abs(dequantize_flow(quantize_flow(grid)) - grid).max() <= FLOW_BOUND / 255 + 1e-4
    )  # half a step


def test_flow_stacks_interleave_x_and_y():
    num_flows = 8
    flow = np.zeros((num_flows, 2, 3, 2), np.uint8)
    for index in range(num_flows):
        flow[index, ..., 0] = 10 * index  # x of flow `index`
        flow[index, ..., 1] = 10 * index + 1  # y
    stacks = flow_stacks(flow)
    assert stacks.shape == (num_flows - STACK_LENGTH + 1, 2, 3, 10)
    np.testing.assert_array_equal(stacks[0, 0, 0], [0, 1, 10, 11, 20, 21, 30, 31, 40, 41])
    np.testing.assert_array_equal(stacks[3, 1, 2], [30, 31, 40, 41, 50, 51, 60, 61, 70, 71])
    np.testing.assert_array_equal(flow_stacks(flow, starts=[2])[0], stacks[2])


def test_flow_stacks_of_any_layout_equal_a_plain_interleave():
    flow = np.random.default_rng(0).integers(0, 256, (9, 12, 14, 2), dtype=np.uint8)
    cropped = flow[:, 2:10, 3:11]  # a view, as centrally cropped flow is
    reference = np.stack(
        [
            np.concatenate([cropped[start + k] for k in range(STACK_LENGTH)], -1)
            for start in range(5)
        ]
    )  # (5, 8, 8, 10): x1, y1, ..., x5, y5 channel by channel
    np.testing.assert_array_equal(flow_stacks(cropped), reference)
    assert flow_stacks(cropped).dtype == np.uint8 and flow_stacks(cropped).flags.c_contiguous


def test_flow_stacks_reject_short_videos_and_bad_starts():
    with pytest.raises(ValueError, match="too short for one flow stack"):
        flow_stacks(np.zeros((4, 8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="starts=\\[4\\]"):
        flow_stacks(np.zeros((8, 8, 8, 2), np.uint8), starts=[0, 4])


def test_compute_flow_rejects_bad_arguments(shifted_video):
    with pytest.raises(ValueError, match="method='lucas'"):
        compute_flow(shifted_video, "lucas")
    with pytest.raises(ValueError, match="1 frame"):
        compute_flow(shifted_video[:1])


def _chunks(array: np.ndarray, size: int) -> list[np.ndarray]:
    return [array[start : start + size] for start in range(0, len(array), size)]


# tvl1_keras compiles for each shape (a minute on CI): its batching is tested in test_tvl1.py.
@pytest.mark.parametrize("method", [m for m in FLOW_METHODS if m != "tvl1_keras"])
def test_flow_chunk_by_chunk_is_compute_flow_bit_for_bit(method):
    frames = shifted_texture_frames(9, 32, 40, (1.5, -0.5), seed=4)
    whole = compute_flow(frames, method)  # (8, 32, 40, 2)
    for size in (1, 2, 4, 9):
        chunked = list(iter_flow(_chunks(frames, size), method))
        np.testing.assert_array_equal(np.concatenate(chunked), whole)
        # One chunk of flow per chunk of frames (a lone first frame gives none yet).
        assert [len(chunk) for chunk in chunked] == [size - 1] * (size > 1) + [
            len(chunk) for chunk in _chunks(frames, size)[1:]
        ]
    with pytest.raises(ValueError, match="at least 2 frames"):
        list(iter_flow([frames[:1]], method))


def test_stacks_chunk_by_chunk_are_flow_stacks():
    flow = np.random.default_rng(1).integers(0, 256, (23, 6, 8, 2), dtype=np.uint8)
    whole = flow_stacks(flow)  # (19, 6, 8, 10)
    for size in (1, 3, 4, 5, 7, 23):
        np.testing.assert_array_equal(
            np.concatenate(list(iter_flow_stacks(_chunks(flow, size)))), whole
        )
    for short in (flow[:4], flow[:1]):
        with pytest.raises(ValueError, match="too short for one flow stack"):
            list(iter_flow_stacks(_chunks(short, 2)))


def test_flow_files_read_and_written_chunk_by_chunk(tmp_path):
    flow = np.random.default_rng(2).integers(0, 256, (40, 16, 20, 2), dtype=np.uint8)
    whole = save_flow(tmp_path / "whole" / "clip.npz", flow, {"method": "tvl1"})
    with SpooledArray(tmp_path / "spooled") as spooled:
        for chunk in _chunks(flow, 7):
            spooled.append(chunk)
        spooled_file = save_flow(tmp_path / "spooled" / "clip.npz", spooled, {"method": "tvl1"})
    assert spooled_file.read_bytes() == whole.read_bytes()  # the same file
    assert sorted(p.name for p in spooled_file.parent.iterdir()) == ["clip.npz"]  # no spool
    for size in (1, 6, 32, 100):
        chunks = list(load_flow_chunks(whole, size))
        assert len(chunks[0]) == min(size, 40)
        np.testing.assert_array_equal(np.concatenate(chunks), flow)
    whole.write_bytes(whole.read_bytes()[:-40])
    with pytest.raises(ValueError, match="clip.npz") as info:
        list(load_flow_chunks(whole))
    assert "compute its flow again" in str(info.value)


def test_save_and_load_flow_are_exact_and_reproducible(tmp_path):
    flow = np.random.default_rng(0).integers(0, 256, (4, 16, 20, 2), dtype=np.uint8)
    first = save_flow(tmp_path / "a" / "clip.npz", flow, {"method": "tvl1"})
    second = save_flow(tmp_path / "b" / "clip.npz", flow, {"method": "tvl1"})
    loaded, metadata = load_flow(first, with_metadata=True)
    np.testing.assert_array_equal(loaded, flow)
    assert metadata == {"method": "tvl1"}
    assert first.read_bytes() == second.read_bytes()  # no timestamps in the file
    assert sorted(p.name for p in first.parent.iterdir()) == ["clip.npz"]  # no temp left


def test_load_flow_names_a_truncated_file(tmp_path):
    path = save_flow(tmp_path / "clip.npz", np.zeros((3, 8, 8, 2), np.uint8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="clip.npz") as info:
        load_flow(path)
    assert "compute its flow again" in str(info.value)


def test_read_rawframes_layout(tmp_path):
    frames = shifted_texture_frames(4, 24, 32)
    flow = np.full((3, 24, 32, 2), 128, np.uint8)
    flow[..., 0] = 200
    for index in range(4):
        cv2.imwrite(str(tmp_path / f"img_{index + 1:05d}.jpg"), frames[index][..., ::-1])
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"flow_x_{index + 1:05d}.jpg"), flow[index, ..., 0])
        cv2.imwrite(str(tmp_path / f"flow_y_{index + 1:05d}.jpg"), flow[index, ..., 1])
    images, loaded = read_rawframes(tmp_path)
    assert images.shape == (4, 24, 32, 3) and loaded.shape == (3, 24, 32, 2)
    assert np.abs(loaded.astype(int) - flow).max() <= 2  # JPEG
    assert np.abs(images.astype(float) - frames).mean() < 8
    (tmp_path / "flow_y_00003.jpg").unlink()
    with pytest.raises(VideoError, match="flow_y"):
        read_rawframes(tmp_path)


def test_flow_of_an_earlier_solver_revision_is_a_mismatch_not_complete(tmp_path):
    """Flow written by an earlier tvl1_keras (no revision, or another one) is never taken
    for the current solver's; OpenCV methods' files, which carry none, stay complete."""
    from dataclasses import asdict

    from temporal_attention.data.flow_store import SOLVER_REVISIONS, FlowSettings, FlowStore

    store, flow = FlowStore(tmp_path), np.full((3, 8, 8, 2), 128, np.uint8)
    current = FlowSettings("tvl1_keras", 8, 8)
    assert current.solver_revision == SOLVER_REVISIONS["tvl1_keras"]
    assert FlowSettings("dis", 8, 8).solver_revision is None
    earlier = {key: value for key, value in asdict(current).items() if key != "solver_revision"}
    for video_id, metadata in [
        ("a/older", earlier),  # written before revisions were recorded
        ("a/other", {**earlier, "solver_revision": current.solver_revision - 1}),
        ("a/current", asdict(current)),
    ]:
        store.write(video_id, flow, {**metadata, "video_id": video_id})
    assert store.status("a/older", current) == "mismatch"
    assert store.status("a/other", current) == "mismatch"
    assert store.status("a/current", current) == "complete"
    opencv = FlowSettings("dis", 8, 8)
    old_dis = {key: value for key, value in asdict(opencv).items() if key != "solver_revision"}
    store.write("b/dis", flow, {**old_dis, "video_id": "b/dis"})
    assert store.status("b/dis", opencv) == "complete"
