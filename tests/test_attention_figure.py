"""Fig. 1 style figure: one bar per frame per stream, thumbnails, the key-frame mass plot."""

import numpy as np
from matplotlib.patches import Rectangle

from temporal_attention.figures.attention import draw_attention, plot_attention, plot_key_frame_mass


def test_figure_has_one_bar_per_frame_per_stream(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (37, 24, 32, 3), dtype=np.uint8)
    weights = {"appearance": rng.random(37), "motion": rng.random(32)}
    figure = draw_attention(frames, weights, num_thumbnails=6)
    bar_axes = figure.axes[6:]
    assert len(figure.axes) == 6 + 2
    for axis, (stream, values) in zip(bar_axes, weights.items(), strict=True):
        bars = [patch for patch in axis.patches if isinstance(patch, Rectangle)]
        assert len(bars) == len(values), stream
        np.testing.assert_allclose([bar.get_height() for bar in bars], values)
    thumbnail_titles = [axis.get_title() for axis in figure.axes[:6]]
    assert thumbnail_titles[0] == "frame 0" and thumbnail_titles[-1] == "frame 36"
    paths = plot_attention(frames, weights, tmp_path / "fig.png")
    assert [path.name for path in paths] == ["fig.png", "fig.pdf"]
    assert all(path.stat().st_size > 1000 for path in paths)


def test_key_frame_mass_plot_is_written(tmp_path):
    paths = plot_key_frame_mass({"appearance": [(0.8, 0.5), (0.6, 0.25)]}, tmp_path / "mass")
    assert paths[0].is_file()
