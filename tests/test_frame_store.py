"""The frame store and its stages: frames and flow stacks read back as the video and flow
paths give them (within JPEG's error, in the project's channel order), an interrupted
video written again, shards, failures, and a dense_flow folder without a marker."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from temporal_attention.data.flow_store import FlowStore
from temporal_attention.data.frame_store import (
    FrameSettings,
    FrameStore,
    FrameStoreError,
    image_name,
)
from temporal_attention.data.optical_flow import flow_stacks, read_rawframes
from temporal_attention.data.video import read_video, write_video
from temporal_attention.training.extract_frames import main
from tests.synthetic_videos import shifted_texture_frames, write_ucf101_like

HEIGHT, WIDTH = 48, 64
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
        str(HEIGHT),
        "--width",
        str(WIDTH),
        "--workers",
        "1",
        *extra,
    ]


def _colour_frames(num_frames: int = 10, seed: int = 7) -> np.ndarray:
    """A moving texture whose three channels differ, so that an RGB/BGR swap shows."""
    gray = shifted_texture_frames(num_frames, HEIGHT, WIDTH, (2.0, 1.0), seed=seed)[..., 0]
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, None, :]
    red = gray
    green = np.broadcast_to(ramp, gray.shape)
    blue = 255 - gray // 2
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)  # (frames, H, W, 3)


def _gray(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]).astype(int)


def _files(root):
    """Every file under `root` (relative path -> bytes), failure logs left out."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith("failures")
    }


@pytest.fixture
def dataset(tmp_path):
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha", "Beta"), clips_per_class=2, height=HEIGHT, width=WIDTH
    )
    write_video(video_root / "Alpha" / "v_Alpha_g02_c01.avi", _colour_frames())
    return video_root, split_dir


def test_frames_read_back_as_decoded_and_a_rerun_does_no_work(dataset, tmp_path, capsys):
    video_root, _ = dataset
    output = tmp_path / "frames"
    assert main(_args(*dataset, output)) == 0
    store = FrameStore(output)
    video = store.video("Alpha/v_Alpha_g02_c01")
    decoded = read_video(video_root / "Alpha" / "v_Alpha_g02_c01.avi", HEIGHT, WIDTH).frames
    assert (video.num_frames, video.num_flows) == (10, 0)
    frames = video.read_frames()
    assert frames.shape == decoded.shape and frames.dtype == np.uint8
    # JPEG at quality 90 halves the colour resolution (4:2:0): on this 48x64 texture of
    # sharp colour detail the error is 5.1 (as much as the MJPG file's own, 6.1) and on
    # brightness 0.3; red and blue swapped would give 46.
    error = np.abs(frames.astype(int) - decoded)
    assert error.mean() < 8.0 and np.percentile(error, 99) <= 24
    assert np.abs(_gray(frames) - _gray(decoded)).mean() < 1.0
    assert np.array_equal(video.read_frame(7), frames[7])  # random access, one file
    with pytest.raises(IndexError, match="frame 10 out of range"):
        video.read_frame(10)
    marker = store.marker("Alpha/v_Alpha_g02_c01")
    assert marker["state"] == "complete" and marker["num_frames"] == 10
    assert (marker["height"], marker["width"], marker["jpeg_quality"]) == (HEIGHT, WIDTH, 90)
    assert marker["source_file"] == "v_Alpha_g02_c01.avi" and marker["image_size"] == [48, 64]
    folder = store.folder_for("Alpha/v_Alpha_g02_c01")
    assert marker["bytes"] == sum(p.stat().st_size for p in folder.glob("img_*.jpg"))
    assert sorted(p.name for p in folder.iterdir()) == [
        "frames.json",
        *(image_name("img", index) for index in range(10)),
    ]
    before = {path: (output / path).stat().st_mtime_ns for path in _files(output)}
    capsys.readouterr()
    assert main(_args(*dataset, output)) == 0
    assert "4 already complete, 0 external" in capsys.readouterr().out
    assert {path: (output / path).stat().st_mtime_ns for path in _files(output)} == before
    # Other settings into the same store: reported, never overwritten.
    assert main(_args(*dataset, output, "--jpeg-quality", "50", "--classes", "Alpha")) == 1
    assert "other settings" in (output / "failures-frames.jsonl").read_text()
    assert {path: (output / path).stat().st_mtime_ns for path in _files(output)} == before


def test_flow_stacks_are_stored_in_the_projects_channel_order(tmp_path):
    store = FrameStore(tmp_path / "frames")
    flow = np.zeros((8, HEIGHT, WIDTH, 2), np.uint8)  # flat fields JPEG keeps (within 1)
    flow[..., 0] = (20 + 10 * np.arange(8))[:, None, None]  # x of flow t: 20 + 10 t
    flow[..., 1] = (200 - 10 * np.arange(8))[:, None, None]  # y of flow t: 200 - 10 t
    writer = store.flow_writer("A/v", {"method": "tvl1", "jpeg_quality": 95})
    writer.append(flow[:3])
    writer.append(flow[3:])
    writer.finish({"source_file": "v.avi"})
    video = store.video("A/v")
    assert (video.num_frames, video.num_flows, video.num_stacks) == (0, 8, 4)
    stack = video.read_flow_stack(2)  # flows 2..6, x2, y2, x3, y3, ...
    assert stack.shape == (HEIGHT, WIDTH, 10)
    expected = [20 + 10 * t if c % 2 == 0 else 200 - 10 * t for t in range(2, 7) for c in (0, 1)]
    assert np.abs(stack.mean(axis=(0, 1)) - expected).max() <= 1
    assert np.abs(video.read_flow_stacks().astype(int) - flow_stacks(flow)).max() <= 1
    read_flows = np.stack([video.read_flow(index) for index in range(8)])
    np.testing.assert_array_equal(video.read_flow_stacks(), flow_stacks(read_flows))
    with pytest.raises(IndexError, match="flow stack 4 out of range"):
        video.read_flow_stack(4)


def test_compute_flow_writes_the_flow_store_flow_into_the_frame_store(dataset, tmp_path, capsys):
    from temporal_attention.training.compute_flow import main as flow_main

    output = tmp_path / "frames"

    def flow_args(root, *extra):
        return [*_args(*dataset, root, "--classes", "Alpha", "--method", "farneback"), *extra]

    assert main(_args(*dataset, output, "--classes", "Alpha")) == 0  # frames first
    assert flow_main(flow_args(output, "--layout", "frames")) == 0
    assert flow_main(flow_args(tmp_path / "flow")) == 0  # the npz flow store, for reference
    for video_id in ("Alpha/v_Alpha_g01_c01", "Alpha/v_Alpha_g02_c01"):
        video = FrameStore(output).video(video_id)
        reference = FlowStore(tmp_path / "flow").read_stacks(video_id)  # (5, 48, 64, 10)
        assert (video.num_frames, video.num_flows) == (10, 9)
        stacks = video.read_flow_stacks()
        assert stacks.shape == reference.shape
        error = np.abs(stacks.astype(int) - reference)
        assert error.mean() < 1.0 and error.max() <= 8  # JPEG at quality 95
        marker = FrameStore(output).marker(video_id, "flow")
        assert (marker["method"], marker["jpeg_quality"], marker["num_flows"]) == (
            "farneback",
            95,
            9,
        )
    capsys.readouterr()
    assert flow_main(flow_args(output, "--layout", "frames")) == 0
    assert "2 already complete, 0 to compute" in capsys.readouterr().out


def test_an_interrupted_video_is_written_again(dataset, tmp_path, capsys):
    output = tmp_path / "frames"
    assert main(_args(*dataset, output)) == 0
    reference = _files(output)
    store, video_id = FrameStore(output), "Beta/v_Beta_g02_c01"
    folder = store.folder_for(video_id)
    # A writer stopped after 3 (wrong) frames, its temporary left by a kill, and an image
    # beyond the video's length from an earlier attempt.
    writer = store.frames_writer(video_id, FrameSettings(HEIGHT, WIDTH))
    writer.append(np.zeros((3, HEIGHT, WIDTH, 3), np.uint8))
    (folder / f".img_00004.jpg.tmp-{2**22 + 12345}-0badf00d").write_bytes(b"half a jpeg")
    (folder / "img_00011.jpg").write_bytes((folder / "img_00001.jpg").read_bytes())
    assert store.status(video_id) == "partial"
    with pytest.raises(FrameStoreError, match="still being written"):
        store.video(video_id)  # nothing else to read
    writer = store.flow_writer(video_id, {"jpeg_quality": 95})  # the flow of a stopped writer
    writer.append(np.zeros((2, HEIGHT, WIDTH, 2), np.uint8))
    writer.finish({})
    assert store.video(video_id).num_frames == 0  # the flow is readable, the frames are not
    with pytest.raises(FrameStoreError, match="frames.json: still being written"):
        store.video(video_id).read_frame(0)
    capsys.readouterr()
    assert main(_args(*dataset, output)) == 0
    out = capsys.readouterr().out
    assert "3 already complete, 0 external" in out and "1 to write" in out
    files = _files(output)
    assert {path: files[path] for path in reference} == reference  # byte for byte
    assert not [path for path in files if path not in reference and "flow" not in path]


def test_shards_cover_the_split_and_match_one_run(dataset, tmp_path):
    assert main(_args(*dataset, tmp_path / "whole")) == 0
    assert main([*_args(*dataset, tmp_path / "sharded", "--shard", "0/2"), "--workers", "2"]) == 0
    assert (tmp_path / "sharded").exists() and len(_files(tmp_path / "sharded")) == 2 * 11
    assert main(_args(*dataset, tmp_path / "sharded", "--shard", "1/2")) == 0
    assert _files(tmp_path / "sharded") == _files(tmp_path / "whole")
    assert len(_files(tmp_path / "whole")) == 4 * 11


def test_a_corrupt_video_is_recorded_and_leaves_no_frames(dataset, tmp_path, capsys):
    video_root, _ = dataset
    (video_root / "Beta" / "v_Beta_g01_c01.avi").write_text("not a video")
    truncated = video_root / "Beta" / "v_Beta_g02_c01.avi"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    output = tmp_path / "frames"
    assert main(_args(*dataset, output)) == 1
    lines = (output / "failures-frames.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    reasons = {entry["item_id"]: entry["message"] for entry in log}
    assert set(reasons) == {"Beta/v_Beta_g01_c01", "Beta/v_Beta_g02_c01"}
    assert "cannot open" in reasons["Beta/v_Beta_g01_c01"]
    assert "truncated" in reasons["Beta/v_Beta_g02_c01"]
    assert "failed 2" in capsys.readouterr().out
    store = FrameStore(output)
    assert [store.status(f"Alpha/v_Alpha_g0{g}_c01") for g in (1, 2)] == ["complete"] * 2
    assert not store.folder_for("Beta/v_Beta_g02_c01").exists()  # its 5 frames removed
    assert store.status("Beta/v_Beta_g01_c01") == "missing"


def test_a_dense_flow_folder_without_a_marker_is_read_and_adopted(dataset, tmp_path, capsys):
    output = tmp_path / "frames"
    store, video_id = FrameStore(output), "Alpha/v_Alpha_g01_c01"
    folder = store.folder_for(video_id)
    folder.mkdir(parents=True)
    frames = _colour_frames(6)
    for index, frame in enumerate(frames):  # as dense_flow writes them (1-based)
        cv2.imwrite(str(folder / f"img_{index + 1:05d}.jpg"), frame[..., ::-1])
    for index in range(5):
        for axis, value in (("x", 100 + 5 * index), ("y", 150 - 5 * index)):
            plane = np.full((HEIGHT, WIDTH), value, np.uint8)
            cv2.imwrite(str(folder / f"flow_{axis}_{index + 1:05d}.jpg"), plane)
    assert store.status(video_id) == "external" and store.status(video_id, "flow") == "external"
    video = store.video(video_id)
    raw_frames, raw_flow = read_rawframes(folder)
    assert (video.num_frames, video.num_flows, video.num_stacks) == (6, 5, 1)
    assert np.array_equal(video.read_frames(), raw_frames)
    assert np.array_equal(video.read_flow_stacks(), flow_stacks(raw_flow))
    assert np.abs(video.read_frames().astype(int) - frames).mean() < 8.0  # swapped: 46
    untouched = _files(output)
    capsys.readouterr()
    assert main(_args(*dataset, output)) == 0  # the stage keeps it as it is
    assert "1 external" in capsys.readouterr().out
    assert {path: _files(output)[path] for path in untouched} == untouched
    adopted = store.adopt(video_id)
    assert adopted["frames"]["num_frames"] == 6 and adopted["flow"]["num_flows"] == 5
    assert adopted["frames"]["origin"] == "external" and adopted["flow"]["image_size"] == [48, 64]
    assert store.status(video_id) == "complete" and store.status(video_id, "flow") == "complete"
    assert np.array_equal(store.video(video_id).read_flow_stacks(), flow_stacks(raw_flow))
    # A gap in the numbering is refused, not read as a shorter video.
    (folder / "flow.json").unlink()
    os.remove(folder / "flow_x_00003.jpg")
    with pytest.raises(FrameStoreError, match="numbered 1..N"):
        store.adopt(video_id)
    with pytest.raises(FrameStoreError, match=r"missing \[3\]"):
        store.video(video_id)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_folders(tmp_path):
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data",
        ("Alpha", "Beta"),
        clips_per_class=3,
        num_frames=40,
        height=120,
        width=160,
    )
    command = [sys.executable, "-m", "training.extract_frames", "--video-root", str(video_root)]
    command += ["--split-dir", str(split_dir), "--workers", "1"]  # frames at 256x340
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    subprocess.run(
        [*command, "--output", str(reference)], check=True, cwd=REPO, env=environment,
        capture_output=True,
    )  # fmt: skip
    process = subprocess.Popen(
        [*command, "--output", str(resumed)], cwd=REPO, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    store, deadline = FrameStore(resumed), time.monotonic() + 60

    def folder_statuses():
        return [store.status(str(p.parent.relative_to(resumed))) for p in resumed.rglob("*.json")]

    while time.monotonic() < deadline:
        complete = folder_statuses().count("complete")
        if complete and len(list(resumed.rglob("img_*.jpg"))) > 40 * complete:
            break  # a video complete, the next one part written
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    statuses = folder_statuses()
    assert "partial" in statuses and 1 <= statuses.count("complete") < 6, statuses
    rerun = subprocess.run(
        [*command, "--output", str(resumed)], cwd=REPO, env=environment, capture_output=True,
        text=True,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert f"{statuses.count('complete')} already complete" in rerun.stdout
    assert _files(resumed) == _files(reference)  # byte for byte, no temporary left
