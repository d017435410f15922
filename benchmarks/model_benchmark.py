"""Speed of the temporal attention model: medians of repeated, compiled steps.

    python -m benchmarks.model_benchmark --batch-size 8 --repeats 10

Times one inference batch and one training step (forward, backward, Adadelta update)
of the paper's model (30 frames of 4096-d features, 2 x 512 LSTM, 30 steps) for
attention and the mean-pooling baseline, each with the input projection `W V`
precomputed once per call (the default) and with layer 1's `LSTMCell` run on `x_t`
at every step. Reports the median and interquartile range of each, and the ratio
per-step / precomputed from the same run. Works on every Keras backend; set
`KERAS_BACKEND` (TensorFlow and JAX compile with XLA).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from temporal_attention.models.recognizer import build_attention_model
from temporal_attention.runtime.config_flags import exit_on_error, parse_config


@dataclass(frozen=True)
class BenchmarkConfig:
    """The model's sizes and the timing's repetitions."""

    batch_size: int = field(
        default=8,
        metadata={"help": "samples a batch (the paper does not state its batch size)"},
    )
    num_frames: int = field(default=30, metadata={"help": "frames a sample (section 3.2)"})
    feature_dim: int = field(default=4096, metadata={"help": "feature size (VGG16 FC6)"})
    units: int = field(default=512, metadata={"help": "cells an LSTM layer"})
    num_layers: int = field(default=2, metadata={"help": "LSTM layers"})
    num_steps: int = field(default=30, metadata={"help": "LSTM steps"})
    num_classes: int = field(default=101, metadata={"help": "classes (UCF101)"})
    repeats: int = field(default=10, metadata={"help": "timed repetitions after the warm-up"})
    warmup: int = field(default=2, metadata={"help": "untimed repetitions (they compile)"})
    steps: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "loop", "unrolled"),
            "help": "TemporalAttentionLSTM(unroll=None | False | True); auto: the layer's default",
        },
    )
    seed: int = field(default=0, metadata={"help": "weights' and data's seed"})


@dataclass(frozen=True)
class ModelBenchmarkConfig:
    """The command line: the benchmark's settings and where its report goes."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    output: Path | None = field(
        default=None, metadata={"help": "also write the report as JSON here"}
    )


def median_and_iqr(times: list[float]) -> dict:
    quartiles = np.percentile(times, [25, 50, 75])
    return {
        "median_ms": 1e3 * quartiles[1],
        "iqr_ms": 1e3 * (quartiles[2] - quartiles[0]),
    }


def time_calls(function, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()  # returns NumPy values, so the device has finished
        times.append(time.perf_counter() - start)
    return times


def benchmark_variant(config: BenchmarkConfig, use_attention: bool, precompute: bool) -> dict:
    keras.utils.set_random_seed(config.seed)
    model = build_attention_model(
        config.num_classes,
        feature_dim=config.feature_dim,
        num_frames=config.num_frames,
        units=config.units,
        num_layers=config.num_layers,
        num_steps=config.num_steps,
        use_attention=use_attention,
        precompute_input_projection=precompute,
        unroll={"auto": None, "loop": False, "unrolled": True}[config.steps],
        seed=config.seed,
    )
    rng = np.random.default_rng(config.seed)
    features = rng.random((config.batch_size, config.num_frames, config.feature_dim), "float32")
    labels = rng.integers(0, config.num_classes, config.batch_size)
    inference = time_calls(lambda: model.predict_on_batch(features), config.repeats, config.warmup)
    training = time_calls(
        lambda: model.train_on_batch(features, labels), config.repeats, config.warmup
    )
    return {
        "model": "attention" if use_attention else "baseline",
        "input_projection": "precomputed" if precompute else "per_step",
        "inference": median_and_iqr(inference),
        "train_step": median_and_iqr(training),
    }


def run_benchmark(config: BenchmarkConfig) -> dict:
    results = [
        benchmark_variant(config, use_attention, precompute)
        for use_attention in (True, False)
        for precompute in (True, False)
    ]
    ratios = {}
    for model_name in ("attention", "baseline"):
        fast, slow = (
            next(r for r in results if r["model"] == model_name and r["input_projection"] == kind)
            for kind in ("precomputed", "per_step")
        )
        ratios[model_name] = {
            phase: slow[phase]["median_ms"] / fast[phase]["median_ms"]
            for phase in ("inference", "train_step")
        }
    return {
        "config": asdict(config),
        "backend": keras.backend.backend(),
        "devices": _devices(),
        "machine": platform.platform(),
        "results": results,
        "per_step_over_precomputed": ratios,
    }


def _devices() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(str(device) for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return ", ".join(device.name for device in tf.config.list_logical_devices())
    return "unknown"


def format_markdown(report: dict) -> str:
    config = report["config"]
    lines = [
        f"backend {report['backend']} on {report['devices']}; batch {config['batch_size']}, "
        f"{config['num_frames']} frames x {config['feature_dim']}, "
        f"{config['num_layers']} x {config['units']} LSTM, {config['num_steps']} steps "
        f"({config.get('steps', 'unrolled')}); "
        f"median (IQR) of {config['repeats']} runs",
        "",
        "| model | input projection | inference ms | train step ms |",
        "|---|---|---|---|",
    ]
    for result in report["results"]:
        cells = [
            f"{result[phase]['median_ms']:.1f} ({result[phase]['iqr_ms']:.1f})"
            for phase in ("inference", "train_step")
        ]
        lines.append(f"| {result['model']} | {result['input_projection']} | " + " | ".join(cells))
    lines += [
        "",
        "| model | per-step / precomputed, inference | same, train step |",
        "|---|---|---|",
    ]
    for model_name, ratio in report["per_step_over_precomputed"].items():
        lines.append(f"| {model_name} | {ratio['inference']:.2f}x | {ratio['train_step']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    config = parse_config(
        ModelBenchmarkConfig, argv, prog="python -m benchmarks.model_benchmark", doc=__doc__
    )
    report = run_benchmark(config.benchmark)
    print(format_markdown(report))
    if config.output is not None:
        config.output.parent.mkdir(parents=True, exist_ok=True)
        config.output.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    exit_on_error(main)
