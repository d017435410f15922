"""Splits: the real UCF101 files (CRLF), class subsets, missing clips, HMDB51 format."""

from pathlib import Path

import pytest

from temporal_attention.data.splits import (
    SplitError,
    load_hmdb51_split,
    load_split,
    load_ucf101_split,
)
from tests.synthetic_videos import write_ucf101_like

SUBSET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ucf101_subset"
REAL_CLASSES = ["BabyCrawling", "Punch", "PushUps"]


@pytest.mark.parametrize("split, sizes", [(1, (290, 104)), (2, (283, 111)), (3, (282, 112))])
def test_real_ucf101_split_sizes(split, sizes):
    result = load_ucf101_split(
        SUBSET / "UCF-101", SUBSET / "ucfTrainTestlist", split, classes=REAL_CLASSES
    )
    assert (len(result.train), len(result.test)) == sizes
    assert result.class_names == tuple(REAL_CLASSES)
    assert {clip.label for clip in result.train} == {0, 1, 2}
    assert not {clip.video_id for clip in result.train} & {clip.video_id for clip in result.test}
    clip = next(clip for clip in result.train if clip.video_id.startswith("Punch/"))
    assert clip.label == 1 and clip.path.is_file() and clip.path.suffix == ".avi"
    assert "\r" not in clip.video_id


def test_real_split_names_missing_classes_without_a_subset():
    with pytest.raises(SplitError, match="ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01") as info:
        load_ucf101_split(SUBSET / "UCF-101", SUBSET / "ucfTrainTestlist", 1)
    assert "trainlist01.txt" in str(info.value)


@pytest.fixture
def tiny(tmp_path):
    return write_ucf101_like(tmp_path, ("Alpha", "Beta", "Gamma"), clips_per_class=3, num_frames=2)


def test_class_subset_reindexes_labels_in_class_ind_order(tiny):
    video_root, split_dir = tiny
    result = load_ucf101_split(video_root, split_dir, 1, classes=["Gamma", "Alpha"])
    assert result.class_names == ("Alpha", "Gamma")
    assert {(clip.video_id.split("/")[0], clip.label) for clip in result.train} == {
        ("Alpha", 0),
        ("Gamma", 1),
    }
    assert len(result.train) == 4 and len(result.test) == 2
    assert load_split("ucf101", video_root, split_dir, 1, "Beta").class_names == ("Beta",)


def test_missing_clip_of_a_selected_class_is_named(tiny):
    video_root, split_dir = tiny
    (video_root / "Beta" / "v_Beta_g02_c01.avi").unlink()
    with pytest.raises(SplitError, match="Beta/v_Beta_g02_c01") as info:
        load_ucf101_split(video_root, split_dir, 2, classes=["Alpha", "Beta"])
    assert "trainlist02.txt" in str(info.value)
    # Not selected: not an error. Skipped on request: listed in `missing`.
    assert len(load_ucf101_split(video_root, split_dir, 2, classes=["Alpha"]).train) == 2
    skipped = load_ucf101_split(video_root, split_dir, 2, ["Beta"], on_missing="skip")
    assert len(skipped.train) == 1 and str(skipped.missing[0]).startswith("Beta/v_Beta_g02_c01")
    assert skipped.missing_in("train") == skipped.missing and skipped.missing_in("test") == ()


def test_bad_arguments_are_named(tiny):
    video_root, split_dir = tiny
    with pytest.raises(SplitError, match="Delta"):
        load_ucf101_split(video_root, split_dir, 1, classes=["Alpha", "Delta"])
    with pytest.raises(ValueError, match="split=4"):
        load_ucf101_split(video_root, split_dir, 4)
    with pytest.raises(SplitError, match="classInd.txt"):
        load_ucf101_split(video_root, split_dir.parent / "nowhere", 1)
    with pytest.raises(ValueError, match="dataset='kinetics'"):
        load_split("kinetics", video_root, split_dir)


def test_hmdb51_format(tmp_path):
    video_root, split_dir = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    split_dir.mkdir()
    for name in ("wave", "brush_hair"):
        lines = []
        for index, usage in enumerate([1, 1, 2, 0]):
            video = f"{name}_video_{index}.avi"
            (video_root / name).mkdir(parents=True, exist_ok=True)
            (video_root / name / video).write_bytes(b"x")
            lines.append(f"{video} {usage} \r\n")
        for split in (1, 2, 3):
            (split_dir / f"{name}_test_split{split}.txt").write_text("".join(lines), newline="")
    result = load_hmdb51_split(video_root, split_dir, 1)
    assert result.class_names == ("brush_hair", "wave")  # alphabetical
    assert len(result.train) == 4 and len(result.test) == 2
    assert result.train[0].video_id == "brush_hair/brush_hair_video_0"
    assert {clip.label for clip in result.test} == {0, 1}
    only_wave = load_split("hmdb51", video_root, split_dir, 2, classes=["wave"])
    assert {clip.label for clip in only_wave.train} == {0}
    (video_root / "wave" / "wave_video_2.avi").unlink()
    with pytest.raises(SplitError, match="wave/wave_video_2") as info:
        load_hmdb51_split(video_root, split_dir, 3)
    assert "wave_test_split3.txt" in str(info.value)


def _append(path, text):
    with open(path, "a", newline="") as handle:
        handle.write(text)


def test_a_repeated_line_is_named(tiny):
    video_root, split_dir = tiny
    _append(split_dir / "trainlist01.txt", "Alpha/v_Alpha_g02_c01.avi 1\r\n")
    with pytest.raises(SplitError, match="Alpha/v_Alpha_g02_c01 is listed twice in the train"):
        load_ucf101_split(video_root, split_dir, 1)
    # Another class's repeated line does not matter to a subset that leaves it out.
    assert len(load_ucf101_split(video_root, split_dir, 1, classes=["Beta"]).train) == 2


def test_a_video_in_both_lists_is_named(tiny):
    video_root, split_dir = tiny
    _append(split_dir / "testlist01.txt", "Beta/v_Beta_g03_c01.avi\r\n")
    with pytest.raises(SplitError, match="Beta/v_Beta_g03_c01 is listed in both"):
        load_ucf101_split(video_root, split_dir, 1)


def test_a_list_without_any_video_of_the_classes_is_an_error(tiny):
    video_root, split_dir = tiny
    (split_dir / "testlist01.txt").write_text(
        "Alpha/v_Alpha_g01_c01.avi\r\nBeta/v_Beta_g01_c01.avi\r\n", newline=""
    )
    with pytest.raises(SplitError, match="test list holds no video"):
        load_ucf101_split(video_root, split_dir, 1, classes=["Gamma"])


def test_file_names_with_spaces(tmp_path):
    # UCF101: a train line is split at its last whitespace, a test line is the whole path.
    video_root, split_dir = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    split_dir.mkdir()
    names = {"train": "Alpha/v_Alpha my clip 2.avi", "test": "Alpha/v_Alpha  two  spaces.avi"}
    for relative in names.values():
        (video_root / relative).parent.mkdir(parents=True, exist_ok=True)
        (video_root / relative).write_bytes(b"x")
    (split_dir / "classInd.txt").write_text("1 Alpha\r\n", newline="")
    (split_dir / "trainlist01.txt").write_text(f"{names['train']} 1\r\n", newline="")
    (split_dir / "testlist01.txt").write_text(f"{names['test']}\r\n", newline="")
    result = load_ucf101_split(video_root, split_dir, 1)
    assert [clip.video_id for clip in result.train] == ["Alpha/v_Alpha my clip 2"]
    assert [clip.video_id for clip in result.test] == ["Alpha/v_Alpha  two  spaces"]
    assert result.train[0].path == video_root / names["train"]
    (split_dir / "trainlist01.txt").write_text(f"{names['train']}\r\n", newline="")
    with pytest.raises(SplitError, match="<label>"):  # no label: never a guessed name
        load_ucf101_split(video_root, split_dir, 1)
    # HMDB51: "<video>.avi <id>", split at the last whitespace.
    hmdb_root, hmdb_splits = tmp_path / "hmdb51", tmp_path / "splits"
    (hmdb_root / "clap").mkdir(parents=True)
    hmdb_splits.mkdir()
    (hmdb_root / "clap" / "my clap video.avi").write_bytes(b"x")
    (hmdb_root / "clap" / "a train video.avi").write_bytes(b"x")  # a split needs both lists
    (hmdb_splits / "clap_test_split1.txt").write_text(
        "my clap video.avi 2 \r\na train video.avi 1\r\n", newline=""
    )
    assert [clip.video_id for clip in load_hmdb51_split(hmdb_root, hmdb_splits, 1).test] == [
        "clap/my clap video"
    ]
