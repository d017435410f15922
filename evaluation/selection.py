"""Choices made on validation parts only: which features per stream, which recipe.

Every run of `training.train_attention` holds out a validation part of its training
list (whole groups for UCF101) and keeps its best epoch on it; `history.csv` records
that accuracy per epoch (`val_last_steps_accuracy`: the last 10 steps, per sample). A
candidate (a feature set, or a recipe) is scored by the mean of its runs' best
validation accuracies over the splits and models given, per stream or over both; the
best mean wins, the first candidate listed on a tie (list the paper's first). The test
lists are never read here: they are read only to score the chosen models.

Used by the experiment runner (`evaluation.experiment`) and by the demo's check of its
settings (`evaluation.demo_validation`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from temporal_attention.evaluation.tables import to_markdown
from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.training.runs import MODELS, Run
from temporal_attention.training.train_attention import best_so_far

# One sample per epoch and video: the accuracy of the last 10 steps, per sample.
MONITOR = "val_last_steps_accuracy"


def validation_curve(run: Run) -> list[float]:
    """Validation accuracy of every finished epoch, from the run's `history.csv`."""
    with open(run.history_path, newline="") as handle:
        return [float(row[MONITOR]) for row in csv.DictReader(handle)]


def best_validation_accuracy(run: Run) -> float:
    """The best validation accuracy of a trained run (its kept epoch's)."""
    value = best_so_far(run.history_path, MONITOR)
    if value is None:
        raise ValueError(
            f"{run.root} has no finished epoch with a validation accuracy "
            f"({run.history_path}): train it (with a validation part) before choosing."
        )
    return value


def candidate_table(candidates: dict[str, dict[tuple[int, str, str], Run]]) -> pd.DataFrame:
    """One row per candidate and run: `candidate, split, stream, model,
    validation_accuracy`, from `{candidate: {(split, stream, model): run}}`."""
    rows = [
        {
            "candidate": name,
            "split": split,
            "stream": stream,
            "model": model,
            "validation_accuracy": best_validation_accuracy(run),
        }
        for name, runs in candidates.items()
        for (split, stream, model), run in sorted(runs.items())
    ]
    return pd.DataFrame(
        rows, columns=["candidate", "split", "stream", "model", "validation_accuracy"]
    )


def choose(table: pd.DataFrame, stream: str | None = None) -> str:
    """The candidate of the best mean validation accuracy (over splits and models, of
    `stream` only where given); the first listed wins a tie. Every candidate must have
    the same runs, so that the means compare like with like."""
    rows = table if stream is None else table[table["stream"] == stream]
    if rows.empty:
        raise ValueError(f"No validation accuracy to choose from (stream {stream}).")
    keys = {
        name: sorted(map(tuple, group[["split", "stream", "model"]].to_numpy().tolist()))
        for name, group in rows.groupby("candidate", sort=False)
    }
    first = next(iter(keys.values()))
    uneven = [name for name, runs in keys.items() if runs != first]
    if uneven:
        raise ValueError(
            f"Candidates {uneven} have other runs than {next(iter(keys))}: "
            "the means would not compare like with like."
        )
    means = rows.groupby("candidate", sort=False)["validation_accuracy"].mean()
    return str(means.idxmax())  # idxmax returns the first of equal maxima


def summary(table: pd.DataFrame, streams: Sequence[str]) -> pd.DataFrame:
    """Per candidate: the mean validation accuracy of each stream and model over the
    splits, each stream's mean and the mean of all, as fractions."""
    means = table.groupby(["candidate", "stream", "model"], sort=False)[
        "validation_accuracy"
    ].mean()
    rows = []
    for name in dict.fromkeys(table["candidate"]):
        row = {"candidate": name}
        for stream in streams:
            for model in MODELS:
                if (name, stream, model) in means.index:
                    row[f"{stream} {model}"] = means[name, stream, model]
            present = table[(table["candidate"] == name) & (table["stream"] == stream)]
            if not present.empty:
                row[f"{stream} mean"] = present["validation_accuracy"].mean()
        row["mean"] = table[table["candidate"] == name]["validation_accuracy"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def write_choice(
    table: pd.DataFrame, chosen: dict[str, str], streams: Sequence[str], output: Path, title: str
) -> str:
    """Writes `output`.csv (every run's best validation accuracy and what was chosen)
    and `output`.md (the means and the choice); returns the Markdown."""
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = table.copy()
    for key, name in chosen.items():
        rows[f"chosen_{key}"] = rows["candidate"] == name
    with atomic_write(output.with_suffix(".csv")) as path:
        rows.to_csv(path, index=False)
    shown = summary(table, streams)
    for column in shown.columns[1:]:
        shown[column] = [f"{100 * value:.1f}" for value in shown[column]]
    splits = ", ".join(str(split) for split in sorted(set(table["split"])))
    lines = [
        f"{title}: best validation accuracy (%, last 10 steps, per sample) of each run, "
        f"mean over splits {splits}; validation parts only, never a test list.",
        "",
        to_markdown(shown),
        "",
        *(f"- chosen for {key}: {name}" for key, name in chosen.items()),
    ]
    markdown = "\n".join(lines) + "\n"
    with atomic_write(output.with_suffix(".md")) as path:
        path.write_text(markdown)
    return markdown
