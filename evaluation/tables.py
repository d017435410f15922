"""Tables 1-3 of the paper, measured from run folders, named by the dataset as run.

    python -m evaluation.tables --runs runs --output evaluation/results/tables
    python -m evaluation.tables --runs runs/seed0 runs/seed1 --output tables  # seeds

reads every scored run folder under each `--runs` folder (`training.runs.Run`; the
scores are written by `evaluation.scoring`) and writes `table1`, `table2` and `table3`
as `.md`, `.csv` and `.tex`.

- Each title names every dataset as run: its classes where they are a subset (all up
  to 10, else the count and the first 3) and the splits, e.g. "UCF101, 3 classes
  (BabyCrawling, Punch, PushUps), splits 1-3" or "UCF101 (101 classes), splits 1-3";
  so do Table 1's measured column headers. Runs of one dataset on different class
  lists are refused (a table names one), naming two of them.
- Table 1: appearance, motion and two-stream (1/3 appearance + 2/3 motion of the runs
  of one split and seed), baseline and attention. A dataset measured on all its
  classes (the paper's) gets the paper's accuracy, the measured one and measured minus
  paper; a class subset its measured column alone: no paper, no difference.
- Tables 2 and 3: the paper's literature rows and its own, all on the whole datasets,
  and this implementation's two-stream attention row. For a class subset that row's
  cell holds no number ("3 of 101 classes: not comparable") and a note names the
  subset and points to Table 1: in the literature's column, or in a column of its own
  beside it, the subset's accuracy would read as a comparison with theirs.
- A measured cell (`.md`, `.tex`) is the mean over the splits ± their sample standard
  deviation ("95.7 ± 1.2"), naming the splits where they are not the title's; with
  runs of several seeds, "(± 0.4 over 3 seeds)" is the sample standard deviation over
  the seeds of each seed's mean over the splits. The `.csv` has a row per (model,
  dataset): each split's accuracy (mean over its seeds), the mean, both standard
  deviations (n - 1 in the denominator) and their n, the seeds, and for a whole
  dataset the paper's number and the difference. A cell with no run says "no run";
  it is never filled with the paper's number.
- Seeds: a run folder holds one run per split, stream and model, so seeds are
  `--runs` folders (the demo's `runs/seed<k>`). A cell's runs of one split in several
  folders must differ in seed, and each folder must hold the same splits of the cell
  (else the mean over seeds mixes splits); otherwise the tables are refused.
- Only runs that belong together are averaged: one dataset, one class list, one
  recipe (feature recipe and training settings but the split and seed); otherwise the
  tables are refused, naming two runs and what differs.
- A run whose training is unfinished, or whose scores are stale (its `model.keras`
  changed since it was scored, `evaluation.scoring.load_scores`), is refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from temporal_attention.data.splits import SPLITS
from temporal_attention.evaluation.scoring import (
    TWO_STREAM_WEIGHTS,
    VideoScores,
    fuse_video_scores,
    load_scores,
)
from temporal_attention.models.feature_extraction import FeatureRecipe
from temporal_attention.runtime.atomic_files import atomic_write, check_output_folder
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.training.runs import Run, RunRecord

DATASETS = {"ucf101": "UCF101", "hmdb51": "HMDB51"}
# The classes of each whole dataset, which the paper's numbers are measured on.
DATASET_CLASSES = {"ucf101": 101, "hmdb51": 51}
NAMED_CLASSES = 10  # a subset of at most this many classes is named in full ...
FIRST_CLASSES = 3  # ... a larger one by its count and its first few
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

# The CSV's columns: each split's accuracy (%, the mean over its seeds), their mean, the
# sample standard deviation (n - 1 in the denominator) over the splits and over the
# seeds (of each seed's mean over the splits) with their n.
SPLIT_COLUMNS = tuple(f"split {split}" for split in SPLITS)
CSV_COLUMNS = (
    "model",
    "dataset",
    "paper",
    *SPLIT_COLUMNS,
    "mean",
    "std over splits (sample)",
    "n splits",
    "seeds",
    "std over seeds (sample)",
    "n seeds per split",
    "difference",
    "note",
)
SPREAD_NOTE = (
    "Measured: a ± b is the mean over the splits ± their sample standard deviation (n - 1 "
    "in the denominator; n = the splits named); (± c over k seeds) the sample standard "
    "deviation over the k seeds of each seed's mean over the splits. Each split's accuracy "
    "and every n: {name}.csv."
)


# === Runs ===


@dataclass(frozen=True)
class ScoredRun:
    """A trained run, its record, its current test scores and the `--runs` folder it
    was found under (runs of one cell and split in several folders are its seeds)."""

    run: Run
    record: RunRecord
    scores: VideoScores
    source: Path


def find_runs(
    runs_roots: str | os.PathLike | Sequence[str | os.PathLike],
) -> dict[tuple[str, int, str, str], list[ScoredRun]]:
    """Scored runs under one or several folders: `(dataset, split, stream, model) ->
    [ScoredRun]`, one per folder that holds it, in the folders' order.

    Raises:
        ValueError: A folder is given twice, a run's training is unfinished or its
            scores are stale (`evaluation.scoring.load_scores`), or its record is of
            another dataset, split, stream or model than its folder says.
    """
    if isinstance(runs_roots, (str, os.PathLike)):
        runs_roots = (runs_roots,)
    roots = [Path(root) for root in runs_roots]
    resolved = [root.resolve() for root in roots]
    for index, root in enumerate(resolved):
        if root in resolved[:index]:
            raise ValueError(f"--runs names {roots[index]} twice; give each folder once.")
    found = {}
    for root in roots:
        for run in Run.find(root, scored=True):
            record = run.load_config()
            train = record.train
            recorded = (train.dataset, train.split, train.stream, train.model)
            if recorded != run.key:
                raise ValueError(
                    f"{run.root} holds a run of {'/'.join(map(str, recorded))} (its "
                    f"{Run.CONFIG}), not of the cell its folder names. Move it to its own "
                    "folder."
                )
            found.setdefault(run.key, []).append(ScoredRun(run, record, load_scores(run), root))
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


def classes_text(names: Sequence[str]) -> str:
    """Names a class list: "3 classes (BabyCrawling, Punch, PushUps)"; beyond
    `NAMED_CLASSES`, the count and the first `FIRST_CLASSES` ("20 classes (A, B, C, ...)")."""
    shown = names if len(names) <= NAMED_CLASSES else [*names[:FIRST_CLASSES], "..."]
    return f"{len(names)} class{'es' if len(names) != 1 else ''} ({', '.join(shown)})"


def splits_text(splits: Sequence[int]) -> str:
    """Names splits: "split 1", "splits 1, 3", "splits 1, 2", "splits 1-3"."""
    splits = sorted(splits)
    if len(splits) == 1:
        return f"split {splits[0]}"
    if len(splits) >= 3 and splits == list(range(splits[0], splits[-1] + 1)):
        return f"splits {splits[0]}-{splits[-1]}"
    return f"splits {', '.join(map(str, splits))}"


def recipe_differences(first: RunRecord, other: RunRecord) -> list[str]:
    """What keeps two runs from being averaged together (none: they may be)."""
    differences = []
    if first.class_names != other.class_names:
        differences.append(
            f"classes: {classes_text(first.class_names)} against {classes_text(other.class_names)}"
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


def check_seed_runs(found: dict[int, dict[Path, tuple[ScoredRun, ...]]], cell: str) -> None:
    """Raises `ValueError` unless a cell's runs of one split from several `--runs`
    folders have different seeds, and every folder holds the same splits of the cell."""
    for split, by_source in found.items():
        for position in range(len(next(iter(by_source.values())))):  # each stream
            first_of_seed = {}
            for present in by_source.values():
                item = present[position]
                seed = item.record.train.seed
                if seed in first_of_seed:
                    raise ValueError(
                        f"{first_of_seed[seed].run.root} and {item.run.root} are both runs "
                        f"of seed {seed} of split {split} for the cell {cell}: several "
                        "--runs folders are several seeds. Leave out the folder that "
                        "repeats a seed."
                    )
                first_of_seed[seed] = item
    splits_of = {}  # --runs folder -> the splits it holds runs of
    for split, by_source in found.items():
        for source in by_source:
            splits_of.setdefault(source, []).append(split)
    if len({tuple(splits) for splits in splits_of.values()}) > 1:
        held = "; ".join(f"{source}: {splits_text(splits)}" for source, splits in splits_of.items())
        raise ValueError(
            f"The --runs folders hold different splits of the cell {cell} ({held}): a mean "
            "over seeds needs each seed's runs of the same splits. Add the missing runs or "
            "leave those folders out."
        )


def cell_runs(
    runs: dict, dataset: str, stream: str, model: str
) -> dict[int, dict[Path, tuple[ScoredRun, ...]]]:
    """`split -> --runs folder -> runs` of one table cell ("two-stream": the appearance
    and motion runs of one folder, splits with both), checked to belong together
    (`check_same_recipe`, `check_seed_runs`)."""
    streams = ("appearance", "motion") if stream == "two-stream" else (stream,)
    found = {}
    for split in SPLITS:
        per_stream = [
            {item.source: item for item in runs.get((dataset, split, name, model), ())}
            for name in streams
        ]
        by_source = {
            source: tuple(items[source] for items in per_stream)
            for source in per_stream[0]
            if all(source in items for items in per_stream)
        }
        if by_source:
            found[split] = by_source
    cell = f"{dataset} {stream} {model}"
    for position in range(len(streams)):  # each stream's runs over the splits and seeds
        check_same_recipe(
            [present[position] for by_source in found.values() for present in by_source.values()],
            cell,
        )
    check_seed_runs(found, cell)
    return found


# === Measured cells ===


@dataclass(frozen=True)
class Measurement:
    """The accuracies of one table cell.

    Attributes:
        accuracies: `split -> (accuracy in %, one per seed)`, the seeds in the same
            (`--runs`) order in every split.
        seeds: The seeds of its runs, sorted.
    """

    accuracies: dict[int, tuple[float, ...]]
    seeds: tuple[int, ...]

    @property
    def splits(self) -> tuple[int, ...]:
        return tuple(sorted(self.accuracies))

    @property
    def num_seeds(self) -> int:
        return len(next(iter(self.accuracies.values())))

    def split_means(self) -> dict[int, float]:
        """Each split's accuracy: the mean over its seeds."""
        return {split: float(np.mean(self.accuracies[split])) for split in self.splits}

    @property
    def mean(self) -> float:
        """The reported figure: the mean over the splits."""
        return float(np.mean(list(self.split_means().values())))

    @property
    def splits_std(self) -> float | None:
        """Sample standard deviation over the splits (None for one split)."""
        values = list(self.split_means().values())
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    @property
    def seeds_std(self) -> float | None:
        """Sample standard deviation over the seeds of each seed's mean over the splits
        (None for one seed)."""
        table = np.array([self.accuracies[split] for split in self.splits])  # (splits, seeds)
        return float(np.std(table.mean(axis=0), ddof=1)) if self.num_seeds > 1 else None


def _accuracy(present: tuple[ScoredRun, ...], weights) -> float:
    """Accuracy (%) of one run, or of the two-stream fusion of an appearance and a motion run."""
    if len(present) == 1:
        return 100 * present[0].scores.accuracy()
    appearance, motion = present
    try:
        fused = fuse_video_scores(appearance.scores, motion.scores, weights)
    except ValueError as error:
        raise ValueError(
            f"{appearance.run.root} and {motion.run.root} cannot be fused: {error}"
        ) from None
    return 100 * fused.accuracy()


def measure(
    runs: dict, dataset: str, stream: str, model: str, weights=TWO_STREAM_WEIGHTS
) -> Measurement | None:
    """The accuracies of one table cell; None where it has no run."""
    found = cell_runs(runs, dataset, stream, model)
    if not found:
        return None
    accuracies = {
        split: tuple(_accuracy(present, weights) for present in by_source.values())
        for split, by_source in found.items()
    }
    seeds = {
        item.record.train.seed
        for by_source in found.values()
        for present in by_source.values()
        for item in present
    }
    return Measurement(accuracies, tuple(sorted(seeds)))


def cell_text(measurement: Measurement | None, named_splits: tuple[int, ...] = ()) -> str:
    """A measured cell, mean ± spread over the splits: "95.7 ± 1.2"; the splits where they
    are not `named_splits`, the spread over seeds where there are several:
    "95.7 ± 1.2 (splits 1, 2; ± 0.4 over 3 seeds)"."""
    if measurement is None:
        return NO_RUN
    text = f"{measurement.mean:.1f}"
    if measurement.splits_std is not None:
        text += f" ± {measurement.splits_std:.1f}"
    details = []
    if measurement.splits != tuple(named_splits):
        details.append(splits_text(measurement.splits))
    if measurement.seeds_std is not None:
        details.append(f"± {measurement.seeds_std:.1f} over {measurement.num_seeds} seeds")
    return text + (f" ({'; '.join(details)})" if details else "")


# === Datasets as run ===


@dataclass(frozen=True)
class DatasetAsRun:
    """One dataset as its runs measured it.

    Attributes:
        dataset: "ucf101" or "hmdb51".
        class_names: The classes of its runs; None without runs.
        splits: The splits of its runs.
    """

    dataset: str
    class_names: tuple[str, ...] | None
    splits: tuple[int, ...]

    @property
    def title(self) -> str:
        return DATASETS[self.dataset]

    @property
    def whole(self) -> bool:
        """Its whole class list, which the paper's numbers are of (or no run)."""
        return self.class_names is None or len(self.class_names) == DATASET_CLASSES[self.dataset]

    @property
    def name(self) -> str:
        """The dataset as run: "UCF101, 3 classes (BabyCrawling, Punch, PushUps), splits
        1-3", "UCF101 (101 classes), splits 1-3", or "HMDB51 (51 classes)" without runs."""
        if self.class_names is None:
            return f"{self.title} ({DATASET_CLASSES[self.dataset]} classes)"
        if self.whole:
            return f"{self.title} ({len(self.class_names)} classes), {splits_text(self.splits)}"
        return f"{self.title}, {classes_text(self.class_names)}, {splits_text(self.splits)}"

    @property
    def paper_dataset(self) -> DatasetAsRun:
        """The dataset the paper measured on: all its classes (named without splits)."""
        return DatasetAsRun(self.dataset, None, ())

    @property
    def subset_size(self) -> str:
        """How much of the dataset its classes are: "3 of 101 classes"."""
        return f"{len(self.class_names or ())} of {DATASET_CLASSES[self.dataset]} classes"


def dataset_as_run(runs: dict, dataset: str) -> DatasetAsRun:
    """`dataset` as its runs in `runs` measured it.

    Raises:
        ValueError: Two of its runs have different class lists (one table names one).
    """
    found = [item for key, items in sorted(runs.items()) if key[0] == dataset for item in items]
    if not found:
        return DatasetAsRun(dataset, None, ())
    first = found[0]
    for other in found[1:]:
        if other.record.class_names != first.record.class_names:
            raise ValueError(
                f"{first.run.root} and {other.run.root} are runs of {DATASETS[dataset]} on "
                f"different classes ({classes_text(first.record.class_names)} against "
                f"{classes_text(other.record.class_names)}): a table names one class list "
                "per dataset. Keep the runs of one class list under --runs."
            )
    splits = sorted({item.record.train.split for item in found})
    return DatasetAsRun(dataset, first.record.class_names, tuple(splits))


def _subset_note(described: DatasetAsRun) -> str:
    return (
        f"{described.name}: {described.subset_size}, not the dataset the paper measured "
        "on, so its accuracy is not comparable with the paper's numbers and no paper number "
        "or difference is given beside it."
    )


# === Tables ===


@dataclass(frozen=True)
class Table:
    """One table as written.

    Attributes:
        title: Its caption, naming every dataset as run.
        display: The compact table of `.md` and `.tex` (mean ± spread).
        data: The `.csv`: one row per (model, dataset), each split, mean, spreads, n.
        notes: The lines under it (`.md`) or after the caption (`.tex`).
    """

    title: str
    display: pd.DataFrame
    data: pd.DataFrame
    notes: tuple[str, ...]


def _paper_cell(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.1f}"


def _difference_cell(measurement: Measurement | None, paper_value: float | None) -> str:
    if measurement is None or paper_value is None:
        return ""
    return f"{measurement.mean - paper_value:+.1f}"


def _data_row(
    model: str,
    described: DatasetAsRun,
    measurement: Measurement | None,
    paper_value: float | None = None,
    note: str = "",
) -> dict:
    """A CSV row; the paper's number (and the difference to it) for a whole dataset only."""
    row = {"model": model, "dataset": described.name, "note": note}
    if described.whole:
        row["paper"] = paper_value
    if measurement is None:
        return row
    split_means = measurement.split_means()
    row.update({f"split {split}": value for split, value in split_means.items()})
    row.update(
        {
            "mean": measurement.mean,
            "std over splits (sample)": measurement.splits_std,
            "n splits": len(measurement.splits),
            "seeds": ", ".join(map(str, measurement.seeds)),
            "std over seeds (sample)": measurement.seeds_std,
            "n seeds per split": measurement.num_seeds,
        }
    )
    if described.whole and paper_value is not None:
        row["difference"] = measurement.mean - paper_value
    return row


def _data_frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns)).round(4)  # % to 1e-4
    for column in ("n splits", "n seeds per split"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _measured_on(datasets: Sequence[DatasetAsRun]) -> str:
    return "; ".join(
        described.name if described.class_names else f"{described.name}: {NO_RUN}"
        for described in datasets
    )


def _model_label(stream: str, model: str) -> str:
    return f"{stream} {'stream ' if stream != 'two-stream' else ''}{model}"


def measured_column(described: DatasetAsRun) -> str:
    """Table 1's header of a measured column: "measured on UCF101 (101 classes), splits 1-3"."""
    return f"measured on {described.name}"


def table1(measurements: dict, datasets: Sequence[DatasetAsRun], num_runs: int) -> Table:
    """Table 1: per dataset its measured accuracy and, for a whole dataset, the paper's
    and measured minus paper. `measurements`: `(dataset, stream, model) -> Measurement`."""
    display_rows, data_rows = [], []
    for (stream, model), paper_values in PAPER_TABLE1.items():
        label = _model_label(stream, model)
        row = {"Model": label}
        for described, paper_value in zip(datasets, paper_values, strict=True):
            measurement = measurements[described.dataset, stream, model]
            measured = cell_text(measurement, described.splits)
            if described.whole:  # the paper's number, the measured one, their difference
                row[f"{described.title} paper"] = _paper_cell(paper_value)
                row[measured_column(described)] = measured
                row[f"{described.title} difference"] = _difference_cell(measurement, paper_value)
            else:  # a class subset: what was measured, alone
                row[measured_column(described)] = measured
            note = (
                NO_RUN if measurement is None
                else "" if described.whole
                else f"{described.subset_size}: no paper number or difference"
            )  # fmt: skip
            data_rows.append(_data_row(label, described, measurement, paper_value, note))
        display_rows.append(row)
    columns = CSV_COLUMNS
    if not any(described.whole for described in datasets):
        columns = [name for name in columns if name not in ("paper", "difference")]
    notes = [_subset_note(described) for described in datasets if not described.whole]
    if any(described.whole for described in datasets):
        notes.append(
            "Paper: the paper's number; difference: measured minus paper (beside a dataset "
            "measured on all its classes only)."
        )
    notes += [SPREAD_NOTE.format(name="table1"), f"{num_runs} scored runs."]
    return Table(
        title="Table 1. Comparison with baselines (accuracy, %). Measured on: "
        f"{_measured_on(datasets)}.",
        display=pd.DataFrame(display_rows),
        data=_data_frame(data_rows, columns),
        notes=tuple(notes),
    )


def literature_table(
    name: str,
    caption: str,
    paper_rows: dict,
    measurements: dict,
    datasets: Sequence[DatasetAsRun],
) -> Table:
    """Tables 2 and 3: the paper's rows (whole datasets), then this implementation's
    two-stream attention; a class subset's accuracy is left out of the whole dataset's
    column, and a note says so."""
    display_rows, data_rows = [], []
    for model, values in paper_rows.items():
        display_rows.append({"Model": model})
        for described, value in zip(datasets, values, strict=True):
            display_rows[-1][described.title] = _paper_cell(value)
            note = "N/A in the paper" if value is None else ""
            data_rows.append(_data_row(model, described.paper_dataset, None, value, note))
    measured_row = {"Model": MEASURED_ROW}
    for described in datasets:
        measurement = measurements[described.dataset, "two-stream", "attention"]
        if described.whole:
            measured_row[described.title] = cell_text(measurement)
            note = NO_RUN if measurement is None else ""
            data_rows.append(_data_row(MEASURED_ROW, described, measurement, None, note))
        else:
            measured_row[described.title] = f"{described.subset_size}: not comparable"
            note = f"{described.subset_size}: not comparable; its accuracy is in table1.csv"
            data_rows.append(_data_row(MEASURED_ROW, described, None, None, note))
    display_rows.append(measured_row)
    notes = [
        f"{described.name}: {described.subset_size}, not the dataset of the rows above, so "
        "its accuracy is not in this table; Table 1 has it (two-stream attention)."
        for described in datasets
        if not described.whole
    ]
    notes.append(SPREAD_NOTE.format(name=name))
    return Table(
        title=f"{caption} (accuracy, %) on "
        f"{' and '.join(described.paper_dataset.name for described in datasets)} as the "
        f"paper prints them. This implementation measured on: {_measured_on(datasets)}.",
        display=pd.DataFrame(display_rows),
        data=_data_frame(data_rows, [column for column in CSV_COLUMNS if column != "difference"]),
        notes=tuple(notes),
    )


def build_tables(runs: dict, weights=TWO_STREAM_WEIGHTS) -> dict[str, Table]:
    """Tables 1-3 of the scored runs of `find_runs`.

    Raises:
        ValueError: Runs of one cell do not belong together (`cell_runs`), or runs of
            one dataset have different class lists (`dataset_as_run`).
    """
    measurements = {
        (dataset, stream, model): measure(runs, dataset, stream, model, weights)
        for dataset in DATASETS
        for stream, model in PAPER_TABLE1
    }
    datasets = [dataset_as_run(runs, dataset) for dataset in DATASETS]
    num_runs = sum(len(items) for items in runs.values())
    return {
        "table1": table1(measurements, datasets, num_runs),
        "table2": literature_table(
            "table2", "Table 2. Comparison with existing attention methods", PAPER_TABLE2,
            measurements, datasets,
        ),
        "table3": literature_table(
            "table3", "Table 3. Comparison with state-of-the-art methods", PAPER_TABLE3,
            measurements, datasets,
        ),
    }  # fmt: skip


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
        ("±", r"$\pm$"),
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


def write_tables(
    runs_roots: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | Path,
    weights=TWO_STREAM_WEIGHTS,
) -> dict[str, Table]:
    """Writes table1/2/3 `.md`, `.csv`, `.tex` under `output_dir`; returns the tables.

    Raises:
        ValueError: `output_dir` cannot be a folder, a run is unfinished or its scores
            stale (`find_runs`), or runs do not belong together (`build_tables`).
            Found before any table is written.
    """
    output_dir = check_output_folder(output_dir, "--output folder")
    tables = build_tables(find_runs(runs_roots), weights)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        notes = "".join(f"- {note}\n" for note in table.notes)
        with atomic_write(output_dir / f"{name}.md") as temporary:
            temporary.write_text(f"{table.title}\n\n{to_markdown(table.display)}\n{notes}")
        with atomic_write(output_dir / f"{name}.csv") as temporary:
            table.data.to_csv(temporary, index=False)
        with atomic_write(output_dir / f"{name}.tex") as temporary:
            temporary.write_text(to_latex(table.display, " ".join((table.title, *table.notes))))
    return tables


# === Stage ===


@dataclass(frozen=True)
class TablesConfig:
    """Where the scored runs are (a folder per seed), where the tables go, and the
    two-stream weights."""

    # A single folder (the default, and what evaluation.experiment gives) becomes a
    # tuple of one.
    runs: tuple[Path, ...] = field(
        default=Path("runs"),
        metadata={"nargs": "+", "metavar": "RUNS", "help": "roots of run folders, one per seed"},
    )
    output: Path = Path("evaluation/results/tables")
    weights: tuple[float, float] = field(
        default=TWO_STREAM_WEIGHTS,
        metadata={
            "nargs": 2,
            "metavar": ("APPEARANCE", "MOTION"),
            "help": "two-stream weights (paper: 1/3 2/3)",
        },
    )

    def __post_init__(self):
        runs = (self.runs,) if isinstance(self.runs, (str, os.PathLike)) else self.runs
        object.__setattr__(self, "runs", tuple(Path(root) for root in runs))
        if not self.runs:
            raise ValueError("Expected at least one --runs folder. Received: runs=()")


def run(config: TablesConfig) -> dict[str, Table]:
    """Writes the tables; returns them."""
    if not math.isclose(sum(config.weights), 1.0):
        print(f"Note: two-stream weights {config.weights} do not sum to 1.")
    tables = write_tables(config.runs, config.output, tuple(config.weights))
    print(f"{tables['table1'].title}\n\n{to_markdown(tables['table1'].display)}")
    print(f"Wrote table1-3 (.md, .csv, .tex) to {config.output}")
    return tables


# === Command line ===


def main(argv: Sequence[str] | None = None) -> dict[str, Table]:
    return run(parse_config(TablesConfig, argv, prog="python -m evaluation.tables", doc=__doc__))


if __name__ == "__main__":
    exit_on_error(main)
