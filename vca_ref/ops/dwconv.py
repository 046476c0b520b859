"""Depthwise 3x3 convolution with bias, padding 1, on a channels-last grid.

Shapes: x (B, H, W, C)   w (C, 1, 3, 3) (PyTorch layout, groups = C)   b (C,)   y (B, H, W, C)

Forward (x read as zero outside the grid, i.e. padding 1):
    y[b, i, j, c] = b[c] + sum_{u,v in 0..2} w[c, 0, u, v] * x[b, i+u-1, j+v-1, c]

Backward (dout given):
    dx[b, i, j, c] = sum_{u,v} w[c, 0, u, v] * dout[b, i-u+1, j-v+1, c]
                   (the same correlation with the kernel turned by 180 degrees)
    dw[c, 0, u, v] = sum_{b,i,j} dout[b, i, j, c] * x[b, i+u-1, j+v-1, c]
    db[c] = sum_{b,i,j} dout[b, i, j, c]
Padding 1 is an explicit zero frame: xpad (B, H+2, W+2, C), and tap (u, v) reads the shifted
window xpad[:, u:u+H, v:v+W].
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.fast import overridable


class DWConvCache(NamedTuple):
    x: object       # (B, H, W, C) input, needed for dw
    w: object       # (C, 1, 3, 3)


def pad_grid(x):
    """Zero frame of width 1 around the grid: x (B, H, W, C) -> (B, H+2, W+2, C)."""
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


@overridable
def dwconv3x3_forward(x, w, b):
    """Depthwise 3x3 conv of x (B, H, W, C) with w (C, 1, 3, 3), b (C,)."""
    B, H, W, C = x.shape
    if tuple(w.shape) != (C, 1, 3, 3):
        raise ValueError(f"dwconv weight must have shape {(C, 1, 3, 3)}, got {tuple(w.shape)}")
    xpad = pad_grid(x)                                             # (B, H+2, W+2, C)
    y = b                                                          # (C,)
    for u in range(3):
        for v in range(3):
            y = y + w[:, 0, u, v] * xpad[:, u:u + H, v:v + W]      # (B, H, W, C)
    return y, DWConvCache(x=x, w=w)


@overridable
def dwconv3x3_backward(dout, cache: DWConvCache):
    """Return ``(dx, dw, db)``."""
    xp = get_array_module(dout)
    x, w = cache.x, cache.w
    B, H, W, C = dout.shape
    xpad = pad_grid(x)                                             # (B, H+2, W+2, C)
    dpad = pad_grid(dout)                                          # (B, H+2, W+2, C)
    dx = xp.zeros_like(dout)                                       # (B, H, W, C)
    dw = xp.zeros_like(w)                                          # (C, 1, 3, 3)
    for u in range(3):
        for v in range(3):
            # y[i, j] += w[u, v] * x[i+u-1, j+v-1]  =>  dx[i, j] += w[u, v] * dout[i-u+1, j-v+1]
            dx = dx + w[:, 0, u, v] * dpad[:, 2 - u:2 - u + H, 2 - v:2 - v + W]       # (B, H, W, C)
            dw[:, 0, u, v] = (dout * xpad[:, u:u + H, v:v + W]).sum(axis=(0, 1, 2))  # (C,)
    db = dout.sum(axis=(0, 1, 2))                                  # (C,)
    return dx, dw, db
