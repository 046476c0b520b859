"""Embedding lookup ``out = table[ids]`` (PyTorch's ``nn.Embedding`` without max_norm/padding).

Shapes: table (V, C)   ids (...) integers in [0, V)   out (..., C)

Backward: row r of the table receives the sum of the upstream rows that looked it up,
    dtable[r] = sum_{i : ids[i] = r} dout[i]
written as ``onehot(ids)^T dout`` so that repeated ids accumulate and the same line runs on
NumPy and CuPy (no scatter-add).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vca_ref.backend import check, get_array_module


class EmbeddingCache(NamedTuple):
    ids: object         # (...) integer ids
    num_rows: int       # V


def embedding_forward(ids, table):
    """Rows of table (V, C) picked by integer ids (...) -> (..., C)."""
    if np.dtype(ids.dtype).kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}")
    V = table.shape[0]
    if ids.size:                                  # on a device: read with the step's one sync
        check((ids.min() >= 0) & (ids.max() < V), lambda: ValueError(
            f"embedding ids must be in [0, {V}), got range [{int(ids.min())}, {int(ids.max())}]"))
    return table[ids], EmbeddingCache(ids=ids, num_rows=V)           # (..., C)


def embedding_backward(dout, cache: EmbeddingCache):
    """Return ``dtable`` (V, C)."""
    xp = get_array_module(dout)
    C = dout.shape[-1]
    ids = cache.ids.reshape(-1)                                       # (M,)
    onehot = (ids[:, None] == xp.arange(cache.num_rows)[None, :]).astype(dout.dtype)  # (M, V)
    # out[i] = table[ids[i]]
    return onehot.T @ dout.reshape(-1, C)                             # (V, C)
