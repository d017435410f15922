"""Features of videos streamed in pieces through a network, in batches across videos.

The extraction stage's loop (`training.extract_features`): pieces of uint8 crops arrive
from the reading workers (`data.extraction_feed.read_crops` mapped by
`runtime.process_feed.ordered_map`); batches of `batch_size` rows are assembled and
copied to the device in threads while another batch is predicted, and on JAX each batch
is dispatched without waiting for the one before it:

    for video_id, features, error in extract_streamed_features(extractor, pieces, 64):
        ...  # features: (num_images, dim) float32, or error: the reason the video failed

Any Keras model of the pieces' images works: this module knows nothing of the networks.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import keras
import numpy as np

from temporal_attention.runtime.devices import gpu_visible, to_device


def _predict_batch(extractor: keras.Model, batch: np.ndarray) -> np.ndarray:
    """`extractor` on one batch, float32; under a `keras.distribution` (e.g. DataParallel)
    the batch is first split across its devices along the batch axis."""
    distribution = keras.distribution.distribution()
    if distribution is not None:
        layout = distribution.get_data_layout(batch.shape)
        batch = keras.distribution.distribute_tensor(batch, layout)
    output = extractor.predict_on_batch(batch)  # (batch_size, dim)
    return np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32)


# Threads copying a batch's rows into one array, and that to the device, while another
# batch is predicted: 4 on a GPU, with 5 batches in flight (why: docs/speed.md). Without
# a GPU the device copy is host memory too, and each batch in flight holds two copies:
# 1 thread and 1 batch in flight.
ASSEMBLE_THREADS = 4


def _assemble(parts: list[np.ndarray], padding: int) -> np.ndarray:
    """One batch of `parts` `(n, H, W, channels)`, its last row repeated `padding` times."""
    batch = np.concatenate(parts)  # (rows, H, W, channels)
    if padding:
        batch = np.concatenate([batch, np.repeat(batch[-1:], padding, 0)])
    return batch


def _assemble_on_device(parts: list[np.ndarray], padding: int):
    """`_assemble`'s batch, copied to the device (`to_device`)."""
    return to_device(_assemble(parts, padding))


class _DispatchedPredictor:
    """`extractor`'s inference as one jitted function of its variables and a batch
    (JAX backend), returned without waiting for the device: batch `i + 1` is queued on
    the device while batch `i` computes, where `predict_on_batch` waits for each result
    and then writes every variable back (its state sync), leaving the GPU idle between
    batches (profiled: docs/speed.md). The same layers and dtype policies."""

    def __init__(self, extractor: keras.Model):
        import jax

        self.trainable = [variable.value for variable in extractor.trainable_variables]
        self.non_trainable = [variable.value for variable in extractor.non_trainable_variables]

        def infer(trainable, non_trainable, batch):
            outputs, _ = extractor.stateless_call(trainable, non_trainable, batch, training=False)
            return outputs  # (batch, dim)

        self.function = jax.jit(infer)

    def __call__(self, batch):
        return self.function(self.trainable, self.non_trainable, batch)


def _predict_assembled(predict: Callable, assembled: Future):
    """`predict` of the batch `assembled` gives (a future of `_assemble_on_device`)."""
    return predict(assembled.result())


def _as_features(output) -> np.ndarray:
    """A batch's output on the host, float32 (waits for the device where it computes)."""
    return np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32)


@dataclass
class _PendingVideo:
    """A video whose features are being gathered, batch by batch."""

    video_id: str
    num_images: int = 0  # images received so far
    last_received: bool = False  # its last piece has arrived
    features: list = field(default_factory=list)  # (n, dim) float32 pieces, in order
    num_features: int = 0


def extract_streamed_features(
    extractor: keras.Model, pieces: Iterable[dict], batch_size: int = 64
) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Features of videos given as consecutive pieces of images, batched across videos.

    Each batch has `batch_size` rows taken in order from the pieces, whichever videos
    they belong to (only the very last batch is padded, by repeating its last row): one
    shape, one compiled graph, and no padding at the end of every video. The features of
    one image do not depend on the other rows of its batch, so a video's features are
    those of `models.feature_extraction.extract_video_features` over its images alone
    (tested on the CPU). Without a `keras.distribution`, each batch is assembled (its rows copied
    into one array, and that to the device) in worker threads and predicted in another
    while the next is read, so the copies, the device's work and the reading overlap;
    on JAX a batch is dispatched without waiting for the one before it. The features
    are the same.

    Args:
        extractor: A model of the pieces' images (e.g.
            `models.feature_extraction.uint8_extractor`'s).
        pieces: Dicts `{"video_id", "images", "last", "error"}` (`data.extraction_feed
            .read_crops`), a video's pieces consecutive, its last with `last` true;
            `error` (a string, `images` None) fails the video.

    Yields:
        `(video_id, features (num_images, dim) float32, None)` once a video's features
        are all computed, or `(video_id, None, error)` for a video that failed (its
        rows are dropped; an error in a batch fails each video with rows in it). In
        the order in which the videos complete.
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
    pending: dict[str, _PendingVideo] = {}  # by video_id, in arrival order
    failed: set[str] = set()
    rows: list[tuple[str, np.ndarray]] = []  # (video_id, images) waiting for a batch
    num_rows = 0
    # Batches in flight, oldest first: ((video_id, rows) taken, future of the features).
    # Without a keras.distribution batches are assembled and copied to the device in
    # ASSEMBLE_THREADS threads on a GPU (numpy's copies and the transfer release the GIL;
    # the pieces' shared memory is freed there) and predicted in order in another,
    # ASSEMBLE_THREADS + 1 in flight (1 and 1 without a GPU), while the next are read
    # here; under a distribution (thread-local in Keras) each is assembled and predicted
    # here.
    in_flight: collections.deque = collections.deque()
    threaded = keras.distribution.distribution() is None
    on_gpu = gpu_visible()
    assemble_threads, in_flight_limit = (
        (ASSEMBLE_THREADS, ASSEMBLE_THREADS + 1) if on_gpu else (1, 1)
    )
    assembler = ThreadPoolExecutor(assemble_threads, "assemble") if threaded else None
    predictor = ThreadPoolExecutor(1, "predict") if threaded else None
    if threaded and keras.backend.backend() == "jax":
        predict = _DispatchedPredictor(extractor)  # results fetched in `settle`
    else:
        predict = functools.partial(_predict_batch, extractor)

    def run_batch(final: bool):
        nonlocal rows, num_rows
        taken, taken_rows, remaining = [], 0, []
        for video_id, images in rows:
            room = batch_size - taken_rows
            if room > 0:
                taken.append((video_id, images[:room]))
                taken_rows += len(images[:room])
                if len(images) > room:
                    remaining.append((video_id, images[room:]))
            else:
                remaining.append((video_id, images))
        rows, num_rows = remaining, num_rows - taken_rows
        # Only the counts stay here: the pieces go to the assembler, which frees them.
        counts = [(video_id, len(images)) for video_id, images in taken]
        parts, padding = [images for _, images in taken], batch_size - taken_rows if final else 0
        del taken
        if predictor is None:
            in_flight.append((counts, _predict_batch(extractor, _assemble(parts, padding))))
        else:
            assembled = assembler.submit(_assemble_on_device, parts, padding)
            in_flight.append((counts, predictor.submit(_predict_assembled, predict, assembled)))
        del parts
        yield from settle(limit=0 if predictor is None else in_flight_limit)

    def settle(limit: int):  # the oldest batches' features, until `limit` are in flight
        while len(in_flight) > limit:
            taken, result = in_flight.popleft()
            try:
                features = _as_features(result.result() if predictor is not None else result)
            except Exception as error:  # noqa: BLE001 - each video of the batch fails
                message = f"{type(error).__name__}: {error}"
                for video_id in dict.fromkeys(video_id for video_id, _ in taken):
                    yield from fail(video_id, message)
                continue
            start = 0
            for video_id, count in taken:
                video = pending.get(video_id)
                if video is not None:
                    video.features.append(features[start : start + count])
                    video.num_features += count
                start += count
            yield from finished()

    def fail(video_id: str, message: str):
        nonlocal rows, num_rows
        if video_id in failed:
            return
        failed.add(video_id)
        pending.pop(video_id, None)
        num_rows -= sum(len(images) for other, images in rows if other == video_id)
        rows = [(other, images) for other, images in rows if other != video_id]
        yield video_id, None, message

    def finished():
        for video_id, video in list(pending.items()):
            if video.last_received and video.num_features == video.num_images:
                del pending[video_id]
                yield video_id, np.concatenate(video.features), None

    try:
        for piece in pieces:
            video_id = piece["video_id"]
            if video_id in failed:
                continue
            if piece.get("error"):
                yield from fail(video_id, piece["error"])
                continue
            images = np.asarray(piece["images"])  # (n, H, W, channels)
            video = pending.setdefault(video_id, _PendingVideo(video_id))
            video.num_images += len(images)
            video.last_received = bool(piece["last"])
            if len(images):
                rows.append((video_id, images))
                num_rows += len(images)
            if video.last_received and video.num_images == 0:
                yield from fail(video_id, "ValueError: no images")
                continue
            while num_rows >= batch_size:
                yield from run_batch(final=False)
        while num_rows > 0:
            yield from run_batch(final=True)
        yield from settle(limit=0)
        for video_id in list(pending):  # pieces ended before a video's last one
            yield from fail(video_id, "ValueError: its last images never came")
    finally:
        if predictor is not None:  # a waiting prediction of a cancelled assembly raises
            assembler.shutdown(wait=True, cancel_futures=True)
            predictor.shutdown(wait=True, cancel_futures=True)
