"""Multi-head self-attention (MHSA), the quadratic baseline.

Legend: B batch, N tokens, C channels, h heads, d = C/h, s = d^-1/2.

Forward:
    1. q, k, v = split(x Wqkv^T + bqkv)            (B, h, N, d) each
    2. S = softmax(s q k^T)                          (B, h, N, N)
    3. o = S v                                       (B, h, N, d)
    4. y = merge(o) Wproj^T + bproj                  (B, N, C)

Backward, in exact reverse order:
    4. do, dWproj, dbproj = linear_backward(dy)
    3. dS = do v^T,  dv = S^T do
    2. dL = S * (dS - rowsum(dS * S));  dq = s dL k,  dk = s dL^T q
    1. dx, dWqkv, dbqkv = linear_backward(merge(dq, dk, dv))
Cost: 4 N C^2 (projections) + 2 N^2 C (attention) multiply-accumulates per sample.
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.ops.heads import merge_heads, merge_qkv, split_heads, split_qkv
from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.softmax import softmax_backward, softmax_forward


class MHSACache(NamedTuple):
    qkv: object     # LinearCache of the qkv projection
    q: object       # (B, h, N, d) pre-scaled queries s*q
    k: object       # (B, h, N, d)
    v: object       # (B, h, N, d)
    sm: object      # SoftmaxCache, S (B, h, N, N)
    proj: object    # LinearCache of the output projection
    scale: float
    num_heads: int


def mhsa_forward(x, qkv_w, qkv_b, proj_w, proj_b, num_heads: int):
    """Multi-head self-attention of x (B, N, C).

    qkv_w (3C, C), qkv_b (3C,), proj_w (C, C), proj_b (C,) -> y (B, N, C).
    """
    B, N, C = x.shape
    d = C // num_heads
    scale = d ** -0.5
    # 1. projections
    qkv, c_qkv = linear_forward(x, qkv_w, qkv_b)                # (B, N, 3C)
    q, k, v = split_qkv(qkv, num_heads)                         # (B, h, N, d) each
    qs = q * scale                                              # (B, h, N, d)
    # 2. attention weights
    S, c_sm = softmax_forward(qs @ k.swapaxes(-1, -2))          # (B, h, N, N)
    # 3. weighted values
    o = S @ v                                                   # (B, h, N, d)
    # 4. output projection
    y, c_proj = linear_forward(merge_heads(o), proj_w, proj_b)  # (B, N, C)
    return y, MHSACache(c_qkv, qs, k, v, c_sm, c_proj, scale, num_heads)


def mhsa_backward(dy, cache: MHSACache):
    """Return ``(dx, dqkv_w, dqkv_b, dproj_w, dproj_b)``."""
    c = cache
    S = c.sm.y
    # 4. y = merge(o) Wproj^T + bproj
    dom, dproj_w, dproj_b = linear_backward(dy, c.proj)         # (B, N, C)
    do = split_heads(dom, c.num_heads)                          # (B, h, N, d)
    # 3. o = S v
    dS = do @ c.v.swapaxes(-1, -2)                              # (B, h, N, N)
    dv = S.swapaxes(-1, -2) @ do                                # (B, h, N, d)
    # 2. S = softmax(qs k^T),  qs = s q
    dL = softmax_backward(dS, c.sm)                             # (B, h, N, N)
    dq = (dL @ c.k) * c.scale                                   # (B, h, N, d)
    dk = dL.swapaxes(-1, -2) @ c.q                              # (B, h, N, d)
    # 1. q, k, v = split(x Wqkv^T + bqkv)
    dx, dqkv_w, dqkv_b = linear_backward(merge_qkv(dq, dk, dv), c.qkv)
    return dx, dqkv_w, dqkv_b, dproj_w, dproj_b
