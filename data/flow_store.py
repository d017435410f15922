"""A folder of optical flow, one `<video_id>.npz` per video: the flow layout's one owner.

    store = FlowStore("runs/flow_tvl1")
    store.status("Punch/v_Punch_g01_c01", FlowSettings("tvl1"))  # "missing", "complete", ...
    stacks = store.read_stacks("Punch/v_Punch_g01_c01")    # (frames - 5, 256, 340, 10) uint8
    for stacks in store.iter_stacks("Punch/v_Punch_g01_c01"):  # any length, chunk by chunk
        ...                                                     # (<= 32, 256, 340, 10)

Each file holds `flow` `(frames - 1, height, width, 2)` uint8 (bound 20, see
`data.optical_flow`) and JSON metadata: the `FlowSettings` it was made with, plus the
video's id, source file, frame count, fps and size. `training.compute_flow` writes it;
fine-tuning and feature extraction read it. One store holds flow of one method and
size (`kind_label`): `check_holds_only` refuses a run of another before it writes, and
`recipe` refuses videos of two kinds, naming a file of each.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from temporal_attention.data.flow_quantization import FLOW_BOUND
from temporal_attention.data.frame_store import kind_label
from temporal_attention.data.npz_files import SpooledArray, read_npz_metadata
from temporal_attention.data.optical_flow import (
    CHUNK_FLOWS,
    FLOW_METHODS,
    STACK_LENGTH,
    flow_stacks,
    iter_flow_stacks,
    load_flow,
    load_flow_chunks,
    save_flow,
)
from temporal_attention.data.video import FRAME_HEIGHT, FRAME_WIDTH
from temporal_attention.runtime.atomic_files import is_temp_file

FLOW_STATUSES = ("missing", "complete", "corrupt", "mismatch")
# Revisions of the solvers written in this project, raised whenever a change alters their
# flow. tvl1_keras 2: the median filter after each round of inner iterations and the dual
# variables from zero on every level (docs/data_pipeline.md); files written before it
# carry no revision. 3: the batched stage quantises the flow on the device (on one H200,
# 1.6 values in a million one level from the host's quantisation of the same flow).
SOLVER_REVISIONS = {"tvl1_keras": 3}
# "auto" (training.compute_flow's default) is resolved before anything is computed or
# stored: tvl1_keras where the Keras backend sees a GPU and its self-check there passes,
# OpenCV's tvl1 elsewhere (`resolve`).
METHOD_CHOICES = ("auto", *FLOW_METHODS)


@dataclass(frozen=True)
class FlowSettings:
    """How flow is computed; stored in each file's metadata and checked on re-runs."""

    # "tvl1" (OpenCV's DualTVL1, the paper's lineage), "tvl1_keras" (the same method in
    # keras.ops, batched on the device: data.tvl1), "farneback", "dis"; or "auto", made
    # tvl1_keras on a GPU and tvl1 elsewhere by `resolve` before use.
    method: str = field(default="auto", metadata={"choices": METHOD_CHOICES})
    # Frames are resized to height x width before flow.
    height: int = FRAME_HEIGHT
    width: int = FRAME_WIDTH
    # Values clipped to [-bound, bound] pixels, stored as uint8 (the lineage's 20).
    bound: float = field(default=FLOW_BOUND, metadata={"flag": False})
    # The revision of this project's own solver for `method` (`SOLVER_REVISIONS`; None for
    # OpenCV's methods): set from `method`, stored and checked like the rest, so that flow
    # of an earlier solver is a "mismatch", never taken for the current one's.
    solver_revision: int | None = field(init=False, default=None, metadata={"flag": False})

    def __post_init__(self):
        if self.method not in METHOD_CHOICES:
            raise ValueError(
                f"Expected method in {METHOD_CHOICES}. Received: method={self.method!r}"
            )
        object.__setattr__(self, "solver_revision", SOLVER_REVISIONS.get(self.method))
        if self.height < 8 or self.width < 8:
            raise ValueError(
                f"Expected height, width >= 8. Received: height={self.height}, width={self.width}"
            )

    @property
    def kind(self) -> str:
        """What one store holds one of: "farneback 64x85" (`data.frame_store.kind_label`)."""
        return kind_label("flow", (self.height, self.width), self.method)

    def resolve(self, on_gpu: bool) -> FlowSettings:
        """These settings with "auto" made a method: "tvl1_keras" when `on_gpu` (the
        caller has checked the device), else "tvl1"; other methods unchanged."""
        if self.method != "auto":
            return self
        method = "tvl1_keras" if on_gpu else "tvl1"
        return FlowSettings(method, self.height, self.width, self.bound)


def flow_metadata(video_id: str, video_path: str, reader, settings: FlowSettings) -> dict:
    """The metadata stored with a video's flow once its `data.video.VideoReader` has read
    it all: the settings, the video's id, file, frame count, fps and size. A video too
    short for one flow stack raises `ValueError`."""
    if reader.num_frames < STACK_LENGTH + 1:
        raise ValueError(
            f"{video_path}: too short for one flow stack: {reader.num_frames} "
            f"frame(s), a stack needs {STACK_LENGTH + 1}. Drop this video from the split."
        )
    return {
        **asdict(settings),
        "video_id": video_id,
        "source_file": Path(video_path).name,
        "num_frames": reader.num_frames,
        "fps": reader.fps,
        "source_size": list(reader.source_size),
    }


def _check_resolved(settings: FlowSettings) -> None:
    if settings.method == "auto":
        raise ValueError(
            'Expected flow settings of one method, not "auto": '
            "FlowSettings.resolve(on_gpu) chooses it."
        )


def _file_kind(path: Path) -> tuple[str | None, dict]:
    """A flow file's kind and metadata; `(None, {})` when it is missing, unreadable or
    records no method."""
    try:
        metadata = read_npz_metadata(path) or {}
    except (OSError, ValueError):
        return None, {}
    if "method" not in metadata or "height" not in metadata:
        return None, {}
    return kind_label("flow", (metadata["height"], metadata["width"]), metadata["method"]), metadata


class FlowStore:
    """Quantised flow of many videos under `root`, one `<video_id>.npz` each."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path_for(self, video_id: str) -> Path:
        """`<root>/<video_id>.npz`."""
        return self.root / f"{video_id}.npz"

    def status(self, video_id: str, settings: FlowSettings) -> str:
        """ "missing", "complete", "corrupt" (unreadable: recompute) or "mismatch" (other
        settings: never overwritten)."""
        _check_resolved(settings)
        path = self.path_for(video_id)
        if not path.exists():
            return "missing"
        try:
            metadata = read_npz_metadata(path) or {}
        except (OSError, ValueError):
            return "corrupt"
        stored = {key: metadata.get(key) for key in asdict(settings)}
        return "complete" if stored == asdict(settings) else "mismatch"

    def write(self, video_id: str, flow_uint8: np.ndarray | SpooledArray, metadata: dict) -> Path:
        """Stores one video's flow with its metadata, atomically. `flow_uint8` is an array
        or a `SpooledArray` (see `spool`): the same file either way."""
        if metadata.get("method") == "auto":
            raise ValueError('Expected a flow method, not "auto": resolve the settings first.')
        return save_flow(self.path_for(video_id), flow_uint8, metadata)

    def spool(self, video_id: str) -> SpooledArray:
        """A `data.npz_files.SpooledArray` to collect a long video's flow chunk by chunk
        (an anonymous temporary file in the video's folder), then to `write`:

            with store.spool(video_id) as flow:
                for chunk in iter_flow(reader.chunks(), method):
                    flow.append(chunk)
                store.write(video_id, flow, metadata)
        """
        return SpooledArray(self.path_for(video_id).parent)

    def read(self, video_id: str) -> np.ndarray:
        """`(num_flows, height, width, 2)` uint8; a missing or bad file raises
        `ValueError` naming it and what to do."""
        path = self.path_for(video_id)
        if not path.exists():
            raise ValueError(
                f"{path}: no flow for {video_id}. Its flow was never computed or failed (see "
                f"{self.root}/failures*.jsonl): run `python -m training.compute_flow` with "
                f"--output {self.root} for it, or drop the video from the split."
            )
        return load_flow(path)

    def read_stacks(self, video_id: str) -> np.ndarray:
        """The video's 10-channel motion inputs, `(num_flows - 4, height, width, 10)` uint8."""
        return flow_stacks(self.read(video_id))

    def iter_stacks(self, video_id: str, chunk_flows: int = CHUNK_FLOWS) -> Iterator[np.ndarray]:
        """`read_stacks` chunk by chunk (`(n, height, width, 10)` uint8, the same stacks
        in the same order), read from the file as they go: memory holds one chunk of
        `chunk_flows` flows, whatever the video's length. A bad file raises
        `ValueError` naming it, at the latest at the end."""
        return iter_flow_stacks(load_flow_chunks(self.path_for(video_id), chunk_flows))

    def missing(self, video_ids: Iterable[str]) -> list[str]:
        """The ids among `video_ids` that have no flow file."""
        return [video_id for video_id in video_ids if not self.path_for(video_id).exists()]

    def recipe(self, video_ids: Iterable[str]) -> dict:
        """How the flow of `video_ids` was made, `{"flow_method", "flow_size"}`, from
        their readable files (`{}` when none is; an unreadable one fails when read).

        Raises:
            ValueError: two of the files differ in method or size, naming one of each.
        """
        kinds: dict[str, tuple[Path, dict]] = {}
        for video_id in video_ids:
            path = self.path_for(video_id)
            kind, metadata = _file_kind(path)
            if kind is None:
                continue
            kinds.setdefault(kind, (path, metadata))
            if len(kinds) > 1:
                (first_kind, (first_path, _)), (other_kind, (other_path, _)) = kinds.items()
                raise ValueError(
                    f"The flow store {self.root} holds flow of {first_kind} ({first_path}) "
                    f"and of {other_kind} ({other_path}): its features would record one "
                    "method for both. Compute the flow of these videos again with one "
                    "method and size, into a store of its own."
                )
        if not kinds:
            return {}
        _, metadata = next(iter(kinds.values()))
        return {
            "flow_method": metadata["method"],
            "flow_size": [metadata["height"], metadata["width"]],
        }

    def kinds_held(self) -> dict[str, str]:
        """The kinds of flow (`kind_label`: method and size) that the store's readable
        files record, each with one video id holding it."""
        held = {}
        paths = self.root.rglob("*.npz") if self.root.is_dir() else []
        for path in sorted(paths):
            kind = None if is_temp_file(path) else _file_kind(path)[0]
            if kind is not None:
                held.setdefault(kind, path.relative_to(self.root).with_suffix("").as_posix())
        return held

    def check_holds_only(self, kind: str, remedy: str) -> None:
        """Raises `ValueError` (before a stage writes) when the store holds flow of
        another kind than `kind` (method and size). `remedy` says what to do instead."""
        others = {held: video_id for held, video_id in self.kinds_held().items() if held != kind}
        if others:
            held, video_id = next(iter(others.items()))
            raise ValueError(
                f"The flow store {self.root} holds flow of {held} (e.g. "
                f"{self.path_for(video_id)}); this run writes {kind}. One store holds flow "
                f"of one method and size: {remedy}"
            )

    def __repr__(self) -> str:
        return f"FlowStore(root={str(self.root)!r})"
