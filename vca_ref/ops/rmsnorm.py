"""RMSNorm over the last axis (the per-stage norm of VCA).

Shapes:  z (..., d)   w (d,)   y (..., d)

Forward:
    1. rstd = 1 / sqrt(mean(z^2) + eps)      2. zhat = z * rstd      3. y = zhat * w

Backward (dout given), with g = dout * w:
    dz = rstd * (g - zhat * mean(g * zhat))
    dw = sum_rows dout * zhat
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.fast import overridable


class RMSNormCache(NamedTuple):
    zhat: object    # (..., d) normalised input
    rstd: object    # (..., 1)
    w: object       # (d,)


@overridable
def rmsnorm_forward(z, w, eps: float = 1e-5):
    """``y = z / sqrt(mean_d(z^2) + eps) * w``; z (..., d), w (d,)."""
    xp = get_array_module(z)
    rstd = 1.0 / xp.sqrt((z * z).mean(-1, keepdims=True) + eps)  # (..., 1)
    zhat = z * rstd                                               # (..., d)
    y = zhat * w                                                  # (..., d)
    return y, RMSNormCache(zhat=zhat, rstd=rstd, w=w)


@overridable
def rmsnorm_backward(dout, cache: RMSNormCache):
    """Return ``(dz, dw)``."""
    zhat, rstd, w = cache.zhat, cache.rstd, cache.w
    d = zhat.shape[-1]
    # y = zhat * w
    dw = (dout * zhat).reshape(-1, d).sum(axis=0)                 # (d,)
    g = dout * w                                                  # (..., d) dzhat
    # zhat = z * rstd,  rstd = 1 / sqrt(mean(z^2) + eps)
    dz = rstd * (g - zhat * (g * zhat).mean(-1, keepdims=True))   # (..., d)
    return dz, dw
