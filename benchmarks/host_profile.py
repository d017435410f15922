"""Where a stage's host threads spend their time: their Python stacks, sampled.

A GPU stage that runs below what its network does alone is held up somewhere on the
host: waiting for its feed, copying a batch, waiting for the device, writing. A
`StackSampler` looks at every thread's Python stack every `interval_s` while a block
runs and counts, per thread, where it was:

    with StackSampler() as sampler:
        extract_features.run(config)
    sampler.summary()  # {"MainThread": {"samples": 812, "top": [...]}, "predict": ...}

Each sample is labelled by the innermost frame of this project's code (`file:line
function`) and the innermost frame of all (`module function`, e.g. `threading wait`
for a thread that waits on a lock, `jax._src.array __array__` for one that waits for a
device result): the time of C code shows at the Python line that called it, whether or
not it holds the GIL. Threads of one pool (`predict_0`, `write-features_0..3`) are
counted together. The sampler's own cost is one stack walk per thread per sample,
holding the GIL meanwhile (docs/speed.md says what that cost measured).
`benchmarks.pipeline_benchmark --profile-ms` samples each stage it times.
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import time
from pathlib import Path
from types import FrameType

# Innermost frames of a thread that waits for work rather than doing or awaiting it.
IDLE_LEAVES = frozenset(
    {
        "threading wait",
        "threading _wait_for_tstate_lock",
        "selectors select",
        "concurrent.futures.thread _worker",
        "queue get",
    }
)
# Samples taken while a thread is in a module starting with this are left out:
# compilation, which the stages' rates leave out too (their first iteration or video).
COMPILING_MODULE = "jax._src.compiler"

# This project's code: frames of files under these folders label a sample.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FOLDERS = ("benchmarks", "data", "evaluation", "models", "runtime", "training")


def _module_of(path: str) -> str:
    """`.../site-packages/jax/_src/array.py` -> `jax._src.array`; project files relative."""
    parts = Path(path).with_suffix("").parts
    for anchor in ("site-packages", "dist-packages", "lib-dynload"):
        if anchor in parts:
            return ".".join(parts[parts.index(anchor) + 1 :])
    for index in range(len(parts) - 1, -1, -1):  # the standard library: .../python3.12/...
        if re.fullmatch(r"python3\.\d+", parts[index]):
            return ".".join(parts[index + 1 :])
    for folder in PROJECT_FOLDERS:
        if folder in parts:
            return ".".join(parts[len(parts) - parts[::-1].index(folder) - 1 :])
    return parts[-1] if parts else path


def _project_file(path: str) -> str | None:
    try:
        relative = Path(path).resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return None
    if relative.parts[:1] and relative.parts[0] in PROJECT_FOLDERS:
        return None if relative.name == "host_profile.py" else relative.as_posix()
    return None


def leaf_of(frame: FrameType) -> str:
    """The innermost frame as `module function`."""
    return f"{_module_of(frame.f_code.co_filename)} {frame.f_code.co_name}"


def label(frame: FrameType) -> str:
    """`project file:line function > innermost module function` for a thread's stack."""
    leaf = leaf_of(frame)
    inner: FrameType | None = frame
    while inner is not None:
        relative = _project_file(inner.f_code.co_filename)
        if relative is not None:
            where = f"{relative}:{inner.f_lineno} {inner.f_code.co_name}"
            return where if inner is frame else f"{where} > {leaf}"
        inner = inner.f_back
    return f"(outside the project) > {leaf}"


def thread_group(name: str) -> str:
    """A pool's threads as one group: `predict_0` -> `predict`, `Thread-3 (f)` kept."""
    return re.sub(r"_\d+$", "", name)


class StackSampler:
    """Counts, per thread group, where its threads' Python stacks are, every `interval_s`.

    Args:
        interval_s: Seconds between samples (default 0.005).
    """

    def __init__(self, interval_s: float = 0.005):
        if interval_s <= 0:
            raise ValueError(f"Expected interval_s > 0. Received: interval_s={interval_s}")
        self.interval_s = interval_s
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.threads: dict[str, set[int]] = collections.defaultdict(set)
        self.seconds = 0.0
        self.compiling_samples = 0  # left out: a thread was compiling
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        own = threading.get_ident()
        while not self._stop.wait(self.interval_s):
            names = {thread.ident: thread.name for thread in threading.enumerate()}
            frames = sys._current_frames()
            if any(leaf_of(frame).startswith(COMPILING_MODULE) for frame in frames.values()):
                self.compiling_samples += 1
                continue
            for ident, frame in frames.items():
                if ident == own or ident not in names:
                    continue
                group = thread_group(names[ident])
                self.counts[group][label(frame)] += 1
                self.threads[group].add(ident)

    def __enter__(self) -> StackSampler:
        self._began = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, name="stack-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.seconds = time.perf_counter() - self._began

    def summary(self, top: int = 6) -> dict:
        """Per thread group (the main thread first, then by samples): its samples,
        threads, and its `top` places with their share of the group's samples (a pool's
        share is per thread, on average)."""
        result = {}
        idle = {place for counter in self.counts.values() for place in counter}
        idle = {place for place in idle if place.rsplit("> ", 1)[-1] in IDLE_LEAVES}
        order = sorted(
            self.counts.items(), key=lambda item: (item[0] != "MainThread", -item[1].total())
        )
        for group, counter in order:
            total = counter.total()
            result[group] = {
                "samples": total,
                "threads": len(self.threads[group]),
                # Share of its samples not waiting for work (`IDLE_LEAVES`).
                "busy_share": 1 - sum(counter[place] for place in idle) / total,
                "top": [
                    {"where": where, "share": count / total}
                    for where, count in counter.most_common(top)
                ],
            }
        return {
            "interval_s": self.interval_s,
            "seconds": self.seconds,
            "compiling_s": self.compiling_samples * self.interval_s,  # about; left out
            "threads": result,
        }


def format_summary(summary: dict, groups: int = 4, places: int = 4, busy: float = 0.05) -> str:
    """Markdown lines: the main thread, then the busiest other thread groups (at least
    `busy` of their samples not waiting for work), each with its top places."""
    entries = summary["threads"]
    shown = [name for name in entries if name == "MainThread"]
    shown += sorted(
        (name for name in entries if name != "MainThread" and entries[name]["busy_share"] >= busy),
        key=lambda name: -entries[name]["busy_share"],
    )
    lines = []
    for group in shown[:groups]:
        entry = entries[group]
        lines.append(
            f"- `{group}` ({entry['threads']} thread(s), {entry['samples']} samples, "
            f"{entry['busy_share']:.0%} not waiting for work):"
        )
        for place in entry["top"][:places]:
            lines.append(f"  - {place['share']:.0%} `{place['where']}`")
    return "\n".join(lines)
