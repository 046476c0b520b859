"""MultiHeadSelfAttention: the module around the MHSA op pair of :mod:`vca_ref.ops.mhsa`.

It holds the parameters under the PyTorch names of docs/spec.md, validates its input once (the
op trusts it), keeps the cache of the last ``forward`` and fills ``self.grads`` in ``backward``.

Shapes: x (B, N, C) -> y (B, N, C).
"""
from __future__ import annotations

import numpy as np

from vca_ref.nn import init
from vca_ref.nn.checks import check_array, check_dout, check_positive_int
from vca_ref.nn.module import Module
from vca_ref.ops.mhsa import mhsa_backward, mhsa_forward


class MultiHeadSelfAttention(Module):
    """Standard softmax attention, ``y = Proj(concat_h softmax(s q k^T) v)``.

    Args:
        dim: channels C.   num_heads: h (must divide C).
        seed: int or ``np.random.Generator`` for the initialisation.
        dtype: float32 (default) or float64; the input must match (see Module).

    Parameters: ``qkv.weight`` (3C, C), ``qkv.bias`` (3C,), ``proj.weight`` (C, C), ``proj.bias`` (C,).
    """

    def __init__(self, dim: int, num_heads: int, *, seed=0, dtype=np.float32):
        super().__init__(dtype)
        check_positive_int(dim, "dim")
        check_positive_int(num_heads, "num_heads")
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        rng, dt = init.as_rng(seed), self.dtype
        self.params = {
            "qkv.weight": init.trunc_normal(rng, (3 * dim, dim), dtype=dt),
            "qkv.bias": init.zeros((3 * dim,), dt),
            "proj.weight": init.trunc_normal(rng, (dim, dim), dtype=dt),
            "proj.bias": init.zeros((dim,), dt),
        }
        self._out_shape = None

    def forward(self, x):
        """x (B, N, C) -> y (B, N, C)."""
        check_array(x, "x", ndim=3, dtype=self.dtype, last=self.dim, device=self.device)
        if x.shape[1] == 0:
            raise ValueError(f"x has 0 tokens (shape {tuple(x.shape)}); attention needs at least 1 token")
        y, self.cache = mhsa_forward(x, self.params, self.num_heads)
        self._out_shape = y.shape
        return y

    def backward(self, dout):
        """dout (B, N, C) -> dx (B, N, C); fills ``self.grads``."""
        check_dout(dout, self._out_shape, self.dtype, type(self).__name__)
        dx, self.grads = mhsa_backward(dout, self.cache)
        return dx

    def macs(self, num_tokens: int) -> int:
        """Multiply-accumulates of one forward per sample: 4 N C^2 + 2 N^2 C."""
        N, C = num_tokens, self.dim
        return 4 * N * C * C + 2 * N * N * C
