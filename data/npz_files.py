"""Atomic, reproducible `.npz` files: the on-disk format of every pipeline stage.

A file is written with `runtime.atomic_files.atomic_write` (a hidden temporary file in the
same folder, moved onto its final name with `os.replace`), so a reader (or a re-run
after a crash or SIGKILL) sees either the complete old file, the complete new file, or
nothing. Zip entries carry a fixed timestamp, so the same arrays always give the same
bytes: a resumed run and an uninterrupted run produce byte-identical outputs.

Memory does not grow with an array's length: entries are compressed and written
16 MiB at a time, an array made chunk by chunk waits in a `SpooledArray` (a temporary
file) rather than in memory, and `read_npz_chunks` inflates one chunk at a time.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from temporal_attention.runtime.atomic_files import atomic_write, remove_stale_temp_files

# Zip timestamps normally record the wall clock; a fixed one keeps files reproducible.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# The most bytes of an array held at once while it is written or copied.
_BLOCK_BYTES = 1 << 24


class SpooledArray:
    """An array made chunk by chunk, kept in a temporary file until `write_npz` copies
    it into an archive: memory holds one chunk, whatever the array's length.

        with SpooledArray(output.parent) as flow:
            for chunk in flow_chunks:              # (n, H, W, 2) uint8 each
                flow.append(chunk)
            write_npz(output, {"flow": flow})      # the bytes of the whole array's file

    The file is anonymous (`tempfile.TemporaryFile` in `folder`, put beside the output
    so that it is on a disk with room for it): nothing is left behind, even by a kill.
    Chunks are stacked along the first axis and must agree in dtype and other axes.
    """

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=folder)
        self.dtype: np.dtype | None = None
        self.item_shape: tuple[int, ...] | None = None
        self.length = 0

    def append(self, chunk: np.ndarray) -> None:
        """Adds `chunk` `(n, ...)` at the end."""
        chunk = np.ascontiguousarray(chunk)
        if chunk.ndim < 1:
            raise ValueError(f"Expected a chunk (n, ...). Received: shape={chunk.shape}")
        if self.dtype is None:
            self.dtype, self.item_shape = chunk.dtype, tuple(chunk.shape[1:])
        elif (chunk.dtype, tuple(chunk.shape[1:])) != (self.dtype, self.item_shape):
            raise ValueError(
                f"Expected chunks (n, {', '.join(map(str, self.item_shape))}) {self.dtype}. "
                f"Received: shape={chunk.shape}, dtype={chunk.dtype}"
            )
        self._file.write(chunk.reshape(-1).view(np.uint8).data)
        self.length += len(chunk)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.item_shape is None:
            raise ValueError("A SpooledArray without chunks has no shape: append one first.")
        return (self.length, *self.item_shape)

    def blocks(self) -> Iterator[bytes]:
        """The array's bytes (C order), at most 16 MiB at a time."""
        self._file.flush()
        self._file.seek(0)
        while block := self._file.read(_BLOCK_BYTES):
            yield block
        self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpooledArray:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The `.npy` header `np.lib.format.write_array` writes for a C-order array."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
    np.lib.format.write_array_header_1_0(buffer, {**header, "shape": tuple(shape)})
    return buffer.getvalue()


def _array_blocks(array: np.ndarray) -> Iterator[memoryview]:
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _BLOCK_BYTES):
        yield flat[start : start + _BLOCK_BYTES].data


def write_npz(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    metadata: dict | None = None,
    compress: bool = True,
    compress_level: int | None = None,
) -> Path:
    """Writes `arrays` (and `metadata` as JSON) to `path` atomically.

    Args:
        path: Final file name (`.npz`). Parent folders are created.
        arrays: Name to array (or `SpooledArray`, copied from its file). Names must not
            be `"metadata"`.
        metadata: JSON-serialisable dict stored as the `metadata` entry, or `None`.
        compress: Deflate the entries (default `True`).
        compress_level: zlib's level, 1 (fastest) to 9; `None` (default) is zlib's own,
            6. The same arrays and level always give the same bytes.

    Returns:
        The final path.
    """
    path = Path(path)
    if "metadata" in arrays:
        raise ValueError("Array name 'metadata' is reserved. Received: arrays with 'metadata'")
    if compress_level is not None and not 1 <= compress_level <= 9:
        raise ValueError(
            f"Expected compress_level in 1..9 or None. Received: compress_level={compress_level}"
        )
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
            if isinstance(array, SpooledArray):
                shape, dtype, blocks = array.shape, array.dtype, array.blocks()
            else:
                array = np.ascontiguousarray(array)
                if array.dtype.hasobject:
                    raise ValueError(f"{path}: array {name!r} holds Python objects; not stored.")
                shape, dtype, blocks = array.shape, array.dtype, _array_blocks(array)
            header = _npy_header(shape, dtype)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = compression
            info._compresslevel = compress_level  # zipfile's field (3.13: a property)
            # The full size, known before writing, makes zipfile choose Zip64 as
            # `writestr` of the whole entry would: the same bytes, whatever the blocks.
            info.file_size = len(header) + int(np.prod(shape)) * dtype.itemsize
            with archive.open(info, "w") as entry:
                entry.write(header)
                for block in blocks:
                    entry.write(block)
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


def read_npz_chunks(path: str | os.PathLike, name: str, chunk_items: int) -> Iterator[np.ndarray]:
    """The array `name` of a `write_npz` file, `chunk_items` items (along its first axis)
    at a time, inflated as it is read: memory holds one chunk, whatever the length.

    Raises:
        OSError: The file is missing or unreadable.
        ValueError: The file is not a valid `.npz`, has no such array, or the array is
            shorter or longer than its header states or fails its checksum.
    """
    if chunk_items < 1:
        raise ValueError(f"Expected chunk_items >= 1. Received: chunk_items={chunk_items}")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as entry:
            version = np.lib.format.read_magic(entry)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(entry)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(entry)
            if fortran_order or dtype.hasobject or len(shape) < 1:
                raise ValueError(f"array {name!r} is not a C-order array of numbers")
            item_bytes = int(np.prod(shape[1:])) * dtype.itemsize
            for start in range(0, shape[0], chunk_items):
                count = min(chunk_items, shape[0] - start)
                data = entry.read(count * item_bytes)
                if len(data) != count * item_bytes:
                    raise ValueError(f"array {name!r} is shorter than its header states")
                yield np.frombuffer(data, dtype=dtype).reshape(count, *shape[1:])
            if entry.read(1):  # also completes the CRC check
                raise ValueError(f"array {name!r} is longer than its header states")
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, zlib.error) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error}).") from error
