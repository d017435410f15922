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
them and `remove_stale_temp_files(path)` deletes those of `path` left by a killed run
(its writer's pid is no longer alive). Two processes may write the same file at once
(the same command twice, overlapping shards): each writes its own temporary, both
succeed, and the last rename wins.

`PidLock(path)` is the other half: an exclusive lock through a file that names its
holder's pid, for what must have one writer at a time (a run folder being trained).
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: PidLock falls back to an O_EXCL pid file
    fcntl = None

_TEMP_MARKER = ".tmp-"


def temp_path_for(path: Path, suffix: str = "") -> Path:
    """A unique hidden temporary name beside `path` (same folder, so rename is atomic),
    ending in `suffix` (e.g. `.avi` for a writer that picks the format by extension)."""
    return path.with_name(f".{path.name}{_TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def is_temp_file(path: Path) -> bool:
    """Whether `path` is a temporary file of `atomic_write` (e.g. left after a kill)."""
    return path.name.startswith(".") and _TEMP_MARKER in path.name


def process_is_alive(pid: int) -> bool:
    """Whether a process with id `pid` runs on this machine (a zombie counts as alive
    until reaped)."""
    try:
        os.kill(pid, 0)  # signal 0: checks only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def remove_stale_temp_files(path: Path) -> int:
    """Deletes temporary files of `path` left by a killed writer; returns how many.

    Only the temporaries of this one output whose writer (the pid in the name) is no
    longer alive are removed: another process writing the same output at this moment
    keeps its temporary and finishes its write. Pids are those of this machine: a
    temporary written from another machine into a shared folder may be taken for stale.
    """
    prefix = f".{path.name}{_TEMP_MARKER}"
    removed = 0
    # The name is escaped: file names may hold glob characters ("[HD]" in HMDB51's).
    for temporary in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid_text = temporary.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or process_is_alive(int(pid_text)):
            continue  # a live writer's, or not a name that temp_path_for makes
        temporary.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_stale_temp_files_in(folder: Path) -> int:
    """Deletes every temporary file in `folder` whose writer is dead (any output's, as
    `remove_stale_temp_files` does for one); returns how many. For a folder of many
    outputs written together, such as a video's frames in `data.frame_store`."""
    removed = 0
    for temporary in Path(folder).iterdir() if Path(folder).is_dir() else ():
        if not is_temp_file(temporary):
            continue
        pid_text = temporary.name.rsplit(_TEMP_MARKER, 1)[1].split("-", 1)[0]
        if not pid_text.isdigit() or process_is_alive(int(pid_text)):
            continue
        temporary.unlink(missing_ok=True)
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


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Raises `ValueError` (before any work) when `path` cannot be an output folder: it
    is a file, or neither it nor the first existing folder above it is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"The {what} {path} is a file. Give a folder (new or existing).")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"The {what} {path} is under the file {existing}. Give a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"The {what} {path} is not writable ({existing} is not writable by this user). "
            "Choose another folder or fix its permissions."
        )
    return path


class LockHeldError(RuntimeError):
    """The lock file `path` is held by the live process `pid` (`None`: not readable)."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"{path} is held by {holder}.")


class PidLock:
    """An exclusive lock held through the file `path`, which names its holder's pid.

    A second holder, in any process (or a second `PidLock` in this one), gets
    `LockHeldError` naming the first one's pid. A lock left by a killed process is
    taken over: the lock is the kernel's (`flock`), released when its holder exits
    however it exits, so a dead pid left in the file never blocks anyone. The file is
    removed on release. Where `fcntl` is missing (Windows) the lock is the file itself,
    created with `O_CREAT | O_EXCL`, and a file whose pid is dead is taken over.

    Example:

        with PidLock(run_folder / "training.lock"):
            ...  # another PidLock of this file raises LockHeldError until here
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock (creating the folder) or raises `LockHeldError`."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this PidLock.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._lock_kernel() if fcntl is not None else self._lock_exclusive_file()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Removes the file, then lets the lock go (a no-op when not held)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # first: whoever opened it now sees it gone
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PidLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _lock_kernel(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _pid_in(self.path)
                os.close(fd)
                raise LockHeldError(self.path, pid) from None
            try:
                opened, current = os.fstat(fd), os.stat(self.path)
                if (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino):
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # its holder released and removed it meanwhile: open the new one

    def _lock_exclusive_file(self) -> int:
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = _pid_in(self.path)
                if pid is None or process_is_alive(pid):
                    raise LockHeldError(self.path, pid) from None
                self.path.unlink(missing_ok=True)  # stale: its holder is dead


def _pid_in(path: Path) -> int | None:
    """The pid a lock file holds; waits a moment for a holder that is writing it."""
    for _ in range(20):
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None
