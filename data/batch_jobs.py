"""Running one stage over many videos: shards, a process pool, failures, a summary.

Every stage that turns a list of videos into files (flow, features) uses the same
contract: skip what is complete, run the rest (in parallel), record each failure with
the file and the reason, go on, print a summary, and let the CLI exit non-zero when
anything failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm


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


def run_jobs(
    worker: Callable[..., JobResult],
    tasks: Sequence[tuple],
    workers: int = 1,
    description: str = "videos",
    initializer: Callable[[], None] | None = None,
) -> JobReport:
    """Runs `worker(*task)` for every task, in a process pool when `workers > 1`.

    `worker` must be a module-level function that returns a `JobResult` and catches
    its own expected errors; anything it raises is recorded as a failure of that task.
    A progress bar shows videos/s and frames/s.
    """
    if workers < 1:
        raise ValueError(f"Expected workers >= 1. Received: workers={workers}")
    report = JobReport()
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=description, unit="video", dynamic_ncols=True)

    def record(result: JobResult) -> None:
        report.add(result)
        elapsed = max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(frames_per_s=f"{report.frames / elapsed:.1f}", failed=len(report.failures))
        bar.update(1)

    try:
        if workers == 1:
            if initializer is not None:
                initializer()
            for task in tasks:
                try:
                    record(worker(*task))
                except Exception as error:  # noqa: BLE001 - recorded, the batch goes on
                    record(JobResult(str(task[0]), "failed", f"{type(error).__name__}: {error}"))
        else:
            context = get_context("spawn")  # no fork of a threaded parent (tqdm's monitor)
            with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer) as pool:
                futures = {pool.submit(worker, *task): task for task in tasks}
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        record(future.result())
                    except BrokenProcessPool:
                        record(JobResult(str(task[0]), "failed", "worker process died"))
                    except Exception as error:  # noqa: BLE001
                        record(
                            JobResult(str(task[0]), "failed", f"{type(error).__name__}: {error}")
                        )
    finally:
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


def default_workers() -> int:
    """One worker per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def exit_status(job: Callable[[], JobReport]) -> int:
    """A batch stage's exit status: 0 when `job()` completes every item, 1 when some
    failed (named in its report), 2 when it stops on a bad input before any work (a
    `ValueError`, printed as one line on stderr)."""
    try:
        report = job()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if report.failures else 0
