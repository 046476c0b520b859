"""Patch embedding: a stride-p, kernel-p convolution written as one matmul.

Shapes: img (B, Cin, Hi, Wi)   w (C, Cin, p, p) (PyTorch conv layout)   b (C,)
        -> x (B, N, C) with N = (Hi/p) * (Wi/p), tokens in row-major grid order.

Forward:  patches (B, N, Cin*p*p) = unfold(img);   x = patches @ w.reshape(C, -1)^T + b
Backward: dpatches = dx @ W;  dimg = fold(dpatches);  dw = dx^T patches;  db = sum dx
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.ops.linear import linear_backward, linear_forward


class PatchEmbedCache(NamedTuple):
    lin: object         # LinearCache of the flattened patches
    img_shape: tuple    # (B, Cin, Hi, Wi)
    p: int


def patchify(img, p: int):
    """(B, Cin, Hi, Wi) -> (B, N, Cin*p*p), channel-major inside each patch (conv order)."""
    B, Cin, Hi, Wi = img.shape
    if Hi % p or Wi % p:
        raise ValueError(f"image size {(Hi, Wi)} is not divisible by the patch size {p}")
    Hg, Wg = Hi // p, Wi // p
    x = img.reshape(B, Cin, Hg, p, Wg, p).transpose(0, 2, 4, 1, 3, 5)  # (B, Hg, Wg, Cin, p, p)
    return x.reshape(B, Hg * Wg, Cin * p * p)


def unpatchify_grad(dpatches, img_shape: tuple, p: int):
    """Inverse layout of :func:`patchify`: (B, N, Cin*p*p) -> (B, Cin, Hi, Wi)."""
    B, Cin, Hi, Wi = img_shape
    Hg, Wg = Hi // p, Wi // p
    d = dpatches.reshape(B, Hg, Wg, Cin, p, p).transpose(0, 3, 1, 4, 2, 5)  # (B, Cin, Hg, p, Wg, p)
    return d.reshape(B, Cin, Hi, Wi)


def patch_embed_forward(img, w, b):
    """Embed non-overlapping p x p patches of img (B, Cin, Hi, Wi) -> (B, N, C)."""
    C, Cin, p, p2 = w.shape
    if p != p2 or img.ndim != 4 or img.shape[1] != Cin:
        raise ValueError(f"patch embedding expects images (B, {Cin}, H, W) and a square kernel, "
                         f"got images {tuple(img.shape)} and weight {tuple(w.shape)}")
    patches = patchify(img, p)                                      # (B, N, Cin*p*p)
    x, lin = linear_forward(patches, w.reshape(C, -1), b)           # (B, N, C)
    return x, PatchEmbedCache(lin=lin, img_shape=tuple(img.shape), p=p)


def patch_embed_backward(dx, cache: PatchEmbedCache):
    """Return ``(dimg, dw, db)``."""
    dpatches, dw2, db = linear_backward(dx, cache.lin)               # (B, N, Cin*p*p), (C, Cin*p*p)
    C = dw2.shape[0]
    Cin = cache.img_shape[1]
    dimg = unpatchify_grad(dpatches, cache.img_shape, cache.p)       # (B, Cin, Hi, Wi)
    return dimg, dw2.reshape(C, Cin, cache.p, cache.p), db
