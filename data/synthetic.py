"""A synthetic sparse-action dataset in the UCF101 layout, with ground-truth key frames.

The paper's claim is that temporal attention helps when the action fills only some of
a video's frames, the rest being shots that carry no class information (dialog, scene
setting), as in TV and movie material. This module makes exactly that situation, small
enough for a laptop CPU:

- each clip is a sequence of shots joined by hard cuts: ONE action shot, in which a
  stick-figure actor performs a class-specific motion (wave arms, jump, squat, punch,
  kick, bend), among 1-3 distractor shots (still scenery, a camera pan over a texture,
  people standing or talking with small idle motion), drawn by `data.synthetic_drawing`;
- distractor shots are drawn from a random generator that never sees the class, so
  they are identically distributed for every class; backgrounds, colours, sizes and
  positions of the actor are random per clip, so the class is given only by pose and
  motion;
- the files are the UCF101 layout (`UCF-101/<Class>/v_<Class>_gGG_cCC.avi`,
  `ucfTrainTestlist/classInd.txt`, `trainlist01.txt`, `testlist01.txt`, CRLF), read by
  `data.splits.load_ucf101_split` and every later stage exactly like the real dataset;
- `key_frames.csv` gives the action segment of every clip:
  `video_id,num_frames,start_frame,end_frame` (0-based, end exclusive; read by
  `data.key_frames.read_key_frames`), and
  `shots.csv` every shot: `video_id,shot,kind,start_frame,end_frame`.

Example:

    summary = generate_dataset("runs/synthetic", SyntheticConfig())
    split = load_ucf101_split(summary.video_root, summary.split_dir, split=1)
    key_frames = read_key_frames(summary.key_frames_csv)  # data.key_frames
    key_frames["WaveArms/v_WaveArms_g01_c01"]  # {frame indices of the action}

CLI (`training.make_synthetic`):

    python -m training.make_synthetic --output runs/synthetic --num-classes 4 --clips-per-class 16

Everything is deterministic by `seed`: the same config gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from temporal_attention.data.synthetic_drawing import (
    ACTION_CLASSES,
    DISTRACTOR_KINDS,
    action_shot,
    distractor_shot,
)
from temporal_attention.data.video import write_video
from temporal_attention.runtime.atomic_files import atomic_write, remove_stale_temp_files

MANIFEST_NAME = "synthetic_config.json"
KEY_FRAMES_NAME = "key_frames.csv"
SHOTS_NAME = "shots.csv"
KEY_FRAMES_FIELDS = ("video_id", "num_frames", "start_frame", "end_frame")
SHOTS_FIELDS = ("video_id", "shot", "kind", "start_frame", "end_frame")


@dataclass(frozen=True)
class SyntheticConfig:
    """What `generate_dataset` writes. Defaults: the CPU demo (see docs/synthetic_and_demo.md)."""

    # Action classes, the first `num_classes` of ACTION_CLASSES (1-6).
    num_classes: int = 4
    # Clips per class; clip c of a class goes to group (c % num_groups) + 1.
    clips_per_class: int = 100
    # UCF101 groups gGG (25 there); the split is by group, like the official lists.
    num_groups: int = 25
    # Groups 1..num_test_groups are the test set (UCF101 split 1: groups 1-7 of 25).
    num_test_groups: int = 7
    # Frames per clip, drawn uniformly in [min_frames, max_frames]. At most 30 by default:
    # every clip is then one (masked) 30-frame sample of the attention model.
    min_frames: int = 24
    max_frames: int = 30
    # Share of a clip's frames in the action shot, drawn uniformly in this range.
    min_action_share: float = 0.2
    max_action_share: float = 0.4
    # Distractor shots per clip, drawn uniformly in [min_distractors, max_distractors].
    min_distractors: int = 1
    max_distractors: int = 3
    # Shortest distractor shot, in frames (fewer distractors are used if needed).
    min_shot_frames: int = 4
    # Stored frame size; later stages resize it as they are told.
    height: int = 96
    width: int = 128
    fps: float = 25.0
    # Seed of everything; clip (class, index) draws from its own stream of it.
    seed: int = field(default=0, metadata={"help": "seed of every clip's random streams"})

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(ACTION_CLASSES):
            raise ValueError(
                f"Expected 1 <= num_classes <= {len(ACTION_CLASSES)}. "
                f"Received: num_classes={self.num_classes}"
            )
        for name in ("clips_per_class", "num_groups", "min_frames", "min_shot_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected {name} >= 1. Received: {name}={getattr(self, name)}")
        if not 1 <= self.num_groups <= 99:
            raise ValueError(f"Expected 1 <= num_groups <= 99. Received: {self.num_groups}")
        if not 0 <= self.num_test_groups < self.num_groups:
            raise ValueError(
                "Expected 0 <= num_test_groups < num_groups. Received: "
                f"num_test_groups={self.num_test_groups}, num_groups={self.num_groups}"
            )
        if self.clips_per_class > 99 * self.num_groups:
            raise ValueError(
                f"Expected clips_per_class <= 99 * num_groups (cCC has two digits). "
                f"Received: clips_per_class={self.clips_per_class}"
            )
        if self.max_frames < self.min_frames:
            raise ValueError(
                f"Expected min_frames <= max_frames. Received: {self.min_frames}, {self.max_frames}"
            )
        if not 0.0 < self.min_action_share <= self.max_action_share < 1.0:
            raise ValueError(
                "Expected 0 < min_action_share <= max_action_share < 1. Received: "
                f"{self.min_action_share}, {self.max_action_share}"
            )
        if not 1 <= self.min_distractors <= self.max_distractors:
            raise ValueError(
                "Expected 1 <= min_distractors <= max_distractors. Received: "
                f"{self.min_distractors}, {self.max_distractors}"
            )
        shortest_rest = self.min_frames - int(np.ceil(self.max_action_share * self.max_frames))
        if shortest_rest < self.min_shot_frames:
            raise ValueError(
                "Clips too short for a distractor shot: min_frames - max_action_share * "
                f"max_frames = {shortest_rest} < min_shot_frames = {self.min_shot_frames}."
            )
        if self.height < 32 or self.width < 32:
            raise ValueError(
                f"Expected height, width >= 32. Received: height={self.height}, width={self.width}"
            )
        if self.fps <= 0:
            raise ValueError(f"Expected fps > 0. Received: fps={self.fps}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return ACTION_CLASSES[: self.num_classes]


# Named presets; `demo` is the default of `make demo`.
PRESETS = {
    "demo": SyntheticConfig(),
    "tiny": SyntheticConfig(
        num_classes=3, clips_per_class=4, num_groups=4, num_test_groups=1, height=48, width=64
    ),
}


@dataclass(frozen=True)
class ClipSpec:
    """One generated clip: where it goes and where its action is."""

    video_id: str  # "<Class>/v_<Class>_gGG_cCC", as data.splits.Clip.video_id
    label: int  # 1-based, as in classInd.txt
    clip_index: int  # 0..clips_per_class - 1 within its class; seeds its random streams
    group: int
    num_frames: int
    start_frame: int  # first frame of the action shot (0-based)
    end_frame: int  # one past its last frame
    shots: tuple[tuple[str, int, int], ...]  # (kind, start, end) in order

    @property
    def relative_path(self) -> str:
        return f"{self.video_id}.avi"


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_dataset` did."""

    root: Path
    video_root: Path  # root / "UCF-101"
    split_dir: Path  # root / "ucfTrainTestlist"
    key_frames_csv: Path
    class_names: tuple[str, ...]
    num_train: int
    num_test: int
    generated: int  # videos written by this call
    skipped: int  # videos already on disk


# === Clips ===


def _clip_generators(seed: int, label: int, clip_index: int):
    """Independent generators for the layout, the action shot and the distractors.

    The distractor generator is seeded by (seed, label, clip) like the others but is
    used only by `distractor_shot`, which never receives the class, so distractor shots
    are identically distributed for every class."""
    sequence = np.random.SeedSequence([seed, label, clip_index])
    return [np.random.default_rng(child) for child in sequence.spawn(3)]


def clip_layout(config: SyntheticConfig, rng: np.random.Generator):
    """Frame count, and the shots as (kind, start, end) with exactly one "action"."""
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    share = rng.uniform(config.min_action_share, config.max_action_share)
    action_frames = int(np.clip(round(share * num_frames), 1, num_frames - config.min_shot_frames))
    rest = num_frames - action_frames
    num_distractors = int(rng.integers(config.min_distractors, config.max_distractors + 1))
    num_distractors = max(1, min(num_distractors, rest // config.min_shot_frames))
    # Distractor lengths: min_shot_frames each, the remainder spread at random.
    extra = rng.multinomial(
        rest - num_distractors * config.min_shot_frames,
        np.full(num_distractors, 1.0 / num_distractors),
    )
    lengths = [config.min_shot_frames + int(e) for e in extra]
    kinds = [str(rng.choice(DISTRACTOR_KINDS)) for _ in range(num_distractors)]
    action_slot = int(rng.integers(0, num_distractors + 1))
    lengths.insert(action_slot, action_frames)
    kinds.insert(action_slot, "action")
    shots, start = [], 0
    for kind, length in zip(kinds, lengths, strict=True):
        shots.append((kind, start, start + length))
        start += length
    return num_frames, tuple(shots)


def clip_specs(config: SyntheticConfig) -> list[ClipSpec]:
    """Every clip of the dataset, in class then clip order (cheap: no rendering)."""
    specs = []
    for label, name in enumerate(config.class_names, start=1):
        counts: dict[int, int] = {}
        for clip_index in range(config.clips_per_class):
            group = clip_index % config.num_groups + 1
            counts[group] = counts.get(group, 0) + 1
            layout_rng, _, _ = _clip_generators(config.seed, label, clip_index)
            num_frames, shots = clip_layout(config, layout_rng)
            ((_, start, end),) = [shot for shot in shots if shot[0] == "action"]
            video_id = f"{name}/v_{name}_g{group:02d}_c{counts[group]:02d}"
            specs.append(
                ClipSpec(video_id, label, clip_index, group, num_frames, start, end, shots)
            )
    return specs


def render_clip(config: SyntheticConfig, spec: ClipSpec) -> np.ndarray:
    """The frames of one clip: `(num_frames, height, width, 3)` uint8 RGB."""
    _, action_rng, distractor_rng = _clip_generators(config.seed, spec.label, spec.clip_index)
    action = config.class_names[spec.label - 1]
    pieces = []
    for kind, start, end in spec.shots:
        if kind == "action":
            pieces.append(action_shot(action_rng, action, end - start, config.height, config.width))
        else:
            pieces.append(
                distractor_shot(distractor_rng, kind, end - start, config.height, config.width)
            )
    return np.concatenate(pieces)  # (num_frames, height, width, 3)


# === Files ===


def _write_text_files(texts: dict[Path, str]) -> None:
    """Writes each `path: text` atomically, UTF-8 with line ends as given, after removing
    the temporaries of that path left by a killed run."""
    for path, text in texts.items():
        remove_stale_temp_files(path)
        with atomic_write(path) as temporary:
            temporary.write_text(text, encoding="utf-8", newline="")


def _write_split_files(split_dir: Path, config: SyntheticConfig, specs: Sequence[ClipSpec]):
    crlf = "\r\n"
    train = [s for s in specs if s.group > config.num_test_groups]
    test = [s for s in specs if s.group <= config.num_test_groups]
    _write_text_files(
        {
            split_dir / "classInd.txt": "".join(
                f"{i} {name}{crlf}" for i, name in enumerate(config.class_names, start=1)
            ),
            split_dir / "trainlist01.txt": "".join(
                f"{s.relative_path} {s.label}{crlf}" for s in train
            ),
            split_dir / "testlist01.txt": "".join(f"{s.relative_path}{crlf}" for s in test),
        }
    )
    return len(train), len(test)


def _write_csvs(root: Path, specs: Sequence[ClipSpec]) -> Path:
    key_frames = [",".join(KEY_FRAMES_FIELDS)]
    key_frames += [f"{s.video_id},{s.num_frames},{s.start_frame},{s.end_frame}" for s in specs]
    shots = [",".join(SHOTS_FIELDS)]
    shots += [
        f"{s.video_id},{index},{kind},{start},{end}"
        for s in specs
        for index, (kind, start, end) in enumerate(s.shots)
    ]
    key_frames_csv = root / KEY_FRAMES_NAME
    _write_text_files(
        {
            key_frames_csv: "\n".join(key_frames) + "\n",
            root / SHOTS_NAME: "\n".join(shots) + "\n",
        }
    )
    return key_frames_csv


def _check_manifest(root: Path, config: SyntheticConfig, overwrite: bool) -> None:
    """Refuses to mix datasets: an existing dataset of another config needs `overwrite`."""
    manifest = root / MANIFEST_NAME
    wanted = dataclasses.asdict(config)
    if manifest.is_file():
        existing = json.loads(manifest.read_text(encoding="utf-8"))
        if existing != wanted:
            if not overwrite:
                raise ValueError(
                    f"{root} holds a synthetic dataset of another config ({manifest}). "
                    "Pass overwrite=True (--overwrite) to replace it, or use another folder."
                )
            for name in ("UCF-101", "ucfTrainTestlist"):
                shutil.rmtree(root / name, ignore_errors=True)
    elif (root / "UCF-101").exists():
        raise ValueError(
            f"{root}/UCF-101 exists but {manifest} does not: not a synthetic dataset "
            "folder. Choose an empty or new --output folder."
        )
    _write_text_files({manifest: json.dumps(wanted, indent=2, sort_keys=True) + "\n"})


def generate_dataset(
    root: str | os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> SyntheticSummary:
    """Writes the synthetic dataset under `root` and returns a summary.

    Writes `root/UCF-101/<Class>/v_<Class>_gGG_cCC.avi` (MJPG), `root/ucfTrainTestlist/`
    (`classInd.txt`, `trainlist01.txt`, `testlist01.txt`, CRLF; groups
    1..num_test_groups are the test set), `root/key_frames.csv`, `root/shots.csv` and
    `root/synthetic_config.json` (the config).

    Re-running with the same config skips every video already on disk (videos are
    written to a temporary file and renamed, so an existing video is complete) and
    rewrites the small text files identically; a killed run resumes. A folder holding
    a dataset of another config raises `ValueError` unless `overwrite=True`, which
    deletes its `UCF-101` and `ucfTrainTestlist` first.
    """
    root = Path(root)
    _check_manifest(root, config, overwrite)
    video_root, split_dir = root / "UCF-101", root / "ucfTrainTestlist"
    specs = clip_specs(config)
    generated = skipped = 0
    for spec in tqdm(specs, desc="synthetic clips", disable=not progress):
        path = video_root / spec.relative_path
        remove_stale_temp_files(path)  # left by a killed run
        if path.is_file():
            skipped += 1
            continue
        with atomic_write(path, suffix=".avi") as temporary:  # .avi: OpenCV picks MJPG
            write_video(temporary, render_clip(config, spec), fps=config.fps)
        generated += 1
    num_train, num_test = _write_split_files(split_dir, config, specs)
    key_frames_csv = _write_csvs(root, specs)
    return SyntheticSummary(
        root,
        video_root,
        split_dir,
        key_frames_csv,
        config.class_names,
        num_train,
        num_test,
        generated,
        skipped,
    )
