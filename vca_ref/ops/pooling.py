"""Adaptive average pooling of a token grid, with PyTorch's bin rule.

A token grid x (..., H*W, d) (row-major H x W) is pooled to (..., h'*w', d).
Output bin (i, j) averages rows  floor(i H / h') .. ceil((i+1) H / h') - 1  and
columns floor(j W / w') .. ceil((j+1) W / w') - 1, exactly like
``torch.nn.functional.adaptive_avg_pool2d``; bins may overlap or differ in size
when the grid does not divide evenly.

Pooling is linear, so it is one matrix product with a fixed pooling matrix
M (n, H*W) whose row (i, j) holds 1/|bin| on the bin's cells:

    forward:   t  = M x            (..., n, d)
    backward:  dx = M^T dt         (..., H*W, d)

The bins are products of a row bin and a column bin, so M = Mh kron Mw with Mh (h', H) and
Mw (w', W) the 1-D pooling matrices.  The ops apply M as two small matmuls on the (H, W) grid
(first along W, then along H): H*W*w'*d + h'*H*w'*d multiply-adds per head instead of
n*H*W*d for the dense M, and no (n, H*W) matrix in memory (4 MiB at N = 16,384).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from vca_ref.backend import get_array_module


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pool bins: ``[(start, end), ...]`` half-open, one per output."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


@lru_cache(maxsize=64)
def _pool_matrix_np(H: int, W: int, ph: int, pw: int) -> np.ndarray:
    M = np.zeros((ph * pw, H * W), dtype=np.float64)          # (n, H*W)
    for i, (r0, r1) in enumerate(adaptive_bins(H, ph)):
        for j, (c0, c1) in enumerate(adaptive_bins(W, pw)):
            cells = np.zeros((H, W))
            cells[r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
            M[i * pw + j] = cells.ravel()
    M.setflags(write=False)
    return M


_DEVICE_CACHE: dict = {}


def pool_matrix(grid: tuple[int, int], pool: tuple[int, int], dtype=np.float64, xp=np):
    """The (n, H*W) pooling matrix for ``grid=(H, W)`` -> ``pool=(h', w')`` (memoised)."""
    (H, W), (ph, pw) = grid, pool
    if ph > H or pw > W or ph < 1 or pw < 1:
        raise ValueError(f"pool grid {pool} must be between (1, 1) and the token grid {grid}")
    key = (H, W, ph, pw, np.dtype(dtype).str, xp.__name__)
    if xp is not np:
        key = key + (int(xp.cuda.Device().id),)
    M = _DEVICE_CACHE.get(key)
    if M is None:
        M = xp.asarray(_pool_matrix_np(H, W, ph, pw).astype(dtype))
        _DEVICE_CACHE[key] = M
    return M


class PoolCache(NamedTuple):
    Mh: object      # (h', H) row pooling matrix
    Mw: object      # (w', W) column pooling matrix


def adaptive_avg_pool_forward(x, grid: tuple[int, int], pool: tuple[int, int]):
    """Pool tokens x (..., H*W, d) laid out on ``grid=(H, W)`` to ``pool=(h', w')``.

    Returns ``t`` (..., h'*w', d).
    """
    (H, W), (ph, pw) = grid, pool
    if x.shape[-2] != H * W:
        raise ValueError(f"pooling expects {H}*{W}={H * W} tokens, got {x.shape[-2]}")
    xp = get_array_module(x)
    Mh = pool_matrix((H, 1), (ph, 1), x.dtype, xp)             # (h', H)
    Mw = pool_matrix((W, 1), (pw, 1), x.dtype, xp)             # (w', W)
    lead, d = x.shape[:-2], x.shape[-1]
    # t = (Mh kron Mw) x: pool along W first; it works on the (W, d) blocks of x as they lie
    # (x may be a strided view), leaving a w'/W times smaller array for the pass along H
    u = Mw @ x.reshape(*lead, H, W, d)                         # (..., H, w', d)
    t = Mh @ u.reshape(*lead, H, pw * d)                       # (..., h', w' d)
    return t.reshape(*lead, ph * pw, d), PoolCache(Mh=Mh, Mw=Mw)


def adaptive_avg_pool_backward(dt, cache: PoolCache):
    """Return ``dx`` (..., H*W, d)."""
    Mh, Mw = cache.Mh, cache.Mw
    (ph, H), (pw, W) = Mh.shape, Mw.shape
    lead, d = dt.shape[:-2], dt.shape[-1]
    # t = Mh u,  u = Mw x  (on the (H, W) grid);  the small side first again
    du = Mw.T @ dt.reshape(*lead, ph, pw, d)                   # (..., h', W, d)
    dx = Mh.T @ du.reshape(*lead, ph, W * d)                   # (..., H, W d)
    return dx.reshape(*lead, H * W, d)
