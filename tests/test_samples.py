"""30-frame samples and the PyDataset that feeds model.fit from a FeatureStore."""

import numpy as np
import pytest

from temporal_attention.data.feature_store import FeatureStore
from temporal_attention.data.samples import MixupDataset, SampleDataset, make_samples, sample_starts


def _ramp(frames, dim=3):
    """Frame t has every feature equal to t, so windows are easy to read."""
    return np.repeat(np.arange(frames, dtype=np.float32)[:, None], dim, axis=1)


def test_consecutive_samples_and_padded_last_sample():
    samples, mask = make_samples(_ramp(75))
    assert samples.shape == (3, 30, 3) and mask.shape == (3, 30) and mask.dtype == bool
    np.testing.assert_array_equal(samples[1, :, 0], np.arange(30, 60))
    np.testing.assert_array_equal(samples[2, :15, 0], np.arange(60, 75))
    np.testing.assert_array_equal(samples[2, 15:, 0], np.full(15, 74))  # last frame repeated
    np.testing.assert_array_equal(mask.sum(axis=1), [30, 30, 15])
    assert mask[2, :15].all() and not mask[2, 15:].any()


def test_short_video_gives_one_padded_sample():
    samples, mask = make_samples(_ramp(7))
    assert samples.shape == (1, 30, 3)
    np.testing.assert_array_equal(samples[0, 7:, 0], np.full(23, 6))
    assert mask.sum() == 7


def test_stride_controls_overlap_and_exact_multiples_need_no_padding():
    assert sample_starts(60).tolist() == [0, 30]
    assert make_samples(_ramp(60))[1].all()
    assert sample_starts(75, 30, 10).tolist() == [0, 10, 20, 30, 40, 50]
    samples, mask = make_samples(_ramp(75), num_frames=30, stride=10)
    assert samples[5, 0, 0] == 50 and mask[5].sum() == 25
    assert sample_starts(5, num_frames=4, stride=1).tolist() == [0, 1]


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="stride=0"):
        make_samples(_ramp(10), stride=0)
    with pytest.raises(ValueError, match="num_frames=0"):
        make_samples(_ramp(10), num_frames=0)
    with pytest.raises(ValueError, match="0 frames"):
        make_samples(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="shape=\\(10,\\)"):
        make_samples(np.zeros(10))


@pytest.fixture
def store_and_items(tmp_path):
    store = FeatureStore(tmp_path, dtype="float32")
    lengths = {"A/one": 75, "A/two": 12, "B/three": 30, "B/four": 64}
    for index, (video_id, frames) in enumerate(lengths.items()):
        store.write(video_id, _ramp(frames, 5) + 1000 * index, {"stream": "rgb"})
    return store, [(video_id, index % 2) for index, video_id in enumerate(lengths)]


def test_batches_equal_per_video_samples(store_and_items):
    store, items = store_and_items
    dataset = SampleDataset(store, items, batch_size=4)
    expected = [make_samples(store.read(video_id)[0]) for video_id, _ in items]
    all_samples = np.concatenate([samples for samples, _ in expected])
    all_masks = np.concatenate([mask for _, mask in expected])
    assert dataset.num_samples == len(all_samples) == 3 + 1 + 1 + 3
    assert len(dataset) == 2
    batches = [dataset[index] for index in range(len(dataset))]
    inputs, labels = batches[0]
    assert inputs["features"].shape == (4, 30, 5) and inputs["features"].dtype == np.float32
    assert inputs["frame_mask"].dtype == bool and labels.dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([b[0]["features"] for b in batches]), all_samples)
    np.testing.assert_array_equal(np.concatenate([b[0]["frame_mask"] for b in batches]), all_masks)
    np.testing.assert_array_equal(dataset.sample_video_index, [0, 0, 0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), [0, 0, 0, 1, 0, 1, 1, 1])
    with pytest.raises(IndexError):
        dataset[2]


def test_shuffle_is_seeded_and_construction_reads_no_features(store_and_items, monkeypatch):
    store, items = store_and_items
    read = store.read
    monkeypatch.setattr(store, "read", lambda video_id: pytest.fail("features read at init"))
    first = SampleDataset(store, items, batch_size=3, shuffle=True, seed=7)
    second = SampleDataset(store, items, batch_size=3, shuffle=True, seed=7)
    monkeypatch.setattr(store, "read", read)
    np.testing.assert_array_equal(first.sample_order, second.sample_order)
    assert sorted(first.sample_order) == list(range(8))
    inputs, labels = first[0]
    chosen = first.sample_order[:3]
    np.testing.assert_array_equal(labels, first.labels[first.sample_video_index[chosen]])
    before = first.sample_order.copy()
    first.on_epoch_end()
    assert sorted(first.sample_order) == list(range(8)) and not np.array_equal(
        before, first.sample_order
    )


@pytest.mark.slow
def test_feeds_model_fit(store_and_items):
    from temporal_attention.models.recognizer import build_attention_model

    store, items = store_and_items
    dataset = SampleDataset(store, items, batch_size=4, shuffle=True, seed=0)
    model = build_attention_model(
        2, feature_dim=5, units=4, num_layers=1, frame_mask_input=True, seed=0
    )
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_features_of_two_sizes_are_named_by_file(tmp_path):
    store = FeatureStore(tmp_path)
    store.write("A/v1", np.ones((4, 16)), {})
    store.write("A/v2", np.ones((4, 16)), {})
    store.write("B/v1", np.ones((16, 294)), {})  # a transposed array, its metadata matching
    with pytest.raises(ValueError, match=f"294 in 1 file.*{store.path_for('B/v1')}"):
        SampleDataset(store, [("A/v1", 0), ("A/v2", 0), ("B/v1", 1)])


class CountingStore(FeatureStore):
    """A store that counts the files it reads."""

    def __init__(self, root):
        super().__init__(root)
        self.reads = 0

    def read(self, video_id, as_stored=False):
        self.reads += 1
        return super().read(video_id, as_stored)


def _filled_store(root, num_videos=12, num_frames=40, dim=8):
    store = CountingStore(root)
    rng = np.random.default_rng(0)
    for index in range(num_videos):
        store.write(
            f"C/v_{index:02d}", rng.normal(size=(num_frames, dim)), {"stream": "appearance"}
        )
    return store, [(f"C/v_{index:02d}", index % 2) for index in range(num_videos)]


def test_shuffled_epochs_read_each_file_once_when_the_cache_holds_them(tmp_path):
    store, items = _filled_store(tmp_path)
    dataset = SampleDataset(store, items, batch_size=4, shuffle=True, seed=0)
    first = [dataset[index] for index in range(len(dataset))]
    dataset.on_epoch_end()
    second = [dataset[index] for index in range(len(dataset))]
    assert store.reads == len(items)  # 2 epochs of 24 shuffled samples, 12 files read
    expected = {video_id: store.read(video_id)[0] for video_id, _ in items}
    for batch in first + second:
        features = batch[0]["features"]
        assert features.dtype == np.float32 and features.shape[1:] == (30, 8)
    # The cached (stored-dtype) features give the float32 features read from disk.
    order = dataset.sample_order[:4]
    video = items[dataset.sample_video_index[order[0]]][0]
    start = int(dataset.sample_starts[order[0]])
    np.testing.assert_array_equal(second[0][0]["features"][0], expected[video][start : start + 30])


def test_a_small_cache_evicts_and_reads_again(tmp_path):
    store, items = _filled_store(tmp_path)
    one_video = store.read(items[0][0], as_stored=True)[0].nbytes
    store.reads = 0
    dataset = SampleDataset(
        store, items, batch_size=4, shuffle=True, seed=0, cache_bytes=2 * one_video
    )
    for _ in range(2):
        for index in range(len(dataset)):
            dataset[index]
        dataset.on_epoch_end()
    assert store.reads > len(items)  # evicted videos are read again
    assert dataset._cached_bytes <= 2 * one_video


def test_batches_in_the_stores_dtype_hold_the_same_values(tmp_path):
    # dtype=None (what train_attention feeds): float16 from a float16 store, which the
    # model casts to float32 on its device; the values are those of the float32 batches.
    store, items = _filled_store(tmp_path)  # float16, the store's default
    as_stored = SampleDataset(store, items, batch_size=4, shuffle=True, seed=0, dtype=None)
    as_float32 = SampleDataset(store, items, batch_size=4, shuffle=True, seed=0)
    for index in range(len(as_stored)):
        (stored, mask), (wide, wide_mask) = (d[index][0].values() for d in (as_stored, as_float32))
        assert stored.dtype == np.float16 and wide.dtype == np.float32
        np.testing.assert_array_equal(stored.astype(np.float32), wide)
        np.testing.assert_array_equal(mask, wide_mask)


class _Batch:
    """One fixed batch, as a dataset: sample i is frames of value 10 * i, class i."""

    def __init__(self, batch=6, frames=4, dim=3):
        self.features = np.repeat(10.0 * np.arange(batch, dtype=np.float32), frames * dim)
        self.features = self.features.reshape(batch, frames, dim)
        self.mask = np.ones((batch, frames), dtype=bool)
        self.mask[0, 2:] = False  # a padded sample
        self.labels = np.arange(batch, dtype=np.int32)
        self.epochs_ended = 0

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return {"features": self.features, "frame_mask": self.mask}, self.labels

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_mixup_mixes_features_masks_and_labels_with_one_weight_per_sample():
    base = _Batch()
    inputs, targets = MixupDataset(base, num_classes=6, alpha=0.4, seed=3)[0]
    assert targets.shape == (6, 1, 6) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=-1), 1.0, rtol=1e-6)
    mixed_any = False
    for i in range(6):
        weights = targets[i, 0]
        partners = [j for j in range(6) if j != i and weights[j] > 0]
        assert len(partners) <= 1
        j = partners[0] if partners else i
        weight = weights[i]  # class i is sample i's own: lam (or 1 if paired with itself)
        expected = weight * base.features[i] + (1 - weight) * base.features[j]
        np.testing.assert_allclose(inputs["features"][i], expected, rtol=1e-5)
        np.testing.assert_array_equal(inputs["frame_mask"][i], base.mask[i] | base.mask[j])
        mixed_any |= 0.0 < weight < 1.0
    assert mixed_any
    again = MixupDataset(_Batch(), num_classes=6, alpha=0.4, seed=3)[0]
    np.testing.assert_array_equal(again[1], targets)  # seeded


def test_mixup_off_passes_samples_through_with_one_hot_labels():
    base = _Batch()
    dataset = MixupDataset(base, num_classes=6, alpha=0.0)
    inputs, targets = dataset[0]
    np.testing.assert_array_equal(inputs["features"], base.features)
    np.testing.assert_array_equal(targets[:, 0], np.eye(6, dtype=np.float32))
    dataset.on_epoch_end()
    assert base.epochs_ended == 1 and len(dataset) == 1
    with pytest.raises(ValueError, match="alpha=-1"):
        MixupDataset(base, num_classes=6, alpha=-1)
