"""LayerNorm over the last axis, affine or not.

Shapes:  x (..., D)   w, b (D,) or None   y (..., D)

Forward:
    mu   = mean(x)                 rstd = 1 / sqrt(var(x) + eps)
    xhat = (x - mu) * rstd         y    = xhat * w + b

Backward (dy given), with g = dy * w (or dy when not affine):
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    dw = sum_rows dy * xhat        db = sum_rows dy
"""
from __future__ import annotations

from typing import NamedTuple


class LayerNormCache(NamedTuple):
    xhat: object    # (..., D) normalised input
    rstd: object    # (..., 1) reciprocal standard deviation
    w: object       # (D,) or None


def layernorm_forward(x, w=None, b=None, eps: float = 1e-5):
    """Normalise the last axis of x (..., D); optional affine ``w``, ``b`` (D,)."""
    mu = x.mean(axis=-1, keepdims=True)                    # (..., 1)
    xc = x - mu                                            # (..., D)
    var = (xc * xc).mean(axis=-1, keepdims=True)           # (..., 1)
    rstd = 1.0 / (var + eps) ** 0.5                        # (..., 1)
    xhat = xc * rstd                                       # (..., D)
    y = xhat * w if w is not None else xhat.copy()         # (..., D)
    if b is not None:
        y += b
    return y, LayerNormCache(xhat=xhat, rstd=rstd, w=w)


def layernorm_backward(dy, cache: LayerNormCache):
    """Return ``(dx, dw, db)`` (``dw``/``db`` None when not affine)."""
    xhat, rstd, w = cache.xhat, cache.rstd, cache.w
    D = xhat.shape[-1]
    if w is not None:
        dw = (dy * xhat).reshape(-1, D).sum(axis=0)        # (D,)
        db = dy.reshape(-1, D).sum(axis=0)                 # (D,)
        g = dy * w                                         # (..., D)  y = xhat * w + b
    else:
        dw = db = None
        g = dy
    # xhat = (x - mu) * rstd
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))  # (..., D)
    return dx, dw, db
