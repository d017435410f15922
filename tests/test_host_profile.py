"""The host-thread sampler of `benchmarks.host_profile`: labels, groups, shares."""

import sys
import threading
import time

import pytest

from benchmarks.host_profile import (
    StackSampler,
    _module_of,
    format_summary,
    label,
    thread_group,
)
from temporal_attention.runtime.process_feed import ordered_map


def _own_label(_item):
    return label(sys._getframe())


def test_a_label_names_the_innermost_project_frame_and_the_innermost_frame():
    (where,) = list(ordered_map(_own_label, [0], workers=0))
    project, leaf = where.split(" > ")
    assert project.startswith("runtime/process_feed.py:") and project.endswith(" ordered_map")
    assert leaf == "test_host_profile _own_label"


def test_modules_are_named_from_site_packages_and_the_standard_library():
    assert _module_of("/venv/lib/python3.11/site-packages/jax/_src/array.py") == "jax._src.array"
    assert _module_of("/usr/lib/python3.12/concurrent/futures/thread.py") == (
        "concurrent.futures.thread"
    )


def test_a_pool_s_threads_are_one_group():
    assert thread_group("write-features_3") == "write-features"
    assert thread_group("Thread-3 (_poll)") == "Thread-3 (_poll)"


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_waiting_and_working_threads_are_told_apart():
    release = threading.Event()
    sleepers = [
        threading.Thread(target=release.wait, name=f"sleeper_{index}") for index in range(2)
    ]
    for thread in sleepers:
        thread.start()
    try:
        # Long enough that the sampler's start and stop (a few ms, longer when other work
        # on the machine delays its thread) stay a small share of the spin.
        with StackSampler(interval_s=0.002) as sampler:
            _spin(1.5)
    finally:
        release.set()
        for thread in sleepers:
            thread.join()
    summary = sampler.summary()
    main, sleeping = summary["threads"]["MainThread"], summary["threads"]["sleeper"]
    assert list(summary["threads"])[0] == "MainThread"
    assert sleeping["threads"] == 2 and sleeping["busy_share"] < 0.1
    assert main["busy_share"] > 0.9
    assert "_spin" in main["top"][0]["where"] and main["top"][0]["share"] > 0.5
    assert summary["seconds"] >= 1.5 and summary["compiling_s"] == 0
    text = format_summary(summary)
    assert "`MainThread`" in text and "sleeper" not in text  # idle groups are left out


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s > 0"):
        StackSampler(interval_s=0)
