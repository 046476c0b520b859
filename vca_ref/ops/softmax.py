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
    y /= y.sum(axis=-1, keepdims=True)
    return y, SoftmaxCache(y=y)


def softmax_backward(dy, cache: SoftmaxCache):
    """Return ``dx`` (..., K)."""
    y = cache.y
    if kernels.applies(dy, y) and dy.shape == y.shape:   # CUDA row kernel, twin of the line below
        return kcuda.softmax_backward(dy, y)
    # y_i = exp(x_i) / sum_j exp(x_j)  =>  dx_i = y_i (dy_i - sum_j dy_j y_j)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
