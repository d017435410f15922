"""Fine-tuning resumes only what is the same: an output folder holds one schedule's
model. Other settings, a shorter schedule, or a damaged checkpoint are refused before
anything is written; a finished fine-tune rerun is left byte for byte as it was."""

import dataclasses
import json

import keras
import pytest

from temporal_attention.models.two_stream_vgg16 import build_stream_vgg16
from temporal_attention.training.finetune_convnet import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    LOG_NAME,
    SETTINGS_NAME,
    finetune,
    training_batches,
)
from tests.test_finetune_convnet import generated_videos, tiny_config

FILES = (CHECKPOINT_NAME, FINAL_NAME, LOG_NAME, SETTINGS_NAME)


def small_network(config) -> keras.Model:
    """A VGG16 of 1/16 the widths: what the checks do, not what the network learns."""
    keras.utils.set_random_seed(7)
    return build_stream_vgg16(
        config.stream,
        num_classes=3,
        weights=None,
        input_size=32,
        fc_units=8,
        width_multiplier=0.0625,
        dropout_rates=(config.dropout_fc6, config.dropout_fc7),
        weight_decay=config.weight_decay,
        seed=config.seed,
    )


def run_finetune(config, output_dir):
    clips = generated_videos(config.stream)
    return finetune(
        small_network(config), training_batches(clips, config), config, output_dir, progress=False
    )


def folder_bytes(folder):
    return {name: (folder / name).read_bytes() for name in FILES if (folder / name).exists()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder fine-tuned to its end (4 iterations), and the settings that made it."""
    config = tiny_config(max_iterations=4, checkpoint_every=2)
    folder = tmp_path_factory.mktemp("finished")
    run_finetune(config, folder)
    return config, folder


def copy_of(folder, tmp_path):
    for name, data in folder_bytes(folder).items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_a_rerun_with_other_settings_is_refused_naming_each_and_keeps_the_folder(
    finished, tmp_path
):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    before = folder_bytes(folder)
    other = dataclasses.replace(config, learning_rate=0.02, batch_size=12, max_iterations=6)
    with pytest.raises(ValueError) as refusal:
        run_finetune(other, folder)
    message = str(refusal.value)
    assert "\n" not in message and str(folder) in message
    assert "learning_rate=0.01, batch_size=24" in message  # the folder's
    assert "learning_rate=0.02, batch_size=12" in message  # this run's
    assert "--learning-rate 0.01 --batch-size 24" in message
    assert "another --output-dir" in message and f"remove {folder}" in message
    assert folder_bytes(folder) == before


def test_flags_that_do_not_shape_the_model_are_not_recorded(finished):
    config, folder = finished
    recorded = json.loads((folder / SETTINGS_NAME).read_text())
    assert recorded["learning_rate"] == config.learning_rate
    assert recorded["batch_size"] == config.batch_size and recorded["seed"] == config.seed
    assert "checkpoint_every" not in recorded and "max_iterations" not in recorded
    assert recorded["final"]["iteration"] == config.max_iterations


def test_a_shorter_schedule_than_the_folders_is_refused(finished, tmp_path):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    before = folder_bytes(folder)
    shorter = dataclasses.replace(config, max_iterations=2)
    with pytest.raises(ValueError, match=r"4 iterations.*--max-iterations 2.*another --output-dir"):
        run_finetune(shorter, folder)
    (folder / FINAL_NAME).unlink()  # the checkpoint alone says so too
    with pytest.raises(ValueError, match=r"4 iterations.*--max-iterations 2"):
        run_finetune(shorter, folder)
    assert folder_bytes(folder) == {k: v for k, v in before.items() if k != FINAL_NAME}


def test_a_finished_fine_tune_rerun_changes_nothing(finished, tmp_path, capsys):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    before = folder_bytes(folder)
    rerun = dataclasses.replace(config, checkpoint_every=1)  # not a setting of the model
    assert run_finetune(rerun, folder) == folder / FINAL_NAME
    assert "complete" in capsys.readouterr().out
    assert folder_bytes(folder) == before


def test_a_damaged_checkpoint_is_named_with_what_to_do(finished, tmp_path):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    checkpoint = folder / CHECKPOINT_NAME
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated, as by a full disk
    longer = dataclasses.replace(config, max_iterations=5)
    with pytest.raises(ValueError, match=rf"{CHECKPOINT_NAME} .*damaged.*[Rr]emove it"):
        run_finetune(longer, folder)


def test_a_damaged_final_network_is_named_with_what_to_do(finished, tmp_path):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    final = folder / FINAL_NAME
    final.write_bytes(final.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"{FINAL_NAME} .*damaged.*[Rr]emove it"):
        run_finetune(config, folder)
    final.unlink()  # as the message says: written again from the checkpoint
    assert run_finetune(config, folder).exists()
    recorded = json.loads((folder / SETTINGS_NAME).read_text())["final"]
    assert recorded["iteration"] == 4


def test_a_longer_schedule_trains_on_and_records_the_new_final_network(finished, tmp_path):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    before = folder_bytes(folder)
    longer = dataclasses.replace(config, max_iterations=5)
    run_finetune(longer, folder)
    assert (folder / FINAL_NAME).read_bytes() != before[FINAL_NAME]
    assert json.loads((folder / SETTINGS_NAME).read_text())["final"]["iteration"] == 5
    log_rows = (folder / LOG_NAME).read_text().strip().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in log_rows] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match=r"5 iterations.*--max-iterations 4"):
        run_finetune(config, folder)  # the 4-iteration model is no longer the folder's


def test_damaged_settings_are_named_with_what_to_do(finished, tmp_path):
    config, folder = finished
    folder = copy_of(folder, tmp_path)
    settings = folder / SETTINGS_NAME
    settings.write_text(settings.read_text()[:40])  # cut short
    with pytest.raises(ValueError, match=rf"{SETTINGS_NAME} is damaged.*[Rr]emove {folder}"):
        run_finetune(config, folder)
