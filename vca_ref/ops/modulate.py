"""adaLN modulation of DiT: ``y = x * (1 + scale) + shift`` per sample.

Shapes: x (B, N, C)   shift, scale (B, C)   y (B, N, C)

Backward:
    dx = dy * (1 + scale)      dshift = sum_N dy      dscale = sum_N dy * x
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.fast import kernels
from vca_ref.fast.kernels import cuda as kcuda


class ModulateCache(NamedTuple):
    x: object       # (B, N, C)
    scale: object   # (B, C)


def modulate_forward(x, shift, scale):
    """``x * (1 + scale[:, None]) + shift[:, None]``; x (B, N, C), shift/scale (B, C)."""
    if kernels.applies(x, shift, scale):                            # CUDA twin of the line below
        return kcuda.modulate_forward(x, shift, scale), ModulateCache(x=x, scale=scale)
    y = x * (1.0 + scale[:, None, :]) + shift[:, None, :]          # (B, N, C)
    return y, ModulateCache(x=x, scale=scale)


def modulate_backward(dy, cache: ModulateCache):
    """Return ``(dx, dshift, dscale)``."""
    x, scale = cache.x, cache.scale
    if kernels.applies(dy, x, scale):                              # CUDA twin of the lines below
        return kcuda.modulate_backward(dy, x, scale)
    dx = dy * (1.0 + scale[:, None, :])                            # (B, N, C)
    dshift = dy.sum(axis=1)                                        # (B, C)
    dscale = (dy * x).sum(axis=1)                                  # (B, C)
    return dx, dshift, dscale
