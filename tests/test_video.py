"""Decoding: generated videos (cv2.VideoWriter), real UCF101 clips, every bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest

import temporal_attention.data.video
from temporal_attention.data.video import VideoError, VideoReader, read_video, write_video
from tests.synthetic_videos import (
    shifted_texture_frames,
    write_mp4_with_edit_list,
    write_variable_rate_mkv,
)

SUBSET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ucf101_subset"


@pytest.fixture
def good_video(tmp_path):
    return write_video(tmp_path / "good.avi", shifted_texture_frames(12, 48, 64))


def test_read_video_resizes_to_256x340_and_reports_size_and_fps(good_video):
    video = read_video(good_video)
    assert video.frames.shape == (12, 256, 340, 3)
    assert video.frames.dtype == np.uint8
    assert video.num_frames == 12
    assert video.source_size == (48, 64)
    assert video.fps == pytest.approx(25.0)


@pytest.mark.parametrize("chunk_frames", [1, 7, 32, 100])
def test_reader_chunks_are_the_frames_of_read_video(tmp_path, chunk_frames):
    path = write_video(tmp_path / "long.avi", shifted_texture_frames(40, 48, 64))
    frames = read_video(path).frames  # (40, 256, 340, 3)
    reader = VideoReader(path)
    chunks = list(reader.chunks(chunk_frames))
    sizes = [min(chunk_frames, 40 - start) for start in range(0, 40, chunk_frames)]
    assert [len(chunk) for chunk in chunks] == sizes
    np.testing.assert_array_equal(np.concatenate(chunks), frames)  # bit for bit
    assert (reader.num_frames, reader.source_size) == (40, (48, 64))
    assert reader.fps == pytest.approx(25.0)
    np.testing.assert_array_equal(np.concatenate(list(reader.chunks(chunk_frames))), frames)


def test_reader_finds_a_truncated_file_at_the_end_of_its_pass(tmp_path):
    path = write_video(tmp_path / "long.avi", shifted_texture_frames(40, 48, 64))
    _cut_in_half(path)
    reader = VideoReader(path, 48, 64)
    chunks = reader.chunks(4)
    assert next(chunks).shape == (4, 48, 64, 3)  # decoded as used
    with pytest.raises(VideoError, match="truncated") as info:
        list(chunks)
    assert str(path) in str(info.value) and reader.num_frames is None
    with pytest.raises(VideoError, match="no such file"):
        VideoReader(tmp_path / "missing.avi")


def test_frames_are_rgb_not_bgr(tmp_path):
    frames = np.zeros((4, 32, 40, 3), np.uint8)
    frames[..., 0] = 220  # pure red in RGB
    video = read_video(write_video(tmp_path / "red.avi", frames), None, None)
    red, green, blue = (
        video.frames[..., 0].mean(),
        video.frames[..., 1].mean(),
        video.frames[..., 2].mean(),
    )
    assert red > 180 and green < 40 and blue < 40


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_containers_keep_content(tmp_path, suffix):
    frames = shifted_texture_frames(6, 48, 64)
    video = read_video(write_video(tmp_path / f"clip{suffix}", frames), None, None)
    assert video.frames.shape == frames.shape
    assert np.abs(video.frames.astype(float) - frames).mean() < 12  # lossy codecs


def test_grayscale_video_becomes_three_equal_channels(tmp_path):
    gray = shifted_texture_frames(5, 32, 40)[..., 0]  # (frames, H, W)
    video = read_video(write_video(tmp_path / "gray.avi", gray), 64, 80)
    assert video.frames.shape == (5, 64, 80, 3)
    assert np.abs(video.frames[..., 0].astype(int) - video.frames[..., 2]).max() <= 2


def _truncated(tmp_path, good_video):
    data = good_video.read_bytes()
    path = tmp_path / "truncated.avi"
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt(tmp_path, good_video):
    data = bytearray(good_video.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 4000] = (
        np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes()
    )
    path = tmp_path / "corrupt.avi"
    path.write_bytes(bytes(data))
    return path


def _cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_mkv(tmp_path, good_video):
    frames = shifted_texture_frames(50, 48, 64)  # 2 s at 25 fps; half of it is lost
    return _cut_in_half(write_variable_rate_mkv(tmp_path / "cut.mkv", frames, range(0, 2000, 40)))


def _truncated_mp4(tmp_path, good_video):
    return _cut_in_half(write_video(tmp_path / "cut.mp4", shifted_texture_frames(50, 48, 64)))


def _zero_frames(tmp_path, good_video):
    return write_video(tmp_path / "zero.avi", np.zeros((0, 32, 40, 3), np.uint8))


def _not_a_video(tmp_path, good_video):
    path = tmp_path / "notes.avi"
    path.write_text("this is not a video\n" * 50)
    return path


def _empty(tmp_path, good_video):
    path = tmp_path / "empty.avi"
    path.touch()
    return path


def _missing(tmp_path, good_video):
    return tmp_path / "missing.avi"


def _folder(tmp_path, good_video):
    path = tmp_path / "folder.avi"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "make_bad, reason",
    [
        (_truncated, "truncated"),
        (_corrupt, "truncated or corrupt"),
        (_truncated_mkv, "truncated or corrupt: its frames end at 0.96 s of the 2.00 s"),
        (_truncated_mp4, "cannot open"),  # OpenCV writes the sample tables at the end
        (_zero_frames, "zero"),
        (_not_a_video, "cannot open"),
        (_empty, "empty"),
        (_missing, "no such file"),
        (_folder, "not a file"),
    ],
)
def test_bad_input_raises_video_error_naming_the_file(tmp_path, good_video, make_bad, reason):
    path = make_bad(tmp_path, good_video)
    with pytest.raises(VideoError, match=reason) as info:
        read_video(path)
    assert str(path) in str(info.value)


def _stated_frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def test_mp4_whose_edit_list_hides_frames_is_read_in_full(tmp_path):
    frames = shifted_texture_frames(20, 48, 64)
    path = write_mp4_with_edit_list(tmp_path / "edited.mp4", frames, hidden_frames=2)
    assert _stated_frame_count(path) == 20  # the sample table's count, 2 more than shown
    video = read_video(path, None, None)
    assert video.num_frames == 18
    assert np.abs(video.frames.astype(float) - frames[2:]).mean() < 12


def test_variable_frame_rate_mkv_is_read_in_full(tmp_path):
    frames = shifted_texture_frames(20, 48, 64)
    times_ms = [*range(0, 400, 40), *range(400, 1400, 100)]  # 25 fps, then 10 fps
    path = write_variable_rate_mkv(tmp_path / "phone.mkv", frames, times_ms)
    assert _stated_frame_count(path) == 70  # OpenCV: 1.4 s x an estimated 50 fps
    video = read_video(path, None, None)
    assert video.num_frames == 20
    assert np.abs(video.frames.astype(float) - frames).mean() < 12


def test_unreadable_path_is_reported(good_video, monkeypatch):
    # Tests may run as root, which ignores file modes: simulate a permission denial.
    monkeypatch.setattr(temporal_attention.data.video.os, "access", lambda path, mode: False)
    with pytest.raises(VideoError, match="permission denied") as info:
        read_video(good_video)
    assert str(good_video) in str(info.value)


def test_rejects_half_a_size(good_video):
    with pytest.raises(ValueError, match="height"):
        read_video(good_video, height=64, width=None)


@pytest.mark.slow
def test_real_ucf101_clips_decode():
    for name, frames in [
        ("PushUps/v_PushUps_g01_c01.avi", 56),
        ("Punch/v_Punch_g01_c01.avi", None),
    ]:
        video = read_video(SUBSET / "UCF-101" / name)
        assert video.frames.shape[1:] == (256, 340, 3)
        assert video.source_size == (240, 320)
        assert video.fps == pytest.approx(25.0)
        if frames is not None:
            assert video.num_frames == frames
        assert 40 < video.frames.mean() < 220  # real content, not a blank decode
