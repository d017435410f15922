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
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: parent and workers
    _, err = process.communicate(timeout=30)
    return process.returncode, err, time.monotonic() - sent
