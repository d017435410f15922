"""A folder of per-frame features, one `.npz` per video, written atomically.

    store = FeatureStore("runs/features/rgb")            # float16 on disk by default
    store.write("Punch/v_Punch_g01_c01", features, {"backbone": "vgg16", "stream": "rgb",
                "weights": "imagenet", "frame_indices": list(range(120)), "layer": "fc1"})
    features, metadata = store.read("Punch/v_Punch_g01_c01")  # (frames, dim) float32

Each file holds `features` `(frames, dim)` and JSON metadata (backbone, stream, weights
identity, frame indices, ... plus `num_frames`, `feature_dim`, `dtype` added by the
store). Writes go to a temporary file renamed into place, so a killed extractor never
leaves a partial file under a final name; `is_complete` lets a re-run skip finished
videos; `read` verifies shape, dtype and finiteness. Shard a dataset over several
processes or machines with `runtime.jobs.shard_items(items, "i/n")`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from temporal_attention.data.npz_files import read_npz, read_npz_metadata, write_npz
from temporal_attention.runtime.atomic_files import is_temp_file

STORE_DTYPES = ("float16", "float32")
# zlib level of the feature files. Level 1 deflates ReLU features (float16, about half
# zeros) 4.7x faster than zlib's default 6 (61 against 13 MB/s on one core of this
# project's CPU) into files 5 % larger (0.62 against 0.59 of the raw bytes); reading
# is as fast. At 6, four writer threads held extraction to 3,164 images/s on one H200
# (`benchmarks.pipeline_benchmark --profile-ms`, docs/speed.md).
COMPRESS_LEVEL = 1


class FeatureStoreError(ValueError):
    """A stored feature file is missing, unreadable or invalid; the message names it."""


def _check_video_id(video_id: str) -> str:
    parts = Path(video_id).parts
    if not video_id or Path(video_id).is_absolute() or ".." in parts:
        raise ValueError(f"Expected a relative video_id like 'Class/name'. Received: {video_id!r}")
    return video_id


class FeatureStore:
    """Per-frame features of many videos under `root`, one `<video_id>.npz` each.

    Args:
        root: The store's folder (created on first write).
        dtype: Storage dtype, "float16" (default: half the disk, ~1e-3 relative error
            on FC6 features) or "float32". `read` always returns float32.
    """

    def __init__(self, root: str | os.PathLike, dtype: str = "float16"):
        if str(dtype) not in STORE_DTYPES:
            raise ValueError(f"Expected dtype in {STORE_DTYPES}. Received: dtype={dtype!r}")
        self.root = Path(root)
        self.dtype = str(dtype)

    def path_for(self, video_id: str) -> Path:
        """`<root>/<video_id>.npz`."""
        return self.root / f"{_check_video_id(video_id)}.npz"

    def write(self, video_id: str, features: np.ndarray, metadata: dict) -> Path:
        """Stores `features` `(frames, dim)` with `metadata` (JSON-serialisable), atomically.

        Raises:
            ValueError: features not 2-D with at least one frame, not finite, or
                `metadata["frame_indices"]` of another length than `frames`.
        """
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] < 1:
            raise ValueError(
                f"Expected features (frames, dim) with frames, dim >= 1 for {video_id!r}. "
                f"Received: shape={features.shape}"
            )
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            stored = features.astype(self.dtype)
        if not np.all(np.isfinite(stored)):
            raise ValueError(
                f"Features of {video_id!r} hold NaN or inf (after casting to {self.dtype}); "
                "not written."
            )
        indices = metadata.get("frame_indices")
        if indices is not None and len(indices) != features.shape[0]:
            raise ValueError(
                f"Expected len(frame_indices) == frames == {features.shape[0]} for {video_id!r}. "
                f"Received: {len(indices)} frame indices"
            )
        full_metadata = {
            **metadata,
            "video_id": video_id,
            "num_frames": int(features.shape[0]),
            "feature_dim": int(features.shape[1]),
            "dtype": self.dtype,
        }
        return write_npz(
            self.path_for(video_id),
            {"features": stored},
            full_metadata,
            compress_level=COMPRESS_LEVEL,
        )

    def _error(self, path: Path, problem: str) -> FeatureStoreError:
        return FeatureStoreError(
            f"{path}: {problem}. Delete this file and extract its features again."
        )

    def read_metadata(self, video_id: str) -> dict:
        """The metadata of one video, without reading its features."""
        path = self.path_for(video_id)
        if not path.is_file():
            raise FeatureStoreError(f"{path}: no features stored for {video_id!r}. Extract them.")
        try:
            metadata = read_npz_metadata(path)
        except (OSError, ValueError) as error:
            raise self._error(path, f"unreadable ({error})") from error
        if not metadata or "num_frames" not in metadata or "feature_dim" not in metadata:
            raise self._error(path, "no feature metadata")
        return metadata

    def read(self, video_id: str, as_stored: bool = False) -> tuple[np.ndarray, dict]:
        """`(features (frames, dim) float32, metadata)`, verified; with `as_stored`, the
        features keep the store's dtype (float16 by default: half the memory).

        Raises:
            FeatureStoreError: the file is missing, unreadable, or its features have a
                wrong shape or dtype (against its metadata) or hold NaN/inf.
        """
        path = self.path_for(video_id)
        if not path.is_file():
            raise FeatureStoreError(f"{path}: no features stored for {video_id!r}. Extract them.")
        try:
            arrays, metadata = read_npz(path)
        except (OSError, ValueError) as error:
            raise self._error(path, f"unreadable ({error})") from error
        features = arrays.get("features")
        if features is None or not metadata:
            raise self._error(path, "no 'features' array or no metadata")
        expected_shape = (metadata.get("num_frames"), metadata.get("feature_dim"))
        if features.ndim != 2 or features.shape != expected_shape:
            raise self._error(
                path, f"features have shape {features.shape}, metadata says {expected_shape}"
            )
        if str(features.dtype) != metadata.get("dtype") or str(features.dtype) not in STORE_DTYPES:
            raise self._error(
                path, f"features have dtype {features.dtype}, metadata says {metadata.get('dtype')}"
            )
        if not np.all(np.isfinite(features)):
            raise self._error(path, "features hold NaN or inf")
        return (features if as_stored else features.astype(np.float32)), metadata

    def is_complete(
        self, video_id: str, metadata: dict | None = None, defaults: dict | None = None
    ) -> bool:
        """Whether `video_id` is stored, readable, valid, and (if `metadata` is given)
        its stored metadata has the same value for every given key. `defaults`: the
        values of keys that files written before those keys were recorded lack (e.g.
        `{"image_source": "video"}`); a key absent from both does not match."""
        try:
            _, stored = self.read(video_id)
        except FeatureStoreError:
            return False
        stored = {**(defaults or {}), **stored}
        wanted = json.loads(json.dumps(metadata or {}))  # tuples compare as stored lists
        return all(stored.get(key) == value for key, value in wanted.items())

    def video_ids(self) -> list[str]:
        """Sorted ids of the stored videos (temporary files of killed writers ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).with_suffix("").as_posix()
            for path in self.root.rglob("*.npz")
            if not is_temp_file(path)
        )

    def __repr__(self) -> str:
        return f"FeatureStore(root={str(self.root)!r}, dtype={self.dtype!r})"
