"""read_key_frames: per-frame and range layouts, data.synthetic's key_frames.csv, bad files."""

import pytest

from temporal_attention.data.key_frames import read_key_frames
from temporal_attention.data.synthetic import (
    KEY_FRAMES_NAME,
    SyntheticConfig,
    clip_specs,
    generate_dataset,
)

SMALL = SyntheticConfig(
    num_classes=2,
    clips_per_class=3,
    num_groups=2,
    num_test_groups=1,
    min_frames=16,
    max_frames=20,
    min_shot_frames=3,
    height=32,
    width=32,
    seed=7,
)


def test_key_frames_csv_format(tmp_path):
    summary = generate_dataset(tmp_path, SMALL, progress=False)
    lines = (summary.root / KEY_FRAMES_NAME).read_text().splitlines()
    assert lines[0] == "video_id,num_frames,start_frame,end_frame"
    specs = {spec.video_id: spec for spec in clip_specs(SMALL)}
    key_frames = read_key_frames(summary.key_frames_csv)
    assert key_frames.keys() == specs.keys()
    for video_id, frames in key_frames.items():
        spec = specs[video_id]
        assert sorted(frames) == list(range(spec.start_frame, spec.end_frame))


def test_both_formats_give_the_same_sets(tmp_path):
    (tmp_path / "per_frame.csv").write_text("video_id,frame_index\nA/v1,2\nA/v1,3\nB/v1,0\n")
    (tmp_path / "frame.csv").write_text("video_id,frame\nA/v1,3\nA/v1,2\nB/v1,0\n")
    # Ranges are 0-based with the end excluded, as data.synthetic writes key_frames.csv.
    (tmp_path / "ranges.csv").write_text(
        "video_id,num_frames,start_frame,end_frame\nA/v1,9,2,4\nB/v1,5,0,1\n"
    )
    (tmp_path / "bare_ranges.csv").write_text(
        "video_id,start_frame,end_frame\nA/v1,2,4\nB/v1,0,1\n"
    )
    expected = {"A/v1": {2, 3}, "B/v1": {0}}
    for name in ("per_frame.csv", "frame.csv", "ranges.csv", "bare_ranges.csv"):
        assert read_key_frames(tmp_path / name) == expected, name


def test_another_header_is_rejected_naming_file_and_accepted_headers(tmp_path):
    for header, row in (("video_id,when", "A/v1,2"), ("video,frames", "A/v_A,3")):
        path = tmp_path / "bad.csv"
        path.write_text(f"{header}\n{row}\n")
        with pytest.raises(ValueError, match="expected columns") as error:
            read_key_frames(path)
        message = str(error.value)
        assert str(path) in message
        for accepted in ("video_id,frame_index", "video_id,frame", "video_id,start_frame"):
            assert accepted in message
    (tmp_path / "empty_bad.csv").write_text("video_id,when\n")  # no rows: still rejected
    with pytest.raises(ValueError, match="expected columns"):
        read_key_frames(tmp_path / "empty_bad.csv")


@pytest.mark.parametrize(
    "row",
    [
        "A/v1,9,-1,3",  # starts before the first frame
        "A/v1,9,4,4",  # empty
        "A/v1,9,5,2",  # reversed
        "A/v1,9,2,10",  # past num_frames
    ],
)
def test_bad_ranges_are_rejected_naming_file_and_video(tmp_path, row):
    path = tmp_path / "key_frames.csv"
    path.write_text(f"video_id,num_frames,start_frame,end_frame\nB/ok,9,0,9\n{row}\n")
    with pytest.raises(ValueError, match="bad key-frame range for A/v1") as error:
        read_key_frames(path)
    assert str(path) in str(error.value)


def test_ranges_without_num_frames_are_bounded_below_only(tmp_path):
    path = tmp_path / "ranges.csv"
    path.write_text("video_id,start_frame,end_frame\nA/v1,100,102\n")
    assert read_key_frames(path) == {"A/v1": {100, 101}}
    path.write_text("video_id,start_frame,end_frame\nA/v1,3,3\n")
    with pytest.raises(ValueError, match="A/v1"):
        read_key_frames(path)
