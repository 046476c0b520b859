"""VisualContrastAttention: the module around the VCA op pair of :mod:`vca_ref.ops.vca`.

It holds the parameters under the PyTorch names of docs/spec.md (only those its options use),
validates its input once (the ops trust it), keeps the cache of the last ``forward`` and fills
``self.grads`` in ``backward``.

Shapes: x (B, P + H*W, C) -> y (B, P + H*W, C).
"""
from __future__ import annotations

import numpy as np

from vca_ref.nn import init
from vca_ref.nn.checks import check_array, check_dout
from vca_ref.nn.module import Module
from vca_ref.ops.lambdas import lambda_forward
from vca_ref.ops.vca import stage_lambdas
from vca_ref.ops.vca_variants import vca_pair
from vca_ref.ops.vca_config import LAMBDA_NAMES, VCAConfig


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
        lambda_init_scale: s in lambda_init = s (0.8 - 0.6 exp(-0.3 l)) (default 1, the paper).
        embed_init_scale: standard deviation of the E+- initialisation (default 1: N(0, 1)).
        seed, dtype: as for :class:`~vca_ref.nn.mhsa.MultiHeadSelfAttention`.

    Shapes: x (B, P + H*W, C) -> y (B, P + H*W, C).
    """

    def __init__(self, dim: int, num_heads: int, grid_size, pool_size, num_prefix_tokens: int = 0,
                 layer_index: int = 0, *, stage2_softmax: str = "joint", tied_embeddings: bool = False,
                 pool_queries: bool = True, use_dwconv: bool = True, differential: str = "both",
                 lambda_init_scale: float = 1.0, embed_init_scale: float = 1.0,
                 seed=0, dtype=np.float32):
        super().__init__(dtype)
        self.config = VCAConfig(dim, num_heads, grid_size, pool_size, num_prefix_tokens, layer_index,
                                stage2_softmax, tied_embeddings, pool_queries, use_dwconv, differential,
                                lambda_init_scale=lambda_init_scale)
        if isinstance(embed_init_scale, bool) or not isinstance(embed_init_scale, (int, float)) \
                or not 0 < embed_init_scale < float("inf"):
            raise ValueError(f"embed_init_scale must be a positive number, got {embed_init_scale!r}")
        self.dim, self.num_heads = dim, num_heads
        # the paper's layer (ops/vca.py) or the ablation the options describe (ops/vca_variants.py)
        self._forward_op, self._backward_op = vca_pair(self.config)
        rng, dt = init.as_rng(seed), self.dtype
        for name, shape in self.config.param_shapes().items():
            if name.endswith(("qkv.weight", "proj.weight")):
                self.params[name] = init.trunc_normal(rng, shape, dtype=dt)
            elif name.endswith(("qkv.bias", "proj.bias")):
                self.params[name] = init.zeros(shape, dt)
            elif name in ("e_pos", "e_neg"):
                self.params[name] = init.normal(rng, shape, embed_init_scale, dt)   # N(0, scale^2)
            elif name.split(".")[-1] in LAMBDA_NAMES:
                self.params[name] = init.normal(rng, shape, 0.1, dt)            # N(0, 0.1^2)
            elif name.endswith("norm.weight"):
                self.params[name] = init.ones(shape, dt)
            elif name in ("dwc.weight", "dwc.bias"):    # PyTorch conv default U(+-1/sqrt(9)), fan_in 9
                self.params[name] = init.uniform(rng, shape, 1.0 / 3.0, dt)
        self._out_shape = None

    def forward(self, x):
        """x (B, P + H*W, C) -> y (B, P + H*W, C)."""
        cfg = self.config
        check_array(x, "x", ndim=3, dtype=self.dtype, last=self.dim, device=self.device)
        if x.shape[1] != cfg.num_tokens:
            raise ValueError(
                f"x has {x.shape[1]} tokens but the layer expects P + H*W = {cfg.num_prefix_tokens} + "
                f"{cfg.grid_size[0]}*{cfg.grid_size[1]} = {cfg.num_tokens}")
        y, self.cache = self._forward_op(x, self.params, cfg)
        self._out_shape = y.shape
        return y

    def backward(self, dout):
        """dout (B, N, C) -> dx (B, N, C); fills ``self.grads``."""
        check_dout(dout, self._out_shape, self.dtype, type(self).__name__)
        dx, self.grads = self._backward_op(dout, self.cache)
        return dx

    def macs(self, num_tokens: int | None = None) -> int:
        """Multiply-accumulates of one forward per sample: 4 N C^2 + 7 n N C (+ pooling, conv)."""
        cfg = self.config
        N = cfg.num_tokens if num_tokens is None else num_tokens
        C, n = cfg.dim, cfg.num_contrast_tokens
        return 4 * N * C * C + 7 * n * N * C

    def lambdas(self) -> dict[str, float]:
        """Current lambda_1, lambda_2 values (float), for inspection."""
        li = self.config.lambda_init
        return {f"lambda{j}": float(lambda_forward(*stage_lambdas(self.params, j), li)[0])
                for j in (1, 2) if f"stage{j}.lambda_q1" in self.params}
