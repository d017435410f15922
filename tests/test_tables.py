"""Tables 1-3 built from run folders written by hand (config.json, a stand-in
model.keras, test_scores.npz of that file)."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from temporal_attention.evaluation.scoring import VideoScores
from temporal_attention.evaluation.tables import (
    MEASURED_ROW,
    NO_RUN,
    TablesConfig,
    classes_text,
    find_runs,
    main,
    splits_text,
    to_latex,
    to_markdown,
)
from temporal_attention.runtime.config_flags import exit_on_error
from tests.evaluation_fixtures import class_list, write_scored_run


def write_run(root, dataset, split, stream, model, correct, **overrides):
    """A scored run whose first `correct` of 4 videos are right."""
    return write_scored_run(root, dataset, split, stream, model, correct, **overrides)


def test_table1_of_a_whole_dataset_has_the_paper_and_the_difference(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ucf101", 1, "appearance", "attention", correct=4)  # 100%
    write_run(runs, "ucf101", 2, "appearance", "attention", correct=2)  # 50%
    write_run(runs, "ucf101", 1, "motion", "attention", correct=3)  # 75%
    assert len(find_runs(runs)) == 3
    tables = main(["--runs", str(runs), "--output", str(tmp_path / "out")])
    assert "Measured on: UCF101 (101 classes), splits 1, 2; HMDB51 (51 classes): no run" in (
        tables["table1"].title
    )
    table = tables["table1"].display.set_index("Model")
    measured = "measured on UCF101 (101 classes), splits 1, 2"
    assert list(table.columns[:3]) == ["UCF101 paper", measured, "UCF101 difference"]
    # Mean over the splits ± their sample standard deviation: 75 ± 35.4 (35.36 = 50 / sqrt 2).
    assert table.loc["appearance stream attention", measured] == "75.0 ± 35.4"
    assert table.loc["appearance stream attention", "UCF101 paper"] == "84.2"
    assert table.loc["appearance stream attention", "UCF101 difference"] == "-9.2"
    assert table.loc["motion stream attention", measured] == "75.0 (split 1)"
    # Two-stream of split 1: the last video is wrong in motion (0.8 for A) and right in
    # appearance (0.8 for B): 1/3 * 0.8 + 2/3 * 0.2 = 0.4 for B, so wrong: 3 of 4.
    assert table.loc["two-stream attention", measured] == "75.0 (split 1)"
    # Missing runs say so and are never filled with the paper's number.
    assert table.loc["appearance stream baseline", measured] == NO_RUN
    assert table.loc["appearance stream baseline", "UCF101 difference"] == ""
    assert table.loc["two-stream attention", "measured on HMDB51 (51 classes)"] == NO_RUN
    assert table.loc["two-stream attention", "HMDB51 paper"] == "65.0"
    for name in ("table1", "table2", "table3"):
        for suffix in ("md", "csv", "tex"):
            assert (tmp_path / "out" / f"{name}.{suffix}").is_file()
    csv = pd.read_csv(tmp_path / "out" / "table1.csv").set_index(["model", "dataset"])
    missing = csv.loc[("two-stream attention", "HMDB51 (51 classes)")]
    assert missing["paper"] == 65.0 and missing["note"] == NO_RUN
    assert missing[["split 1", "mean", "difference"]].isna().all()


def test_csv_has_each_split_the_mean_and_the_spreads_over_splits_and_seeds(tmp_path):
    correct = {0: (4, 2, 3), 1: (3, 2, 1)}  # seed -> right videos of 4 in splits 1-3
    for seed, per_split in correct.items():
        for split, right in enumerate(per_split, 1):
            write_run(tmp_path / f"seed{seed}", "ucf101", split, "appearance", "attention",
                      right, seed=seed)  # fmt: skip
    output = tmp_path / "out"
    argv = ["--runs", str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--output", str(output)]
    tables = main(argv)
    name = "UCF101 (101 classes), splits 1-3"
    csv = pd.read_csv(output / "table1.csv").set_index(["model", "dataset"])
    row = csv.loc[("appearance stream attention", name)]
    # Splits: seed 0 100, 50, 75 and seed 1 75, 50, 25; each split's mean over its seeds.
    assert [row[f"split {split}"] for split in (1, 2, 3)] == [87.5, 50.0, 50.0]
    assert row["mean"] == 62.5 and row["n splits"] == 3
    # Sample (n - 1) standard deviation over the splits, not the population's (17.68).
    assert row["std over splits (sample)"] == pytest.approx(21.6506, abs=1e-4)
    # Over the seeds' means over the splits (75 and 50): 25 / sqrt 2.
    assert row["std over seeds (sample)"] == pytest.approx(17.6777, abs=1e-4)
    assert row["seeds"] == "0, 1" and row["n seeds per split"] == 2
    assert row["paper"] == 84.2 and row["difference"] == pytest.approx(62.5 - 84.2)
    table = tables["table1"].display.set_index("Model")
    assert table.loc["appearance stream attention", f"measured on {name}"] == (
        "62.5 ± 21.7 (± 17.7 over 2 seeds)"
    )
    assert "sample standard deviation" in (output / "table1.md").read_text()
    # A seed given twice, or seeds of different splits, are refused.
    shutil.copytree(tmp_path / "seed0", tmp_path / "again")
    with pytest.raises(ValueError, match="both runs of seed 0 of split 1"):
        main([*argv[:3], str(tmp_path / "again"), *argv[3:]])
    shutil.rmtree(tmp_path / "seed1" / "ucf101" / "split3")
    with pytest.raises(ValueError, match=r"seed0: splits 1-3; .*seed1: splits 1, 2\)"):
        main(argv)
    assert TablesConfig(runs=tmp_path).runs == (tmp_path,)  # as evaluation.experiment gives it


def test_tables_2_and_3_keep_paper_rows_and_add_the_measured_row(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "hmdb51", 1, "appearance", "attention", correct=4)
    write_run(runs, "hmdb51", 1, "motion", "attention", correct=4)
    tables = main(["--runs", str(runs), "--output", str(tmp_path / "out")])
    table2 = tables["table2"].display.set_index("Model")
    assert table2.loc["Spatial appearance attention [24]", "UCF101"] == "N/A"
    assert table2.loc["Our method (paper)", "HMDB51"] == "65.0"
    assert table2.loc["This implementation (measured)", "HMDB51"] == "100.0 (split 1)"
    assert table2.loc["This implementation (measured)", "UCF101"] == NO_RUN
    assert "This implementation measured on: UCF101 (101 classes): no run; HMDB51 (51 " in (
        tables["table2"].title
    )
    table3 = tables["table3"].display.set_index("Model")
    assert len(table3) == 11 and table3.loc["iDT [3]", "HMDB51"] == "57.2"
    markdown = (tmp_path / "out" / "table3.md").read_text()
    assert "| MIFS [26] | 88.5 | 63.8 |" in markdown
    csv = pd.read_csv(tmp_path / "out" / "table3.csv").set_index(["model", "dataset"])
    assert csv.loc[("MIFS [26]", "HMDB51 (51 classes)"), "paper"] == 63.8
    assert csv.loc[(MEASURED_ROW, "HMDB51 (51 classes), split 1"), "split 1"] == 100.0


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
    table = main(argv)["table1"].display.set_index("Model")
    measured = "measured on UCF101, 3 classes (Class000, Class001, Class002), splits 1, 2"
    assert table.loc["motion stream attention", measured] == "75.0 ± 35.4"
    # One table names one class list per dataset, also across cells.
    other = write_run(runs, "ucf101", 1, "appearance", "baseline", 4, class_names=class_list(2))
    with pytest.raises(ValueError, match=f"{other.root} and .* are runs of UCF101 on different"):
        main(argv)


def test_a_class_subset_is_named_and_gets_no_paper_or_difference_column(tmp_path):
    runs, output = tmp_path / "runs", tmp_path / "out"
    classes = ("BabyCrawling", "Punch", "PushUps")
    for split, stream in ((1, "appearance"), (1, "motion"), (3, "appearance"), (3, "motion")):
        write_run(runs, "ucf101", split, stream, "attention", 3, class_names=classes)
    write_run(runs, "hmdb51", 1, "appearance", "attention", 2)  # HMDB51's 51 classes
    tables = main(["--runs", str(runs), "--output", str(output)])
    name = "UCF101, 3 classes (BabyCrawling, Punch, PushUps), splits 1, 3"
    table1 = tables["table1"]
    assert name in table1.title
    assert list(table1.display.columns) == [
        "Model",
        f"measured on {name}",
        "HMDB51 paper",
        "measured on HMDB51 (51 classes), split 1",
        "HMDB51 difference",
    ]
    table = table1.display.set_index("Model")
    assert table.loc["two-stream attention", f"measured on {name}"] == "75.0 ± 0.0"
    assert table.loc["appearance stream attention", "HMDB51 difference"] == "-4.2"
    markdown = (output / "table1.md").read_text()
    assert f"| Model | measured on {name} | HMDB51 paper |" in markdown
    assert "UCF101 paper" not in markdown and "UCF101 difference" not in markdown
    assert "93.3" not in markdown  # the paper's UCF101 two-stream attention
    csv = pd.read_csv(output / "table1.csv").set_index(["model", "dataset"])
    subset = csv.loc[("two-stream attention", name)]
    assert subset[["paper", "difference", "split 2"]].isna().all()
    assert (subset["split 1"], subset["split 3"], subset["mean"]) == (75.0, 75.0, 75.0)
    # Tables 2 and 3: the subset's accuracy is not in the literature's UCF101 column.
    table2 = tables["table2"].display.set_index("Model")
    assert table2.loc[MEASURED_ROW, "UCF101"] == "3 of 101 classes: not comparable"
    assert "75.0" not in (output / "table2.md").read_text()
    assert name in (output / "table2.md").read_text()
    assert tables["table2"].data.query("model == @MEASURED_ROW")["mean"].isna().all()
    assert name.replace("_", r"\_") in (output / "table3.tex").read_text()


def test_only_subsets_leave_the_paper_out_of_table1(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ucf101", 2, "motion", "baseline", 1, class_names=class_list(20))
    write_run(runs, "hmdb51", 1, "motion", "baseline", 4, class_names=class_list(2))
    table1 = main(["--runs", str(runs), "--output", str(tmp_path / "out")])["table1"]
    assert list(table1.display.columns) == [
        "Model",
        "measured on UCF101, 20 classes (Class000, Class001, Class002, ...), split 2",
        "measured on HMDB51, 2 classes (Class000, Class001), split 1",
    ]
    assert "paper" not in table1.data.columns and "difference" not in table1.data.columns


def test_dataset_names_say_which_classes_and_splits():
    assert [splits_text(splits) for splits in ([2], [1, 3], [1, 2], [3, 1, 2])] == [
        "split 2",
        "splits 1, 3",
        "splits 1, 2",
        "splits 1-3",
    ]
    assert classes_text(("Punch",)) == "1 class (Punch)"
    assert classes_text(class_list(10)).endswith("Class008, Class009)")
    assert classes_text(class_list(11)) == "11 classes (Class000, Class001, Class002, ...)"


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
