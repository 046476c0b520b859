"""Row softmax over the last axis, numerically stable.

Shapes: x (..., K) -> y (..., K), every row sums to 1.

Forward:   y = exp(x - max(x)) / sum(exp(x - max(x)))
Backward:  dx = y * (dy - sum(dy * y))          (row-wise; the "softmax backward row update")
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vca_ref.fast import kernels
from vca_ref.backend import get_array_module
from vca_ref.fast.kernels import cuda as kcuda


class SoftmaxCache(NamedTuple):
    y: object       # (..., K) the probabilities


SHORT_ROW = 64      # rows up to this length take the column-loop maximum (see _row_max)


def _row_max(x):
    """``x.max(axis=-1, keepdims=True)``, fast for short rows too.

    NumPy reduces along the last axis row by row, so short rows are dominated by per-row
    overhead; for K <= SHORT_ROW a loop over the K columns, each one vectorised maximum across
    all rows, is 2-4x faster on the CPU (measured for K = 18 .. 50).
    """
    xp = get_array_module(x)
    K = x.shape[-1]
    if xp is not np or K > SHORT_ROW or K == 0:
        return x.max(axis=-1, keepdims=True)
    m = x[..., 0].copy()                           # (...,)
    for k in range(1, K):
        xp.maximum(m, x[..., k], out=m)
    return m[..., None]                            # (..., 1)


def softmax_forward(x):
    """Softmax of x (..., K) along the last axis."""
    xp = get_array_module(x)
    y = x - _row_max(x)                            # (..., K) shift for stability
    xp.exp(y, out=y)                               # in place: y is our own temporary
    # row sums by einsum (3-5x faster than sum(axis=-1) on short rows), one reciprocal per row,
    # then one multiply pass
    y *= 1.0 / xp.einsum("...k->...", y)[..., None]
    return y, SoftmaxCache(y=y)


def softmax_backward(dy, cache: SoftmaxCache):
    """Return ``dx`` (..., K)."""
    y = cache.y
    if kernels.applies(dy, y) and dy.shape == y.shape:   # CUDA row kernel, twin of the line below
        return kcuda.softmax_backward(dy, y)
    # y_i = exp(x_i) / sum_j exp(x_j)  =>  dx_i = y_i (dy_i - sum_j dy_j y_j)
    xp = get_array_module(dy)
    # the row dot sum_j dy_j y_j by einsum: one pass, no (..., K) product array
    dx = dy - xp.einsum("...k,...k->...", dy, y)[..., None]      # (..., K)
    dx *= y                                        # in place: dx is our own temporary
    return dx
