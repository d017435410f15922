"""The frame store benchmark: its disk figures are the files' and it times every read kind."""

import numpy as np

from benchmarks.frame_store_benchmark import UCF101_FRAMES, main
from temporal_attention.data.frame_store import FrameStore
from temporal_attention.training.extract_frames import main as extract_main
from tests.synthetic_videos import write_ucf101_like


def test_reports_the_stores_bytes_and_read_speeds(tmp_path, capsys):
    video_root, split_dir = write_ucf101_like(tmp_path / "data", ("Alpha",), clips_per_class=2)
    store = tmp_path / "frames"
    common = ["--video-root", str(video_root), "--split-dir", str(split_dir), "--workers", "1"]
    assert extract_main([*common, "--output", str(store), "--height", "48", "--width", "64"]) == 0
    writer = FrameStore(store).flow_writer("Alpha/v_Alpha_g01_c01", {"jpeg_quality": 95})
    writer.append(np.full((9, 48, 64, 2), 128, np.uint8))
    writer.finish({})
    report = main(["--store", str(store), "--video-root", str(video_root), "--reads", "5"])
    image_bytes = sum(path.stat().st_size for path in store.rglob("img_*.jpg"))
    flow_bytes = sum(path.stat().st_size for path in store.rglob("flow_*.jpg"))
    assert (report["videos"], report["frames"], report["flows"]) == (2, 20, 9)
    assert report["frame_bytes"] == image_bytes and report["flow_bytes"] == flow_bytes
    assert report["ucf101_frame_bytes"] == image_bytes / 20 * UCF101_FRAMES
    assert report["allocated_bytes_per_frame"] * 20 >= image_bytes
    assert report["allocated_bytes_per_flow"] * 9 >= flow_bytes
    for key in ("frames_per_s_store", "flow_stacks_per_s_store", "frames_per_s_video"):
        assert report[key] > 0
    assert 0 < report["mean_abs_error_vs_video"] < 8  # JPEG at quality 90 on 48x64 texture
    assert "decoding the whole clip" in capsys.readouterr().out
