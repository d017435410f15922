"""Training runs from the feature store: run folder, best checkpoint, resume, CLI, and one
trainer per run folder."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.samples import sample_starts
from temporal_attention.data.splits import Clip, video_group
from temporal_attention.evaluation.scoring import VideoScores, score_run
from temporal_attention.models.recognizer import NORMALIZATION_LAYER
from temporal_attention.runtime.config_flags import exit_on_error
from temporal_attention.runtime.summaries import read_scalars
from temporal_attention.training.runs import Run, TrainConfig
from temporal_attention.training.train_attention import (
    BestCheckpoint,
    ModelCache,
    backed_up_epochs,
    feature_statistics,
    hold_out_validation,
    main,
    train,
)
from tests.evaluation_fixtures import (
    TINY_MODEL,
    synthetic_split,
    write_separable_features,
)

REPO = Path(__file__).resolve().parents[1]


class StopAfterEpoch(keras.callbacks.Callback):
    """Simulates a killed run: raises at the end of epoch `epoch` (0-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated interruption")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    split = synthetic_split(root)
    write_separable_features(root / "store", split)
    return root, split


@pytest.fixture(scope="module")
def models():
    """One `ModelCache` for the tests whose subject is a run folder (resume, best epoch,
    patience, scaling, stride, mixup, recipes), so that each architecture is traced once
    in this file. A cached model trains as a new one, bit for bit
    (`test_a_cached_model_trains_as_a_new_model_of_its_seed`); the uncached path is
    trained by the run-folder test and the CLI tests."""
    return ModelCache()


def _clips(names_and_labels):
    return [Clip(name, Path(f"{name}.avi"), label) for name, label in names_and_labels]


def test_hold_out_by_group_keeps_ucf101_groups_whole_in_every_class():
    clips = _clips(
        (f"{name}/v_{name}_g{group:02d}_c{index:02d}", label)
        for label, name in enumerate(["Punch", "PushUps"])
        for group in range(8, 26)  # split 1's training groups
        for index in range(1, 4 + label)
    )
    train_clips, validation = hold_out_validation(clips, 0.1, seed=0)
    held = {video_group(clip.video_id) for clip in validation}
    assert len(held) == 2  # round(0.1 * 18 groups)
    assert {video_group(clip.video_id) for clip in train_clips}.isdisjoint(held)
    for label in (0, 1):  # the same group numbers leave every class, whole
        groups = {video_group(c.video_id) for c in validation if c.label == label}
        assert groups == held
    assert len(train_clips) + len(validation) == len(clips)
    other, _ = hold_out_validation(clips, 0.1, seed=1)
    assert other != train_clips  # the seed chooses the groups
    by_video = hold_out_validation(clips, 0.1, seed=0, by="video")[1]
    assert len({video_group(clip.video_id) for clip in by_video}) > 2  # scattered


def test_hold_out_by_group_falls_back_to_videos_without_groups():
    clips = _clips((f"wave/clip_{index}_wave_u_nm_np1_fr_med_{index}", 0) for index in range(10))
    train_clips, validation = hold_out_validation(clips, 0.2, seed=0)
    assert len(validation) == 2 and len(train_clips) == 8
    with pytest.raises(ValueError, match="by"):
        hold_out_validation(clips, 0.2, by="actor")


def test_hold_out_is_by_video_per_class_and_seeded(dataset):
    _, split = dataset
    train_clips, validation = hold_out_validation(split.train, 0.25, seed=3)
    assert {clip.label for clip in validation} == {0, 1}  # one per class
    assert len(validation) == 2 and len(train_clips) == len(split.train) - 2
    assert not {c.video_id for c in validation} & {c.video_id for c in train_clips}
    again, _ = hold_out_validation(split.train, 0.25, seed=3)
    assert [c.video_id for c in again] == [c.video_id for c in train_clips]
    assert hold_out_validation(split.train, 0.0)[1] == []


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="stream"):
        TrainConfig(stream="depth")
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainConfig(validation_fraction=1.0)
    with pytest.raises(ValueError, match="validation_by"):
        TrainConfig(validation_by="actor")


def test_run_folder_holds_config_model_history_and_scores(dataset, tmp_path):
    root, split = dataset
    config = TrainConfig(model="baseline", epochs=3, validation_fraction=0.25, **TINY_MODEL)
    run_dir = Run.for_config(tmp_path / "runs", config).root
    assert run_dir == tmp_path / "runs/ucf101/split1/appearance/baseline"
    run = train(config, split=split, store_root=root / "store", run_dir=run_dir, verbose=0)
    metrics = score_run(run)
    for name in ("config.json", "model.keras", "history.csv", "metrics.json", "test_scores.npz"):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "config.json").read_text())
    assert record["train"]["model"] == "baseline" and record["precision"] == "float32"
    assert record["features"]["stream"] == "appearance"
    assert len(record["test_videos"]) == len(split.test)
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [0, 1, 2]
    scores = VideoScores.load(run_dir / "test_scores.npz")
    assert scores.scores.shape == (len(split.test), 2)
    np.testing.assert_allclose(scores.scores.sum(axis=1), 1.0, rtol=1e-5)
    assert metrics["accuracy"] == scores.accuracy()
    assert np.sum(metrics["confusion_matrix"]) == len(split.test)
    # A finished run is not trained again.
    again = score_run(
        train(config, split=split, store_root=root / "store", run_dir=run_dir, verbose=0)
    )
    assert again == metrics and len(pd.read_csv(run_dir / "history.csv")) == 3


@pytest.mark.multibackend
def test_mixed_bfloat16_trains_records_its_policy_and_logs_to_tensorboard(dataset, tmp_path):
    """`--precision mixed_bfloat16`: the layers compute in bfloat16, the softmax in
    float32; the record names the policy; the global policy is left as it was; and
    Keras' TensorBoard callback writes the epochs' scalars on every backend."""
    root, split = dataset
    config = TrainConfig(epochs=2, validation_fraction=0.25, **TINY_MODEL)
    before = keras.config.dtype_policy().name
    run = train(
        config,
        split=split,
        store_root=root / "store",
        run_dir=tmp_path / "run",
        verbose=0,
        precision="mixed_bfloat16",
    )
    assert keras.config.dtype_policy().name == before
    assert json.loads(run.config_path.read_text())["precision"] == "mixed_bfloat16"
    model = run.load_model()
    assert model.get_layer("temporal_attention_lstm").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("classifier").dtype_policy.name == "float32"
    history = pd.read_csv(run.history_path)
    assert len(history) == 2 and np.isfinite(history["loss"]).all()
    score_run(run, model=model)
    scores = VideoScores.load(run.scores_path).scores
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-3)
    for part in ("train", "validation"):
        scalars = read_scalars(run.tensorboard_dir / part)
        assert [step for step, _ in scalars["epoch_loss"]] == [0, 1], (part, scalars)
    losses = [value for _, value in read_scalars(run.tensorboard_dir / "train")["epoch_loss"]]
    np.testing.assert_allclose(losses, history["loss"], rtol=1e-5)


@pytest.fixture(scope="module")
def interrupted_run(dataset, models, tmp_path_factory):
    """A run of 3 epochs (with a validation part) killed after its epoch 1, trained once
    for this file: each resume test resumes a copy of the folder (`resumable_copy`)."""
    root, split = dataset
    config = TrainConfig(epochs=3, validation_fraction=0.25, **TINY_MODEL)
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        train(
            config,
            split=split,
            store_root=root / "store",
            run_dir=run_dir,
            extra_callbacks=[StopAfterEpoch(1)],
            models=models,
            verbose=0,
        )
    return config, run_dir


def resumable_copy(interrupted_run, tmp_path):
    config, run_dir = interrupted_run
    return config, Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_interrupted_run_resumes_from_last_epoch(dataset, interrupted_run, models, tmp_path):
    root, split = dataset
    config, run_dir = resumable_copy(interrupted_run, tmp_path)
    assert (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists()
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [0, 1]
    common = dict(split=split, store_root=root / "store", run_dir=run_dir, verbose=0)
    score_run(train(config, models=models, **common))
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [0, 1, 2]  # not 0, 1, 0, 1, 2
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "backup").exists()
    # Other settings in the same folder are refused, not mixed.
    with pytest.raises(ValueError, match="other settings"):
        train(
            dataclasses.replace(config, units=4),
            split=split,
            store_root=root / "store",
            run_dir=run_dir,
            verbose=0,
        )


def test_a_cache_that_resumed_a_run_trains_the_next_one_from_its_first_epoch(
    dataset, interrupted_run, tmp_path
):
    """Keras' BackupAndRestore leaves the resumed epoch on the model; a cached model
    that resumed a run must not start the next run there (it would skip epochs)."""
    root, split = dataset
    config, run_dir = resumable_copy(interrupted_run, tmp_path)
    common = dict(split=split, store_root=root / "store", verbose=0)
    cache = ModelCache()
    train(config, run_dir=run_dir, models=cache, **common)  # resumed at epoch 2
    after = train(config, run_dir=tmp_path / "after", models=cache, **common)
    alone = train(config, run_dir=tmp_path / "alone", **common)
    assert list(pd.read_csv(after.history_path)["epoch"]) == [0, 1, 2]
    pd.testing.assert_frame_equal(pd.read_csv(after.history_path), pd.read_csv(alone.history_path))


def test_a_resume_keeps_the_best_epoch(dataset, interrupted_run, models, tmp_path):
    root, split = dataset
    config, run_dir = resumable_copy(interrupted_run, tmp_path)  # killed after epoch 1
    common = dict(split=split, store_root=root / "store", run_dir=run_dir, verbose=0)
    # Say the epochs so far were perfect: no later epoch can beat them, so the model
    # they saved must stay (before, the first epoch after a resume always replaced it).
    history = pd.read_csv(run_dir / "history.csv")
    history["val_last_steps_accuracy"] = 1.0
    history.to_csv(run_dir / "history.csv", index=False)
    saved = (run_dir / "model.keras").read_bytes()
    train(config, models=models, **common)
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [0, 1, 2]
    assert (run_dir / "model.keras").read_bytes() == saved


def test_a_fit_stopped_before_its_backup_runs_that_epoch_again_and_logs_it_once(
    dataset, models, monkeypatch, tmp_path
):
    """Stopped after epoch 1 is logged and checkpointed but before it is backed up: the
    resume runs epoch 1 again, and the history holds each epoch once."""
    root, split = dataset
    config = TrainConfig(epochs=3, validation_fraction=0.25, **TINY_MODEL)
    common = dict(split=split, store_root=root / "store", run_dir=tmp_path / "run", verbose=0)
    backup = keras.callbacks.BackupAndRestore._save_model

    def stop_before_the_second_backup(callback):
        if callback._current_epoch == 2:
            raise KeyboardInterrupt("stopped before the backup of epoch 1")
        backup(callback)

    with monkeypatch.context() as patch:
        patch.setattr(
            keras.callbacks.BackupAndRestore, "_save_model", stop_before_the_second_backup
        )
        with pytest.raises(KeyboardInterrupt):
            train(config, models=models, **common)
    run = Run(tmp_path / "run")
    assert list(pd.read_csv(run.history_path)["epoch"]) == [0, 1] and backed_up_epochs(run) == 1
    train(config, models=models, **common)
    assert list(pd.read_csv(run.history_path)["epoch"]) == [0, 1, 2]  # not 0, 1, 1, 2


def test_a_checkpoint_stopped_while_it_saves_leaves_the_previous_model_whole(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    checkpoint = BestCheckpoint(tmp_path / "model.keras", "accuracy")
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"accuracy": 0.5})
    saved = (tmp_path / "model.keras").read_bytes()
    checkpoint.on_epoch_end(1, {"accuracy": 0.5})  # a tie keeps the earlier epoch
    checkpoint.on_epoch_end(2, {"accuracy": float("nan")})
    assert (tmp_path / "model.keras").read_bytes() == saved

    def save_half_then_stop(path, *args, **kwargs):
        Path(path).write_bytes(saved[: len(saved) // 2])
        raise KeyboardInterrupt

    model.save = save_half_then_stop
    with pytest.raises(KeyboardInterrupt):
        checkpoint.on_epoch_end(3, {"accuracy": 0.9})
    assert (tmp_path / "model.keras").read_bytes() == saved
    assert [path.name for path in tmp_path.iterdir()] == ["model.keras"]  # no temporary left
    keras.saving.load_model(tmp_path / "model.keras")


def test_a_trained_run_is_not_trained_again_before_or_after_scoring(dataset, tmp_path):
    """The CLI trains with a preset and flags; a trained run is not trained again."""
    root, _ = dataset
    argv = [
        "--preset", "tiny", "--epochs", "1", "--model", "attention", "--classes", "Beta,Alpha",
        "--video-root", str(root / "UCF-101"), "--split-dir", str(root / "ucfTrainTestlist"),
        "--store", str(root / "store"), "--runs", str(tmp_path),
    ]  # fmt: skip
    trained = main(argv)
    assert trained.root == tmp_path / "ucf101/split1/appearance/attention"
    assert json.loads(trained.config_path.read_text())["train"]["epochs"] == 1  # the flag
    model = trained.model_path.read_bytes()
    # An interrupted scoring leaves no metrics: the run is trained, not retrained.
    assert main(argv).root == trained.root and not trained.metrics_path.exists()
    assert 0.0 <= score_run(trained)["accuracy"] <= 1.0
    assert main(argv).root == trained.root  # the same --classes: nothing to do
    assert trained.model_path.read_bytes() == model
    assert len(pd.read_csv(trained.history_path)) == 1


def test_bad_features_stop_the_run_before_training(dataset, tmp_path):
    from temporal_attention.data.npz_files import read_npz, write_npz

    root, split = dataset
    store = tmp_path / "store"
    write_separable_features(store, split)
    bad = FeatureStore(store).path_for(split.test[0].video_id)
    arrays, metadata = read_npz(bad)
    arrays["features"][3, 2] = np.nan  # written by something other than FeatureStore.write
    write_npz(bad, arrays, metadata)
    config = TrainConfig(epochs=1, validation_fraction=0.25, **TINY_MODEL)
    with pytest.raises(ValueError, match=f"(?s)1 feature file.*{split.test[0].video_id}.*NaN"):
        train(config, split=split, store_root=store, run_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "history.csv").exists()


def test_features_of_another_recipe_are_refused_in_a_trained_run(dataset, models, tmp_path):
    root, split = dataset
    config = TrainConfig(epochs=1, validation_fraction=0.25, **TINY_MODEL)
    store = tmp_path / "store"
    write_separable_features(store, split)
    train(config, split=split, store_root=store, run_dir=tmp_path / "run", models=models, verbose=0)
    features = FeatureStore(store, dtype="float32")
    for clip in split.train + split.test:  # extracted again with another network
        values, metadata = features.read(clip.video_id)
        features.write(clip.video_id, values, {**metadata, "weights": "other.keras"})
    with pytest.raises(ValueError, match="features differ"):
        train(config, split=split, store_root=store, run_dir=tmp_path / "run", verbose=0)
    with pytest.raises(ValueError, match="another recipe than the features"):
        score_run(tmp_path / "run")  # nor scored on them


class PauseAtTrainBegin(keras.callbacks.Callback):
    """Holds a trainer inside `model.fit` until `resume` is set."""

    def __init__(self):
        super().__init__()
        self.started, self.resume = threading.Event(), threading.Event()

    def on_train_begin(self, logs=None):
        self.started.set()
        self.resume.wait(60)


def test_a_second_trainer_of_a_busy_run_folder_is_refused(dataset, tmp_path):
    root, split = dataset
    config = TrainConfig(epochs=1, **TINY_MODEL)
    run_dir = tmp_path / "run"
    pause = PauseAtTrainBegin()
    first = threading.Thread(
        target=train,
        args=(config,),
        kwargs=dict(
            split=split,
            store_root=root / "store",
            run_dir=run_dir,
            extra_callbacks=[pause],
            verbose=0,
        ),
    )
    first.start()
    try:
        assert pause.started.wait(60)
        busy = (
            f"{run_dir} is being trained by process {os.getpid()}; wait for it or use another "
            "--runs folder"
        )
        with pytest.raises(ValueError) as refused:
            train(config, split=split, store_root=root / "store", run_dir=run_dir, verbose=0)
        assert str(refused.value) == busy
        with pytest.raises(ValueError, match="is being trained by"):  # --overwrite too
            train(config, split=split, store_root=root / "store", run_dir=run_dir, overwrite=True)
    finally:
        pause.resume.set()
        first.join(60)
    assert Run(run_dir).is_trained() and not (run_dir / Run.LOCK).exists()


def test_a_lock_left_by_a_killed_trainer_is_taken_over(tmp_path):
    run = Run(tmp_path / "run")
    run.root.mkdir()
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    run.lock_path.write_text(f"{killed.pid}\n")  # what a SIGKILLed trainer leaves
    with run.training_lock():  # what train() takes first
        assert run.lock_path.read_text() == f"{os.getpid()}\n"
    assert not run.lock_path.exists()


HOLD_RUN_FOLDER = (
    "import sys, time; from temporal_attention.training.runs import Run; "
    "lock = Run(sys.argv[1]).training_lock(); lock.__enter__(); print('held', flush=True); "
    "time.sleep(60)"
)


def test_cli_refuses_a_busy_run_folder_in_one_line_and_exits_2(dataset, tmp_path, capsys):
    root, _ = dataset
    run_dir = tmp_path / "ucf101/split1/appearance/attention"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_FOLDER, str(run_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SystemExit) as exited:  # as `python -m training.train_attention`
            exit_on_error(
                main,
                [
                    "--preset", "tiny", "--epochs", "1",
                    "--video-root", str(root / "UCF-101"),
                    "--split-dir", str(root / "ucfTrainTestlist"),
                    "--store", str(root / "store"), "--runs", str(tmp_path),
                ],
            )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {run_dir} is being trained by process {holder.pid}; wait for it or use "
        "another --runs folder\n"
    )
    assert not (run_dir / "config.json").exists()  # nothing of the busy run was touched


def test_patience_stops_where_an_uninterrupted_run_would_after_a_resume(dataset, models, tmp_path):
    root, split = dataset
    config = TrainConfig(epochs=4, patience=2, validation_fraction=0.25, **TINY_MODEL)
    common = dict(split=split, store_root=root / "store", models=models, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "run", extra_callbacks=[StopAfterEpoch(0)], **common)
    # Say epoch 0 was perfect: no later epoch beats it, so the fit must stop at epoch 2
    # (2 epochs without progress), counting epoch 0 from before the resume.
    history = pd.read_csv(tmp_path / "run/history.csv")
    history["val_last_steps_accuracy"] = 1.0
    history.to_csv(tmp_path / "run/history.csv", index=False)
    run = train(config, run_dir=tmp_path / "run", **common)
    assert list(pd.read_csv(run.history_path)["epoch"]) == [0, 1, 2]
    assert run.is_trained()
    unlimited = train(dataclasses.replace(config, patience=0), run_dir=tmp_path / "all", **common)
    assert len(pd.read_csv(unlimited.history_path)) == 4


def test_standardize_normalises_with_the_training_part_only(dataset, models, tmp_path):
    root, split = dataset
    config = TrainConfig(
        epochs=1, feature_scaling="standardize", validation_fraction=0.25, **TINY_MODEL
    )
    common = dict(split=split, store_root=root / "store", models=models, verbose=0)
    run = train(config, run_dir=tmp_path, **common)
    record = run.load_config()
    store = FeatureStore(root / "store")
    train_clips = [
        clip for clip in split.train if (clip.video_id, clip.label) in record.train_videos
    ]
    mean, variance = feature_statistics(store, train_clips)
    layer = run.load_model().get_layer(NORMALIZATION_LAYER)
    np.testing.assert_allclose(np.ravel(layer.mean), mean, rtol=1e-6)
    np.testing.assert_allclose(np.ravel(layer.variance), variance, rtol=1e-6)
    everything, _ = feature_statistics(store, split.train + split.test)
    assert not np.allclose(everything, mean)  # validation and test videos left out
    frames = np.concatenate([store.read(clip.video_id)[0] for clip in train_clips])
    np.testing.assert_allclose(mean, frames.mean(axis=0), atol=1e-5)
    score_run(run)  # the saved model scores raw stored features
    assert json.loads(run.metrics_path.read_text())["accuracy"] >= 0.0


def test_a_cached_model_trains_as_a_new_model_of_its_seed(dataset, tmp_path):
    """With standardised features: the cached model's normalisation is set again for
    each run, besides its weights (without it, the same model minus that layer)."""
    root, split = dataset
    feature_scaling = "standardize"
    common = dict(split=split, store_root=root / "store", verbose=0)
    config = TrainConfig(
        epochs=2, validation_fraction=0.0, feature_scaling=feature_scaling, **TINY_MODEL
    )
    cache = ModelCache()
    train(config, run_dir=tmp_path / "seed0", models=cache, **common)
    second = dataclasses.replace(config, seed=1)
    reused = train(second, run_dir=tmp_path / "reused", models=cache, **common)
    new = train(second, run_dir=tmp_path / "new", **common)
    assert len(cache) == 1  # one architecture, the same training part: one model
    pd.testing.assert_frame_equal(pd.read_csv(reused.history_path), pd.read_csv(new.history_path))
    for kept, built in zip(reused.load_model().weights, new.load_model().weights, strict=True):
        np.testing.assert_array_equal(*map(keras.ops.convert_to_numpy, (kept, built)))
    # Another architecture gets its own model.
    other = dataclasses.replace(second, model="baseline")
    train(other, run_dir=tmp_path / "baseline", models=cache, **common)
    assert len(cache) == 2
    # A run's best epoch, put back into the model that trained it (which has trained
    # another seed since), scores as its saved file does.
    train(dataclasses.replace(config, seed=2), run_dir=tmp_path / "seed2", models=cache, **common)
    score_run(reused, model=cache.best(reused))
    from_cache = VideoScores.load(reused.scores_path)
    score_run(reused)  # model.keras, loaded
    np.testing.assert_allclose(
        from_cache.scores, VideoScores.load(reused.scores_path).scores, rtol=1e-5, atol=1e-7
    )
    assert isinstance(ModelCache().best(reused), keras.Model)  # not its cache's: loaded


class EpochSteps(keras.callbacks.Callback):
    """Records the training steps of an epoch, as `model.fit` counts them."""

    def on_train_begin(self, logs=None):
        self.steps = self.params["steps"]


def test_train_stride_overlaps_the_training_samples_only(dataset, models, tmp_path):
    root, split = dataset
    store = FeatureStore(root / "store")
    config = TrainConfig(epochs=1, train_stride=2, validation_fraction=0.25, **TINY_MODEL)
    counter = EpochSteps()
    run = train(
        config,
        split=split,
        store_root=root / "store",
        run_dir=tmp_path / "run",
        extra_callbacks=[counter],
        models=models,
        verbose=0,
    )
    record = run.load_config()
    assert record.train.train_stride == 2

    def samples(videos, stride):
        frames = [store.read_metadata(video)["num_frames"] for video, _ in videos]
        return sum(len(sample_starts(n, config.num_frames, stride)) for n in frames)

    overlapping = samples(record.train_videos, 2)
    assert overlapping > samples(record.train_videos, config.stride)
    assert counter.steps == -(-overlapping // config.batch_size)
    with pytest.raises(ValueError, match="train_stride"):
        TrainConfig(train_stride=0)


def test_mixup_trains_on_mixed_samples_and_validates_on_plain_ones(dataset, models, tmp_path):
    root, split = dataset
    config = TrainConfig(epochs=1, mixup=0.4, validation_fraction=0.25, **TINY_MODEL)
    seen = {}  # the first batch of what model.fit is given to train and to validate on
    original_fit = keras.Model.fit

    def fit(model, data, **kwargs):
        seen["train"] = data[0]
        seen["validation"] = kwargs["validation_data"][0]
        return original_fit(model, data, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", fit)
        run = train(
            config,
            split=split,
            store_root=root / "store",
            run_dir=tmp_path / "run",
            models=models,
            verbose=0,
        )
    assert run.load_config().train.mixup == 0.4 and run.is_trained()
    train_targets, validation_labels = seen["train"][1], seen["validation"][1]
    assert train_targets.ndim == 3 and train_targets.shape[1] == 1  # class distributions
    assert ((train_targets > 0) & (train_targets < 1)).any()  # some samples are mixed
    assert validation_labels.ndim == 1  # the validation part is scored as it is
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(mixup=-0.1)
