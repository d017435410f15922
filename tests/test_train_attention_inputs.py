"""The attention trainer refuses inputs that do not make one run, before it writes
anything, and a fit whose loss is not finite ends as a failed run, never a trained one."""

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.splits import hold_out_validation
from temporal_attention.runtime.config_flags import exit_on_error
from temporal_attention.training.runs import Run, TrainConfig
from temporal_attention.training.train_attention import TrainingDivergedError, main, train
from tests.evaluation_fixtures import TINY_MODEL, synthetic_split, write_separable_features


class FitStarted(Exception):
    """Raised in place of `model.fit`: the trainer got past every check."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    split = synthetic_split(root)
    write_separable_features(root / "store", split)
    return root, split


@pytest.fixture
def no_fit(monkeypatch):
    """`model.fit` raises `FitStarted`: the checks before it run, the training does not."""

    def fit(model, *args, **kwargs):
        raise FitStarted

    monkeypatch.setattr(keras.Model, "fit", fit)


def cli_arguments(root, runs, *extra):
    return [
        "--preset", "tiny", "--epochs", "1",
        "--video-root", str(root / "UCF-101"), "--split-dir", str(root / "ucfTrainTestlist"),
        "--store", str(root / "store"), "--runs", str(runs), *extra,
    ]  # fmt: skip


def exit_status_and_error(argv, capsys):
    """What `python -m training.train_attention <argv>` exits with, and its stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        exit_on_error(main, argv)
    return exited.value.code, capsys.readouterr().err


def rewrite_metadata(store_root, video_id, **changes):
    """Stores a video's features again with other recipe fields (as another extraction
    would have written them)."""
    store = FeatureStore(store_root, dtype="float32")
    features, metadata = store.read(video_id)
    store.write(video_id, features, {**metadata, **changes})
    return store.path_for(video_id)


# === Features of one recipe ===


@pytest.mark.parametrize(
    "part, changes, fields",
    [
        ("test", {"seed": 1}, ["seed 0 vs 1"]),
        ("validation", {"weights": "imagenet", "input_size": 224}, ["weights", "input_size"]),
    ],
)
def test_a_store_of_two_recipes_is_refused_before_anything_is_written(
    dataset, tmp_path, no_fit, part, changes, fields
):
    root, split = dataset
    store = tmp_path / "store"
    write_separable_features(store, split)
    config = TrainConfig(epochs=1, validation_fraction=0.25, **TINY_MODEL)
    train_clips, validation_clips = hold_out_validation(split.train, 0.25, config.seed)
    changed = (split.test if part == "test" else validation_clips)[-1].video_id
    changed_path = rewrite_metadata(store, changed, **changes)
    run_dir = tmp_path / "runs" / "run"
    with pytest.raises(ValueError) as refused:
        train(config, split=split, store_root=store, run_dir=run_dir, verbose=0)
    message = str(refused.value)
    assert str(FeatureStore(store).path_for(train_clips[0].video_id)) in message
    assert str(changed_path) in message
    for field in fields:
        assert field in message
    assert "extract them again into an empty --store folder" in message
    assert not (tmp_path / "runs").exists()  # not even the run folder


def test_an_existing_run_is_kept_when_overwrite_meets_a_mixed_store(dataset, tmp_path, no_fit):
    root, split = dataset
    store = tmp_path / "store"
    write_separable_features(store, split)
    config = TrainConfig(epochs=1, validation_fraction=0.25, **TINY_MODEL)
    run_dir = tmp_path / "run"
    with pytest.raises(FitStarted):
        train(config, split=split, store_root=store, run_dir=run_dir, verbose=0)
    record = (run_dir / "config.json").read_text()
    rewrite_metadata(store, split.test[0].video_id, seed=1)
    with pytest.raises(ValueError, match="mixes features of different recipes"):
        train(config, split=split, store_root=store, run_dir=run_dir, overwrite=True)
    assert (run_dir / "config.json").read_text() == record  # not cleared first


# === Settings that cannot train ===


@pytest.mark.parametrize(
    "name, value",
    [
        ("mixup", float("inf")),
        ("mixup", float("nan")),
        ("learning_rate", float("nan")),
        ("learning_rate", float("inf")),
        ("learning_rate", 0.0),
        ("weight_decay", float("nan")),
        ("weight_decay", float("inf")),
        ("weight_decay", -1e-4),
        ("dropout", float("nan")),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("validation_fraction", float("nan")),
        ("units", 0),
        ("num_layers", 0),
        ("num_steps", 0),
        ("num_frames", 0),
        ("stride", 0),
        ("seed", -1),
    ],
)
def test_config_refuses_settings_that_cannot_train(name, value):
    with pytest.raises(ValueError, match=f"Invalid {name}: expected .* Received: {name}="):
        TrainConfig(**{name: value})


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--mixup", "inf"], "Invalid mixup"),
        (["--learning-rate", "nan"], "Invalid learning_rate"),
        (["--classes", "Alpha"], "at least 2 classes"),
        (["--classes", "Alpha,Gamma"], "Unknown class name"),
    ],
)
def test_cli_refuses_what_cannot_train_in_one_line_writing_nothing(
    dataset, tmp_path, capsys, no_fit, extra, expected
):
    root, _ = dataset
    runs = tmp_path / "runs"
    status, error = exit_status_and_error(cli_arguments(root, runs, *extra), capsys)
    assert status == 2
    assert error.startswith("error: ") and expected in error and error.count("\n") == 1
    assert not runs.exists()  # no config.json, no run folder


def test_a_class_without_training_videos_is_refused(dataset, tmp_path, no_fit):
    root, split = dataset
    config = TrainConfig(epochs=1, validation_fraction=0.25, **TINY_MODEL)
    # Beta's training videos are all in the groups that the validation part holds out.
    _, validation = hold_out_validation(split.train, 0.25, config.seed)
    held = {clip.video_id for clip in validation}
    beta = split.class_names.index("Beta")
    kept = tuple(clip for clip in split.train if clip.label != beta or clip.video_id in held)
    thin = type(split)(split.class_names, kept, split.test)
    with pytest.raises(ValueError, match=r"No training video is left of class\(es\) Beta"):
        train(config, split=thin, store_root=root / "store", run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# === Run folders and their records ===


def test_a_runs_path_that_is_a_file_is_refused_in_one_line(dataset, tmp_path, capsys):
    root, _ = dataset
    runs = tmp_path / "runs.txt"
    runs.write_text("notes\n")
    status, error = exit_status_and_error(cli_arguments(root, runs), capsys)
    assert status == 2
    assert error == (
        f"error: {runs} is a file, not a folder: the run folder "
        f"{runs / 'ucf101/split1/appearance/attention'} cannot be made there. Give --runs "
        "a folder (or a path that does not exist yet).\n"
    )
    assert runs.read_text() == "notes\n"


def test_the_record_holds_absolute_paths_and_old_records_still_load(
    dataset, tmp_path, monkeypatch, no_fit
):
    root, _ = dataset
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(root, tmp_path))  # paths as a user types them
    with pytest.raises(FitStarted):
        main(cli_arguments(relative, "runs"))
    monkeypatch.chdir(root)  # another working folder
    run = Run(tmp_path / "runs/ucf101/split1/appearance/attention")
    record = run.load_config()
    assert record.feature_store == (root / "store").resolve()
    assert record.video_root == (root / "UCF-101").resolve()
    assert record.split_dir == (root / "ucfTrainTestlist").resolve()
    assert FeatureStore(record.feature_store).path_for(record.test_videos[0][0]).is_file()
    # A record written before: the store as given, no video root or split folder.
    old = json.loads(run.config_path.read_text())
    old["feature_store"] = "data/store"
    del old["video_root"], old["split_dir"]
    run.config_path.write_text(json.dumps(old))
    loaded = run.load_config()
    assert loaded.feature_store == Path("data/store")
    assert loaded.video_root is None and loaded.split_dir is None
    assert loaded.train == record.train and loaded.features == record.features


def test_a_validation_part_short_of_a_class_is_warned_about(dataset, tmp_path, capsys, no_fit):
    root, split = dataset
    common = dict(split=split, store_root=root / "store", verbose=0)
    config = TrainConfig(epochs=1, validation_fraction=0.25, **TINY_MODEL)  # 1 video a class
    with pytest.raises(FitStarted):
        train(config, run_dir=tmp_path / "one", **common)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "fewer than 2 videos of 2 class(es) (Alpha: 1, Beta: 1)" in warnings[0]
    enough = TrainConfig(epochs=1, validation_fraction=0.5, **TINY_MODEL)  # 2 a class
    with pytest.raises(FitStarted):
        train(enough, run_dir=tmp_path / "two", **common)
    assert "warning" not in capsys.readouterr().err


# === A loss that is not finite ===


class PoisonAfterEpoch(keras.callbacks.Callback):
    """Sets every weight to NaN at the end of epoch `epoch` (a diverged training)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            for weight in self.model.trainable_weights:
                weight.assign(np.full(weight.shape, np.nan, dtype="float32"))


def test_a_diverged_fit_ends_as_a_failed_run_naming_the_epoch(dataset, tmp_path):
    root, split = dataset
    # Smaller than TINY_MODEL (a short trace): 2 steps over 4-frame samples.
    config = TrainConfig(
        epochs=2, validation_fraction=0.0, units=4, num_layers=1, num_steps=2, num_frames=4,
        stride=20, batch_size=4,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as failed:
        train(
            config,
            split=split,
            store_root=root / "store",
            run_dir=run_dir,
            extra_callbacks=[PoisonAfterEpoch(0)],
            verbose=0,
            jit_compile=False,  # speed only
        )
    assert str(failed.value).startswith(f"{run_dir}: loss became nan in batch 1 of epoch 2 ")
    assert isinstance(failed.value, ValueError)  # the CLI: one error line, exit status 2
    run = Run(run_dir)
    assert (run_dir / "model.keras").is_file()  # epoch 1's, the best so far
    assert not run.is_trained()  # but the run did not finish: nothing scores it
    assert len((run_dir / "history.csv").read_text().splitlines()) == 2  # header, epoch 0
