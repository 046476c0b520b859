"""Row softmax over the last axis, numerically stable.

Shapes: x (..., K) -> y (..., K), every row sums to 1.

Forward:   y = exp(x - max(x)) / sum(exp(x - max(x)))
Backward:  dx = y * (dout - sum(dout * y))          (row-wise; the "softmax backward row update")
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.fast import overridable


class SoftmaxCache(NamedTuple):
    y: object       # (..., K) the probabilities


@overridable
def softmax_forward(x):
    """Softmax of x (..., K) along the last axis."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(-1, keepdims=True))      # (..., K) shifted for stability
    y = e / e.sum(-1, keepdims=True)              # (..., K)
    return y, SoftmaxCache(y=y)


@overridable
def softmax_backward(dout, cache: SoftmaxCache):
    """Return ``dx`` (..., K)."""
    y = cache.y
    # y_i = exp(x_i) / sum_j exp(x_j)  =>  dx_i = y_i (dout_i - sum_j dout_j y_j)
    dx = y * (dout - (dout * y).sum(-1, keepdims=True))   # (..., K)
    return dx
