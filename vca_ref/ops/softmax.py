"""Row softmax over the last axis, numerically stable.

Shapes: x (..., K) -> y (..., K), every row sums to 1.

Forward:   y = exp(x - max(x)) / sum(exp(x - max(x)))
Backward:  dx = y * (dy - sum(dy * y))          (row-wise; the "softmax backward row update")
"""
from __future__ import annotations

from typing import NamedTuple

from .. import kernels
from ..backend import get_array_module
from ..kernels import cuda as kcuda


class SoftmaxCache(NamedTuple):
    y: object       # (..., K) the probabilities


def softmax_forward(x):
    """Softmax of x (..., K) along the last axis."""
    xp = get_array_module(x)
    y = x - x.max(axis=-1, keepdims=True)          # (..., K) shift for stability
    xp.exp(y, out=y)                               # in place: y is our own temporary
    y *= 1.0 / y.sum(axis=-1, keepdims=True)       # one reciprocal per row, then a multiply pass
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
