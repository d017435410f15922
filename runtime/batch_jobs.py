"""Running one stage over many videos in a process pool (the records: `runtime.jobs`).

The pool (`run_jobs` with `workers > 1`) is a set of worker processes that each take
one task at a time, so a worker that dies costs only the task it held, and none goes
on computing or writing once the run is stopped (Ctrl-C) or its parent is gone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any
from multiprocessing.process import BaseProcess

from tqdm import tqdm

from temporal_attention.runtime.jobs import JobReport, JobResult
from temporal_attention.runtime.stopping import exit_with_parent


def run_jobs(
    worker: Callable[..., JobResult],
    tasks: Sequence[tuple],
    workers: int = 1,
    description: str = "videos",
    initializer: Callable[[], None] | None = None,
    stop_seconds: float = 2.0,
    unit: str = "video",
) -> JobReport:
    """Runs `worker(*task)` for every task, in `workers` processes when `workers > 1`.

    `worker` must be a module-level function that returns a `JobResult` and catches
    its own expected errors; anything it raises is recorded as a failure of that task.
    A worker process that dies (killed for lack of memory, a crash in native code)
    costs only its own task, recorded as "worker process died while computing <id>";
    a new process takes the rest. A progress bar shows `unit`s/s, frames/s and the time
    left.

    Ctrl-C stops every worker, then `KeyboardInterrupt` is raised again (the CLIs exit
    130): each worker gets SIGTERM, which ends a write in progress without its file
    (`runtime.atomic_files`), and `stop_seconds` (default 2) to exit before it is killed;
    a second Ctrl-C kills them at once. A worker also exits when its parent dies
    (SIGTERM, SIGKILL): no orphan goes on writing files.
    """
    if workers < 1:
        raise ValueError(f"Expected workers >= 1. Received: workers={workers}")
    report = JobReport()
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=description, unit=unit, dynamic_ncols=True)

    def record(result: JobResult) -> None:
        report.add(result)
        elapsed = max(time.perf_counter() - start, 1e-9)
        rates = {"frames_per_s": f"{report.frames / elapsed:.1f}"} if report.frames else {}
        bar.set_postfix(failed=len(report.failures), **rates)
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
            _run_in_processes(worker, tasks, workers, initializer, record, stop_seconds)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


# === The pool ===


@dataclass
class _WorkerProcess:
    """One worker process, its end of the pipe, and the task it computes (or None)."""

    process: BaseProcess
    connection: Connection
    task: tuple | None = None


def _run_in_processes(worker, tasks, workers, initializer, record, stop_seconds) -> None:
    """Feeds tasks one at a time to `workers` processes and `record`s each result; a
    dead worker's task is recorded as failed and a new process replaces it."""
    context = get_context("spawn")  # no fork of a threaded parent (tqdm's monitor)
    pending = list(reversed(tasks))  # pop() gives them in order
    pool: list[_WorkerProcess] = []
    try:
        for _ in range(min(workers, len(tasks))):
            pool.append(_start_worker(context, worker, initializer))
            _give_next_task(pool[-1], pending)
        while busy := [member for member in pool if member.task is not None]:
            ready = wait_for_any(
                [member.connection for member in busy]
                + [member.process.sentinel for member in busy]
            )
            for member in busy:
                if member.connection not in ready and member.process.sentinel not in ready:
                    continue
                result = _receive(member)
                if result is not None:
                    member.task = None
                    record(result)
                else:
                    item_id = str(member.task[0])
                    reason = _exit_reason(member.process)
                    message = f"worker process died while computing {item_id} ({reason})"
                    record(JobResult(item_id, "failed", message))
                if result is None or not member.process.is_alive():
                    pool.remove(member)  # dead: a new process takes the next task
                    _stop_workers([member], stop_seconds)
                    if not pending:
                        continue
                    pool.append(_start_worker(context, worker, initializer))
                    member = pool[-1]
                _give_next_task(member, pending)
    except BaseException:
        _stop_workers(pool, stop_seconds)
        raise
    _stop_workers(pool, stop_seconds, idle=True)


def _start_worker(context, worker, initializer) -> _WorkerProcess:
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=_worker_loop,
        args=(child_end, worker, initializer, os.getpid()),
        daemon=True,  # also ended by multiprocessing when this process exits
    )
    process.start()
    child_end.close()  # so that the worker's death reads as the end of the pipe here
    return _WorkerProcess(process, parent_end)


def _give_next_task(member: _WorkerProcess, pending: list) -> None:
    if not pending:
        return
    member.task = pending.pop()
    try:
        member.connection.send(member.task)
    except OSError:
        pass  # it has just died: its sentinel says so, and its task is recorded


def _receive(member: _WorkerProcess) -> JobResult | None:
    """The worker's result, or None if it died without one."""
    try:
        if member.connection.poll():
            return member.connection.recv()
    except (EOFError, OSError):
        pass
    return None


def _exit_reason(process: BaseProcess) -> str:
    process.join(5)
    code = process.exitcode
    if code is None:
        return "no exit status"
    if code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (", e.g. for lack of memory" if name == "SIGKILL" else "")
    return f"exit status {code}"


def _stop_workers(pool: list[_WorkerProcess], stop_seconds: float, idle: bool = False) -> None:
    """Ends every worker: SIGTERM (a write in progress removes its temporary file),
    then SIGKILL for one still running after `stop_seconds`, or at once on a second
    Ctrl-C while waiting. `idle`: the workers have no task (the batch is done), so each
    is first given `stop_seconds` to exit by itself on its closed pipe, its exit handlers
    run in full (SIGTERM in one of them would print a traceback)."""
    for member in pool:
        member.connection.close()
    if idle:
        deadline = time.monotonic() + stop_seconds
        for member in pool:
            member.process.join(max(0.0, deadline - time.monotonic()))
    for member in pool:
        if member.process.is_alive():
            member.process.terminate()
    try:
        deadline = time.monotonic() + stop_seconds
        for member in pool:
            member.process.join(max(0.0, deadline - time.monotonic()))
    finally:
        for member in pool:
            if member.process.is_alive():
                member.process.kill()
        for member in pool:
            member.process.join(1.0)


# === Inside a worker process ===


def _worker_loop(connection: Connection, worker, initializer, parent_pid: int) -> None:
    """Computes the tasks the parent sends, one at a time, sending back each result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # parent then stops us with SIGTERM
    exit_with_parent(parent_pid)
    if initializer is not None:
        initializer()
    while True:
        try:
            task = connection.recv()
        except EOFError:  # the parent closed the pipe: no more work, nothing being written,
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # so a late SIGTERM just ends us
            return
        try:
            result = worker(*task)
        except Exception as error:  # noqa: BLE001 - recorded, the batch goes on
            result = JobResult(str(task[0]), "failed", f"{type(error).__name__}: {error}")
        try:
            connection.send(result)
        except OSError:
            return  # the parent is gone
        except Exception as error:  # noqa: BLE001 - e.g. a result that does not pickle
            connection.send(JobResult(str(task[0]), "failed", f"{type(error).__name__}: {error}"))


def _exit_on_sigterm(signum, frame) -> None:
    """SystemExit unwinds the worker: an atomic write in progress removes its temporary."""
    raise SystemExit(128 + signum)
