"""Tests of ConvNet fine-tuning: presets, schedule, loss going down, exact resume, CSV log,
batches from worker processes and frame stores, precision, data parallelism."""

import csv
import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from temporal_attention.data.frame_batches import StoredClip, draw_batch
from temporal_attention.data.frame_store import FrameSettings, FrameStore
from temporal_attention.models.image_preprocessing import with_preprocessing
from temporal_attention.models.two_stream_vgg16 import build_stream_vgg16, preprocess_images
from temporal_attention.runtime.devices import dtype_policy
from temporal_attention.runtime.process_feed import ordered_map
from temporal_attention.runtime.summaries import read_scalars
from temporal_attention.training.finetune_convnet import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    LOG_NAME,
    SETTINGS_NAME,
    SPATIAL_PAPER,
    TEMPORAL_PAPER,
    FinetuneConfig,
    compile_for_finetuning,
    finetune,
    learning_rate_schedule,
    load_checkpoint,
    parse_args,
    training_batches,
)
from tests.interrupted_batches import InterruptedBatches

ROOT = Path(__file__).resolve().parents[1]

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
        clips.append((functools.partial(np.asarray, video), label))  # pickles
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
        width_multiplier=0.25,  # 16-128 filters: the schedule and resume, not VGG16's width
        dropout_rates=(config.dropout_fc6, config.dropout_fc7),
        weight_decay=config.weight_decay,
        seed=config.seed,
    )


def tiny_batches(config: FinetuneConfig, clips):
    return training_batches(clips, config)


def stored_videos(root, num_videos: int = 6, num_images: int = 4):
    """`generated_videos("appearance")` written to a frame store: `StoredClip`s of it."""
    store, clips = FrameStore(root), []
    for index, (loader, label) in enumerate(generated_videos("appearance", num_videos, num_images)):
        video_id = f"C{label}/v{index}"
        writer = store.frames_writer(video_id, FrameSettings(36, 36))
        writer.append(loader())
        writer.finish({})
        clips.append((StoredClip(root, video_id, "appearance"), label))
    return clips


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
    held = dataclasses.replace(config, batch_size=48, seed=123)
    held_crops, held_labels = training_batches(clips, held).draw(0)
    held_images = preprocess_images(held_crops, stream)  # VGG16's, as the stage's model does

    def held_loss():
        probabilities = model.predict_on_batch(held_images)  # (48, classes)
        return -np.log(probabilities[np.arange(48), held_labels]).mean()

    loss_before = held_loss()
    final_path = finetune(model, tiny_batches(config, clips), config, tmp_path, progress=False)
    assert held_loss() < 0.85 * loss_before

    rows = read_log(tmp_path / LOG_NAME)
    assert [int(row["iteration"]) for row in rows] == list(range(1, 31))
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.01)
    assert float(rows[-1]["learning_rate"]) == pytest.approx(0.001)
    assert {"accuracy", "images_per_second"} <= set(rows[0])
    scalars = read_scalars(tmp_path / "tensorboard")  # the same rows, for TensorBoard
    assert [step for step, _ in scalars["loss"]] == list(range(1, 31))
    np.testing.assert_allclose([v for _, v in scalars["loss"]], [float(r["loss"]) for r in rows])
    assert final_path == tmp_path / FINAL_NAME and final_path.exists()
    assert (tmp_path / CHECKPOINT_NAME).exists()
    assert json.loads((tmp_path / SETTINGS_NAME).read_text())["precision"] == "float32"
    saved = keras.saving.load_model(final_path)  # the bare network: float input
    assert saved.input.dtype == "float32" and saved.name == model.name


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, workers):
    """workers=0 from decoded clips, workers=2 from a frame store (`--frame-root`)."""
    config = tiny_config(max_iterations=8, checkpoint_every=3)
    if workers:
        clips = stored_videos(tmp_path / "frames")
    else:
        clips = generated_videos("appearance")

    uninterrupted = tiny_model(config)
    finetune(uninterrupted, tiny_batches(config, clips), config, tmp_path / "a", progress=False)

    # Interrupted (Ctrl-C) while drawing the batch of iteration 8, after the checkpoint of 6.
    interrupted = InterruptedBatches(
        tuple(clips),
        stream="appearance",
        batch_size=config.batch_size,
        crop_size=config.crop_size,
        frames_per_clip=config.frames_per_clip,
        seed=config.seed,
        interrupt_at=7,
    )
    with pytest.raises(KeyboardInterrupt):
        finetune(
            tiny_model(config), interrupted, config, tmp_path / "b", workers=workers, progress=False
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
        width_multiplier=0.25,
        dropout_rates=(0.5, 0.5),
        weight_decay=config.weight_decay,
        seed=config.seed,
    )
    finetune(
        resumed,
        tiny_batches(config, clips),
        config,
        tmp_path / "b",
        workers=workers,
        progress=False,
    )

    for expected, actual in zip(uninterrupted.variables, resumed.variables, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected), actual.path
        )
    log_a, log_b = read_log(tmp_path / "a" / LOG_NAME), read_log(tmp_path / "b" / LOG_NAME)
    assert [row["loss"] for row in log_b] == [row["loss"] for row in log_a]


def test_batches_of_worker_processes_equal_those_drawn_here(tmp_path):
    config = tiny_config(batch_size=8, frames_per_clip=2)
    for clips in (generated_videos("appearance"), stored_videos(tmp_path)):
        batches = tiny_batches(config, clips)
        draw = functools.partial(draw_batch, batches)
        here = list(ordered_map(draw, range(5), workers=0))
        pooled = list(ordered_map(draw, range(5), workers=2, ahead=3))
        for (images, labels), (pooled_images, pooled_labels) in zip(here, pooled, strict=True):
            assert images.dtype == np.uint8 and images.shape == (8, 32, 32, 3)
            np.testing.assert_array_equal(pooled_images, images)
            np.testing.assert_array_equal(pooled_labels, labels)


def test_the_batch_drawing_module_imports_no_keras():
    # Worker processes import only the module of the function they run.
    code = (
        "import sys, data.frame_batches\n"
        "print(sorted({'keras', 'jax', 'torch', 'tensorflow'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    config = tiny_config(max_iterations=2, checkpoint_every=1)
    clips = generated_videos("appearance")
    finetune(tiny_model(config), tiny_batches(config, clips), config, tmp_path, progress=False)
    longer = dataclasses.replace(config, max_iterations=3)  # the same recorded settings
    keras.utils.set_random_seed(7)
    wider = build_stream_vgg16(
        "appearance", num_classes=NUM_CLASSES, weights=None, input_size=32, fc_units=16,
        width_multiplier=0.25, dropout_rates=(0.5, 0.5), seed=config.seed,
    )  # fmt: skip
    with pytest.raises(ValueError, match="does not match the model"):
        finetune(wider, tiny_batches(longer, clips), longer, tmp_path, progress=False)


def test_a_checkpoint_of_another_precision_is_refused(tmp_path):
    config = tiny_config(max_iterations=1, checkpoint_every=1)
    clips = generated_videos("appearance")
    finetune(tiny_model(config), tiny_batches(config, clips), config, tmp_path, progress=False)
    settings = json.loads((tmp_path / SETTINGS_NAME).read_text())
    settings["precision"] = "mixed_bfloat16"  # as a run on a GPU would have written it
    (tmp_path / SETTINGS_NAME).write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="precision='mixed_bfloat16'.*--precision"):
        finetune(tiny_model(config), tiny_batches(config, clips), config, tmp_path, progress=False)


# === The stage: frame store, precision, data parallelism ===

TINY_STAGE = ["--weights", "none", "--width-multiplier", "0.0625", "--fc-units", "8"]
TINY_STAGE += ["--crop-size", "32", "--height", "48", "--width", "64"]
TINY_STAGE += ["--batch-size", "4", "--max-iterations", "2", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def split_videos(tmp_path_factory):
    from tests.synthetic_videos import write_ucf101_like

    root = tmp_path_factory.mktemp("videos")
    video_root, split_dir = write_ucf101_like(root, clips_per_class=3, num_frames=6)
    return ["--video-root", str(video_root), "--split-dir", str(split_dir)]


def test_the_stage_trains_from_a_frame_store_and_names_missing_videos(split_videos, tmp_path):
    from temporal_attention.training import extract_frames, finetune_convnet

    frame_root = tmp_path / "frames"
    with pytest.raises(ValueError, match=r"frames/Alpha/\S+: no complete frames .*extract_frames"):
        finetune_convnet.main(
            [*split_videos, *TINY_STAGE, "--frame-root", str(frame_root)]
            + ["--output-dir", str(tmp_path / "net")]
        )
    with pytest.raises(ValueError, match=r"compute_flow --layout frames"):
        finetune_convnet.main(
            [*split_videos, *TINY_STAGE, "--frame-root", str(frame_root), "--preset", "temporal"]
            + ["--output-dir", str(tmp_path / "net")]
        )
    assert not (tmp_path / "net" / CHECKPOINT_NAME).exists()  # stopped before training
    status = extract_frames.main(
        [*split_videos, "--output", str(frame_root), "--height", "48", "--width", "64"]
        + ["--workers", "1"]
    )
    assert status == 0
    final = finetune_convnet.main(
        [*split_videos, *TINY_STAGE, "--frame-root", str(frame_root), "--workers", "1"]
        + ["--output-dir", str(tmp_path / "net")]
    )
    assert final.exists() and len(read_log(tmp_path / "net" / LOG_NAME)) == 2
    recorded = json.loads((tmp_path / "net" / SETTINGS_NAME).read_text())
    assert {key: recorded[key] for key in ("precision", "preprocessing", "held_out_videos")} == {
        "precision": "float32",  # auto on a CPU
        "preprocessing": "caffe",
        "held_out_videos": [],
    }
    assert recorded["image_size"] == [48, 64] and recorded["fc_units"] == 8
    assert recorded["batch_size"] == 4 and recorded["final"]["iteration"] == 2


def test_mixed_bfloat16_keeps_the_softmax_in_float32():
    from temporal_attention.data.splits import SplitSource
    from temporal_attention.training.finetune_convnet import (
        FinetuneConvnetConfig,
        build_network,
        resolve_precision,
    )

    assert resolve_precision("auto") == "float32"  # no GPU here
    config = FinetuneConvnetConfig(
        source=SplitSource(Path("v"), Path("s")),
        output_dir=Path("o"),
        settings=tiny_config(),
        weights="none",
        width_multiplier=0.0625,
        fc_units=8,
    )
    network = build_network(config, NUM_CLASSES, "mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert network.get_layer("fc1").compute_dtype == "bfloat16"
    assert network.get_layer("predictions").compute_dtype == "float32"
    images = np.zeros((2, 32, 32, 3), dtype=np.float32)
    assert keras.ops.convert_to_numpy(network(images)).dtype == np.float32
    assert parse_args(["--video-root", "v", "--split-dir", "s", "--output-dir", "o"]).precision == (
        "auto"
    )


def test_mixed_float16_finetunes_with_a_scaled_loss_and_resumes(tmp_path):
    config = tiny_config(max_iterations=2, checkpoint_every=1)
    clips = generated_videos("appearance")
    network = build_stream_vgg16_under("mixed_float16", config)
    finetune(network, tiny_batches(config, clips), config, tmp_path, progress=False)
    rows = read_log(tmp_path / LOG_NAME)
    assert [int(row["iteration"]) for row in rows] == [1, 2]
    assert all(np.isfinite(float(row["loss"])) for row in rows)
    assert json.loads((tmp_path / SETTINGS_NAME).read_text())["precision"] == "mixed_float16"
    model = with_preprocessing(network, "caffe")
    compile_for_finetuning(model, config, "mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME, model) == 2  # its variables, scale too
    more = dataclasses.replace(config, max_iterations=3)
    finetune(network, tiny_batches(more, clips), more, tmp_path, progress=False)
    assert [int(row["iteration"]) for row in read_log(tmp_path / LOG_NAME)] == [1, 2, 3]


def build_stream_vgg16_under(precision: str, config: FinetuneConfig) -> keras.Model:
    with dtype_policy(precision):
        return tiny_model(config)


DATA_PARALLEL_SCRIPT = """
import sys
from temporal_attention.training import finetune_convnet

original, devices = finetune_convnet.finetune, []

def finetune(network, *args, **kwargs):
    path = original(network, *args, **kwargs)
    devices.append(len(network.trainable_variables[0].value.sharding.device_set))
    return path

finetune_convnet.finetune = finetune
finetune_convnet.main(sys.argv[1:])
print("variables on", devices[0], "devices")
try:
    finetune_convnet.main(sys.argv[1:] + ["--batch-size", "3", "--output-dir", sys.argv[-1] + "3"])
except ValueError as error:
    print("refused:", error)
"""


@pytest.mark.slow  # some 40 s on a CPU: a JAX process compiling for two devices
def test_data_parallel_over_two_jax_devices(split_videos, tmp_path):
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL_SCRIPT, *split_videos, *TINY_STAGE]
        + ["--workers", "0", "--output-dir", str(tmp_path / "net")],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data parallel over 2 devices" in result.stdout
    assert "variables on 2 devices" in result.stdout
    assert "refused: Expected --batch-size divisible by the 2 devices" in result.stdout
    assert (tmp_path / "net" / FINAL_NAME).exists()
