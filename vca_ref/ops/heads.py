"""Moving between token layout (B, N, C) and head layout (B, h, N, d).

Channel c belongs to head floor(c / d), so (B, N, C) -> (B, N, h, d) -> (B, h, N, d).
These are pure layout changes; their "backward" is the inverse layout change.
"""
from __future__ import annotations

from vca_ref.backend import get_array_module


def split_qkv(qkv, num_heads: int):
    """(B, N, 3C) -> q, k, v each (B, h, N, d) (views of one transposed array)."""
    B, N, C3 = qkv.shape
    d = C3 // (3 * num_heads)
    t = qkv.reshape(B, N, 3, num_heads, d).transpose(2, 0, 3, 1, 4)   # (3, B, h, N, d)
    return t[0], t[1], t[2]


def merge_qkv(dq, dk, dv):
    """Inverse of :func:`split_qkv`: three (B, h, N, d) -> (B, N, 3C)."""
    xp = get_array_module(dq)
    B, h, N, d = dq.shape
    out = xp.empty((B, N, 3, h, d), dtype=dq.dtype)                   # (B, N, 3, h, d)
    out[:, :, 0] = dq.transpose(0, 2, 1, 3)
    out[:, :, 1] = dk.transpose(0, 2, 1, 3)
    out[:, :, 2] = dv.transpose(0, 2, 1, 3)
    return out.reshape(B, N, 3 * h * d)


def merge_heads(o):
    """(B, h, N, d) -> (B, N, C), contiguous.

    A copy whenever the transpose moves data (h > 1 and N > 1); for h == 1 or N == 1 NumPy
    returns a VIEW of ``o``, so a caller that writes into the result (VCA's step 6 adds the
    conv there) must not keep ``o`` for later use.  Neither op does.
    """
    B, h, N, d = o.shape
    return o.transpose(0, 2, 1, 3).reshape(B, N, h * d)


def split_heads(x, num_heads: int):
    """(B, N, C) -> (B, h, N, d) (a view)."""
    B, N, C = x.shape
    return x.reshape(B, N, num_heads, C // num_heads).transpose(0, 2, 1, 3)
