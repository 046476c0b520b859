"""Input validation at the module boundary: one clear error naming the problem and the expected value.

The op pairs of :mod:`vca_ref.ops` trust their inputs; the modules of :mod:`vca_ref.nn` and the
models validate what a caller hands them (arrays, upstream gradients, sizes) before any op runs.
"""
from __future__ import annotations

import numpy as np

from vca_ref.backend import check, get_array_module, require_device
from vca_ref.ops.vca_config import is_int


class NonFiniteError(ValueError):
    """An input holds NaN or inf (during training: the run has diverged upstream of this layer)."""


def check_array(x, name: str, ndim: int | None = None, dtype=None, last: int | None = None,
                finite: bool = True, device: str | None = None):
    """Validate an array argument and return it unchanged.

    Raises ``TypeError`` for non-arrays, integer/bool/complex dtypes or a dtype other than
    ``dtype`` or an array on another ``device`` than the model's; ``ValueError`` for a wrong rank
    or a wrong last dimension, and ``NonFiniteError`` (a ``ValueError``) for NaN/inf values.  On a
    CUDA device the finiteness check is a device flag read with the step's one synchronisation
    (:func:`vca_ref.backend.check`), so that error comes at the next read of the loss.
    """
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name} must be a NumPy/CuPy array, got {type(x).__name__}")
    try:
        np.dtype(x.dtype)
    except TypeError:       # e.g. a torch.Tensor: its dtype is not a NumPy dtype
        raise TypeError(f"{name} must be a NumPy/CuPy array, got {type(x).__module__}."
                        f"{type(x).__name__} with dtype {x.dtype} (convert it with .numpy())") from None
    if np.dtype(x.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if device is not None:
        require_device(x, device, name)
    if dtype is not None and np.dtype(x.dtype) != np.dtype(dtype):
        raise TypeError(f"{name} has dtype {x.dtype} but the parameters are {np.dtype(dtype)}; "
                        f"cast the input or call module.to(dtype=...)")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got shape {tuple(x.shape)}")
    if last is not None and x.shape[-1] != last:
        raise ValueError(f"{name} must have last dimension {last}, got shape {tuple(x.shape)}")
    if finite:
        xp = get_array_module(x)
        check(xp.isfinite(x).all(), lambda: NonFiniteError(
            f"{name} contains NaN or inf values ({int((~xp.isfinite(x)).sum())} of {x.size} "
            "entries); expected finite values"))
    return x


def check_dout(dout, out_shape, dtype, owner: str):
    """Validate an upstream gradient against the shape of the last forward's output."""
    if out_shape is None:
        raise RuntimeError(f"{owner}.backward called before forward")
    check_array(dout, "dout", dtype=dtype, finite=False)
    if tuple(dout.shape) != tuple(out_shape):
        raise ValueError(f"{owner}: dout must have the output's shape {tuple(out_shape)}, "
                         f"got {tuple(dout.shape)}")


def check_positive_int(v, name: str) -> int:
    """Return ``int(v)`` for a positive integer, else raise ``ValueError`` naming ``name``."""
    if not is_int(v) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)
