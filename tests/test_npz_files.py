"""npz files: written and read a block or a chunk at a time, the bytes of a one-shot write."""

import io
import json
import zipfile

import numpy as np
import pytest

from temporal_attention.data.npz_files import SpooledArray, read_npz, read_npz_chunks, write_npz


def one_shot_npz(path, arrays, metadata):
    """The writer as it was before entries were streamed: each whole `.npy` in memory,
    then `writestr`. Files written since must have exactly its bytes."""
    entries = dict(arrays)
    text = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), np.uint8)
    entries["metadata"] = text
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in entries.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    return path


ARRAYS = {
    "flow": np.random.default_rng(0).integers(100, 156, (37, 24, 30, 2), dtype=np.uint8),
    "features": np.random.default_rng(1).normal(size=(37, 16)).astype(np.float16),
    "scalar": np.float32(2.5),
    "empty": np.zeros((0, 4), np.int64),
}


def test_streamed_and_spooled_writes_give_the_bytes_of_a_one_shot_write(tmp_path):
    reference = one_shot_npz(tmp_path / "reference.npz", ARRAYS, {"a": 1}).read_bytes()
    assert write_npz(tmp_path / "streamed.npz", ARRAYS, {"a": 1}).read_bytes() == reference
    with SpooledArray(tmp_path / "spool") as flow:
        for start in range(0, 37, 5):
            flow.append(ARRAYS["flow"][start : start + 5])
        assert flow.shape == (37, 24, 30, 2)
        spooled = write_npz(tmp_path / "spooled.npz", {**ARRAYS, "flow": flow}, {"a": 1})
        with pytest.raises(ValueError, match="Expected chunks"):
            flow.append(ARRAYS["features"])
    assert spooled.read_bytes() == reference
    assert list((tmp_path / "spool").iterdir()) == []  # the spool file is anonymous
    arrays, metadata = read_npz(spooled)
    np.testing.assert_array_equal(arrays["flow"], ARRAYS["flow"])
    assert metadata == {"a": 1}


def test_read_chunks_and_their_checks(tmp_path):
    path = write_npz(tmp_path / "a.npz", ARRAYS, {"a": 1})
    chunks = list(read_npz_chunks(path, "flow", 10))
    assert [len(chunk) for chunk in chunks] == [10, 10, 10, 7]
    np.testing.assert_array_equal(np.concatenate(chunks), ARRAYS["flow"])
    np.testing.assert_array_equal(
        np.concatenate(list(read_npz_chunks(path, "features", 36))), ARRAYS["features"]
    )
    with pytest.raises(ValueError, match="a.npz"):
        list(read_npz_chunks(path, "nothing", 10))
    # A damaged entry fails its checksum or its inflation, found by the end of the read.
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("flow.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle] ^= 0xFF
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged.npz"):
        list(read_npz_chunks(damaged, "flow", 10))
    with pytest.raises(ValueError, match="chunk_items"):
        list(read_npz_chunks(path, "flow", 0))


def test_a_compress_level_gives_its_own_reproducible_bytes(tmp_path):
    relu = np.maximum(np.random.default_rng(2).normal(size=(64, 256)), 0).astype(np.float16)
    paths = {
        level: write_npz(tmp_path / f"{level}.npz", {"features": relu}, compress_level=level)
        for level in (1, 9, None)
    }
    again = write_npz(tmp_path / "again.npz", {"features": relu}, compress_level=1)
    assert again.read_bytes() == paths[1].read_bytes()
    assert paths[1].read_bytes() != paths[9].read_bytes()
    assert (
        paths[None].read_bytes() == write_npz(tmp_path / "d.npz", {"features": relu}).read_bytes()
    )
    for path in paths.values():  # every level reads back the same array
        np.testing.assert_array_equal(read_npz(path)[0]["features"], relu)
    sizes = {level: path.stat().st_size for level, path in paths.items()}
    assert sizes[1] > sizes[9]  # the fastest level packs less tightly
    with pytest.raises(ValueError, match="compress_level in 1..9"):
        write_npz(tmp_path / "bad.npz", {"features": relu}, compress_level=0)
    assert not (tmp_path / "bad.npz").exists()
