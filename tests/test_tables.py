"""Tables 1-3 built from fixture run folders (test_scores.npz written by hand)."""

import numpy as np
import pandas as pd

from evaluation.scoring import VideoScores
from evaluation.tables import NO_RUN, find_runs, main, to_latex, to_markdown

NAMES = ("A", "B")
IDS = ("A/v1", "A/v2", "B/v1", "B/v2")
LABELS = np.array([0, 0, 1, 1])


def write_run(root, dataset, split, stream, model, correct):
    """A scored run whose first `correct` of 4 videos are right."""
    scores = np.array([[0.8, 0.2], [0.8, 0.2], [0.2, 0.8], [0.2, 0.8]])
    scores[correct:] = scores[correct:, ::-1]
    VideoScores(IDS, LABELS, scores, NAMES).save(
        root / dataset / f"split{split}" / stream / model / "test_scores.npz"
    )


def test_table1_measured_cells_mean_over_splits_and_say_which(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ucf101", 1, "appearance", "attention", correct=4)  # 100%
    write_run(runs, "ucf101", 2, "appearance", "attention", correct=2)  # 50%
    write_run(runs, "ucf101", 1, "motion", "attention", correct=3)  # 75%
    assert len(find_runs(runs)) == 3
    tables = main(["--runs", str(runs), "--output", str(tmp_path / "out")])
    table = tables["table1"].set_index("Model")
    assert table.loc["appearance stream attention", "UCF101 measured"] == "75.0 (splits 1, 2)"
    assert table.loc["appearance stream attention", "UCF101 paper"] == "84.2"
    assert table.loc["appearance stream attention", "UCF101 difference"] == "-9.2"
    assert table.loc["motion stream attention", "UCF101 measured"] == "75.0 (split 1)"
    # Two-stream of split 1: the last video is wrong in motion (0.8 for A) and right in
    # appearance (0.8 for B): 1/3 * 0.8 + 2/3 * 0.2 = 0.4 for B, so wrong: 3 of 4.
    assert table.loc["two-stream attention", "UCF101 measured"] == "75.0 (split 1)"
    # Missing runs say so and are never filled with the paper's number.
    assert table.loc["appearance stream baseline", "UCF101 measured"] == NO_RUN
    assert table.loc["appearance stream baseline", "UCF101 difference"] == ""
    assert table.loc["two-stream attention", "HMDB51 measured"] == NO_RUN
    assert table.loc["two-stream attention", "HMDB51 paper"] == "65.0"
    for name in ("table1", "table2", "table3"):
        for suffix in ("md", "csv", "tex"):
            assert (tmp_path / "out" / f"{name}.{suffix}").is_file()
    csv = pd.read_csv(tmp_path / "out" / "table1.csv", keep_default_na=False)
    assert list(csv["UCF101 measured"]) == list(tables["table1"]["UCF101 measured"])


def test_tables_2_and_3_keep_paper_rows_and_add_the_measured_row(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "hmdb51", 1, "appearance", "attention", correct=4)
    write_run(runs, "hmdb51", 1, "motion", "attention", correct=4)
    tables = main(["--runs", str(runs), "--output", str(tmp_path / "out")])
    table2 = tables["table2"].set_index("Model")
    assert table2.loc["Spatial appearance attention [24]", "UCF101"] == "N/A"
    assert table2.loc["Our method (paper)", "HMDB51"] == "65.0"
    assert table2.loc["This implementation (measured)", "HMDB51"] == "100.0 (split 1)"
    assert table2.loc["This implementation (measured)", "UCF101"] == NO_RUN
    table3 = tables["table3"].set_index("Model")
    assert len(table3) == 11 and table3.loc["iDT [3]", "HMDB51"] == "57.2"
    markdown = (tmp_path / "out" / "table3.md").read_text()
    assert "| MIFS [26] | 88.5 | 63.8 |" in markdown


def test_markdown_and_latex_formatting():
    table = pd.DataFrame({"Model": ["a_b & c"], "UCF101": ["93.3"]})
    assert to_markdown(table) == "| Model | UCF101 |\n|:---|---:|\n| a_b & c | 93.3 |\n"
    latex = to_latex(table, "Accuracy, %.")
    assert r"a\_b \& c & 93.3 \\" in latex and r"\caption{Accuracy, \%.}" in latex
    assert r"\begin{tabular}{lr}" in latex
