"""When a twin applies: predicates called with the reference function's own arguments.

A CPU twin takes NumPy float arrays (on CuPy the reference lines, or a kernel, run instead); a
CUDA kernel twin takes CuPy arrays of one float dtype while the kernels are on
(:func:`vca_ref.fast.kernels.applies`).
"""
from __future__ import annotations

import numpy as np


def numpy_floats(*arrays) -> bool:
    """True when every array is a NumPy array and all share ONE floating dtype (``None`` entries,
    an absent optional parameter, are skipped).  The CPU twins compute in place in arrays of that
    dtype, so a mix (which NumPy would promote) takes the reference."""
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or dtype not in (None, a.dtype):
            return False
        dtype = a.dtype
    return dtype is not None


def array_operands(lam) -> tuple:
    """``(lam,)`` when lam is an array (its dtype then counts, as in NumPy), else ``()``."""
    return (lam,) if hasattr(lam, "dtype") else ()
