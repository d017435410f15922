"""Feature store: round trips, atomic writes, completeness, every bad file, shards."""

import numpy as np
import pytest

import temporal_attention.data.npz_files
from temporal_attention.data.feature_store import FeatureStore, FeatureStoreError
from temporal_attention.data.npz_files import write_npz
from temporal_attention.runtime.jobs import parse_shard, shard_items

METADATA = {"backbone": "vgg16", "stream": "rgb", "weights": "imagenet", "layer": "fc1"}


def _features(frames=7, dim=16, seed=0):
    return np.random.default_rng(seed).normal(size=(frames, dim)).astype(np.float32)


@pytest.mark.parametrize("dtype, tolerance", [("float16", 1e-2), ("float32", 0.0)])
def test_write_then_read_round_trips(tmp_path, dtype, tolerance):
    store = FeatureStore(tmp_path, dtype=dtype)
    features = _features()
    path = store.write(
        "Punch/v_Punch_g01_c01", features, {**METADATA, "frame_indices": list(range(7))}
    )
    assert path == tmp_path / "Punch" / "v_Punch_g01_c01.npz"
    read, metadata = store.read("Punch/v_Punch_g01_c01")
    assert read.dtype == np.float32 and read.shape == (7, 16)
    np.testing.assert_allclose(read, features, atol=tolerance)
    assert metadata["dtype"] == dtype and metadata["frame_indices"] == list(range(7))
    assert metadata["stream"] == "rgb" and metadata["num_frames"] == 7
    assert store.video_ids() == ["Punch/v_Punch_g01_c01"]


def test_is_complete_checks_existence_validity_and_metadata(tmp_path):
    store = FeatureStore(tmp_path)
    assert not store.is_complete("A/x")
    store.write("A/x", _features(), METADATA)
    assert store.is_complete("A/x")
    assert store.is_complete("A/x", {"backbone": "vgg16", "stream": "rgb"})
    assert not store.is_complete("A/x", {"stream": "flow"})
    store.path_for("A/x").write_bytes(b"garbage")
    assert not store.is_complete("A/x")


def _write_raw(store, video_id, features, **metadata_changes):
    metadata = {
        "num_frames": features.shape[0],
        "feature_dim": features.shape[-1],
        "dtype": str(features.dtype),
        **metadata_changes,
    }
    return write_npz(store.path_for(video_id), {"features": features}, metadata)


@pytest.mark.parametrize(
    "make_file, problem",
    [
        (lambda s: _write_raw(s, "A/x", _features()[None]), "shape"),
        (lambda s: _write_raw(s, "A/x", _features(), num_frames=9), "shape"),
        (lambda s: _write_raw(s, "A/x", _features().astype(np.int32)), "dtype"),
        (lambda s: _write_raw(s, "A/x", _features().astype(np.float16), dtype="float32"), "dtype"),
        (lambda s: _write_raw(s, "A/x", np.full((3, 4), np.nan, np.float16)), "NaN"),
        (
            lambda s: s.path_for("A/x").write_bytes(s.path_for("A/x").read_bytes()[:-30]),
            "unreadable",
        ),
    ],
)
def test_bad_feature_files_are_named_with_what_to_do(tmp_path, make_file, problem):
    store = FeatureStore(tmp_path)
    store.write("A/x", _features(), METADATA)
    make_file(store)
    with pytest.raises(FeatureStoreError, match=problem) as info:
        store.read("A/x")
    assert str(store.path_for("A/x")) in str(info.value)
    assert "Delete this file and extract its features again" in str(info.value)
    assert not store.is_complete("A/x")


def test_missing_video_is_named(tmp_path):
    with pytest.raises(FeatureStoreError, match="'A/nothing'"):
        FeatureStore(tmp_path).read("A/nothing")


def test_write_rejects_bad_features_and_keeps_nothing(tmp_path):
    store = FeatureStore(tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        store.write("A/x", np.array([[1.0, np.nan]]), METADATA)
    with pytest.raises(ValueError, match="overflow|NaN or inf"):
        store.write("A/x", np.array([[1.0, 1e6]]), METADATA)  # inf in float16
    with pytest.raises(ValueError, match="shape=\\(4,\\)"):
        store.write("A/x", np.zeros(4), METADATA)
    with pytest.raises(ValueError, match="frame_indices"):
        store.write("A/x", _features(), {"frame_indices": [0, 1]})
    with pytest.raises(ValueError, match="dtype='float64'"):
        FeatureStore(tmp_path, dtype="float64")
    with pytest.raises(ValueError, match="video_id"):
        store.path_for("../escape")
    assert store.video_ids() == []


def test_a_write_that_dies_midway_leaves_the_old_file_intact(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path, dtype="float32")
    old = _features(seed=1)
    store.write("A/x", old, METADATA)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the new file is being written

    monkeypatch.setattr(
        temporal_attention.data.npz_files.np.lib.format, "write_array_header_1_0", crash
    )
    with pytest.raises(KeyboardInterrupt):
        store.write("A/x", _features(seed=2), METADATA)
    monkeypatch.undo()
    np.testing.assert_array_equal(store.read("A/x")[0], old)
    assert [p.name for p in (tmp_path / "A").iterdir()] == ["x.npz"]


def test_temp_files_of_a_killed_writer_are_ignored_and_cleaned(tmp_path):
    store = FeatureStore(tmp_path)
    store.write("A/x", _features(), METADATA)
    stale = tmp_path / "A" / ".y.npz.tmp-99999999-deadbeef"  # no process has that pid
    stale.write_bytes(b"half a file")
    assert store.video_ids() == ["A/x"]
    store.write("A/y", _features(), METADATA)
    assert not stale.exists()
    assert store.video_ids() == ["A/x", "A/y"]


def test_shards_are_disjoint_and_cover_everything():
    items = [f"clip{i}" for i in range(10)]
    shards = [shard_items(items, f"{i}/3") for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(items)
    assert shards[0] == ["clip0", "clip3", "clip6", "clip9"]
    assert shard_items(items, None) == items
    assert parse_shard("2/4") == (2, 4)
    for bad in ("3/3", "-1/3", "1/0", "1-3", "a/b"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
