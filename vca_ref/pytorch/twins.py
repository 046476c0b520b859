"""PyTorch twins of TinyViT and TinyDiT, for timing only (CPU eager autograd).

Idiomatic torch modules (``nn.Conv2d`` patch embedding, ``nn.LayerNorm``, ``nn.GELU``,
``nn.Linear``, ``nn.Embedding``) around the attention twins of :mod:`vca_ref.pytorch.attention`, built from a
``vca_ref`` model and loaded with its exact parameter values (:func:`torch_twin`), so both sides
compute the same function; :mod:`.model` checks the outputs agree before timing.

Shapes: images (B, Cin, Hi, Wi); ViT -> logits (B, K); DiT (x, t, y) -> (B, Cout, Hi, Wi).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vca_ref.models.dit import TinyDiT
from vca_ref.models.vit import TinyViT
from vca_ref.pytorch.attention import TorchMHSA, TorchVCA


def _attention(np_attn):
    """Torch twin of a vca_ref attention module (parameters copied)."""
    if hasattr(np_attn, "config"):
        return TorchVCA(np_attn.config, np_attn.params)
    return TorchMHSA(np_attn.num_heads, np_attn.params)


class PatchEmbed(nn.Module):
    def __init__(self, p, cin, C):
        super().__init__()
        self.proj = nn.Conv2d(cin, C, p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)                          # (B, N, C)


class Mlp(nn.Module):
    def __init__(self, C, hidden, approximate):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(C, hidden), nn.GELU(approximate), nn.Linear(hidden, C)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, np_blk, C, hidden, eps):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(C, eps=eps), nn.LayerNorm(C, eps=eps)
        self.attn = _attention(np_blk.attn)
        self.mlp = Mlp(C, hidden, "none")

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):
    """DeiT-style ViT with the structure of :class:`vca_ref.models.vit.TinyViT`."""

    def __init__(self, np_model: TinyViT):
        super().__init__()
        cfg = np_model.config
        C, hidden = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, C))
        self.blocks = nn.ModuleList(ViTBlock(b, C, hidden, cfg.norm_eps) for b in np_model.blocks)
        self.norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.head = nn.Linear(C, cfg.num_classes)

    def forward(self, img):
        x = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def _modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    def __init__(self, np_blk, C, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.attn = _attention(np_blk.attn)
        self.mlp = Mlp(C, hidden, "tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(_modulate(self.norm1(x), sh1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    def __init__(self, C, p, cout):
        super().__init__()
        self.norm_final = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(C, p * p * cout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class TimestepEmbedder(nn.Module):
    def __init__(self, C, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, C), nn.SiLU(), nn.Linear(C, C))

    def forward(self, t):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self, K, C):
        super().__init__()
        self.embedding_table = nn.Embedding(K + 1, C)

    def forward(self, y):
        return self.embedding_table(y)


class TorchDiT(nn.Module):
    """adaLN-Zero DiT with the structure of :class:`vca_ref.models.dit.TinyDiT` (no label dropout)."""

    def __init__(self, np_model: TinyDiT):
        super().__init__()
        cfg = np_model.config
        C, hidden, p = cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.patch_size
        self.p, self.cout = p, cfg.out_chans
        self.x_embedder = PatchEmbed(p, cfg.in_chans, C)
        self.t_embedder = TimestepEmbedder(C)
        self.y_embedder = LabelEmbedder(cfg.num_classes, C)
        self.register_buffer("pos_embed", torch.from_numpy(np.asarray(np_model.buffers["pos_embed"])))
        self.blocks = nn.ModuleList(DiTBlock(b, C, hidden) for b in np_model.blocks)
        self.final_layer = FinalLayer(C, p, cfg.out_chans)

    def forward(self, x, t, y):
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for blk in self.blocks:
            h = blk(h, c)
        h = self.final_layer(h, c)                                              # (B, N, p*p*Cout)
        B, N, _ = h.shape
        g = int(round(N ** 0.5))
        h = h.reshape(B, g, g, self.p, self.p, self.cout)
        return torch.einsum("nhwpqc->nchpwq", h).reshape(B, self.cout, g * self.p, g * self.p)


def torch_twin(np_model):
    """A torch twin of a TinyViT / TinyDiT holding exactly its parameter values (float32)."""
    tm = TorchViT(np_model) if isinstance(np_model, TinyViT) else TorchDiT(np_model)
    state = {k: np.asarray(v) for k, v in np_model.state_dict().items()}
    with torch.no_grad():
        for name, p in tm.named_parameters():
            # the attention twins keep their tensors in a ParameterDict ("attn.p.qkv__weight")
            key = name.replace(".p.", ".").replace("__", ".")
            if key not in state:
                raise KeyError(f"torch parameter {name!r} has no vca_ref counterpart {key!r}")
            p.copy_(torch.from_numpy(state[key]).reshape(p.shape))
    return tm
