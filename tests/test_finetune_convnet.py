"""Tests of ConvNet fine-tuning: presets, schedule, loss going down, exact resume, CSV log."""

import csv
import dataclasses

import keras
import numpy as np
import pytest

from data.frame_dataset import FrameDataset
from models.two_stream_vgg16 import build_stream_vgg16
from training.finetune_convnet import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    LOG_NAME,
    SPATIAL_PAPER,
    TEMPORAL_PAPER,
    FinetuneConfig,
    finetune,
    learning_rate_schedule,
    parse_args,
    training_dataset,
)

NUM_CLASSES = 3


def generated_videos(stream: str, num_videos: int = 6, num_images: int = 4):
    """Tiny videos whose colour (or flow direction) gives the class, plus noise."""
    rng = np.random.default_rng(0)
    channels = 3 if stream == "appearance" else 10
    clips = []
    for index in range(num_videos):
        label = index % NUM_CLASSES
        level = np.full(channels, 128.0)
        level[label::NUM_CLASSES] = 128.0 + 100.0  # class-specific channels lit
        noise = rng.normal(0, 20, size=(num_images, 36, 36, channels))
        video = np.clip(level + noise, 0, 255).astype(np.uint8)
        clips.append(((lambda video=video: video), label))
    return clips


def tiny_config(stream="appearance", **overrides) -> FinetuneConfig:
    settings = dict(
        stream=stream,
        learning_rate=0.01,
        lr_step=20,
        max_iterations=30,
        batch_size=24,
        crop_size=32,
        frames_per_clip=4,
        dropout_fc6=0.5,
        dropout_fc7=0.5,
        weight_decay=1e-5,
        checkpoint_every=5,
        seed=3,
    )
    return FinetuneConfig(**{**settings, **overrides})


def tiny_model(config: FinetuneConfig) -> keras.Model:
    keras.utils.set_random_seed(7)
    return build_stream_vgg16(
        config.stream,
        num_classes=NUM_CLASSES,
        weights=None,
        input_size=32,
        fc_units=32,
        dropout_rates=(config.dropout_fc6, config.dropout_fc7),
        weight_decay=config.weight_decay,
        seed=config.seed,
    )


def tiny_dataset(config: FinetuneConfig, clips) -> FrameDataset:
    return training_dataset(clips, config)


def read_log(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_paper_presets():
    assert (SPATIAL_PAPER.stream, TEMPORAL_PAPER.stream) == ("appearance", "motion")
    assert (SPATIAL_PAPER.learning_rate, SPATIAL_PAPER.lr_step, SPATIAL_PAPER.max_iterations) == (
        0.001,
        4000,
        10000,
    )
    assert (
        TEMPORAL_PAPER.learning_rate,
        TEMPORAL_PAPER.lr_step,
        TEMPORAL_PAPER.max_iterations,
    ) == (0.005, 10000, 30000)
    assert SPATIAL_PAPER.momentum == TEMPORAL_PAPER.momentum == 0.9
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPATIAL_PAPER.learning_rate = 1.0
    with pytest.raises(ValueError, match="stream='rgb'"):
        FinetuneConfig(stream="rgb")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SPATIAL_PAPER, {0: 1e-3, 3999: 1e-3, 4000: 1e-4, 7999: 1e-4, 8000: 1e-5, 9999: 1e-5}),
        (TEMPORAL_PAPER, {0: 5e-3, 9999: 5e-3, 10000: 5e-4, 20000: 5e-5, 29999: 5e-5}),
    ],
)
def test_learning_rate_steps_down_tenfold(config, expected):
    schedule = learning_rate_schedule(config)
    for iteration, rate in expected.items():
        assert float(schedule(iteration)) == pytest.approx(rate, rel=1e-5)


def test_cli_flags_override_the_preset():
    config = parse_args(
        ["--preset", "temporal", "--video-root", "v", "--split-dir", "s", "--output-dir", "o"]
        + ["--batch-size", "32", "--max-iterations", "50"]
    )
    assert config.settings == dataclasses.replace(TEMPORAL_PAPER, batch_size=32, max_iterations=50)


@pytest.mark.parametrize("stream", ["appearance", "motion"])
def test_finetuning_lowers_the_loss_and_logs_every_iteration(tmp_path, stream):
    config = tiny_config(stream)
    clips = generated_videos(stream)
    model = tiny_model(config)
    # A fixed held-out batch (other crops and flips), scored without dropout.
    held_images, held_labels = FrameDataset(
        clips, stream=stream, batch_size=48, num_batches=1, crop_size=32, seed=123
    )[0]

    def held_loss():
        probabilities = model.predict_on_batch(held_images)  # (48, classes)
        return -np.log(probabilities[np.arange(48), held_labels]).mean()

    loss_before = held_loss()
    final_path = finetune(model, tiny_dataset(config, clips), config, tmp_path, progress=False)
    assert held_loss() < 0.85 * loss_before

    rows = read_log(tmp_path / LOG_NAME)
    assert [int(row["iteration"]) for row in rows] == list(range(1, 31))
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.01)
    assert float(rows[-1]["learning_rate"]) == pytest.approx(0.001)
    assert {"accuracy", "images_per_second"} <= set(rows[0])
    assert final_path == tmp_path / FINAL_NAME and final_path.exists()
    assert (tmp_path / CHECKPOINT_NAME).exists()


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    config = tiny_config(max_iterations=8, checkpoint_every=3)
    clips = generated_videos("appearance")

    uninterrupted = tiny_model(config)
    finetune(uninterrupted, tiny_dataset(config, clips), config, tmp_path / "a", progress=False)

    # Interrupted (Ctrl-C) while loading the batch of iteration 8, after the checkpoint of 6.
    class InterruptedDataset(FrameDataset):
        def __getitem__(self, iteration):
            if iteration == 7:
                raise KeyboardInterrupt
            return super().__getitem__(iteration)

    with pytest.raises(KeyboardInterrupt):
        finetune(
            tiny_model(config),
            InterruptedDataset(
                clips,
                stream="appearance",
                batch_size=config.batch_size,
                num_batches=config.max_iterations,
                crop_size=config.crop_size,
                frames_per_clip=config.frames_per_clip,
                seed=config.seed,
            ),
            config,
            tmp_path / "b",
            progress=False,
        )
    rows = read_log(tmp_path / "b" / LOG_NAME)
    assert len(rows) == 7  # iteration 7 was logged but not checkpointed
    # Rerun in a fresh model with a different initialisation: everything comes from the file.
    keras.utils.set_random_seed(99)
    resumed = build_stream_vgg16(
        "appearance",
        num_classes=NUM_CLASSES,
        weights=None,
        input_size=32,
        fc_units=32,
        dropout_rates=(0.5, 0.5),
        weight_decay=config.weight_decay,
        seed=config.seed,
    )
    finetune(resumed, tiny_dataset(config, clips), config, tmp_path / "b", progress=False)

    for expected, actual in zip(uninterrupted.variables, resumed.variables, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected), actual.path
        )
    log_a, log_b = read_log(tmp_path / "a" / LOG_NAME), read_log(tmp_path / "b" / LOG_NAME)
    assert [row["loss"] for row in log_b] == [row["loss"] for row in log_a]


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    config = tiny_config(max_iterations=2, checkpoint_every=1)
    clips = generated_videos("appearance")
    finetune(tiny_model(config), tiny_dataset(config, clips), config, tmp_path, progress=False)
    other = dataclasses.replace(config, max_iterations=3, dropout_fc6=0.0, dropout_fc7=0.0)
    with pytest.raises(ValueError, match="does not match the model"):
        finetune(tiny_model(other), tiny_dataset(other, clips), other, tmp_path, progress=False)
