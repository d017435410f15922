"""Per-frame JPEG files of many videos, read at random access: the frame layout's one owner.

The layout is dense_flow's and mmaction2's "rawframes", so extractions users already
have can be brought as they are:

    <root>/<video_id>/img_00001.jpg ...        RGB frames, 1-based, 5 digits
    <root>/<video_id>/flow_x_00001.jpg ...     flow x of frames 1 -> 2, grayscale uint8
    <root>/<video_id>/flow_y_00001.jpg ...     flow y, the same quantisation (bound 20)
    <root>/<video_id>/frames.json              marker of the RGB frames (this project)
    <root>/<video_id>/flow.json                marker of the flow (this project)

    store = FrameStore("frames/ucf101")
    video = store.video("Punch/v_Punch_g01_c01")
    video.num_frames, video.num_flows          # 0 for a part that is not there
    frame = video.read_frame(7)                # (256, 340, 3) uint8 RGB, 0-based index
    stack = video.read_flow_stack(7)           # (256, 340, 10) uint8: x8, y8, ..., x12, y12

Each read opens only the files it needs (1 JPEG per frame, 10 per flow stack).

A marker is written by the writer of its part (`training.extract_frames` for the
frames, `training.compute_flow --layout frames` for the flow): first with state
"writing", before any image, then, after the last image, with state "complete", the
settings (size, JPEG quality; flow method and bound), the counts, the images' size
(`image_size`), each image file's byte length (`file_bytes`), the bytes and the
source file. Every file is written atomically (`runtime.atomic_files`), so a folder whose
writer was killed is "partial" (marker "writing") and is written again; a part is
never taken as complete before its last image is on disk.

A complete part is checked against its marker wherever it is used: `status` stats each
image file and says "damaged" when one is missing or not of its recorded length (a
truncated JPEG decodes without complaint), so the writing stage writes it again; each
read checks the file's length before decoding and the image's size after, and raises
`FrameStoreError` naming the file. One store holds one kind of each part: frames of one
size, flow of one method and size (`kinds_held`, `check_holds_only` for the writing
stages; `check_videos` for readers, which also names a damaged video).

A part with images but no marker is "external": a folder brought from dense_flow or
mmaction2. It is read as it is (its images are counted, and must be numbered 1..N
without a gap), and the stages never overwrite it. `FrameStore.adopt(video_id)`
checks its numbering (and that flow_x and flow_y agree) and writes the marker with
`"origin": "external"`, so later reads need not list the folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from temporal_attention.data.optical_flow import STACK_LENGTH
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH
from temporal_attention.runtime.atomic_files import atomic_write, remove_stale_temp_files_in

# JPEG quality of the frames (OpenCV's scale, 0-100). 90 keeps the mean error of a
# 256x340 UCF101 frame near 1 grey level at 17 KB (docs/data_pipeline.md, measured);
# OpenCV's (and so dense_flow's) default is 95.
DEFAULT_JPEG_QUALITY = 90
# dense_flow writes its flow images with OpenCV's default quality, 95.
DEFAULT_FLOW_JPEG_QUALITY = 95
# Of the marker files. 2: `file_bytes`, each image file's length (format 1 markers lack
# it: their files are read unchecked, as before).
STORE_FORMAT = 2
STATUSES = ("missing", "partial", "complete", "external", "corrupt", "mismatch", "damaged")


class FrameStoreError(ValueError):
    """A video's folder cannot be read as asked; the message names it and what to do."""


@dataclass(frozen=True)
class FrameSettings:
    """How frames are stored; written in each `frames.json` and checked on re-runs."""

    # Frames are resized to height x width (the two-stream 256x340) before encoding.
    height: int = FRAME_HEIGHT
    width: int = FRAME_WIDTH
    # JPEG quality, 1-100 (OpenCV's scale).
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):
        if self.height < 8 or self.width < 8:
            raise ValueError(
                f"Expected height, width >= 8. Received: height={self.height}, width={self.width}"
            )
        check_jpeg_quality(self.jpeg_quality)


def check_jpeg_quality(quality: int) -> None:
    if not 1 <= quality <= 100:
        raise ValueError(f"Expected a JPEG quality in 1..100. Received: jpeg_quality={quality}")


@dataclass(frozen=True)
class _Part:
    """One kind of image in a video folder: its marker, file prefixes and count's name."""

    name: str
    marker: str
    prefixes: tuple[str, ...]
    count_key: str


FRAMES = _Part("frames", "frames.json", ("img",), "num_frames")
FLOW = _Part("flow", "flow.json", ("flow_x", "flow_y"), "num_flows")
PARTS = {part.name: part for part in (FRAMES, FLOW)}
MARKERS = frozenset(part.marker for part in PARTS.values())


def image_name(prefix: str, index: int) -> str:
    """The file of 0-based image `index`: `img_00001.jpg` for `("img", 0)`."""
    return f"{prefix}_{index + 1:05d}.jpg"


def _numbers(folder: Path, prefix: str) -> list[int]:
    """The 1-based numbers of `<prefix>_NNNNN.jpg` (or .jpeg/.png) files in `folder`."""
    pattern = re.compile(rf"^{prefix}_(\d+)\.(?:jpg|jpeg|png)$")
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in os.listdir(folder) if (m := pattern.match(p)))


def _count_numbered(folder: Path, prefix: str) -> int:
    """How many `<prefix>_*.jpg` images `folder` holds, numbered 1..N without a gap."""
    numbers = _numbers(folder, prefix)
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))[:3]
        raise FrameStoreError(
            f"{folder}: {prefix}_*.jpg images must be numbered 1..N; {len(numbers)} found, "
            f"{'missing ' + str(gaps) if gaps else 'numbers repeat'}. Extract this folder again."
        )
    return len(numbers)


def _read_marker(path: Path) -> dict | None:
    """A marker's contents; None when it is not there; raises `FrameStoreError` when
    it cannot be read (a marker is written atomically: this means a damaged disk)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise FrameStoreError(f"{path}: unreadable marker ({error}).") from None


def _write_marker(path: Path, contents: dict) -> None:
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(contents, indent=1, sort_keys=True) + "\n")


def _write_again(part: _Part) -> str:
    """What to do about a damaged image of `part`."""
    stage = "training.extract_frames" if part is FRAMES else "training.compute_flow --layout frames"
    return f"Run `python -m {stage}` again with this store as --output: it writes the video again."


def _read_image(
    path: Path,
    flags: int,
    part: _Part,
    file_bytes: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The image at `path`, checked against its marker: `file_bytes` (its length) before
    decoding, `image_size` (height, width) after; None: not checked (external folders)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise FrameStoreError(
            f"{path}: missing or unreadable ({error}). {_write_again(part)}"
        ) from None
    if file_bytes is not None and data.size != file_bytes:
        raise FrameStoreError(
            f"{path}: damaged, {data.size} bytes where its marker records {file_bytes}. "
            + _write_again(part)
        )
    image = cv2.imdecode(data, flags)
    if image is None:
        raise FrameStoreError(f"{path}: not an image. {_write_again(part)}")
    if image_size is not None and image.shape[:2] != image_size:
        raise FrameStoreError(
            f"{path}: {_size_label(image.shape[:2])} where its marker records "
            f"{_size_label(image_size)}. {_write_again(part)}"
        )
    return image


def _size_label(size: Sequence[int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def kind_label(part: str, image_size: Sequence[int], method: str | None = None) -> str:
    """What one store holds one of: frames' size ("64x85"), flow's method and size
    ("farneback 64x85"; a folder adopted from dense_flow records no method)."""
    if part == "frames":
        return _size_label(image_size)
    return f"{method or 'unrecorded method'} {_size_label(image_size)}"


def _marker_kind(part: str, marker: dict) -> str | None:
    """The kind a complete marker records (None: it records no image size)."""
    if marker.get("state") != "complete" or "image_size" not in marker:
        return None
    return kind_label(part, marker["image_size"], marker.get("method"))


def _damage(folder: Path, part: _Part, marker: dict) -> str | None:
    """The first image file of a complete part that is missing or not of the length its
    marker records, described; None when all are as recorded (or none is recorded)."""
    recorded = marker.get("file_bytes")
    if recorded is None:
        return None
    for prefix in part.prefixes:
        lengths = recorded.get(prefix, [])
        if len(lengths) != int(marker[part.count_key]):
            return f"{folder / part.marker}: records {len(lengths)} {prefix} file lengths"
        for index, expected in enumerate(lengths):
            path = folder / image_name(prefix, index)
            try:
                size = os.stat(path).st_size
            except OSError:
                return f"{path}: missing"
            if size != expected:
                return f"{path}: {size} bytes where its marker records {expected}"
    return None


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """One image as the store encodes it (BGR or one plane, OpenCV's quality scale)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FrameStoreError(f"OpenCV could not encode a {image.shape} image as JPEG.")
    return encoded.tobytes()


def _being_written(folder: Path, parts: Sequence[str]) -> str:
    markers = ", ".join(str(folder / PARTS[name].marker) for name in parts)
    return (
        f"{markers}: still being written, or its writer was stopped. Run the stage that "
        "writes it again (training.extract_frames, training.compute_flow --layout frames)."
    )


class StoredVideo:
    """One video's folder, read at random access. Made by `FrameStore.video`.

    Attributes:
        folder: `<root>/<video_id>`.
        num_frames: RGB frames (`img_*.jpg`); 0 when the folder has none.
        num_flows: Flow fields (`flow_x_*.jpg` with `flow_y_*.jpg`); 0 when none.
        frames_marker, flow_marker: The markers' contents (`None`: external or absent).
        partial: The parts whose writer is at work or was stopped: 0 images, and
            reading one raises `FrameStoreError`.
    """

    def __init__(self, folder: Path, frames_marker, flow_marker, num_frames, num_flows, partial=()):
        self.folder = folder
        self.frames_marker, self.flow_marker = frames_marker, flow_marker
        self.num_frames, self.num_flows = num_frames, num_flows
        self.partial = set(partial)  # parts being written (counted as 0 images)
        # What each read checks: the file lengths by prefix, the image size by part
        # (from complete markers; absent for external folders and older markers).
        self._file_bytes, self._image_size = {}, {}
        for part, marker in ((FRAMES, frames_marker), (FLOW, flow_marker)):
            if marker is None or marker.get("state") != "complete":
                continue
            self._file_bytes.update(marker.get("file_bytes") or {})
            if "image_size" in marker:
                self._image_size[part.name] = tuple(int(side) for side in marker["image_size"])

    def _read(self, part: _Part, prefix: str, index: int, flags: int) -> np.ndarray:
        """Image `index` of `prefix`, checked against the part's marker."""
        lengths = self._file_bytes.get(prefix)
        return _read_image(
            self.folder / image_name(prefix, index),
            flags,
            part,
            file_bytes=None if lengths is None else lengths[index],
            image_size=self._image_size.get(part.name),
        )

    @property
    def num_stacks(self) -> int:
        """5-pair flow stacks: `num_flows - 4` (0 for fewer than 5 flows)."""
        return max(0, self.num_flows - STACK_LENGTH + 1)

    def _check(self, index: int, count: int, what: str) -> int:
        index = int(index)
        part = "frames" if what == "frame" else "flow"
        if part in self.partial:
            raise FrameStoreError(_being_written(self.folder, [part]))
        if not 0 <= index < count:
            raise IndexError(
                f"{self.folder}: {what} {index} out of range; it has {count} (0-based indices)."
            )
        return index

    def read_frame(self, index: int) -> np.ndarray:
        """Frame `index` (0-based, file `img_{index + 1:05d}.jpg`): `(H, W, 3)` uint8 RGB."""
        index = self._check(index, self.num_frames, "frame")
        bgr = self._read(FRAMES, "img", index, cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Frames `indices` (default: all), `(n, H, W, 3)` uint8 RGB."""
        indices = range(self.num_frames) if indices is None else indices
        return np.stack([self.read_frame(index) for index in indices])

    def read_flow(self, index: int) -> np.ndarray:
        """Flow field `index` (frame index -> index + 1): `(H, W, 2)` uint8, (x, y)."""
        index = self._check(index, self.num_flows, "flow field")
        planes = [self._read(FLOW, prefix, index, cv2.IMREAD_GRAYSCALE) for prefix in FLOW.prefixes]
        return np.stack(planes, axis=-1)  # (H, W, 2)

    def read_flow_stack(self, start: int) -> np.ndarray:
        """The motion input of flows `start .. start + 4`: `(H, W, 10)` uint8, channels
        x1, y1, ..., x5, y5 (`data.optical_flow.flow_stacks`'s order)."""
        start = self._check(start, self.num_stacks, "flow stack")
        planes = [  # x1, y1, x2, y2, ..., x5, y5: (H, W) each
            self._read(FLOW, prefix, start + offset, cv2.IMREAD_GRAYSCALE)
            for offset in range(STACK_LENGTH)
            for prefix in FLOW.prefixes
        ]
        if len({plane.shape for plane in planes}) > 1:
            raise FrameStoreError(
                f"{self.folder}: flow images {start + 1}..{start + STACK_LENGTH} differ in "
                "size. Compute this video's flow again."
            )
        return cv2.merge(planes)  # (H, W, 10), interleaved by OpenCV (0.18 ms at 256x340)

    def read_flow_stacks(self, starts: Sequence[int] | None = None) -> np.ndarray:
        """Stacks `starts` (default: all), `(n, H, W, 10)` uint8."""
        starts = range(self.num_stacks) if starts is None else starts
        return np.stack([self.read_flow_stack(start) for start in starts])

    def kind(self, part: str = "frames") -> dict:
        """What the part is: `{"image_size": (height, width), "method": ...}` (the flow's
        method; None for frames and folders adopted from dense_flow), as its marker
        records, or for an external folder from its first image."""
        marker = self.frames_marker if part == "frames" else self.flow_marker
        if part in self._image_size:
            size = self._image_size[part]
        else:  # external, or a marker of before the size was recorded: its first image
            size = (self.read_frame(0) if part == "frames" else self.read_flow(0)).shape[:2]
        return {
            "image_size": tuple(int(side) for side in size),
            "method": (marker or {}).get("method"),
        }

    def __repr__(self) -> str:
        return (
            f"StoredVideo({str(self.folder)!r}, num_frames={self.num_frames}, "
            f"num_flows={self.num_flows})"
        )


def common_kind(videos: Sequence[StoredVideo], part: str = "frames") -> dict:
    """The kind (`StoredVideo.kind`) that all of `videos`' `part` share, `{}` for none.

    Raises:
        FrameStoreError: two of them differ, naming one folder of each kind.
    """
    kinds: dict[str, tuple[Path, dict]] = {}
    for video in videos:
        kind = video.kind(part)
        kinds.setdefault(kind_label(part, kind["image_size"], kind["method"]), (video.folder, kind))
        if len(kinds) > 1:
            (first_label, (first_folder, _)), (label, (folder, _)) = kinds.items()
            raise FrameStoreError(
                f"{first_folder} holds {part} of {first_label} and {folder} of {label}: the "
                f"videos read together must have {part} of one kind. Write the {part} of "
                "these videos again, of one kind, into a store of their own."
            )
    return next(iter(kinds.values()))[1] if kinds else {}


class PartWriter:
    """Writes one part (frames or flow) of a video folder, image by image, then its
    marker. Made by `FrameStore.frames_writer` / `FrameStore.flow_writer`:

        writer = store.frames_writer(video_id, FrameSettings())
        for chunk in VideoReader(path).chunks():   # (n, 256, 340, 3) uint8 RGB
            writer.append(chunk)
        writer.finish({"source_file": ...})

    At creation: stale temporaries of killed writers in the folder are removed and the
    marker says "writing". Images are written atomically (temporary, fsync, rename);
    `finish` removes images numbered beyond the count (left by an earlier, longer
    attempt) and writes the "complete" marker last. Until then readers see "partial".
    """

    def __init__(self, folder: Path, part: _Part, settings: dict, video_id: str):
        self.folder, self.part, self.settings = folder, part, settings
        self.quality = int(settings["jpeg_quality"])
        self.video_id = video_id
        self.count, self.bytes, self.shape = 0, 0, None
        self.file_bytes = {prefix: [] for prefix in part.prefixes}  # each image file's length
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files_in(folder)
        _write_marker(folder / part.marker, self._marker("writing"))

    def _marker(self, state: str, extra: dict | None = None) -> dict:
        return {
            "store_format": STORE_FORMAT,
            "part": self.part.name,
            "state": state,
            "video_id": self.video_id,
            **self.settings,
            **(extra or {}),
        }

    def _planes(self, image: np.ndarray) -> list[np.ndarray]:
        if self.part is FRAMES:
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"Expected RGB frames (H, W, 3). Received: {image.shape}")
            return [cv2.cvtColor(image, cv2.COLOR_RGB2BGR)]
        if image.ndim != 3 or image.shape[-1] != 2:
            raise ValueError(f"Expected flow fields (H, W, 2). Received: {image.shape}")
        return [image[..., 0], image[..., 1]]  # x, y

    def append(self, images: np.ndarray) -> None:
        """Writes `(n, H, W, 3)` uint8 RGB frames or `(n, H, W, 2)` uint8 flow fields."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"Expected uint8 images. Received: dtype={images.dtype}")
        for image in images:
            if self.shape is not None and image.shape[:2] != self.shape:
                raise ValueError(
                    f"{self.folder}: a {self.part.name} image of {_size_label(image.shape)} "
                    f"after images of {_size_label(self.shape)}; a video's are of one size."
                )
            for prefix, plane in zip(self.part.prefixes, self._planes(image), strict=True):
                encoded = encode_jpeg(np.ascontiguousarray(plane), self.quality)
                with atomic_write(self.folder / image_name(prefix, self.count)) as temporary:
                    temporary.write_bytes(encoded)
                self.bytes += len(encoded)
                self.file_bytes[prefix].append(len(encoded))
            self.shape = image.shape[:2]
            self.count += 1

    def finish(self, metadata: dict) -> dict:
        """Writes the "complete" marker with `metadata` (source file, fps, ...), the
        count, the size and the bytes of the images, and each file's length; returns
        the marker."""
        if self.count == 0:
            raise ValueError(f"{self.folder}: no {self.part.name} were written.")
        for prefix in self.part.prefixes:
            for number in _numbers(self.folder, prefix):
                if number > self.count:
                    (self.folder / image_name(prefix, number - 1)).unlink(missing_ok=True)
        marker = self._marker(
            "complete",
            {
                **metadata,
                self.part.count_key: self.count,
                "image_size": list(self.shape),
                "bytes": self.bytes,
                "file_bytes": self.file_bytes,
            },
        )
        _write_marker(self.folder / self.part.marker, marker)
        return marker

    def discard(self) -> None:
        """Removes what this writer wrote (its images and its marker): for a video that
        failed, so its folder holds nothing of this part."""
        for prefix in self.part.prefixes:
            for number in _numbers(self.folder, prefix):
                (self.folder / image_name(prefix, number - 1)).unlink(missing_ok=True)
        (self.folder / self.part.marker).unlink(missing_ok=True)
        remove_stale_temp_files_in(self.folder)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


class FrameStore:
    """RGB frames and flow of many videos under `root`, one folder per video id."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder_for(self, video_id: str) -> Path:
        """`<root>/<video_id>`, e.g. `<root>/Punch/v_Punch_g01_c01`."""
        return self.root / video_id

    def status(self, video_id: str, part: str = "frames", settings: dict | None = None) -> str:
        """The state of one part ("frames" or "flow") of a video's folder:

        - "missing": no image of this part and no marker;
        - "partial": the marker says "writing" (its writer stopped or is at work);
        - "complete": the marker says "complete" (with `settings`, if given: each of
          their keys has the same value in the marker);
        - "mismatch": complete with other `settings` (never overwritten);
        - "damaged": complete, but an image file is missing or not of the length its
          marker records (`damage` names it): written again by its stage;
        - "external": images without a marker (dense_flow / mmaction2): readable;
        - "corrupt": the marker cannot be read.
        """
        folder, kind = self.folder_for(video_id), PARTS[part]
        try:
            marker = _read_marker(folder / kind.marker)
        except FrameStoreError:
            return "corrupt"
        if marker is None:
            return "external" if _numbers(folder, kind.prefixes[0]) else "missing"
        if marker.get("state") != "complete":
            return "partial"
        if settings and any(marker.get(key) != value for key, value in settings.items()):
            return "mismatch"
        if _damage(folder, kind, marker) is not None:
            return "damaged"
        return "complete"

    def damage(self, video_id: str, part: str = "frames") -> str | None:
        """The first image file of a complete part that is missing or not of the length
        its marker records (a stat per file), described; None when there is none."""
        marker = self.marker(video_id, part)
        if marker is None or marker.get("state") != "complete":
            return None
        return _damage(self.folder_for(video_id), PARTS[part], marker)

    def _video_folders(self) -> Iterator[Path]:
        """Every folder under the root that holds images or a marker (a video's)."""
        pending = [self.root]
        while pending:
            folder = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            if any(entry.name in MARKERS or entry.name.endswith(".jpg") for entry in entries):
                yield folder
            pending.extend(Path(entry.path) for entry in entries if entry.is_dir())

    def kinds_held(self, part: str = "frames") -> dict[str, str]:
        """The kinds of `part` (`kind_label`: frames' size, flow's method and size) that
        the store's complete markers record, each with one video id holding it."""
        held = {}
        for folder in sorted(self._video_folders()):
            try:
                marker = _read_marker(folder / PARTS[part].marker)
            except FrameStoreError:
                continue
            kind = None if marker is None else _marker_kind(part, marker)
            if kind is not None:
                held.setdefault(kind, folder.relative_to(self.root).as_posix())
        return held

    def check_holds_only(self, part: str, kind: str, remedy: str) -> None:
        """Raises `ValueError` (before a stage writes) when the store holds `part` of
        another kind than `kind`: one store holds frames of one size, flow of one method
        and size. `remedy` says what to do instead."""
        others = {
            held: video_id for held, video_id in self.kinds_held(part).items() if held != kind
        }
        if others:
            held, video_id = next(iter(others.items()))
            raise ValueError(
                f"The frame store {self.root} holds {part} of {held} (e.g. "
                f"{self.folder_for(video_id)}); this run writes {kind}. One store holds "
                f"{part} of one kind: {remedy}"
            )

    def check_videos(self, video_ids: Sequence[str], part: str = "frames") -> dict:
        """Checks, before reading, that every one of `video_ids` has a complete (or
        external) `part` whose files are as their markers record, all of one kind;
        returns that kind: `{"image_size": (height, width), "method": ...}` (method: the
        flow's, None for frames and external folders).

        Raises:
            FrameStoreError: naming a video that is not complete, a damaged file, or two
                videos of different kinds, and what to do.
        """
        videos = []
        for video_id in video_ids:
            status = self.status(video_id, part)
            if status == "damaged":
                raise FrameStoreError(
                    f"{self.damage(video_id, part)}: {video_id}'s {part} are damaged. "
                    + _write_again(PARTS[part])
                )
            if status not in ("complete", "external"):
                raise FrameStoreError(
                    f"{self.folder_for(video_id)}: no complete {part} for {video_id} "
                    f"({status}). " + _write_again(PARTS[part])
                )
            videos.append(self.video(video_id))
        return common_kind(videos, part)

    def marker(self, video_id: str, part: str = "frames") -> dict | None:
        """The marker of one part, or None (no marker: missing or external)."""
        return _read_marker(self.folder_for(video_id) / PARTS[part].marker)

    def _count(self, folder: Path, part: _Part, marker: dict | None) -> int | None:
        """The part's images (from its marker, or counted when external); None when
        its writer is at work or was stopped."""
        if marker is not None:
            if marker.get("state") != "complete":
                return None
            return int(marker[part.count_key])
        counts = {prefix: _count_numbered(folder, prefix) for prefix in part.prefixes}
        if len(set(counts.values())) > 1:
            raise FrameStoreError(
                f"{folder}: expected as many images of each of {part.prefixes}. Found {counts}."
            )
        return counts[part.prefixes[0]]

    def video(self, video_id: str) -> StoredVideo:
        """The video's folder for random access. A part without a marker is counted
        from its files (external); a part being written counts 0 images (reading it
        raises); a folder with neither frames nor flow raises `FrameStoreError`."""
        folder = self.folder_for(video_id)
        markers = {name: _read_marker(folder / part.marker) for name, part in PARTS.items()}
        counts = {name: self._count(folder, part, markers[name]) for name, part in PARTS.items()}
        partial = {name for name, count in counts.items() if count is None}
        if not any(counts.values()) and partial:
            raise FrameStoreError(_being_written(folder, sorted(partial)))
        if not any(counts.values()):
            raise FrameStoreError(
                f"{folder}: no frames or flow for {video_id}. Run `python -m "
                f"training.extract_frames` with --output {self.root} for it, or bring its "
                "dense_flow / mmaction2 folder there."
            )
        counts = {name: count or 0 for name, count in counts.items()}
        return StoredVideo(folder, markers["frames"], markers["flow"], *counts.values(), partial)

    def frames_writer(self, video_id: str, settings: FrameSettings) -> PartWriter:
        """A `PartWriter` of the video's RGB frames (its marker now says "writing")."""
        return PartWriter(self.folder_for(video_id), FRAMES, asdict(settings), video_id)

    def flow_writer(self, video_id: str, settings: dict) -> PartWriter:
        """A `PartWriter` of the video's flow; `settings` hold `jpeg_quality` and the
        flow's own (method, height, width, bound)."""
        check_jpeg_quality(settings["jpeg_quality"])
        return PartWriter(self.folder_for(video_id), FLOW, dict(settings), video_id)

    def adopt(self, video_id: str) -> dict:
        """Writes the markers of a folder brought from dense_flow / mmaction2: for each
        part with images and no marker, checks that they are numbered 1..N (flow: as
        many x as y) and readable at one size, then writes its "complete" marker with
        `"origin": "external"`. Returns `{part: marker}` of the parts it adopted."""
        folder, adopted = self.folder_for(video_id), {}
        for name, part in PARTS.items():
            if self.status(video_id, name) != "external":
                continue
            count = self._count(folder, part, None)
            first_path = folder / image_name(part.prefixes[0], 0)
            first = _read_image(first_path, cv2.IMREAD_UNCHANGED, part)
            last_path = folder / image_name(part.prefixes[-1], count - 1)
            last = _read_image(last_path, cv2.IMREAD_UNCHANGED, part)
            if first.shape[:2] != last.shape[:2]:
                raise FrameStoreError(
                    f"{folder}: its first and last {name} differ in size "
                    f"({first.shape[:2]} and {last.shape[:2]})."
                )
            file_bytes = {
                prefix: [
                    (folder / image_name(prefix, index)).stat().st_size for index in range(count)
                ]
                for prefix in part.prefixes
            }
            marker = {
                "store_format": STORE_FORMAT,
                "part": name,
                "state": "complete",
                "origin": "external",
                "video_id": video_id,
                part.count_key: count,
                "image_size": list(first.shape[:2]),
                "bytes": sum(sum(lengths) for lengths in file_bytes.values()),
                "file_bytes": file_bytes,
            }
            _write_marker(folder / part.marker, marker)
            adopted[name] = marker
        return adopted

    def __repr__(self) -> str:
        return f"FrameStore(root={str(self.root)!r})"
