"""TensorBoard scalars of a hand-written training loop, on every Keras backend.

Keras' TensorBoard callback serves `model.fit`; fine-tuning steps with `train_on_batch`
in its own loop, and logs each iteration with this writer:

    with ScalarWriter(output_dir / "tensorboard") as writer:
        writer.write(iteration, {"loss": 0.7, "accuracy": 0.5})

It writes through `tf.summary` (TensorFlow and `tensorboard` are in requirements.txt);
under JAX or PyTorch TensorFlow stays off the GPUs (`keep_tensorflow_on_the_host`).
Without TensorFlow it writes nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from temporal_attention.runtime.devices import keep_tensorflow_on_the_host


class ScalarWriter:
    """Scalars per step into TensorBoard event files under `folder`."""

    def __init__(self, folder: str | Path):
        self._writer = None
        if importlib.util.find_spec("tensorflow") is None:
            return
        keep_tensorflow_on_the_host()
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(folder))

    def write(self, step: int, values: dict[str, float]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for name, value in values.items():
                self._tf.summary.scalar(name, float(value))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ScalarWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the event files directly under `folder` (this writer's, or Keras'
    TensorBoard callback's `train/` and `validation/`): `{name: [(step, value), ...]}`."""
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor"):  # tf.summary (TF 2) keeps scalars as tensors
                    array = tf.make_ndarray(value.tensor)
                    if array.size != 1 or array.dtype.kind not in "fiu":
                        continue  # text (Keras' model summary), images, histograms
                    number = float(array.reshape(()))
                else:
                    number = value.simple_value
                scalars.setdefault(value.tag, []).append((int(event.step), number))
    return scalars
