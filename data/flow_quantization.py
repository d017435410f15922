"""Flow as stored: clipped to [-20, 20] pixels and mapped to uint8 with rounding.

The two-stream lineage's convention (Wang et al. 2015, the dense_flow tool):
`round(255 * (v + 20) / 40)`. Every flow method's output passes through here, the
OpenCV methods (`data.optical_flow`) and the keras.ops TV-L1 (`data.tvl1`) alike.
"""

from __future__ import annotations

import numpy as np

FLOW_BOUND = 20.0  # flow values are clipped to [-FLOW_BOUND, FLOW_BOUND] pixels


def quantize_flow(flow_float: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Clips flow to [-bound, bound] and maps it to uint8: `round(255 * (v + b) / (2 b))`."""
    clipped = np.clip(np.asarray(flow_float, dtype=np.float32), -bound, bound)
    return np.rint(255.0 * (clipped + bound) / (2.0 * bound)).astype(np.uint8)


def dequantize_flow(flow_uint8: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Inverse of `quantize_flow` (up to the rounding step of 40/255 px): float32 pixels."""
    return np.asarray(flow_uint8, dtype=np.float32) * (2.0 * bound / 255.0) - bound
