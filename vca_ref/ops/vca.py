"""Visual-Contrast Attention (VCA): the two-stage linear differential attention.

Legend: B batch, N = P + H*W tokens, C channels, h heads, d = C/h, n = h'*w' contrast
tokens, s = d^-1/2, li = lambda_init.  All per-head arrays are (B, h, ., d).

Forward (numbered as in docs/spec.md):
    0. q, k, v = split(x Wqkv^T + bqkv)                                 (B, h, N, d)
    1. t0 = AvgPool(q[:, :, P:])                                        (B, h, n, d)
    2. T = [t0 + E+ ; t0 + E-]                                          (B, h, 2n, d)
    3. lam_j = exp(lq1_j.lk1_j) - exp(lq2_j.lk2_j) + li                 ()
    4. S1 = softmax(s T k^T)                                            (B, h, 2n, N)
       U  = S1 v;  Vh = (1 - li) RMSNorm1(U+ - lam1 U-)                 (B, h, n, d)
    5. S2 = softmax(s q T^T)  (one joint softmax over 2n)               (B, h, N, 2n)
       A  = S2[..., :n] - lam2 S2[..., n:];  O = (1 - li) RMSNorm2(A Vh)  (B, h, N, d)
    6. Om = merge(O);  Om[:, P:] += DWConv3x3(v_patch)                  (B, N, C)
    7. y = Om Wproj^T + bproj                                           (B, N, C)
Options (see :class:`VCAConfig`) switch the softmax of stage 5 to two of size n, tie E- to
E+, drop the pooling (T = E+-), drop the conv, or make a stage non-differential.

Backward runs 7 -> 0 with the same names prefixed by ``d``.
Cost: 4 N C^2 + 7 n N C (+ ~10 N C elementwise) multiply-accumulates per sample.
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.dwconv import dwconv3x3_backward, dwconv3x3_forward
from vca_ref.ops.heads import merge_heads, merge_qkv, split_heads, split_qkv
from vca_ref.ops.lambdas import (diff_combine_backward, diff_combine_forward, lambda_backward,
                      lambda_forward)
from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.pooling import adaptive_avg_pool_backward, adaptive_avg_pool_forward
from vca_ref.ops.rmsnorm import rmsnorm_backward, rmsnorm_forward
from vca_ref.ops.softmax import softmax_backward, softmax_forward
from vca_ref.ops.vca_config import LAMBDA_NAMES, VCAConfig


class VCACache(NamedTuple):
    cfg: VCAConfig
    qkv: object     # LinearCache                          step 0
    q: object       # (B, h, N, d)  views into the qkv projection's output
    k: object       # (B, h, N, d)
    v: object       # (B, h, N, d)
    pool: object    # PoolCache or None                    step 1
    Ts: object      # (B, h, 2n, d) s * [T+; T-] (n rows when T- is unused)
    lam1: object    # LambdaCache or None                  step 3
    lam2: object
    s1: object      # SoftmaxCache, S1 (B, h, 2n|n, N)     step 4
    dc1: object     # DiffCombineCache or None
    n1: object      # RMSNormCache or None
    Vh: object      # (B, h, n, d)
    s2: object      # SoftmaxCache(s) of stage 5: one (joint/plain) or a pair (separate)
    dc2: object     # DiffCombineCache or None
    A: object       # (B, h, N, n) differential attention (S2 itself when not differential)
    n2: object      # RMSNormCache or None
    dwc: object     # DWConvCache or None                  step 6
    proj: object    # LinearCache                          step 7


def _lambda(params, j: int, li: float):
    return lambda_forward(*(params[f"stage{j}.{k}"] for k in LAMBDA_NAMES), li)


def vca_forward(x, params: dict, cfg: VCAConfig):
    """One VCA layer on x (B, N, C) with ``params`` named as in ``cfg.param_shapes()``.

    Returns ``(y, cache)`` with y (B, N, C).
    """
    xp = get_array_module(x)
    B, N, C = x.shape
    if N != cfg.num_tokens or C != cfg.dim:
        raise ValueError(f"VCA expects x of shape (B, {cfg.num_tokens}, {cfg.dim}) "
                         f"(P + H*W = {cfg.num_prefix_tokens} + {cfg.grid_size[0]}*{cfg.grid_size[1]} tokens), "
                         f"got {tuple(x.shape)}")
    h, n, P = cfg.num_heads, cfg.num_contrast_tokens, cfg.num_prefix_tokens
    (H, W), s, li, eps = cfg.grid_size, cfg.head_dim ** -0.5, cfg.lambda_init, cfg.norm_eps
    two_streams = cfg.stage1_differential or cfg.stage2_differential

    # 0. projections
    qkv, c_qkv = linear_forward(x, params["qkv.weight"], params["qkv.bias"])   # (B, N, 3C)
    q, k, v = split_qkv(qkv, h)                                                 # (B, h, N, d)
    # 1. visual-contrast tokens from the patch queries (prefix queries are not pooled)
    t0, c_pool = (adaptive_avg_pool_forward(q[:, :, P:], cfg.grid_size, cfg.pool_size)
                  if cfg.pool_queries else (0.0, None))                         # (B, h, n, d)
    # 2. dual positional embeddings
    e_pos = split_heads(params["e_pos"], h)                                     # (1, h, n, d)
    e_neg = split_heads(params["e_neg"], h) if cfg.has_e_neg else e_pos         # (1, h, n, d)
    T = xp.concatenate([t0 + e_pos, t0 + e_neg], axis=2) if two_streams else t0 + e_pos
    T = xp.broadcast_to(T, (B,) + T.shape[1:])                                  # (B, h, 2n, d)
    # 3. lambdas
    lam1, c_lam1 = _lambda(params, 1, li) if cfg.stage1_differential else (None, None)
    lam2, c_lam2 = _lambda(params, 2, li) if cfg.stage2_differential else (None, None)

    # the scale s of both stages' logits is applied to the small token matrix T (2n x d per head)
    # rather than to the (N x d) queries and keys: s (T k^T) = (s T) k^T, s (q T^T) = q (s T)^T
    Ts = T * s                                                                  # (B, h, 2n, d)

    # 4. Stage I: global contrast, the tokens attend to all N keys
    kT = k.swapaxes(-1, -2)                                                     # (B, h, d, N)
    if cfg.stage1_differential:
        S1, c_s1 = softmax_forward(Ts @ kT)                                     # (B, h, 2n, N)
        U = S1 @ v                                                              # (B, h, 2n, d)
        Z1, c_dc1 = diff_combine_forward(U[:, :, :n], U[:, :, n:], lam1)        # (B, h, n, d)
        # (1 - li) RMSNorm(Z; w) = RMSNorm(Z; (1 - li) w): the scale rides on the (d,) weight
        Vh, c_n1 = rmsnorm_forward(Z1, (1.0 - li) * params["stage1.norm.weight"], eps)  # (B, h, n, d)
    else:
        S1, c_s1 = softmax_forward(Ts[:, :, :n] @ kT)                           # (B, h, n, N)
        Vh, c_dc1, c_n1 = S1 @ v, None, None                                    # (B, h, n, d)

    # 5. Stage II: every query attends to the contrast tokens
    if cfg.stage2_differential:
        L2 = q @ Ts.swapaxes(-1, -2)                                            # (B, h, N, 2n)
        if cfg.stage2_softmax == "joint":
            S2, c_s2 = softmax_forward(L2)                                      # (B, h, N, 2n)
            Sp, Sn = S2[..., :n], S2[..., n:]                                   # (B, h, N, n)
        else:
            Sp, c_sp = softmax_forward(L2[..., :n])                             # (B, h, N, n)
            Sn, c_sn = softmax_forward(L2[..., n:])                             # (B, h, N, n)
            c_s2 = (c_sp, c_sn)
        A, c_dc2 = diff_combine_forward(Sp, Sn, lam2)                           # (B, h, N, n)
        # the (1 - li) scale folded into the norm weight, as in stage I (saves a pass over N x d)
        O, c_n2 = rmsnorm_forward(A @ Vh, (1.0 - li) * params["stage2.norm.weight"], eps)  # (B, h, N, d)
    else:
        A, c_s2 = softmax_forward(q @ Ts[:, :, :n].swapaxes(-1, -2))            # (B, h, N, n)
        O, c_dc2, c_n2 = A @ Vh, None, None                                     # (B, h, N, d)

    # 6. merge heads, depthwise-conv residual on the patch rows
    Om = merge_heads(O)                                                         # (B, N, C)
    c_dwc = None
    if cfg.use_dwconv:
        vp = merge_heads(v[:, :, P:]).reshape(B, H, W, C)                       # (B, H, W, C)
        D, c_dwc = dwconv3x3_forward(vp, params["dwc.weight"], params["dwc.bias"])
        Om[:, P:] += D.reshape(B, H * W, C)
    # 7. output projection
    y, c_proj = linear_forward(Om, params["proj.weight"], params["proj.bias"])  # (B, N, C)
    cache = VCACache(cfg, c_qkv, q, k, v, c_pool, Ts, c_lam1, c_lam2, c_s1, c_dc1, c_n1, Vh,
                     c_s2, c_dc2, A, c_n2, c_dwc, c_proj)
    return y, cache


def vca_backward(dy, cache: VCACache):
    """Return ``(dx, grads)``: dx (B, N, C) and a dict of parameter gradients (same names)."""
    c, cfg = cache, cache.cfg
    xp = get_array_module(dy)
    B, N, C = dy.shape
    h, n, P = cfg.num_heads, cfg.num_contrast_tokens, cfg.num_prefix_tokens
    (H, W), s, li = cfg.grid_size, cfg.head_dim ** -0.5, cfg.lambda_init
    Ts, Vh = c.Ts, c.Vh
    g = {}

    # 7. y = Om Wproj^T + bproj
    dOm, g["proj.weight"], g["proj.bias"] = linear_backward(dy, c.proj)        # (B, N, C)
    # 6. Om[:, P:] += DWConv(v_patch)
    if cfg.use_dwconv:
        dvp, g["dwc.weight"], g["dwc.bias"] = dwconv3x3_backward(
            dOm[:, P:].reshape(B, H, W, C), c.dwc)                              # (B, H, W, C)
    dO = split_heads(dOm, h)                                                    # (B, h, N, d)

    # 5. Stage II
    if cfg.stage2_differential:
        # O = RMSNorm(Z2; (1 - li) w2),  Z2 = A Vh
        dZ2, dw2 = rmsnorm_backward(dO, c.n2)                                   # (B, h, N, d)
        g["stage2.norm.weight"] = (1.0 - li) * dw2                              # (d,)
        dA = dZ2 @ Vh.swapaxes(-1, -2)                                          # (B, h, N, n)
        dVh = c.A.swapaxes(-1, -2) @ dZ2                                        # (B, h, n, d)
        # A = Sp - lam2 Sn
        dSp, dSn, dlam2 = diff_combine_backward(dA, c.dc2)                      # (B, h, N, n)
        _lambda_grads(g, 2, dlam2, c.lam2)
        # [Sp | Sn] = softmax(L2) (joint) or [softmax(L2+) | softmax(L2-)] (separate)
        if cfg.stage2_softmax == "joint":
            dL2 = softmax_backward(xp.concatenate([dSp, dSn], axis=-1), c.s2)   # (B, h, N, 2n)
        else:
            dL2 = xp.concatenate([softmax_backward(dSp, c.s2[0]),
                                  softmax_backward(dSn, c.s2[1])], axis=-1)     # (B, h, N, 2n)
        # L2 = q (s T)^T
        dq = dL2 @ Ts                                                           # (B, h, N, d)
        dT = (dL2.swapaxes(-1, -2) @ c.q) * s                                   # (B, h, 2n, d)
    else:
        # O = A Vh,  A = softmax(q (s T+)^T)
        dVh = c.A.swapaxes(-1, -2) @ dO                                         # (B, h, n, d)
        dL2 = softmax_backward(dO @ Vh.swapaxes(-1, -2), c.s2)                  # (B, h, N, n)
        dq = dL2 @ Ts[:, :, :n]                                                 # (B, h, N, d)
        dT = xp.zeros(Ts.shape, dtype=dy.dtype)                                 # (B, h, 2n|n, d)
        dT[:, :, :n] = (dL2.swapaxes(-1, -2) @ c.q) * s

    # 4. Stage I
    S1 = c.s1.y
    if cfg.stage1_differential:
        # Vh = RMSNorm(Z1; (1 - li) w1),  Z1 = U+ - lam1 U-
        dZ1, dw1 = rmsnorm_backward(dVh, c.n1)                                  # (B, h, n, d)
        g["stage1.norm.weight"] = (1.0 - li) * dw1                              # (d,)
        dUp, dUn, dlam1 = diff_combine_backward(dZ1, c.dc1)
        _lambda_grads(g, 1, dlam1, c.lam1)
        dU = xp.concatenate([dUp, dUn], axis=2)                                 # (B, h, 2n, d)
        rows = slice(None)
    else:
        dU, rows = dVh, slice(0, n)                                             # Vh = S1 v
    # U = S1 v,  S1 = softmax((s T) k^T)
    dv = S1.swapaxes(-1, -2) @ dU                                               # (B, h, N, d)
    dL1 = softmax_backward(dU @ c.v.swapaxes(-1, -2), c.s1)                     # (B, h, 2n|n, N)
    dT[:, :, rows] += (dL1 @ c.k) * s                                           # (B, h, 2n|n, d)
    dk = dL1.swapaxes(-1, -2) @ Ts[:, :, rows]                                  # (B, h, N, d)

    # 2. T = [t0 + E+ ; t0 + E-]  (E- = E+ when tied)
    dtp = dT[:, :, :n]                                                          # (B, h, n, d)
    dt0 = dtp + dT[:, :, n:] if Ts.shape[2] == 2 * n else dtp                   # (B, h, n, d)
    if cfg.has_e_neg:
        g["e_pos"] = merge_heads(dtp.sum(axis=0, keepdims=True))                # (1, n, C)
        g["e_neg"] = merge_heads(dT[:, :, n:].sum(axis=0, keepdims=True))       # (1, n, C)
    else:
        g["e_pos"] = merge_heads(dt0.sum(axis=0, keepdims=True))                # (1, n, C)
    # 1. t0 = AvgPool(q_patch)
    if cfg.pool_queries:
        dq[:, :, P:] += adaptive_avg_pool_backward(dt0, c.pool)                 # (B, h, HW, d)
    # 6 (continued). the conv read v_patch
    if cfg.use_dwconv:
        dv[:, :, P:] += split_heads(dvp.reshape(B, H * W, C), h)
    # 0. q, k, v = split(x Wqkv^T + bqkv)
    dx, g["qkv.weight"], g["qkv.bias"] = linear_backward(merge_qkv(dq, dk, dv), c.qkv)
    return dx, g


def _lambda_grads(g: dict, j: int, dlam, lam_cache) -> None:
    for name, grad in zip(LAMBDA_NAMES, lambda_backward(dlam, lam_cache)):
        g[f"stage{j}.{name}"] = grad
