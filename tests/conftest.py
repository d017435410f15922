"""Test settings shared by every test file.

The model tests compare against float64 NumPy references at 1e-5. On a GPU, the
backends may run float32 matrix products in TF32 (10-bit mantissa); the tests
switch that off so they check the model, not the matrix unit's precision.
"""

import keras
import pytest


def _full_float32_matmuls() -> None:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


_full_float32_matmuls()


# The files that take longest (seconds of a run on a 2-core CPU, all their tests), sent to
# the pytest-xdist workers first. With `--dist loadfile` a worker takes a whole file, in
# collection order (alphabetical otherwise): a long file left for the end, such as
# test_train_attention.py or test_tvl1.py, kept one worker busy while the other idled.
# Longest first packs the files onto the workers with little idle time at the end.
LONGEST_FILES_FIRST = (
    "test_finetune_convnet.py",  # about 110 s
    "test_experiment.py",  # about 105 s
    "test_train_attention.py",  # about 100 s
    "test_tvl1.py",  # about 95 s on TensorFlow, 40 s in the JAX pass (marked `jax`)
    "test_recognizer.py",  # about 60 s
    "test_predict.py",  # about 60 s
    "test_real_clips.py",  # about 60 s
    "test_demo.py",  # about 60 s
    "test_process_feed.py",  # about 60 s
    "test_pipeline_benchmark.py",  # about 45 s
    "test_extraction_feed.py",  # about 45 s
    "test_memory_benchmark.py",  # about 45 s
    "test_batched_flow.py",  # about 40 s on TensorFlow, 20 s in the JAX pass
    "test_finetune_resume.py",  # about 15 s
)


def pytest_collection_modifyitems(config, items):
    """The files of `LONGEST_FILES_FIRST` first, in its order; every file's tests stay
    together and in their own order (a stable sort), the other files as collected. Tests
    marked `jax` are skipped on the other backends (`make test` runs them in its JAX
    pass)."""
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if keras.backend.backend() != "jax":
        skip = pytest.mark.skip(reason="compiled on JAX: make test runs it in its JAX pass")
        for item in items:
            if item.get_closest_marker("jax"):
                item.add_marker(skip)
