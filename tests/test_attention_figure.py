"""Fig. 1 style figure: per-frame attention from samples, one bar per frame, key frames."""

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from data.samples import make_samples, sample_starts
from data.key_frames import read_key_frames
from evaluation.attention import frame_attention, key_frame_mass
from figures.attention import draw_attention, plot_attention, plot_key_frame_mass


def test_frame_attention_maps_samples_back_to_frames_without_padding():
    # A 7-frame video in samples of 4 (stride 4): frames 0-3, then 4-6 plus one padded frame.
    features = np.zeros((7, 2))
    _, masks = make_samples(features, num_frames=4, stride=4)
    starts = sample_starts(7, num_frames=4, stride=4)
    attention = np.zeros((2, 3, 4))  # (samples, steps, frames)
    attention[0, 0] = [1.0, 0.0, 0.0, 0.0]  # step 0 is not among the last 2 steps
    attention[0, 1:] = [0.1, 0.2, 0.3, 0.4]
    attention[1, 1] = [0.2, 0.2, 0.6, 0.0]
    attention[1, 2] = [0.4, 0.2, 0.4, 0.0]
    weights = frame_attention(attention, starts, masks, 7, num_last_steps=2)
    np.testing.assert_allclose(weights, [0.1, 0.2, 0.3, 0.4, 0.3, 0.2, 0.5])


def test_overlapping_samples_average_their_weights():
    attention = np.array([[[0.5, 0.5]], [[0.2, 0.8]]])  # 2 samples, 1 step, 2 frames
    masks = np.ones((2, 2), dtype=bool)
    weights = frame_attention(attention, np.array([0, 1]), masks, 3, num_last_steps=1)
    np.testing.assert_allclose(weights, [0.5, 0.35, 0.8])


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


def test_key_frames_both_formats_and_mass(tmp_path):
    (tmp_path / "per_frame.csv").write_text("video_id,frame_index\nA/v1,2\nA/v1,3\nB/v1,0\n")
    # Ranges are 0-based with the end excluded, as data.synthetic writes key_frames.csv.
    (tmp_path / "ranges.csv").write_text(
        "video_id,num_frames,start_frame,end_frame\nA/v1,9,2,4\nB/v1,5,0,1\n"
    )
    expected = {"A/v1": {2, 3}, "B/v1": {0}}
    assert read_key_frames(tmp_path / "per_frame.csv") == expected
    assert read_key_frames(tmp_path / "ranges.csv") == expected
    (tmp_path / "bad.csv").write_text("video_id,when\nA/v1,2\n")
    with pytest.raises(ValueError, match="expected columns"):
        read_key_frames(tmp_path / "bad.csv")
    mass, uniform = key_frame_mass(np.array([0.1, 0.1, 0.3, 0.5]), {2, 3, 99})
    assert mass == pytest.approx(0.8) and uniform == pytest.approx(0.5)
    paths = plot_key_frame_mass({"appearance": [(0.8, 0.5), (0.6, 0.25)]}, tmp_path / "mass")
    assert paths[0].is_file()
