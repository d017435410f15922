"""The whole paper on a laptop CPU: synthetic sparse-action videos to Table 1 and Fig. 1.

    python -m evaluation.demo            # or: make demo

Stages, each the project's own CLI run in this process, each skipping what is done:
generate the synthetic dataset (`data.synthetic`, UCF101 layout, key frames known),
optical flow (`training.compute_flow`), fine-tune the appearance and motion ConvNets
(`training.finetune_convnet`), extract per-frame features (`training.extract_features`),
train the mean-pooling baseline and the attention model for both streams
(`training.train_attention`), then score them the paper's way (last 10 steps, video
mean, 1/3 appearance + 2/3 motion) and write Table 1 and Fig. 1 style figures.

The CPU budget forces departures from the paper, named here and in the README: the
ConvNets are VGG16-BN (batch norm after each convolution, He initialisation) with a
quarter of the filters per convolution (`width_multiplier=0.25`), 64x64 inputs and
256-unit FC layers, trained from scratch (no ImageNet weights offline; plain VGG16
does not start learning from scratch in this budget), on frames decoded at 64x85;
flow is Farneback instead of TV-L1 (TV-L1 would take about 10 minutes alone). The
attention model keeps the paper's structure (2 LSTM layers, 30 steps, eqs. 3-8,
Adadelta) with 128 cells per layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

STREAMS = ("appearance", "motion")
MODELS = ("baseline", "attention")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of the CPU demo; every stage reads them."""

    work_dir: Path = Path("runs/demo")  # dataset, flow, networks, features, runs
    results_dir: Path = Path("evaluation/results/demo")  # table1.md/.csv, figures/
    synthetic_preset: str = "demo"  # data.synthetic.PRESETS ("tiny" for tests)
    seed: int = 0
    # Frames are decoded at this size for flow and both ConvNets, so that a
    # 64x64 crop holds most of the frame (the actor) while training.
    frame_height: int = 64
    frame_width: int = 85
    # Flow: Farneback (TV-L1 is the paper's lineage but ~100x slower here).
    flow_method: str = "farneback"
    # ConvNets: VGG16-BN at a quarter of its filters, from scratch (He init).
    input_size: int = 64
    width_multiplier: float = 0.25
    fc_units: int = 256
    finetune_iterations: int = 1000
    finetune_batch_size: int = 16
    # From scratch, on a CPU budget. Measured on the demo data: with the paper's
    # fine-tuning dropout (0.9) or weight decay, or at lr 0.01, the FC6 units of these
    # nets die (over 95% never fire) and every frame gets the same feature.
    finetune_learning_rate: float = 0.001
    finetune_lr_step: int = 1000
    finetune_dropout: float = 0.0
    finetune_weight_decay: float = 0.0
    # Attention models: the paper's structure, fewer cells.
    units: int = 128
    epochs: int = 40
    batch_size: int = 16
    num_figures: int = 4  # Fig. 1 style figures of test videos, one per class


# === Stages ===


def _stage(name: str, began: float) -> None:
    print(f"\n=== {name} (at {time.perf_counter() - began:.0f} s) ===", flush=True)


def generate(config: DemoConfig):
    from data.synthetic import PRESETS, generate_dataset

    synthetic = dataclasses.replace(PRESETS[config.synthetic_preset], seed=config.seed)
    return generate_dataset(config.work_dir / "synthetic", synthetic)


def _split_args(summary) -> list[str]:
    return ["--video-root", str(summary.video_root), "--split-dir", str(summary.split_dir)]


def compute_flow(config: DemoConfig, summary) -> None:
    from training import compute_flow as flow_cli

    status = flow_cli.main(
        [*_split_args(summary), "--subset", "all", "--method", config.flow_method]
        + ["--height", str(config.frame_height), "--width", str(config.frame_width)]
        + ["--output", str(config.work_dir / "flow"), "--workers", "2"]
    )
    if status != 0:
        raise RuntimeError(f"Optical flow failed for some videos (exit status {status}).")


def finetune(config: DemoConfig, summary, stream: str) -> Path:
    from training import finetune_convnet

    output_dir = config.work_dir / "convnets" / stream
    final = output_dir / finetune_convnet.FINAL_NAME
    if final.exists():
        print(f"{final} exists: fine-tuning done.")
        return final
    flow = ["--flow-root", str(config.work_dir / "flow")] if stream == "motion" else []
    return finetune_convnet.main(
        [*_split_args(summary), *flow]
        + ["--preset", "spatial" if stream == "appearance" else "temporal"]
        + ["--height", str(config.frame_height), "--width", str(config.frame_width)]
        + ["--weights", "none", "--fc-units", str(config.fc_units), "--batch-norm"]
        + ["--kernel-initializer", "he_normal"]
        + ["--width-multiplier", str(config.width_multiplier)]
        + ["--crop-size", str(config.input_size), "--batch-size", str(config.finetune_batch_size)]
        + ["--max-iterations", str(config.finetune_iterations)]
        + ["--learning-rate", str(config.finetune_learning_rate)]
        + ["--lr-step", str(config.finetune_lr_step)]
        + ["--dropout-fc6", str(config.finetune_dropout)]
        + ["--dropout-fc7", str(config.finetune_dropout)]
        + ["--weight-decay", str(config.finetune_weight_decay)]
        + ["--checkpoint-every", "50", "--seed", str(config.seed), "--workers", "2"]
        + ["--output-dir", str(output_dir)]
    )  # fmt: skip


def extract(config: DemoConfig, summary, stream: str, network: Path) -> Path:
    from training import extract_features

    store = config.work_dir / "features" / stream
    flow = ["--flow-root", str(config.work_dir / "flow")] if stream == "motion" else []
    status = extract_features.main(
        [*_split_args(summary), *flow, "--stream", stream, "--subset", "all"]
        + ["--height", str(config.frame_height), "--width", str(config.frame_width)]
        + ["--weights", str(network), "--fc-units", str(config.fc_units), "--batch-norm"]
        + ["--width-multiplier", str(config.width_multiplier)]
        + ["--input-size", str(config.input_size), "--batch-size", "64", "--store", str(store)]
    )
    if status != 0:
        raise RuntimeError(f"Feature extraction failed for some videos (exit status {status}).")
    return store


def train(config: DemoConfig, summary, stream: str, model: str, store: Path) -> Path:
    from training import train_attention

    runs = config.work_dir / "runs"
    train_attention.main(
        [*_split_args(summary), "--store", str(store), "--runs", str(runs)]
        + ["--stream", stream, "--model", model, "--units", str(config.units)]
        + ["--epochs", str(config.epochs), "--batch-size", str(config.batch_size)]
        + ["--seed", str(config.seed)]
    )
    return train_attention.run_dir_for(
        runs, train_attention.TrainConfig(stream=stream, model=model)
    )


# === Results ===


def table1(run_dirs: dict[tuple[str, str], Path]) -> pd.DataFrame:
    """Video accuracy per stream and model, and two-stream (1/3 + 2/3) fusion."""
    from evaluation.scoring import VideoScores, fuse_video_scores

    rows = []
    scores = {key: VideoScores.load(path / "test_scores.npz") for key, path in run_dirs.items()}
    for stream in STREAMS:
        for model in MODELS:
            rows.append((stream, model, scores[(stream, model)].accuracy()))
    for model in MODELS:
        fused = fuse_video_scores(scores[("appearance", model)], scores[("motion", model)])
        rows.append(("two-stream", model, fused.accuracy()))
    return pd.DataFrame(rows, columns=["stream", "model", "accuracy"])


def attention_on_key_frames(run_dirs, key_frames_csv: Path, figures_dir: Path, summary, count):
    """Attention mass on the annotated key frames (per stream) and Fig. 1 figures."""
    from data.video import read_video
    from figures.attention import (
        key_frame_mass,
        load_run,
        plot_attention,
        plot_key_frame_mass,
        read_key_frames,
        run_frame_weights,
    )

    key_frames = read_key_frames(key_frames_csv)
    masses, weights = {}, {}
    for stream in STREAMS:
        config, model = load_run(run_dirs[(stream, "attention")])
        videos = [video_id for video_id, _ in config["test_videos"]]
        stream_weights = run_frame_weights(config, model, videos)
        for video_id in videos:
            weights.setdefault(video_id, {})[stream] = stream_weights[video_id]
        masses[stream] = [
            key_frame_mass(stream_weights[video_id], key_frames[video_id]) for video_id in videos
        ]
    plot_key_frame_mass(masses, figures_dir / "key_frame_mass")
    first_of_class = {}
    for video_id in sorted(weights):  # one test video per class, up to `count`
        first_of_class.setdefault(video_id.split("/")[0], video_id)
    for video_id in list(first_of_class.values())[:count]:
        frames = read_video(summary.video_root / f"{video_id}.avi", None, None).frames
        plot_attention(
            frames,
            weights[video_id],
            figures_dir / video_id.replace("/", "__"),
            title=f"{video_id} (key frames {min(key_frames[video_id])}-"
            f"{max(key_frames[video_id])})",
        )
    return {
        stream: {
            "attention_mass_on_key_frames": float(np.mean([mass for mass, _ in points])),
            "key_frame_share": float(np.mean([share for _, share in points])),
            "videos": len(points),
        }
        for stream, points in masses.items()
    }


def write_results(config: DemoConfig, table: pd.DataFrame, key_frame_report: dict) -> str:
    from evaluation.tables import to_markdown

    config.results_dir.mkdir(parents=True, exist_ok=True)
    shown = table.assign(accuracy=[f"{100 * value:.1f}" for value in table["accuracy"]])
    markdown = to_markdown(shown)
    (config.results_dir / "table1.md").write_text(markdown + "\n")
    table.to_csv(config.results_dir / "table1.csv", index=False)
    (config.results_dir / "key_frames.json").write_text(json.dumps(key_frame_report, indent=2))
    return markdown


def run_demo(config: DemoConfig) -> dict:
    began = time.perf_counter()
    _stage("1/7 synthetic dataset", began)
    summary = generate(config)
    _stage("2/7 optical flow", began)
    compute_flow(config, summary)
    networks, stores = {}, {}
    for stream in STREAMS:
        _stage(f"3/7 fine-tune the {stream} ConvNet", began)
        networks[stream] = finetune(config, summary, stream)
    for stream in STREAMS:
        _stage(f"4/7 extract {stream} features", began)
        stores[stream] = extract(config, summary, stream, networks[stream])
    run_dirs = {}
    for stream in STREAMS:
        for model in MODELS:
            _stage(f"5/7 train the {stream} {model}", began)
            run_dirs[(stream, model)] = train(config, summary, stream, model, stores[stream])
    _stage("6/7 score (last 10 steps, video mean, 1/3 + 2/3 fusion)", began)
    table = table1(run_dirs)
    _stage("7/7 attention on key frames, figures", began)
    figures_dir = config.results_dir / "figures"
    key_frame_report = attention_on_key_frames(
        run_dirs, summary.key_frames_csv, figures_dir, summary, config.num_figures
    )
    markdown = write_results(config, table, key_frame_report)
    print(f"\nTable 1 on the synthetic dataset ({summary.num_test} test videos), accuracy %:")
    print(markdown)
    for stream, report in key_frame_report.items():
        print(
            f"{stream} attention: {report['attention_mass_on_key_frames']:.3f} of the mass on "
            f"key frames, which are {report['key_frame_share']:.3f} of the frames"
        )
    print(f"Written to {config.results_dir} in {time.perf_counter() - began:.0f} s")
    return {"table": table, "key_frames": key_frame_report}


def parse_args(argv: Sequence[str] | None = None) -> DemoConfig:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.demo", description=__doc__.split("\n\n")[0]
    )
    for field in dataclasses.fields(DemoConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    return DemoConfig(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> dict:
    return run_demo(parse_args(argv))


if __name__ == "__main__":
    main()
