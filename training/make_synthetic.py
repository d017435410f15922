"""Writes the synthetic sparse-action dataset (`data.synthetic`) to a folder, in the UCF101 layout.

    python -m training.make_synthetic --output runs/synthetic                  # the demo's
    python -m training.make_synthetic --output runs/tiny --preset tiny         # 3 classes x 4 clips
    python -m training.make_synthetic --output runs/s6 --num-classes 6 --clips-per-class 48

Everything is deterministic by `--seed`: the same config gives byte-identical files, and
a re-run skips the clips already written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from temporal_attention.data.synthetic import (
    PRESETS,
    SyntheticConfig,
    SyntheticSummary,
    generate_dataset,
)
from temporal_attention.runtime.config_flags import exit_on_error, parse_config


@dataclass(frozen=True)
class GenerateSyntheticConfig:
    """The CLI's stage: which dataset (`SyntheticConfig`, from a preset) goes where."""

    output: Path = field(metadata={"help": "dataset folder (created)"})
    settings: SyntheticConfig = PRESETS["demo"]
    overwrite: bool = field(default=False, metadata={"help": "replace a dataset of another config"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})


def run(config: GenerateSyntheticConfig) -> SyntheticSummary:
    """Writes the dataset (see `generate_dataset`) and prints what was done."""
    summary = generate_dataset(
        config.output, config.settings, config.overwrite, not config.no_progress
    )
    print(
        f"{summary.root}: {summary.num_train} train + {summary.num_test} test clips of "
        f"{len(summary.class_names)} classes ({', '.join(summary.class_names)}); "
        f"{summary.generated} written, {summary.skipped} already there. "
        f"Key frames: {summary.key_frames_csv}"
    )
    return summary


def parse_args(argv=None) -> GenerateSyntheticConfig:
    return parse_config(
        GenerateSyntheticConfig,
        argv,
        prog="python -m training.make_synthetic",
        doc=__doc__,
        presets=PRESETS,
    )


def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    exit_on_error(main)
