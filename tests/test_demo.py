"""The demo pipeline end to end, at a tiny size: every stage runs and writes its results."""

import json

import pandas as pd
import pytest

from evaluation.demo import main


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_table_and_figures(tmp_path):
    results = tmp_path / "results"
    args = ["--work-dir", str(tmp_path / "work"), "--results-dir", str(results)]
    args += ["--synthetic-preset", "tiny", "--frame-height", "40", "--frame-width", "48"]
    args += ["--input-size", "32", "--fc-units", "16", "--finetune-iterations", "2"]
    args += ["--finetune-batch-size", "4", "--units", "8", "--epochs", "1", "--batch-size", "4"]
    args += ["--num-figures", "1"]
    report = main(args)

    table = pd.read_csv(results / "table1.csv")
    assert list(table.columns) == ["stream", "model", "accuracy"]
    assert len(table) == 6 and table["accuracy"].between(0, 1).all()
    assert set(table["stream"]) == {"appearance", "motion", "two-stream"}
    assert (results / "table1.md").read_text().startswith("| stream | model | accuracy |")
    key_frames = json.loads((results / "key_frames.json").read_text())
    for stream in ("appearance", "motion"):
        assert 0 < key_frames[stream]["key_frame_share"] < 1
        assert 0 <= key_frames[stream]["attention_mass_on_key_frames"] <= 1
    assert report["key_frames"] == key_frames
    pngs = sorted(path.name for path in (results / "figures").glob("*.png"))
    assert "key_frame_mass.png" in pngs and len(pngs) == 2  # and one Fig. 1 style figure

    # A second run finds every stage done and gives the same table.
    again = main(args)
    pd.testing.assert_frame_equal(again["table"], report["table"])
