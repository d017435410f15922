"""Atomic, reproducible `.npz` files: the on-disk format of every pipeline stage.

A file is written to a hidden temporary file in the same folder, then moved onto its
final name with `os.replace`, so a reader (or a re-run after a crash or SIGKILL) sees
either the complete old file, the complete new file, or nothing. Zip entries carry a
fixed timestamp, so the same arrays always give the same bytes: a resumed run and an
uninterrupted run produce byte-identical outputs.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np

# Zip timestamps normally record the wall clock; a fixed one keeps files reproducible.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_TEMP_MARKER = ".tmp-"


def temp_path_for(path: Path) -> Path:
    """A unique hidden temporary name beside `path` (same folder, so rename is atomic)."""
    return path.with_name(f".{path.name}{_TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp_file(path: Path) -> bool:
    """Whether `path` is a temporary file left by `write_npz` (e.g. after a kill)."""
    return path.name.startswith(".") and _TEMP_MARKER in path.name


def remove_stale_temp_files(path: Path) -> int:
    """Deletes temporary files of `path` left by a killed writer; returns how many.

    Only the temporaries of this one output are touched: shards split a dataset by
    video, so no other live process writes the same output.
    """
    removed = 0
    for stale in path.parent.glob(f".{path.name}{_TEMP_MARKER}*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def write_npz(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    metadata: dict | None = None,
    compress: bool = True,
) -> Path:
    """Writes `arrays` (and `metadata` as JSON) to `path` atomically.

    Args:
        path: Final file name (`.npz`). Parent folders are created.
        arrays: Name to array. Names must not be `"metadata"`.
        metadata: JSON-serialisable dict stored as the `metadata` entry, or `None`.
        compress: Deflate the entries (default `True`).

    Returns:
        The final path.
    """
    path = Path(path)
    if "metadata" in arrays:
        raise ValueError("Array name 'metadata' is reserved. Received: arrays with 'metadata'")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    temp = temp_path_for(path)
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    entries = dict(arrays)
    if metadata is not None:
        text = json.dumps(metadata, sort_keys=True)
        entries["metadata"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    try:
        with zipfile.ZipFile(temp, "w", compression=compression, allowZip64=True) as archive:
            for name, array in entries.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = compression
                archive.writestr(info, buffer.getvalue())
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def read_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict | None]:
    """Reads a file written by `write_npz`: (arrays, metadata or `None`).

    Raises:
        OSError: The file is missing or unreadable.
        ValueError: The file is not a valid `.npz` (truncated, corrupt, wrong format).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error}).") from error
    metadata = None
    if "metadata" in arrays:
        try:
            metadata = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} has unreadable metadata ({error}).") from error
    return arrays, metadata


def read_npz_metadata(path: str | os.PathLike) -> dict | None:
    """Reads only the JSON metadata of a `write_npz` file (cheap: no array is inflated)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "metadata.npy" not in archive.namelist():
                return None
            with archive.open("metadata.npy") as entry:
                raw = np.lib.format.read_array(entry, allow_pickle=False)
        return json.loads(raw.tobytes().decode("utf-8"))
    except (zipfile.BadZipFile, EOFError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error}).") from error
