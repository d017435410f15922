"""Official train/test splits of UCF101 and HMDB51, with an optional class subset.

UCF101: `ucfTrainTestlist/classInd.txt` ("1 ApplyEyeMakeup"), `trainlist0N.txt`
("Class/file.avi 1"), `testlist0N.txt` ("Class/file.avi"), CRLF line ends.
HMDB51: `testTrainMulti_7030_splits/<class>_test_split{N}.txt`, lines "<video>.avi <id>",
id 1 = train, 2 = test, 0 = unused; classes in alphabetical order.
File names may contain spaces: a line is split at its last whitespace only (a test
line of UCF101 is the whole path).

Example:

    split = load_ucf101_split("UCF-101", "ucfTrainTestlist", split=1,
                              classes=["BabyCrawling", "Punch", "PushUps"])
    len(split.train), len(split.test)  # 290, 104
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS = ("ucf101", "hmdb51")
SPLITS = (1, 2, 3)
SUBSETS = ("train", "test", "all")
# How validation videos leave a training list (`hold_out_validation`).
HOLD_OUTS = ("group", "video")
# UCF101 file stems are v_<Class>_gGG_cCC: clips of one group share actors and scenes.
_UCF101_GROUP = re.compile(r"_g(?P<group>\d+)_c\d+$")


class SplitError(ValueError):
    """A split cannot be loaded as asked; the message names the file or clip(s)."""


@dataclass(frozen=True)
class Clip:
    """One video of a split.

    Attributes:
        video_id: "<class>/<file stem>", e.g. "Punch/v_Punch_g01_c01"; names every
            stored output (flow, features) of this video.
        path: The video file.
        label: Class index, 0-based, in the order of `Split.class_names`.
    """

    video_id: str
    path: Path
    label: int


@dataclass(frozen=True)
class MissingClip:
    """A listed clip of a selected class that is not on disk."""

    subset: str  # "train" or "test"
    clip: Clip  # where it was expected
    list_file: Path  # the split file that lists it

    def __str__(self) -> str:
        return f"{self.clip.video_id} (listed in {self.list_file}, expected at {self.clip.path})"


@dataclass(frozen=True)
class Split:
    """Train and test clips of one official split.

    Attributes:
        class_names: The selected classes; `label` indexes this tuple.
        train: Training clips, in the order of the split file.
        test: Test clips, in the order of the split file.
        missing: Listed clips of selected classes absent on disk (only with
            `on_missing="skip"`; with "raise" the loader raises instead).
    """

    class_names: tuple[str, ...]
    train: tuple[Clip, ...]
    test: tuple[Clip, ...]
    missing: tuple[MissingClip, ...] = ()

    def subset(self, name: str) -> tuple[Clip, ...]:
        """ "train", "test" or "all" (train then test)."""
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        return self.train + self.test

    def missing_in(self, name: str) -> tuple[MissingClip, ...]:
        """The missing clips of subset "train", "test" or "all"."""
        self._check_subset_name(name)
        return tuple(item for item in self.missing if name in ("all", item.subset))

    @staticmethod
    def _check_subset_name(name: str) -> None:
        if name not in SUBSETS:
            raise ValueError(f"Expected subset in {SUBSETS}. Received: {name!r}")


def video_group(video_id: str) -> int | None:
    """The UCF101 group (1-25) in a video id such as "Punch/v_Punch_g03_c02", or None
    for a name without one (HMDB51's clips)."""
    match = _UCF101_GROUP.search(video_id)
    return int(match.group("group")) if match else None


def hold_out_validation(
    clips: Sequence, fraction: float, seed: int = 0, by: str = "group"
) -> tuple[list, list]:
    """Splits training clips into (train, validation); `seed` chooses what is held out.

    - `by="group"`: whole UCF101 groups, the same group numbers in every class, as the
      official test lists are made: `round(fraction * groups)` of the training list's
      groups (at least 1 when `fraction > 0`, never all). Clips of a group share actors
      and scenes, so a validation video of a training group is a near-copy of training
      videos, and the validation accuracy overstates the test accuracy. Clips without a
      group in their name (HMDB51) are held out by video, as below.
    - `by="video"`: per class, `round(fraction * n)` of its `n` videos (at least 1 when
      `fraction > 0` and it has 2 or more).
    """
    if by not in HOLD_OUTS:
        raise ValueError(f"Expected by in {HOLD_OUTS}. Received: by={by!r}")
    rng = np.random.default_rng(seed)
    groups = {clip.video_id: video_group(clip.video_id) for clip in clips}
    grouped = [clip for clip in clips if by == "group" and groups[clip.video_id] is not None]
    held_out = set()
    if grouped:
        numbers = sorted({groups[clip.video_id] for clip in grouped})
        count = int(round(fraction * len(numbers)))
        if fraction > 0 and len(numbers) >= 2:
            count = min(max(count, 1), len(numbers) - 1)
        chosen = {numbers[index] for index in rng.permutation(len(numbers))[:count]}
        held_out = {clip.video_id for clip in grouped if groups[clip.video_id] in chosen}
    by_label: dict[int, list] = {}
    for clip in clips:
        if not (grouped and groups[clip.video_id] is not None):
            by_label.setdefault(clip.label, []).append(clip)
    for label in sorted(by_label):
        members = by_label[label]
        count = int(round(fraction * len(members)))
        if fraction > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        for index in rng.permutation(len(members))[:count]:
            held_out.add(members[index].video_id)
    train = [clip for clip in clips if clip.video_id not in held_out]
    validation = [clip for clip in clips if clip.video_id in held_out]
    return train, validation


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines; tolerates CRLF and a UTF-8 byte-order mark."""
    if not path.is_file():
        raise SplitError(f"{path}: split file not found. Check --split-dir.")
    text = path.read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check_split_number(split: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"Expected split in {SPLITS}. Received: split={split}")


def _select_classes(all_names: Sequence[str], classes, source: Path) -> tuple[str, ...]:
    """The selected names in the official order, validated."""
    if classes is None:
        return tuple(all_names)
    if isinstance(classes, str):
        classes = [name for name in classes.split(",") if name]
    unknown = [name for name in classes if name not in all_names]
    if unknown:
        raise SplitError(f"Unknown class name(s) {unknown}: not in {source}.")
    if not classes:
        raise ValueError("Expected at least one class. Received: classes=[]")
    chosen = set(classes)
    return tuple(name for name in all_names if name in chosen)


def _check_lists(train, test, missing, split_dir) -> None:
    """A video listed twice, or in both lists, or a list with no video of the selected
    classes, is an error of the split files (or of --classes): say which."""
    listed = {"train": [clip.video_id for clip in train], "test": [clip.video_id for clip in test]}
    for item in missing:
        listed[item.subset].append(item.clip.video_id)
    for subset, video_ids in listed.items():
        if not video_ids:
            raise SplitError(
                f"{split_dir}: the {subset} list holds no video of the selected classes. "
                "Check --classes, --split and the split files."
            )
        seen, repeated = set(), []
        for video_id in video_ids:
            if video_id in seen:
                repeated.append(video_id)
            seen.add(video_id)
        if repeated:
            raise SplitError(
                f"{split_dir}: {repeated[0]} is listed twice in the {subset} list "
                f"({len(repeated)} repeated line(s)). Remove the repeated lines."
            )
    both = sorted(set(listed["train"]) & set(listed["test"]))
    if both:
        raise SplitError(
            f"{split_dir}: {both[0]} is listed in both the train and the test list "
            f"({len(both)} video(s)). A video belongs to one of them: fix the split files."
        )


def _finish(class_names, train, test, missing, on_missing, split_dir=None) -> Split:
    _check_lists(train, test, missing, split_dir)
    if missing and on_missing == "raise":
        shown = "\n  ".join(str(item) for item in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise SplitError(
            f"{len(missing)} listed clip(s) of the selected classes are missing on disk:\n  "
            f"{shown}{more}\nCheck --video-root, or restore these files."
        )
    return Split(tuple(class_names), tuple(train), tuple(test), tuple(missing))


def _check_on_missing(on_missing: str) -> None:
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"Expected on_missing in ('raise', 'skip'). Received: {on_missing!r}")


def _ucf101_list_path(line: str, subset: str, list_file: Path) -> str:
    """The video path of a UCF101 list line: a train line is "<path> <label>" (split at
    its LAST whitespace), a test line is the whole path; either may contain spaces."""
    if subset == "test":
        return line
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2 or not parts[1].isdigit():
        raise SplitError(
            f"{list_file}: expected lines '<Class>/<file>.avi <label>'. Received: {line!r}"
        )
    return parts[0]


def load_ucf101_split(
    video_root: str | os.PathLike,
    split_dir: str | os.PathLike,
    split: int = 1,
    classes: Sequence[str] | str | None = None,
    on_missing: str = "raise",
) -> Split:
    """Loads official UCF101 split `split` (1, 2 or 3).

    Args:
        video_root: The `UCF-101` folder (`<Class>/v_<Class>_gGG_cCC.avi`).
        split_dir: The `ucfTrainTestlist` folder.
        split: 1, 2 or 3.
        classes: Class names to keep (a sequence or "A,B,C"); labels are re-indexed
            0..k-1 in classInd order. `None` keeps all 101.
        on_missing: "raise" (default): a listed clip of a selected class that is not
            on disk raises `SplitError` naming it and its split file. "skip": leave it
            out and list it in `Split.missing`.
    """
    _check_split_number(split)
    _check_on_missing(on_missing)
    video_root, split_dir = Path(video_root), Path(split_dir)
    class_file = split_dir / "classInd.txt"
    all_names = []
    for line in _lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{class_file}: expected lines '<index> <Class>'. Received: {line!r}")
        all_names.append(parts[1])
    class_names = _select_classes(all_names, classes, class_file)
    label_of = {name: index for index, name in enumerate(class_names)}
    missing: list[MissingClip] = []
    subsets = {}
    for subset, file_name in (
        ("train", f"trainlist0{split}.txt"),
        ("test", f"testlist0{split}.txt"),
    ):
        list_file = split_dir / file_name
        clips = []
        for line in _lines(list_file):
            relative = _ucf101_list_path(line, subset, list_file).replace("\\", "/")
            class_name = relative.split("/")[0]
            if class_name not in all_names:
                raise SplitError(f"{list_file}: class {class_name!r} is not in {class_file}.")
            if class_name not in label_of:
                continue
            video_id = relative.rsplit(".", 1)[0]
            path = video_root / relative
            clip = Clip(video_id, path, label_of[class_name])
            if not path.is_file():
                missing.append(MissingClip(subset, clip, list_file))
                continue
            clips.append(clip)
        subsets[subset] = clips
    return _finish(class_names, subsets["train"], subsets["test"], missing, on_missing, split_dir)


_HMDB_FILE = re.compile(r"^(?P<name>.+)_test_split(?P<split>[123])\.txt$")


def load_hmdb51_split(
    video_root: str | os.PathLike,
    split_dir: str | os.PathLike,
    split: int = 1,
    classes: Sequence[str] | str | None = None,
    on_missing: str = "raise",
) -> Split:
    """Loads official HMDB51 split `split` (1, 2 or 3).

    Args:
        video_root: Folder of `<class>/<video>.avi`.
        split_dir: The `testTrainMulti_7030_splits` folder.
        split, classes, on_missing: As in `load_ucf101_split`; classes are ordered
            alphabetically (the usual HMDB51 label order).
    """
    _check_split_number(split)
    _check_on_missing(on_missing)
    video_root, split_dir = Path(video_root), Path(split_dir)
    if not split_dir.is_dir():
        raise SplitError(f"{split_dir}: split folder not found. Check --split-dir.")
    files = {}
    for path in split_dir.iterdir():
        match = _HMDB_FILE.match(path.name)
        if match and int(match.group("split")) == split:
            files[match.group("name")] = path
    if not files:
        raise SplitError(f"{split_dir}: no '<class>_test_split{split}.txt' files.")
    class_names = _select_classes(sorted(files), classes, split_dir)
    missing: list[MissingClip] = []
    train, test = [], []
    for label, class_name in enumerate(class_names):
        list_file = files[class_name]
        for line in _lines(list_file):
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise SplitError(f"{list_file}: expected '<video>.avi <0|1|2>'. Received: {line!r}")
            file_name, usage = parts
            if usage == "0":
                continue
            video_id = f"{class_name}/{file_name.rsplit('.', 1)[0]}"
            path = video_root / class_name / file_name
            clip = Clip(video_id, path, label)
            subset = "train" if usage == "1" else "test"
            if not path.is_file():
                missing.append(MissingClip(subset, clip, list_file))
                continue
            (train if usage == "1" else test).append(clip)
    return _finish(class_names, train, test, missing, on_missing, split_dir)


def load_split(
    dataset: str, video_root, split_dir, split: int = 1, classes=None, **kwargs
) -> Split:
    """`load_ucf101_split` or `load_hmdb51_split` by name ("ucf101" or "hmdb51")."""
    if dataset == "ucf101":
        return load_ucf101_split(video_root, split_dir, split, classes, **kwargs)
    if dataset == "hmdb51":
        return load_hmdb51_split(video_root, split_dir, split, classes, **kwargs)
    raise ValueError(f"Expected dataset in {DATASETS}. Received: dataset={dataset!r}")


@dataclass(frozen=True)
class SplitSource:
    """Where a split is read from: the part of every split-reading stage's config that
    gives its flags --dataset, --video-root, --split-dir, --split and --classes."""

    video_root: Path = field(metadata={"help": "folder of the videos (UCF-101/ or HMDB51)"})
    split_dir: Path = field(metadata={"help": "folder of the official split files"})
    dataset: str = field(default="ucf101", metadata={"choices": DATASETS})
    split: int = field(default=1, metadata={"choices": SPLITS})
    classes: tuple[str, ...] | None = field(
        default=None, metadata={"help": "comma-separated subset, e.g. A,B,C"}
    )

    def load(self, on_missing: str = "raise") -> Split:
        """The split (see `load_split`)."""
        return load_split(
            self.dataset, self.video_root, self.split_dir, self.split, self.classes,
            on_missing=on_missing,
        )  # fmt: skip
