"""Batches that stop a run as Ctrl-C would, when one iteration is drawn: Keras-free, so
that the worker processes of `runtime.process_feed` can import it."""

from __future__ import annotations

import dataclasses

import numpy as np

from temporal_attention.data.frame_batches import FrameBatches


@dataclasses.dataclass(frozen=True)
class InterruptedBatches(FrameBatches):
    """`FrameBatches` that raise `KeyboardInterrupt` on drawing `interrupt_at`."""

    interrupt_at: int = -1

    def draw(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        if iteration == self.interrupt_at:
            raise KeyboardInterrupt
        return super().draw(iteration)
