"""Tiny jobs for tests/test_batch_jobs.py: each task notes its worker's pid, pauses, and
writes one file; `main` runs them in a pool of 2 workers, as a stage's CLI would.

    python -c "import sys; from tests.batch_job_workers import main; sys.exit(main(sys.argv[1:]))" \
        OUTPUT COUNT SECONDS [stubborn]
"""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.batch_jobs import run_jobs
from temporal_attention.runtime.jobs import JobResult


def write_after_pause(
    item_id: str, output: str, seconds: float, crash_on: str = "", stubborn: bool = False
) -> JobResult:
    """Writes `<output>/<item_id>.txt` after `seconds`; notes `<output>/pids/<pid>` first.

    `crash_on`: the task whose worker dies at once (`os._exit`, as if killed for memory).
    `stubborn`: ignore SIGTERM, as a worker deep in native code would for a while.
    """
    pids = Path(output) / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / str(os.getpid())).touch()
    if item_id == crash_on:
        os._exit(3)
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)
    with atomic_write(Path(output) / f"{item_id}.txt") as temporary:
        temporary.write_text(item_id)
    return JobResult(item_id, "done", frames=1)


def main(argv: list[str]) -> int:
    """OUTPUT COUNT SECONDS [stubborn]: COUNT tasks, 2 workers; 130 on Ctrl-C, as the CLIs.
    With `stubborn`, a stopped worker gets 30 s before it is killed."""
    output, count, seconds = argv[0], int(argv[1]), float(argv[2])
    stubborn = "stubborn" in argv[3:]
    tasks = [(f"task{index:03d}", output, seconds, "", stubborn) for index in range(count)]
    try:
        report = run_jobs(
            write_after_pause, tasks, workers=2, stop_seconds=30.0 if stubborn else 2.0
        )
    except KeyboardInterrupt:
        return 130
    print(report.summary())
    return 1 if report.failures else 0


def slow_exit(output: str) -> None:
    """An initializer whose process takes a while to exit, as one that imported JAX does
    (its atexit clean-up), and that notes a SIGTERM in `<output>/sigterm/<pid>` before
    handling it as the pool's worker does."""
    import atexit

    atexit.register(time.sleep, 0.5)
    previous = signal.getsignal(signal.SIGTERM)

    def note(signum, frame):
        (Path(output) / "sigterm").mkdir(parents=True, exist_ok=True)
        (Path(output) / "sigterm" / str(os.getpid())).touch()
        previous(signum, frame)

    signal.signal(signal.SIGTERM, note)


def main_slow_exit(argv: list[str]) -> int:
    """OUTPUT COUNT: COUNT quick tasks in 2 workers that take 0.5 s to exit."""
    output, count = argv[0], int(argv[1])
    tasks = [(f"task{index:03d}", output, 0.01) for index in range(count)]
    report = run_jobs(
        write_after_pause, tasks, workers=2, initializer=functools.partial(slow_exit, output)
    )
    print(report.summary())
    return 1 if report.failures else 0
