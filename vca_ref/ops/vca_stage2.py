"""VCA step 5, Stage II (patch-wise differential attention): every query reads the contrast tokens.

Legend: B batch, h heads, N tokens, d head dim, n contrast tokens, s = d^-1/2, li = lambda_init.

Forward, with q (B, h, N, d), T = [T+ ; T-] (B, h, 2n, d), Vh (B, h, n, d) from Stage I:
    1. S2 = softmax(s q T^T)                         (B, h, N, 2n)   ONE joint softmax over 2n
       (separate: S2+ = softmax(s q T+^T), S2- = softmax(s q T-^T), each over n)
    2. A  = S2+ - lam S2-                            (B, h, N, n)    S2+ the first n columns
    3. O  = (1 - li) RMSNorm(A Vh; w)                (B, h, N, d)

Backward (dout = dO given), in exact reverse order:
    3. dZ, dw' = rmsnorm_backward(dout);  dw = (1 - li) dw';  dA = dZ Vh^T;  dVh = A^T dZ
    2. dS2+ = dA,  dS2- = -lam dA,  dlam = -sum(dA * S2-)
    1. dL = softmax_backward([dS2+ | dS2-])  (or each half through its own softmax);
       dq = s dL T,  dT = s dL^T q

Steps 2-3 (the differential read-out) are one pair shared by both softmax readings.  The
single-stream stage (Stage II not differential) is plain attention ``softmax(s q T+^T) Vh``:
:func:`vca_ref.ops.attention.attention_forward` itself.
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.diff_combine import diff_combine_backward, diff_combine_forward
from vca_ref.ops.rmsnorm import rmsnorm_backward, rmsnorm_forward
from vca_ref.ops.softmax import softmax_backward, softmax_forward


class ReadoutCache(NamedTuple):
    dc: object          # DiffCombineCache
    A: object           # (B, h, N, n) the differential attention map S2+ - lam S2-
    V: object           # (B, h, n, d) the values it reads
    norm: object        # RMSNormCache
    lambda_init: float


class Stage2Cache(NamedTuple):
    q: object           # (B, h, N, d)
    Ts: object          # (B, h, 2n, d) s T
    sm: object          # SoftmaxCache of the joint softmax, or a (SoftmaxCache, SoftmaxCache) pair
    readout: object     # ReadoutCache


def diff_readout_forward(Sp, Sn, V, lam, norm_w, lambda_init: float, eps: float):
    """Steps 2-3: ``O = (1 - li) RMSNorm((Sp - lam Sn) V; w)``; Sp, Sn (B, h, N, n), V (B, h, n, d)."""
    # 2. differential attention map
    A, c_dc = diff_combine_forward(Sp, Sn, lam)                                 # (B, h, N, n)
    # 3. (1 - li) folded into the norm weight, as in Stage I (saves a pass over N x d)
    O, c_norm = rmsnorm_forward(A @ V, (1.0 - lambda_init) * norm_w, eps)       # (B, h, N, d)
    return O, ReadoutCache(dc=c_dc, A=A, V=V, norm=c_norm, lambda_init=lambda_init)


def diff_readout_backward(dout, cache: ReadoutCache):
    """Return ``(dSp, dSn, dV, dlam, dnorm_w)``."""
    c = cache
    # 3. O = RMSNorm(Z; (1 - li) w),  Z = A V
    dZ, dw = rmsnorm_backward(dout, c.norm)                                     # (B, h, N, d), (d,)
    dnorm_w = (1.0 - c.lambda_init) * dw                                        # (d,)
    dA = dZ @ c.V.swapaxes(-1, -2)                                              # (B, h, N, n)
    dV = c.A.swapaxes(-1, -2) @ dZ                                              # (B, h, n, d)
    # 2. A = Sp - lam Sn
    dSp, dSn, dlam = diff_combine_backward(dA, c.dc)                            # (B, h, N, n) x2, ()
    return dSp, dSn, dV, dlam, dnorm_w


def _token_logits_backward(dL, q, Ts):
    """L = q (s T)^T  ->  ``(dq, dT)``: dq = dL (s T), dT = s dL^T q."""
    scale = q.shape[-1] ** -0.5
    return dL @ Ts, (dL.swapaxes(-1, -2) @ q) * scale                           # (B, h, N, d), (B, h, 2n, d)


def stage2_forward(q, T, Vh, lam, norm_w, lambda_init: float, eps: float):
    """Stage II with one joint softmax over the 2n tokens (the paper) -> O (B, h, N, d)."""
    n = Vh.shape[2]
    Ts = T * q.shape[-1] ** -0.5                                                # (B, h, 2n, d) s T
    # 1. one softmax over the joint bank [T+ ; T-]
    S2, c_sm = softmax_forward(q @ Ts.swapaxes(-1, -2))                         # (B, h, N, 2n)
    # 2-3. differential read-out of Vh
    O, c_out = diff_readout_forward(S2[..., :n], S2[..., n:], Vh, lam, norm_w, lambda_init, eps)
    return O, Stage2Cache(q=q, Ts=Ts, sm=c_sm, readout=c_out)


def stage2_backward(dout, cache: Stage2Cache):
    """Return ``(dq, dT, dVh, dlam, dnorm_w)``."""
    c = cache
    xp = get_array_module(dout)
    # 2-3. O = (1 - li) RMSNorm((S2+ - lam S2-) Vh)
    dSp, dSn, dVh, dlam, dnorm_w = diff_readout_backward(dout, c.readout)       # (B, h, N, n) x2, ...
    # 1. S2 = softmax(q (s T)^T)
    dL = softmax_backward(xp.concatenate([dSp, dSn], axis=-1), c.sm)            # (B, h, N, 2n)
    dq, dT = _token_logits_backward(dL, c.q, c.Ts)                              # (B, h, N, d), (B, h, 2n, d)
    return dq, dT, dVh, dlam, dnorm_w


def stage2_separate_forward(q, T, Vh, lam, norm_w, lambda_init: float, eps: float):
    """Stage II with two softmaxes of size n, one per stream (the other reading of the paper)."""
    n = Vh.shape[2]
    Ts = T * q.shape[-1] ** -0.5                                                # (B, h, 2n, d) s T
    L = q @ Ts.swapaxes(-1, -2)                                                 # (B, h, N, 2n)
    # 1. one softmax per stream
    Sp, c_sp = softmax_forward(L[..., :n])                                      # (B, h, N, n)
    Sn, c_sn = softmax_forward(L[..., n:])                                      # (B, h, N, n)
    # 2-3. differential read-out of Vh
    O, c_out = diff_readout_forward(Sp, Sn, Vh, lam, norm_w, lambda_init, eps)
    return O, Stage2Cache(q=q, Ts=Ts, sm=(c_sp, c_sn), readout=c_out)


def stage2_separate_backward(dout, cache: Stage2Cache):
    """Return ``(dq, dT, dVh, dlam, dnorm_w)``."""
    c = cache
    xp = get_array_module(dout)
    c_sp, c_sn = c.sm
    # 2-3. O = (1 - li) RMSNorm((S2+ - lam S2-) Vh)
    dSp, dSn, dVh, dlam, dnorm_w = diff_readout_backward(dout, c.readout)       # (B, h, N, n) x2, ...
    # 1. S2+ = softmax(L+),  S2- = softmax(L-)
    dL = xp.concatenate([softmax_backward(dSp, c_sp), softmax_backward(dSn, c_sn)], axis=-1)  # (B, h, N, 2n)
    dq, dT = _token_logits_backward(dL, c.q, c.Ts)                              # (B, h, N, d), (B, h, 2n, d)
    return dq, dT, dVh, dlam, dnorm_w
