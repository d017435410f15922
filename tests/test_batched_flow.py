"""tvl1_keras as a flow stage: pairs of many videos in one batch give each video the flow and
the files of the per-video path; bad videos fail alone; Ctrl-C stops it and a re-run
completes; `--method auto` and the solver's self-check."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from temporal_attention.data.flow_store import FlowSettings, FlowStore
from temporal_attention.data.optical_flow import load_flow
from temporal_attention.data.video import write_video
from temporal_attention.training.compute_flow import (
    flow_one_video,
    flow_one_video_to_frames,
    main,
    parse_args,
)
from tests.shell_jobs import ctrl_c_once_written
from tests.synthetic_videos import write_ucf101_like
from tests.tvl1_sizes import FLOW_HEIGHT, FLOW_PAIRS, FLOW_WIDTH

REPO = Path(__file__).resolve().parents[1]
SIZE = ("--height", str(FLOW_HEIGHT), "--width", str(FLOW_WIDTH))
PAIRS = str(FLOW_PAIRS)


def _args(video_root, split_dir, output, *extra):
    return [
        "--video-root", str(video_root), "--split-dir", str(split_dir),
        "--output", str(output), *SIZE, "--method", "tvl1_keras", *extra,
    ]  # fmt: skip


def _files(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _clips(video_root: Path) -> list[tuple[str, Path]]:
    paths = sorted(video_root.rglob("*.avi"))
    return [(str(p.relative_to(video_root).with_suffix("")), p) for p in paths]


@pytest.fixture
def dataset(tmp_path):
    return write_ucf101_like(tmp_path / "data", ("Alpha", "Beta"), clips_per_class=3)


@pytest.mark.jax
def test_batches_across_videos_give_the_files_of_the_per_video_path(tmp_path, monkeypatch):
    """7-frame videos (6 pairs) in batches of 4 (FLOW_PAIRS): batches end one video and
    begin the next, and a video's pairs are spread over two batches. (The per-video path
    batches 4 pairs too here: one compiled shape for the file.)"""
    import temporal_attention.data.optical_flow

    monkeypatch.setattr(temporal_attention.data.optical_flow, "TVL1_KERAS_PAIRS", FLOW_PAIRS)
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha", "Beta"), clips_per_class=2, num_frames=7
    )
    settings = FlowSettings("tvl1_keras", FLOW_HEIGHT, FLOW_WIDTH)
    for layout in ("npz", "frames"):
        batched, reference = tmp_path / f"batched_{layout}", tmp_path / f"reference_{layout}"
        extra = ("--batch-pairs", PAIRS, "--workers", "2", "--layout", layout)
        assert main(_args(video_root, split_dir, batched, *extra)) == 0
        for video_id, path in _clips(video_root):
            if layout == "npz":
                result = flow_one_video(video_id, str(path), str(reference), settings)
            else:
                result = flow_one_video_to_frames(video_id, str(path), str(reference), settings, 95)
            assert result.status == "done", result.message
        batched_files = {
            name: data for name, data in _files(batched).items() if "failures" not in str(name)
        }
        assert len(batched_files) == (4 if layout == "npz" else 4 * (1 + 2 * 6))
        assert batched_files == _files(reference)  # byte for byte, metadata included
    flow, metadata = load_flow(tmp_path / "batched_npz" / "Beta" / "v_Beta_g02_c01.npz", True)
    assert flow.shape == (6, FLOW_HEIGHT, FLOW_WIDTH, 2) and metadata["method"] == "tvl1_keras"


def test_bad_videos_fail_alone_named_and_leave_nothing(dataset, tmp_path, capsys):
    video_root, split_dir = dataset
    (video_root / "Alpha" / "v_Alpha_g01_c01.avi").write_text("not a video")
    truncated = video_root / "Alpha" / "v_Alpha_g02_c01.avi"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    write_video(video_root / "Beta" / "v_Beta_g01_c01.avi", np.zeros((4, 48, 64, 3), np.uint8))
    for layout in ("npz", "frames"):
        output = tmp_path / layout
        extra = ("--batch-pairs", PAIRS, "--workers", "2", "--layout", layout)
        assert main(_args(video_root, split_dir, output, *extra)) == 1
        log_name = "failures.jsonl" if layout == "npz" else "failures-flow.jsonl"
        log = [json.loads(line) for line in (output / log_name).read_text().splitlines()]
        reasons = {entry["item_id"]: entry["message"] for entry in log}
        assert set(reasons) == {
            "Alpha/v_Alpha_g01_c01",
            "Alpha/v_Alpha_g02_c01",
            "Beta/v_Beta_g01_c01",
        }
        assert "cannot open" in reasons["Alpha/v_Alpha_g01_c01"]
        assert "truncated" in reasons["Alpha/v_Alpha_g02_c01"]
        assert "too short for one flow stack" in reasons["Beta/v_Beta_g01_c01"]
        if layout == "npz":
            assert sorted(p.stem for p in output.rglob("*.npz")) == [
                "v_Alpha_g03_c01", "v_Beta_g02_c01", "v_Beta_g03_c01",
            ]  # fmt: skip
        else:
            assert sorted(p.parent.name for p in output.rglob("flow.json")) == [
                "v_Alpha_g03_c01", "v_Beta_g02_c01", "v_Beta_g03_c01",
            ]  # fmt: skip
            for failed in reasons:
                assert not (output / failed).exists()  # no flow images of a failed video
        assert not [p for p in output.rglob("*") if ".tmp-" in p.name]


@pytest.mark.jax
@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_and_a_rerun_completes_the_same_files(tmp_path, capsys):
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha", "Beta"), clips_per_class=4, num_frames=40
    )  # 312 pairs: 78 batches of 4, several seconds of flow
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    extra = ("--batch-pairs", PAIRS, "--workers", "2")
    assert main(_args(video_root, split_dir, reference, *extra)) == 0
    argv = ["training.compute_flow", *_args(video_root, split_dir, resumed, *extra)]
    returncode, err, seconds = ctrl_c_once_written(argv, resumed, wait_seconds=120)
    assert returncode == 130, err
    assert seconds < 5.0
    written = sorted(resumed.rglob("*.npz"))
    assert 1 <= len(written) < 8, "the interrupt should land mid-run"
    for path in written:  # each complete
        assert load_flow(path).shape == (39, FLOW_HEIGHT, FLOW_WIDTH, 2)
    assert not [p for p in resumed.rglob("*") if ".tmp-" in p.name]
    capsys.readouterr()
    assert main(_args(video_root, split_dir, resumed, *extra)) == 0  # the re-run
    assert f"{len(written)} already complete" in capsys.readouterr().out
    assert _files(resumed) == _files(reference)


def test_auto_is_opencv_without_a_gpu_and_tvl1_keras_on_one_that_passes_the_check(
    dataset, tmp_path, monkeypatch
):
    import temporal_attention.data.tvl1
    import temporal_attention.runtime.devices
    from temporal_attention.training.compute_flow import resolve_settings

    config = replace(parse_args(_args(*dataset, tmp_path / "flow")), batch_pairs=FLOW_PAIRS)
    config = replace(config, settings=FlowSettings("auto", FLOW_HEIGHT, FLOW_WIDTH))
    monkeypatch.setattr(temporal_attention.runtime.devices, "gpu_visible", lambda: False)
    resolved, note = resolve_settings(config)
    assert resolved.settings.method == "tvl1" and "no GPU" in note
    monkeypatch.setattr(temporal_attention.runtime.devices, "gpu_visible", lambda: True)
    resolved, note = resolve_settings(config)
    assert resolved.settings.method == "tvl1_keras", note
    assert resolved.settings.solver_revision is not None and "px end-point error" in note
    monkeypatch.setattr(
        temporal_attention.data.tvl1, "self_check", lambda *args, **kwargs: (3.2, False)
    )
    resolved, note = resolve_settings(config)
    assert resolved.settings.method == "tvl1" and "failed" in note


def test_self_check_passes_the_solver_and_fails_a_wrong_one(monkeypatch):
    import temporal_attention.data.tvl1

    error, passed = temporal_attention.data.tvl1.self_check(
        FLOW_PAIRS, FLOW_HEIGHT, FLOW_WIDTH
    )  # the tests' shape
    assert passed and error < 0.15  # the solver's error and the quantisation's (0.09 px)
    zero_flow = np.full(
        (FLOW_PAIRS, FLOW_HEIGHT, FLOW_WIDTH, 2), 128, np.uint8
    )  # 0.08 px: about no motion
    monkeypatch.setattr(temporal_attention.data.tvl1, "stage_flow", lambda *args: zero_flow)
    error, passed = temporal_attention.data.tvl1.self_check(FLOW_PAIRS, FLOW_HEIGHT, FLOW_WIDTH)
    assert not passed and error > 1.0


def test_unresolved_settings_are_never_compared_or_stored(tmp_path):
    with pytest.raises(ValueError, match="auto"):
        FlowStore(tmp_path).status("Alpha/v_Alpha_g01_c01", FlowSettings())
    with pytest.raises(ValueError, match="Expected method"):
        FlowSettings("tvl2")
    assert FlowSettings("auto").resolve(on_gpu=False).method == "tvl1"
    assert FlowSettings("dis").resolve(on_gpu=True).method == "dis"


def test_the_flow_stage_imports_no_keras_so_opencv_workers_start_light():
    """compute_flow's worker processes (spawned) import its module: Keras and its backend
    would cost each of them seconds and hundreds of MB."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, training.compute_flow; print(sorted(m for m in "
            "('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
