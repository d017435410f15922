"""run_jobs' worker pool: a dead worker costs only its own task, named; Ctrl-C (once or
twice) stops every worker within seconds; workers of a killed parent stop writing.

The pool runs in a subprocess (`tests/batch_job_workers.py`: 2 workers, each task
sleeps, then writes one file) that the tests signal as a user or the system would.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from temporal_attention.runtime.batch_jobs import run_jobs
from tests.batch_job_workers import write_after_pause
from tests.shell_jobs import REPO, is_running, wait_until

DRIVER = "import sys; from tests.batch_job_workers import main; sys.exit(main(sys.argv[1:]))"


def _written(output: Path) -> set[str]:
    return {path.name for path in output.glob("*.txt")}


def _worker_pids(output: Path) -> set[int]:
    return {int(path.name) for path in (output / "pids").glob("*")}


def _start_pool(output: Path, count: int, seconds: float, extra: tuple = ()) -> subprocess.Popen:
    """The pool in its own session (its own process group, as a shell job), started and
    with both workers computing."""
    output.mkdir()
    with open(output.parent / "pool.log", "w") as log:  # the child writes its own copy
        process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(output), str(count), str(seconds), *extra],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    wait_until(lambda: len(_worker_pids(output)) == 2 and len(_written(output)) >= 2)
    return process


def _assert_no_more_files(output: Path, pids: set[int], before: set[str]) -> None:
    """Every worker gone within 5 s; after that, nothing new for 2 s and no temporary."""
    wait_until(lambda: not any(is_running(pid) for pid in pids), timeout=5.0)
    after = _written(output)
    assert len(after - before) <= len(pids)  # at most the file each was renaming
    time.sleep(2.0)
    assert _written(output) == after
    assert not [path for path in output.iterdir() if ".tmp-" in path.name]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["process group", "parent only"])
def test_ctrl_c_stops_every_worker_within_seconds(tmp_path, target):
    output = tmp_path / "out"
    pool = _start_pool(output, count=60, seconds=0.25)  # 7.5 s of work
    pids, before = _worker_pids(output), _written(output)
    sent = time.monotonic()
    if target == "process group":  # a terminal's Ctrl-C
        os.killpg(pool.pid, signal.SIGINT)
    else:  # kill -INT <pid>
        pool.send_signal(signal.SIGINT)
    assert pool.wait(timeout=30) == 130
    assert time.monotonic() - sent < 4.0
    assert not any(is_running(pid) for pid in pids)  # stopped before the parent exits
    _assert_no_more_files(output, pids, before)
    assert len(_written(output)) < 20


@pytest.mark.slow
def test_a_second_ctrl_c_kills_workers_that_do_not_stop(tmp_path):
    output = tmp_path / "out"
    pool = _start_pool(
        output, count=20, seconds=1.0, extra=("stubborn",)
    )  # ignore SIGTERM for 30 s
    pids, before = _worker_pids(output), _written(output)
    sent = time.monotonic()
    os.killpg(pool.pid, signal.SIGINT)
    time.sleep(0.5)
    os.killpg(pool.pid, signal.SIGINT)
    assert pool.wait(timeout=60) == 130
    assert time.monotonic() - sent < 5.0  # not the 30 s a stopped worker is given
    assert not any(is_running(pid) for pid in pids)
    _assert_no_more_files(output, pids, before)


@pytest.mark.slow
@pytest.mark.parametrize("kill_signal", [signal.SIGTERM, signal.SIGKILL])
def test_workers_of_a_killed_parent_stop_writing(tmp_path, kill_signal):
    output = tmp_path / "out"
    pool = _start_pool(output, count=60, seconds=0.25)
    pids, before = _worker_pids(output), _written(output)
    pool.send_signal(kill_signal)  # the parent only: its workers are orphaned
    assert pool.wait(timeout=30) == -kill_signal
    _assert_no_more_files(output, pids, before)


def test_a_dead_worker_costs_only_its_own_task_and_is_named(tmp_path):
    tasks = [(f"task{index:03d}", str(tmp_path), 0.05, "task003") for index in range(12)]
    report = run_jobs(write_after_pause, tasks, workers=2)
    assert [failure.item_id for failure in report.failures] == ["task003"]
    assert "worker process died while computing task003" in report.failures[0].message
    assert report.done == 11
    assert _written(tmp_path) == {f"task{index:03d}.txt" for index in range(12)} - {"task003.txt"}


def test_workers_done_with_their_tasks_exit_quietly(tmp_path):
    """At the end the pool lets its idle workers exit by themselves: one still in its
    exit handlers (JAX registers one) is not cut short by SIGTERM, whose SystemExit would
    print a traceback there."""
    driver = DRIVER.replace("import main", "import main_slow_exit as main")
    finished = subprocess.run(
        [sys.executable, "-c", driver, str(tmp_path / "out"), "4"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert len(_written(tmp_path / "out")) == 4
    assert not (tmp_path / "out" / "sigterm").exists()  # each exited by itself
    assert "Traceback" not in finished.stderr and "SystemExit" not in finished.stderr
