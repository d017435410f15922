"""The demo pipeline end to end, at a tiny size: every stage runs and writes its results."""

import json

import numpy as np
import pandas as pd
import pytest

from temporal_attention.evaluation import demo, demo_validation
from temporal_attention.evaluation.demo import DemoConfig, main, summarize
from temporal_attention.runtime.jobs import default_workers


@pytest.mark.slow
def test_validation_then_demo_run_every_stage_and_write_tables_and_figures(tmp_path):
    results = tmp_path / "results"
    args = ["--work-dir", str(tmp_path / "work"), "--results-dir", str(results)]
    args += ["--synthetic-preset", "tiny", "--frame-height", "40", "--frame-width", "48"]
    args += ["--input-size", "32", "--units", "8", "--num-steps", "10", "--epochs", "2"]
    args += ["--num-layers", "1", "--batch-size", "4"]
    # One seed (the summary over several: test_summary_gives_mean_and_std_over_seeds).
    args += ["--seeds", "0", "--num-figures", "1"]

    # The settings' check on the validation parts trains every run, scores no test video;
    # it extracts the two streams' features in two processes (jobs=2, the default).
    validation = demo_validation.main(args)
    runs = sorted((tmp_path / "work" / "runs").glob("seed*/*/split1/*/*"))
    assert len(runs) == 4 and all((run / "history.csv").is_file() for run in runs)
    assert not [path for run in runs for path in run.glob("test_scores.npz")]
    rows = validation.set_index(["quantity", "stream", "model"])
    assert rows.loc[("accuracy", "two-stream", "attention"), ["seed 0", "mean"]].between(0, 1).all()
    assert rows.loc[("accuracy", "two-stream", "attention"), "std"] == 0.0  # one seed
    assert rows.loc[("mass / share", "motion", "attention"), "mean"] > 0
    assert ("best of 10 epochs", "motion", "baseline") not in rows.index  # 2 epochs only
    assert (results / "validation.md").is_file()
    histories = {run: (run / "history.csv").read_text() for run in runs}

    # The demo in this process (jobs=1): the same runs, trained already, scored on the test
    # list (two stream processes would each start TensorFlow to find the features done).
    args += ["--jobs", "1"]
    report = main(args)
    assert {run: (run / "history.csv").read_text() for run in runs} == histories

    table = pd.read_csv(results / "table1.csv")
    assert list(table.columns) == ["seed", "stream", "model", "accuracy"]
    assert len(table) == 6 and table["accuracy"].between(0, 1).all()
    assert set(table["stream"]) == {"appearance", "motion", "two-stream"}
    assert set(table["seed"]) == {0}
    markdown = (results / "table1.md").read_text()
    assert "| stream | model | seed 0 | mean | std |" in markdown
    key_frames = json.loads((results / "key_frames.json").read_text())
    for stream in ("appearance", "motion"):
        entry = key_frames["seed 0"][stream]
        assert 0 < entry["key_frame_share"] < 1
        assert 0 <= entry["attention_mass_on_key_frames"] <= 1
        assert entry["ratio"] == pytest.approx(
            entry["attention_mass_on_key_frames"] / entry["key_frame_share"]
        )
    # Attention weights under their final names only: no temporary, no ".npz.npz".
    attention_root = tmp_path / "work" / "attention"
    written = sorted(
        path.relative_to(attention_root).as_posix() for path in attention_root.rglob("*")
    )
    assert written == ["seed0", "seed0/appearance.npz", "seed0/motion.npz"]
    pngs = sorted(path.name for path in (results / "figures").glob("*.png"))
    assert "key_frame_mass.png" in pngs and len(pngs) == 2  # and one Fig. 1 style figure

    # A second run finds every stage done and gives the same results.
    again = main(args)
    pd.testing.assert_frame_equal(again["summary"], report["summary"])


def test_summary_gives_mean_and_std_over_seeds():
    tables = {
        seed: pd.DataFrame(
            [("motion", "baseline", accuracy), ("motion", "attention", accuracy + 0.1)],
            columns=["stream", "model", "accuracy"],
        )
        for seed, accuracy in ((0, 0.5), (1, 0.7))
    }
    stream_report = {"attention_mass_on_key_frames": 0.4, "key_frame_share": 0.2, "ratio": 2.0}
    key_frames = {seed: {"appearance": stream_report, "motion": stream_report} for seed in (0, 1)}
    summary = summarize(tables, key_frames).set_index(["quantity", "stream", "model"])
    row = summary.loc[("accuracy", "motion", "attention")]
    assert row["seed 0"] == pytest.approx(0.6) and row["seed 1"] == pytest.approx(0.8)
    assert row["mean"] == pytest.approx(0.7)
    assert row["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))  # sample std
    assert summary.loc[("ratio", "motion", "attention"), "std"] == 0.0


def test_config_refuses_no_seeds_repeated_seeds_and_no_jobs():
    for bad in ({"seeds": ()}, {"seeds": (0, 0)}, {"jobs": 0}):
        with pytest.raises(ValueError, match="Expected"):
            DemoConfig(**bad)


def test_stream_processes_get_their_share_of_the_cores_as_tensorflow_threads():
    # Each stream job's process starts with limit_threads(threads_per_job): one thread
    # per pool on a 2-core machine with 2 jobs, where the default pools made training
    # 1.5x slower (docs/synthetic_and_demo.md).
    import os
    import subprocess
    import sys

    assert demo.threads_per_job(DemoConfig(jobs=2)) == max(1, default_workers() // 2)
    assert demo.threads_per_job(DemoConfig(jobs=5)) == max(1, default_workers() // 2)
    assert demo.threads_per_job(DemoConfig(jobs=1)) == default_workers()
    code = (
        "from temporal_attention.evaluation.demo import limit_threads; limit_threads(1); "
        "import tensorflow as tf; "
        "print(tf.config.threading.get_intra_op_parallelism_threads(), "
        "tf.config.threading.get_inter_op_parallelism_threads())"
    )
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    printed = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    ).stdout.split()
    assert printed == ["1", "1"]


def test_a_run_counts_as_scored_only_with_metrics_of_its_current_model(tmp_path):
    import json

    from temporal_attention.evaluation.demo import is_scored
    from temporal_attention.models.feature_extraction import file_sha256
    from tests.evaluation_fixtures import write_scored_run

    run = write_scored_run(tmp_path)
    assert not is_scored(run)  # scores, but no metrics
    metrics = {"accuracy": 1.0, "model_sha256": file_sha256(run.model_path)}
    run.metrics_path.write_text(json.dumps(metrics))
    assert is_scored(run)
    run.model_path.write_bytes(b"the model of a resumed run")  # trained on since
    assert not is_scored(run)  # scored again by the demo, not read as the new model's
