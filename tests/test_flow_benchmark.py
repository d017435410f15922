"""benchmarks.flow_benchmark on a real clip at a tiny size (OpenCV methods only: the
keras.ops TV-L1 is measured in tests/test_tvl1.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import flow_benchmark

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared/data/ucf101_subset/UCF-101/Punch"


def test_reports_accuracy_agreement_and_speed_of_each_method(tmp_path):
    video = next(iter(sorted(CLIP.glob("*.avi"))), None)
    if video is None:
        pytest.skip(f"no clip in {CLIP} (the real clips live in ../shared/data)")
    report = flow_benchmark.main(
        ["--video", str(video), "--methods", "tvl1,dis", "--height", "48", "--width", "64",
         "--pairs", "2", "--speed-pairs", "3", "--workers", "2",
         "--output", str(tmp_path / "flow.json")]
    )  # fmt: skip
    rows = {row["method"]: row for row in report["rows"]}
    assert report["speed_pairs"] == 3 and all(row["workers"] == 2 for row in rows.values())
    assert rows["tvl1"]["levels_from_opencv_tvl1"] == 0 and rows["tvl1"]["within_2_levels"] == 1
    assert rows["dis"]["levels_from_opencv_tvl1"] > 0  # another method: not the reference
    for row in rows.values():
        assert set(row["epe"]) == {"translation", "rotation", "zoom"}
        assert all(0 <= error < 1.5 for error in row["epe"].values())
        assert row["pairs_per_s"] > 0
    assert "| dis |" in flow_benchmark.format_markdown(report)
    assert "2 processes of 1 thread" in flow_benchmark.format_markdown(report)
    assert (tmp_path / "flow.json").exists()


def test_known_flow_satisfies_the_fields_definition():
    """The moved image is I1(x) = I0(x - g(x)): a pixel s of I0 lands at x = s + flow(s),
    so x - g(x) must give s back, g(x) = A (x - c) + t."""
    image = np.random.default_rng(0).uniform(0, 255, (40, 50)).astype(np.float32)
    turn, grow = np.deg2rad(3), 0.04
    fields = {"translation": ([[0, 0], [0, 0]], (2.3, -1.4)),
              "rotation": ([[0, -turn], [turn, 0]], (0.5, 0.0)),
              "zoom": ([[grow, 0], [0, grow]], (0.0, 0.7))}  # fmt: skip
    ys, xs = np.mgrid[0:40, 0:50].astype(np.float64)
    source = np.stack([xs, ys], -1)
    centre = np.array([25.0, 20.0])
    for name, (moved, flow) in flow_benchmark.known_flow_set(image).items():
        matrix, shift = np.asarray(fields[name][0]), np.asarray(fields[name][1])
        landing = source + flow
        back = landing - ((landing - centre) @ matrix.T + shift)
        np.testing.assert_allclose(back, source, atol=1e-4, err_msg=name)
        assert moved.shape == image.shape and not np.array_equal(moved, image)


def test_tvl1_keras_is_timed_in_whole_batches_compiled_first(monkeypatch):
    """Every timed call has `batch` pairs (no other shape to compile inside the timing),
    after one untimed call of that shape."""
    sizes = []
    monkeypatch.setattr(flow_benchmark, "_flows", lambda method, a, b: sizes.append(len(a)))
    frames = [np.zeros((8, 8), np.uint8)] * 12
    row = flow_benchmark.time_speed("tvl1_keras", frames, frames, workers=1, batch=4)
    assert sizes == [4, 4, 4, 4] and row["batch"] == 4 and row["pairs_per_s"] > 0


def test_the_benchmark_imports_no_keras_so_its_opencv_workers_start_light():
    """The OpenCV methods run in spawned processes, which import this module: Keras and
    its backend would cost each of them seconds and hundreds of MB."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, benchmarks.flow_benchmark; print(sorted(m for m in "
            "('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
