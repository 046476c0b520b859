"""Fast twins of the adaptive-pooling pair (:mod:`vca_ref.ops.pooling`), on NumPy and CuPy.

The pooling bins are products of a row bin and a column bin, so the pooling matrix is
M = Mh kron Mw with Mh (h', H) and Mw (w', W) the 1-D pooling matrices.  The twins apply M as
two small products on the (H, W) grid (first along W, then along H): H*W*w'*d + h'*H*w'*d
multiply-adds per head instead of n*H*W*d for the dense M, and no (n, H*W) matrix in memory
(4 MiB at N = 16,384).
"""
from __future__ import annotations

from vca_ref.backend import get_array_module
from vca_ref.ops.pooling import PoolCache, pool_matrix


def _factors(grid, pool, dtype, xp):
    """The 1-D pooling matrices Mh (h', H) and Mw (w', W)."""
    (H, W), (ph, pw) = grid, pool
    return pool_matrix((H, 1), (ph, 1), dtype, xp), pool_matrix((W, 1), (pw, 1), dtype, xp)


def adaptive_avg_pool_forward(x, grid, pool):
    """Twin of :func:`vca_ref.ops.pooling.adaptive_avg_pool_forward`."""
    (H, W), (ph, pw) = grid, pool
    Mh, Mw = _factors(grid, pool, x.dtype, get_array_module(x))   # (h', H), (w', W)
    lead, d = x.shape[:-2], x.shape[-1]
    # pool along W first; it works on the (W, d) blocks of x as they lie (x may be a strided
    # view), leaving a w'/W times smaller array for the pass along H
    u = Mw @ x.reshape(*lead, H, W, d)                         # (..., H, w', d)
    t = Mh @ u.reshape(*lead, H, pw * d)                       # (..., h', w' d)
    return t.reshape(*lead, ph * pw, d), PoolCache(grid=tuple(grid), pool=tuple(pool))


def adaptive_avg_pool_backward(dout, cache: PoolCache):
    """Twin of :func:`vca_ref.ops.pooling.adaptive_avg_pool_backward`."""
    (H, W), (ph, pw) = cache.grid, cache.pool
    Mh, Mw = _factors(cache.grid, cache.pool, dout.dtype, get_array_module(dout))
    lead, d = dout.shape[:-2], dout.shape[-1]
    du = Mw.T @ dout.reshape(*lead, ph, pw, d)                 # (..., h', W, d)
    dx = Mh.T @ du.reshape(*lead, ph, W * d)                   # (..., H, W d)
    return dx.reshape(*lead, H * W, d)
