"""Where a training step of the recogniser spends its GPU time: a JAX profile, summarised.

    # on the GPU machine (JAX backend): a trace of `--steps` model.fit steps after warm-up
    KERAS_BACKEND=jax python -m benchmarks.fit_profile --trace runs/fit_profile \
        --batch-size 256 --precision float32
    # anywhere TensorFlow is installed (it reads the trace's XPlane protobuf)
    python -m benchmarks.fit_profile --summarize runs/fit_profile --output profile.json

The trace is `jax.profiler`'s (`<dir>/plugins/profile/<run>/<host>.xplane.pb`); the
summary reads its GPU planes: every kernel and copy on the device's streams, and gives,
per training step, the device time by kind (matrix products, fused elementwise
kernels, reductions, copies), the number of kernels and their median length, the share
of the step's wall span in which the GPU computes at all (busy share), and the kernels
that take the most time. A step made of thousands of kernels of a few microseconds,
with the GPU idle between them, is bound by launches and the loop's control, not by
arithmetic: the numbers that say which, for `docs/speed.md`.
"""

from __future__ import annotations

import glob
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.fit_benchmark import FitCase, build_keras_case, fit_data, random_data
from temporal_attention.runtime.config_flags import exit_on_error, parse_config

# Kernel kinds, by name (the first that matches).
KINDS = (
    ("matrix product", re.compile(r"gemm|cublas|cutlass|xmma|nvjet|matmul|\bdot", re.I)),
    ("copy / memset", re.compile(r"memcpy|memset|copy|transpose", re.I)),
    ("reduction", re.compile(r"reduce|reduction", re.I)),
    ("fused elementwise", re.compile(r"fusion|loop_|input_|wrapped_|elementwise", re.I)),
)


@dataclass(frozen=True)
class FitProfileConfig:
    """One action, a trace (`--trace`) or its summary (`--summarize`), and the traced case."""

    trace: Path | None = field(
        default=None, metadata={"help": "write a jax.profiler trace here (JAX)"}
    )
    summarize: Path | None = field(
        default=None, metadata={"help": "summarise the trace in this folder"}
    )
    batch_size: int = field(default=256, metadata={"help": "samples a batch"})
    precision: str = field(
        default="float32",
        metadata={"choices": ("float32", "mixed_bfloat16"), "help": "Keras dtype policy"},
    )
    model: str = field(
        default="attention",
        metadata={"choices": ("attention", "baseline"), "help": "with or without attention"},
    )
    steps: int = field(default=10, metadata={"help": "model.fit steps traced"})
    feed: str = field(
        default="device",
        metadata={
            "choices": ("device", "host"),
            "help": "device: batches on it; host: NumPy arrays",
        },
    )
    tiny: bool = field(default=False, metadata={"help": "CI sizes"})
    output: Path | None = field(default=None, metadata={"help": "write the summary here (JSON)"})

    def __post_init__(self):
        if (self.trace is None) == (self.summarize is None):
            raise ValueError(
                "Expected one of --trace and --summarize. "
                f"Received: trace={self.trace}, summarize={self.summarize}"
            )


def kind_of(name: str) -> str:
    """The kind of a kernel or copy, from its name (`KINDS`; else "other")."""
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


# === Trace ===


def trace(case: FitCase, directory: Path, warmup_epochs: int = 2) -> dict:
    """Fits `case` for `warmup_epochs` (compiling), then traces one epoch of `case.steps`."""
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError("Tracing needs KERAS_BACKEND=jax (jax.profiler).")
    model = build_keras_case(case)
    features, labels = random_data(case)
    data = fit_data(case, features, labels)
    model.fit(**data, epochs=warmup_epochs, verbose=0)
    directory.mkdir(parents=True, exist_ok=True)
    jax.profiler.start_trace(str(directory))
    began = time.perf_counter()
    model.fit(**data, epochs=1, verbose=0)
    seconds = time.perf_counter() - began
    jax.profiler.stop_trace()
    info = {"case": case.__dict__, "traced_seconds": seconds, "steps": case.steps}
    (directory / "case.json").write_text(json.dumps(info, indent=1))
    return info


# === Summary ===


def _xplane_files(directory: Path) -> list[Path]:
    files = sorted(glob.glob(str(directory / "plugins/profile/*/*.xplane.pb")))
    if not files:
        raise FileNotFoundError(
            f"No <run>/<host>.xplane.pb under {directory}/plugins/profile: give the folder "
            "`--trace` wrote."
        )
    return [Path(file) for file in files]


def device_events(xplane_path: Path) -> list[tuple[str, float, float]]:
    """`(name, start_us, duration_us)` of every kernel and copy on the GPU planes' streams."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(xplane_path).read_bytes())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/device:GPU"):
            continue
        names = {key: value.name for key, value in plane.event_metadata.items()}
        lines = [line for line in plane.lines if line.name.startswith("Stream")]
        for line in lines or plane.lines:
            base_us = line.timestamp_ns / 1e3
            for event in line.events:
                events.append(
                    (
                        names.get(event.metadata_id, "?"),
                        base_us + event.offset_ps / 1e6,
                        event.duration_ps / 1e6,
                    )
                )
    return events


def _busy_us(events: list[tuple[str, float, float]]) -> float:
    """The length of the union of the events' intervals (streams overlap)."""
    busy, end = 0.0, -np.inf
    for _, start, duration in sorted(events, key=lambda event: event[1]):
        stop = start + duration
        if start >= end:
            busy += duration
        elif stop > end:
            busy += stop - end
        end = max(end, stop)
    return busy


def summarize_events(events: list[tuple[str, float, float]], steps: int) -> dict:
    """Per-step device time by kind, kernel counts, busy share and the top kernels."""
    if not events:
        raise ValueError(
            "The trace has no GPU events: was it taken on a GPU, with the JAX backend?"
        )
    steps = max(steps, 1)
    starts = np.array([start for _, start, _ in events])
    stops = np.array([start + duration for _, start, duration in events])
    durations = np.array([duration for _, _, duration in events])
    span = float(stops.max() - starts.min())
    by_kind: dict[str, float] = {}
    by_name: dict[str, list[float]] = {}
    for name, _, duration in events:
        kind = kind_of(name)
        by_kind[kind] = by_kind.get(kind, 0.0) + duration
        by_name.setdefault(name, []).append(duration)
    total = float(durations.sum())
    busy = _busy_us(events)
    top = sorted(by_name.items(), key=lambda item: -sum(item[1]))[:15]
    return {
        "steps": steps,
        "events": len(events),
        "events_per_step": len(events) / steps,
        "span_ms_per_step": span / 1e3 / steps,
        "device_ms_per_step": total / 1e3 / steps,
        "busy_ms_per_step": busy / 1e3 / steps,
        "busy_share": busy / span if span else 1.0,
        "median_event_us": float(np.median(durations)),
        "events_under_10us_share": float(np.mean(durations < 10.0)),
        "by_kind_ms_per_step": {
            kind: value / 1e3 / steps for kind, value in sorted(by_kind.items())
        },
        "by_kind_share": {kind: value / total for kind, value in sorted(by_kind.items())},
        "top": [
            {
                "name": name[:120],
                "kind": kind_of(name),
                "count_per_step": len(values) / steps,
                "ms_per_step": sum(values) / 1e3 / steps,
                "mean_us": float(np.mean(values)),
            }
            for name, values in top
        ],
    }


def summarize(directory: Path) -> dict:
    """`summarize_events` of the trace `trace` wrote in `directory`."""
    directory = Path(directory)
    info_path = directory / "case.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {"steps": 1}
    events = [event for file in _xplane_files(directory) for event in device_events(file)]
    summary = summarize_events(events, info.get("steps", 1))
    return {**info, **summary}


def format_markdown(summary: dict) -> str:
    lines = [
        f"{summary['events_per_step']:.0f} GPU kernels and copies a step, median "
        f"{summary['median_event_us']:.1f} us ({100 * summary['events_under_10us_share']:.0f} % "
        f"under 10 us); the GPU computes during {100 * summary['busy_share']:.1f} % of the "
        f"step's span ({summary['busy_ms_per_step']:.2f} of {summary['span_ms_per_step']:.2f} "
        "ms).",
        "",
        "| kind | ms a step | share of device time |",
        "|---|---:|---:|",
    ]
    for kind, value in summary["by_kind_ms_per_step"].items():
        lines.append(f"| {kind} | {value:.3f} | {100 * summary['by_kind_share'][kind]:.1f} % |")
    lines += ["", "| kernel | kind | a step | ms a step | mean us |", "|---|---|---:|---:|---:|"]
    for row in summary["top"]:
        lines.append(
            f"| `{row['name'][:60]}` | {row['kind']} | {row['count_per_step']:.0f} "
            f"| {row['ms_per_step']:.3f} | {row['mean_us']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None):
    config = parse_config(
        FitProfileConfig, argv, prog="python -m benchmarks.fit_profile", doc=__doc__
    )
    if config.trace is not None:
        case = FitCase(
            batch_size=config.batch_size,
            precision=config.precision,
            model=config.model,
            steps=config.steps,
            feed=config.feed,
        )
        if config.tiny:
            from benchmarks.fit_benchmark import TINY

            case = replace(case, **{**TINY, "steps": config.steps})
        info = trace(case, config.trace)
        print(json.dumps(info))
        return info
    summary = summarize(config.summarize)
    if config.output is not None:
        config.output.write_text(json.dumps(summary, indent=1))
    print(format_markdown(summary))
    return summary


if __name__ == "__main__":
    exit_on_error(main)
