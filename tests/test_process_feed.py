"""runtime.process_feed: ordered results from worker processes, through shared memory."""

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from temporal_attention.runtime import process_feed
from temporal_attention.runtime.process_feed import ordered_map
from tests.feed_workers import AHEAD, WORKERS
from tests.shell_jobs import REPO, is_running, wait_until


def _array_of(size: int, value: int) -> np.ndarray:
    return np.full((size,), value % 251, dtype=np.uint8)


def _labelled(item: int) -> tuple[np.ndarray, np.ndarray, int]:
    # A large array (shared memory), a small one (pickled), a plain value.
    return _array_of(3 << 20, item), np.arange(item, item + 3), os.getpid()


def _fails_on_three(item: int) -> int:
    if item == 3:
        raise KeyError(f"item {item}")
    return item


_pickled = []


class _CountsItsPickles:
    """Doubles an item; records in the consumer each time it is pickled."""

    def __call__(self, item: int) -> int:
        return 2 * item

    def __reduce__(self):
        _pickled.append(os.getpid())
        return (_CountsItsPickles, ())


def test_results_come_in_order_from_other_processes():
    results = list(ordered_map(_labelled, range(7), workers=2, ahead=3))
    assert len(results) == 7
    for item, (large, small, pid) in enumerate(results):
        assert large.shape == (3 << 20,) and large.dtype == np.uint8
        assert int(large[0]) == item and int(large[-1]) == item
        np.testing.assert_array_equal(small, [item, item + 1, item + 2])
        assert pid != os.getpid()
    # workers=0: the same values, computed here.
    serial = list(ordered_map(_labelled, range(7), workers=0))
    for (large, small, _), (large0, small0, pid0) in zip(results, serial, strict=True):
        np.testing.assert_array_equal(large, large0)
        np.testing.assert_array_equal(small, small0)
        assert pid0 == os.getpid()


def test_partial_functions_and_no_shared_memory_left():
    function = functools.partial(_array_of, 2 << 20)
    feed = ordered_map(function, range(10), workers=2, ahead=4)
    first = [next(feed) for _ in range(3)]
    assert [int(array[0]) for array in first] == [0, 1, 2]
    del first
    feed.close()  # results computed ahead and never read are freed
    # This feed's segments only (named after this process): the other test workers'
    # processes make and leave /dev/shm entries of their own meanwhile.
    assert _feed_segments(os.getpid()) == set()


def _shared_mappings() -> int:
    """Shared-memory blocks mapped into this process (Python names them psm_...)."""
    return sum("/psm_" in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")
def test_results_are_read_in_place_and_their_memory_goes_with_them():
    import gc

    before = _shared_mappings()
    arrays = list(ordered_map(functools.partial(_array_of, 2 << 20), range(4), workers=1))
    assert [int(array[-1]) for array in arrays] == [0, 1, 2, 3]
    assert _shared_mappings() - before == 4  # no copy: each is its shared block
    view = arrays[1][:10]
    del arrays
    gc.collect()
    assert _shared_mappings() - before == 1  # a view keeps its block, and only that one
    assert int(view[0]) == 1
    del view
    gc.collect()
    assert _shared_mappings() == before


def test_the_function_is_sent_once_a_worker_not_once_an_item():
    # A fine-tuning's function holds the whole clip list: pickling it per batch cost more
    # than drawing the batch.
    _pickled.clear()
    results = list(ordered_map(_CountsItsPickles(), range(12), workers=2, ahead=4))
    assert results == [2 * item for item in range(12)]
    assert 1 <= len(_pickled) <= 2 and set(_pickled) == {os.getpid()}


def test_a_worker_exception_is_raised_at_its_item():
    feed = ordered_map(_fails_on_three, range(6), workers=2)
    assert [next(feed) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(KeyError, match="item 3"):
        next(feed)


def test_bad_arguments():
    with pytest.raises(ValueError, match="workers >= 0"):
        list(ordered_map(_fails_on_three, range(2), workers=-1))
    with pytest.raises(ValueError, match="ahead >= 1"):
        list(ordered_map(_fails_on_three, range(2), workers=1, ahead=0))


def test_workers_do_not_import_the_main_module(tmp_path):
    # A stage run as `python -m ...` imports Keras; its workers must not (forkserver and
    # spawn children import the parent's main module unless it is hidden from them).
    import subprocess
    import sys

    script = tmp_path / "main_importing_keras.py"
    script.write_text(
        "import sys\n"
        "import keras  # noqa: F401\n"
        "from temporal_attention.runtime.process_feed import ordered_map\n"
        "from tests.test_process_feed import _modules_loaded\n"
        "print(list(ordered_map(_modules_loaded, ['keras', 'main_importing_keras'], workers=1)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[False, False]"


def _modules_loaded(name: str) -> bool:
    import sys

    return name in sys.modules or any(
        getattr(module, "__file__", None) and name in str(module.__file__)
        for module in list(sys.modules.values())
    )


# === Stopped from outside: no worker and no shared memory left ===

FEED = "import sys; from tests.feed_workers import main; sys.exit(main(sys.argv[1:]))"


def _feed_segments(consumer_pid: int) -> set[str]:
    """The shared memory segments of the feed of process `consumer_pid` (named after it)."""
    return {path.name for path in Path("/dev/shm").glob(f"psm_{consumer_pid}_*")}


def _noted_workers(output: Path) -> dict[int, int]:
    """{worker pid: its parent's pid}, as `tests.feed_workers` notes them."""
    return {int(path.name): int(path.read_text() or 0) for path in (output / "pids").glob("*")}


def _array_and_pid(item: int) -> tuple[np.ndarray, int]:
    return _array_of(2 << 20, item), os.getpid()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="reads Linux's /dev/shm")
def test_results_lost_with_a_stopped_worker_are_an_error_naming_the_item():
    # A worker stopped from outside takes its results not yet read with it (and the pool
    # stops the other): reading on is a RuntimeError naming the item, not a missing file.
    feed = ordered_map(_array_and_pid, range(12), workers=2, ahead=6)
    first, pid = next(feed)
    assert int(first[0]) == 0
    wait_until(lambda: len(_feed_segments(os.getpid())) == 6, timeout=60.0)  # items 1-6
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _feed_segments(os.getpid()), timeout=10.0)
    with pytest.raises(RuntimeError, match="of 1 was lost"):
        next(feed)
    feed.close()
    assert not _feed_segments(os.getpid())


def _busy(folder: str) -> None:
    Path(folder, str(os.getpid())).touch()  # this worker has taken its item
    time.sleep(1.0)


def test_a_worker_that_dies_with_the_pools_queue_locked_does_not_hang_the_shutdown(tmp_path):
    # An idle worker waits for its next item holding the lock of the pool's call queue;
    # dying there, it leaves the other workers unable to read the pool's stop message.
    # concurrent.futures' own shutdown then waits for them forever unless it saw the
    # death first (a race: the test above hung 1 time in 10 before the fix). Here this
    # process takes that lock while both workers are busy (so they wait for it once
    # done), the shutdown gets under way, and then a worker dies: the feed's shutdown
    # stops the other worker and returns.
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import wait as wait_for

    pool = ProcessPoolExecutor(2, mp_context=process_feed._context())
    busy = [pool.submit(_busy, str(tmp_path)) for _ in range(2)]
    wait_until(lambda: len(list(tmp_path.iterdir())) == 2)
    processes = list(pool._processes.values())
    pool._call_queue._rlock.acquire()
    wait_for(busy)
    killer = threading.Timer(0.5, os.kill, (processes[0].pid, signal.SIGKILL))
    killer.start()
    shutdown = threading.Thread(target=process_feed._shut_down, args=(pool,), daemon=True)
    shutdown.start()
    shutdown.join(timeout=20)
    stuck = shutdown.is_alive()
    for process in processes:  # a failed test leaves no worker behind
        process.kill()
    assert not stuck, "the shutdown waits for a worker that cannot stop"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="reads Linux's /dev/shm and /proc")
@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_stopped_consumer_leaves_no_worker_and_no_shared_memory(tmp_path, stop):
    # The consumer has taken the first result and is busy; 6 results wait in shared
    # memory, handed over but not taken. However it is stopped, its workers (and their
    # forkserver) are gone within seconds, and so is every segment of its feed.
    output, log_path = tmp_path / "out", tmp_path / "feed.log"
    with open(log_path, "w") as log:
        consumer = subprocess.Popen(
            [sys.executable, "-c", FEED, str(output)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group, as a shell job
        )
    try:
        wait_until(lambda: len(_feed_segments(consumer.pid)) == AHEAD, timeout=90.0)
        wait_until(lambda: len(_noted_workers(output)) == WORKERS, timeout=30.0)
    except BaseException:
        consumer.kill()
        raise
    workers = _noted_workers(output)
    processes = (set(workers) | set(workers.values())) - {consumer.pid}  # and a forkserver
    sent = time.monotonic()
    if stop == "SIGKILL":
        consumer.kill()
    elif stop == "SIGTERM":
        consumer.terminate()
    else:  # a terminal's Ctrl-C reaches the whole process group
        os.killpg(consumer.pid, signal.SIGINT)
    expected = {"SIGKILL": -signal.SIGKILL, "SIGTERM": 143, "Ctrl-C": 130}[stop]
    assert consumer.wait(timeout=60) == expected
    assert time.monotonic() - sent < 10.0
    wait_until(lambda: not any(is_running(pid) for pid in processes), timeout=10.0)
    wait_until(lambda: not _feed_segments(consumer.pid), timeout=5.0)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads Linux's /proc and /dev/shm")
def test_a_killed_extraction_leaves_no_process_and_no_shared_memory(tmp_path):
    # The stage as a user runs it, killed (SIGKILL) once its first video is stored: its
    # forkserver, reading workers and resource tracker are all gone within seconds.
    from tests.shell_jobs import descendants
    from tests.synthetic_videos import write_ucf101_like

    video_root, split_dir = write_ucf101_like(
        tmp_path, ("Alpha", "Beta"), clips_per_class=8, num_frames=24, height=120, width=160
    )
    store = tmp_path / "store"
    argv = ["--video-root", str(video_root), "--split-dir", str(split_dir),
            "--stream", "appearance", "--store", str(store), "--weights", "none",
            "--precision", "float32", "--input-size", "32", "--fc-units", "16",
            "--width-multiplier", "0.25", "--height", "120", "--width", "160",
            "--batch-size", "4", "--workers", "2"]  # fmt: skip
    stage = subprocess.Popen(
        [sys.executable, "-m", "training.extract_features", *argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: any(store.rglob("*.npz")) or stage.poll() is not None, timeout=180)
        processes = descendants(stage.pid)
    finally:
        stage.kill()
    assert stage.wait(timeout=60) == -signal.SIGKILL
    assert len(list(store.rglob("*.npz"))) < 16  # killed mid-run
    assert len(processes) >= 3  # the forkserver and its 2 workers, at least
    wait_until(lambda: not any(is_running(pid) for pid in processes), timeout=10.0)
    wait_until(lambda: not _feed_segments(stage.pid), timeout=5.0)
