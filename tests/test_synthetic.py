"""Tests of data/synthetic.py (and its drawing, data/synthetic_drawing.py): UCF101 layout,
determinism, key frames, class-free distractors."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from temporal_attention.data.key_frames import read_key_frames
from temporal_attention.data.splits import load_ucf101_split
from temporal_attention.data.synthetic import (
    PRESETS,
    SyntheticConfig,
    clip_specs,
    generate_dataset,
    render_clip,
)
from temporal_attention.data.synthetic_drawing import DISTRACTOR_KINDS
from temporal_attention.data.video import read_video

TINY = SyntheticConfig(
    num_classes=3,
    clips_per_class=4,
    num_groups=4,
    num_test_groups=1,
    min_frames=16,
    max_frames=20,
    min_shot_frames=3,
    height=48,
    width=64,
    seed=7,
)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(root, TINY, progress=False)


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_layout_loads_with_ucf101_split(tiny_dataset):
    split = load_ucf101_split(tiny_dataset.video_root, tiny_dataset.split_dir, split=1)
    assert split.class_names == ("WaveArms", "Jump", "Squat")
    # 4 clips per class in groups 1-4, group 1 is the test set.
    assert (len(split.train), len(split.test)) == (3 * 3, 3 * 1)
    assert (tiny_dataset.num_train, tiny_dataset.num_test) == (9, 3)
    for clip in split.train + split.test:
        class_name = clip.video_id.split("/")[0]
        assert split.class_names[clip.label] == class_name
        assert clip.video_id.split("/")[1].startswith(f"v_{class_name}_g")
    assert all("_g01_" in clip.video_id for clip in split.test)
    assert not any("_g01_" in clip.video_id for clip in split.train)


def test_split_files_end_lines_with_crlf(tiny_dataset):
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        text = (tiny_dataset.split_dir / name).read_bytes()
        assert text.endswith(b"\r\n")
        assert text.count(b"\n") == text.count(b"\r\n")
    first_train = (tiny_dataset.split_dir / "trainlist01.txt").read_text().splitlines()[0]
    assert first_train == "WaveArms/v_WaveArms_g02_c01.avi 1"


def test_videos_decode_with_their_frame_counts(tiny_dataset):
    key_frames = read_key_frames(tiny_dataset.key_frames_csv)
    with tiny_dataset.key_frames_csv.open(newline="") as file:
        num_frames = {row["video_id"]: int(row["num_frames"]) for row in csv.DictReader(file)}
    assert len(key_frames) == 12
    for video_id, frames in key_frames.items():
        mask = np.isin(np.arange(num_frames[video_id]), sorted(frames))
        video = read_video(tiny_dataset.video_root / f"{video_id}.avi", height=None, width=None)
        assert video.num_frames == mask.shape[0]
        assert video.source_size == (TINY.height, TINY.width)
        assert video.fps == pytest.approx(TINY.fps)


def test_same_config_gives_identical_files(tmp_path, tiny_dataset):
    generate_dataset(tmp_path, TINY, progress=False)
    assert _all_files(tmp_path) == _all_files(tiny_dataset.root)


def test_other_seed_gives_other_videos(tmp_path, tiny_dataset):
    generate_dataset(tmp_path, dataclasses.replace(TINY, seed=8), progress=False)
    path = "UCF-101/Jump/v_Jump_g01_c01.avi"
    assert (tmp_path / path).read_bytes() != (tiny_dataset.root / path).read_bytes()


def test_rerun_skips_complete_videos_and_resumes(tmp_path):
    generate_dataset(tmp_path, TINY, progress=False)
    before = _all_files(tmp_path)
    video = tmp_path / "UCF-101/Squat/v_Squat_g03_c01.avi"
    video.unlink()
    stale = video.with_name(
        ".v_Squat_g03_c01.avi.tmp-99999999-deadbeef.avi"
    )  # as a killed run leaves it (no process has pid 99999999)
    stale.write_bytes(b"half a video")
    summary = generate_dataset(tmp_path, TINY, progress=False)
    assert (summary.generated, summary.skipped) == (1, 11)
    assert not stale.exists()
    assert _all_files(tmp_path) == before


def test_other_config_needs_overwrite(tmp_path):
    generate_dataset(tmp_path, TINY, progress=False)
    other = dataclasses.replace(TINY, num_classes=2)
    with pytest.raises(ValueError, match="another config"):
        generate_dataset(tmp_path, other, progress=False)
    summary = generate_dataset(tmp_path, other, overwrite=True, progress=False)
    assert summary.generated == 8
    assert not (tmp_path / "UCF-101/Squat").exists()


def test_key_frames_within_bounds_and_share():
    config = dataclasses.replace(TINY, clips_per_class=20)
    for spec in clip_specs(config):
        assert config.min_frames <= spec.num_frames <= config.max_frames
        assert 0 <= spec.start_frame < spec.end_frame <= spec.num_frames
        share = (spec.end_frame - spec.start_frame) / spec.num_frames
        rounding = 0.5 / spec.num_frames
        assert config.min_action_share - rounding <= share <= config.max_action_share + rounding


def test_shots_tile_the_clip_with_one_action():
    config = dataclasses.replace(TINY, clips_per_class=20)
    positions = set()
    for spec in clip_specs(config):
        kinds = [kind for kind, _, _ in spec.shots]
        assert kinds.count("action") == 1
        assert set(kinds) - {"action"} <= set(DISTRACTOR_KINDS)
        assert config.min_distractors <= len(kinds) - 1 <= config.max_distractors
        assert spec.shots[0][1] == 0 and spec.shots[-1][2] == spec.num_frames
        for (_, _, end), (_, start, _) in zip(spec.shots, spec.shots[1:], strict=False):
            assert end == start
        for kind, start, end in spec.shots:
            assert kind == "action" or end - start >= config.min_shot_frames
        positions.add(kinds.index("action"))
    assert len(positions) >= 3  # the action is not always at the same place


# === The class is in the action shot only ===


def _motion_features(frames: np.ndarray) -> np.ndarray:
    """Position- and colour-free statistics of what moves in a shot (4 numbers)."""
    gray = frames.astype(np.float32).mean(axis=-1)  # (frames, H, W)
    moving = np.abs(np.diff(gray, axis=0)) > 20  # (frames - 1, H, W)
    _, rows, cols = np.nonzero(moving)
    if rows.size < 5:
        return np.zeros(4)
    spread_y, spread_x = rows.std() + 1, cols.std() + 1
    skew_y = ((rows - rows.mean()) ** 3).mean() / spread_y**3
    energy = moving.sum(axis=(1, 2)).astype(np.float32)  # (frames - 1,)
    return np.array(
        [
            np.log(spread_x / spread_y),
            skew_y,
            energy.std() / (energy.mean() + 1),
            np.log(energy.mean() / (spread_x * spread_y) + 1e-3),
        ]
    )


def _appearance_features(frames: np.ndarray) -> np.ndarray:
    """What single frames look like: mean and spread of each colour, edge density."""
    pixels = frames.astype(np.float32)  # (frames, H, W, 3)
    edges = np.abs(np.diff(pixels.mean(axis=-1), axis=2)).mean()
    return np.concatenate([pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)), [edges]])


def _leave_one_out_nearest_centroid(features: np.ndarray, labels: np.ndarray) -> float:
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    classes = np.unique(labels)
    correct = 0
    for index in range(len(features)):
        keep = np.arange(len(features)) != index
        centroids = np.stack([features[keep & (labels == c)].mean(0) for c in classes])
        nearest = classes[np.argmin(((centroids - features[index]) ** 2).sum(1))]
        correct += int(nearest == labels[index])
    return correct / len(features)


@pytest.mark.parametrize(
    "config, least_on_action, most_on_distractors",
    [
        (dataclasses.replace(TINY, clips_per_class=24), 0.7, 0.5),  # 3 classes: chance 1/3
        # The demo's dataset (4 classes, chance 1/4, 96x128), fewer clips.
        (dataclasses.replace(PRESETS["demo"], clips_per_class=24), 0.65, 0.4),
    ],
    ids=["tiny", "demo"],
)
def test_class_is_in_the_action_shot_not_in_the_distractors(
    config, least_on_action, most_on_distractors
):
    action, distractor, looks, layout, labels = [], [], [], [], []
    for spec in clip_specs(config):
        frames = render_clip(config, spec)
        action.append(_motion_features(frames[spec.start_frame : spec.end_frame]))
        shots = [frames[start:end] for kind, start, end in spec.shots if kind != "action"]
        distractor.append(np.mean([_motion_features(shot) for shot in shots], axis=0))
        looks.append(_appearance_features(np.concatenate(shots)))
        # Where the action is and how long the clip is: no cue to the class either.
        action_length = spec.end_frame - spec.start_frame
        layout.append([len(frames), spec.start_frame, action_length, len(spec.shots)])
        labels.append(spec.label)
    labels = np.array(labels)
    assert _leave_one_out_nearest_centroid(np.array(action), labels) >= least_on_action
    for outside in (distractor, looks, layout):  # motion, colours and edges, layout
        assert _leave_one_out_nearest_centroid(np.array(outside), labels) <= most_on_distractors


# === Config and CLI ===


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_classes": 7}, "num_classes"),
        ({"num_test_groups": 4}, "num_test_groups"),
        ({"min_frames": 30, "max_frames": 20}, "min_frames <= max_frames"),
        ({"min_action_share": 0.5, "max_action_share": 0.3}, "action_share"),
        ({"min_frames": 10, "max_frames": 10, "max_action_share": 0.9}, "too short"),
        ({"height": 16}, "height"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)
