"""A feed for tests/test_process_feed.py's stopping tests: `ordered_map` in 3 worker
processes whose results are 2 MiB arrays (shared memory), read by a consumer that has
taken the first and is busy, as a stage's network would be.

    python -c "import sys; from tests.feed_workers import main; sys.exit(main(sys.argv[1:]))" \
        OUTPUT

Each worker notes itself in `OUTPUT/pids/<pid>` (its parent's pid inside: a forkserver,
or the consumer). The exit status is 130 on Ctrl-C and 143 on SIGTERM, as the CLIs'.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

from temporal_attention.runtime.jobs import JobReport, exit_status
from temporal_attention.runtime.process_feed import ordered_map

WORKERS = 3
AHEAD = 6  # results computed ahead of the consumer, each waiting in its own segment


def large_result(item: int, output: str) -> np.ndarray:
    """A 2 MiB array of `item`, after a short pause that lets every worker take a part."""
    pids = Path(output) / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / str(os.getpid())).write_text(str(os.getppid()))
    time.sleep(0.2)
    return np.full((2 << 20,), item % 251, dtype=np.uint8)


def consume(output: str) -> JobReport:
    """Takes the first result, then works on it for a minute (the test stops it first)."""
    feed = ordered_map(
        functools.partial(large_result, output=output), range(100), workers=WORKERS, ahead=AHEAD
    )
    first = next(feed)
    assert int(first[0]) == 0
    time.sleep(60.0)  # the network's work on it: the test stops the process before its end
    feed.close()
    return JobReport()


def main(argv: list[str]) -> int:
    """OUTPUT: the feed above; 130 on Ctrl-C, 143 on SIGTERM (`runtime.jobs.exit_status`)."""
    return exit_status(lambda: consume(argv[0]))
