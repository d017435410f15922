"""The flow CLI: outputs, re-runs doing no work, bad inputs reported, shards, kill and resume,
Ctrl-C with workers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from temporal_attention.data.optical_flow import compute_flow, load_flow, save_flow
from temporal_attention.data.video import VideoReader, read_video, write_video
from temporal_attention.training.compute_flow import main
from tests.shell_jobs import ctrl_c_once_written
from tests.synthetic_videos import write_ucf101_like

REPO = Path(__file__).resolve().parents[1]


def _args(video_root, split_dir, output, *extra):
    return [
        "--video-root",
        str(video_root),
        "--split-dir",
        str(split_dir),
        "--output",
        str(output),
        "--height",
        "48",
        "--width",
        "64",
        "--workers",
        "1",
        *extra,
    ]


@pytest.fixture
def dataset(tmp_path):
    return write_ucf101_like(tmp_path / "data", ("Alpha", "Beta"), clips_per_class=3)


def test_computes_every_clip_then_a_rerun_does_no_work(dataset, tmp_path, capsys):
    output = tmp_path / "flow"
    assert main(_args(*dataset, output)) == 0
    files = sorted(output.rglob("*.npz"))
    assert len(files) == 6
    flow, metadata = load_flow(output / "Beta" / "v_Beta_g02_c01.npz", with_metadata=True)
    assert flow.shape == (9, 48, 64, 2) and flow.dtype == np.uint8
    assert metadata["method"] == "tvl1" and metadata["num_frames"] == 10
    assert not (output / "failures.jsonl").exists()
    stamps = {path: path.stat().st_mtime_ns for path in files}
    capsys.readouterr()
    assert main(_args(*dataset, output)) == 0
    assert "6 already complete, 0 to compute" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in files} == stamps


def test_bad_inputs_are_reported_by_name_and_nothing_is_lost(dataset, tmp_path, capsys):
    video_root, split_dir = dataset
    output = tmp_path / "flow"
    assert main(_args(*dataset, output, "--classes", "Alpha")) == 0
    kept = {path: path.read_bytes() for path in output.rglob("*.npz")}
    (video_root / "Beta" / "v_Beta_g01_c01.avi").write_text("not a video")
    truncated = video_root / "Beta" / "v_Beta_g02_c01.avi"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    write_video(video_root / "Beta" / "v_Beta_g03_c01.avi", np.zeros((4, 48, 64, 3), np.uint8))
    (video_root / "Alpha" / "v_Alpha_g03_c01.avi").rename(tmp_path / "moved.avi")
    capsys.readouterr()
    assert main(_args(*dataset, output)) == 1
    out = capsys.readouterr().out
    log = [json.loads(line) for line in (output / "failures.jsonl").read_text().splitlines()]
    reasons = {entry["item_id"]: entry["message"] for entry in log}
    assert set(reasons) == {
        "Alpha/v_Alpha_g03_c01",
        "Beta/v_Beta_g01_c01",
        "Beta/v_Beta_g02_c01",
        "Beta/v_Beta_g03_c01",
    }
    assert "missing on disk" in reasons["Alpha/v_Alpha_g03_c01"]
    assert "cannot open" in reasons["Beta/v_Beta_g01_c01"]
    assert "truncated" in reasons["Beta/v_Beta_g02_c01"]
    assert "too short for one flow stack" in reasons["Beta/v_Beta_g03_c01"]
    assert "v_Beta_g03_c01.avi" in reasons["Beta/v_Beta_g03_c01"]
    assert "failed 4" in out and "FAILED Beta/v_Beta_g01_c01" in out
    assert {path: path.read_bytes() for path in kept} == kept  # earlier outputs untouched
    assert sorted(p.name for p in output.rglob("*.npz")) == sorted(p.name for p in kept)


def test_other_settings_are_never_overwritten(dataset, tmp_path, capsys):
    output = tmp_path / "flow"
    assert main(_args(*dataset, output, "--classes", "Alpha", "--method", "farneback")) == 0
    before = (output / "Alpha" / "v_Alpha_g02_c01.npz").read_bytes()
    capsys.readouterr()
    # Another method ("auto": tvl1 on this CPU): refused before any work, one line.
    assert main(_args(*dataset, output, "--classes", "Alpha")) == 2
    assert "holds flow of farneback" in capsys.readouterr().err
    assert (output / "Alpha" / "v_Alpha_g02_c01.npz").read_bytes() == before


def test_bad_arguments_exit_2(dataset, tmp_path, capsys):
    assert main(_args(*dataset, tmp_path / "flow", "--shard", "2/2")) == 2
    assert main(_args(*dataset, tmp_path / "flow", "--classes", "Nope")) == 2
    assert "shard='2/2'" in capsys.readouterr().err


def test_shards_in_a_pool_match_one_run(dataset, tmp_path):
    assert main(_args(*dataset, tmp_path / "whole", "--subset", "train")) == 0
    for shard in ("0/2", "1/2"):
        args = _args(*dataset, tmp_path / "sharded", "--subset", "train", "--shard", shard)
        assert main([*args[:-2], "--workers", "2"]) == 0
    whole = {
        p.relative_to(tmp_path / "whole"): p.read_bytes()
        for p in (tmp_path / "whole").rglob("*.npz")
    }
    sharded = {
        p.relative_to(tmp_path / "sharded"): p.read_bytes()
        for p in (tmp_path / "sharded").rglob("*.npz")
    }
    assert len(whole) == 4 and sharded == whole


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_outputs(tmp_path):
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha", "Beta"), clips_per_class=3, num_frames=12, height=48, width=64
    )
    command = [
        sys.executable,
        "-m",
        "training.compute_flow",
        "--video-root",
        str(video_root),
        "--split-dir",
        str(split_dir),
        "--height",
        "256",
        "--width",
        "340",
        "--workers",
        "1",
        "--method",
        "farneback",  # about 0.3 s a video at 256 x 340 here: the kill lands mid-run
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    subprocess.run(
        [*command, "--output", str(reference)],
        check=True,
        cwd=REPO,
        env=environment,
        capture_output=True,
    )

    process = subprocess.Popen(
        [*command, "--output", str(resumed)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(resumed.rglob("*.npz")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = list(resumed.rglob("*.npz"))
    assert 1 <= len(done_before_kill) < 6, "the kill should land mid-run"

    rerun = subprocess.run(
        [*command, "--output", str(resumed)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_before_kill)} already complete" in rerun.stdout
    files = {p.relative_to(reference): p.read_bytes() for p in reference.rglob("*.npz")}
    again = {p.relative_to(resumed): p.read_bytes() for p in resumed.rglob("*.npz")}
    assert len(files) == 6 and again == files  # byte-identical
    assert not [p for p in resumed.rglob("*") if p.name.startswith(".")]  # no temp left


@pytest.mark.slow
def test_ctrl_c_with_workers_exits_130_within_seconds_and_writes_nothing_after(tmp_path):
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha", "Beta"), clips_per_class=4, num_frames=12
    )  # about 1 s of flow per clip and worker
    output = tmp_path / "flow"
    argv = ["training.compute_flow", *_args(video_root, split_dir, output)[:-2], "--workers", "2"]
    returncode, err, seconds = ctrl_c_once_written(argv, output)
    assert returncode == 130
    assert seconds < 5.0
    assert "interrupted" in err
    written = sorted(output.rglob("*.npz"))
    time.sleep(2.0)
    assert sorted(output.rglob("*.npz")) == written  # no worker goes on
    assert 1 <= len(written) < 8
    for path in written:  # each complete
        assert load_flow(path).shape == (11, 48, 64, 2)
    assert not [p for p in output.rglob("*") if ".tmp-" in p.name]


def test_decode_videos_indexes_frames_and_names_bad_files(dataset, tmp_path, capsys):
    from temporal_attention.training.decode_videos import main as decode_main

    video_root, split_dir = dataset
    (video_root / "Beta" / "v_Beta_g02_c01.avi").write_bytes(b"\x00" * 100)
    output = tmp_path / "videos.csv"
    args = ["--video-root", str(video_root), "--split-dir", str(split_dir), "--workers", "1"]
    assert decode_main([*args, "--output", str(output)]) == 1
    rows = output.read_text().splitlines()
    assert rows[0] == "video_id,label,num_frames,fps,source_height,source_width"
    assert rows[1] == "Alpha/v_Alpha_g02_c01,0,10,25.000,48,64"
    assert len(rows) == 1 + 5
    assert "Beta/v_Beta_g02_c01" in (tmp_path / "videos.csv.failures.jsonl").read_text()
    assert "FAILED Beta/v_Beta_g02_c01" in capsys.readouterr().out


def test_missing_clips_are_reported_once_in_their_subset_and_shard(dataset, tmp_path):
    from temporal_attention.training.decode_videos import main as decode_main

    video_root, split_dir = dataset
    (video_root / "Alpha" / "v_Alpha_g03_c01.avi").unlink()  # a train clip
    args = ["--video-root", str(video_root), "--split-dir", str(split_dir), "--workers", "1"]
    assert decode_main([*args, "--subset", "test", "--output", str(tmp_path / "t.csv")]) == 0
    statuses = [
        decode_main([*args, "--shard", f"{i}/2", "--output", str(tmp_path / f"s{i}.csv")])
        for i in range(2)
    ]
    assert sorted(statuses) == [0, 1]


@pytest.mark.parametrize("num_frames", [20, 75])
def test_videos_read_chunk_by_chunk_give_the_file_of_the_whole_video(
    tmp_path, monkeypatch, num_frames
):
    # 20 frames: one chunk; 75: 3 chunks of decoding (32 frames) and of flow. The file
    # must be the one the whole-video functions give, byte for byte.
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha",), clips_per_class=2, num_frames=num_frames, height=48,
        width=64,
    )  # fmt: skip
    decoded, chunks = [], VideoReader.chunks

    def counted_chunks(reader, *args):
        for chunk in chunks(reader, *args):
            decoded.append(len(chunk))
            yield chunk

    monkeypatch.setattr(VideoReader, "chunks", counted_chunks)
    output = tmp_path / "flow"
    assert main(_args(video_root, split_dir, output, "--method", "farneback")) == 0
    assert decoded == ([20, 20] if num_frames == 20 else [32, 32, 11, 32, 32, 11])  # 2 clips
    monkeypatch.undo()
    written = output / "Alpha" / "v_Alpha_g02_c01.npz"
    _, metadata = load_flow(written, with_metadata=True)
    video = read_video(video_root / "Alpha" / "v_Alpha_g02_c01.avi", 48, 64)
    expected = save_flow(
        tmp_path / "expected.npz", compute_flow(video.frames, "farneback"), metadata
    )
    assert metadata["num_frames"] == num_frames
    assert written.read_bytes() == expected.read_bytes()
