"""What the Keras backend computes on: a GPU or not, "auto" precision, data parallelism.

The stages that run networks (fine-tuning, extraction) share these three decisions:

    resolve_precision("auto")                      # "mixed_bfloat16" on a GPU, else "float32"
    data_parallel_distribution("auto", batch_size)  # DataParallel over JAX's devices, or None

and `use_compilation_cache(folder)`, which keeps compiled programs on disk for later runs;
`to_device(array)` copies a host batch to the device ahead of the step that uses it;
`device_name()` and `peak_device_bytes()` say what a benchmark ran on and how much of its
memory it took.
"""

from __future__ import annotations

import contextlib

import keras

# Precisions a network stage (fine-tuning, extraction) may be given; "auto" resolves to
# one of the others (`resolve_precision`).
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Keras' global dtype policy set to `precision` (a resolved one, not "auto") for the
    layers built inside the block, which keep it; the previous policy comes back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def to_device(array):
    """`array` as a backend tensor on the default device, its copy finished (JAX: the
    host-to-device transfer, waited for here rather than in the call that uses it)."""
    tensor = keras.ops.convert_to_tensor(array)
    ready = getattr(tensor, "block_until_ready", None)
    return ready() if callable(ready) else tensor


def gpu_visible() -> bool:
    """Whether the Keras backend computes on a GPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def resolve_precision(precision: str) -> str:
    """`precision`, with "auto" made "mixed_bfloat16" on a GPU and "float32" elsewhere
    (on a GPU bf16 runs several times faster; on a CPU it is slower and less exact)."""
    if precision not in PRECISIONS:
        raise ValueError(f"Expected precision in {PRECISIONS}. Received: {precision!r}")
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if gpu_visible() else "float32"


def data_parallel_distribution(mode: str, batch_size: int):
    """`keras.distribution.DataParallel` over every device when `mode` is "auto" and the
    JAX backend sees several; None otherwise (one device; other backends).

    Raises:
        ValueError: `batch_size` does not divide by the device count.
    """
    if mode == "off" or keras.backend.backend() != "jax":
        return None
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"Expected --batch-size divisible by the {len(devices)} devices of data "
            f"parallelism. Received: batch_size={batch_size}. Give a multiple of "
            f"{len(devices)}, or --data-parallel off."
        )
    return keras.distribution.DataParallel(devices=devices)


def use_compilation_cache(folder, min_compile_seconds: float = 1.0) -> bool:
    """Keeps the XLA programs this process compiles in `folder` (JAX's persistent
    compilation cache) and loads them from there in later processes: a later training of
    the same shapes and settings loads its train step instead of compiling it. Programs
    that compiled faster than `min_compile_seconds` are not kept. Call it before the
    first compilation. JAX backend only: returns whether the cache is on (False on
    TensorFlow and PyTorch, which compile as before)."""
    if keras.backend.backend() != "jax":
        return False
    import pathlib

    import jax

    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    return True


def peak_device_bytes() -> int | None:
    """Peak memory of the first accelerator since the process began; None on a CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "cpu":
            return None
        return (device.memory_stats() or {}).get("peak_bytes_in_use")
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"]


def device_name() -> str:
    """The first accelerator's name, or "cpu"."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def keep_tensorflow_on_the_host() -> None:
    """Hides the GPUs from TensorFlow where it only writes files (TensorBoard's
    `tf.summary` under JAX or PyTorch): left alone, it would claim most of each GPU's
    memory beside the backend. A no-op on the TensorFlow backend (which computes there),
    once TensorFlow has started (its devices are set then) and where it is not installed."""
    if keras.backend.backend() == "tensorflow":
        return
    try:
        import tensorflow as tf
    except ImportError:
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow has started already
        pass


def visible_devices() -> list[str]:
    """Every device the Keras backend computes on, each as "kind:index (name)"."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()]
    if backend == "torch":
        import torch

        gpus = [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
        return gpus or ["cpu:0"]
    import tensorflow as tf

    found = []
    physical_gpus = iter(tf.config.list_physical_devices("GPU"))
    for device in tf.config.list_logical_devices():
        name = device.name.split("device:")[-1].lower()
        physical = next(physical_gpus, None) if device.device_type == "GPU" else None
        if physical is not None:
            details = tf.config.experimental.get_device_details(physical)
            name += f" ({details.get('device_name', 'GPU')})"
        found.append(name)
    return found


def main(argv=None) -> dict:
    """`temporal-attention devices` (`python -m runtime.devices` in a clone): the Keras
    backend, the devices it computes on, and what "auto" precision and data parallelism
    become on them; the check after an install."""
    import argparse

    parser = argparse.ArgumentParser(
        description="The Keras backend (KERAS_BACKEND), the devices it computes on, and "
        "what the stages' 'auto' precision and data parallelism become there."
    )
    parser.parse_args(argv)
    report = {
        "backend": keras.backend.backend(),
        "devices": visible_devices(),
        "gpu": gpu_visible(),
        "auto precision": resolve_precision("auto"),
    }
    # What the stages' `--data-parallel auto` makes of these devices (a batch of one per
    # device divides evenly).
    parallel = data_parallel_distribution("auto", len(report["devices"])) is not None
    report["auto data parallel"] = f"over {len(report['devices'])} devices" if parallel else "off"
    for key, value in report.items():
        print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return report


if __name__ == "__main__":
    from temporal_attention.runtime.config_flags import exit_on_error

    exit_on_error(main)
