"""CPU-fast twins of the LayerNorm and RMSNorm pairs (:mod:`vca_ref.ops.layernorm`,
:mod:`vca_ref.ops.rmsnorm`), for NumPy arrays.

Same math and the same caches as the reference; the speed comes from NumPy idioms:

* row sums and row dots by ``einsum``: one pass without a (..., D) product array, 3-5x faster
  than ``mean(axis=-1)`` on the short rows of a ViT (D = 64 .. 768);
* the gradient ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` built in place in one array.

On CuPy a two-operand ``einsum`` row dot becomes one tiny matrix product per row, so these twins
are registered for NumPy arrays only.
"""
from __future__ import annotations

import numpy as np

from vca_ref.ops.layernorm import LayerNormCache
from vca_ref.ops.rmsnorm import RMSNormCache


def _leading(a) -> str:
    """einsum letters for every axis but the last: ``"abc"`` for a 4-d array."""
    return "abcdefghijklmnopqrstuvw"[:a.ndim - 1]


def _row_dot(a, b):
    """``(a * b).sum(-1, keepdims=True)`` in one pass; a, b (..., D) -> (..., 1)."""
    return np.einsum("...d,...d->...", a, b)[..., None]


def layernorm_forward(x, w=None, b=None, eps: float = 1e-5):
    """Twin of :func:`vca_ref.ops.layernorm.layernorm_forward`."""
    D = x.shape[-1]
    mu = np.einsum("...d->...", x)[..., None] / D             # (..., 1)
    xc = x - mu                                               # (..., D)
    rstd = 1.0 / np.sqrt(_row_dot(xc, xc) / D + eps)          # (..., 1)
    xhat = xc
    xhat *= rstd                                  # in place: xc is our own temporary  (..., D)
    y = xhat * w if w is not None else xhat.copy()            # (..., D)
    if b is not None:
        y += b
    return y, LayerNormCache(xhat=xhat, rstd=rstd, w=w)


def layernorm_backward(dout, cache: LayerNormCache):
    """Twin of :func:`vca_ref.ops.layernorm.layernorm_backward`."""
    xhat, rstd, w = cache.xhat, cache.rstd, cache.w
    D = xhat.shape[-1]
    rows = _leading(xhat)
    if w is not None:
        dw = np.einsum(f"{rows}z,{rows}z->z", dout, xhat)        # (D,) = sum_rows dout * xhat
        db = np.einsum(f"{rows}z->z", dout)                       # (D,) = sum_rows dout
        g = dout * w                                              # (..., D)
    else:
        dw = db = None
        g = dout
    mg = np.einsum("...d->...", g)[..., None] / D                 # (..., 1)
    dx = xhat * (_row_dot(g, xhat) / D)                           # (..., D)
    np.subtract(g, dx, out=dx)
    dx -= mg
    dx *= rstd
    return dx, dw, db


def rmsnorm_forward(z, w, eps: float = 1e-5):
    """Twin of :func:`vca_ref.ops.rmsnorm.rmsnorm_forward`."""
    d = z.shape[-1]
    rstd = 1.0 / np.sqrt(_row_dot(z, z) / d + eps)                # (..., 1)
    zhat = z * rstd                                               # (..., d)
    return zhat * w, RMSNormCache(zhat=zhat, rstd=rstd, w=w)


def rmsnorm_backward(dout, cache: RMSNormCache):
    """Twin of :func:`vca_ref.ops.rmsnorm.rmsnorm_backward`."""
    zhat, rstd, w = cache.zhat, cache.rstd, cache.w
    d = zhat.shape[-1]
    rows = _leading(zhat)
    dw = np.einsum(f"{rows}z,{rows}z->z", dout, zhat)             # (d,) = sum_rows dout * zhat
    g = dout * w                                                  # (..., d)
    dz = zhat * (_row_dot(g, zhat) / d)                           # (..., d)
    np.subtract(g, dz, out=dz)
    dz *= rstd
    return dz, dw
