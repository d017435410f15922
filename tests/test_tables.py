"""Tables 1-3 built from run folders written by hand (config.json, a stand-in
model.keras, test_scores.npz of that file)."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from evaluation.scoring import VideoScores
from evaluation.tables import NO_RUN, find_runs, main, to_latex, to_markdown
from runtime.config_flags import exit_on_error
from tests.evaluation_fixtures import class_list, write_scored_run


def write_run(root, dataset, split, stream, model, correct, **overrides):
    """A scored run whose first `correct` of 4 videos are right."""
    return write_scored_run(root, dataset, split, stream, model, correct, **overrides)


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


def test_unfinished_or_stale_runs_are_refused_not_tabled(tmp_path):
    runs, output = tmp_path / "runs", tmp_path / "out"
    run = write_run(runs, "ucf101", 1, "appearance", "attention", correct=1)
    argv = ["--runs", str(runs), "--output", str(output)]
    (run.backup_dir).mkdir()  # killed mid-fit: model.keras is only its best epoch so far
    with pytest.raises(ValueError, match=f"{run.root}: training is unfinished.*train_attention"):
        main(argv)
    run.backup_dir.rmdir()
    run.model_path.write_bytes(b"the model after the resumed epochs")
    with pytest.raises(ValueError, match=f"another model.keras than the one now in {run.root}"):
        main(argv)
    # Scores written before they recorded their model: stale, not trusted.
    scores = VideoScores.load(run.scores_path)
    dataclasses.replace(scores, model_sha256=None).save(run.scores_path)
    with pytest.raises(ValueError, match="does not record which model.keras.*score it again"):
        main(argv)
    assert not output.exists()  # refused before anything was written


def test_nan_scores_are_a_failed_run_not_an_accuracy(tmp_path):
    runs = tmp_path / "runs"
    run = write_run(runs, "ucf101", 1, "appearance", "attention", correct=4)
    scores = VideoScores.load(run.scores_path)
    scores.scores[2] = np.nan
    scores.save(run.scores_path)
    with pytest.raises(ValueError, match=f"{run.scores_path} holds NaN or inf scores"):
        main(["--runs", str(runs), "--output", str(tmp_path / "out")])


def test_only_runs_of_one_class_list_and_recipe_are_averaged(tmp_path):
    runs = tmp_path / "runs"
    first = write_run(runs, "ucf101", 1, "motion", "attention", 4, class_names=class_list(3))
    other = write_run(runs, "ucf101", 2, "motion", "attention", 4, class_names=class_list(2))
    argv = ["--runs", str(runs), "--output", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=f"{first.root} and {other.root} cannot be averaged"):
        main(argv)
    with pytest.raises(ValueError, match="classes: 3 classes .* against 2 classes"):
        main(argv)
    write_run(runs, "ucf101", 2, "motion", "attention", 4, class_names=class_list(3), units=64)
    with pytest.raises(ValueError, match="training units: 512 against 64"):
        main(argv)
    write_run(
        runs, "ucf101", 2, "motion", "attention", 4, class_names=class_list(3),
        recipe={"backbone": "EfficientNetLite0"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="features backbone: 'VGG16' against 'EfficientNetLite0'"):
        main(argv)
    moved = runs / "ucf101" / "split3" / "appearance" / "attention"
    moved.parent.mkdir(parents=True)
    other.root.rename(moved)  # a motion run in an appearance folder
    with pytest.raises(ValueError, match=f"{moved} holds a run of ucf101/2/motion/attention"):
        main(argv)
    shutil.rmtree(moved)
    # Another seed, and a network fine-tuned on each split's list, belong together.
    for split, seed in ((1, 0), (2, 5)):
        recipe = {"weights": f"split{split}.keras", "weights_sha256": f"{split}" * 64}
        write_run(
            runs, "ucf101", split, "motion", "attention", 2 * split, class_names=class_list(3),
            recipe=recipe, seed=seed,
        )  # fmt: skip
    table = main(argv)["table1"].set_index("Model")
    assert table.loc["motion stream attention", "UCF101 measured"] == (
        "75.0 (splits 1, 2; 3 of 101 classes)"
    )


def test_a_class_subset_says_so_and_gets_no_difference_to_the_paper(tmp_path):
    runs, output = tmp_path / "runs", tmp_path / "out"
    for stream in ("appearance", "motion"):
        write_run(runs, "ucf101", 1, stream, "attention", 3, class_names=class_list(3))
    write_run(runs, "hmdb51", 1, "appearance", "attention", 2)  # HMDB51's 51 classes
    tables = main(["--runs", str(runs), "--output", str(output)])
    table = tables["table1"].set_index("Model")
    assert table.loc["appearance stream attention", "UCF101 measured"] == (
        "75.0 (split 1; 3 of 101 classes)"
    )
    assert table.loc["appearance stream attention", "UCF101 difference"] == ""
    assert table.loc["appearance stream attention", "HMDB51 measured"] == "50.0 (split 1)"
    assert table.loc["appearance stream attention", "HMDB51 difference"] == "-4.2"
    assert tables["table2"].set_index("Model").loc["This implementation (measured)", "UCF101"] == (
        "75.0 (split 1; 3 of 101 classes)"
    )
    for name in ("table1.md", "table2.tex"):
        assert "class subset (UCF101: 3 of 101 classes)" in (output / name).read_text()


def test_an_output_path_that_is_a_file_is_one_error_line(tmp_path, capsys):
    write_run(tmp_path / "runs", "ucf101", 1, "appearance", "attention", 4)
    output = tmp_path / "tables.md"
    output.write_text("kept")
    with pytest.raises(SystemExit) as exit_status:
        exit_on_error(main, ["--runs", str(tmp_path / "runs"), "--output", str(output)])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{output} is a file" in error
    assert output.read_text() == "kept"
