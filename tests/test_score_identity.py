"""Scores belong to the model file they were computed from: recorded, checked by every
reader, computed again by the scoring stage; a model with NaN scores is a failed run."""

import json
import shutil

import keras
import numpy as np
import pytest

from temporal_attention.evaluation.scoring import (
    VideoScores,
    load_metrics,
    load_scores,
    main,
    score_run,
)
from temporal_attention.models.feature_extraction import file_sha256
from temporal_attention.training.runs import Run, TrainConfig
from temporal_attention.training.train_attention import train
from tests.evaluation_fixtures import TINY_MODEL, synthetic_split, write_separable_features


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny appearance run of one epoch, trained once for this file (not scored)."""
    root = tmp_path_factory.mktemp("identity")
    split = synthetic_split(root, clips_per_class=3)
    write_separable_features(root / "store", split)
    config = TrainConfig(epochs=1, validation_fraction=0.0, **TINY_MODEL)
    return train(config, split=split, store_root=root / "store", run_dir=root / "run", verbose=0)


def copy_run(trained: Run, folder) -> Run:
    return Run(shutil.copytree(trained.root, folder))


def test_scores_name_their_model_and_are_stale_once_it_changes(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "appearance")
    model = run.load_model()
    metrics = score_run(run, model=model)
    sha256 = file_sha256(run.model_path)
    assert metrics["model_sha256"] == sha256 and metrics["model_epoch"] == 0
    assert json.loads(run.metrics_path.read_text())["model_sha256"] == sha256
    assert load_scores(run).model_sha256 == sha256 and load_scores(run).model_epoch == 0
    assert load_metrics(run)["accuracy"] == metrics["accuracy"]
    # A second run of the same scores, as the motion stream of the fusion.
    motion = copy_run(run, tmp_path / "motion")
    record = json.loads(motion.config_path.read_text())
    record["train"]["stream"] = "motion"
    motion.config_path.write_text(json.dumps(record))
    # The run trained on (resumed, say): model.keras changes, its scores do not.
    for variable in model.trainable_variables:
        variable.assign(-keras.ops.convert_to_numpy(variable))
    model.save(run.model_path)
    for reader, file in ((load_scores, run.scores_path), (load_metrics, run.metrics_path)):
        with pytest.raises(ValueError, match=f"{file} was computed from another model.keras"):
            reader(run)
    # The scoring stage scores a stale run again rather than fusing it.
    result = main(["--fuse", str(run.root), str(motion.root)])
    assert f"{run.scores_path} was computed from another" in capsys.readouterr().out
    assert load_scores(run).model_sha256 == file_sha256(run.model_path) != sha256
    assert result["appearance"] == VideoScores.load(run.scores_path).accuracy()


def test_a_model_with_nan_scores_is_a_failed_run_and_writes_nothing(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    model = run.load_model()
    for variable in model.trainable_variables:  # a loss gone NaN
        variable.assign(np.full(variable.shape, np.nan, dtype="float32"))
    with pytest.raises(ValueError, match=f"{run.root} is a failed run: .* NaN or inf scores"):
        score_run(run, model=model)
    assert not run.scores_path.exists() and not run.metrics_path.exists()
