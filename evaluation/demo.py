"""The whole paper on a laptop CPU: synthetic sparse-action videos to Table 1 and Fig. 1.

    python -m evaluation.demo            # or: make demo

Stages, each the project's own stage (`run(config)`, as its CLI calls it), each
skipping what is done: generate the synthetic dataset (`data.synthetic`, UCF101 layout,
key frames known), optical flow (`training.compute_flow`), per-frame features of both
streams from a frozen ImageNet EfficientNet-Lite0 (`training.extract_features`; its
weights install offline with pip), then, for every training seed, the mean-pooling
baseline and the attention model of both streams (`training.train_attention`), scored
the paper's way (`evaluation.scoring`: last 10 steps, video mean, 1/3 appearance +
2/3 motion). It writes Table 1 and the attention mass on the key frames per seed and
as the mean and standard deviation over the seeds, and Fig. 1 style figures
(`evaluation.attention`, `figures.attention`).

The data and the features are shared by the seeds; a seed changes the validation
groups held out, the initialisation, the shuffling and the dropout of the trainings.
The two streams are extracted and trained side by side in two processes, each with
its share of the cores as TensorFlow's thread pools (a training step of these small
models is many small operations: one thread each ran them 1.5x faster than two
processes of the default pools). Departures from the paper, for the CPU budget, and how
each setting was chosen (by design, or on the validation parts of the training list,
never on the test list) are in docs/synthetic_and_demo.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path

import numpy as np
import pandas as pd

from temporal_attention.data.flow_store import FlowSettings
from temporal_attention.data.key_frames import read_key_frames
from temporal_attention.data.splits import SplitSource
from temporal_attention.data.synthetic import PRESETS as SYNTHETIC_PRESETS
from temporal_attention.data.synthetic import generate_dataset
from temporal_attention.data.video import read_video
from temporal_attention.evaluation import attention, scoring
from temporal_attention.evaluation.scoring import fuse_video_scores, is_scored, load_scores
from temporal_attention.evaluation.tables import to_markdown
from temporal_attention.figures.attention import plot_attention, plot_key_frame_mass
from temporal_attention.models.feature_extraction import FeatureRecipe
from temporal_attention.models.two_stream_vgg16 import STREAMS
from temporal_attention.runtime.atomic_files import atomic_write
from temporal_attention.runtime.batch_jobs import run_jobs
from temporal_attention.runtime.config_flags import exit_on_error, parse_config
from temporal_attention.runtime.jobs import JobResult, default_workers
from temporal_attention.training import compute_flow, extract_features, train_attention
from temporal_attention.training.runs import MODELS, Run, TrainConfig
from temporal_attention.training.runs import PRESETS as TRAIN_PRESETS
from temporal_attention.training.train_attention import ModelCache

TABLE_STREAMS = (*STREAMS, "two-stream")
# TrainConfig fields each of the demo's runs sets itself (not flags of the demo).
PER_RUN = ("dataset", "split", "stream", "model", "seed", "classes")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of the CPU demo; every stage reads them. Why each value:
    docs/synthetic_and_demo.md#settings-and-how-each-was-chosen."""

    work_dir: Path = Path("runs/demo")  # dataset, flow, features, runs
    results_dir: Path = Path("evaluation/results/demo")  # table1.md/.csv, figures/
    synthetic_preset: str = "demo"  # data.synthetic.PRESETS ("tiny" for tests)
    data_seed: int = field(default=0, metadata={"help": "seed of the synthetic dataset"})
    # Clips per class; None: the preset's (demo: 100).
    clips_per_class: int | None = field(
        default=None, metadata={"help": "clips per class (default: the preset's)"}
    )
    # Training seeds (validation groups, initialisation, shuffling, dropout), one
    # Table 1 each; data and features are shared.
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "comma-separated"})
    # Frames are decoded at the stored size for flow and features.
    frame_height: int = 96
    frame_width: int = 128
    # Flow: Farneback (TV-L1 is the paper's lineage but far slower on a CPU).
    flow_method: str = "farneback"
    # Features: frozen ImageNet EfficientNet-Lite0, its 1280-d avg_pool, on the
    # central square crop of this side (the frame's height).
    backbone: str = "EfficientNetLite0"
    input_size: int = 96
    extract_batch_size: int = 32
    # The attention and baseline models and their training (training.runs.PRESETS["demo"]):
    # the paper's structure (2 layers, 30 steps, eqs. 3-8, Adadelta at its learning rate
    # 1.0) with 64 cells per layer (paper: 512); 30 epochs of 32 samples, the best
    # validation epoch kept, features as stored. Each run sets its stream, model and seed.
    train: TrainConfig = field(default=TRAIN_PRESETS["demo"], metadata={"not_flags": PER_RUN})
    # XLA: off, plain TensorFlow graphs trace and run faster for these small models.
    jit_compile: bool = field(default=False, metadata={"help": "XLA-compile the steps"})
    # Processes extracting and training the streams side by side (at most one per
    # stream); each gets cores / jobs threads (`threads_per_job`).
    jobs: int = 2
    num_figures: int = 4  # Fig. 1 style figures of test videos, one per class

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("Expected at least one seed. Received: seeds=()")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Expected distinct seeds. Received: seeds={self.seeds}")
        if self.synthetic_preset not in SYNTHETIC_PRESETS:
            raise ValueError(
                f"Expected synthetic_preset in {tuple(SYNTHETIC_PRESETS)}. "
                f"Received: {self.synthetic_preset!r}"
            )
        if self.jobs < 1:
            raise ValueError(f"Expected jobs >= 1. Received: jobs={self.jobs}")


# === Stages ===


def _stage(name: str, began: float) -> None:
    print(f"\n=== {name} (at {time.perf_counter() - began:.0f} s) ===", flush=True)


def synthetic_config(config: DemoConfig):
    """The dataset's `SyntheticConfig`: the preset, with the demo's seed and size."""
    synthetic = dataclasses.replace(
        SYNTHETIC_PRESETS[config.synthetic_preset], seed=config.data_seed
    )
    if config.clips_per_class is not None:
        synthetic = dataclasses.replace(synthetic, clips_per_class=config.clips_per_class)
    return synthetic


def generate(config: DemoConfig):
    return generate_dataset(config.work_dir / "synthetic", synthetic_config(config))


def _source(summary) -> SplitSource:
    return SplitSource(summary.video_root, summary.split_dir)


def stream_processes(config: DemoConfig) -> int:
    """Processes the streams are extracted and trained in: `jobs`, at most one a stream."""
    return min(config.jobs, len(STREAMS))


def threads_per_job(config: DemoConfig) -> int:
    """The cores this process may use, shared by the stream processes (at least 1)."""
    return max(1, default_workers() // stream_processes(config))


def limit_threads(threads: int) -> None:
    """The backend's CPU thread pools of this process: `threads` each (TensorFlow's
    intra- and inter-op pools, PyTorch's intra-op pool; JAX keeps its own). Run first
    in a new process: a TensorFlow runtime already started keeps its pools."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # initialised already (the in-process path of jobs=1)
            pass
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def _stream_jobs(config: DemoConfig, worker, tasks: list[tuple], description: str):
    """`run_jobs(worker, tasks)` in `config.jobs` processes of `threads_per_job` threads."""
    return run_jobs(
        worker,
        tasks,
        workers=min(config.jobs, len(tasks)),
        description=description,
        initializer=functools.partial(limit_threads, threads_per_job(config)),
    )


def flow(config: DemoConfig, summary) -> None:
    report = compute_flow.run(
        compute_flow.ComputeFlowConfig(
            source=_source(summary),
            output=config.work_dir / "flow",
            settings=FlowSettings(config.flow_method, config.frame_height, config.frame_width),
            workers=2,
        )
    )
    if report.failures:
        raise RuntimeError(f"Optical flow failed for {len(report.failures)} videos.")


def extract(config: DemoConfig, summary, stream: str, workers: int = 0) -> Path:
    """Frozen ImageNet features of every clip of `stream` (no fine-tuning); `workers`:
    processes decoding the clips (0: this one, as in a stream job's process)."""
    store = config.work_dir / "features" / stream
    recipe = FeatureRecipe(
        stream=stream,
        backbone=config.backbone,
        weights="imagenet",
        input_size=config.input_size,
        height=config.frame_height,
        width=config.frame_width,
    )
    report = extract_features.run(
        extract_features.ExtractFeaturesConfig(
            source=_source(summary),
            store=store,
            recipe=recipe,
            flow_root=config.work_dir / "flow" if stream == "motion" else None,
            batch_size=config.extract_batch_size,
            workers=workers,
        )
    )
    if report.failures:
        raise RuntimeError(f"Feature extraction failed for {len(report.failures)} videos.")
    return store


def extract_stream(stream: str, config: DemoConfig, summary) -> JobResult:
    """`extract` as a job of `extract_streams`."""
    began = time.perf_counter()
    extract(config, summary, stream)
    return JobResult(stream, "done", seconds=time.perf_counter() - began)


def extract_streams(config: DemoConfig, summary) -> None:
    """`extract` for both streams, side by side in `config.jobs` processes."""
    report = _stream_jobs(
        config, extract_stream, [(stream, config, summary) for stream in STREAMS], "streams"
    )
    if report.failures:
        raise RuntimeError("Feature extraction failed:\n" + report.summary())


def train_settings(config: DemoConfig, stream: str, model: str, seed: int) -> TrainConfig:
    return dataclasses.replace(config.train, stream=stream, model=model, seed=seed)


def run_folder(config: DemoConfig, stream: str, model: str, seed: int) -> Run:
    return Run.for_config(
        config.work_dir / "runs" / f"seed{seed}", train_settings(config, stream, model, seed)
    )


def attention_path(config: DemoConfig, stream: str, seed: int) -> Path:
    """The attention weights of a seed's attention model on the test videos."""
    return config.work_dir / "attention" / f"seed{seed}" / f"{stream}.npz"


def train_stream(stream: str, config: DemoConfig, video_root: Path, split_dir: Path) -> JobResult:
    """Every seed's baseline and attention model of `stream`: trained, scored on the
    test list, and the attention model's weights on the test videos written to
    `attention_path` (`np.savez`: `video_ids`, `lengths`, concatenated `weights`).

    One `ModelCache` for all of them: a seed's model is the previous seed's, put back
    to its initial state, so that it is not traced again."""
    began = time.perf_counter()
    models = ModelCache()
    for seed in config.seeds:
        for model in MODELS[::-1]:  # baseline first
            started = time.perf_counter()
            trained = train_attention.run(
                train_attention.TrainAttentionConfig(
                    video_root=video_root,
                    split_dir=split_dir,
                    store=config.work_dir / "features" / stream,
                    train=train_settings(config, stream, model, seed),
                    runs=config.work_dir / "runs" / f"seed{seed}",
                    jit_compile=config.jit_compile,
                ),
                verbose=0,
                models=models,
            )
            weights_path = attention_path(config, stream, seed)
            scored = is_scored(trained)
            if scored and (model == "baseline" or weights_path.is_file()):
                print(f"{trained.root}: trained and scored already.", flush=True)
                continue
            best = models.best(trained)  # no new trace for scoring and attention
            if not scored:
                scoring.score_run(trained, batch_size=config.train.batch_size, model=best)
            if model == "attention":
                test_videos = [video_id for video_id, _ in trained.load_config().test_videos]
                weights = attention.run_frame_weights(trained, test_videos, model=best)
                with atomic_write(weights_path, suffix=".npz") as temporary:  # whole or none
                    np.savez(
                        temporary,
                        video_ids=np.asarray(test_videos, dtype=str),
                        lengths=np.asarray([len(weights[video]) for video in test_videos]),
                        weights=np.concatenate([weights[video] for video in test_videos]),
                    )
            accuracy = scoring.load_metrics(trained)["accuracy"]
            print(
                f"seed {seed} {stream} {model}: test accuracy {100 * accuracy:.1f}% "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return JobResult(stream, "done", seconds=time.perf_counter() - began)


def train_streams(config: DemoConfig, summary) -> None:
    """`train_stream` for both streams, side by side in `config.jobs` processes (the
    project's pool: Ctrl-C stops both, a failure is reported with its stream); a
    stream whose runs are all trained and scored already is not started."""
    pending = [stream for stream in STREAMS if not stream_done(config, stream)]
    if not pending:
        print("Every run is trained and scored already.")
        return
    report = _stream_jobs(
        config,
        train_stream,
        [(stream, config, summary.video_root, summary.split_dir) for stream in pending],
        "streams",
    )
    if report.failures:
        raise RuntimeError("Training failed:\n" + report.summary())


def stream_done(config: DemoConfig, stream: str) -> bool:
    """Whether every seed's runs of `stream` are scored and their attention written."""
    return all(
        is_scored(run_folder(config, stream, model, seed))
        and attention_path(config, stream, seed).is_file()
        for seed in config.seeds
        for model in MODELS
    )


def read_attention(path: Path) -> dict[str, np.ndarray]:
    """`video_id -> (positions,)` weights written by `train_stream`."""
    with np.load(path) as data:
        ends = np.cumsum(data["lengths"])
        pieces = np.split(data["weights"], ends[:-1])
        return dict(zip(data["video_ids"].tolist(), pieces, strict=True))


# === Results ===


def table1(runs: dict[tuple[str, str], Run]) -> pd.DataFrame:
    """Video accuracy per stream and model, and two-stream (1/3 + 2/3) fusion."""
    rows = []
    scores = {key: load_scores(trained) for key, trained in runs.items()}
    for stream in STREAMS:
        for model in MODELS[::-1]:  # baseline first
            rows.append((stream, model, scores[(stream, model)].accuracy()))
    for model in MODELS[::-1]:
        fused = fuse_video_scores(scores[("appearance", model)], scores[("motion", model)])
        rows.append(("two-stream", model, fused.accuracy()))
    return pd.DataFrame(rows, columns=["stream", "model", "accuracy"])


def key_frame_report(masses: dict[str, list[tuple[float, float]]]) -> dict:
    """Mean attention mass on the key frames and their mean share, per stream."""
    report = {}
    for stream, points in masses.items():
        mass, share = (float(np.mean(values)) for values in zip(*points, strict=True))
        report[stream] = {
            "attention_mass_on_key_frames": mass,
            "key_frame_share": share,
            "ratio": mass / share,
            "videos": len(points),
        }
    return report


def summarize(tables: dict[int, pd.DataFrame], key_frames: dict[int, dict]) -> pd.DataFrame:
    """One row per (stream, model): accuracy per seed, their mean and standard
    deviation; one row per stream: attention mass on the key frames / their share."""
    rows = []
    first = next(iter(tables.values()))
    for stream, model in zip(first["stream"], first["model"], strict=True):
        values = [
            float(table.set_index(["stream", "model"]).loc[(stream, model), "accuracy"])
            for table in tables.values()
        ]
        rows.append(("accuracy", stream, model, *values))
    for stream in STREAMS:
        for quantity in ("attention_mass_on_key_frames", "key_frame_share", "ratio"):
            values = [report[stream][quantity] for report in key_frames.values()]
            rows.append((quantity, stream, "attention", *values))
    seed_columns = [f"seed {seed}" for seed in tables]
    summary = pd.DataFrame(rows, columns=["quantity", "stream", "model", *seed_columns])
    values = summary[seed_columns].to_numpy()
    summary["mean"] = values.mean(axis=1)
    summary["std"] = values.std(axis=1, ddof=1) if values.shape[1] > 1 else 0.0
    return summary


def _formatted(summary: pd.DataFrame, quantity: str, scale: float, digits: int) -> pd.DataFrame:
    shown = summary[summary["quantity"] == quantity].drop(columns="quantity")
    for column in shown.columns[2:]:
        shown[column] = [f"{scale * value:.{digits}f}" for value in shown[column]]
    return shown


def summary_markdown(summary: pd.DataFrame) -> str:
    """Table 1 (accuracy %) and the key-frame table, per seed, mean and std over seeds."""
    accuracy = _formatted(summary, "accuracy", 100.0, 1)
    masses = _formatted(summary, "attention_mass_on_key_frames", 1.0, 3).drop(columns="model")
    shares = summary[summary["quantity"] == "key_frame_share"]["mean"].to_numpy()
    ratios = summary[summary["quantity"] == "ratio"]
    masses["key-frame share"] = [f"{share:.3f}" for share in shares]
    masses["mass / share (mean, std)"] = [
        f"{mean:.2f} ({std:.2f})" for mean, std in zip(ratios["mean"], ratios["std"], strict=True)
    ]
    return (
        "Video accuracy, %:\n\n"
        + to_markdown(accuracy)
        + "\nAttention mass on the key frames (attention models):\n\n"
        + to_markdown(masses)
    )


def write_results(
    config: DemoConfig, tables: dict[int, pd.DataFrame], key_frames: dict[int, dict]
) -> tuple[pd.DataFrame, str]:
    config.results_dir.mkdir(parents=True, exist_ok=True)
    long = pd.concat(
        [table.assign(seed=seed) for seed, table in tables.items()], ignore_index=True
    )[["seed", "stream", "model", "accuracy"]]
    long.to_csv(config.results_dir / "table1.csv", index=False)
    summary = summarize(tables, key_frames)
    summary.to_csv(config.results_dir / "summary.csv", index=False)
    markdown = summary_markdown(summary)
    (config.results_dir / "table1.md").write_text(markdown)
    report = {f"seed {seed}": key_frames[seed] for seed in key_frames}
    (config.results_dir / "key_frames.json").write_text(json.dumps(report, indent=2) + "\n")
    return summary, markdown


def figures(config: DemoConfig, summary, key_frames, all_masses, first_weights) -> None:
    """The key-frame mass of every seed's test videos, and Fig. 1 figures of the first
    seed's attention models, one test video per class."""
    figures_dir = config.results_dir / "figures"
    pooled = {
        stream: [point for masses in all_masses for point in masses[stream]] for stream in STREAMS
    }
    plot_key_frame_mass(pooled, figures_dir / "key_frame_mass")
    first_of_class = {}
    for video_id in sorted(first_weights[STREAMS[0]]):
        first_of_class.setdefault(video_id.split("/")[0], video_id)
    for video_id in list(first_of_class.values())[: config.num_figures]:
        frames = read_video(summary.video_root / f"{video_id}.avi", None, None).frames
        plot_attention(
            frames,
            {stream: first_weights[stream][video_id] for stream in STREAMS},
            figures_dir / video_id.replace("/", "__"),
            title=f"{video_id} (key frames {min(key_frames[video_id])}-"
            f"{max(key_frames[video_id])})",
        )


def run(config: DemoConfig) -> dict:
    """Every stage, in order; returns the tables (per seed), the key-frame reports (per
    seed) and their summary over the seeds."""
    began = time.perf_counter()
    _stage("1/6 synthetic dataset", began)
    summary = generate(config)
    _stage("2/6 optical flow", began)
    flow(config, summary)
    _stage(
        f"3/6 frozen ImageNet {config.backbone} features, both streams side by side "
        f"({stream_processes(config)} processes)",
        began,
    )
    extract_streams(config, summary)
    _stage(
        f"4/6 train and score baseline and attention, seeds {config.seeds}, both streams "
        f"side by side ({stream_processes(config)} processes)",
        began,
    )
    train_streams(config, summary)
    _stage("5/6 Table 1 and the attention on the key frames, per seed", began)
    key_frames = read_key_frames(summary.key_frames_csv)
    tables, reports, all_masses = {}, {}, []
    for seed in config.seeds:
        runs = {
            (stream, model): run_folder(config, stream, model, seed)
            for stream in STREAMS
            for model in MODELS
        }
        tables[seed] = table1(runs)
        weights = {
            stream: read_attention(attention_path(config, stream, seed)) for stream in STREAMS
        }
        masses = {
            stream: attention.key_frame_masses(weights[stream], key_frames) for stream in STREAMS
        }
        reports[seed] = key_frame_report(masses)
        all_masses.append(masses)
        if seed == config.seeds[0]:
            first_weights = weights
    _stage("6/6 results over the seeds, figures", began)
    table_summary, markdown = write_results(config, tables, reports)
    figures(config, summary, key_frames, all_masses, first_weights)
    print(
        f"\nThe synthetic dataset ({summary.num_test} test videos), seeds "
        f"{', '.join(map(str, config.seeds))}; std: over the seeds.\n"
    )
    print(markdown)
    print(f"Written to {config.results_dir} in {time.perf_counter() - began:.0f} s")
    return {"tables": tables, "key_frames": reports, "summary": table_summary}


def main(argv: Sequence[str] | None = None) -> dict:
    return run(parse_config(DemoConfig, argv, prog="python -m evaluation.demo", doc=__doc__))


if __name__ == "__main__":
    exit_on_error(main)
