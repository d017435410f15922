"""Generated datasets, feature stores and trained tiny runs shared by the evaluation tests."""

from __future__ import annotations

import numpy as np

from data.feature_store import FeatureStore
from data.splits import load_split
from tests.synthetic_videos import write_ucf101_like

CLASSES = ("Alpha", "Beta")
FEATURE_DIM = 16
# Seconds on a CPU: one LSTM layer of 8 units, 12 steps.
TINY_MODEL = {"units": 8, "num_layers": 1, "num_steps": 12, "batch_size": 4}


def synthetic_split(root, clips_per_class: int = 5):
    """A UCF101-shaped dataset of 2 classes (group 1 of each class is the test set)."""
    video_root, split_dir = write_ucf101_like(
        root, classes=CLASSES, clips_per_class=clips_per_class, num_frames=6, height=32, width=32
    )
    return load_split("ucf101", video_root, split_dir, split=1)


def write_separable_features(store_root, split, stream="appearance", num_frames=40, seed=0):
    """Features whose mean tells the class: class k has +1 on feature k, plus noise."""
    rng = np.random.default_rng(seed)
    store = FeatureStore(store_root, dtype="float32")
    for clip in split.train + split.test:
        features = rng.normal(0.0, 0.3, (num_frames, FEATURE_DIM))
        features[:, clip.label] += 1.0
        store.write(
            clip.video_id,
            features,
            {"stream": stream, "backbone": "VGG16", "weights": "none", "input_size": 32},
        )
    return store
