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
  garbage-collected or interrupted (pending items are cancelled).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import signal
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

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
    block = shared_memory.SharedMemory(create=True, size=value.nbytes)
    np.ndarray(value.shape, value.dtype, buffer=block.buf)[...] = value
    # The consumer frees it; the worker's tracker must not (nor warn at exit).
    resource_tracker.unregister(block._name, "shared_memory")
    shared = _SharedArray(block.name, value.shape, value.dtype.str)
    block.close()
    return shared


def _unshare(value: Any) -> Any:
    """The array in shared memory, without a copy: its name is removed at once (so nothing
    is left behind whatever happens next), its memory stays mapped until the array (and
    every view of it) is freed."""
    if not isinstance(value, _SharedArray):
        return value
    block = shared_memory.SharedMemory(name=value.name)
    block.unlink()
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


# The function of the pool this worker process belongs to (set by `_start_worker`).
_worker_function: Callable[[Any], Any] | None = None


def _call(item: Any) -> Any:
    return _to_shared(_worker_function(item))


def _start_worker(function: Callable[[Any], Any]) -> None:
    global _worker_function
    _worker_function = function  # unpickled once per worker, not once per item
    # Ctrl-C goes to the consumer, which shuts the pool down; one OpenCV thread a worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a requirement
        pass


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


def _submit(pool: ProcessPoolExecutor, item):
    with _main_module_hidden():  # a submit may start a worker
        return pool.submit(_call, item)


def _pooled(function, items: Iterator, workers: int, ahead: int) -> Iterator[Any]:
    pool = ProcessPoolExecutor(
        workers, mp_context=_context(), initializer=_start_worker, initargs=(function,)
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
            yield _from_shared(result)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for _, future in pending:  # results computed but never read: free their memory
            if future.done() and not future.cancelled() and future.exception() is None:
                _discard_shared(future.result())


def default_ahead(workers: int) -> int:
    """Items in flight by default for `workers` processes: two each."""
    return 2 * workers
