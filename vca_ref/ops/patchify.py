"""Images to patch tokens and back: ``patchify`` and its inverse ``unpatchify``.

Legend: B batch, c image channels, p patch size, H x W patch grid, Hi = H p, Wi = W p, N = H*W.

    patchify:    (B, c, Hi, Wi) -> (B, N, p*p*c)   token (i, j) holds the p x p patch at grid row i,
                                                   column j, its values ordered (row, column, channel)
    unpatchify:  (B, N, p*p*c) -> (B, c, Hi, Wi)   the inverse

Tokens run in row-major grid order.  The (row, column, channel) order inside a token is the
reference DiT's ``unpatchify`` layout, which fixes the rows of its final linear layer; the patch
embedding uses the same order (ops/patch_embed.py).  Both are pure layout changes, each the
other's backward.
"""
from __future__ import annotations


def patchify(img, p: int):
    """(B, c, Hi, Wi) -> (B, N, p*p*c) non-overlapping p x p patches (Hi, Wi divisible by p)."""
    B, c, Hi, Wi = img.shape
    H, W = Hi // p, Wi // p
    x = img.reshape(B, c, H, p, W, p).transpose(0, 2, 4, 3, 5, 1)     # (B, H, W, p, p, c)
    return x.reshape(B, H * W, p * p * c)


def unpatchify(x, p: int, grid_size: tuple[int, int]):
    """(B, N, p*p*c) tokens of an (H, W) grid -> (B, c, H p, W p); the inverse of :func:`patchify`."""
    B, N, K = x.shape
    H, W = grid_size
    c = K // (p * p)
    img = x.reshape(B, H, W, p, p, c).transpose(0, 5, 1, 3, 2, 4)     # (B, c, H, p, W, p)
    return img.reshape(B, c, H * p, W * p)
