"""Drawing the synthetic dataset's shots: backgrounds, stick figures, poses, motion.

Pure rendering, no files: the random parts draw only from the `np.random.Generator`
they are given and return float32 or uint8 RGB arrays, so the same generator state
always gives the same pixels.
`data.synthetic` lays the shots out into clips and writes them in the UCF101 layout.

- `action_shot`: one stick-figure actor performing a class-specific motion (an
  `ACTION_CLASSES` name) over a random textured background;
- `distractor_shot`: a shot without class information (a `DISTRACTOR_KINDS` name):
  still scenery, a camera pan over a texture, or people standing or talking.

Example:

    rng = np.random.default_rng(0)
    frames = action_shot(rng, "Jump", num_frames=12, height=96, width=128)  # (12, 96, 128, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Action classes, in classInd order; `SyntheticConfig.num_classes` takes the first ones.
ACTION_CLASSES = ("WaveArms", "Jump", "Squat", "Punch", "Kick", "Bend")
# Distractor shot kinds; chosen uniformly, independently of the class.
DISTRACTOR_KINDS = ("scenery", "pan", "people")


# === Backgrounds ===


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


# === Figures ===


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
