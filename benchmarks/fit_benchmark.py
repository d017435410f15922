"""Training speed of the recogniser as users run it: `model.fit`, against PyTorch.

    python -m benchmarks.fit_benchmark --batch-sizes 32,256 --output runs/fit_benchmark.jsonl

For each model (attention, baseline), precision (`float32`, `mixed_bfloat16`) and batch
size, one fresh process builds `models.recognizer.build_attention_model` at the paper's
sizes (30 frames x 4096, 2 x 512 LSTM, 30 steps, 101 classes, Adadelta, L2 decay) and
runs `model.fit` on arrays already on the device, `epochs` epochs of `steps` batches:
the first epoch's extra time over a later one is the compile time; samples/s is from
the median of the later epochs. It also times moving one batch from NumPy to the device
(the cost `fit` pays when fed from the host) and reads the peak device memory.

In the same run, as references (here only, never in `models/`): the same equations in
PyTorch (`TorchAttentionRecognizer`: projections precomputed, Adadelta with the same
decay; eager, and `torch.compile`d where a GPU is present or `--torch-compile` is
given), and `torch.nn.LSTM` 2 x 512 without attention (cuDNN on a GPU) reading the mean
feature at every step. Prints a Markdown table and the ratios of this project's
attention model to the fastest PyTorch attention version and to `nn.LSTM`. Works on
every Keras backend (`KERAS_BACKEND`) and on the CPU at tiny sizes (`--tiny`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.devices import device_name, peak_device_bytes

PRECISIONS = ("float32", "mixed_bfloat16")


@dataclass(frozen=True)
class FitCase:
    """One measurement: an implementation at one model, precision and batch size."""

    implementation: str = "keras"  # keras | torch_eager | torch_compiled | torch_nn_lstm
    model: str = "attention"  # attention | baseline
    precision: str = "float32"
    batch_size: int = 32
    num_frames: int = 30
    feature_dim: int = 4096
    units: int = 512
    num_layers: int = 2
    num_steps: int = 30
    num_classes: int = 101
    steps: int = 20  # batches per epoch
    epochs: int = 4  # the first compiles; the others are timed
    unroll: bool | None = None  # TemporalAttentionLSTM(unroll=...), keras only
    # keras only: "device" gives fit the batches already on the device (a generator of
    # device tensors: the PyTorch references' setting); "host" gives fit the whole arrays,
    # which Keras slices on the host (JAX arrays too: its array adapter converts them to
    # NumPy) and copies to the device batch by batch.
    feed: str = "device"
    seed: int = 0
    # keras on JAX: a persistent compilation cache folder (runtime.devices), so that a
    # second run of the benchmark shows the compile time of a warm cache. None: none.
    compile_cache: str | None = None


@dataclass(frozen=True)
class FitBenchmarkConfig:
    """Which cases run (every batch size x precision x model), and the settings they share."""

    batch_sizes: tuple[int, ...] = field(default=(32, 256), metadata={"help": "comma-separated"})
    precisions: tuple[str, ...] = field(default=PRECISIONS, metadata={"help": "comma-separated"})
    models: tuple[str, ...] = field(
        default=("attention", "baseline"), metadata={"help": "comma-separated"}
    )
    feeds: tuple[str, ...] = field(
        default=("device",), metadata={"help": "keras cases' feed: device, host, or both"}
    )
    torch: bool = field(default=True, metadata={"help": "time the PyTorch references"})
    torch_compile: bool = field(
        default=False, metadata={"help": "time torch.compile too (default: with a GPU)"}
    )
    no_torch_compile: bool = field(
        default=False, metadata={"help": "never time torch.compile (default: with a GPU)"}
    )
    steps: int = field(default=20, metadata={"help": "batches an epoch"})
    epochs: int = field(default=4, metadata={"help": "the first one compiles"})
    loop: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "loop", "unrolled"),
            "help": "TemporalAttentionLSTM(unroll=None | False | True)",
        },
    )
    tiny: bool = field(default=False, metadata={"help": "CI sizes (16-d features, 8 units)"})
    compile_cache: str | None = field(
        default=None, metadata={"help": "keras on JAX: persistent compilation cache folder"}
    )
    output: Path | None = field(
        default=None, metadata={"help": "append one JSON line per case here"}
    )
    case: str | None = field(
        default=None,
        metadata={"help": "one case (a FitCase as JSON), run in this process and printed"},
    )

    def __post_init__(self):
        if self.torch_compile and self.no_torch_compile:
            raise ValueError("Expected at most one of --torch-compile and --no-torch-compile.")

    @property
    def base(self) -> FitCase:
        """The case every measured case starts from."""
        base = FitCase(
            steps=self.steps,
            epochs=self.epochs,
            unroll={"auto": None, "loop": False, "unrolled": True}[self.loop],
            compile_cache=self.compile_cache,
        )
        return replace(base, **TINY) if self.tiny else base


TINY = dict(feature_dim=16, units=8, num_classes=5, num_frames=6, num_steps=4, steps=3, epochs=2)


# === Keras ===


def _sync(tensor) -> None:
    """Waits until `tensor` is computed on the device."""
    import keras

    if keras.backend.backend() == "jax":
        tensor.block_until_ready()
    elif keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    else:
        keras.ops.convert_to_numpy(keras.ops.sum(tensor))


def _epoch_recorder():
    """A Keras callback that keeps the wall time of every epoch in `.times`."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.began)

    return EpochTimes()


def random_data(case: FitCase):
    rng = np.random.default_rng(case.seed)
    samples = case.batch_size * case.steps
    features = rng.random((samples, case.num_frames, case.feature_dim), dtype=np.float32)
    labels = rng.integers(0, case.num_classes, samples).astype("int32")
    return features, labels


def _summary(case: FitCase, epoch_times: list[float], extra: dict) -> dict:
    steady = float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else epoch_times[0]
    return {
        **asdict(case),
        "samples_per_s": case.batch_size * case.steps / steady,
        "step_ms": 1e3 * steady / case.steps,
        "compile_s": max(epoch_times[0] - steady, 0.0),
        "epoch_s": epoch_times,
        **extra,
    }


def build_keras_case(case: FitCase):
    """The compiled recogniser of `case`, under its dtype policy and seed."""
    import keras

    from temporal_attention.models.recognizer import build_attention_model
    from temporal_attention.runtime.devices import use_compilation_cache

    if case.compile_cache is not None:
        use_compilation_cache(case.compile_cache)
    keras.config.set_dtype_policy(case.precision)
    keras.utils.set_random_seed(case.seed)
    return build_attention_model(
        case.num_classes,
        feature_dim=case.feature_dim,
        num_frames=case.num_frames,
        units=case.units,
        num_layers=case.num_layers,
        num_steps=case.num_steps,
        use_attention=case.model == "attention",
        unroll=case.unroll,
        seed=case.seed,
    )


def fit_data(case: FitCase, features: np.ndarray, labels: np.ndarray) -> dict:
    """`model.fit`'s data arguments for `case.feed`: the NumPy arrays ("host"), or a
    generator of the batches put on the device beforehand ("device")."""
    import keras

    if case.feed == "host":
        return {"x": features, "y": labels, "batch_size": case.batch_size, "shuffle": False}
    if case.feed != "device":
        raise ValueError(f"Expected feed 'device' or 'host'. Received: {case.feed!r}")
    batches = []
    for step in range(case.steps):
        rows = slice(step * case.batch_size, (step + 1) * case.batch_size)
        batches.append(
            (keras.ops.convert_to_tensor(features[rows]), keras.ops.convert_to_tensor(labels[rows]))
        )
    _sync(batches[-1][0])

    def on_device():
        while True:
            yield from batches

    return {"x": on_device(), "steps_per_epoch": case.steps}


def run_keras_case(case: FitCase) -> dict:
    import keras

    model = build_keras_case(case)
    features, labels = random_data(case)
    _sync(keras.ops.convert_to_tensor(features[: case.batch_size]))  # initialises the device
    began = time.perf_counter()
    _sync(keras.ops.convert_to_tensor(features[case.batch_size : 2 * case.batch_size]))
    to_device_ms = 1e3 * (time.perf_counter() - began)
    recorder = _epoch_recorder()
    model.fit(
        **fit_data(case, features, labels), epochs=case.epochs, verbose=0, callbacks=[recorder]
    )
    return _summary(
        case,
        recorder.times,
        {
            "backend": keras.backend.backend(),
            "device": device_name(),
            "host_to_device_ms_per_batch": to_device_ms,
            "peak_device_bytes": peak_device_bytes(),
        },
    )


# === PyTorch references (benchmark only) ===


def torch_attention_recognizer(case: FitCase):
    """The paper's recogniser written directly in PyTorch, the layer's equations (eqs.
    3-7, initial state from the mean feature, dropout on layer inputs and the top output,
    projections of the frames precomputed once per call). Weights use Keras' layout
    (kernels `(in, 4 units)`, gates i, f, c, o), so a Keras model's weights copy in."""
    import torch
    from torch import nn

    class TorchAttentionRecognizer(nn.Module):
        def __init__(self):
            super().__init__()
            d, u, layers = case.feature_dim, case.units, case.num_layers
            self.use_attention = case.model == "attention"

            def param(*shape, scale=0.05):
                return nn.Parameter(torch.randn(*shape) * scale)

            sizes = [d] + [u] * (layers - 1)
            self.kernels = nn.ParameterList([param(size, 4 * u) for size in sizes])
            self.recurrent = nn.ParameterList([param(u, 4 * u) for _ in range(layers)])
            self.biases = nn.ParameterList([param(4 * u, scale=0.0) for _ in range(layers)])
            self.w_a, self.u_a, self.b_a = param(u), param(d), param((), scale=0.0)
            self.init_kernel, self.init_bias = param(d, 2 * layers * u), param(2 * layers * u)
            self.classifier = nn.Linear(u, case.num_classes)
            self.dropout = 0.5

        def forward(self, features):
            batch = features.shape[0]
            mean_feature = features.mean(1)
            states = torch.tanh(mean_feature @ self.init_kernel + self.init_bias)
            states = list(states.chunk(2 * len(self.kernels), -1))
            hs, cs = states[0::2], states[1::2]
            masks = [None] * len(self.kernels)
            if self.training:
                masks = [
                    nn.functional.dropout(features.new_ones(batch, k.shape[0]), self.dropout)
                    for k in self.kernels
                ]
            dropped = features if masks[0] is None else features * masks[0][:, None, :]
            if self.use_attention:
                projected = dropped @ self.kernels[0]  # (batch, frames, 4 units)
                frame_scores = features @ self.u_a  # (batch, frames)
            else:
                mean_projected = dropped.mean(1) @ self.kernels[0]
            outputs = []
            for _ in range(case.num_steps):
                if self.use_attention:
                    scores = torch.tanh((hs[-1] @ self.w_a)[:, None] + frame_scores + self.b_a)
                    weights = torch.softmax(scores, -1)
                    step_input = torch.bmm(weights[:, None, :], projected)[:, 0]
                else:
                    step_input = mean_projected
                for k in range(len(self.kernels)):
                    if k > 0:
                        layer_input = hs[k - 1] if masks[k] is None else hs[k - 1] * masks[k]
                        step_input = layer_input @ self.kernels[k]
                    z = step_input + hs[k] @ self.recurrent[k] + self.biases[k]
                    i, f, g, o = z.chunk(4, -1)
                    cs[k] = torch.sigmoid(f) * cs[k] + torch.sigmoid(i) * torch.tanh(g)
                    hs[k] = torch.sigmoid(o) * torch.tanh(cs[k])
                outputs.append(hs[-1])
            hidden = torch.stack(outputs, 1)  # (batch, steps, units)
            if self.training:
                keep = nn.functional.dropout(hidden.new_ones(batch, 1, hidden.shape[-1]), 0.5)
                hidden = hidden * keep
            return self.classifier(hidden)  # logits (batch, steps, classes)

    return TorchAttentionRecognizer()


def torch_nn_lstm_recognizer(case: FitCase):
    """`torch.nn.LSTM` (cuDNN on a GPU), no attention: the mean feature at every step."""
    from torch import nn

    class NNLSTMRecognizer(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(
                case.feature_dim,
                case.units,
                num_layers=case.num_layers,
                batch_first=True,
                dropout=0.5 if case.num_layers > 1 else 0.0,
            )
            self.dropout = nn.Dropout(0.5)
            self.classifier = nn.Linear(case.units, case.num_classes)

        def forward(self, features):
            steps = features.mean(1, keepdim=True).expand(-1, case.num_steps, -1)
            hidden, _ = self.lstm(self.dropout(steps))
            return self.classifier(self.dropout(hidden))

    return NNLSTMRecognizer()


def run_torch_case(case: FitCase) -> dict:
    import torch

    torch.manual_seed(case.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if case.implementation == "torch_nn_lstm":
        model = torch_nn_lstm_recognizer(case)
    else:
        model = torch_attention_recognizer(case)
    model = model.to(device).train()
    # L2 decay of eq. 8, gamma * sum(w^2), is weight_decay = 2 gamma on the gradient.
    optimizer = torch.optim.Adadelta(
        model.parameters(), lr=1.0, rho=0.95, eps=1e-6, weight_decay=2e-5
    )
    features, labels = random_data(case)
    torch.from_numpy(features[: case.batch_size]).to(device)  # initialises the device
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    torch.from_numpy(features[case.batch_size : 2 * case.batch_size]).to(device)
    if device == "cuda":
        torch.cuda.synchronize()
    to_device_ms = 1e3 * (time.perf_counter() - began)
    x, y = torch.from_numpy(features).to(device), torch.from_numpy(labels).long().to(device)
    autocast = case.precision == "mixed_bfloat16"

    def train_step(batch_x, batch_y):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch_x)
        loss = (
            torch.nn.functional.cross_entropy(
                logits.float().flatten(0, 1),
                batch_y[:, None].expand(-1, case.num_steps).flatten(),
                reduction="sum",
            )
            / batch_x.shape[0]
        )  # summed over the steps, averaged over the batch (eq. 8)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    if case.implementation == "torch_compiled":
        mode = "reduce-overhead" if device == "cuda" else None
        train_step = torch.compile(train_step, mode=mode)
    times = []
    for _ in range(case.epochs):
        began = time.perf_counter()
        for step in range(case.steps):
            rows = slice(step * case.batch_size, (step + 1) * case.batch_size)
            loss = train_step(x[rows], y[rows])
        float(loss.detach())  # waits for the device
        times.append(time.perf_counter() - began)
    return _summary(
        case,
        times,
        {
            "backend": "torch " + torch.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "host_to_device_ms_per_batch": to_device_ms,
            "peak_device_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
        },
    )


# === The run ===


def cases(config: FitBenchmarkConfig, torch_compile: bool) -> list[FitCase]:
    out = []
    for batch in config.batch_sizes:
        for precision in config.precisions:
            for model in config.models:
                base = replace(config.base, batch_size=batch, precision=precision, model=model)
                out.extend(replace(base, feed=feed) for feed in config.feeds)
                if config.torch and model == "attention":
                    out.append(replace(base, implementation="torch_eager"))
                    if torch_compile:
                        out.append(replace(base, implementation="torch_compiled"))
            if config.torch:
                out.append(replace(base, implementation="torch_nn_lstm", model="baseline"))
    return out


def run_case_in_subprocess(case: FitCase, timeout: float | None = None) -> dict:
    """Each case in a fresh process: its own compile caches, dtype policy and peak memory."""
    env = dict(os.environ)
    if case.implementation != "keras":
        env["KERAS_BACKEND"] = "torch"  # the torch cases never import another framework
    command = [sys.executable, "-m", "benchmarks.fit_benchmark", "--case", json.dumps(asdict(case))]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {**asdict(case), "error": " | ".join(tail) or f"exit status {done.returncode}"}
    return json.loads(lines[-1])


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _gpu_present() -> bool:
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_benchmark(config: FitBenchmarkConfig, output: Path | None = None) -> list[dict]:
    if config.torch and not _torch_available():
        print("PyTorch is not installed: the PyTorch references are left out.", file=sys.stderr)
        config = replace(config, torch=False)
    torch_compile = config.torch_compile or (not config.no_torch_compile and _gpu_present())
    results = []
    for case in cases(config, torch_compile):
        result = run_case_in_subprocess(case)
        results.append(result)
        print(_row(result), file=sys.stderr, flush=True)
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            with output.open("a") as file:
                file.write(json.dumps({**result, "machine": platform.node()}) + "\n")
    return results


def _row(result: dict) -> str:
    name = " ".join(str(result[key]) for key in ("implementation", "model", "precision"))
    name += f" batch {result['batch_size']}"
    if result["implementation"] == "keras":
        name += f" fed from the {result.get('feed', 'host')}"
    if "error" in result:
        return f"{name}: failed: {result['error']}"
    return f"{name}: {result['samples_per_s']:.0f} samples/s, compile {result['compile_s']:.1f} s"


def format_markdown(results: list[dict]) -> str:
    first = next((r for r in results if "error" not in r), results[0])
    lines = [
        f"{first.get('device', '?')}; {first['num_frames']} frames x {first['feature_dim']}, "
        f"{first['num_layers']} x {first['units']} LSTM, {first['num_steps']} steps, "
        f"{first['num_classes']} classes; {first['steps']} batches an epoch, median of "
        f"{first['epochs'] - 1} epochs after the first",
        "",
        "| implementation | model | precision | batch | samples/s | step ms | compile s "
        "| to device ms/batch | peak device MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['implementation']} | {r['model']} | {r['precision']} | {r['batch_size']} "
                f"| failed: {r['error'][:80]} | | | | |"
            )
            continue
        peak = r.get("peak_device_bytes")
        peak_text = f"{peak / 2**20:.0f}" if peak else "-"
        implementation = r["implementation"]
        if implementation == "keras":
            implementation += f", fed from the {r.get('feed', 'host')}"
        lines.append(
            f"| {implementation} ({r['backend']}) | {r['model']} | {r['precision']} "
            f"| {r['batch_size']} | {r['samples_per_s']:,.0f} | {r['step_ms']:.2f} "
            f"| {r['compile_s']:.1f} | {r['host_to_device_ms_per_batch']:.2f} | {peak_text} |"
        )
    ratios = ratio_rows(results)
    if ratios:
        lines += [
            "",
            "| precision | batch | keras attention / fastest torch attention "
            "| keras attention / torch nn.LSTM |",
            "|---|---:|---:|---:|",
        ]
        for row in ratios:
            cells = [
                f"{row[key]:.2f}x" if row[key] is not None else "-"
                for key in ("over_torch_attention", "over_nn_lstm")
            ]
            lines.append(
                f"| {row['precision']} | {row['batch_size']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def ratio_rows(results: list[dict]) -> list[dict]:
    """This project's attention model against the references, per precision and batch."""
    ok = [r for r in results if "error" not in r]
    rows = []
    for precision, batch in sorted({(r["precision"], r["batch_size"]) for r in ok}):
        same = [r for r in ok if r["precision"] == precision and r["batch_size"] == batch]
        ours = [r for r in same if r["implementation"] == "keras" and r["model"] == "attention"]
        # Like for like: the references read batches already on the device.
        ours = [r for r in ours if r.get("feed", "host") == "device"] or ours
        if not ours:
            continue
        theirs = [
            r["samples_per_s"]
            for r in same
            if r["implementation"] in ("torch_eager", "torch_compiled")
        ]
        lstm = [r["samples_per_s"] for r in same if r["implementation"] == "torch_nn_lstm"]
        rate = ours[0]["samples_per_s"]
        rows.append(
            {
                "precision": precision,
                "batch_size": batch,
                "over_torch_attention": rate / max(theirs) if theirs else None,
                "over_nn_lstm": rate / lstm[0] if lstm else None,
            }
        )
    return rows


def main(argv=None):
    config = parse_config(
        FitBenchmarkConfig, argv, prog="python -m benchmarks.fit_benchmark", doc=__doc__
    )
    if config.case:
        case = FitCase(**json.loads(config.case))
        result = run_keras_case(case) if case.implementation == "keras" else run_torch_case(case)
        print(json.dumps(result))
        return result
    results = run_benchmark(config, config.output)
    print(format_markdown(results))
    return results


if __name__ == "__main__":
    exit_on_error(main)
