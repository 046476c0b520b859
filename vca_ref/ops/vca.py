"""Visual-Contrast Attention (VCA): the paper's layer, composed from its stage-level op pairs.

Legend: B batch, N = P + H*W tokens, C channels, h heads, d = C/h, n = h'*w' contrast
tokens, s = d^-1/2, li = lambda_init.  All per-head arrays are (B, h, ., d).

Forward (numbered as in docs/spec.md):
    0. q, k, v = split(x Wqkv^T + bqkv)                                 (B, h, N, d)
    1. t0 = AvgPool(q[:, :, P:])                                        (B, h, n, d)  ops/vca_tokens.py
    2. T = [t0 + E+ ; t0 + E-]                                          (B, h, 2n, d)
    3. lam_j = exp(lq1_j.lk1_j) - exp(lq2_j.lk2_j) + li                 ()            ops/lambdas.py
    4. S1 = softmax(s T k^T);  U = S1 v                                 (B, h, 2n, d) ops/vca_stage1.py
       Vh = (1 - li) RMSNorm1(U+ - lam1 U-)                             (B, h, n, d)
    5. S2 = softmax(s q T^T)  (one joint softmax over 2n)               (B, h, N, 2n) ops/vca_stage2.py
       A  = S2[..., :n] - lam2 S2[..., n:];  O = (1 - li) RMSNorm2(A Vh)  (B, h, N, d)
    6. Om = merge(O) + [0 ; DWConv3x3(v_patch)]                         (B, N, C)     ops/vca_dwc.py
    7. y = Om Wproj^T + bproj                                           (B, N, C)
Backward runs 7 -> 0 with the same names prefixed by ``d``.  T feeds both stages, q feeds
Stage II and the tokens, v feeds Stage I and the conv: their gradients are summed in plain sight.

This is the layer with every option at the paper's choice (``cfg.is_paper_layer``); the
ablations of :class:`~vca_ref.ops.vca_config.VCAConfig` are composed from the same pieces in
ops/vca_variants.py.  ``params`` holds the parameters under their PyTorch names
(``cfg.param_shapes()``); the backward returns their gradients under the same names.
Cost: 4 N C^2 + 7 n N C (+ ~10 N C elementwise) multiply-accumulates per sample.
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.heads import merge_heads, merge_qkv, split_heads, split_qkv
from vca_ref.ops.lambdas import lambda_backward, lambda_forward
from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.vca_config import LAMBDA_NAMES, VCAConfig
from vca_ref.ops.vca_dwc import dwc_residual_backward, dwc_residual_forward
from vca_ref.ops.vca_stage1 import stage1_backward, stage1_forward
from vca_ref.ops.vca_stage2 import stage2_backward, stage2_forward
from vca_ref.ops.vca_tokens import contrast_tokens_backward, contrast_tokens_forward


class VCACache(NamedTuple):
    cfg: VCAConfig
    qkv: object     # LinearCache                  step 0
    tok: object     # ContrastTokensCache          steps 1-2
    lam1: object    # LambdaCache                  step 3
    lam2: object    # LambdaCache
    s1: object      # Stage1Cache                  step 4
    s2: object      # Stage2Cache                  step 5
    dwc: object     # DWCResidualCache             step 6
    proj: object    # LinearCache                  step 7


def stage_lambdas(params: dict, j: int) -> tuple:
    """Stage j's four lambda vectors ``(lq1, lk1, lq2, lk2)``, each (d,)."""
    return tuple(params[f"stage{j}.{name}"] for name in LAMBDA_NAMES)


def stage_grads(j: int, dlambdas: tuple, dnorm_w) -> dict:
    """Stage j's parameter gradients under their names (the order of ``cfg.param_shapes()``)."""
    return {**{f"stage{j}.{name}": g for name, g in zip(LAMBDA_NAMES, dlambdas)},
            f"stage{j}.norm.weight": dnorm_w}


def vca_forward(x, params: dict, cfg: VCAConfig):
    """The paper's VCA layer on x (B, N, C) -> ``(y, cache)``, y (B, N, C)."""
    if not cfg.is_paper_layer:
        raise ValueError(f"vca_forward computes the paper's layer, but the config sets "
                         f"{cfg.changed_options()}; use vca_ref.ops.vca_variants.vca_variant_forward")
    xp = get_array_module(x)
    h, P, li, eps = cfg.num_heads, cfg.num_prefix_tokens, cfg.lambda_init, cfg.norm_eps
    # 0. projections
    qkv, c_qkv = linear_forward(x, params["qkv.weight"], params["qkv.bias"])      # (B, N, 3C)
    q, k, v = split_qkv(qkv, h)                                                    # (B, h, N, d) each
    # 1-2. visual-contrast tokens: the pooled patch queries plus E+ and E-
    E = xp.concatenate([params["e_pos"], params["e_neg"]])                         # (2, n, C)
    T, c_tok = contrast_tokens_forward(q[:, :, P:], E, cfg.grid_size, cfg.pool_size)  # (B, h, 2n, d)
    # 3. lambdas
    lam1, c_lam1 = lambda_forward(*stage_lambdas(params, 1), li)                   # ()
    lam2, c_lam2 = lambda_forward(*stage_lambdas(params, 2), li)                   # ()
    # 4. Stage I: global contrast, the tokens attend to all N keys
    Vh, c_s1 = stage1_forward(T, k, v, lam1, params["stage1.norm.weight"], li, eps)   # (B, h, n, d)
    # 5. Stage II: every query attends to the contrast tokens
    O, c_s2 = stage2_forward(q, T, Vh, lam2, params["stage2.norm.weight"], li, eps)   # (B, h, N, d)
    # 6. merge heads, depthwise-conv residual on the patch rows
    Om, c_dwc = dwc_residual_forward(merge_heads(O), v[:, :, P:], params["dwc.weight"],
                                     params["dwc.bias"], cfg.grid_size)            # (B, N, C)
    # 7. output projection
    y, c_proj = linear_forward(Om, params["proj.weight"], params["proj.bias"])     # (B, N, C)
    return y, VCACache(cfg=cfg, qkv=c_qkv, tok=c_tok, lam1=c_lam1, lam2=c_lam2, s1=c_s1,
                       s2=c_s2, dwc=c_dwc, proj=c_proj)


def vca_backward(dout, cache: VCACache):
    """Return ``(dx, grads)``: dx (B, N, C) and the parameter gradients under the names of ``params``."""
    c = cache
    h, P = c.cfg.num_heads, c.cfg.num_prefix_tokens
    # 7. y = Om Wproj^T + bproj
    dOm, dproj_w, dproj_b = linear_backward(dout, c.proj)                          # (B, N, C)
    # 6. Om = merge(O) + [0 ; DWConv(v_patch)]
    dOm, dv_patch, ddwc_w, ddwc_b = dwc_residual_backward(dOm, c.dwc)              # (B, N, C), (B, h, HW, d)
    dO = split_heads(dOm, h)                                                       # (B, h, N, d)
    # 5. O = Stage II(q, T, Vh)
    dq, dT2, dVh, dlam2, dnorm2 = stage2_backward(dO, c.s2)                        # dq (B, h, N, d)
    # 4. Vh = Stage I(T, k, v)
    dT1, dk, dv, dlam1, dnorm1 = stage1_backward(dVh, c.s1)                        # dT1 (B, h, 2n, d)
    # 3. lam_j = exp(lq1 . lk1) - exp(lq2 . lk2) + li
    dlambdas1 = lambda_backward(dlam1, c.lam1)                                     # 4 x (d,)
    dlambdas2 = lambda_backward(dlam2, c.lam2)
    # 1-2. T = [AvgPool(q_patch) + E+ ; AvgPool(q_patch) + E-], read by both stages
    dq_patch, dE = contrast_tokens_backward(dT1 + dT2, c.tok)                      # (B, h, HW, d), (2, n, C)
    # 0. q: Stage II and the tokens;  v: Stage I and the conv;  k: Stage I
    dq[:, :, P:] += dq_patch
    dv[:, :, P:] += dv_patch
    dx, dqkv_w, dqkv_b = linear_backward(merge_qkv(dq, dk, dv), c.qkv)             # (B, N, C)
    return dx, {"qkv.weight": dqkv_w, "qkv.bias": dqkv_b,
                "proj.weight": dproj_w, "proj.bias": dproj_b,
                "e_pos": dE[:1], "e_neg": dE[1:],
                **stage_grads(1, dlambdas1, dnorm1), **stage_grads(2, dlambdas2, dnorm2),
                "dwc.weight": ddwc_w, "dwc.bias": ddwc_b}
