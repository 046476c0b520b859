"""Adaptive average pooling of a token grid, with PyTorch's bin rule.

A token grid x (..., H*W, d) (row-major H x W) is pooled to (..., h'*w', d).
Output bin (i, j) averages rows  floor(i H / h') .. ceil((i+1) H / h') - 1  and
columns floor(j W / w') .. ceil((j+1) W / w') - 1, exactly like
``torch.nn.functional.adaptive_avg_pool2d``; bins may overlap or differ in size
when the grid does not divide evenly.

Pooling is linear, so it is one matrix product with a fixed pooling matrix
M (n, H*W) whose row (i, j) holds 1/|bin| on the bin's cells:

    forward:   t  = M x            (..., n, d)
    backward:  dx = M^T dout       (..., H*W, d)

(M = Mh kron Mw, the product of the 1-D pooling matrices of the rows and the columns; the fast
twin in vca_ref/fast applies it as two small products on the (H, W) grid.)
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from vca_ref.backend import get_array_module
from vca_ref.fast import overridable


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
    grid: tuple     # (H, W) token grid of the input
    pool: tuple     # (h', w') pooled grid


@overridable
def adaptive_avg_pool_forward(x, grid: tuple[int, int], pool: tuple[int, int]):
    """Pool tokens x (..., H*W, d) laid out on ``grid=(H, W)`` to ``pool=(h', w')``.

    Returns ``t`` (..., h'*w', d).
    """
    H, W = grid
    if x.shape[-2] != H * W:
        raise ValueError(f"pooling expects {H}*{W}={H * W} tokens, got {x.shape[-2]}")
    M = pool_matrix(grid, pool, x.dtype, get_array_module(x))  # (n, H*W)
    t = M @ x                                                  # (..., n, d)
    return t, PoolCache(grid=tuple(grid), pool=tuple(pool))


@overridable
def adaptive_avg_pool_backward(dout, cache: PoolCache):
    """Return ``dx`` (..., H*W, d)."""
    M = pool_matrix(cache.grid, cache.pool, dout.dtype, get_array_module(dout))  # (n, H*W)
    # t = M @ x
    dx = M.T @ dout                                            # (..., H*W, d)
    return dx
