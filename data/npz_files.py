"""Atomic, reproducible `.npz` files: the on-disk format of every pipeline stage.

A file is written with `data.atomic_files.atomic_write` (a hidden temporary file in the
same folder, moved onto its final name with `os.replace`), so a reader (or a re-run
after a crash or SIGKILL) sees either the complete old file, the complete new file, or
nothing. Zip entries carry a fixed timestamp, so the same arrays always give the same
bytes: a resumed run and an uninterrupted run produce byte-identical outputs.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from data.atomic_files import atomic_write, remove_stale_temp_files

# Zip timestamps normally record the wall clock; a fixed one keeps files reproducible.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


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
    remove_stale_temp_files(path)
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    entries = dict(arrays)
    if metadata is not None:
        text = json.dumps(metadata, sort_keys=True)
        entries["metadata"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    with (
        atomic_write(path) as temp,
        zipfile.ZipFile(temp, "w", compression=compression, allowZip64=True) as archive,
    ):
        for name, array in entries.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = compression
            archive.writestr(info, buffer.getvalue())
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
