"""Results of a function over many items, computed ahead in worker processes, in order.

The stages that feed a GPU (fine-tuning, extraction) spend most of their host time
decoding JPEGs, cropping and stacking: work that holds Python's lock in parts, so threads
of one process do not scale. `ordered_map` runs that work in a pool of worker processes
and yields the results in the items' order, a bounded number ahead of the consumer:

    for images, labels in ordered_map(draw_batch, iterations, workers=8):
        model.train_on_batch(images, labels)

- Workers start clean (`forkserver`, else `spawn`): they never inherit a running
  JAX, TensorFlow or CUDA context, and import only the module of `function`, which must
  be importable by name (a module-level function; `functools.partial` of one is fine)
  and should be free of Keras (the feeding functions live in `data/`).
- `function` is pickled once, into each worker as it starts, not with every item: a
  fine-tuning's `functools.partial(draw_batch, batches)` holds the whole clip list
  (9,537 UCF101 videos: 0.54 MB, 141 ms to pickle and 82 ms to unpickle on this
  project's CPU), which the consumer would otherwise pickle for every batch.
- Arrays of 1 MiB or more come back through shared memory (written once by the worker,
  read in place by the consumer: no pickling or copying of the pixels); the rest by
  pickling.
- `workers=0` computes each result here when it is asked for: the same results, in
  the same order, for tests and small jobs.
- An exception in a worker is raised here, with the worker's traceback as its cause,
  when its result is reached; the pool is shut down when the generator is closed,
  garbage-collected or interrupted (pending items are cancelled). While the pool runs,
  SIGTERM stops this process as Ctrl-C does (`runtime.stopping.sigterm_as_interrupt`).
- Nothing outlives the consumer, however it ends (SIGKILL included): each worker exits
  soon after it (`runtime.stopping.exit_with_parent`), and a shared memory segment
  (named `psm_<consumer pid>_<worker pid>_<n>`) belongs to the worker that made it until
  the consumer takes it (opens it and removes its name at once), so a worker that exits,
  for whatever reason, removes those of its segments not yet taken.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.util import Finalize
from typing import Any

import numpy as np

from temporal_attention.runtime.stopping import exit_with_parent, sigterm_as_interrupt

try:
    import _posixshmem  # the POSIX calls behind multiprocessing.shared_memory
except ImportError:  # Windows: a segment goes with its last handle, no name to remove
    _posixshmem = None

# Arrays at least this large travel through shared memory.
SHARED_MEMORY_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class _SharedArray:
    """A worker's array left in shared memory `name`, for the consumer to copy and free."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def _map_arrays(convert: Callable[[Any], Any], value: Any) -> Any:
    """`value` with `convert` applied to each leaf inside its tuples, lists and dicts."""
    if isinstance(value, tuple):
        return tuple(_map_arrays(convert, item) for item in value)
    if isinstance(value, list):
        return [_map_arrays(convert, item) for item in value]
    if isinstance(value, dict):
        return {key: _map_arrays(convert, item) for key, item in value.items()}
    return convert(value)


def _share(value: Any) -> Any:
    if not (isinstance(value, np.ndarray) and value.nbytes >= SHARED_MEMORY_BYTES):
        return value
    block = _new_segment(value.nbytes)
    np.ndarray(value.shape, value.dtype, buffer=block.buf)[...] = value
    shared = _SharedArray(block.name, value.shape, value.dtype.str)
    block.close()
    return shared


def _unshare(value: Any) -> Any:
    """The array in shared memory, without a copy: its name is removed at once (so nothing
    is left behind whatever happens next), its memory stays mapped until the array (and
    every view of it) is freed. FileNotFoundError: its worker exited first and removed it."""
    if not isinstance(value, _SharedArray):
        return value
    block = shared_memory.SharedMemory(name=value.name)
    try:
        block.unlink()
    except FileNotFoundError:  # its worker, exiting, removed the name: the memory is ours
        resource_tracker.unregister(block._name, "shared_memory")
    array = np.ndarray(value.shape, np.dtype(value.dtype), buffer=block.buf)
    weakref.finalize(array, block.close)
    return array


def _to_shared(value: Any) -> Any:
    """`value` with its large arrays (also inside tuples, lists, dicts) moved to shared memory."""
    return _map_arrays(_share, value)


def _from_shared(value: Any) -> Any:
    """The inverse of `_to_shared` in the consumer: each array read in place, its shared
    memory freed with the array."""
    return _map_arrays(_unshare, value)


def _discard_shared(value: Any) -> None:
    """Frees the shared memory of a result that will not be read."""
    try:
        _from_shared(value)
    except (FileNotFoundError, OSError):
        pass


# === Inside a worker process ===

# The function of the pool this worker process belongs to, the process it works for, and
# the names of the segments it made that the consumer may not have taken yet (set by
# `_start_worker`, noted by `_new_segment`).
_worker_function: Callable[[Any], Any] | None = None
_consumer_pid = 0
_made_segments: list[str] = []
_segment_numbers = itertools.count()


def _call(item: Any) -> Any:
    return _to_shared(_worker_function(item))


def _new_segment(size: int) -> shared_memory.SharedMemory:
    """A new segment of `size` bytes, noted as this worker's before it exists (a worker
    stopped at any point removes it), under a name no other process makes."""
    _forget_taken_segments()
    while True:
        name = f"psm_{_consumer_pid}_{os.getpid()}_{next(_segment_numbers):x}"
        _made_segments.append(name)
        try:
            block = shared_memory.SharedMemory(name=name, create=True, size=size)
        except FileExistsError:  # left by an earlier process of the same pids: not ours
            _made_segments.remove(name)
            continue
        # Its owner removes it (this worker until the consumer takes it), never the tracker.
        resource_tracker.unregister(block._name, "shared_memory")
        return block


def _segment_exists(name: str) -> bool:
    try:
        os.close(_posixshmem.shm_open(f"/{name}", os.O_RDONLY))
    except FileNotFoundError:
        return False
    return True


def _forget_taken_segments() -> None:
    """Drops from the notes the segments the consumer has taken (their names are gone)."""
    if _posixshmem is not None:
        _made_segments[:] = [name for name in _made_segments if _segment_exists(name)]


def _remove_untaken_segments() -> None:
    """Removes the segments this worker made that the consumer has not taken: results it
    will never read (it is gone, or stopping). Safe to call twice, from any thread."""
    if _posixshmem is None:
        return
    for name in list(_made_segments):
        try:
            _posixshmem.shm_unlink(f"/{name}")
        except FileNotFoundError:
            pass  # taken by the consumer


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM (the consumer's end, or its pool stopping): exit, leaving no segment."""
    _remove_untaken_segments()
    os._exit(128 + signum)


def _start_worker(function: Callable[[Any], Any], consumer_pid: int) -> None:
    global _worker_function, _consumer_pid
    _worker_function = function  # unpickled once per worker, not once per item
    _consumer_pid = consumer_pid
    # Ctrl-C goes to the consumer, which shuts the pool down; SIGTERM ends the worker
    # (its segments not yet taken removed), as does the consumer's end, however it ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    Finalize(None, _remove_untaken_segments, exitpriority=0)  # a normal exit, pool shut down
    exit_with_parent(consumer_pid, before_exit=_remove_untaken_segments)
    try:  # one OpenCV thread a worker
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a requirement
        pass


# === In the consumer ===


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Not the default ["__main__"]: a stage's main module imports Keras.
        context.set_forkserver_preload(["numpy", "cv2"])
        return context
    return multiprocessing.get_context("spawn")


def ordered_map(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int,
    ahead: int | None = None,
) -> Iterator[Any]:
    """`function(item)` for each of `items`, in order, computed in `workers` processes.

    Args:
        function: A module-level function (or a `functools.partial` of one) of one item;
            its arguments and results must pickle.
        items: Any iterable; read lazily, `ahead` items before their results are used.
        workers: Worker processes; 0 computes each result in this process on demand.
        ahead: Items in flight at most (submitted, not yet yielded). Default
            `default_ahead(workers)`, two a worker; at least 1. Bounds the memory of
            results waiting.

    Yields:
        `function(item)` for each item, in the order of `items`.

    Raises:
        ValueError: `workers < 0` or `ahead < 1`.
        RuntimeError: A worker process died (killed, out of memory): names the item.
    """
    if workers < 0:
        raise ValueError(f"Expected workers >= 0. Received: workers={workers}")
    ahead = default_ahead(workers) if ahead is None else ahead
    if ahead < 1 and workers:
        raise ValueError(f"Expected ahead >= 1. Received: ahead={ahead}")
    if workers == 0:
        for item in items:
            yield function(item)
        return
    yield from _pooled(function, iter(items), workers, ahead)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While workers start: a spawned or forkserver child imports the parent's main
    module (`python -m training.extract_features` would import Keras and its backend in
    every worker) unless the main module names neither a spec nor a file."""
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__spec__", "__file__") if hasattr(main, name)}
    try:
        if main is not None:
            main.__spec__ = None
            if "__file__" in saved:
                del main.__file__
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _submit(pool: ProcessPoolExecutor, item) -> Future:
    """`item`'s future; on a pool broken by a worker's death, one that holds that error,
    raised naming the item when its turn comes (results already computed come first)."""
    try:
        with _main_module_hidden():  # a submit may start a worker
            return pool.submit(_call, item)
    except BrokenProcessPool as error:
        failed = Future()
        failed.set_exception(error)
        return failed


def _pooled(function, items: Iterator, workers: int, ahead: int) -> Iterator[Any]:
    with sigterm_as_interrupt():  # SIGTERM stops the consumer as Ctrl-C: pool shut down
        yield from _pooled_until_stopped(function, items, workers, ahead)


def _pooled_until_stopped(function, items: Iterator, workers: int, ahead: int) -> Iterator[Any]:
    pool = ProcessPoolExecutor(
        workers,
        mp_context=_context(),
        initializer=_start_worker,
        initargs=(function, os.getpid()),
    )
    pending: collections.deque = collections.deque()  # (item, future), in order
    try:
        for item in items:
            pending.append((item, _submit(pool, item)))
            if len(pending) >= ahead:
                break
        while pending:
            item, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as error:
                raise RuntimeError(
                    f"A worker process died while computing {function!r} of {item!r} "
                    "(killed, or out of memory: use fewer workers or a smaller ahead)."
                ) from error
            for next_item in items:  # keep `ahead` in flight
                pending.append((next_item, _submit(pool, next_item)))
                break
            try:
                taken = _from_shared(result)
            except FileNotFoundError as error:
                raise RuntimeError(
                    f"The result of {function!r} of {item!r} was lost: the worker process "
                    "that computed it was stopped before it was read (killed from outside, "
                    "or another worker died and the pool stopped)."
                ) from error
            yield taken
    finally:
        for _, future in pending:
            future.cancel()
        _shut_down(pool)
        for _, future in pending:  # results computed but never read: free their memory
            if future.done() and not future.cancelled() and future.exception() is None:
                _discard_shared(future.result())


def _shut_down(pool: ProcessPoolExecutor) -> None:
    """`pool.shutdown(wait=True, cancel_futures=True)` that also returns when a worker
    died (killed from outside, out of memory). An idle worker waits for its next item
    holding the lock of the pool's call queue; one that dies there leaves that lock
    taken, so the other workers never get the pool's stop message, and a shutdown that
    waits for them waits forever. `concurrent.futures` stops them itself only where it
    sees the death before the shutdown (a race: a test that stops a worker hung 1 time
    in 10). So while the shutdown waits, a watcher stops the other workers once one has
    died (SIGTERM: each removes the results it has not handed over, `_exit_on_sigterm`),
    as the pool does when it sees the death."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown
    done = threading.Event()
    watcher = threading.Thread(
        target=_stop_all_once_one_dies, args=(processes, done), name="feed-shutdown", daemon=True
    )
    watcher.start()
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    finally:
        done.set()
        watcher.join()


def _stop_all_once_one_dies(processes: list, done: threading.Event) -> None:
    alive = processes
    while alive and not done.is_set():
        if any(process.exitcode not in (None, 0) for process in processes):
            for process in alive:
                process.terminate()
            return
        multiprocessing.connection.wait([process.sentinel for process in alive], timeout=0.1)
        alive = [process for process in alive if process.is_alive()]


def default_ahead(workers: int) -> int:
    """Items in flight by default for `workers` processes: two each."""
    return 2 * workers
