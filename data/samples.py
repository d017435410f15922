"""30-frame samples of per-frame features (paper section 3.2) and a Keras `PyDataset`.

A video's features are cut into consecutive samples of `num_frames` frames, starting
every `stride` frames (default 30: no overlap). The last partial sample and videos
shorter than `num_frames` are padded by repeating the last frame; the mask is `False`
on padding, so the attention layer gives padded frames zero weight.

    samples, mask = make_samples(features)             # (samples, 30, dim), (samples, 30)
    dataset = SampleDataset(store, [(clip.video_id, clip.label) for clip in split.train],
                            batch_size=32, shuffle=True, seed=0)
    model.fit(dataset, epochs=...)   # model from build_attention_model(frame_mask_input=True)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import keras
import numpy as np

from temporal_attention.data.feature_store import FeatureStore

NUM_FRAMES = 30  # frames per sample (paper: 30)


def _check_sampling(num_frames: int, stride: int) -> None:
    if num_frames < 1:
        raise ValueError(f"Expected num_frames >= 1. Received: num_frames={num_frames}")
    if stride < 1:
        raise ValueError(f"Expected stride >= 1. Received: stride={stride}")


def sample_starts(video_frames: int, num_frames: int = NUM_FRAMES, stride: int = NUM_FRAMES):
    """First frame of each sample: 0, stride, 2 stride, ... until the video is covered.

    Full windows come first; if frames remain after the last full window, one more
    (padded) sample starts at the next stride position. A video shorter than
    `num_frames` gives one padded sample.
    """
    _check_sampling(num_frames, stride)
    if video_frames < 1:
        raise ValueError(f"Expected a video with >= 1 frame. Received: {video_frames} frames")
    starts = list(range(0, max(video_frames - num_frames, 0) + 1, stride))
    if starts[-1] + num_frames < video_frames:
        starts.append(starts[-1] + stride)
    return np.asarray(starts, dtype=np.int64)


def sample_window(features: np.ndarray, start: int, num_frames: int = NUM_FRAMES):
    """One sample from `start`: `((num_frames, dim), (num_frames,) bool mask)`."""
    positions = np.arange(start, start + num_frames)
    mask = positions < features.shape[0]
    return features[np.minimum(positions, features.shape[0] - 1)], mask


def make_samples(
    features: np.ndarray, num_frames: int = NUM_FRAMES, stride: int = NUM_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
    """Cuts `(frames, dim)` features into `(samples, num_frames, dim)` plus a
    `(samples, num_frames)` bool mask (`False` on frames padded by repetition)."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"Expected features (frames, dim). Received: shape={features.shape}")
    starts = sample_starts(features.shape[0], num_frames, stride)
    windows = [sample_window(features, int(start), num_frames) for start in starts]
    samples = np.stack([window for window, _ in windows])  # (samples, num_frames, dim)
    masks = np.stack([mask for _, mask in windows])  # (samples, num_frames)
    return samples, masks


class SampleDataset(keras.utils.PyDataset):
    """Batches of 30-frame samples read from a `FeatureStore`, for `model.fit`.

    Samples are indexed once from each file's metadata (no features are loaded then);
    a batch reads only the files it needs, and the videos read are kept in memory in the
    store's dtype, the least recently used dropped beyond `cache_bytes`. Shuffled
    samples touch a new video at almost every sample, so a cache holding every video
    (the usual case: 290 UCF101-subset videos of 1280-d float16 features take 140 MB)
    reads each file once instead of once per sample (measured: 250 ms a batch of 32
    from disk against under 10 ms from memory).

    Args:
        store: The `FeatureStore` holding the videos.
        items: `(video_id, label)` pairs, e.g. from a `data.splits.Split`.
        batch_size: Samples per batch (default 32).
        num_frames: Frames per sample (default 30).
        stride: Frames between sample starts (default 30).
        shuffle: Shuffle samples at construction and after every epoch (default `False`).
        seed: Seed of the shuffle.
        cache_bytes: Memory for cached features (default 2 GiB).
        dtype: The features' dtype in a batch (default float32); None: the store's.
            A model with float32 inputs casts them on its device, to the same values,
            so float16 stores then cross to the device in half the bytes and skip
            NumPy's float16 -> float32 conversion (11.5 of the 15.5 ms it took to
            assemble a batch of 32 x 30 x 4096 on a 2-core CPU). `train_attention`
            trains and validates on None.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of `PyDataset`.

    `__getitem__` returns `({"features": (batch, num_frames, dim) float32 (or `dtype`),
    "frame_mask": (batch, num_frames) bool}, labels (batch,) int32)`.

    Attributes:
        sample_video_index: `(samples,)` index into `items` of each sample, in
            unshuffled order (`sample_order` maps batch positions to samples), for
            averaging sample scores per video.
    """

    def __init__(
        self,
        store: FeatureStore,
        items: Sequence[tuple[str, int]],
        batch_size: int = 32,
        num_frames: int = NUM_FRAMES,
        stride: int = NUM_FRAMES,
        shuffle: bool = False,
        seed: int | None = None,
        cache_bytes: int = 2 * 1024**3,
        dtype: str | None = "float32",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_sampling(num_frames, stride)
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
        if not items:
            raise ValueError("Expected at least one (video_id, label). Received: items=[]")
        self.store, self.batch_size = store, batch_size
        self.num_frames, self.stride = num_frames, stride
        self.shuffle, self.cache_bytes, self.dtype = shuffle, cache_bytes, dtype
        self.video_ids = [video_id for video_id, _ in items]
        self.labels = np.asarray([label for _, label in items], dtype=np.int32)
        video_index, starts, dims = [], [], {}
        for index, video_id in enumerate(self.video_ids):
            metadata = store.read_metadata(video_id)
            dims.setdefault(metadata["feature_dim"], []).append(video_id)
            video_starts = sample_starts(metadata["num_frames"], num_frames, stride)
            video_index.extend([index] * len(video_starts))
            starts.extend(video_starts.tolist())
        if len(dims) != 1:
            examples = "; ".join(
                f"{dim} in {len(ids)} file(s), e.g. {store.path_for(ids[0])}"
                for dim, ids in sorted(dims.items(), key=lambda item: -len(item[1]))
            )
            raise ValueError(
                f"Expected one feature_dim across the videos of {store.root}. Received: "
                f"{examples}. Extract the odd files again with the store's network."
            )
        self.feature_dim = next(iter(dims))
        self.sample_video_index = np.asarray(video_index, dtype=np.int64)  # (samples,)
        self.sample_starts = np.asarray(starts, dtype=np.int64)  # (samples,)
        self._rng = np.random.default_rng(seed)
        self.sample_order = np.arange(len(self.sample_starts))
        if shuffle:
            self.sample_order = self._rng.permutation(len(self.sample_starts))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cached_bytes = 0

    @property
    def num_samples(self) -> int:
        return len(self.sample_starts)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def _features(self, video_id: str) -> np.ndarray:
        if video_id in self._cache:
            self._cache.move_to_end(video_id)
            return self._cache[video_id]
        features, _ = self.store.read(video_id, as_stored=True)  # (frames, dim), verified
        self._cache[video_id] = features
        self._cached_bytes += features.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return features

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} out of range [0, {len(self)})")
        chosen = self.sample_order[index * self.batch_size : (index + 1) * self.batch_size]
        windows, masks = [], []
        for sample in chosen:
            video_id = self.video_ids[self.sample_video_index[sample]]
            window, mask = sample_window(
                self._features(video_id), int(self.sample_starts[sample]), self.num_frames
            )
            windows.append(window)
            masks.append(mask)
        features = np.stack(windows)  # (batch, num_frames, dim), the store's dtype
        inputs = {
            "features": features if self.dtype is None else features.astype(self.dtype),
            "frame_mask": np.stack(masks),  # (batch, num_frames) bool
        }
        return inputs, self.labels[self.sample_video_index[chosen]]  # (batch,) int32

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.sample_order = self._rng.permutation(self.num_samples)


class MixupDataset(keras.utils.PyDataset):
    """Mixup (Zhang et al. 2018) of another dataset's training batches: an extension.

    Each sample of a batch is mixed with another sample of the same batch (a seeded
    permutation): features `lam * a + (1 - lam) * b` frame by frame, the frame masks
    joined (a frame is real where either sample's is), and the label the class
    distribution `lam * onehot(a) + (1 - lam) * onehot(b)`, with `lam ~ Beta(alpha,
    alpha)` drawn per sample. Labels come as `(batch, 1, num_classes)` float32, which
    `models.recognizer.StepwiseCrossEntropy` repeats at every step. The paper trains on
    the samples as they are; `alpha` 0 passes them through with one-hot labels.

    Args:
        base: A dataset of `({"features", "frame_mask"}, labels (batch,))` batches, e.g.
            a shuffled `SampleDataset`; its `on_epoch_end` is called on each epoch's end.
        num_classes: The number of classes.
        alpha: Of the Beta distribution (>= 0); 0 turns mixing off.
        seed: Seed of the pairings and of `lam`.
    """

    def __init__(self, base, num_classes: int, alpha: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if alpha < 0:
            raise ValueError(f"Expected alpha >= 0. Received: alpha={alpha}")
        if num_classes < 2:
            raise ValueError(f"Expected num_classes >= 2. Received: num_classes={num_classes}")
        self.base, self.num_classes, self.alpha = base, num_classes, float(alpha)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        inputs, labels = self.base[index]
        features, mask = inputs["features"], inputs["frame_mask"]
        targets = np.eye(self.num_classes, dtype=np.float32)[labels]  # (batch, classes)
        if self.alpha > 0:
            weights = self._rng.beta(self.alpha, self.alpha, size=len(labels)).astype(np.float32)
            partner = self._rng.permutation(len(labels))
            mixed = weights[:, None, None] * features.astype(np.float32) + (
                1 - weights[:, None, None]
            ) * features[partner].astype(np.float32)
            features = mixed.astype(features.dtype)  # the batch's dtype, as the base gave it
            mask = mask | mask[partner]
            targets = weights[:, None] * targets + (1 - weights[:, None]) * targets[partner]
        return {"features": features, "frame_mask": mask}, targets[:, None, :]

    def on_epoch_end(self) -> None:
        self.base.on_epoch_end()
