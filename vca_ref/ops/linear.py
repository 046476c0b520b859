"""Linear layer ``y = x W^T + b`` (PyTorch layout: W is (out, in)).

Shapes:  x (..., Din)   W (Dout, Din)   b (Dout,) or None   y (..., Dout)

Backward (dout given):
    dx = dout W             dW = sum_rows dout^T x       db = sum_rows dout
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.fast import overridable


class LinearCache(NamedTuple):
    x: object       # (..., Din)  input, needed for dW
    w: object       # (Dout, Din) weight, needed for dx
    has_bias: bool


@overridable
def linear_forward(x, w, b=None):
    """``y = x @ w.T + b``.  x (..., Din), w (Dout, Din), b (Dout,) -> y (..., Dout)."""
    y = x @ w.T                                   # (..., Dout)
    if b is not None:
        y = y + b                                 # (..., Dout)
    return y, LinearCache(x=x, w=w, has_bias=b is not None)


@overridable
def linear_backward(dout, cache: LinearCache):
    """Return ``(dx, dw, db)``; ``db`` is None when the forward had no bias."""
    x, w = cache.x, cache.w
    Dout, Din = w.shape
    # y = x @ w.T + b
    dx = dout @ w                                                 # (..., Din)
    dw = dout.reshape(-1, Dout).T @ x.reshape(-1, Din)            # (Dout, Din) summed over rows
    db = dout.reshape(-1, Dout).sum(axis=0) if cache.has_bias else None   # (Dout,)
    return dx, dw, db
