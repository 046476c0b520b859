"""Softmax attention of per-head queries, keys and values: the core MHSA and VCA share.

Legend: B batch, h heads, M queries, K keys (and values), d head dim, s = d^-1/2.

Forward:
    1. S = softmax(s q k^T)                          (B, h, M, K)
    2. o = S v                                       (B, h, M, d)

Backward (dout given), in exact reverse order:
    2. dS = dout v^T,  dv = S^T dout
    1. dL = S * (dS - rowsum(dS * S));  dq = s dL k,  dk = s dL^T q

MHSA calls it with the N token queries and keys; the single-stream VCA stages call it with the
n contrast tokens as the queries (Stage I) or as the keys (Stage II).
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.ops.softmax import softmax_backward, softmax_forward


class AttentionCache(NamedTuple):
    qs: object      # (B, h, M, d) pre-scaled queries s*q
    k: object       # (B, h, K, d)
    v: object       # (B, h, K, d)
    sm: object      # SoftmaxCache, S (B, h, M, K)
    scale: float    # s


def attention_forward(q, k, v):
    """``o = softmax(s q k^T) v`` for q (B, h, M, d), k and v (B, h, K, d) -> o (B, h, M, d)."""
    scale = q.shape[-1] ** -0.5
    qs = q * scale                                              # (B, h, M, d)
    # 1. attention weights
    S, c_sm = softmax_forward(qs @ k.swapaxes(-1, -2))          # (B, h, M, K)
    # 2. weighted values
    o = S @ v                                                   # (B, h, M, d)
    return o, AttentionCache(qs=qs, k=k, v=v, sm=c_sm, scale=scale)


def attention_backward(dout, cache: AttentionCache):
    """Return ``(dq, dk, dv)``."""
    c = cache
    S = c.sm.y                                                  # (B, h, M, K)
    # 2. o = S v
    dS = dout @ c.v.swapaxes(-1, -2)                            # (B, h, M, K)
    dv = S.swapaxes(-1, -2) @ dout                              # (B, h, K, d)
    # 1. S = softmax(qs k^T),  qs = s q
    dL = softmax_backward(dS, c.sm)                             # (B, h, M, K)
    dq = (dL @ c.k) * c.scale                                   # (B, h, M, d)
    dk = dL.swapaxes(-1, -2) @ c.qs                             # (B, h, K, d)
    return dq, dk, dv
