"""benchmarks.fit_profile: the GPU trace summary, on a made-up trace and on a real CPU trace."""

from pathlib import Path

import pytest

from benchmarks.fit_profile import format_markdown, kind_of, summarize, summarize_events


def _write_xspace(path: Path, streams: dict[str, list[tuple[str, float, float]]]) -> None:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/device:GPU:0")
    ids = {}
    for line_name, events in streams.items():
        line = plane.lines.add(name=line_name, timestamp_ns=1000)
        for name, start_us, duration_us in events:
            if name not in ids:
                ids[name] = len(ids) + 1
                plane.event_metadata[ids[name]].name = name
            line.events.add(
                metadata_id=ids[name],
                offset_ps=int(start_us * 1e6),
                duration_ps=int(duration_us * 1e6),
            )
    space.planes.add(name="/host:CPU")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(space.SerializeToString())


def test_kinds():
    assert kind_of("sm90_xmma_gemm_f32f32_tf32") == "matrix product"
    assert kind_of("loop_add_fusion_3") == "fused elementwise"
    assert kind_of("input_reduce_fusion") == "reduction"
    assert kind_of("MemcpyDtoH") == "copy / memset"
    assert kind_of("whatever") == "other"


def test_summary_of_a_made_up_trace(tmp_path):
    # 2 steps; two streams overlapping for 5 us; idle from 40 to 100 us.
    streams = {
        "Stream #1": [("gemm_a", 0, 20), ("loop_fusion", 20, 10), ("gemm_a", 100, 20)],
        "Stream #2": [("MemcpyDtoH", 25, 10)],
    }
    _write_xspace(tmp_path / "plugins/profile/run/host.xplane.pb", streams)
    (tmp_path / "case.json").write_text('{"steps": 2}')
    summary = summarize(tmp_path)
    assert summary["events"] == 4 and summary["events_per_step"] == 2
    assert summary["span_ms_per_step"] == pytest.approx(0.120 / 2)
    assert summary["device_ms_per_step"] == pytest.approx(0.060 / 2)
    assert summary["busy_ms_per_step"] == pytest.approx(0.055 / 2)  # the overlap counted once
    assert summary["busy_share"] == pytest.approx(55 / 120)
    assert summary["by_kind_ms_per_step"]["matrix product"] == pytest.approx(0.040 / 2)
    assert summary["top"][0]["name"] == "gemm_a" and summary["top"][0]["count_per_step"] == 1
    assert "2 GPU kernels" in format_markdown(summary)


def test_no_gpu_events_and_no_trace(tmp_path):
    with pytest.raises(ValueError, match="no GPU events"):
        summarize_events([], steps=1)
    with pytest.raises(FileNotFoundError, match="xplane.pb"):
        summarize(tmp_path)


@pytest.mark.multibackend
def test_a_real_trace_on_the_cpu(tmp_path):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("jax.profiler traces the JAX backend")
    from benchmarks.fit_profile import main

    main(["--trace", str(tmp_path), "--tiny", "--steps", "2"])
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    with pytest.raises(ValueError, match="no GPU events"):  # a CPU trace has none
        summarize(tmp_path)
