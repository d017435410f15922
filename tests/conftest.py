"""Test settings shared by every test file.

The model tests compare against float64 NumPy references at 1e-5. On a GPU, the
backends may run float32 matrix products in TF32 (10-bit mantissa); the tests
switch that off so they check the model, not the matrix unit's precision.
"""

import keras


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
