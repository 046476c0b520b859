"""VCA step 4, Stage I (global contrast): the contrast tokens attend to all N keys.

Legend: B batch, h heads, N tokens, d head dim, n contrast tokens, s = d^-1/2, li = lambda_init.

Forward, with T = [T+ ; T-] (B, h, 2n, d) and lam a scalar (ops/lambdas.py):
    1. U  = softmax(s T k^T) v                       (B, h, 2n, d)   (ops/attention.py)
    2. Z  = U+ - lam U-                              (B, h, n, d)    U+ the first n rows, U- the last n
    3. Vh = (1 - li) RMSNorm(Z; w)                   (B, h, n, d)

Backward (dout = dVh given), in exact reverse order:
    3. dZ, dw' = rmsnorm_backward(dout);  dw = (1 - li) dw'
    2. dU+ = dZ,  dU- = -lam dZ,  dlam = -sum(dZ * U-)
    1. dT, dk, dv = attention_backward([dU+ ; dU-])

The single-stream stage (Stage I not differential) is plain attention ``softmax(s T+ k^T) v``:
:func:`vca_ref.ops.attention.attention_forward` itself.
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.attention import attention_backward, attention_forward
from vca_ref.ops.diff_combine import diff_combine_backward, diff_combine_forward
from vca_ref.ops.rmsnorm import rmsnorm_backward, rmsnorm_forward


class Stage1Cache(NamedTuple):
    attn: object        # AttentionCache, S1 (B, h, 2n, N)
    dc: object          # DiffCombineCache
    norm: object        # RMSNormCache
    lambda_init: float


def stage1_forward(T, k, v, lam, norm_w, lambda_init: float, eps: float):
    """Stage I: T (B, h, 2n, d), k and v (B, h, N, d), lam (), norm_w (d,) -> Vh (B, h, n, d)."""
    n = T.shape[2] // 2
    # 1. the tokens attend to every key
    U, c_attn = attention_forward(T, k, v)                                      # (B, h, 2n, d)
    # 2. differential combine of the two streams
    Z, c_dc = diff_combine_forward(U[:, :, :n], U[:, :, n:], lam)               # (B, h, n, d)
    # 3. (1 - li) RMSNorm(Z; w) = RMSNorm(Z; (1 - li) w): the scale rides on the (d,) weight
    Vh, c_norm = rmsnorm_forward(Z, (1.0 - lambda_init) * norm_w, eps)          # (B, h, n, d)
    return Vh, Stage1Cache(attn=c_attn, dc=c_dc, norm=c_norm, lambda_init=lambda_init)


def stage1_backward(dout, cache: Stage1Cache):
    """Return ``(dT, dk, dv, dlam, dnorm_w)``."""
    c = cache
    xp = get_array_module(dout)
    # 3. Vh = RMSNorm(Z; (1 - li) w)
    dZ, dw = rmsnorm_backward(dout, c.norm)                                     # (B, h, n, d), (d,)
    dnorm_w = (1.0 - c.lambda_init) * dw                                        # (d,)
    # 2. Z = U+ - lam U-
    dUp, dUn, dlam = diff_combine_backward(dZ, c.dc)                            # (B, h, n, d) x2, ()
    # 1. U = softmax(s T k^T) v
    dT, dk, dv = attention_backward(xp.concatenate([dUp, dUn], axis=2), c.attn)  # (B, h, 2n|N, d)
    return dT, dk, dv, dlam, dnorm_w
