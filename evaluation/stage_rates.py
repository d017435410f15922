"""How long and how much disk an experiment's stages take, from what they took before.

Each stage of `evaluation.experiment` counts its work in a unit of its own (frames for
the frame, flow and feature stages, iterations for fine-tuning, video-epochs for the
trainings, the stage itself for the small ones). Once a stage has run, the runner
records what one unit took, in seconds and in bytes written, beside the machine and the
settings that the time depends on, in `<work_dir>/rates.json`. `--plan` multiplies the
work left by a rate:

1. this work folder's own record (measured on the machine that ran it);
2. else the records given with `--rates` (another run's `rates.json`, such as the one
   committed with the subset's results), in the order given;
3. else, for the frame store only, a short measurement now (a few frames of a few
   videos decoded, resized and JPEG-encoded in this process, the time divided by the
   stage's processes).

A rate measured with other settings (another backbone, flow method, size) or on
another machine is shown as a guide only, and the plan says so; a stage with no rate
says "no rate yet". Early stopping ends trainings before their last epoch, so their
estimate is an upper bound.

A stage pays a one-off start before its first unit is done (building and compiling its
networks, the flow solver's self-check): on a short run that start is most of the time
(the flow stage on 156 clips of an H100: about 77 s of start, then 64 s of flow), and a
rate of the stage's seconds over its units would put it into every unit of a long run.
While a stage works, the runner therefore reads how much it has done every few seconds
(`Progress`); the rate keeps the start apart (`start`, seconds) from the time a unit
takes after it (`steady_rate`), and a plan is the start plus the units left times that
time. Where no progress shows before the end (units too coarse, or a stage of seconds),
the start is 0 and the rate is the stage's seconds over its units, as before.

Disk: frames, flow and features grow with their units; fine-tuning and the trainings
write a few files a network or run (checkpoints, models), whatever its length, so those
stages record bytes per job (`bytes_per = "job"`) and the plan multiplies the jobs left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.jobs import default_workers


@dataclass(frozen=True)
class Rate:
    """What one unit of a stage took, and where it was measured."""

    seconds: float  # per unit, after the start
    bytes: float  # written per unit (per job where bytes_per is "job")
    units: float  # the amount it was measured over
    unit: str
    machine: str
    settings: dict = field(default_factory=dict)
    start: float = 0.0  # one-off seconds before the first unit is done
    bytes_per: str = "unit"  # or "job": a network or a run
    source: str = ""  # the record it was read from (not stored)

    def estimate(self, left: float, jobs: float | None = None) -> tuple[float, float]:
        """(seconds, bytes) of `left` units in `jobs` jobs."""
        per_job = self.bytes_per == "job" and jobs is not None
        return self.start + left * self.seconds, self.bytes * (jobs if per_job else left)


# How often the runner reads a working stage's progress, in seconds, at most.
PROGRESS_EVERY = 5.0
# A reading waits at least this many times as long as the last one took: reading a large
# store's state (a stat of every image of a complete video, 2.4 million for UCF101's
# frame store) then costs the stage's process at most about 5 % of a core.
PROGRESS_COST_FACTOR = 20.0


class Progress:
    """Reads `done()` (the units done so far) every `every` seconds, or less often where a
    reading is slow (`PROGRESS_COST_FACTOR`), in a thread while a stage works: `with
    Progress(done) as progress: ...`; then `progress.samples` is [(seconds since the
    start, units done since the start)], the first at 0. `first`: the units done at the
    start where the caller knows them (else read on entering)."""

    def __init__(
        self, done: Callable[[], float], every: float | None = None, first: float | None = None
    ):
        self.done, self.every = done, PROGRESS_EVERY if every is None else every
        self.samples: list[tuple[float, float]] = []
        self._first_known = first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> float | None:
        try:
            return float(self.done())
        except Exception:  # a file replaced while read: the next reading counts
            return None

    def _sample(self):
        wait = self.every
        while not self._stop.wait(wait):
            began = time.perf_counter()
            value = self._read()
            wait = max(self.every, PROGRESS_COST_FACTOR * (time.perf_counter() - began))
            if value is not None:  # the state as it was when the reading began
                self.samples.append((began - self._began, value - self._first))

    def __enter__(self):
        self._began = time.perf_counter()
        self._first = self._first_known
        if self._first is None:
            self._first = self._read() or 0.0
        self.samples.append((0.0, 0.0))
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def total(self) -> float:
        """The units done since the start, read now (0 if it cannot be read)."""
        value = self._read()
        return 0.0 if value is None else value - self._first


def steady_rate(samples: Sequence[tuple[float, float]], took: float, worked: float):
    """(start, seconds a unit after it) of a stage that took `took` seconds for
    `worked` units, from its progress `samples` (`Progress`). The start is the last
    reading before the first progress; its units are all the work. Without progress
    before the end, or when the first progress is over a tenth of the work (units too
    coarse to tell a start from work done in parallel): (0, took / worked)."""
    for (before, _), (_, value) in zip(samples, samples[1:], strict=False):
        if value > 0:
            if value > 0.1 * worked:
                break
            return before, (took - before) / worked
    return 0.0, took / worked


def machine() -> str:
    """This machine in words: its cores and its GPU's name (from nvidia-smi), if any."""
    words = f"{default_workers()} cores"
    if shutil.which("nvidia-smi"):
        try:
            names = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.split("\n")  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            names = []
        names = [name.strip() for name in names if name.strip()]
        if names:
            words += ", " + (f"{len(names)} x {names[0]}" if len(names) > 1 else names[0])
    return words


def read_rates(path: str | Path) -> dict[str, Rate]:
    """The rates recorded in `path` (none if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text())
        return {key: Rate(**value, source=str(path)) for key, value in records.items()}
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{path} is not a rates record of evaluation.experiment: {error}"
        ) from None


def record_rate(path: str | Path, key: str, rate: Rate) -> None:
    """Adds or replaces the rate of stage `key` in the record at `path`."""
    path = Path(path)
    records = {name: _stored(value) for name, value in read_rates(path).items()}
    records[key] = _stored(rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as written:
        written.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")


def _stored(rate: Rate) -> dict:
    values = asdict(rate)
    del values["source"]
    return values


def folder_bytes(paths: Sequence[Path]) -> int:
    """Bytes of every file under `paths` (missing paths count 0)."""
    total = 0
    for root in paths:
        if root.is_file():
            total += root.stat().st_size
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except OSError:
                    pass  # removed meanwhile (a temporary file)
    return total


def choose(key: str, settings: dict, here: str, known: Sequence[dict[str, Rate]]):
    """The rate for stage `key`: the first of `known` measured with the same settings
    on this machine, else the first with the same settings, else the first at all;
    with a note of what differs ("" when nothing does). None when none is known."""
    rates = [records[key] for records in known if key in records]
    same = [rate for rate in rates if rate.settings == settings]
    ranked = [rate for rate in same if rate.machine == here] + same + rates
    if not ranked:
        return None, ""
    rate, differs = ranked[0], []
    if rate.settings != settings:
        names = sorted(
            name
            for name in set(settings) | set(rate.settings)
            if settings.get(name) != rate.settings.get(name)
        )
        differs.append("with other " + ", ".join(names))
    if rate.machine != here:
        differs.append(f"on {rate.machine}")
    return rate, ("a guide only: measured " + " and ".join(differs)) if differs else ""


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def size(num_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes:.0f} B"
