"""Stores that know what they hold: a damaged frame is named wherever it is read and its
video written again by the frame stage; one frame store holds frames of one size and
one flow store flow of one method and size (the writing stages refuse another before
any work, the readers refuse videos of two kinds, naming one of each)."""

import shutil

import cv2
import numpy as np
import pytest

from temporal_attention.data.extraction_feed import ImageSource, ReadTask, read_crops
from temporal_attention.data.flow_store import FlowStore
from temporal_attention.data.frame_batches import FrameBatches, StoredClip
from temporal_attention.data.frame_store import (
    FrameSettings,
    FrameStore,
    FrameStoreError,
    image_name,
)
from temporal_attention.training import compute_flow, extract_features, extract_frames
from tests.synthetic_videos import write_ucf101_like

HEIGHT, WIDTH = 32, 40
VIDEO_IDS = [f"{name}/v_{name}_g0{group}_c01" for name in ("Alpha", "Beta") for group in (1, 2)]
TINY_FLAGS = ["--weights", "none", "--precision", "float32", "--input-size", "16"]
TINY_FLAGS += ["--fc-units", "8", "--width-multiplier", "0.0625", "--workers", "0"]


@pytest.fixture
def dataset(tmp_path):
    video_root, split_dir = write_ucf101_like(
        tmp_path / "data", ("Alpha", "Beta"), clips_per_class=2, num_frames=8,
        height=HEIGHT, width=WIDTH,
    )  # fmt: skip
    return ["--video-root", str(video_root), "--split-dir", str(split_dir)]


def _frames_args(dataset, output, height=HEIGHT, width=WIDTH, *extra):
    return [*dataset, "--output", str(output), "--height", str(height), "--width", str(width),
            "--workers", "1", *extra]  # fmt: skip


def _flow_args(dataset, output, method, *extra):
    return [*dataset, "--output", str(output), "--height", str(HEIGHT), "--width", str(WIDTH),
            "--workers", "1", "--method", method, *extra]  # fmt: skip


def _files(root):
    """Every file under `root` (relative path -> bytes), failure logs left out."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith("failures")
    }


def _extract(dataset, tmp_path, stream, *source):
    store = tmp_path / f"features-{stream}"
    status = extract_features.main(
        [*dataset, "--stream", stream, "--store", str(store), *TINY_FLAGS, *source]
    )
    return status, store


def test_a_damaged_frame_is_named_and_its_video_written_again(dataset, tmp_path, capsys):
    output = tmp_path / "frames"
    assert extract_frames.main(_frames_args(dataset, output)) == 0
    intact = _files(output)
    store, video_id = FrameStore(output), "Alpha/v_Alpha_g01_c01"
    path = store.folder_for(video_id) / image_name("img", 3)
    path.write_bytes(path.read_bytes()[:-2])  # its end-of-image marker cut off
    assert cv2.imread(str(path)) is not None  # which OpenCV decodes as a frame
    assert store.status(video_id) == "damaged"
    video = store.video(video_id)
    assert video.read_frame(2).shape == (HEIGHT, WIDTH, 3)  # the others read as before
    with pytest.raises(FrameStoreError, match=f"{path.name}: damaged"):
        video.read_frame(3)
    with pytest.raises(FrameStoreError, match=path.name):
        store.check_videos(VIDEO_IDS)
    capsys.readouterr()
    status, features = _extract(dataset, tmp_path, "appearance", "--frame-root", str(output))
    error = capsys.readouterr().err
    assert status == 2 and str(path) in error and len(error.strip().splitlines()) == 1
    assert not features.exists()
    path.unlink()
    with pytest.raises(FrameStoreError, match=f"{path.name}: missing"):
        video.read_frame(3)
    assert store.status(video_id) == "damaged"
    # The frame stage writes the video again, to the files of the first run.
    assert extract_frames.main(_frames_args(dataset, output)) == 0
    out = capsys.readouterr().out
    assert "3 already complete" in out and "1 to write" in out and "1 of them damaged" in out
    assert _files(output) == intact
    # Fine-tuning refuses a damaged training video too, naming the file, before a
    # network is built (group 1 is the test list: damage one of group 2).
    from temporal_attention.training import finetune_convnet

    trained = store.folder_for("Beta/v_Beta_g02_c01") / image_name("img", 5)
    trained.write_bytes(trained.read_bytes()[:-2])
    finetune = [*dataset, "--preset", "spatial", "--frame-root", str(output)]
    finetune += ["--output-dir", str(tmp_path / "net"), *TINY_FLAGS[:2], "--workers", "0"]
    with pytest.raises(FrameStoreError, match=trained.name):
        finetune_convnet.main([*finetune, "--crop-size", "16"])
    assert not (tmp_path / "net").exists()


def test_a_damaged_flow_image_is_named_and_its_flow_computed_again(dataset, tmp_path, capsys):
    output = tmp_path / "frames"
    flow_args = _flow_args(dataset, output, "farneback", "--layout", "frames")
    assert compute_flow.main(flow_args) == 0
    intact = _files(output)
    store, video_id = FrameStore(output), "Beta/v_Beta_g02_c01"
    path = store.folder_for(video_id) / image_name("flow_y", 4)
    path.write_bytes(path.read_bytes()[:-2])
    assert store.status(video_id, "flow") == "damaged"
    with pytest.raises(FrameStoreError, match=f"{path.name}: damaged"):
        store.video(video_id).read_flow_stack(1)  # flows 1..5
    capsys.readouterr()
    assert compute_flow.main(flow_args) == 0
    assert "3 already complete, 1 to compute" in capsys.readouterr().out
    assert _files(output) == intact


def test_one_frame_store_holds_frames_of_one_size(dataset, tmp_path, capsys):
    output = tmp_path / "frames"
    assert (
        extract_frames.main(_frames_args(dataset, output, HEIGHT, WIDTH, "--classes", "Alpha")) == 0
    )
    before = _files(output)
    capsys.readouterr()
    assert extract_frames.main(_frames_args(dataset, output, 24, 32)) == 2
    error = capsys.readouterr().err
    assert str(output) in error and f"{HEIGHT}x{WIDTH}" in error and "24x32" in error
    assert len(error.strip().splitlines()) == 1
    assert _files(output) == before  # refused before any work

    # A store of two sizes (written around the stage): its readers refuse it.
    store = FrameStore(output)
    for video_id in VIDEO_IDS[2:]:
        writer = store.frames_writer(video_id, FrameSettings(24, 32))
        writer.append(np.full((8, 24, 32, 3), 99, np.uint8))
        writer.finish({})
    with pytest.raises(FrameStoreError, match=f"{HEIGHT}x{WIDTH} and .*24x32"):
        store.check_videos(VIDEO_IDS)
    status, features = _extract(dataset, tmp_path, "appearance", "--frame-root", str(output))
    error = capsys.readouterr().err
    assert status == 2 and f"{output}/Alpha/v_Alpha_g0" in error  # one video of each size
    assert f"{output}/Beta/v_Beta_g0" in error and not features.exists()
    clips = tuple((StoredClip(output, video_id, "appearance"), 0) for video_id in VIDEO_IDS)
    with pytest.raises(FrameStoreError, match="24x32"):
        FrameBatches(clips, "appearance", batch_size=2, crop_size=16)
    # Each read checks the size its recipe records.
    source = ImageSource("frames", "appearance", root=str(output), input_size=16,
                         height=HEIGHT, width=WIDTH)  # fmt: skip
    assert read_crops(source, ReadTask(VIDEO_IDS[0], None, 0, 8))["error"] is None
    piece = read_crops(source, ReadTask(VIDEO_IDS[2], None, 0, 8))
    assert piece["images"] is None and "24x32" in piece["error"]


@pytest.mark.parametrize("layout", ["npz", "frames"])
def test_one_store_holds_flow_of_one_method(dataset, tmp_path, capsys, layout):
    output, other = tmp_path / "flow", tmp_path / "other"
    layout_flags = ["--layout", layout]
    first = _flow_args(dataset, output, "farneback", "--classes", "Alpha", *layout_flags)
    assert compute_flow.main(first) == 0
    before = _files(output)
    capsys.readouterr()
    assert compute_flow.main(_flow_args(dataset, output, "dis", *layout_flags)) == 2
    error = capsys.readouterr().err
    assert f"farneback {HEIGHT}x{WIDTH}" in error and f"dis {HEIGHT}x{WIDTH}" in error
    assert str(output) in error and len(error.strip().splitlines()) == 1
    assert _files(output) == before  # refused before any flow is computed

    # A store of two methods (Beta's flow copied in from a dis store): extraction refuses.
    assert (
        compute_flow.main(_flow_args(dataset, other, "dis", "--classes", "Beta", *layout_flags))
        == 0
    )
    shutil.copytree(other / "Beta", output / "Beta", dirs_exist_ok=True)
    source = ["--flow-root" if layout == "npz" else "--frame-root", str(output)]
    capsys.readouterr()
    status, features = _extract(dataset, tmp_path, "motion", *source)
    error = capsys.readouterr().err
    assert status == 2 and f"farneback {HEIGHT}x{WIDTH}" in error and "dis" in error
    assert "Alpha/v_Alpha_g0" in error and "Beta/v_Beta_g0" in error  # one of each method
    assert len(error.strip().splitlines()) == 1 and not features.exists()
    if layout == "npz":
        with pytest.raises(ValueError, match="farneback .* and of dis"):
            FlowStore(output).recipe(VIDEO_IDS)
