"""The ViT and the DiT in PyTorch, with VCA (or MHSA) attention and the reference names.

* :func:`vision_transformer`: a timm ``VisionTransformer`` (DeiT style: class token, learnable
  position embedding, pre-norm blocks, exact GELU, LayerNorm eps 1e-6) whose every block's
  ``attn`` is a :class:`~vca_ref.pytorch.attention.VisualContrastAttention` built with that
  block's index (lambda_init = 0.8 - 0.6 exp(-0.3 l)), or timm's own MHSA names.
* :class:`DiT`: the reference DiT (adaLN-Zero blocks, fixed 2-D sin-cos position embedding,
  timestep and label embedders, final adaLN layer) with the reference's names.

Both are built from a ``vca_ref`` :class:`~vca_ref.models.ViTConfig` / :class:`~vca_ref.models.DiTConfig`
(:func:`from_config`), so their ``state_dict`` is the NumPy model's, name for name and shape
for shape (docs/spec.md).

timm is imported when a ViT is built; it imports torchvision, which must be the build that
matches the installed torch.

Legend: B batch, Cin input channels, Cout output channels, Hi = Wi image side, p patch size,
N tokens, C channels, K classes.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vca_ref.models.common import vca_options
from vca_ref.models.dit import DiTConfig
from vca_ref.models.vit import ViTConfig
from vca_ref.nn.embedders import FREQUENCY_EMBEDDING_SIZE, sincos_2d
from vca_ref.pytorch.attention import MultiHeadSelfAttention, VisualContrastAttention


def make_attention(cfg, num_prefix_tokens: int, layer_index: int, dtype=None) -> nn.Module:
    """Block ``layer_index``'s attention for a ``vca_ref`` model config (``cfg.attention``)."""
    if cfg.attention == "mhsa":
        return MultiHeadSelfAttention(cfg.dim, cfg.num_heads, dtype=dtype)
    return VisualContrastAttention(cfg.dim, cfg.num_heads, cfg.grid_size, cfg.pool_size,
                                   num_prefix_tokens, layer_index, **vca_options(cfg), dtype=dtype)


def torch_dtype(cfg) -> torch.dtype:
    """The torch dtype of a config's ``dtype`` field ("float32" | "float64")."""
    return getattr(torch, cfg.dtype)


# =========================================================================== ViT (timm)
def vision_transformer(cfg: ViTConfig) -> nn.Module:
    """A timm ``VisionTransformer`` with the sizes of ``cfg``, its attention replaced by ``cfg.attention``.

    ``model(images (B, Cin, Hi, Wi)) -> logits (B, K)``.
    """
    try:
        from timm.models.vision_transformer import VisionTransformer
    except Exception as e:                  # ImportError, or RuntimeError from a mismatched torchvision
        raise ImportError(f"the ViT of vca_ref.pytorch is timm's VisionTransformer, and `import timm` "
                          f"failed ({type(e).__name__}: {e}); install timm and the torchvision build "
                          f"that matches torch {torch.__version__}") from e

    dtype = torch_dtype(cfg)
    model = VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                              num_classes=cfg.num_classes, embed_dim=cfg.dim, depth=cfg.depth,
                              num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True,
                              class_token=True, global_pool="token")
    for i, blk in enumerate(model.blocks):          # block i's attention, with lambda_init of layer i
        blk.attn = make_attention(cfg, num_prefix_tokens=1, layer_index=i)
    if cfg.norm_eps != 1e-6:
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = cfg.norm_eps
    return model.to(dtype)


# =========================================================================== DiT
def modulate(x, shift, scale):
    """``x (1 + scale) + shift``: x (B, N, C), shift and scale (B, C)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """images (B, Cin, Hi, Wi) -> tokens (B, N, C) by a stride-p convolution."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)                              # (B, N, C)


class Mlp(nn.Module):
    """``fc2(GELU_tanh(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU("tanh"), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, C): ``mlp.2(SiLU(mlp.0([cos ; sin](t f))))``, 256 frequencies."""

    def __init__(self, dim: int, freq: int = FREQUENCY_EMBEDDING_SIZE):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        dtype, half = self.mlp[0].weight.dtype, self.freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=dtype, device=t.device) / half)
        args = t.to(dtype)[:, None] * freqs[None]                                   # (B, half)
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))      # (B, C)


class LabelEmbedder(nn.Module):
    """y (B,) -> (B, C); row K of the table is the null class of classifier-free guidance."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float):
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y, drop=None):
        """``drop`` (B,) bool: labels replaced by the null class (training-time label dropout)."""
        if drop is not None:
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.embedding_table(y)


class DiTBlock(nn.Module):
    """``x += g1 Attn(modulate(LN(x), sh1, sc1)); x += g2 Mlp(modulate(LN(x), sh2, sc2))``."""

    def __init__(self, cfg: DiTConfig, layer_index: int):
        super().__init__()
        C = cfg.dim
        self.norm1 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.attn = make_attention(cfg, num_prefix_tokens=0, layer_index=layer_index)
        self.norm2 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(C, int(C * cfg.mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)      # (B, C) each
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    """``linear(modulate(LN(x), shift, scale))``: (B, N, C) -> (B, N, p*p*Cout)."""

    def __init__(self, dim: int, patch_size: int, out_chans: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_chans)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Class-conditional DiT: ``model(x (B, Cin, Hi, Wi), t (B,), y (B,)) -> (B, Cout, Hi, Wi)``.

    ``pos_embed`` (1, N, C) is a fixed buffer, saved in the state dict as the NumPy model saves it.
    Initialised like the reference (xavier linears, adaLN-Zero: modulation and final linear zero).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.config, C, p = cfg, cfg.dim, cfg.patch_size
        self.x_embedder = PatchEmbed(p, cfg.in_chans, C)
        self.t_embedder = TimestepEmbedder(C)
        self.y_embedder = LabelEmbedder(cfg.num_classes, C, cfg.class_dropout_prob)
        self.register_buffer("pos_embed", torch.from_numpy(sincos_2d(C, cfg.grid_size)[None]))
        self.blocks = nn.ModuleList(DiTBlock(cfg, i) for i in range(cfg.depth))
        self.final_layer = FinalLayer(C, p, cfg.out_chans)
        self._initialize_weights()
        self.to(torch_dtype(cfg))

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for lin in [b.adaLN_modulation[1] for b in self.blocks] + [self.final_layer.adaLN_modulation[1],
                                                                   self.final_layer.linear]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x, t, y, drop_labels=None):
        """x (B, Cin, Hi, Wi), t (B,), y (B,) int in [0, K]; ``drop_labels`` (B,) bool -> (B, Cout, Hi, Wi)."""
        cfg = self.config
        h = self.x_embedder(x) + self.pos_embed                                     # (B, N, C)
        c = self.t_embedder(t) + self.y_embedder(y, drop_labels)                    # (B, C)
        for blk in self.blocks:
            h = blk(h, c)                                                           # (B, N, C)
        h = self.final_layer(h, c)                                                  # (B, N, p*p*Cout)
        B, p, (H, W) = h.shape[0], cfg.patch_size, cfg.grid_size
        img = h.reshape(B, H, W, p, p, cfg.out_chans).permute(0, 5, 1, 3, 2, 4)    # (B, Cout, H, p, W, p)
        return img.reshape(B, cfg.out_chans, H * p, W * p)


# =========================================================================== from a config
def from_config(cfg) -> nn.Module:
    """The PyTorch model of a ``vca_ref`` ViTConfig (timm ViT) or DiTConfig (:class:`DiT`)."""
    if isinstance(cfg, ViTConfig):
        return vision_transformer(cfg)
    if isinstance(cfg, DiTConfig):
        return DiT(cfg)
    raise TypeError(f"expected a vca_ref ViTConfig or DiTConfig, got {type(cfg).__name__}")


__all__ = ["vision_transformer", "DiT", "from_config", "make_attention"]
