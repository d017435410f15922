"""Tables 1-3 of the paper, measured from run folders, beside the paper's own numbers.

    python -m evaluation.tables --runs runs --output evaluation/results/tables

reads every scored run folder under `runs` (`training.runs.Run`; the scores are
written by `evaluation.scoring`) and writes `table1`, `table2` and
`table3` as `.md`, `.csv` and `.tex`.

- Table 1: appearance, motion and two-stream, baseline and attention, on UCF101 and
  HMDB51: the paper's accuracy, the measured one, and measured minus paper.
  Two-stream = 1/3 appearance + 2/3 motion of the runs of the same split and model.
- Tables 2 and 3: the paper's literature rows, the paper's own row, and this
  implementation's measured two-stream attention row.
- A measured cell is the mean over the splits present, naming them ("92.1 (splits
  1, 2)"). A cell with no run says "no run"; it is never filled with the paper's number.
- Only runs that belong together are averaged: one dataset, one class list, one
  recipe (feature recipe and training settings but the split and seed); otherwise the
  tables are refused, naming two runs and what differs. A cell measured on a class
  subset says so ("2 of 101 classes") and gets no difference to the paper's number.
- A run whose training is unfinished, or whose scores are stale (its `model.keras`
  changed since it was scored, `evaluation.scoring.load_scores`), is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evaluation.scoring import (
    TWO_STREAM_WEIGHTS,
    VideoScores,
    fuse_video_scores,
    load_scores,
    mean_over_splits,
)
from models.feature_extraction import FeatureRecipe
from runtime.atomic_files import atomic_write, check_output_folder
from runtime.config_flags import exit_on_error, parse_config
from training.runs import Run, RunRecord

DATASETS = {"ucf101": "UCF101", "hmdb51": "HMDB51"}
# The classes of each whole dataset, which the paper's numbers are measured on.
DATASET_CLASSES = {"ucf101": 101, "hmdb51": 51}
NO_RUN = "no run"
NOT_AVAILABLE = "N/A"

# === The paper's numbers (accuracy in %, None where the paper prints N/A) ===

# Table 1: (stream, model) -> (UCF101, HMDB51).
PAPER_TABLE1 = {
    ("appearance", "baseline"): (83.4, 52.3),
    ("appearance", "attention"): (84.2, 54.2),
    ("motion", "baseline"): (88.5, 60.7),
    ("motion", "attention"): (90.4, 62.9),
    ("two-stream", "baseline"): (91.6, 63.3),
    ("two-stream", "attention"): (93.3, 65.0),
}
PAPER_TABLE2 = {
    "Spatial appearance attention [24]": (None, 41.3),
    "Joint attention [23]": (90.6, 61.7),
    "Spatial attention [25]": (92.7, 64.3),
    "Our method (paper)": (93.3, 65.0),
}
PAPER_TABLE3 = {
    "iDT [3]": (85.9, 57.2),
    "iDT+HSV [27]": (88.0, 61.1),
    "MIFS [26]": (88.5, 63.8),
    "Two-stream CNN [25]": (88.0, 59.4),
    "DeepNet [9]": (65.4, None),
    "3D Convolutional [8]": (83.4, 53.9),
    "Key-volume mining CNN [13]": (93.1, 63.3),
    "CNN+LSTM [1]": (88.6, None),
    "Deep two-stream [14]": (91.4, None),
    "Our method (paper)": (93.3, 65.0),
}
MEASURED_ROW = "This implementation (measured)"


# === Runs ===


@dataclass(frozen=True)
class ScoredRun:
    """A trained run, its record and its current test scores."""

    run: Run
    record: RunRecord
    scores: VideoScores


def find_runs(runs_root: str | Path) -> dict[tuple[str, int, str, str], ScoredRun]:
    """Scored runs under `runs_root`: `(dataset, split, stream, model) -> ScoredRun`.

    Raises:
        ValueError: A run's training is unfinished or its scores are stale
            (`evaluation.scoring.load_scores`), or its record is of another dataset,
            split, stream or model than its folder says.
    """
    found = {}
    for run in Run.find(runs_root, scored=True):
        record = run.load_config()
        train = record.train
        recorded = (train.dataset, train.split, train.stream, train.model)
        if recorded != run.key:
            raise ValueError(
                f"{run.root} holds a run of {'/'.join(map(str, recorded))} (its "
                f"{Run.CONFIG}), not of the cell its folder names. Move it to its own folder."
            )
        found[run.key] = ScoredRun(run, record, load_scores(run))
    return found


def _comparable_recipe(recipe: FeatureRecipe) -> dict:
    """The feature recipe as runs of one recipe share it: a network file (fine-tuned
    on each split's training list) counts as one, whatever its name and content."""
    if recipe.weights not in ("imagenet", "none"):
        recipe = dataclasses.replace(recipe, weights="a weights file", weights_sha256=None)
    return dataclasses.asdict(recipe)


def _settings(record: RunRecord) -> dict:
    """Training settings but the split and seed, which runs averaged together differ in."""
    settings = dataclasses.asdict(record.train)
    return {name: value for name, value in settings.items() if name not in ("split", "seed")}


def _classes(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{len(names)} classes ({shown})"


def recipe_differences(first: RunRecord, other: RunRecord) -> list[str]:
    """What keeps two runs from being averaged together (none: they may be)."""
    differences = []
    if first.class_names != other.class_names:
        differences.append(
            f"classes: {_classes(first.class_names)} against {_classes(other.class_names)}"
        )
    for kind, (mine, theirs) in (
        ("training", (_settings(first), _settings(other))),
        ("features", (_comparable_recipe(first.features), _comparable_recipe(other.features))),
    ):
        differences += [
            f"{kind} {name}: {mine[name]!r} against {theirs[name]!r}"
            for name in mine
            if mine[name] != theirs.get(name)
        ]
    return differences


def check_same_recipe(runs: Sequence[ScoredRun], cell: str) -> None:
    """Raises `ValueError` unless `runs` share dataset, classes and recipe."""
    for other in runs[1:]:
        differences = recipe_differences(runs[0].record, other.record)
        if differences:
            raise ValueError(
                f"{runs[0].run.root} and {other.run.root} cannot be averaged into the cell "
                f"{cell}: they differ in {'; '.join(differences)}. Keep the runs of one "
                "recipe under --runs (move the others to another folder)."
            )


def cell_runs(runs: dict, dataset: str, stream: str, model: str) -> dict[int, list[ScoredRun]]:
    """`split -> runs` of one table cell ("two-stream": appearance and motion, splits
    with both), checked to belong together (`check_same_recipe`)."""
    streams = ("appearance", "motion") if stream == "two-stream" else (stream,)
    found = {}
    for split in (1, 2, 3):
        present = [runs.get((dataset, split, name, model)) for name in streams]
        if all(item is not None for item in present):
            found[split] = present
    cell = f"{dataset} {stream} {model}"
    for position in range(len(streams)):  # each stream's runs over the splits
        check_same_recipe([present[position] for present in found.values()], cell)
    return found


def split_accuracies(
    runs: dict, dataset: str, stream: str, model: str, weights=TWO_STREAM_WEIGHTS
) -> dict[int, float]:
    """`split -> accuracy` of one table cell; "two-stream" fuses the two streams' runs."""
    accuracies = {}
    for split, present in cell_runs(runs, dataset, stream, model).items():
        if stream == "two-stream":
            appearance, motion = present
            try:
                fused = fuse_video_scores(appearance.scores, motion.scores, weights)
            except ValueError as error:
                raise ValueError(
                    f"{appearance.run.root} and {motion.run.root} cannot be fused: {error}"
                ) from None
            accuracies[split] = fused.accuracy()
        else:
            accuracies[split] = present[0].scores.accuracy()
    return accuracies


def cell_classes(runs: dict, dataset: str, stream: str, model: str) -> int | None:
    """The number of classes of a cell's runs; None where it is the whole dataset's (or
    the cell has no run)."""
    for present in cell_runs(runs, dataset, stream, model).values():
        num_classes = len(present[0].record.class_names)
        return None if num_classes == DATASET_CLASSES.get(dataset) else num_classes
    return None


def measured(
    accuracies: dict[int, float], num_classes: int | None = None, dataset: str = ""
) -> tuple[float | None, str]:
    """`(mean accuracy in %, cell text)`; `(None, "no run")` without runs. `num_classes`:
    a class subset's size, named in the text ("2 of 101 classes")."""
    if not accuracies:
        return None, NO_RUN
    mean, splits = mean_over_splits(accuracies)
    label = "split" if len(splits) == 1 else "splits"
    subset = ""
    if num_classes is not None:
        subset = f"; {num_classes} of {DATASET_CLASSES.get(dataset, '?')} classes"
    return 100 * mean, f"{100 * mean:.1f} ({label} {', '.join(map(str, splits))}{subset})"


def measured_cell(
    runs: dict, dataset: str, stream: str, model: str, weights=TWO_STREAM_WEIGHTS
) -> tuple[float | None, str, bool]:
    """`(mean accuracy in %, cell text, whether it is of the whole dataset)`."""
    num_classes = cell_classes(runs, dataset, stream, model)
    value, text = measured(
        split_accuracies(runs, dataset, stream, model, weights), num_classes, dataset
    )
    return value, text, num_classes is None


def _paper_cell(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.1f}"


def _difference_cell(measured_value: float | None, paper_value: float | None) -> str:
    if measured_value is None or paper_value is None:
        return ""
    return f"{measured_value - paper_value:+.1f}"


# === Tables ===


def table1(runs: dict, weights=TWO_STREAM_WEIGHTS) -> pd.DataFrame:
    """Table 1: per dataset, the paper's accuracy, the measured one, and their difference."""
    rows = []
    for (stream, model), paper_values in PAPER_TABLE1.items():
        row = {"Model": f"{stream} {'stream ' if stream != 'two-stream' else ''}{model}"}
        for (dataset, name), paper_value in zip(DATASETS.items(), paper_values, strict=True):
            value, text, whole = measured_cell(runs, dataset, stream, model, weights)
            row[f"{name} paper"] = _paper_cell(paper_value)
            row[f"{name} measured"] = text
            # A class subset's accuracy is not comparable with the paper's number.
            row[f"{name} difference"] = _difference_cell(value if whole else None, paper_value)
        rows.append(row)
    return pd.DataFrame(rows)


def literature_table(paper_rows: dict, runs: dict, weights=TWO_STREAM_WEIGHTS) -> pd.DataFrame:
    """Tables 2 and 3: the paper's rows, then this implementation's two-stream attention."""
    rows = [
        {
            "Model": model,
            **{
                name: _paper_cell(value)
                for name, value in zip(DATASETS.values(), values, strict=True)
            },
        }
        for model, values in paper_rows.items()
    ]
    measured_row = {"Model": MEASURED_ROW}
    for dataset, name in DATASETS.items():
        measured_row[name] = measured_cell(runs, dataset, "two-stream", "attention", weights)[1]
    rows.append(measured_row)
    return pd.DataFrame(rows)


# === Output formats ===


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' `to_markdown` needs `tabulate`; this needs nothing)."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join(":---" if index == 0 else "---:" for index in range(table.shape[1])) + "|"
    body = [
        "| " + " | ".join(str(cell) for cell in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def _latex_escape(text: str) -> str:
    for character, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
    ):
        text = text.replace(character, escaped)
    return text


def to_latex(table: pd.DataFrame, caption: str) -> str:
    """A booktabs `table` environment (pandas' `to_latex` needs jinja2; this needs nothing)."""
    columns = "l" + "r" * (table.shape[1] - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{columns}}}",
        r"\toprule",
        " & ".join(_latex_escape(str(column)) for column in table.columns) + r" \\",
        r"\midrule",
        *(
            " & ".join(_latex_escape(str(cell)) for cell in row) + r" \\"
            for row in table.itertuples(index=False)
        ),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


CAPTIONS = {
    "table1": "Comparison with baselines on UCF101 and HMDB51 (accuracy, %).",
    "table2": "Comparison with existing attention methods on UCF101 and HMDB51 (accuracy, %).",
    "table3": "Comparison with state-of-the-art methods on UCF101 and HMDB51 (accuracy, %).",
}


def write_tables(
    runs_root: str | Path, output_dir: str | Path, weights=TWO_STREAM_WEIGHTS
) -> dict[str, pd.DataFrame]:
    """Writes table1/2/3 `.md`, `.csv`, `.tex` under `output_dir`; returns the tables.

    Raises:
        ValueError: `output_dir` cannot be a folder, a run is unfinished or its scores
            stale (`find_runs`), or runs of one cell do not belong together
            (`check_same_recipe`). Found before any table is written.
    """
    output_dir = check_output_folder(output_dir, "--output folder")
    runs = find_runs(runs_root)
    tables = {
        "table1": table1(runs, weights),
        "table2": literature_table(PAPER_TABLE2, runs, weights),
        "table3": literature_table(PAPER_TABLE3, runs, weights),
    }
    subsets = sorted(
        {
            f"{DATASETS.get(dataset, dataset)}: {len(item.record.class_names)} of "
            f"{DATASET_CLASSES.get(dataset, '?')} classes"
            for (dataset, *_), item in runs.items()
            if len(item.record.class_names) != DATASET_CLASSES.get(dataset)
        }
    )
    subset_note = (
        f" Measured on a class subset ({'; '.join(subsets)}): not the dataset's accuracy, "
        "so no difference to the paper's number is given."
        if subsets
        else ""
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        note = (
            f"{CAPTIONS[name]} Measured: mean over the splits named; {len(runs)} scored runs."
            f"{subset_note}"
        )
        with atomic_write(output_dir / f"{name}.md") as temporary:
            temporary.write_text(f"{note}\n\n{to_markdown(table)}")
        with atomic_write(output_dir / f"{name}.csv") as temporary:
            table.to_csv(temporary, index=False)
        with atomic_write(output_dir / f"{name}.tex") as temporary:
            temporary.write_text(to_latex(table, CAPTIONS[name] + subset_note))
    return tables


# === Stage ===


@dataclass(frozen=True)
class TablesConfig:
    """Where the scored runs are, where the tables go, and the two-stream weights."""

    runs: Path = field(default=Path("runs"), metadata={"help": "root of run folders"})
    output: Path = Path("evaluation/results/tables")
    weights: tuple[float, float] = field(
        default=TWO_STREAM_WEIGHTS,
        metadata={
            "nargs": 2,
            "metavar": ("APPEARANCE", "MOTION"),
            "help": "two-stream weights (paper: 1/3 2/3)",
        },
    )


def run(config: TablesConfig) -> dict[str, pd.DataFrame]:
    """Writes the tables; returns them."""
    if not math.isclose(sum(config.weights), 1.0):
        print(f"Note: two-stream weights {config.weights} do not sum to 1.")
    tables = write_tables(config.runs, config.output, tuple(config.weights))
    print(to_markdown(tables["table1"]))
    print(f"Wrote table1-3 (.md, .csv, .tex) to {config.output}")
    return tables


# === Command line ===


def main(argv: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    return run(parse_config(TablesConfig, argv, prog="python -m evaluation.tables", doc=__doc__))


if __name__ == "__main__":
    exit_on_error(main)
