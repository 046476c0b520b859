"""VCA step 6, the depthwise-conv residual: a 3x3 conv of the patch values added to the patch rows.

Legend: B batch, N = P + H*W tokens, C channels, h heads, d = C/h, H x W patch grid.

Forward, with o (B, N, C) the merged attention output and v_patch (B, h, H*W, d) the patch values:
    1. D = DWConv3x3(v_patch laid out as (B, H, W, C))          (B, H, W, C)
    2. y = o + [0 ; D]                                          (B, N, C)   prefix rows unchanged

Backward (dout given), in reverse:
    2. do = dout;  dD = dout[:, P:]
    1. dv_patch, dw, db = dwconv3x3_backward(dD)
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.dwconv import dwconv3x3_backward, dwconv3x3_forward
from vca_ref.ops.heads import merge_heads, split_heads


class DWCResidualCache(NamedTuple):
    conv: object                    # DWConvCache
    grid_size: tuple[int, int]      # (H, W)
    num_heads: int


def dwc_residual_forward(o, v_patch, w, b, grid_size: tuple[int, int]):
    """``y = o + [0 ; DWConv3x3(v_patch)]``: o (B, N, C), v_patch (B, h, H*W, d), w (C, 1, 3, 3), b (C,)."""
    xp = get_array_module(o)
    B, N, C = o.shape
    H, W = grid_size
    P = N - H * W
    # 1. the conv of the patch values on the (H, W) grid
    vp = merge_heads(v_patch).reshape(B, H, W, C)                              # (B, H, W, C)
    D, c_conv = dwconv3x3_forward(vp, w, b)                                    # (B, H, W, C)
    # 2. added to the patch rows only
    y = xp.concatenate([o[:, :P], o[:, P:] + D.reshape(B, H * W, C)], axis=1)  # (B, N, C)
    return y, DWCResidualCache(conv=c_conv, grid_size=(H, W), num_heads=v_patch.shape[1])


def dwc_residual_backward(dout, cache: DWCResidualCache):
    """Return ``(do, dv_patch, dw, db)``."""
    B, N, C = dout.shape
    H, W = cache.grid_size
    P = N - H * W
    # 2. y = o + [0 ; D]
    do = dout                                                                  # (B, N, C)
    dD = dout[:, P:].reshape(B, H, W, C)                                       # (B, H, W, C)
    # 1. D = DWConv3x3(v_patch)
    dvp, dw, db = dwconv3x3_backward(dD, cache.conv)                           # (B, H, W, C)
    dv_patch = split_heads(dvp.reshape(B, H * W, C), cache.num_heads)          # (B, h, H*W, d)
    return do, dv_patch, dw, db
