"""Generated datasets, feature stores and trained tiny runs shared by the evaluation tests."""

from __future__ import annotations

import numpy as np

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.splits import load_split
from temporal_attention.evaluation.scoring import VideoScores
from temporal_attention.models.feature_extraction import FeatureRecipe, file_sha256
from temporal_attention.training.runs import Run, RunRecord, TrainConfig
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


# Hand-made scored runs (no model): 4 test videos of classes 0, 0, 1, 1.
TEST_IDS = ("A/v1", "A/v2", "B/v1", "B/v2")
TEST_LABELS = np.array([0, 0, 1, 1])
FULL_CLASSES = {"ucf101": 101, "hmdb51": 51}


def class_list(count: int) -> tuple[str, ...]:
    return tuple(f"Class{index:03d}" for index in range(count))


def write_scored_run(
    runs_root,
    dataset: str = "ucf101",
    split: int = 1,
    stream: str = "appearance",
    model: str = "attention",
    correct: int = 4,
    class_names: tuple[str, ...] | None = None,
    recipe: dict | None = None,
    **settings,
) -> Run:
    """A finished, scored run folder written by hand: `config.json` (the dataset's whole
    class list unless `class_names`; `settings` and `recipe` override the training
    settings and the feature recipe), a stand-in `model.keras` (bytes that name the
    run: only its hash is read) and `test_scores.npz` of that file, where the first
    `correct` of the 4 test videos are right."""
    config = TrainConfig(dataset=dataset, split=split, stream=stream, model=model, **settings)
    run = Run.for_config(runs_root, config)
    class_names = class_names or class_list(FULL_CLASSES[dataset])
    run.write_record(
        RunRecord(
            train=config,
            class_names=class_names,
            feature_store=runs_root / "store" / stream,
            features=FeatureRecipe(stream=stream, precision="float32", **(recipe or {})),
            feature_dim=16,
            train_videos=(),
            validation_videos=(),
            test_videos=tuple(zip(TEST_IDS, TEST_LABELS.tolist(), strict=True)),
        )
    )
    run.model_path.write_bytes(f"model of {run.root}".encode())
    scores = np.zeros((len(TEST_IDS), len(class_names)))
    scores[np.arange(len(TEST_IDS)), TEST_LABELS] = 0.8  # right ...
    scores[np.arange(len(TEST_IDS)), 1 - TEST_LABELS] = 0.2
    scores[correct:, :2] = scores[correct:, 1::-1]  # ... but the last 4 - correct wrong
    VideoScores(
        TEST_IDS, TEST_LABELS, scores, class_names, model_sha256=file_sha256(run.model_path)
    ).save(run.scores_path)
    return run
