"""Attention modules: MultiHeadSelfAttention and VisualContrastAttention.

Both hold their parameters under the PyTorch names of docs/spec.md, chain the pure op pairs of
:mod:`vca_ref.ops.mhsa` / :mod:`vca_ref.ops.vca`, keep the cache of the last
``forward`` and fill ``self.grads`` in ``backward``.

Shapes: x (B, N, C) -> y (B, N, C).
"""
from __future__ import annotations

import numpy as np

from vca_ref.backend import get_array_module
from vca_ref.ops._checks import check_array
from vca_ref.ops.mhsa import mhsa_backward, mhsa_forward
from vca_ref.ops.vca import vca_backward, vca_forward
from vca_ref.ops.vca_config import LAMBDA_NAMES, VCAConfig, _is_int
from vca_ref.nn import init
from vca_ref.nn.module import Module


def _check_dout(dout, out_shape, dtype, name: str):
    if out_shape is None:
        raise RuntimeError(f"{name}.backward called before forward")
    check_array(dout, "dout", dtype=dtype, finite=False)
    if tuple(dout.shape) != tuple(out_shape):
        raise ValueError(f"dout must have the output's shape {tuple(out_shape)}, got {tuple(dout.shape)}")


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
        if not _is_int(dim) or not _is_int(num_heads) or dim < 1 or num_heads < 1:
            raise ValueError(f"dim and num_heads must be positive ints, got {dim!r}, {num_heads!r}")
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

    def forward(self, x):
        """x (B, N, C) -> y (B, N, C)."""
        check_array(x, "x", ndim=3, dtype=self.dtype, last=self.dim)
        p = self.params
        y, self.cache = mhsa_forward(x, p["qkv.weight"], p["qkv.bias"], p["proj.weight"],
                                     p["proj.bias"], self.num_heads)
        self._out_shape = y.shape
        return y

    def backward(self, dout):
        """dout (B, N, C) -> dx (B, N, C); fills ``self.grads``."""
        _check_dout(dout, getattr(self, "_out_shape", None), self.dtype, type(self).__name__)
        dx, *gs = mhsa_backward(dout, self.cache)
        self.grads = dict(zip(["qkv.weight", "qkv.bias", "proj.weight", "proj.bias"], gs))
        return dx

    def macs(self, num_tokens: int) -> int:
        """Multiply-accumulates of one forward per sample: 4 N C^2 + 2 N^2 C."""
        N, C = num_tokens, self.dim
        return 4 * N * C * C + 2 * N * N * C


class VisualContrastAttention(Module):
    """Visual-Contrast Attention (linear differential attention), docs/spec.md.

    Args:
        dim: channels C.   num_heads: h (must divide C).
        grid_size: (H, W) patch grid (an int means square).
        pool_size: (h', w') contrast grid, at most the patch grid.
        num_prefix_tokens: P, tokens before the patch grid (1 for a class token).
        layer_index: 0-based block index, sets lambda_init = 0.8 - 0.6 exp(-0.3 l).
        stage2_softmax, tied_embeddings, pool_queries, use_dwconv, differential:
            the ablation options, see :class:`vca_ref.ops.vca_config.VCAConfig`.
        seed, dtype: as for :class:`MultiHeadSelfAttention`.

    Shapes: x (B, P + H*W, C) -> y (B, P + H*W, C).
    """

    def __init__(self, dim: int, num_heads: int, grid_size, pool_size, num_prefix_tokens: int = 0,
                 layer_index: int = 0, *, stage2_softmax: str = "joint", tied_embeddings: bool = False,
                 pool_queries: bool = True, use_dwconv: bool = True, differential: str = "both",
                 seed=0, dtype=np.float32):
        super().__init__(dtype)
        self.config = VCAConfig(dim, num_heads, grid_size, pool_size, num_prefix_tokens, layer_index,
                                stage2_softmax, tied_embeddings, pool_queries, use_dwconv, differential)
        self.dim, self.num_heads = dim, num_heads
        rng, dt = init.as_rng(seed), self.dtype
        for name, shape in self.config.param_shapes().items():
            if name.endswith(("qkv.weight", "proj.weight")):
                self.params[name] = init.trunc_normal(rng, shape, dtype=dt)
            elif name.endswith(("qkv.bias", "proj.bias")):
                self.params[name] = init.zeros(shape, dt)
            elif name in ("e_pos", "e_neg"):
                self.params[name] = init.normal(rng, shape, 1.0, dt)            # N(0, 1)
            elif name.split(".")[-1] in LAMBDA_NAMES:
                self.params[name] = init.normal(rng, shape, 0.1, dt)            # N(0, 0.1^2)
            elif name.endswith("norm.weight"):
                self.params[name] = init.ones(shape, dt)
            elif name == "dwc.weight":                                          # PyTorch conv default
                self.params[name] = init.uniform(rng, shape, 1.0 / 3.0, dt)     # fan_in = 9
            elif name == "dwc.bias":
                self.params[name] = init.uniform(rng, shape, 1.0 / 3.0, dt)

    def forward(self, x):
        """x (B, P + H*W, C) -> y (B, P + H*W, C)."""
        cfg = self.config
        check_array(x, "x", ndim=3, dtype=self.dtype, last=self.dim)
        if x.shape[1] != cfg.num_tokens:
            raise ValueError(
                f"x has {x.shape[1]} tokens but the layer expects P + H*W = {cfg.num_prefix_tokens} + "
                f"{cfg.grid_size[0]}*{cfg.grid_size[1]} = {cfg.num_tokens}")
        y, self.cache = vca_forward(x, self.params, cfg)
        self._out_shape = y.shape
        return y

    def backward(self, dout):
        """dout (B, N, C) -> dx (B, N, C); fills ``self.grads``."""
        _check_dout(dout, getattr(self, "_out_shape", None), self.dtype, type(self).__name__)
        dx, self.grads = vca_backward(dout, self.cache)
        return dx

    def macs(self, num_tokens: int | None = None) -> int:
        """Multiply-accumulates of one forward per sample: 4 N C^2 + 7 n N C (+ pooling, conv)."""
        cfg = self.config
        N = cfg.num_tokens if num_tokens is None else num_tokens
        C, n = cfg.dim, cfg.num_contrast_tokens
        return 4 * N * C * C + 7 * n * N * C

    def lambdas(self) -> dict[str, float]:
        """Current lambda_1, lambda_2 values (float), for inspection."""
        from vca_ref.ops.lambdas import lambda_forward
        out = {}
        for j in (1, 2):
            if f"stage{j}.lambda_q1" in self.params:
                lam, _ = lambda_forward(*(self.params[f"stage{j}.{k}"] for k in LAMBDA_NAMES),
                                        self.config.lambda_init)
                out[f"lambda{j}"] = float(lam)
        return out
