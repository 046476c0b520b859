"""Patch embedding: a stride-p, kernel-p convolution written as one matmul over the patches.

Legend: B batch, Cin image channels, p patch size, H x W patch grid, N = H*W, C channels.
Shapes: img (B, Cin, H p, W p)   w (C, Cin, p, p) (PyTorch conv layout)   b (C,)   x (B, N, C)

Forward:
    1. patches = patchify(img)                       (B, N, p*p*Cin)  values ordered (row, col, channel)
    2. x = patches Wf^T + b,  Wf = w laid out (C, p, p, Cin) -> (C, p*p*Cin), the same order
Backward (dout given), in reverse:
    2. dpatches = dout Wf;  dWf = dout^T patches;  db = sum dout;  dw = dWf laid back (C, Cin, p, p)
    1. dimg = unpatchify(dpatches)
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.patchify import patchify, unpatchify


class PatchEmbedCache(NamedTuple):
    lin: object                     # LinearCache of the flattened patches
    grid_size: tuple[int, int]      # (H, W)
    w_shape: tuple                  # (C, Cin, p, p)


def patch_embed_forward(img, w, b):
    """Embed non-overlapping p x p patches of img (B, Cin, H p, W p) -> ``(x, cache)``, x (B, N, C)."""
    C, Cin, p, _ = w.shape
    # 1. patches, values ordered (row, column, channel)
    patches = patchify(img, p)                                       # (B, N, p*p*Cin)
    # 2. the conv as a matmul, its weight laid out in the same order
    w_flat = w.transpose(0, 2, 3, 1).reshape(C, p * p * Cin)         # (C, p*p*Cin)
    x, c_lin = linear_forward(patches, w_flat, b)                    # (B, N, C)
    grid = (img.shape[2] // p, img.shape[3] // p)
    return x, PatchEmbedCache(lin=c_lin, grid_size=grid, w_shape=tuple(w.shape))


def patch_embed_backward(dout, cache: PatchEmbedCache):
    """Return ``(dimg, dw, db)``."""
    C, Cin, p, _ = cache.w_shape
    # 2. x = patches Wf^T + b
    dpatches, dw_flat, db = linear_backward(dout, cache.lin)         # (B, N, p*p*Cin), (C, p*p*Cin)
    dw = dw_flat.reshape(C, p, p, Cin).transpose(0, 3, 1, 2)         # (C, Cin, p, p)
    # 1. patches = patchify(img)
    dimg = unpatchify(dpatches, p, cache.grid_size)                  # (B, Cin, H p, W p)
    return dimg, dw, db
