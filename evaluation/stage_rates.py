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
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.atomic_files import atomic_write
from runtime.jobs import default_workers


@dataclass(frozen=True)
class Rate:
    """What one unit of a stage took, and where it was measured."""

    seconds: float  # per unit
    bytes: float  # written per unit
    units: float  # the amount it was measured over
    unit: str
    machine: str
    settings: dict = field(default_factory=dict)
    source: str = ""  # the record it was read from (not stored)


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
