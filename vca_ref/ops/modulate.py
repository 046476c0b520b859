"""adaLN modulation of DiT: ``y = x * (1 + scale) + shift`` per sample.

Shapes: x (B, N, C)   shift, scale (B, C)   y (B, N, C)

Backward (dout given):
    dx = dout * (1 + scale)      dshift = sum_N dout      dscale = sum_N dout * x
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.fast import overridable


class ModulateCache(NamedTuple):
    x: object       # (B, N, C)
    scale: object   # (B, C)


@overridable
def modulate_forward(x, shift, scale):
    """``x * (1 + scale[:, None]) + shift[:, None]``; x (B, N, C), shift/scale (B, C)."""
    y = x * (1.0 + scale[:, None, :]) + shift[:, None, :]          # (B, N, C)
    return y, ModulateCache(x=x, scale=scale)


@overridable
def modulate_backward(dout, cache: ModulateCache):
    """Return ``(dx, dshift, dscale)``."""
    x, scale = cache.x, cache.scale
    # y = x * (1 + scale) + shift
    dx = dout * (1.0 + scale[:, None, :])                          # (B, N, C)
    dshift = dout.sum(axis=1)                                      # (B, C)
    dscale = (dout * x).sum(axis=1)                                # (B, C)
    return dx, dshift, dscale
