"""How a stage's processes stop together: its workers end with it, and SIGTERM stops it
as Ctrl-C does.

- `exit_with_parent(pid)`, called in a worker process as it starts: the worker gets
  SIGTERM soon after the process it works for dies, however that dies (SIGKILL
  included), and is ended a little later if its main thread does not handle it. Both
  pools use it: `runtime.batch_jobs` (the flow stage) and `runtime.process_feed`
  (extraction, fine-tuning), whose workers are children of a forkserver, not of the
  process they work for.
- `sigterm_as_interrupt()`, around the work of a main process: SIGTERM raises
  `Terminated`, a `KeyboardInterrupt`, so the run unwinds as on Ctrl-C (pools shut
  down, no file left half written); `runtime.jobs.exit_status` then returns 143.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

_PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when its parent dies
_POLL_SECONDS = 0.2  # where no pidfd can wait for a process's end


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while `sigterm_as_interrupt` was in force: the run stops as on Ctrl-C."""


# === In a worker process ===


def exit_with_parent(
    parent_pid: int,
    before_exit: Callable[[], None] | None = None,
    grace_seconds: float = 2.0,
) -> None:
    """Makes this worker process exit soon after `parent_pid`, the process it works for, dies.

    `parent_pid` is this process's parent or a process further up (a forkserver's worker
    works for the process that started the forkserver). On Linux the kernel sends SIGTERM
    when this process's own parent dies (`prctl(PR_SET_PDEATHSIG)`); everywhere, a thread
    waits for `parent_pid` to end (a pidfd on Linux, else a check every 0.2 s) and sends
    the same SIGTERM, which the worker's own handler turns into its exit. If the process
    is still there `grace_seconds` later (its main thread stuck in native code), the
    thread calls `before_exit` (a worker's clean-up; it must be safe to call twice) and
    ends it with `os._exit`.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the thread below still watches
    threading.Thread(
        target=_exit_after,
        args=(parent_pid, before_exit, grace_seconds),
        name="exit-with-parent",
        daemon=True,
    ).start()


def _exit_after(parent_pid: int, before_exit, grace_seconds: float) -> None:
    _wait_for_end(parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_seconds)
    if before_exit is not None:
        before_exit()
    os._exit(128 + signal.SIGTERM)


def _wait_for_end(pid: int) -> None:
    """Returns once process `pid` has ended (a zombie has ended), or at once if it has."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd here (not Linux, or a kernel before 5.3)
        _poll_for_end(pid)
        return
    try:
        select.select([descriptor], [], [])  # readable once the process has ended
    finally:
        os.close(descriptor)


def _poll_for_end(pid: int) -> None:
    if os.getppid() == pid:  # a parent's end shows as a new parent, zombie or not
        while os.getppid() == pid:
            time.sleep(_POLL_SECONDS)
        return
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # it exists
        time.sleep(_POLL_SECONDS)


# === In the main process ===

_sigterm_users = 0  # `sigterm_as_interrupt` blocks in force, nested or overlapping


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM raises `Terminated` (a `KeyboardInterrupt`) in the main
    thread, so the work unwinds as on Ctrl-C instead of the process vanishing with its
    pools running. Nothing changes when entered outside the main thread or where the
    process already handles SIGTERM itself. Usable across a generator's `yield`s."""
    global _sigterm_users
    in_force = threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGTERM
    ) in (signal.SIG_DFL, _raise_terminated)
    if in_force:
        signal.signal(signal.SIGTERM, _raise_terminated)
        _sigterm_users += 1
    try:
        yield
    finally:
        if in_force:
            _sigterm_users -= 1
            main_thread = threading.current_thread() is threading.main_thread()
            if _sigterm_users == 0 and main_thread:  # (a generator may end in another)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
