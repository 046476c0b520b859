"""LayerNorm over the last axis, affine or not.

Shapes:  x (..., D)   w, b (D,) or None   y (..., D)

Forward:
    1. mu   = mean(x)                     2. xc   = x - mu
    3. var  = mean(xc^2)                  4. rstd = 1 / sqrt(var + eps)
    5. xhat = xc * rstd                   6. y    = xhat * w + b

Backward (dout given), with g = dout * w (or dout when not affine):
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    dw = sum_rows dout * xhat        db = sum_rows dout
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.fast import overridable


class LayerNormCache(NamedTuple):
    xhat: object    # (..., D) normalised input
    rstd: object    # (..., 1) reciprocal standard deviation
    w: object       # (D,) or None


@overridable
def layernorm_forward(x, w=None, b=None, eps: float = 1e-5):
    """Normalise the last axis of x (..., D); optional affine ``w``, ``b`` (D,)."""
    xp = get_array_module(x)
    mu = x.mean(-1, keepdims=True)                     # (..., 1)
    xc = x - mu                                        # (..., D)
    var = (xc * xc).mean(-1, keepdims=True)            # (..., 1)
    rstd = 1.0 / xp.sqrt(var + eps)                    # (..., 1)
    xhat = xc * rstd                                   # (..., D)
    y = xhat * w if w is not None else xhat.copy()     # (..., D)
    if b is not None:
        y = y + b                                      # (..., D)
    return y, LayerNormCache(xhat=xhat, rstd=rstd, w=w)


@overridable
def layernorm_backward(dout, cache: LayerNormCache):
    """Return ``(dx, dw, db)`` (``dw``/``db`` None when not affine)."""
    xhat, rstd, w = cache.xhat, cache.rstd, cache.w
    D = xhat.shape[-1]
    if w is not None:
        # y = xhat * w + b
        dw = (dout * xhat).reshape(-1, D).sum(axis=0)  # (D,)
        db = dout.reshape(-1, D).sum(axis=0)           # (D,)
        g = dout * w                                   # (..., D) dxhat
    else:
        dw = db = None
        g = dout                                       # (..., D) dxhat
    # xhat = (x - mu) * rstd,  rstd = 1 / sqrt(mean((x - mu)^2) + eps)
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))  # (..., D)
    return dx, dw, db
