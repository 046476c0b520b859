"""VCA steps 1-2: the visual-contrast tokens, one bank of n tokens per positional embedding.

Legend: B batch, h heads, d head dim, C = h d, H x W patch grid, n = h'*w' contrast tokens,
S streams (2 in the paper: T+ and T-), E (S, n, C) the stacked embeddings [E+ ; E-].

Forward (pooled, the paper):
    1. t0 = AvgPool(q_patch)                         (B, h, n, d)  the patch queries on the (H, W) grid
    2. T  = [t0 + E_1 ; ... ; t0 + E_S]              (B, h, S n, d)  E_s viewed per head (1, h, n, d)
Forward (embeddings only, the "no pooling" ablation):
       T  = [E_1 ; ... ; E_S]                        (B, h, S n, d)  the same bank for every sample

Backward (dout = dT given), in reverse:
    2. dt0 = sum_s dT_s;   dE_s = sum_B dT_s         (merged back to (n, C))
    1. dq_patch = AvgPool^T(dt0)

Stacking the embeddings makes the variants plain arguments: E = [E+ ; E-] (the paper),
[E+ ; E+] (tied: the caller sums the two gradients) or E+ alone (one stream, no differential).
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.backend import get_array_module
from vca_ref.ops.heads import merge_heads, split_heads
from vca_ref.ops.pooling import adaptive_avg_pool_backward, adaptive_avg_pool_forward


class ContrastTokensCache(NamedTuple):
    pool: object        # PoolCache
    num_streams: int    # S


class EmbeddingTokensCache(NamedTuple):
    num_streams: int    # S


def _stream_bank(E, num_heads: int):
    """(S, n, C) -> (h, S, n, d): each stream's embedding viewed per head."""
    return split_heads(E, num_heads).swapaxes(0, 1)                          # (h, S, n, d)


def _merge_streams(dbank):
    """Inverse layout of :func:`_stream_bank`: (h, S, n, d) -> (S, n, C)."""
    return merge_heads(dbank.swapaxes(0, 1))                                 # (S, n, C)


def contrast_tokens_forward(q_patch, E, grid_size: tuple[int, int], pool_size: tuple[int, int]):
    """Pooled patch queries plus each stream's embedding.

    q_patch (B, h, H*W, d), E (S, n, C) -> T (B, h, S*n, d).
    """
    B, h, _, d = q_patch.shape
    S, n, _ = E.shape
    # 1. pool the patch queries to the contrast grid
    t0, c_pool = adaptive_avg_pool_forward(q_patch, grid_size, pool_size)     # (B, h, n, d)
    # 2. one bank per embedding
    T = t0[:, :, None] + _stream_bank(E, h)                                  # (B, h, S, n, d)
    return T.reshape(B, h, S * n, d), ContrastTokensCache(pool=c_pool, num_streams=S)


def contrast_tokens_backward(dout, cache: ContrastTokensCache):
    """Return ``(dq_patch, dE)``: dq_patch (B, h, H*W, d), dE (S, n, C)."""
    B, h, Sn, d = dout.shape
    S = cache.num_streams
    dT = dout.reshape(B, h, S, Sn // S, d)                                   # (B, h, S, n, d)
    # 2. T_s = t0 + E_s
    dt0 = dT.sum(axis=2)                                                     # (B, h, n, d)
    dE = _merge_streams(dT.sum(axis=0))                                      # (S, n, C)
    # 1. t0 = AvgPool(q_patch)
    return adaptive_avg_pool_backward(dt0, cache.pool), dE                   # (B, h, H*W, d)


def embedding_tokens_forward(E, batch: int, num_heads: int):
    """The tokens from the embeddings alone (no pooling): E (S, n, C) -> T (B, h, S*n, d)."""
    xp = get_array_module(E)
    S, n, C = E.shape
    bank = _stream_bank(E, num_heads).reshape(1, num_heads, S * n, C // num_heads)   # (1, h, S n, d)
    T = xp.broadcast_to(bank, (batch,) + bank.shape[1:])                     # (B, h, S n, d)
    return T, EmbeddingTokensCache(num_streams=S)


def embedding_tokens_backward(dout, cache: EmbeddingTokensCache):
    """Return ``dE`` (S, n, C)."""
    B, h, Sn, d = dout.shape
    S = cache.num_streams
    # T = E broadcast over the batch
    return _merge_streams(dout.sum(axis=0).reshape(h, S, Sn // S, d))        # (S, n, C)
