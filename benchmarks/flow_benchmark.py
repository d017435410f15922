"""Every flow method on one footing: accuracy on known flows, agreement with OpenCV's
TV-L1, and frame pairs per second.

    python -m benchmarks.flow_benchmark \
        --video ../shared/data/ucf101_subset/UCF-101/PushUps/v_PushUps_g01_c01.avi

Known flows: a real frame moved by smooth affine fields (a translation, a rotation of
3 degrees, a zoom of 4 %), whose exact flow is known; the end-point error leaves out a
margin where the source lies outside the frame. Real flows: consecutive frames of the
video, each method's quantised uint8 flow against OpenCV TV-L1's (mean difference in
levels, share of values within 2 levels). Speed: pairs/s of each method on
`--speed-pairs` pairs (the real pairs repeated), the OpenCV methods in `--workers`
processes of one thread each (default 1; all the machine's cores: `--workers 0`), and
`tvl1_keras` in batches of `--batch` pairs on the Keras backend's device, compiled for
that batch before it is timed (the first call's time, compilation included, is reported
apart), with the device's peak memory per pair where there is an accelerator. Prints
a Markdown table; `--output F.json` keeps it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from temporal_attention.data.flow_quantization import quantize_flow
from temporal_attention.data.optical_flow import flow_function
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH, read_video
from temporal_attention.runtime.config_flags import exit_on_error, parse_config

CPU_METHODS = ("tvl1", "farneback", "dis")


@dataclass(frozen=True)
class FlowBenchmarkConfig:
    """The clip, the methods, the frame size and how the speed is timed."""

    video: Path = field(metadata={"help": "a real clip"})
    methods: tuple[str, ...] = field(
        default=(*CPU_METHODS, "tvl1_keras"), metadata={"help": "comma-separated"}
    )
    height: int = field(
        default=FRAME_HEIGHT, metadata={"help": "frame height the flow is computed at"}
    )
    width: int = field(
        default=FRAME_WIDTH, metadata={"help": "frame width the flow is computed at"}
    )
    pairs: int = field(default=8, metadata={"help": "real consecutive pairs"})
    speed_pairs: int | None = field(
        default=None, metadata={"help": "pairs timed (default: --pairs)"}
    )
    workers: int = field(
        default=1, metadata={"help": "OpenCV processes of one thread (0: one a core)"}
    )
    batch: int | None = field(
        default=None,
        metadata={"help": "tvl1_keras pairs a call (default: all; --speed-pairs rounded up)"},
    )
    output: Path | None = field(
        default=None, metadata={"help": "also write the report as JSON here"}
    )


def affine_pair(image: np.ndarray, matrix, shift) -> tuple[np.ndarray, np.ndarray]:
    """`image` (H, W) and `image` moved by the field g(x) = A (x - c) + t, taken on the
    moved image's grid (I1(x) = I0(x - g(x))), with the exact (H, W, 2) flow of every
    pixel of `image`: x - s where (I - A)(x - c) = s - c + t."""
    height, width = image.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = np.array([width / 2, height / 2])
    a = np.asarray(matrix, np.float64)
    relative = np.stack([xs - centre[0], ys - centre[1]], -1)
    g = relative @ a.T + np.asarray(shift, np.float64)
    moved = cv2.remap(
        image, (xs - g[..., 0]).astype(np.float32), (ys - g[..., 1]).astype(np.float32),
        cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    target = (relative + shift) @ np.linalg.inv(np.eye(2) - a).T
    return moved, (target - relative).astype(np.float32)


def known_flow_set(image: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (moved image, exact flow) for the three fields of the benchmark."""
    turn, grow = np.deg2rad(3), 0.04
    return {
        "translation": affine_pair(image, [[0, 0], [0, 0]], (2.3, -1.4)),
        "rotation": affine_pair(image, [[0, -turn], [turn, 0]], (0.5, 0.0)),
        "zoom": affine_pair(image, [[grow, 0], [0, grow]], (0.0, 0.7)),
    }


def end_point_error(flow: np.ndarray, truth: np.ndarray, margin: int) -> float:
    inside = np.s_[margin:-margin, margin:-margin]
    return float(np.linalg.norm(flow[inside] - truth[inside], axis=-1).mean())


def _flows(method: str, first: list[np.ndarray], second: list[np.ndarray]) -> np.ndarray:
    if method == "tvl1_keras":
        from temporal_attention.data.tvl1 import tvl1_flow

        return tvl1_flow(np.stack(first), np.stack(second))
    flow_between = flow_function(method)
    return np.stack([flow_between(a, b) for a, b in zip(first, second, strict=True)])


def _one_thread():
    cv2.setNumThreads(1)


def _pair_flow(job: tuple[str, np.ndarray, np.ndarray]) -> np.ndarray:
    method, first, second = job
    return flow_function(method)(first, second)


def time_speed(method, first, second, workers: int, batch: int) -> dict:
    """Pairs/s of `method` on the pairs (first[k], second[k]): OpenCV methods in
    `workers` single-thread processes, `tvl1_keras` in batches of `batch` (compiled for
    that batch shape first)."""
    pairs = len(first)
    if method == "tvl1_keras":
        _flows(method, first[:batch], second[:batch])  # compiles for this batch shape
        began = time.perf_counter()
        for start in range(0, pairs, batch):
            _flows(method, first[start : start + batch], second[start : start + batch])
        seconds = time.perf_counter() - began
        from temporal_attention.runtime.devices import (
            peak_device_bytes,
        )  # Keras: not in the OpenCV workers

        peak = peak_device_bytes()
        return {"pairs_per_s": pairs / seconds, "batch": batch, "workers": None,
                "peak_device_bytes": peak,
                "peak_device_bytes_per_pair": None if peak is None else peak / batch}  # fmt: skip
    jobs = [(method, a, b) for a, b in zip(first, second, strict=True)]
    if workers == 1:
        cv2.setNumThreads(1)
        began = time.perf_counter()
        for job in jobs:
            _pair_flow(job)
        seconds = time.perf_counter() - began
    else:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
            pool.map(_pair_flow, jobs[:workers])  # workers started and warm
            began = time.perf_counter()
            pool.map(_pair_flow, jobs, chunksize=1)
            seconds = time.perf_counter() - began
    return {"pairs_per_s": pairs / seconds, "batch": None, "workers": workers,
            "peak_device_bytes": None, "peak_device_bytes_per_pair": None}  # fmt: skip


def run_benchmark(
    video: Path, methods, height: int, width: int, pairs: int,
    speed_pairs: int | None = None, workers: int = 1, batch: int | None = None,
) -> dict:  # fmt: skip
    """The report of `main` (see the module's docstring) as a dict."""
    speed_pairs = speed_pairs or pairs
    workers = workers or os.cpu_count() or 1
    batch = min(batch or speed_pairs, speed_pairs)
    speed_pairs = -(-speed_pairs // batch) * batch  # whole batches: no other shape compiled
    frames = read_video(video).frames
    gray = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (width, height), cv2.INTER_AREA)
        for f in frames[: pairs + 1]
    ]
    if len(gray) < pairs + 1:
        raise ValueError(f"{video}: {len(gray)} frames; --pairs {pairs} needs {pairs + 1}.")
    known = known_flow_set(gray[0])
    margin = max(6, round(0.05 * min(height, width)))
    first_known = [gray[0]] * len(known)
    second_known = [moved for moved, _ in known.values()]
    reference = quantize_flow(_flows("tvl1", gray[:-1], gray[1:]))
    speed_first = [gray[k % pairs] for k in range(speed_pairs)]
    speed_second = [gray[k % pairs + 1] for k in range(speed_pairs)]
    rows = []
    for method in methods:
        began = time.perf_counter()
        known_flows = _flows(method, first_known, second_known)
        first_call = time.perf_counter() - began
        real = _flows(method, gray[:-1], gray[1:])
        levels = np.abs(quantize_flow(real).astype(np.int16) - reference.astype(np.int16))
        errors = {
            name: end_point_error(flow, truth, margin)
            for (name, (_, truth)), flow in zip(known.items(), known_flows, strict=True)
        }
        rows.append(
            {
                "method": method,
                "epe": errors,
                "epe_mean": float(np.mean(list(errors.values()))),
                "levels_from_opencv_tvl1": float(levels.mean()),
                "within_2_levels": float((levels <= 2).mean()),
                **time_speed(method, speed_first, speed_second, workers, batch),
                "first_call_s": first_call,  # tvl1_keras: compilation included
            }
        )
    return {
        "video": str(video),
        "size": [height, width],
        "pairs": pairs,
        "speed_pairs": speed_pairs,
        "margin": margin,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": _device(),
        "rows": rows,
    }


def _device() -> str:
    import keras  # here, not at import: the OpenCV worker processes never load Keras

    from temporal_attention.runtime.devices import device_name

    return f"{keras.backend.backend()}: {device_name()}"


def format_markdown(report: dict) -> str:
    height, width = report["size"]
    lines = [
        f"{report['pairs']} real pairs and 3 known flows at {height} x {width}; "
        f"end-point error in px ({report['margin']}-pixel margin left out); speed on "
        f"{report.get('speed_pairs', report['pairs'])} pairs, {report.get('device', '')}",
        "",
        "| method | EPE translation | EPE rotation | EPE zoom | EPE mean | levels from "
        "OpenCV TV-L1 | within 2 levels | pairs/s | timed as |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        e = row["epe"]
        if row.get("batch"):
            how = f"batches of {row['batch']} on the device"
            if row.get("peak_device_bytes_per_pair"):
                how += f", {row['peak_device_bytes_per_pair'] / 2**20:.1f} MiB peak a pair"
        else:
            workers = row.get("workers") or 1
            how = f"{workers} process{'es' if workers > 1 else ''} of 1 thread"
        lines.append(
            f"| {row['method']} | {e['translation']:.3f} | {e['rotation']:.3f} | {e['zoom']:.3f} "
            f"| {row['epe_mean']:.3f} | {row['levels_from_opencv_tvl1']:.2f} "
            f"| {100 * row['within_2_levels']:.1f} % | {row['pairs_per_s']:.1f} | {how} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    config = parse_config(
        FlowBenchmarkConfig, argv, prog="python -m benchmarks.flow_benchmark", doc=__doc__
    )
    report = run_benchmark(
        config.video, config.methods, config.height, config.width, config.pairs,
        speed_pairs=config.speed_pairs, workers=config.workers, batch=config.batch,
    )  # fmt: skip
    print(format_markdown(report))
    if config.output is not None:
        config.output.parent.mkdir(parents=True, exist_ok=True)
        config.output.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    exit_on_error(main)
