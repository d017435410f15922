"""Per-frame attention of a run: samples mapped back to frames, key-frame mass."""

import numpy as np
import pytest

from temporal_attention.data.samples import make_samples, sample_starts
from temporal_attention.evaluation.attention import frame_attention, key_frame_mass


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


def test_key_frame_mass_against_uniform_attention():
    mass, uniform = key_frame_mass(np.array([0.1, 0.1, 0.3, 0.5]), {2, 3, 99})
    assert mass == pytest.approx(0.8) and uniform == pytest.approx(0.5)
