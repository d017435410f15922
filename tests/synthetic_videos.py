"""Generated videos with known motion, and a tiny UCF101-shaped dataset on disk.

Fixtures of the video, flow, split and pipeline tests:

    frames = shifted_texture_frames(num_frames=8, height=64, width=80, shift=(2.0, 1.0))
    write_ucf101_like(tmp_dir, classes=("Alpha", "Beta"), clips_per_class=3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from data.video import write_video


def shifted_texture_frames(
    num_frames: int = 8,
    height: int = 64,
    width: int = 80,
    shift: tuple[float, float] = (2.0, 1.0),
    seed: int = 0,
) -> np.ndarray:
    """A smooth random texture moving by `shift` = (dx, dy) pixels per frame.

    Each frame is a crop of one large blurred-noise image, offset by t * (dx, dy), so
    the true flow is (dx, dy) everywhere. Integer shifts are exact; others are
    interpolated. Returns `(num_frames, height, width, 3)` uint8 RGB.
    """
    rng = np.random.default_rng(seed)
    dx, dy = shift
    margin = int(np.ceil(max(abs(dx), abs(dy)) * num_frames)) + 2
    big = rng.integers(0, 256, (height + 2 * margin, width + 2 * margin)).astype(np.uint8)
    big = cv2.GaussianBlur(big, (0, 0), 1.5)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX)
    frames = []
    for t in range(num_frames):
        # Frame t shows the texture moved by t * (dx, dy): pixel (x, y) = big(x - t dx, y - t dy).
        matrix = np.float32([[1, 0, margin - t * dx], [0, 1, margin - t * dy]])
        crop = cv2.warpAffine(
            big, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        frames.append(cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB))
    return np.stack(frames)  # (frames, height, width, 3)


def write_ucf101_like(
    root: str | os.PathLike,
    classes: Sequence[str] = ("Alpha", "Beta"),
    clips_per_class: int = 3,
    num_frames: int = 10,
    height: int = 48,
    width: int = 64,
) -> tuple[Path, Path]:
    """Writes `root/UCF-101/<Class>/v_<Class>_gGG_c01.avi` and `root/ucfTrainTestlist/`
    (classInd, trainlist0{1,2,3}, testlist0{1,2,3}, CRLF). Group 1 of each class is the
    test set, the rest train. Returns (video_root, split_dir)."""
    root = Path(root)
    video_root, split_dir = root / "UCF-101", root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for label, name in enumerate(classes, start=1):
        for group in range(1, clips_per_class + 1):
            relative = f"{name}/v_{name}_g{group:02d}_c01.avi"
            shift = (1.0 + label, float(group % 3))
            frames = shifted_texture_frames(
                num_frames, height, width, shift, seed=label * 100 + group
            )
            write_video(video_root / relative, frames)
            (test if group == 1 else train).append((relative, label))
    crlf = "\r\n"
    (split_dir / "classInd.txt").write_text(
        "".join(f"{i} {name}{crlf}" for i, name in enumerate(classes, start=1)), newline=""
    )
    for split in (1, 2, 3):
        (split_dir / f"trainlist0{split}.txt").write_text(
            "".join(f"{relative} {label}{crlf}" for relative, label in train), newline=""
        )
        (split_dir / f"testlist0{split}.txt").write_text(
            "".join(f"{relative}{crlf}" for relative, _ in test), newline=""
        )
    return video_root, split_dir
