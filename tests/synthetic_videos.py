"""Generated videos with known motion, and a tiny UCF101-shaped dataset on disk.

Fixtures of the video, flow, split and pipeline tests:

    frames = shifted_texture_frames(num_frames=8, height=64, width=80, shift=(2.0, 1.0))
    write_ucf101_like(tmp_dir, classes=("Alpha", "Beta"), clips_per_class=3)
    write_mp4_with_edit_list(path, frames, hidden_frames=2)   # header counts 2 more
    write_variable_rate_mkv(path, frames, times_ms)           # header count an estimate
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from temporal_attention.data.video import write_video


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


# === Files whose header frame count is not the decoded count ===


def _mp4_boxes(data: bytes, start: int, end: int):
    """(type, start, size) of the ISO BMFF boxes in data[start:end], recursing into
    the containers that lead to the sample tables."""
    position = start
    while position < end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        yield kind.decode("latin-1"), position, size
        if kind in (b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl"):
            yield from _mp4_boxes(data, position + 8, position + size)
        position += size


def write_mp4_with_edit_list(
    path: str | os.PathLike, frames_rgb: np.ndarray, hidden_frames: int, fps: float = 25.0
) -> Path:
    """An mp4v `.mp4` whose edit list starts `hidden_frames` frames into the track.

    H.264 encoders write such edit lists (to hide B-frame priming); the decoder drops
    the hidden frames, so fewer frames decode than the header's sample count states.
    OpenCV's writer here cannot encode H.264, so the file is mp4v (MPEG-4 part 2),
    written by `cv2.VideoWriter`, then its `elst` box is edited in place.
    """
    path = write_video(path, frames_rgb, fps)
    data = bytearray(path.read_bytes())
    boxes = {kind: (start, size) for kind, start, size in _mp4_boxes(data, 0, len(data))}
    mdhd, stts, elst = boxes["mdhd"][0], boxes["stts"][0], boxes["elst"][0]
    if data[mdhd + 8] != 0 or data[elst + 8] != 0:
        raise ValueError(f"{path}: expected version-0 mdhd and elst boxes from OpenCV's writer.")
    media_timescale = struct.unpack(">I", data[mdhd + 20 : mdhd + 24])[0]
    sample_delta = struct.unpack(">I", data[stts + 20 : stts + 24])[0]  # constant frame rate
    movie_timescale = struct.unpack(">I", data[boxes["mvhd"][0] + 20 : boxes["mvhd"][0] + 24])[0]
    shown = len(frames_rgb) - hidden_frames
    segment_duration = round(shown * sample_delta * movie_timescale / media_timescale)
    # elst: size, type, version + flags, entry count, then (segment duration, media time).
    struct.pack_into(">II", data, elst + 16, segment_duration, hidden_frames * sample_delta)
    path.write_bytes(bytes(data))
    return path


def _ebml_size(size: int) -> bytes:
    for length in range(1, 9):
        if size < (1 << (7 * length)) - 1:
            return (size | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML element too large: {size} bytes")


def _ebml(element_id: bytes, payload: bytes) -> bytes:
    return element_id + _ebml_size(len(payload)) + payload


def _ebml_uint(element_id: bytes, value: int) -> bytes:
    return _ebml(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def write_variable_rate_mkv(
    path: str | os.PathLike, frames_rgb: np.ndarray, times_ms: Sequence[int]
) -> Path:
    """A Matroska `.mkv` of Motion-JPEG frames shown at `times_ms` (any spacing: a
    variable frame rate), its duration the last time plus the last interval.

    Matroska stores no frame count: OpenCV estimates it as duration x its guess of the
    frame rate, which for a variable rate is not the number of frames. Written by hand
    (EBML: header, segment info, one video track, one cluster of SimpleBlocks), since
    `cv2.VideoWriter` only writes a constant rate.
    """
    path = Path(path)
    if len(times_ms) != len(frames_rgb) or len(times_ms) < 2:
        raise ValueError("Expected one time per frame, at least 2 frames.")
    duration_ms = times_ms[-1] + (times_ms[-1] - times_ms[-2])
    header = _ebml(
        b"\x1a\x45\xdf\xa3",
        _ebml_uint(b"\x42\x86", 1)  # EBMLVersion
        + _ebml_uint(b"\x42\xf7", 1)  # EBMLReadVersion
        + _ebml_uint(b"\x42\xf2", 4)  # EBMLMaxIDLength
        + _ebml_uint(b"\x42\xf3", 8)  # EBMLMaxSizeLength
        + _ebml(b"\x42\x82", b"matroska")  # DocType
        + _ebml_uint(b"\x42\x87", 4)  # DocTypeVersion
        + _ebml_uint(b"\x42\x85", 2),  # DocTypeReadVersion
    )
    info = _ebml(
        b"\x15\x49\xa9\x66",
        _ebml_uint(b"\x2a\xd7\xb1", 1_000_000)  # TimestampScale: 1 ms
        + _ebml(b"\x44\x89", struct.pack(">d", float(duration_ms)))  # Duration
        + _ebml(b"\x4d\x80", b"tests")  # MuxingApp
        + _ebml(b"\x57\x41", b"tests"),  # WritingApp
    )
    height, width = frames_rgb.shape[1:3]
    track = _ebml(
        b"\xae",
        _ebml_uint(b"\xd7", 1)  # TrackNumber
        + _ebml_uint(b"\x73\xc5", 1)  # TrackUID
        + _ebml_uint(b"\x83", 1)  # TrackType: video
        + _ebml(b"\x86", b"V_MJPEG")  # CodecID
        + _ebml(b"\xe0", _ebml_uint(b"\xb0", width) + _ebml_uint(b"\xba", height)),
    )
    blocks = b""
    for frame, time_ms in zip(frames_rgb, times_ms, strict=True):
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
        # SimpleBlock: track 1, time relative to the cluster (int16), keyframe flag.
        blocks += _ebml(b"\xa3", b"\x81" + struct.pack(">hB", time_ms, 0x80) + jpeg)
    cluster = _ebml(b"\x1f\x43\xb6\x75", _ebml_uint(b"\xe7", 0) + blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        header + _ebml(b"\x18\x53\x80\x67", info + _ebml(b"\x16\x54\xae\x6b", track) + cluster)
    )
    return path


def write_hmdb51_like(
    root: str | os.PathLike,
    videos: dict[str, Sequence[str]],
    num_frames: int = 10,
    height: int = 48,
    width: int = 64,
) -> tuple[Path, Path]:
    """Writes `root/hmdb51/<class>/<video>.avi` for `videos` (class -> file names) and
    `root/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` (lines
    "<video>.avi <id>", CRLF): the first video of each class is a test video (id 2),
    the others train (id 1). Returns (video_root, split_dir)."""
    root = Path(root)
    video_root, split_dir = root / "hmdb51", root / "testTrainMulti_7030_splits"
    split_dir.mkdir(parents=True, exist_ok=True)
    for label, (class_name, file_names) in enumerate(sorted(videos.items()), start=1):
        lines = []
        for index, file_name in enumerate(file_names):
            shift = (1.0 + label, float(index % 3))
            frames = shifted_texture_frames(
                num_frames, height, width, shift, seed=10 * label + index
            )
            write_video(video_root / class_name / file_name, frames)
            lines.append(f"{file_name} {2 if index == 0 else 1}\r\n")
        for split in (1, 2, 3):
            (split_dir / f"{class_name}_test_split{split}.txt").write_text(
                "".join(lines), newline=""
            )
    return video_root, split_dir
