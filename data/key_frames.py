"""Annotated key frames: the frames of each video that show the action.

    key_frames = read_key_frames("runs/synthetic/key_frames.csv")
    key_frames["WaveArms/v_WaveArms_g01_c01"]  # {7, 8, 9, ...}: 0-based frame indices

A key-frames CSV has a header and one of two layouts:

- one key frame a row: `video_id,frame_index` (`video_id,frame` is accepted too);
- one range a row: `video_id,start_frame,end_frame`, 0-based with `end_frame`
  excluded, as `data.synthetic` writes `key_frames.csv`
  (`video_id,num_frames,start_frame,end_frame`).

More columns may follow (`num_frames`, a label, ...); a `num_frames` column bounds the
ranges. To read another layout, map it to the same dict.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

# Accepted headers (their columns, in any order, among possibly more).
PER_FRAME_COLUMNS = (("video_id", "frame_index"), ("video_id", "frame"))
RANGE_COLUMNS = ("video_id", "start_frame", "end_frame")


def _check_range(path: Path, row: dict, start: int, end: int) -> None:
    """Raises `ValueError` unless 0 <= start < end (<= num_frames, if the row has it)."""
    num_frames = row.get("num_frames")
    if start < 0 or end <= start or (num_frames not in (None, "") and end > int(num_frames)):
        bound = "" if num_frames in (None, "") else f" <= num_frames={num_frames}"
        raise ValueError(
            f"{path}: bad key-frame range for {row['video_id']}: expected "
            f"0 <= start_frame < end_frame{bound}. Received: start_frame={start}, "
            f"end_frame={end}"
        )


def read_key_frames(path: str | os.PathLike) -> dict[str, set[int]]:
    """Reads a key-frames CSV (see the module docstring): `video_id -> {frame indices}`.

    Raises:
        ValueError: The header is none of the accepted ones, or a range is empty,
            negative or past the video's `num_frames`; the message names the file
            (and the video).
    """
    path = Path(path)
    key_frames: dict[str, set[int]] = {}
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        columns = set(reader.fieldnames or ())
        is_range = set(RANGE_COLUMNS) <= columns
        if not is_range and not any(set(names) <= columns for names in PER_FRAME_COLUMNS):
            accepted = [",".join(names) for names in (*PER_FRAME_COLUMNS, RANGE_COLUMNS)]
            raise ValueError(
                f"{path}: expected columns {' or '.join(accepted)} (more may follow, e.g. "
                f"num_frames). Received: {','.join(reader.fieldnames or ())!r}"
            )
        for row in reader:
            frames = key_frames.setdefault(row["video_id"], set())
            if is_range:
                start, end = int(row["start_frame"]), int(row["end_frame"])
                _check_range(path, row, start, end)
                frames.update(range(start, end))
            else:
                frames.add(int(row.get("frame_index") or row["frame"]))
    return key_frames
