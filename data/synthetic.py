"""A synthetic sparse-action dataset in the UCF101 layout, with ground-truth key frames.

The paper's claim is that temporal attention helps when the action fills only some of
a video's frames, the rest being shots that carry no class information (dialog, scene
setting), as in TV and movie material. This module makes exactly that situation, small
enough for a laptop CPU:

- each clip is a sequence of shots joined by hard cuts: ONE action shot, in which a
  stick-figure actor performs a class-specific motion (wave arms, jump, squat, punch,
  kick, bend), among 1-3 distractor shots (still scenery, a camera pan over a texture,
  people standing or talking with small idle motion);
- distractor shots are drawn from a random generator that never sees the class, so
  they are identically distributed for every class; backgrounds, colours, sizes and
  positions of the actor are random per clip, so the class is given only by pose and
  motion;
- the files are the UCF101 layout (`UCF-101/<Class>/v_<Class>_gGG_cCC.avi`,
  `ucfTrainTestlist/classInd.txt`, `trainlist01.txt`, `testlist01.txt`, CRLF), read by
  `data.splits.load_ucf101_split` and every later stage exactly like the real dataset;
- `key_frames.csv` gives the action segment of every clip:
  `video_id,num_frames,start_frame,end_frame` (0-based, end exclusive), and
  `shots.csv` every shot: `video_id,shot,kind,start_frame,end_frame`.

Example:

    summary = generate_dataset("runs/synthetic", SyntheticConfig())
    split = load_ucf101_split(summary.video_root, summary.split_dir, split=1)
    key_frames = load_key_frames(summary.key_frames_csv)
    key_frames["WaveArms/v_WaveArms_g01_c01"]  # (num_frames,) bool, True on the action

CLI:

    python -m data.synthetic --output runs/synthetic --num-classes 4 --clips-per-class 16

Everything is deterministic by `seed`: the same config gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.video import write_video

# Action classes, in classInd order; `num_classes` takes the first ones.
ACTION_CLASSES = ("WaveArms", "Jump", "Squat", "Punch", "Kick", "Bend")
# Distractor shot kinds; chosen uniformly, independently of the class.
DISTRACTOR_KINDS = ("scenery", "pan", "people")
MANIFEST_NAME = "synthetic_config.json"
KEY_FRAMES_NAME = "key_frames.csv"
SHOTS_NAME = "shots.csv"
KEY_FRAMES_FIELDS = ("video_id", "num_frames", "start_frame", "end_frame")
SHOTS_FIELDS = ("video_id", "shot", "kind", "start_frame", "end_frame")
_PARTIAL_SUFFIX = ".partial.avi"


@dataclass(frozen=True)
class SyntheticConfig:
    """What `generate_dataset` writes. Defaults: the CPU demo (see docs_synthetic.md)."""

    # Action classes, the first `num_classes` of ACTION_CLASSES (1-6).
    num_classes: int = 4
    # Clips per class; clip c of a class goes to group (c % num_groups) + 1.
    clips_per_class: int = 24
    # UCF101 groups gGG (25 there); the split is by group, like the official lists.
    num_groups: int = 8
    # Groups 1..num_test_groups are the test set (UCF101 split 1: groups 1-7 of 25).
    num_test_groups: int = 2
    # Frames per clip, drawn uniformly in [min_frames, max_frames]. At most 30 by default:
    # every clip is then one (masked) 30-frame sample of the attention model.
    min_frames: int = 24
    max_frames: int = 30
    # Share of a clip's frames in the action shot, drawn uniformly in this range.
    min_action_share: float = 0.2
    max_action_share: float = 0.4
    # Distractor shots per clip, drawn uniformly in [min_distractors, max_distractors].
    min_distractors: int = 1
    max_distractors: int = 3
    # Shortest distractor shot, in frames (fewer distractors are used if needed).
    min_shot_frames: int = 4
    # Stored frame size; later stages resize it as they are told.
    height: int = 96
    width: int = 128
    fps: float = 25.0
    # Seed of everything; clip (class, index) draws from its own stream of it.
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(ACTION_CLASSES):
            raise ValueError(
                f"Expected 1 <= num_classes <= {len(ACTION_CLASSES)}. "
                f"Received: num_classes={self.num_classes}"
            )
        for name in ("clips_per_class", "num_groups", "min_frames", "min_shot_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected {name} >= 1. Received: {name}={getattr(self, name)}")
        if not 1 <= self.num_groups <= 99:
            raise ValueError(f"Expected 1 <= num_groups <= 99. Received: {self.num_groups}")
        if not 0 <= self.num_test_groups < self.num_groups:
            raise ValueError(
                "Expected 0 <= num_test_groups < num_groups. Received: "
                f"num_test_groups={self.num_test_groups}, num_groups={self.num_groups}"
            )
        if self.clips_per_class > 99 * self.num_groups:
            raise ValueError(
                f"Expected clips_per_class <= 99 * num_groups (cCC has two digits). "
                f"Received: clips_per_class={self.clips_per_class}"
            )
        if self.max_frames < self.min_frames:
            raise ValueError(
                f"Expected min_frames <= max_frames. Received: {self.min_frames}, {self.max_frames}"
            )
        if not 0.0 < self.min_action_share <= self.max_action_share < 1.0:
            raise ValueError(
                "Expected 0 < min_action_share <= max_action_share < 1. Received: "
                f"{self.min_action_share}, {self.max_action_share}"
            )
        if not 1 <= self.min_distractors <= self.max_distractors:
            raise ValueError(
                "Expected 1 <= min_distractors <= max_distractors. Received: "
                f"{self.min_distractors}, {self.max_distractors}"
            )
        shortest_rest = self.min_frames - int(np.ceil(self.max_action_share * self.max_frames))
        if shortest_rest < self.min_shot_frames:
            raise ValueError(
                "Clips too short for a distractor shot: min_frames - max_action_share * "
                f"max_frames = {shortest_rest} < min_shot_frames = {self.min_shot_frames}."
            )
        if self.height < 32 or self.width < 32:
            raise ValueError(
                f"Expected height, width >= 32. Received: height={self.height}, width={self.width}"
            )
        if self.fps <= 0:
            raise ValueError(f"Expected fps > 0. Received: fps={self.fps}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return ACTION_CLASSES[: self.num_classes]


# Named presets; `demo` is the default of `make demo`.
PRESETS = {
    "demo": SyntheticConfig(),
    "tiny": SyntheticConfig(
        num_classes=3, clips_per_class=4, num_groups=4, num_test_groups=1, height=48, width=64
    ),
}


@dataclass(frozen=True)
class ClipSpec:
    """One generated clip: where it goes and where its action is."""

    video_id: str  # "<Class>/v_<Class>_gGG_cCC", as data.splits.Clip.video_id
    label: int  # 1-based, as in classInd.txt
    clip_index: int  # 0..clips_per_class - 1 within its class; seeds its random streams
    group: int
    num_frames: int
    start_frame: int  # first frame of the action shot (0-based)
    end_frame: int  # one past its last frame
    shots: tuple[tuple[str, int, int], ...]  # (kind, start, end) in order

    @property
    def relative_path(self) -> str:
        return f"{self.video_id}.avi"


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_dataset` did."""

    root: Path
    video_root: Path  # root / "UCF-101"
    split_dir: Path  # root / "ucfTrainTestlist"
    key_frames_csv: Path
    class_names: tuple[str, ...]
    num_train: int
    num_test: int
    generated: int  # videos written by this call
    skipped: int  # videos already on disk


# === Drawing ===


def _random_color(rng: np.random.Generator, low: int = 30, high: int = 230) -> np.ndarray:
    return rng.integers(low, high, 3).astype(np.float32)


def _noise_field(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Smooth noise in [0, 1], features about `scale` pixels wide."""
    small = rng.random((max(2, int(height / scale)) + 2, max(2, int(width / scale)) + 2))
    field = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0.0, 1.0)


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random two-colour texture with a few shapes: `(height, width, 3)` float32 RGB."""
    color_a, color_b = _random_color(rng), _random_color(rng)
    mix = _noise_field(rng, height, width, scale=rng.uniform(6, 24))[..., None]
    image = color_a * (1 - mix) + color_b * mix  # (height, width, 3)
    for _ in range(rng.integers(2, 6)):
        color = tuple(float(c) for c in _random_color(rng))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(3, width // 6 + 4)), int(rng.integers(3, height // 6 + 4)))
            cv2.ellipse(image, center, axes, 0.0, 0.0, 360.0, color, -1, cv2.LINE_AA)
        else:
            corner = (center[0] + int(rng.integers(4, width // 4)), center[1] + 4)
            cv2.rectangle(image, center, corner, color, -1)
    fine = _noise_field(rng, height, width, scale=2.0)[..., None]
    return np.clip(image + (fine - 0.5) * 24.0, 0, 255).astype(np.float32)


def scenery_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Sky, a horizon, ground texture, trees and houses: `(height, width, 3)` float32."""
    horizon = int(height * rng.uniform(0.35, 0.65))
    sky_top, sky_bottom = _random_color(rng, 120, 255), _random_color(rng, 120, 255)
    rows = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None, None]
    image = np.empty((height, width, 3), np.float32)
    image[:horizon] = sky_top * (1 - rows) + sky_bottom * rows
    ground = textured_background(rng, height - horizon, width)
    image[horizon:] = ground
    for _ in range(rng.integers(1, 5)):  # houses
        x, w = int(rng.integers(0, width)), int(rng.integers(width // 12, width // 5))
        h = int(rng.integers(height // 10, height // 4))
        color = tuple(float(c) for c in _random_color(rng))
        cv2.rectangle(image, (x, horizon - h), (x + w, horizon + 2), color, -1)
        roof = np.array(
            [[x - 2, horizon - h], [x + w + 2, horizon - h], [x + w // 2, horizon - h - h // 2]]
        )
        cv2.fillPoly(image, [roof.astype(np.int32)], tuple(float(c) for c in _random_color(rng)))
    for _ in range(rng.integers(1, 6)):  # trees
        x = int(rng.integers(0, width))
        trunk = int(rng.integers(height // 12, height // 6))
        cv2.line(image, (x, horizon + 3), (x, horizon - trunk), (90.0, 60.0, 30.0), 2)
        green = (
            float(rng.integers(20, 90)),
            float(rng.integers(100, 200)),
            float(rng.integers(20, 90)),
        )
        cv2.circle(image, (x, horizon - trunk), int(rng.integers(3, height // 8 + 4)), green, -1)
    return image


def _shift(image: np.ndarray, dx: float, dy: float, height: int, width: int) -> np.ndarray:
    """The `(height, width)` window of `image` whose top-left corner is at (dx, dy)."""
    matrix = np.float32([[1, 0, -dx], [0, 1, -dy]])
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Figure:
    """A stick figure's look and place. Sizes in pixels; (x, y) is the hip."""

    x: float
    y: float
    size: float  # height from feet to head top, standing
    color: tuple[float, float, float]
    head_color: tuple[float, float, float]
    thickness: int


# Smallest RGB distance between a figure's colour and its background's mean colour, so
# that the actor (and the people of distractor shots) never blend into the background.
MIN_FIGURE_CONTRAST = 100.0


def _contrasting_color(rng: np.random.Generator, background_mean: np.ndarray) -> tuple:
    """A random colour at least MIN_FIGURE_CONTRAST from `background_mean` (best of 20)."""
    best, best_distance = None, -1.0
    for _ in range(20):
        color = _random_color(rng, 0, 256)
        distance = float(np.linalg.norm(color - background_mean))
        if distance > best_distance:
            best, best_distance = color, distance
        if distance >= MIN_FIGURE_CONTRAST:
            break
    return tuple(float(c) for c in best)


def random_figure(
    rng: np.random.Generator, height: int, width: int, background: np.ndarray
) -> Figure:
    """A figure of random colour (contrasting with `background`), size and place; its
    feet on the lower fifth of the frame."""
    size = height * rng.uniform(0.55, 0.75)
    x = rng.uniform(0.2, 0.8) * width
    feet = rng.uniform(0.8, 0.97) * height
    background_mean = background.reshape(-1, 3).mean(axis=0)
    return Figure(
        x=float(x),
        y=float(feet - 0.48 * size),
        size=float(size),
        color=_contrasting_color(rng, background_mean),
        head_color=_contrasting_color(rng, background_mean),
        thickness=max(2, int(round(size / rng.uniform(11, 16)))),
    )


# A pose: angles in degrees, 0 = pointing straight down, positive = outward (away from
# the body's midline). Keys: torso (lean, + = to the figure's right), arm_l/arm_r (upper
# arm), fore_l/fore_r (forearm, relative to the upper arm), leg_l/leg_r (thigh),
# shin_l/shin_r (relative to the thigh, + = knee bent outward), and lift (hip raised
# by this share of the size; negative lowers it).
NEUTRAL = {
    "torso": 0.0,
    "arm_l": 12.0,
    "arm_r": 12.0,
    "fore_l": 0.0,
    "fore_r": 0.0,
    "leg_l": 8.0,
    "leg_r": 8.0,
    "shin_l": 0.0,
    "shin_r": 0.0,
    "lift": 0.0,
}


def action_pose(action: str, phase: float, amplitude: float, side: int) -> dict:
    """The pose of `action` at `phase` (cycles, any real); `amplitude` near 1 scales the
    motion; `side` (+1/-1) picks the leading limb of one-sided actions."""
    wave = 0.5 - 0.5 * np.cos(2 * np.pi * phase)  # 0 -> 1 -> 0 over a cycle
    pose = dict(NEUTRAL)
    if action == "WaveArms":  # both arms swing from the hips to overhead
        pose["arm_l"] = pose["arm_r"] = 15.0 + 150.0 * amplitude * wave
    elif action == "Jump":  # hip goes up, knees bend on landing, arms out
        hop = abs(np.sin(np.pi * phase))
        pose["lift"] = 0.28 * amplitude * hop
        pose["shin_l"] = pose["shin_r"] = 50.0 * (1 - hop) * amplitude
        pose["leg_l"] = pose["leg_r"] = 8.0 + 20.0 * (1 - hop) * amplitude
        pose["arm_l"] = pose["arm_r"] = 35.0 + 25.0 * hop
    elif action == "Squat":  # knees out, hip lowers, arms forward-up
        depth = wave * amplitude
        pose["leg_l"] = pose["leg_r"] = 10.0 + 65.0 * depth
        pose["shin_l"] = pose["shin_r"] = -75.0 * depth
        pose["lift"] = -0.2 * depth
        pose["arm_l"] = pose["arm_r"] = 15.0 + 75.0 * depth
    elif action == "Punch":  # guard up; the arms strike out in turn
        strike_l = max(0.0, np.sin(2 * np.pi * phase)) ** 2 * amplitude
        strike_r = max(0.0, -np.sin(2 * np.pi * phase)) ** 2 * amplitude
        for limb, strike in (("l", strike_l), ("r", strike_r)):
            pose[f"arm_{limb}"] = 40.0 + 50.0 * strike
            pose[f"fore_{limb}"] = -130.0 * (1 - strike)
        pose["leg_l"] = pose["leg_r"] = 18.0
    elif action == "Kick":  # one leg swings out and up, arms out for balance
        leg = "leg_r" if side > 0 else "leg_l"
        pose[leg] = 8.0 + 85.0 * amplitude * wave
        pose["arm_l"] = pose["arm_r"] = 45.0
    elif action == "Bend":  # torso bends sideways at the hip, arms hang
        pose["torso"] = side * 80.0 * amplitude * wave
    else:
        raise ValueError(f"Expected action in {ACTION_CLASSES}. Received: action={action!r}")
    return pose


def idle_pose(rng_phase: float, time: float, talking: bool) -> dict:
    """Standing with a small sway; a talking figure also moves a forearm a little."""
    pose = dict(NEUTRAL)
    sway = np.sin(2 * np.pi * (time / 40.0 + rng_phase))
    pose["torso"] = 3.0 * sway
    pose["arm_l"] = 12.0 + 3.0 * sway
    pose["arm_r"] = 12.0 - 3.0 * sway
    if talking:
        pose["fore_r"] = 25.0 + 15.0 * np.sin(2 * np.pi * (time / 14.0 + rng_phase))
    return pose


def _direction(angle_degrees: float, outward: int) -> np.ndarray:
    """Unit vector of a limb at `angle` from straight down, outward to side `outward`."""
    angle = np.deg2rad(angle_degrees)
    return np.array([outward * np.sin(angle), np.cos(angle)])


def draw_figure(image: np.ndarray, figure: Figure, pose: dict) -> None:
    """Draws `figure` in `pose` onto `image` (in place, float32 RGB, anti-aliased)."""
    unit = figure.size
    torso_length, head_radius = 0.3 * unit, 0.09 * unit
    upper_arm, forearm, thigh, shin = 0.16 * unit, 0.15 * unit, 0.23 * unit, 0.23 * unit
    hip = np.array([figure.x, figure.y - pose["lift"] * unit])
    torso_direction = _direction(180.0 - pose["torso"], -1)  # upward, leaning to the right
    neck = hip + torso_length * torso_direction
    head = neck + (head_radius + 1) * torso_direction
    segments = []
    for limb, outward in (("l", -1), ("r", 1)):
        thigh_direction = _direction(pose[f"leg_{limb}"], outward)
        knee = hip + thigh * thigh_direction
        foot = knee + shin * _direction(pose[f"leg_{limb}"] + pose[f"shin_{limb}"], outward)
        shoulder = neck - 0.05 * unit * torso_direction
        arm_angle = pose[f"arm_{limb}"] + pose["torso"] * outward  # arms follow the torso
        elbow = shoulder + upper_arm * _direction(arm_angle, outward)
        hand = elbow + forearm * _direction(arm_angle + pose[f"fore_{limb}"], outward)
        segments += [(hip, knee), (knee, foot), (shoulder, elbow), (elbow, hand)]
    segments.append((hip, neck))
    scale = 16  # 4 bits of sub-pixel precision
    for start, end in segments:
        cv2.line(
            image,
            tuple(int(v) for v in np.round(start * scale)),
            tuple(int(v) for v in np.round(end * scale)),
            figure.color,
            figure.thickness,
            cv2.LINE_AA,
            shift=4,
        )
    center = tuple(int(v) for v in np.round(head * scale))
    cv2.circle(
        image, center, int(round(head_radius * scale)), figure.head_color, -1, cv2.LINE_AA, 4
    )


# === Shots ===


def action_shot(
    rng: np.random.Generator, action: str, num_frames: int, height: int, width: int
) -> np.ndarray:
    """An actor performing `action` over a random background: `(frames, H, W, 3)` uint8."""
    background = textured_background(rng, height, width)
    figure = random_figure(rng, height, width, background)
    period = rng.uniform(10.0, 18.0)  # frames per cycle
    phase0, amplitude = rng.random(), rng.uniform(0.8, 1.0)
    side = int(rng.choice((-1, 1)))
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        image = background.copy()
        draw_figure(image, figure, action_pose(action, phase0 + t / period, amplitude, side))
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def distractor_shot(
    rng: np.random.Generator, kind: str, num_frames: int, height: int, width: int
) -> np.ndarray:
    """A shot without class information: `(frames, H, W, 3)` uint8.

    "scenery": a still landscape with a slow drift; "pan": a camera pan over a large
    texture; "people": 1-3 figures standing or talking, with small idle motion.
    """
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    if kind in ("scenery", "pan"):
        speed = rng.uniform(0.1, 0.4) if kind == "scenery" else rng.uniform(1.0, 3.0)
        angle = rng.uniform(0, 2 * np.pi)
        velocity = speed * np.array([np.cos(angle), np.sin(angle)])  # pixels per frame
        margin = int(np.ceil(speed * num_frames)) + 2
        big_height, big_width = height + 2 * margin, width + 2 * margin
        if kind == "scenery":
            big = scenery_image(rng, big_height, big_width)
        else:
            big = textured_background(rng, big_height, big_width)
        for t in range(num_frames):
            dx, dy = margin + velocity * t
            frames[t] = np.clip(_shift(big, dx, dy, height, width), 0, 255).astype(np.uint8)
        return frames
    if kind != "people":
        raise ValueError(f"Expected kind in {DISTRACTOR_KINDS}. Received: kind={kind!r}")
    background = textured_background(rng, height, width)
    people = [
        (
            random_figure(rng, height, width, background),
            rng.random(),
            rng.random() < 0.5,
        )
        for _ in range(rng.integers(1, 4))
    ]
    for t in range(num_frames):
        image = background.copy()
        for figure, phase, talking in people:
            draw_figure(image, figure, idle_pose(phase, t, talking))
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


# === Clips ===


def _clip_generators(seed: int, label: int, clip_index: int):
    """Independent generators for the layout, the action shot and the distractors.

    The distractor generator is seeded by (seed, label, clip) like the others but is
    used only by `distractor_shot`, which never receives the class, so distractor shots
    are identically distributed for every class."""
    sequence = np.random.SeedSequence([seed, label, clip_index])
    return [np.random.default_rng(child) for child in sequence.spawn(3)]


def clip_layout(config: SyntheticConfig, rng: np.random.Generator):
    """Frame count, and the shots as (kind, start, end) with exactly one "action"."""
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    share = rng.uniform(config.min_action_share, config.max_action_share)
    action_frames = int(np.clip(round(share * num_frames), 1, num_frames - config.min_shot_frames))
    rest = num_frames - action_frames
    num_distractors = int(rng.integers(config.min_distractors, config.max_distractors + 1))
    num_distractors = max(1, min(num_distractors, rest // config.min_shot_frames))
    # Distractor lengths: min_shot_frames each, the remainder spread at random.
    extra = rng.multinomial(
        rest - num_distractors * config.min_shot_frames,
        np.full(num_distractors, 1.0 / num_distractors),
    )
    lengths = [config.min_shot_frames + int(e) for e in extra]
    kinds = [str(rng.choice(DISTRACTOR_KINDS)) for _ in range(num_distractors)]
    action_slot = int(rng.integers(0, num_distractors + 1))
    lengths.insert(action_slot, action_frames)
    kinds.insert(action_slot, "action")
    shots, start = [], 0
    for kind, length in zip(kinds, lengths, strict=True):
        shots.append((kind, start, start + length))
        start += length
    return num_frames, tuple(shots)


def clip_specs(config: SyntheticConfig) -> list[ClipSpec]:
    """Every clip of the dataset, in class then clip order (cheap: no rendering)."""
    specs = []
    for label, name in enumerate(config.class_names, start=1):
        counts: dict[int, int] = {}
        for clip_index in range(config.clips_per_class):
            group = clip_index % config.num_groups + 1
            counts[group] = counts.get(group, 0) + 1
            layout_rng, _, _ = _clip_generators(config.seed, label, clip_index)
            num_frames, shots = clip_layout(config, layout_rng)
            ((_, start, end),) = [shot for shot in shots if shot[0] == "action"]
            video_id = f"{name}/v_{name}_g{group:02d}_c{counts[group]:02d}"
            specs.append(
                ClipSpec(video_id, label, clip_index, group, num_frames, start, end, shots)
            )
    return specs


def render_clip(config: SyntheticConfig, spec: ClipSpec) -> np.ndarray:
    """The frames of one clip: `(num_frames, height, width, 3)` uint8 RGB."""
    _, action_rng, distractor_rng = _clip_generators(config.seed, spec.label, spec.clip_index)
    action = config.class_names[spec.label - 1]
    pieces = []
    for kind, start, end in spec.shots:
        if kind == "action":
            pieces.append(action_shot(action_rng, action, end - start, config.height, config.width))
        else:
            pieces.append(
                distractor_shot(distractor_rng, kind, end - start, config.height, config.width)
            )
    return np.concatenate(pieces)  # (num_frames, height, width, 3)


# === Files ===


def _write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text, encoding="utf-8", newline="")
    os.replace(temporary, path)


def _write_video_atomic(path: Path, frames: np.ndarray, fps: float) -> None:
    temporary = path.with_name(f".{path.stem}{_PARTIAL_SUFFIX}")  # .avi keeps the codec
    write_video(temporary, frames, fps=fps)
    os.replace(temporary, path)


def _write_split_files(split_dir: Path, config: SyntheticConfig, specs: Sequence[ClipSpec]):
    crlf = "\r\n"
    split_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(
        split_dir / "classInd.txt",
        "".join(f"{i} {name}{crlf}" for i, name in enumerate(config.class_names, start=1)),
    )
    train = [s for s in specs if s.group > config.num_test_groups]
    test = [s for s in specs if s.group <= config.num_test_groups]
    _write_text_atomic(
        split_dir / "trainlist01.txt",
        "".join(f"{s.relative_path} {s.label}{crlf}" for s in train),
    )
    _write_text_atomic(
        split_dir / "testlist01.txt", "".join(f"{s.relative_path}{crlf}" for s in test)
    )
    return len(train), len(test)


def _write_csvs(root: Path, specs: Sequence[ClipSpec]) -> Path:
    lines = [",".join(KEY_FRAMES_FIELDS)]
    lines += [f"{s.video_id},{s.num_frames},{s.start_frame},{s.end_frame}" for s in specs]
    key_frames_csv = root / KEY_FRAMES_NAME
    _write_text_atomic(key_frames_csv, "\n".join(lines) + "\n")
    lines = [",".join(SHOTS_FIELDS)]
    lines += [
        f"{s.video_id},{index},{kind},{start},{end}"
        for s in specs
        for index, (kind, start, end) in enumerate(s.shots)
    ]
    _write_text_atomic(root / SHOTS_NAME, "\n".join(lines) + "\n")
    return key_frames_csv


def _check_manifest(root: Path, config: SyntheticConfig, overwrite: bool) -> None:
    """Refuses to mix datasets: an existing dataset of another config needs `overwrite`."""
    manifest = root / MANIFEST_NAME
    wanted = dataclasses.asdict(config)
    if manifest.is_file():
        existing = json.loads(manifest.read_text(encoding="utf-8"))
        if existing != wanted:
            if not overwrite:
                raise ValueError(
                    f"{root} holds a synthetic dataset of another config ({manifest}). "
                    "Pass overwrite=True (--overwrite) to replace it, or use another folder."
                )
            for name in ("UCF-101", "ucfTrainTestlist"):
                shutil.rmtree(root / name, ignore_errors=True)
    elif (root / "UCF-101").exists():
        raise ValueError(
            f"{root}/UCF-101 exists but {manifest} does not: not a synthetic dataset "
            "folder. Choose an empty or new --output folder."
        )
    root.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(manifest, json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def generate_dataset(
    root: str | os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> SyntheticSummary:
    """Writes the synthetic dataset under `root` and returns a summary.

    Writes `root/UCF-101/<Class>/v_<Class>_gGG_cCC.avi` (MJPG), `root/ucfTrainTestlist/`
    (`classInd.txt`, `trainlist01.txt`, `testlist01.txt`, CRLF; groups
    1..num_test_groups are the test set), `root/key_frames.csv`, `root/shots.csv` and
    `root/synthetic_config.json` (the config).

    Re-running with the same config skips every video already on disk (videos are
    written to a temporary file and renamed, so an existing video is complete) and
    rewrites the small text files identically; a killed run resumes. A folder holding
    a dataset of another config raises `ValueError` unless `overwrite=True`, which
    deletes its `UCF-101` and `ucfTrainTestlist` first.
    """
    root = Path(root)
    _check_manifest(root, config, overwrite)
    video_root, split_dir = root / "UCF-101", root / "ucfTrainTestlist"
    for stale in video_root.glob(f"*/.*{_PARTIAL_SUFFIX}"):  # left by a killed run
        stale.unlink()
    specs = clip_specs(config)
    generated = skipped = 0
    for spec in tqdm(specs, desc="synthetic clips", disable=not progress):
        path = video_root / spec.relative_path
        if path.is_file():
            skipped += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_video_atomic(path, render_clip(config, spec), config.fps)
        generated += 1
    num_train, num_test = _write_split_files(split_dir, config, specs)
    key_frames_csv = _write_csvs(root, specs)
    return SyntheticSummary(
        root,
        video_root,
        split_dir,
        key_frames_csv,
        config.class_names,
        num_train,
        num_test,
        generated,
        skipped,
    )


def load_key_frames(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads `key_frames.csv`: `{video_id: (num_frames,) bool}`, True on the action."""
    path = Path(path)
    masks = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != KEY_FRAMES_FIELDS:
            raise ValueError(
                f"{path}: expected the header {','.join(KEY_FRAMES_FIELDS)}. "
                f"Received: {reader.fieldnames}"
            )
        for row in reader:
            num_frames, start, end = (
                int(row[name]) for name in ("num_frames", "start_frame", "end_frame")
            )
            if not 0 <= start < end <= num_frames:
                raise ValueError(f"{path}: bad segment for {row['video_id']}: {row}")
            mask = np.zeros(num_frames, dtype=bool)
            mask[start:end] = True
            masks[row["video_id"]] = mask
    return masks


# === CLI ===


def parse_args(argv=None) -> tuple[argparse.Namespace, SyntheticConfig]:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output", required=True, help="dataset folder (created)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    for field in dataclasses.fields(SyntheticConfig):
        parser.add_argument(
            "--" + field.name.replace("_", "-"), type=type(field.default), default=None
        )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset of another config"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(SyntheticConfig)
        if getattr(args, field.name) is not None
    }
    return args, dataclasses.replace(PRESETS[args.preset], **overrides)


def main(argv=None) -> int:
    args, config = parse_args(argv)
    summary = generate_dataset(args.output, config, args.overwrite, not args.no_progress)
    print(
        f"{summary.root}: {summary.num_train} train + {summary.num_test} test clips of "
        f"{len(summary.class_names)} classes ({', '.join(summary.class_names)}); "
        f"{summary.generated} written, {summary.skipped} already there. "
        f"Key frames: {summary.key_frames_csv}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
