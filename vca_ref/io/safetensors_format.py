"""safetensors files through the ``safetensors`` library's NumPy API, with our checks on top.

Layout of a file (https://github.com/huggingface/safetensors, "Format"):

    bytes [0, 8)          N, the header length: unsigned 64-bit little-endian
    bytes [8, 8 + N)      header: a UTF-8 JSON object
                            {"__metadata__": {str: str, ...},               (optional)
                             "<name>": {"dtype": "F32", "shape": [2, 3],
                                        "data_offsets": [begin, end]}, ...}
    bytes [8 + N, EOF)    each tensor's raw little-endian C-order bytes

The library (``safetensors.numpy.save``, ``safe_open(path, framework="np")``) encodes and
parses that layout and checks it: header bounds, JSON, dtypes, shapes, offsets tiling the
buffer, metadata a str -> str map.  This module adds what a training program needs around it:

- **atomic writes** (:func:`vca_ref.io.atomic.atomic_write`): a stop mid-write never leaves a
  torn file under the real name;
- **inputs checked before the file opens**: names, str -> str metadata, dtypes NumPy and
  safetensors share;
- **one clear error naming the file**: a folder, a truncated or corrupt file, a dtype NumPy
  cannot hold (BF16, F8, …), and files that are recognisably something else (a PyTorch ``.pt``
  zip or pickle, ``.npy``, HDF5) say so (and nothing is ever unpickled);
- **owned, writable, native-endian arrays** on load.
"""
from __future__ import annotations

import os

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from vca_ref.backend import to_numpy
from vca_ref.io.atomic import atomic_write

__all__ = ["save_file", "load_file", "load_file_with_metadata", "read_metadata", "atomic_write",
           "METADATA_KEY", "SUPPORTED_DTYPES"]

METADATA_KEY = "__metadata__"
SUPPORTED_DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "float16", "uint32", "int32",
                    "float32", "uint64", "int64", "float64")

_FOREIGN_MAGIC = [  # (prefix, what it is)
    (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt/.pth checkpoint, i.e. pickle)"),
    (b"\x80", "a Python pickle"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF", "an HDF5 file"),
]


# --------------------------------------------------------------------------- save
def _check_inputs(tensors, metadata) -> dict[str, np.ndarray]:
    """Validate names, metadata and dtypes; return contiguous little-endian NumPy arrays."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict name -> array, got {type(tensors).__name__}")
    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError("metadata must be a dict of str -> str (encode other values as JSON)")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == METADATA_KEY:
            raise ValueError(f"invalid tensor name {name!r}: names are non-empty strings, "
                             f"not {METADATA_KEY!r}")
        a = np.asarray(to_numpy(value))
        if a.dtype.newbyteorder("=").name not in SUPPORTED_DTYPES:
            raise TypeError(f"tensor {name!r} has dtype {a.dtype}; safetensors via NumPy supports "
                            f"{', '.join(SUPPORTED_DTYPES)}")
        arrays[name] = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")   # keeps 0-d
    return arrays


def save_file(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """Write ``{name: array}`` (NumPy or CuPy) and optional str -> str metadata, atomically.

    Every input is checked before the file is opened, so a rejected call changes nothing on disk.
    """
    arrays = _check_inputs(tensors, metadata)
    atomic_write(path, safetensors.numpy.save(arrays, metadata=metadata))


# --------------------------------------------------------------------------- load
def _foreign_hint(path: str) -> str:
    """What the file looks like when it is not safetensors (only asked once parsing failed)."""
    with open(path, "rb") as f:
        prefix = f.read(8)
    for magic, what in _FOREIGN_MAGIC:
        if prefix.startswith(magic):
            return (f"; it looks like {what}, and vca_ref never unpickles: convert it with "
                    "safetensors.torch.save_file")
    size = os.path.getsize(path)
    if size >= 8:
        n = int.from_bytes(prefix, "little")
        if 8 + n <= size:
            return f" (the file is {size} bytes; truncated, extended or corrupt?)"
    return f" (the file is {size} bytes; truncated or not a safetensors file?)"


def _open(path: str):
    """``safe_open(path, framework="np")`` with errors that name the file and the problem."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, expected a safetensors file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return safe_open(path, framework="np")
    except SafetensorError as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e}){_foreign_hint(path)}") from None


def _tensor(path: str, f, name: str) -> np.ndarray:
    try:
        a = f.get_tensor(name)
    except TypeError:          # NumPy has no such dtype: BF16, the F8/F6/F4 kinds
        raise ValueError(f"{path}: tensor {name!r} has a dtype NumPy cannot represent (BF16, F8, …); "
                         "convert it to F32 before saving") from None
    return np.array(a, dtype=a.dtype.newbyteorder("="), copy=True)              # owned, writable


def load_file_with_metadata(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Return ``({name: writable native-endian array}, metadata)``; ``ValueError`` for a bad file."""
    with _open(path) as f:
        metadata = f.metadata() or {}
        return {k: _tensor(path, f, k) for k in f.keys()}, dict(metadata)


def load_file(path: str) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` (NumPy, writable, native byte order)."""
    return load_file_with_metadata(path)[0]


def read_metadata(path: str) -> dict[str, str]:
    """Only the ``__metadata__`` map (the header is parsed and checked, no tensor is read)."""
    with _open(path) as f:
        return dict(f.metadata() or {})
