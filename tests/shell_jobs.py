"""A stage run as a shell job and interrupted the way a terminal's Ctrl-C interrupts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ctrl_c_once_written(
    module_argv: Sequence[str], watch: Path, pattern: str = "*.npz", wait_seconds: float = 60
) -> tuple[int, str, float]:
    """Runs `python -m <module_argv>` in its own process group (as a shell job), waits
    until a file matching `pattern` appears under `watch` (at most `wait_seconds`), then
    sends the whole group SIGINT. Returns (exit status, stderr, seconds from the signal
    to the exit)."""
    process = subprocess.Popen(
        [sys.executable, "-m", *module_argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job
    )
    deadline = time.monotonic() + wait_seconds
    while not list(Path(watch).rglob(pattern)) and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = time.monotonic()
    finished = process.poll()
    assert finished is None, (
        f"the command ended (status {finished}) before a file matching {pattern} showed "
        f"under {watch}: nothing left to interrupt"
    )
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: parent and workers
    _, err = process.communicate(timeout=30)
    return process.returncode, err, time.monotonic() - sent


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_until(condition, timeout: float = 60.0) -> None:
    """Polls `condition()` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def descendants(pid: int) -> set[int]:
    """The pids of every process below `pid` now (children, theirs, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended while read
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, unvisited = set(), [pid]
    while unvisited:
        for child in children.get(unvisited.pop(), []):
            found.add(child)
            unvisited.append(child)
    return found
