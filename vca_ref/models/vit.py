"""TinyViT: a DeiT-style vision transformer with VCA or MHSA attention, forward and backward by hand.

Legend: B batch, Cin image channels, Hi = Wi = img_size, p patch size, H = W = Hi/p patch grid,
N = 1 + H*W tokens (one class token, P = 1), C channels, K classes.

Forward (docs/spec.md, "Where it plugs in", names exactly those of timm/DeiT):
    1. x  = PatchEmbed(img)                                  (B, H*W, C)
    2. x  = [cls_token ; x] + pos_embed                      (B, N, C)
    3. for each block i:  x += Attn_i(LN(x));  x += MLP_i(LN(x))    (pre-norm, GELU exact)
    4. x  = LN(x)                                            (B, N, C)
    5. logits = head(x[:, 0])                                (B, K)
Backward runs 5 -> 1 with the same names prefixed by ``d``; each residual sums the gradient
of its skip path and of its branch explicitly.

Attention "vca" is :class:`~vca_ref.nn.VisualContrastAttention` with P = 1 and
``layer_index = i`` (so lambda_init grows with depth); "mhsa" is the quadratic baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from vca_ref.backend import get_array_module
from vca_ref.nn import init
from vca_ref.nn.checks import check_array, check_dout
from vca_ref.nn.layers import LayerNorm, Linear, Mlp, PatchEmbed
from vca_ref.nn.module import Module
from vca_ref.models.common import TokenModelConfig, check_model_config, make_attention


@dataclass(frozen=True)
class ViTConfig(TokenModelConfig):
    """Sizes and options of a TinyViT (validated by :class:`TinyViT`); shared fields in
    :class:`~vca_ref.models.common.TokenModelConfig`.  One class token: N = 1 + H*W."""
    norm_eps: float = 1e-6               # every LayerNorm (timm's ViT uses 1e-6)
    dtype: str = "float32"               # "float32" | "float64"

    num_prefix_tokens: ClassVar[int] = 1


class ViTCache(NamedTuple):
    tokens_shape: tuple     # (B, N, C): all the model's own backward needs (the children keep theirs)


class Block(Module):
    """Pre-norm transformer block ``x += Attn(norm1(x)); x += Mlp(norm2(x))``.  x (B, N, C)."""

    def __init__(self, cfg: ViTConfig, layer_index: int, *, seed=0, dtype=np.float32):
        super().__init__(dtype)
        rng, C = init.as_rng(seed), cfg.dim
        self.norm1 = LayerNorm(C, cfg.norm_eps, dtype=dtype)
        self.attn = make_attention(cfg, cfg.grid_size, 1, layer_index, rng, dtype)
        self.norm2 = LayerNorm(C, cfg.norm_eps, dtype=dtype)
        self.mlp = Mlp(C, int(C * cfg.mlp_ratio), approximate="none", seed=rng, dtype=dtype)
        self.children = {"norm1": self.norm1, "attn": self.attn, "norm2": self.norm2, "mlp": self.mlp}

    def forward(self, x):
        """x (B, N, C) -> (B, N, C)."""
        x1 = x + self.attn(self.norm1(x))                            # (B, N, C)
        x2 = x1 + self.mlp(self.norm2(x1))                           # (B, N, C)
        return x2

    def backward(self, dout):
        """dout (B, N, C) -> dx (B, N, C); fills the grads of all four children."""
        # x2 = x1 + mlp(norm2(x1)):  skip path + branch  (dout = dx2)
        dx1 = dout + self.norm2.backward(self.mlp.backward(dout))    # (B, N, C)
        # x1 = x + attn(norm1(x))
        dx = dx1 + self.norm1.backward(self.attn.backward(dx1))      # (B, N, C)
        return dx


class TinyViT(Module):
    """DeiT-style ViT classifier; ``forward(images) -> logits``, ``backward(dout) -> dimages``.

    Args:
        config: a :class:`ViTConfig` (``VIT_CONFIGS[name]()`` for the named sizes).
        seed: int or ``np.random.Generator``; every parameter is drawn from it in a fixed order.

    Parameters (timm names): ``cls_token`` (1, 1, C), ``pos_embed`` (1, N, C),
    ``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn,norm2,mlp}.*``, ``norm.*``, ``head.*``.
    Init as DeiT: cls_token and pos_embed truncated-normal(0.02), linear weights
    truncated-normal(0.02) with zero biases, LayerNorms (1, 0), the VCA extras as docs/spec.md.
    """

    def __init__(self, config: ViTConfig | None = None, *, seed=0):
        cfg = ViTConfig() if config is None else config
        check_model_config(cfg)
        super().__init__(cfg.dtype)
        self.config, dt, C = cfg, self.dtype, cfg.dim
        rng = init.as_rng(seed)
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, C, seed=rng, dtype=dt)
        self.params = {
            "cls_token": init.trunc_normal(rng, (1, 1, C), dtype=dt),
            "pos_embed": init.trunc_normal(rng, (1, cfg.num_tokens, C), dtype=dt),
        }
        self.blocks = [Block(cfg, i, seed=rng, dtype=dt) for i in range(cfg.depth)]
        self.norm = LayerNorm(C, cfg.norm_eps, dtype=dt)
        self.head = Linear(C, cfg.num_classes, seed=rng, dtype=dt)
        self.children = {"patch_embed": self.patch_embed,
                         **{f"blocks.{i}": b for i, b in enumerate(self.blocks)},
                         "norm": self.norm, "head": self.head}
        self._out_shape = None

    def forward(self, images):
        """images (B, Cin, Hi, Wi) -> logits (B, K)."""
        x = self.forward_features(images)                                        # (B, N, C)
        # 5. head on the class token
        logits = self.head(x[:, 0])                                              # (B, K)
        self._out_shape = logits.shape
        return logits

    def features(self, images):
        """images (B, Cin, Hi, Wi) -> the final-LN class token (B, C), what the head sees."""
        return self.forward_features(images)[:, 0]                               # (B, C)

    def forward_features(self, images):
        """Steps 1-4: images (B, Cin, Hi, Wi) -> final-LN tokens (B, N, C)."""
        cfg = self.config
        check_array(images, "images", ndim=4, dtype=self.dtype, device=self.device)
        expected = (cfg.in_chans, cfg.img_size, cfg.img_size)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(images.shape)}")
        xp = get_array_module(images)
        B, C = images.shape[0], cfg.dim
        # 1. patch embedding
        xpatch = self.patch_embed(images)                                        # (B, H*W, C)
        # 2. class token and position embedding
        cls = xp.broadcast_to(self.params["cls_token"], (B, 1, C))              # (B, 1, C)
        x = xp.concatenate([cls, xpatch], axis=1) + self.params["pos_embed"]    # (B, N, C)
        # 3. blocks
        for blk in self.blocks:
            x = blk(x)                                                           # (B, N, C)
        # 4. final norm
        x = self.norm(x)                                                         # (B, N, C)
        self.cache = ViTCache(tokens_shape=x.shape)                              # (B, N, C)
        return x

    def backward(self, dout):
        """dout = dlogits (B, K) -> dimages (B, Cin, Hi, Wi); fills every parameter gradient."""
        check_dout(dout, self._out_shape, self.dtype, "TinyViT")
        xp = get_array_module(dout)
        B, N, C = self.cache.tokens_shape
        # 5. logits = head(x[:, 0])
        dcls_out = self.head.backward(dout)                                      # (B, C)
        dx = xp.zeros((B, N, C), dtype=dout.dtype)                              # (B, N, C)
        dx[:, 0] = dcls_out
        # 4. x = norm(x)
        dx = self.norm.backward(dx)                                              # (B, N, C)
        # 3. blocks, last first
        for blk in reversed(self.blocks):
            dx = blk.backward(dx)                                                # (B, N, C)
        # 2. x = [cls_token ; xpatch] + pos_embed
        self.grads = {"cls_token": dx[:, :1].sum(axis=0, keepdims=True),        # (1, 1, C)
                      "pos_embed": dx.sum(axis=0, keepdims=True)}                # (1, N, C)
        # 1. xpatch = PatchEmbed(images)
        return self.patch_embed.backward(dx[:, 1:])                              # (B, Cin, Hi, Wi)

    def macs(self) -> int:
        """Multiply-accumulates of one forward per image (matmuls and the attention core)."""
        N = self.config.num_tokens
        per_block = sum(b.attn.macs(N) + b.mlp.macs(N) for b in self.blocks)
        return self.patch_embed.macs() + per_block + self.config.dim * self.config.num_classes


# ------------------------------------------------------------------ named sizes
def vit_tiny_digits(**overrides) -> ViTConfig:
    """scikit-learn digits, 8x8: patch 2 -> 4x4 grid (17 tokens), C 32, 2 blocks, 2 heads, 2x2 contrast grid."""
    return ViTConfig(**{**dict(img_size=8, patch_size=2, dim=32, depth=2, num_heads=2,
                               mlp_ratio=2.0, pool_size=(2, 2)), **overrides})


def vit_tiny_mnist(**overrides) -> ViTConfig:
    """MNIST sample, 28x28: patch 4 -> 7x7 grid (50 tokens), C 48, 3 blocks, 3 heads, 3x3 contrast grid."""
    return ViTConfig(**{**dict(img_size=28, patch_size=4, dim=48, depth=3, num_heads=3,
                               mlp_ratio=2.0, pool_size=(3, 3)), **overrides})


def vit_tiny_mnist_p7(**overrides) -> ViTConfig:
    """MNIST sample, 28x28: patch 7 -> 4x4 grid (17 tokens), C 64, 3 blocks, 4 heads, 2x2 contrast grid.

    The size ``vca-ref compare`` trains by default: 3x fewer tokens than ``tiny-mnist`` keeps
    a 25-epoch run of both attentions within a few minutes on 2 CPU cores."""
    return ViTConfig(**{**dict(img_size=28, patch_size=7, dim=64, depth=3, num_heads=4,
                               mlp_ratio=2.0, pool_size=(2, 2)), **overrides})


VIT_CONFIGS = {"tiny-digits": vit_tiny_digits, "tiny-mnist": vit_tiny_mnist,
               "tiny-mnist-p7": vit_tiny_mnist_p7}


def create_vit(name: str, *, seed=0, **overrides) -> TinyViT:
    """``TinyViT(VIT_CONFIGS[name](**overrides), seed=seed)``, e.g. ``create_vit("tiny-mnist", attention="mhsa")``."""
    if name not in VIT_CONFIGS:
        raise ValueError(f"unknown ViT size {name!r}; expected one of {sorted(VIT_CONFIGS)}")
    return TinyViT(VIT_CONFIGS[name](**overrides), seed=seed)
