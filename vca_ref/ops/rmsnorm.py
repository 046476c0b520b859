"""RMSNorm over the last axis (the per-stage norm of VCA).

Shapes:  z (..., d)   w (d,)   y (..., d)

Forward:
    rstd = 1 / sqrt(mean(z^2) + eps)      zhat = z * rstd      y = zhat * w

Backward (dy given), with g = dy * w:
    dz = rstd * (g - zhat * mean(g * zhat))
    dw = sum_rows dy * zhat
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.fast import kernels
from vca_ref.backend import get_array_module
from vca_ref.fast.kernels import cuda as kcuda


class RMSNormCache(NamedTuple):
    zhat: object    # (..., d) normalised input
    rstd: object    # (..., 1)
    w: object       # (d,)


def rmsnorm_forward(z, w, eps: float = 1e-5):
    """``y = z / sqrt(mean_d(z^2) + eps) * w``; z (..., d), w (d,)."""
    if kernels.applies(z, w) and w.shape == z.shape[-1:]:      # CUDA row kernel, twin of below
        y, zhat, rstd = kcuda.rmsnorm_forward(z, w, eps)
        return y, RMSNormCache(zhat=zhat, rstd=rstd, w=w)
    xp = get_array_module(z)
    d = z.shape[-1]
    # mean(z^2) as a row dot by einsum: one pass, no (..., d) array of squares
    rstd = 1.0 / xp.sqrt(xp.einsum("...d,...d->...", z, z)[..., None] / d + eps)  # (..., 1)
    zhat = z * rstd                                                   # (..., d)
    return zhat * w, RMSNormCache(zhat=zhat, rstd=rstd, w=w)


def rmsnorm_backward(dy, cache: RMSNormCache):
    """Return ``(dz, dw)``."""
    zhat, rstd, w = cache.zhat, cache.rstd, cache.w
    if kernels.applies(dy, zhat, rstd, w) and dy.shape == zhat.shape:  # CUDA twin (dz row kernel)
        return kcuda.rmsnorm_backward(dy, zhat, rstd, w)
    xp = get_array_module(dy)
    d = zhat.shape[-1]
    # the sums of products below are einsums: one pass each, no (..., d) product arrays
    rows = "abcdefghijklmnopqrstuvw"[:zhat.ndim - 1]                   # every leading axis
    dw = xp.einsum(f"{rows}z,{rows}z->z", dy, zhat)                   # (d,) = sum_rows dy * zhat
    g = dy * w                                                        # y = zhat * w
    # zhat = z * rstd,  rstd = (mean(z^2) + eps)^-1/2
    #   dz = rstd * (g - zhat * mean(g * zhat)), written as three passes into one array
    dz = zhat * (xp.einsum("...d,...d->...", g, zhat)[..., None] / d)  # (..., d)
    xp.subtract(g, dz, out=dz)
    dz *= rstd
    return dz, dw
