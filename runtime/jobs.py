"""A stage's jobs and what they came to: shards, per-item results, the report, the exit status.

Every stage that turns a list of videos into files (flow, features) uses the same
contract: skip what is complete, run the rest, record each failure with the file and
the reason, go on, print a summary, and let the CLI exit non-zero when anything failed.
The records here are plain data; `runtime.batch_jobs` runs the jobs in processes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporal_attention.runtime.stopping import Terminated


def parse_shard(shard: str | None) -> tuple[int, int]:
    """ "i/n" to (i, n). Shards are 0-based: "0/4", "1/4", "2/4", "3/4" cover a dataset.

    `None` means the whole dataset, (0, 1).
    """
    if shard is None:
        return 0, 1
    try:
        index_text, count_text = str(shard).split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(
            f"Expected shard as 'i/n', e.g. '0/4'. Received: shard={shard!r}"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"Expected shard 'i/n' with n >= 1 and 0 <= i < n (0-based). Received: shard={shard!r}"
        )
    return index, count


def shard_items(items: Sequence, shard: str | None) -> list:
    """The items of shard "i/n" (0-based): every n-th item starting at i.

    Shards are disjoint and together cover `items`, given the same `items` order on
    every machine (split files are read in file order, so that holds). No coordination
    is needed between the processes or machines running the shards.
    """
    index, count = parse_shard(shard)
    return list(items)[index::count]


@dataclass(frozen=True)
class JobResult:
    """Outcome of one item: `status` is "done", "skipped" or "failed"."""

    item_id: str
    status: str
    message: str = ""
    frames: int = 0  # frames processed, for the frames/s rate
    seconds: float = 0.0


@dataclass
class JobReport:
    """Counts and failures of one batch run."""

    done: int = 0
    skipped: int = 0
    failures: list[JobResult] = field(default_factory=list)
    completed: list[JobResult] = field(default_factory=list)  # the "done" results
    frames: int = 0
    seconds: float = 0.0

    def add(self, result: JobResult) -> None:
        if result.status == "done":
            self.done += 1
            self.frames += result.frames
            self.completed.append(result)
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failures.append(result)

    def summary(self, log_path: Path | None = None) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"done {self.done}, skipped {self.skipped} (already complete), "
            f"failed {len(self.failures)}; {self.frames} frames in {self.seconds:.1f} s "
            f"({rate:.2f} videos/s)"
        ]
        for failure in self.failures:
            lines.append(f"  FAILED {failure.item_id}: {failure.message}")
        if self.failures and log_path is not None:
            lines.append(f"Failures are listed in {log_path}")
        return "\n".join(lines)


def write_failure_log(path: Path, failures: Iterable[JobResult]) -> None:
    """One JSON line per failure (`item_id`, `message`); the log of this run only."""
    failures = list(failures)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not failures:
        path.unlink(missing_ok=True)
        return
    with open(path, "w", encoding="utf-8") as handle:
        for failure in failures:
            handle.write(
                json.dumps({"item_id": failure.item_id, "message": failure.message}) + "\n"
            )


def default_workers(reserve: int = 0) -> int:
    """The CPU cores available to this process, less `reserve` (at least 1).

    A stage whose main process works beside its workers (fine-tuning, extraction: the
    main process feeds the network) reserves 1; a pool of workers alone reserves none.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores - reserve)


def exit_status(
    job: Callable[[], JobReport],
    interrupted: str = "the files written are complete; the same command goes on",
) -> int:
    """A batch stage's exit status: 0 when `job()` completes every item, 1 when some
    failed (named in its report), 2 when it stops on a bad input before any work (a
    `ValueError`, printed as one line on stderr), 130 on Ctrl-C and 143 on SIGTERM where
    a worker pool turned it into `runtime.stopping.Terminated` (the pools have stopped
    their workers by then; `interrupted` says what is left)."""
    try:
        report = job()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(stop, Terminated) else 130
    return 1 if report.failures else 0
