"""Atomic file writes: a reader sees the complete old file, the complete new one, or none.

Every stage that writes an output (npz arrays, CSV indexes, synthetic videos and their
lists) writes it to a hidden temporary file in the same folder, then moves it onto
its final name with `os.replace`, which is atomic within one file system. A run
killed midway (SIGKILL, power loss) leaves at most a temporary file, never a partial
file under a final name, so a re-run can trust every final file it finds.

Example:

    with atomic_write("runs/videos_split1.csv") as temporary:
        temporary.write_text(text)
    with atomic_write(video_path, suffix=".avi") as temporary:  # OpenCV picks by extension
        write_video(temporary, frames)

Temporary names are `.<name>.tmp-<pid>-<random><suffix>`: `is_temp_file` recognises
them and `remove_stale_temp_files(path)` deletes those of `path` left by a killed run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

_TEMP_MARKER = ".tmp-"


def temp_path_for(path: Path, suffix: str = "") -> Path:
    """A unique hidden temporary name beside `path` (same folder, so rename is atomic),
    ending in `suffix` (e.g. `.avi` for a writer that picks the format by extension)."""
    return path.with_name(f".{path.name}{_TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def is_temp_file(path: Path) -> bool:
    """Whether `path` is a temporary file of `atomic_write` (e.g. left after a kill)."""
    return path.name.startswith(".") and _TEMP_MARKER in path.name


def remove_stale_temp_files(path: Path) -> int:
    """Deletes temporary files of `path` left by a killed writer; returns how many.

    Only the temporaries of this one output are touched: shards split a dataset by
    video, so no other live process writes the same output.
    """
    removed = 0
    # The name is escaped: file names may hold glob characters ("[HD]" in HMDB51's).
    for stale in path.parent.glob(f".{glob.escape(path.name)}{_TEMP_MARKER}*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path to write; on success moves it onto `path` atomically.

    Args:
        path: Final file name. Parent folders are created.
        suffix: End of the temporary name, e.g. `".avi"` so that OpenCV picks the codec
            from it (default `""`).

    Yields:
        A unique hidden temporary path beside `path` (see `temp_path_for`). The caller
        writes the whole file there.

    On normal exit the temporary file is flushed to disk (`fsync`) and renamed onto
    `path` with `os.replace`, replacing any old file. If the block raises, the
    temporary file is removed, `path` is left as it was, and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_path_for(path, suffix)
    try:
        yield temporary
        if not temporary.is_file():
            raise FileNotFoundError(
                f"Nothing was written for {path}: write the file at the path that "
                f"atomic_write yields ({temporary})."
            )
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
