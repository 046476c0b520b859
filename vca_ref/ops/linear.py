"""Linear layer ``y = x W^T + b`` (PyTorch layout: W is (out, in)).

Shapes:  x (..., Din)   W (Dout, Din)   b (Dout,) or None   y (..., Dout)

Backward (dy given):
    dx = dy W             dW = sum_rows dy^T x       db = sum_rows dy
"""
from __future__ import annotations

from typing import NamedTuple


class LinearCache(NamedTuple):
    x: object       # (..., Din)  input, needed for dW
    w: object       # (Dout, Din) weight, needed for dx
    has_bias: bool


def linear_forward(x, w, b=None):
    """``y = x @ w.T + b``.  x (..., Din), w (Dout, Din), b (Dout,) -> y (..., Dout)."""
    y = x @ w.T                                   # (..., Dout)
    if b is not None:
        y += b                                    # in place: y is a fresh array
    return y, LinearCache(x=x, w=w, has_bias=b is not None)


def linear_backward(dy, cache: LinearCache):
    """Return ``(dx, dw, db)``; ``db`` is None when the forward had no bias."""
    x, w = cache.x, cache.w
    Din, Dout = w.shape[1], w.shape[0]
    # y = x @ w.T
    dx = dy @ w                                   # (..., Din)
    dw = dy.reshape(-1, Dout).T @ x.reshape(-1, Din)  # (Dout, Din)
    db = dy.reshape(-1, Dout).sum(axis=0) if cache.has_bias else None  # (Dout,)
    return dx, dw, db
