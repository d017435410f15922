"""Fig. 1 style plots: frame thumbnails along the timeline, attention weights as bars.

Plotting only: each function takes arrays and writes `.png` and `.pdf` files. The
weights come from `evaluation.attention` (per-frame attention of a trained run) or
from anywhere else; position i of a stream's weights is drawn at frame i.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STREAM_COLORS = {"appearance": "tab:red", "motion": "tab:blue"}


# === Fig. 1 ===


def plot_attention(
    frames: np.ndarray,
    stream_weights: dict[str, np.ndarray],
    output_path: str | os.PathLike,
    *,
    num_thumbnails: int = 8,
    title: str | None = None,
) -> list[Path]:
    """Draws the figure (see `draw_attention`) and writes it as `.png` and `.pdf`.

    `output_path` is a path without suffix (a `.png`/`.pdf` suffix is replaced).
    Returns the written paths.
    """
    figure = draw_attention(frames, stream_weights, num_thumbnails=num_thumbnails, title=title)
    return _save(figure, output_path)


def thumbnail_indices(num_frames: int, num_thumbnails: int = 8) -> np.ndarray:
    """The frames `draw_attention` shows: `num_thumbnails` evenly spaced, first and last
    included (fewer for a shorter video)."""
    return np.unique(np.linspace(0, num_frames - 1, min(num_thumbnails, num_frames)).round())


def draw_attention(
    frames: np.ndarray,
    stream_weights: dict[str, np.ndarray],
    *,
    num_thumbnails: int = 8,
    title: str | None = None,
):
    """Thumbnails along the timeline with frame numbers, and one bar per frame per stream.

    Args:
        frames: `(frames, height, width, 3)` uint8 RGB video frames, or any sequence
            of `len(frames)` frames that holds at least the `thumbnail_indices`.
        stream_weights: `stream name -> (positions,)` weights; position i is drawn
            at frame i.
        num_thumbnails: Frames shown, evenly spaced.

    Returns:
        A matplotlib `Figure`: first the thumbnail axes, then one bar axis per stream.
    """
    if not stream_weights:
        raise ValueError("Expected at least one stream's weights. Received: {}")
    num_frames = len(frames)
    shown = thumbnail_indices(num_frames, num_thumbnails)
    figure = plt.figure(figsize=(max(8.0, 1.2 * len(shown)), 1.6 + 1.4 * len(stream_weights)))
    grid = figure.add_gridspec(
        1 + len(stream_weights), len(shown), height_ratios=[1.2] + [1] * len(stream_weights)
    )
    for column, index in enumerate(shown.astype(int)):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(frames[index])
        axis.set_title(f"frame {index}", fontsize=8)
        axis.axis("off")
    for row, (stream, weights) in enumerate(stream_weights.items(), start=1):
        axis = figure.add_subplot(grid[row, :])
        positions = np.arange(len(weights))
        color = STREAM_COLORS.get(stream, "tab:gray")
        axis.bar(positions, weights, width=0.8, color=color, label=stream)
        axis.set_xlim(-0.5, num_frames - 0.5)
        axis.set_ylabel(f"{stream}\nattention", fontsize=8)
        axis.set_xticks(shown)
        axis.tick_params(labelsize=7)
        if row == len(stream_weights):
            axis.set_xlabel("frame")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _save(figure, output_path) -> list[Path]:
    base = Path(output_path)
    base = base.with_suffix("") if base.suffix in (".png", ".pdf") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(base.name + suffix) for suffix in (".png", ".pdf")]
    for path in paths:
        figure.savefig(path, dpi=100)
    plt.close(figure)
    return paths


# === Key frames ===


def plot_key_frame_mass(
    masses: dict[str, list[tuple[float, float]]], output_path: str | os.PathLike
) -> list[Path]:
    """Per video, attention mass on key frames against uniform attention's, per stream."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    for stream, points in masses.items():
        attention_mass, uniform_mass = np.asarray(points).T
        axis.scatter(
            uniform_mass, attention_mass, s=14, color=STREAM_COLORS.get(stream, "tab:gray"),
            label=f"{stream}: mean {attention_mass.mean():.2f} vs {uniform_mass.mean():.2f}",
        )  # fmt: skip
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="uniform attention")
    axis.set_xlabel("key-frame share of the video (uniform attention)")
    axis.set_ylabel("attention mass on key frames")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, output_path)
