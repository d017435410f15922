"""Peak memory of the stages that go through a whole video: flow, extraction, predict.

    python -m benchmarks.memory_benchmark --num-frames 3000

Writes one generated clip (`--num-frames` frames at 240x320, Motion-JPEG AVI, a texture
moving 2 px right and 1 px down per frame) as a one-clip UCF101-shaped split, then runs
each stage in a process of its own and reports its peak resident memory:

- `flow`: `training.compute_flow --method farneback` at 256x340, one worker;
- `appearance`, `motion`: `training.extract_features` on 256x340 frames / flow stacks,
  with a small network (weights none, 16 FC units, conv widths 1/8, input 224);
- `predict-appearance`, `predict-motion`: `evaluation.predict.video_features` (the
  part of predict that reads the video; motion computes its flow in memory) with the
  same network saved as a `.keras` file.

Peak memory is `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` of a fresh Python
process whose only child is the stage, so nothing else is counted; it includes the
interpreter and the libraries (TensorFlow alone is a few hundred MB). The report goes
to `<output>/memory_<num_frames>.json` and is printed as a table.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH
from temporal_attention.runtime.config_flags import exit_on_error, parse_config

STAGES = ("flow", "appearance", "motion", "predict-appearance", "predict-motion")
REPOSITORY = Path(__file__).resolve().parents[1]

# Runs argv[1:] as the only child of this process, then prints the child's peak RSS (KiB).
_MEASURE = (
    "import resource, subprocess, sys\n"
    "status = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(status)\n"
)

# evaluation.predict's feature computation for one video and one stream.
_PREDICT = (
    "import json, sys\n"
    "from temporal_attention.evaluation.predict import video_features\n"
    "from temporal_attention.models.feature_extraction import FeatureRecipe\n"
    "recipe = FeatureRecipe.from_metadata(json.loads(sys.argv[2]))\n"
    "features = video_features(sys.argv[1], recipe, sys.argv[3])\n"
    "print('features', features.shape)\n"
)


@dataclass(frozen=True)
class MemoryBenchmarkConfig:
    """The clip, the stages and the small network of the benchmark."""

    output: Path = field(
        default=Path("evaluation/results/memory"), metadata={"help": "clip, outputs, report"}
    )
    num_frames: int = field(default=3000, metadata={"help": "frames of the generated clip"})
    source_height: int = field(default=240, metadata={"help": "stored frame height (UCF101's)"})
    source_width: int = field(default=320, metadata={"help": "stored frame width (UCF101's)"})
    height: int = field(
        default=FRAME_HEIGHT,
        metadata={"help": "frame height of flow and extraction (two-stream's)"},
    )
    width: int = field(default=FRAME_WIDTH, metadata={"help": "frame width of flow and extraction"})
    method: str = field(
        default="farneback",
        metadata={"help": "flow method (the fast option; TV-L1 holds the same memory)"},
    )
    fc_units: int = field(default=16, metadata={"help": "the small network's FC units"})
    width_multiplier: float = field(
        default=0.125, metadata={"help": "the small network's conv widths, a share of VGG16's"}
    )
    batch_size: int = field(default=64, metadata={"help": "extraction and predict batch"})
    stages: tuple[str, ...] = field(default=STAGES, metadata={"help": ",".join(STAGES)})

    def __post_init__(self):
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown:
            raise ValueError(f"Expected stages among {STAGES}. Received: {unknown}")
        if self.num_frames < 6:
            raise ValueError(f"Expected num_frames >= 6. Received: num_frames={self.num_frames}")


def write_moving_texture(path: Path, num_frames: int, height: int, width: int) -> Path:
    """A Motion-JPEG AVI of a smooth random texture moving (2, 1) px per frame (wrapping
    round), written frame by frame: the generator holds one frame, whatever the length."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (0, 0), 2)
    texture = cv2.cvtColor(
        cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX), cv2.COLOR_GRAY2BGR
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write a Motion-JPEG video here.")
    try:
        for index in range(num_frames):
            writer.write(np.roll(texture, (index, 2 * index), axis=(0, 1)))  # (H, W, 3)
    finally:
        writer.release()
    return path


def write_clip_split(root: Path, config: MemoryBenchmarkConfig) -> tuple[Path, Path]:
    """`root/UCF-101/Long/v_Long_g01_c01.avi` and `root/ucfTrainTestlist/` listing it as
    the one training clip (and one test clip that is never read). Returns (video_root,
    split_dir); an existing clip is kept."""
    video_root, split_dir = root / "UCF-101", root / "ucfTrainTestlist"
    video = video_root / "Long" / "v_Long_g01_c01.avi"
    if not video.is_file():
        write_moving_texture(video, config.num_frames, config.source_height, config.source_width)
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "classInd.txt").write_text("1 Long\r\n", newline="")
    (split_dir / "trainlist01.txt").write_text("Long/v_Long_g01_c01.avi 1\r\n", newline="")
    # A split lists test videos too; the stages read --subset train, so this one is
    # never decoded (nor needed on disk).
    (split_dir / "testlist01.txt").write_text("Long/v_Long_g02_c01.avi\r\n", newline="")
    return video_root, split_dir


def peak_memory(command: Sequence[str]) -> dict:
    """Runs `command` as the only child of a fresh Python process; returns its peak
    resident memory (`peak_rss_mib`, from `RUSAGE_CHILDREN`) and wall time."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    kibibytes = int(result.stdout.strip().splitlines()[-1])
    return {"peak_rss_mib": kibibytes / 1024, "seconds": seconds}


def _save_network(stream: str, config: MemoryBenchmarkConfig, path: Path) -> Path:
    from temporal_attention.models.two_stream_vgg16 import build_stream_vgg16

    if not path.is_file():
        network = build_stream_vgg16(
            stream, weights=None, fc_units=config.fc_units, width_multiplier=config.width_multiplier
        )
        network.save(path)
    return path


def stage_commands(config: MemoryBenchmarkConfig, root: Path) -> dict[str, list[str]]:
    """The command line of each stage of `config.stages`, reading the clip under `root`."""
    video_root, split_dir = write_clip_split(root, config)
    source = ["--video-root", str(video_root), "--split-dir", str(split_dir), "--subset", "train"]
    size = ["--height", str(config.height), "--width", str(config.width)]
    network = ["--weights", "none", "--fc-units", str(config.fc_units)]
    network += ["--width-multiplier", str(config.width_multiplier)]
    network += ["--batch-size", str(config.batch_size)]
    flow_root = root / "flow"
    commands = {
        "flow": [
            *("-m", "training.compute_flow", *source, *size),
            *("--output", str(flow_root), "--method", config.method, "--workers", "1"),
        ]
    }
    for stream in ("appearance", "motion"):
        commands[stream] = [
            *("-m", "training.extract_features", *source, *size, *network),
            *("--stream", stream, "--store", str(root / "features" / stream)),
            *("--flow-root", str(flow_root)),
        ]
        if f"predict-{stream}" not in config.stages:
            continue
        weights = _save_network(stream, config, root / f"{stream}_network.keras")
        recipe = {
            "stream": stream,
            "weights": str(weights),
            "frame_size": [config.height, config.width],
            "flow_size": [config.height, config.width],
        }
        video = video_root / "Long" / "v_Long_g01_c01.avi"
        commands[f"predict-{stream}"] = [
            *("-c", _PREDICT, str(video), json.dumps(recipe), config.method)
        ]
    return {stage: [sys.executable, *commands[stage]] for stage in config.stages}


def run(config: MemoryBenchmarkConfig) -> dict:
    """Measures every stage of `config.stages` (motion extraction reads the flow stage's
    output: keep `flow` before `motion`); returns the report, also written as JSON."""
    root = Path(config.output) / f"clip_{config.num_frames}"
    outputs = {
        "flow": root / "flow",
        **{s: root / "features" / s for s in ("appearance", "motion")},
    }
    results = {}
    for stage, command in stage_commands(config, root).items():
        if stage in outputs:  # a stage skips what is complete: start from nothing
            shutil.rmtree(outputs[stage], ignore_errors=True)
        results[stage] = peak_memory(command)
        print(f"{stage:<20s} {results[stage]['peak_rss_mib']:8.0f} MiB")
    report = {
        "config": {**asdict(config), "output": str(config.output)},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "results": results,
    }
    path = Path(config.output) / f"memory_{config.num_frames}.json"
    path.write_text(json.dumps(report, indent=2))
    return report


def format_table(report: dict) -> str:
    config = report["config"]
    lines = [
        f"{config['num_frames']} frames, {config['source_height']}x{config['source_width']} "
        f"stored, {config['height']}x{config['width']} processed; peak resident memory",
        "",
        "| stage | peak RSS (MiB) | seconds |",
        "|---|---|---|",
    ]
    for stage, result in report["results"].items():
        lines.append(f"| {stage} | {result['peak_rss_mib']:.0f} | {result['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    report = run(
        parse_config(
            MemoryBenchmarkConfig, argv, prog="python -m benchmarks.memory_benchmark", doc=__doc__
        )
    )
    print(format_table(report))
    return report


if __name__ == "__main__":
    exit_on_error(main)
