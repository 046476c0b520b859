"""Multi-head self-attention (MHSA), the quadratic baseline.

Legend: B batch, N tokens, C channels, h heads, d = C/h, s = d^-1/2.

Forward:
    1. q, k, v = split(x Wqkv^T + bqkv)            (B, h, N, d) each
    2. o = softmax(s q k^T) v                        (B, h, N, d)   (ops/attention.py)
    3. y = merge(o) Wproj^T + bproj                  (B, N, C)

Backward, in exact reverse order:
    3. do, dWproj, dbproj = linear_backward(dout)
    2. dq, dk, dv = attention_backward(do)
    1. dx, dWqkv, dbqkv = linear_backward(merge(dq, dk, dv))

``params`` holds the parameters under their PyTorch names (docs/spec.md): ``qkv.weight``
(3C, C), ``qkv.bias`` (3C,), ``proj.weight`` (C, C), ``proj.bias`` (C,); the backward returns
their gradients under the same names, as :func:`vca_ref.ops.vca.vca_backward` does.
Cost: 4 N C^2 (projections) + 2 N^2 C (attention) multiply-accumulates per sample.
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.ops.attention import attention_backward, attention_forward
from vca_ref.ops.heads import merge_heads, merge_qkv, split_heads, split_qkv
from vca_ref.ops.linear import linear_backward, linear_forward


class MHSACache(NamedTuple):
    qkv: object         # LinearCache of the qkv projection
    attn: object        # AttentionCache
    proj: object        # LinearCache of the output projection
    num_heads: int


def mhsa_forward(x, params: dict, num_heads: int):
    """Multi-head self-attention of x (B, N, C) -> ``(y, cache)``, y (B, N, C)."""
    # 1. projections
    qkv, c_qkv = linear_forward(x, params["qkv.weight"], params["qkv.bias"])      # (B, N, 3C)
    q, k, v = split_qkv(qkv, num_heads)                                            # (B, h, N, d) each
    # 2. softmax attention
    o, c_attn = attention_forward(q, k, v)                                         # (B, h, N, d)
    # 3. output projection
    y, c_proj = linear_forward(merge_heads(o), params["proj.weight"], params["proj.bias"])  # (B, N, C)
    return y, MHSACache(qkv=c_qkv, attn=c_attn, proj=c_proj, num_heads=num_heads)


def mhsa_backward(dout, cache: MHSACache):
    """Return ``(dx, grads)``: dx (B, N, C) and the parameter gradients under the names of ``params``."""
    c = cache
    # 3. y = merge(o) Wproj^T + bproj
    dom, dproj_w, dproj_b = linear_backward(dout, c.proj)                          # (B, N, C)
    # 2. o = softmax(s q k^T) v
    dq, dk, dv = attention_backward(split_heads(dom, c.num_heads), c.attn)         # (B, h, N, d) each
    # 1. q, k, v = split(x Wqkv^T + bqkv)
    dx, dqkv_w, dqkv_b = linear_backward(merge_qkv(dq, dk, dv), c.qkv)             # (B, N, C)
    return dx, {"qkv.weight": dqkv_w, "qkv.bias": dqkv_b,
                "proj.weight": dproj_w, "proj.bias": dproj_b}
