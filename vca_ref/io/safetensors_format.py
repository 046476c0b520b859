"""The safetensors file format, read and written with NumPy alone (no pickle, no torch).

Layout of a file (https://github.com/huggingface/safetensors, "Format"):

    bytes [0, 8)          N, the header length: unsigned 64-bit little-endian
    bytes [8, 8 + N)      header: a UTF-8 JSON object, right-padded with spaces
                            {"__metadata__": {str: str, ...},               (optional)
                             "<name>": {"dtype": "F32", "shape": [2, 3],
                                        "data_offsets": [begin, end]}, ...}
    bytes [8 + N, EOF)    the data buffer: each tensor's raw little-endian C-order bytes at
                          [begin, end) relative to the buffer start

The loader checks everything ``safetensors`` itself checks, and raises ``ValueError`` naming the
file and the problem: N within bounds (≤ 100 MB and ≤ file size − 8), JSON object with unique
keys, known dtypes, non-negative integer shapes, ``end − begin = prod(shape) · itemsize``, the
tensors tiling the buffer exactly from 0 to its end (no gap, no overlap, no trailing bytes), and
``__metadata__`` a str -> str map.  Files that are recognisably something else (a PyTorch ``.pt``
zip or pickle, ``.npy``, HDF5) say so.

Writer: tensors stored in order of decreasing itemsize, then name (as ``safetensors`` does, so
every tensor stays aligned once the header is padded to a multiple of 8); the file is written
atomically (see :func:`atomic_write`).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Callable, NamedTuple

import numpy as np

from vca_ref.backend import to_numpy

MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"

# safetensors dtype name -> little-endian NumPy dtype
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
# valid in safetensors, but NumPy has no such type
UNSUPPORTED_DTYPES = ("BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64")
_NAME_OF = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

_FOREIGN_MAGIC = [  # (prefix, what it is)
    (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt/.pth checkpoint, i.e. pickle)"),
    (b"\x80", "a Python pickle"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF", "an HDF5 file"),
]


class TensorInfo(NamedTuple):
    dtype: str                 # safetensors dtype name, e.g. "F32"
    shape: tuple[int, ...]
    begin: int                 # byte offsets in the data buffer
    end: int


# --------------------------------------------------------------------------- atomic write
def atomic_write(path: str, write: Callable) -> None:
    """Write a file so that readers see either the old file or the complete new one.

    ``write(f)`` fills a temporary file in the SAME directory (so the rename cannot cross file
    systems); it is flushed and fsync'ed, then ``os.replace`` moves it over ``path`` atomically,
    and the directory is fsync'ed (best effort).  On any error the temporary file is removed, the
    old file (if any) is left untouched, and the error propagates.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)          # mkstemp creates 0600
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:                                          # persist the rename itself
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some file systems refuse directory fsync
        pass


# --------------------------------------------------------------------------- save
def _dtype_name(name: str, a: np.ndarray) -> str:
    key = (a.dtype.kind, a.dtype.itemsize)
    if key not in _NAME_OF:
        raise TypeError(f"tensor {name!r} has dtype {a.dtype}; safetensors via NumPy supports "
                        f"bool, uint8/16/32/64, int8/16/32/64, float16/32/64")
    return _NAME_OF[key]


def serialize_header(tensors: dict, metadata: dict | None = None) -> tuple[bytes, list]:
    """Validate inputs and build ``(8-byte length + padded header, [(name, le_array)] in file order)``."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict name -> array, got {type(tensors).__name__}")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            raise TypeError("metadata must be a dict of str -> str (encode other values as JSON)")
    arrays = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == METADATA_KEY:
            raise ValueError(f"invalid tensor name {name!r}: names are non-empty strings, "
                             f"not {METADATA_KEY!r}")
        a = np.asarray(to_numpy(value))
        dname = _dtype_name(name, a)
        arrays.append((name, dname, a.astype(DTYPES[dname], copy=False)))   # little-endian
    arrays.sort(key=lambda t: (-t[2].dtype.itemsize, t[0]))
    header: dict = {} if metadata is None else {METADATA_KEY: dict(metadata)}
    offset = 0
    for name, dname, a in arrays:
        header[name] = {"dtype": dname, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)                                        # pad to a multiple of 8
    return len(text).to_bytes(8, "little") + text, [(n, a) for n, _, a in arrays]


def save_file(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """Write ``{name: array}`` (NumPy or CuPy) and optional str -> str metadata, atomically."""
    head, arrays = serialize_header(tensors, metadata)   # every check happens before the file opens

    def write(f):
        f.write(head)
        for _, a in arrays:
            f.write(a.tobytes(order="C"))

    atomic_write(path, write)


# --------------------------------------------------------------------------- load
def _bad(path: str, msg: str) -> ValueError:
    return ValueError(f"{path}: not a valid safetensors file: {msg}")


def _foreign_hint(prefix: bytes, default: str = " (foreign or corrupt file)") -> str:
    """A note saying what the file looks like, for files that are not safetensors at all."""
    for magic, what in _FOREIGN_MAGIC:
        if prefix.startswith(magic):
            return (f"; it looks like {what}, and vca_ref never unpickles: convert it with "
                    "safetensors.torch.save_file")
    return default


def _unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r} in the JSON header")
        out[k] = v
    return out


def parse_header(path: str, prefix: bytes, file_size: int) -> tuple[dict[str, TensorInfo], dict, int]:
    """Validate the header and return ``(infos, metadata, data_start)``.

    ``prefix`` must hold at least the first ``8 + N`` bytes of the file (or the whole file).
    """
    if file_size < 8:
        raise _bad(path, f"file is {file_size} bytes, shorter than the 8-byte header length (truncated?)")
    n = int.from_bytes(prefix[:8], "little")
    if n < 2 or n > MAX_HEADER_BYTES:
        raise _bad(path, f"header length {n} is outside [2, {MAX_HEADER_BYTES}]" + _foreign_hint(prefix))
    if 8 + n > file_size:
        raise _bad(path, f"header length {n} runs past the end of the {file_size}-byte file"
                         + _foreign_hint(prefix, " (truncated or foreign file)"))
    raw = prefix[8:8 + n]
    if not raw.startswith(b"{"):
        raise _bad(path, "header does not start with '{'" + _foreign_hint(prefix))
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(path, f"header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    metadata = header.pop(METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise _bad(path, f"{METADATA_KEY} must map strings to strings")
    infos: dict[str, TensorInfo] = {}
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise _bad(path, f"entry {name!r} must have exactly the keys dtype, shape, data_offsets")
        dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dt in UNSUPPORTED_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dt}, which NumPy cannot represent; "
                             f"convert it to F32 before saving")
        if dt not in DTYPES:
            raise _bad(path, f"tensor {name!r} has unknown dtype {dt!r}; expected one of {sorted(DTYPES)}")
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise _bad(path, f"tensor {name!r} has shape {shape!r}; expected a list of non-negative ints")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(type(o) is int for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise _bad(path, f"tensor {name!r} has data_offsets {offs!r}; expected [begin, end], 0 <= begin <= end")
        nbytes = math.prod(shape) * DTYPES[dt].itemsize
        if offs[1] - offs[0] != nbytes:
            raise _bad(path, f"tensor {name!r}: dtype {dt} shape {shape} needs {nbytes} bytes, "
                             f"data_offsets {offs} span {offs[1] - offs[0]}")
        infos[name] = TensorInfo(dt, tuple(shape), offs[0], offs[1])
    data_len = file_size - 8 - n
    cursor = 0
    for name, info in sorted(infos.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin != cursor:
            raise _bad(path, f"tensor {name!r} starts at byte {info.begin}, expected {cursor} "
                             "(tensors must tile the data buffer without gaps or overlaps)")
        cursor = info.end
    if cursor != data_len:
        raise _bad(path, f"the header describes {cursor} data bytes but the file holds {data_len} "
                         + ("(truncated?)" if data_len < cursor else "(trailing bytes)"))
    return infos, metadata, 8 + n


def read_metadata(path: str) -> dict[str, str]:
    """Only the ``__metadata__`` map (reads the header, validates the whole layout)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        first = f.read(8)
        n = int.from_bytes(first, "little") if len(first) == 8 else 0
        prefix = first + f.read(min(n, MAX_HEADER_BYTES))
    return parse_header(path, prefix, size)[1]


def load_file_with_metadata(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Return ``({name: writable native-endian array}, metadata)``; ``ValueError`` for a bad file."""
    with open(path, "rb") as f:
        buf = f.read()
    infos, metadata, start = parse_header(path, buf, len(buf))
    out = {}
    for name, info in infos.items():
        dt = DTYPES[info.dtype]
        flat = np.frombuffer(buf, dtype=dt, count=math.prod(info.shape), offset=start + info.begin)
        out[name] = flat.astype(dt.newbyteorder("="), copy=True).reshape(info.shape)  # owned copy
    return out, metadata


def load_file(path: str) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` (NumPy, writable, native byte order)."""
    return load_file_with_metadata(path)[0]
