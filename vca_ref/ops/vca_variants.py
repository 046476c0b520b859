"""The ablations of VCA, composed from the same stage-level pairs as the paper's layer.

Each option of :class:`~vca_ref.ops.vca_config.VCAConfig` swaps one piece of the layer:

=========  ===========================  ==================================================
piece      the paper (ops/vca.py)       alternatives
=========  ===========================  ==================================================
streams    E = [E+ ; E-]                [E+ ; E+] (tied), E+ alone (no stage differential)
tokens     AvgPool(q_patch) + E         E alone (no pooling, "embeddings only")
stage1     differential                 plain attention of T+ over the keys
stage2     one joint softmax over 2n    two softmaxes of n (separate), plain attention of q over T+
residual   depthwise conv of v_patch    none
=========  ===========================  ==================================================

:func:`compose` reads the options once and returns the pieces; :func:`vca_variant_forward`
walks the steps of :func:`vca_ref.ops.vca.vca_forward` with them, and
:func:`vca_variant_backward` walks back through the pieces recorded in the cache.  A plain
(single-stream) stage reads T+ alone, the first n rows of T, so its gradient fills only those.

Piece signatures (params: the parameter dict, PyTorch names; grads: a dict under those names):
    streams   forward(params) -> E (S, n, C)                     backward(dE) -> grads
    tokens    forward(q_patch, E, cfg) -> (T, cache)             backward(dT, cache) -> (dq_patch, dE)
    stage1    forward(T, k, v, params, cfg) -> (Vh, cache)       backward(dVh, cache) -> (dT, dk, dv, grads)
    stage2    forward(q, T, Vh, params, cfg) -> (O, cache)       backward(dO, cache) -> (dq, dT, dVh, grads)
    residual  forward(o, v_patch, params, cfg) -> (y, cache)     backward(dout, cache) -> (do, dv_patch, grads)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.attention import attention_backward, attention_forward
from vca_ref.ops.heads import merge_heads, merge_qkv, split_heads, split_qkv
from vca_ref.ops.lambdas import lambda_backward, lambda_forward
from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.vca import stage_grads, stage_lambdas, vca_backward, vca_forward
from vca_ref.ops.vca_config import VCAConfig
from vca_ref.ops.vca_dwc import dwc_residual_backward, dwc_residual_forward
from vca_ref.ops.vca_stage1 import stage1_backward, stage1_forward
from vca_ref.ops.vca_stage2 import (stage2_backward, stage2_forward, stage2_separate_backward,
                                    stage2_separate_forward)
from vca_ref.ops.vca_tokens import (contrast_tokens_backward, contrast_tokens_forward,
                                    embedding_tokens_backward, embedding_tokens_forward)


class Piece(NamedTuple):
    forward: Callable
    backward: Callable


class Variant(NamedTuple):
    streams: Piece
    tokens: Piece
    stage1: Piece
    stage2: Piece
    residual: Piece


class DiffStageCache(NamedTuple):
    lam: object         # LambdaCache
    stage: object       # Stage1Cache or Stage2Cache


class PlainStageCache(NamedTuple):
    attn: object        # AttentionCache
    t_shape: tuple      # (B, h, S n, d) the shape of T, of which the stage read the first n rows


# ------------------------------------------------------------------ streams: E (S, n, C)
def _stack(*embeddings):
    return get_array_module(embeddings[0]).concatenate(embeddings)            # (S, n, C)


TWO_STREAMS = Piece(        # E = [E+ ; E-]
    lambda params: _stack(params["e_pos"], params["e_neg"]),
    lambda dE: {"e_pos": dE[:1], "e_neg": dE[1:]})
TIED_STREAMS = Piece(       # E = [E+ ; E+]: one parameter read by both streams, its gradient summed
    lambda params: _stack(params["e_pos"], params["e_pos"]),
    lambda dE: {"e_pos": dE[:1] + dE[1:]})
ONE_STREAM = Piece(         # E = E+ (no stage is differential)
    lambda params: params["e_pos"],
    lambda dE: {"e_pos": dE})

# ------------------------------------------------------------------ tokens: T (B, h, S n, d)
POOLED_TOKENS = Piece(
    lambda q_patch, E, cfg: contrast_tokens_forward(q_patch, E, cfg.grid_size, cfg.pool_size),
    contrast_tokens_backward)
EMBEDDING_TOKENS = Piece(   # the tokens do not read the queries: their gradient is 0
    lambda q_patch, E, cfg: embedding_tokens_forward(E, q_patch.shape[0], cfg.num_heads),
    lambda dT, cache: (0.0, embedding_tokens_backward(dT, cache)))


# ------------------------------------------------------------------ stages
def _rows_of_T(dTp, t_shape):
    """The gradient of T from that of its first n rows T+ (the other rows were not read)."""
    xp = get_array_module(dTp)
    B, h, n, d = dTp.shape
    zeros = xp.zeros((B, h, t_shape[2] - n, d), dtype=dTp.dtype)              # (B, h, S n - n, d)
    return xp.concatenate([dTp, zeros], axis=2)                                # (B, h, S n, d)


def _differential_stage(j: int, forward, backward) -> Piece:
    """Stage j as a differential stage: its lambda (step 3) and the stage pair."""
    def stage_forward(a, b, c, params, cfg):           # (T, k, v) for Stage I, (q, T, Vh) for Stage II
        lam, c_lam = lambda_forward(*stage_lambdas(params, j), cfg.lambda_init)   # ()
        out, c_stage = forward(a, b, c, lam, params[f"stage{j}.norm.weight"], cfg.lambda_init,
                               cfg.norm_eps)
        return out, DiffStageCache(lam=c_lam, stage=c_stage)

    def stage_backward(dout, cache: DiffStageCache):
        *dinputs, dlam, dnorm_w = backward(dout, cache.stage)
        return (*dinputs, stage_grads(j, lambda_backward(dlam, cache.lam), dnorm_w))
    return Piece(stage_forward, stage_backward)


def _stage1_plain_forward(T, k, v, params, cfg):
    Vh, c_attn = attention_forward(T[:, :, :cfg.num_contrast_tokens], k, v)   # (B, h, n, d)
    return Vh, PlainStageCache(attn=c_attn, t_shape=T.shape)


def _stage1_plain_backward(dout, cache: PlainStageCache):
    # Vh = softmax(s T+ k^T) v
    dTp, dk, dv = attention_backward(dout, cache.attn)                         # (B, h, n, d), (B, h, N, d)
    return _rows_of_T(dTp, cache.t_shape), dk, dv, {}


def _stage2_plain_forward(q, T, Vh, params, cfg):
    O, c_attn = attention_forward(q, T[:, :, :cfg.num_contrast_tokens], Vh)   # (B, h, N, d)
    return O, PlainStageCache(attn=c_attn, t_shape=T.shape)


def _stage2_plain_backward(dout, cache: PlainStageCache):
    # O = softmax(s q T+^T) Vh
    dq, dTp, dVh = attention_backward(dout, cache.attn)                        # (B, h, N, d), (B, h, n, d)
    return dq, _rows_of_T(dTp, cache.t_shape), dVh, {}


STAGE1_DIFFERENTIAL = _differential_stage(1, stage1_forward, stage1_backward)
STAGE1_PLAIN = Piece(_stage1_plain_forward, _stage1_plain_backward)
STAGE2_JOINT = _differential_stage(2, stage2_forward, stage2_backward)
STAGE2_SEPARATE = _differential_stage(2, stage2_separate_forward, stage2_separate_backward)
STAGE2_PLAIN = Piece(_stage2_plain_forward, _stage2_plain_backward)


# ------------------------------------------------------------------ residual
def _dwc_backward(dout, cache):
    do, dv_patch, dw, db = dwc_residual_backward(dout, cache)
    return do, dv_patch, {"dwc.weight": dw, "dwc.bias": db}


DWC_RESIDUAL = Piece(
    lambda o, v_patch, params, cfg: dwc_residual_forward(o, v_patch, params["dwc.weight"],
                                                         params["dwc.bias"], cfg.grid_size),
    _dwc_backward)
NO_RESIDUAL = Piece(        # y = o: nothing reads the patch values, their gradient is 0
    lambda o, v_patch, params, cfg: (o, None),
    lambda dout, cache: (dout, 0.0, {}))


def compose(cfg: VCAConfig) -> Variant:
    """The pieces of the layer ``cfg`` describes: the one place the options are read."""
    streams = (TWO_STREAMS if cfg.has_e_neg
               else TIED_STREAMS if cfg.stage1_differential or cfg.stage2_differential
               else ONE_STREAM)
    stage2 = ((STAGE2_SEPARATE if cfg.stage2_softmax == "separate" else STAGE2_JOINT)
              if cfg.stage2_differential else STAGE2_PLAIN)
    return Variant(streams=streams,
                   tokens=POOLED_TOKENS if cfg.pool_queries else EMBEDDING_TOKENS,
                   stage1=STAGE1_DIFFERENTIAL if cfg.stage1_differential else STAGE1_PLAIN,
                   stage2=stage2,
                   residual=DWC_RESIDUAL if cfg.use_dwconv else NO_RESIDUAL)


class VariantCache(NamedTuple):
    cfg: VCAConfig
    parts: Variant      # the pieces the forward ran, walked back by the backward
    qkv: object         # LinearCache
    tok: object
    s1: object
    s2: object
    res: object
    proj: object        # LinearCache


def vca_variant_forward(x, params: dict, cfg: VCAConfig):
    """VCA with any options of ``cfg`` on x (B, N, C) -> ``(y, cache)``; the steps of ``vca_forward``."""
    parts = compose(cfg)
    h, P = cfg.num_heads, cfg.num_prefix_tokens
    # 0. projections
    qkv, c_qkv = linear_forward(x, params["qkv.weight"], params["qkv.bias"])      # (B, N, 3C)
    q, k, v = split_qkv(qkv, h)                                                    # (B, h, N, d) each
    # 1-2. contrast tokens, one bank per stream
    E = parts.streams.forward(params)                                              # (S, n, C)
    T, c_tok = parts.tokens.forward(q[:, :, P:], E, cfg)                           # (B, h, S n, d)
    # 3-4. Stage I (with its lambda when differential)
    Vh, c_s1 = parts.stage1.forward(T, k, v, params, cfg)                          # (B, h, n, d)
    # 3, 5. Stage II (with its lambda when differential)
    O, c_s2 = parts.stage2.forward(q, T, Vh, params, cfg)                          # (B, h, N, d)
    # 6. merge heads, residual
    Om, c_res = parts.residual.forward(merge_heads(O), v[:, :, P:], params, cfg)  # (B, N, C)
    # 7. output projection
    y, c_proj = linear_forward(Om, params["proj.weight"], params["proj.bias"])     # (B, N, C)
    return y, VariantCache(cfg=cfg, parts=parts, qkv=c_qkv, tok=c_tok, s1=c_s1, s2=c_s2,
                           res=c_res, proj=c_proj)


def vca_variant_backward(dout, cache: VariantCache):
    """Return ``(dx, grads)`` as :func:`vca_ref.ops.vca.vca_backward` does."""
    c, parts = cache, cache.parts
    h, P = c.cfg.num_heads, c.cfg.num_prefix_tokens
    # 7. y = Om Wproj^T + bproj
    dOm, dproj_w, dproj_b = linear_backward(dout, c.proj)                          # (B, N, C)
    # 6. Om = residual(merge(O), v_patch)
    dOm, dv_patch, g_res = parts.residual.backward(dOm, c.res)                     # (B, N, C)
    # 5. O = Stage II(q, T, Vh)
    dq, dT2, dVh, g2 = parts.stage2.backward(split_heads(dOm, h), c.s2)            # (B, h, N, d), ...
    # 4. Vh = Stage I(T, k, v)
    dT1, dk, dv, g1 = parts.stage1.backward(dVh, c.s1)                             # (B, h, S n, d), ...
    # 1-2. T read by both stages
    dq_patch, dE = parts.tokens.backward(dT1 + dT2, c.tok)                         # (B, h, HW, d), (S, n, C)
    g_e = parts.streams.backward(dE)
    # 0. q, k, v = split(x Wqkv^T + bqkv)
    dq[:, :, P:] += dq_patch
    dv[:, :, P:] += dv_patch
    dx, dqkv_w, dqkv_b = linear_backward(merge_qkv(dq, dk, dv), c.qkv)             # (B, N, C)
    return dx, {"qkv.weight": dqkv_w, "qkv.bias": dqkv_b, "proj.weight": dproj_w,
                "proj.bias": dproj_b, **g_e, **g1, **g2, **g_res}


def vca_pair(cfg: VCAConfig) -> tuple[Callable, Callable]:
    """The ``(forward, backward)`` pair for ``cfg``: the paper's layer, or its composed variant."""
    if cfg.is_paper_layer:
        return vca_forward, vca_backward
    return vca_variant_forward, vca_variant_backward
