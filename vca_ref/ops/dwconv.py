"""Depthwise 3x3 convolution with bias, padding 1, on a channels-last grid.

Shapes: x (B, H, W, C)   w (C, 1, 3, 3) (PyTorch layout, groups = C)   b (C,)   y (B, H, W, C)

Forward (xp = x zero-padded by 1 on H and W):
    y[b, i, j, c] = b[c] + sum_{u,v in 0..2} w[c, 0, u, v] * xp[b, i+u, j+v, c]

Backward:
    dw[c, 0, u, v] = sum_{b,i,j} dy[b, i, j, c] * xp[b, i+u, j+v, c]
    dxp[b, i+u, j+v, c] += w[c, 0, u, v] * dy[b, i, j, c]   then crop the padding
    db[c] = sum_{b,i,j} dy[b, i, j, c]
The kernel is applied as 9 shifted multiply-adds (no im2col copy).
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import get_array_module


class DWConvCache(NamedTuple):
    xpad: object    # (B, H+2, W+2, C) zero-padded input
    w: object       # (C, 1, 3, 3)


def dwconv3x3_forward(x, w, b):
    """Depthwise 3x3 conv of x (B, H, W, C) with w (C, 1, 3, 3), b (C,)."""
    xp = get_array_module(x)
    B, H, W, C = x.shape
    if tuple(w.shape) != (C, 1, 3, 3):
        raise ValueError(f"dwconv weight must have shape {(C, 1, 3, 3)}, got {tuple(w.shape)}")
    xpad = xp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))          # (B, H+2, W+2, C)
    wt = w[:, 0].transpose(1, 2, 0)                              # (3, 3, C)
    y = xp.empty_like(x)                                         # (B, H, W, C)
    y[...] = b
    for u in range(3):
        for v in range(3):
            y += xpad[:, u:u + H, v:v + W, :] * wt[u, v]
    return y, DWConvCache(xpad=xpad, w=w)


def dwconv3x3_backward(dy, cache: DWConvCache):
    """Return ``(dx, dw, db)``."""
    xp = get_array_module(dy)
    xpad, w = cache.xpad, cache.w
    B, H, W, C = dy.shape
    wt = w[:, 0].transpose(1, 2, 0)                              # (3, 3, C)
    dxpad = xp.zeros_like(xpad)                                  # (B, H+2, W+2, C)
    dwt = xp.empty((3, 3, C), dtype=dy.dtype)                    # (3, 3, C)
    for u in range(3):
        for v in range(3):
            # y += xpad[:, u:u+H, v:v+W] * wt[u, v]
            dxpad[:, u:u + H, v:v + W, :] += dy * wt[u, v]
            win = xpad[:, u:u + H, v:v + W, :]
            dwt[u, v] = (win * dy).reshape(-1, C).sum(axis=0)
    db = dy.reshape(-1, C).sum(axis=0)                                         # (C,)
    dw = dwt.transpose(2, 0, 1)[:, None].copy()                  # (C, 1, 3, 3)
    dx = dxpad[:, 1:H + 1, 1:W + 1, :].copy()                    # (B, H, W, C)
    return dx, dw, db
