"""Independent PyTorch versions of TinyViT and TinyDiT: the whole-model oracle.

Written as idiomatic torch modules with autograd, following timm/DeiT (``VisionTransformer``)
and the reference DiT ``models.py`` (``DiT``), with their parameter names, so a ``vca_ref``
state dict loads with ``load_state_dict(strict=True)``.  The attention is the oracle's
:class:`torch_oracle.TorchVCA` (or :class:`torch_oracle.TorchMHSA`), written from docs/spec.md.

Deliberate differences from the upstream code, all shared with ``vca_ref``:
- the label table always has the null row (upstream adds it only when dropout_prob > 0);
- the timestep sines are computed in the model's dtype (upstream: float32);
- ``pos_embed`` of the DiT is a frozen parameter, as upstream.

Nothing in this file imports ``vca_ref``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from torch_oracle import TorchMHSA, TorchVCA

VCA_OPTIONS = ("stage2_softmax", "tied_embeddings", "pool_queries", "use_dwconv", "differential")


def make_attention(cfg: dict, grid: int, num_prefix_tokens: int, layer_index: int, dtype):
    if cfg["attention"] == "mhsa":
        return TorchMHSA(cfg["dim"], cfg["num_heads"], dtype=dtype)
    return TorchVCA(cfg["dim"], cfg["num_heads"], (grid, grid), tuple(cfg["pool_size"]),
                    num_prefix_tokens, layer_index, dtype=dtype,
                    **{k: cfg[k] for k in VCA_OPTIONS if k in cfg})


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, embed_dim, dtype):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, dtype=dtype)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)              # (B, N, C)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, out, approximate, dtype):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, dtype=dtype)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, out, dtype=dtype)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# --------------------------------------------------------------------------- ViT (timm / DeiT)
class Block(nn.Module):
    def __init__(self, cfg, layer_index, dtype):
        super().__init__()
        C, eps = cfg["dim"], cfg.get("norm_eps", 1e-6)
        grid = cfg["img_size"] // cfg["patch_size"]
        self.norm1 = nn.LayerNorm(C, eps=eps, dtype=dtype)
        self.attn = make_attention(cfg, grid, 1, layer_index, dtype)
        self.norm2 = nn.LayerNorm(C, eps=eps, dtype=dtype)
        self.mlp = Mlp(C, int(C * cfg["mlp_ratio"]), C, "none", dtype)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """DeiT-style ViT; ``cfg`` is a dict with the fields of ``vca_ref.models.ViTConfig``."""

    def __init__(self, cfg: dict, dtype=torch.float64):
        super().__init__()
        C, p = cfg["dim"], cfg["patch_size"]
        num_patches = (cfg["img_size"] // p) ** 2
        self.patch_embed = PatchEmbed(p, cfg["in_chans"], C, dtype)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C, dtype=dtype))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, C, dtype=dtype))
        self.blocks = nn.ModuleList(Block(cfg, i, dtype) for i in range(cfg["depth"]))
        self.norm = nn.LayerNorm(C, eps=cfg.get("norm_eps", 1e-6), dtype=dtype)
        self.head = nn.Linear(C, cfg["num_classes"], dtype=dtype)

    def forward(self, img):
        x = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


# --------------------------------------------------------------------------- DiT (reference models.py)
def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256, dtype=torch.float64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size, dtype=dtype), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, dtype=dtype))
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000, dtype=torch.float64):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=dtype) / half)
        args = t[:, None].to(dtype) * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        dtype = self.mlp[0].weight.dtype
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size, dtype=dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dtype):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size, dtype=dtype)

    def forward(self, labels):
        return self.embedding_table(labels)


class DiTBlock(nn.Module):
    def __init__(self, cfg, layer_index, dtype):
        super().__init__()
        C = cfg["dim"]
        grid = cfg["img_size"] // cfg["patch_size"]
        self.norm1 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6, dtype=dtype)
        self.attn = make_attention(cfg, grid, 0, layer_index, dtype)
        self.norm2 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6, dtype=dtype)
        self.mlp = Mlp(C, int(C * cfg["mlp_ratio"]), C, "tanh", dtype)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C, dtype=dtype))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels, dtype):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6, dtype=dtype)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, dtype=dtype)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, dtype=dtype))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Reference-style DiT; ``cfg`` is a dict with the fields of ``vca_ref.models.DiTConfig``."""

    def __init__(self, cfg: dict, dtype=torch.float64):
        super().__init__()
        C, p = cfg["dim"], cfg["patch_size"]
        self.patch_size = p
        self.out_channels = cfg["in_chans"] * 2 if cfg["learn_sigma"] else cfg["in_chans"]
        grid = cfg["img_size"] // p
        self.x_embedder = PatchEmbed(p, cfg["in_chans"], C, dtype)
        self.t_embedder = TimestepEmbedder(C, dtype=dtype)
        self.y_embedder = LabelEmbedder(cfg["num_classes"], C, dtype)
        pos = torch.from_numpy(get_2d_sincos_pos_embed(C, grid)).to(dtype).unsqueeze(0)
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        self.blocks = nn.ModuleList(DiTBlock(cfg, i, dtype) for i in range(cfg["depth"]))
        self.final_layer = FinalLayer(C, p, self.out_channels, dtype)

    def unpatchify(self, x):
        c, p = self.out_channels, self.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))


# MAE / DiT 2-D sin-cos position embedding, as upstream writes it (NumPy).
def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
