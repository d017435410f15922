"""The demo's settings on the validation parts alone: how they were chosen, never on test.

    python -m evaluation.demo_validation                       # the demo's settings
    python -m evaluation.demo_validation --feature-scaling standardize \
        --work-dir runs/demo_standardize                       # an alternative

Takes every flag of `evaluation.demo` and trains the same runs (the same run folders:
after `make demo` nothing is trained again, and the reverse), but reads only each
run's validation part, the training-list groups its seed held out: video accuracy per
stream and model, the 1/3 + 2/3 fusion, the attention mass on the key frames against
their share, and the best validation accuracy within the first E epochs (what
`--epochs E` would have kept, as the best epoch is kept). The test list is never
scored. Writes `validation.md` and `validation.csv` into `--results-dir`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.key_frames import read_key_frames
from temporal_attention.data.samples import SampleDataset
from temporal_attention.evaluation import attention, demo
from temporal_attention.evaluation.scoring import accuracy, fuse_scores, predict_video_scores
from temporal_attention.evaluation.selection import validation_curve
from temporal_attention.evaluation.tables import to_markdown
from temporal_attention.models.two_stream_vgg16 import STREAMS
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.training import train_attention
from temporal_attention.training.runs import MODELS, Run
from temporal_attention.training.train_attention import ModelCache


def validate_run(run: Run, model, key_frames: dict) -> dict:
    """Video scores `(videos, C)` and labels of a run's validation part, and for an
    attention model the mean attention mass on their key frames over their share."""
    record = run.load_config()
    items = list(record.validation_videos)
    dataset = SampleDataset(
        FeatureStore(record.feature_store),
        items,
        batch_size=len(items),
        num_frames=record.train.num_frames,
        stride=record.train.stride,
    )
    result = {
        "scores": predict_video_scores(model, dataset),
        "labels": np.asarray([label for _, label in items]),
    }
    if record.train.model == "attention":
        weights = attention.run_frame_weights(run, [video for video, _ in items], model=model)
        masses = np.asarray(attention.key_frame_masses(weights, key_frames))  # (videos, 2)
        result["ratio"] = float(masses[:, 0].mean() / masses[:, 1].mean())
    return result


def seed_rows(config: demo.DemoConfig, summary, seed: int, models: ModelCache, key_frames):
    """`(quantity, stream, model, value)` rows of one seed: validation accuracy (each
    stream, two-stream), key-frame mass / share, best accuracy within E epochs."""
    rows, results = [], {}
    for stream in STREAMS:
        for model in MODELS[::-1]:  # baseline first
            trained = train_attention.run(
                train_attention.TrainAttentionConfig(
                    video_root=summary.video_root,
                    split_dir=summary.split_dir,
                    store=config.work_dir / "features" / stream,
                    train=demo.train_settings(config, stream, model, seed),
                    runs=config.work_dir / "runs" / f"seed{seed}",
                    jit_compile=config.jit_compile,
                ),
                verbose=0,
                models=models,
            )
            result = validate_run(trained, models.best(trained), key_frames)
            results[(stream, model)] = result
            rows.append(("accuracy", stream, model, accuracy(result["scores"], result["labels"])))
            if "ratio" in result:
                rows.append(("mass / share", stream, model, result["ratio"]))
            curve = validation_curve(trained)
            for epochs in range(10, len(curve) + 1, 10):
                rows.append((f"best of {epochs} epochs", stream, model, max(curve[:epochs])))
    for model in MODELS[::-1]:
        appearance, motion = results[("appearance", model)], results[("motion", model)]
        fused = fuse_scores(appearance["scores"], motion["scores"])
        rows.append(("accuracy", "two-stream", model, accuracy(fused, appearance["labels"])))
    return rows


def run(config: demo.DemoConfig) -> pd.DataFrame:
    """Stages 1-3 of the demo, then every seed's runs, read on their validation parts."""
    summary = demo.generate(config)
    demo.flow(config, summary)
    demo.extract_streams(config, summary)
    key_frames = read_key_frames(summary.key_frames_csv)
    models = ModelCache()
    columns = ["quantity", "stream", "model"]
    table = None
    for seed in config.seeds:
        rows = pd.DataFrame(
            seed_rows(config, summary, seed, models, key_frames), columns=[*columns, f"seed {seed}"]
        )
        table = rows if table is None else table.merge(rows, on=columns)
    values = table[[f"seed {seed}" for seed in config.seeds]].to_numpy()
    table["mean"] = values.mean(axis=1)
    table["std"] = values.std(axis=1, ddof=1) if len(config.seeds) > 1 else 0.0
    config.results_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(config.results_dir / "validation.csv", index=False)
    shown = table.copy()
    for column in shown.columns[3:]:
        shown[column] = [
            f"{value:.2f}" if quantity == "mass / share" else f"{100 * value:.1f}"
            for quantity, value in zip(shown["quantity"], shown[column], strict=True)
        ]
    markdown = to_markdown(shown)
    (config.results_dir / "validation.md").write_text(markdown)
    print(f"\nValidation parts only (accuracy %; seeds {config.seeds}):\n\n{markdown}")
    return table


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    config = parse_config(
        demo.DemoConfig, argv, prog="python -m evaluation.demo_validation", doc=__doc__
    )
    return run(config)


if __name__ == "__main__":
    exit_on_error(main)
