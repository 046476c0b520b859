"""An independent PyTorch reference for every op and both attention modules (the oracle).

Written from the specification (``docs/spec.md``) with idiomatic torch and autograd -- NOT by translating the NumPy
code: pooling is ``F.adaptive_avg_pool2d`` on the (B, C, H, W) query map, the depthwise conv
is ``nn.Conv2d(groups=C)`` on the (B, C, H, W) value map, RMSNorm is ``nn.RMSNorm``, plain
softmax attention is ``F.scaled_dot_product_attention``.  Gradients come from autograd.

Parameter names are the specification's names, so ``TorchVCA(...).load_state_dict({k: torch.from_numpy(v)})``
works directly on a ``vca_ref`` state dict.  Parameters that an option makes unused are not
created (as in ``vca_ref``): ``e_neg`` when the embeddings are tied or no stage is
differential, ``stage{j}.*`` when stage j is not differential, ``dwc.*`` when the conv is off.

Nothing in this file imports ``vca_ref``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- ops (functional)


def linear(x, w, b=None):
    return F.linear(x, w, b)


def layernorm(x, w=None, b=None, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def rmsnorm(z, w, eps=1e-5):
    return F.rms_norm(z, z.shape[-1:], w, eps)


def gelu(x, approximate="none"):
    return F.gelu(x, approximate=approximate)


def silu(x):
    return F.silu(x)


def softmax(x):
    return torch.softmax(x, dim=-1)


def adaptive_avg_pool_tokens(x, grid, pool):
    """Tokens (..., H*W, d) on a row-major H x W grid -> (..., h'*w', d) with torch's pool."""
    (H, W), lead, d = grid, x.shape[:-2], x.shape[-1]
    img = x.reshape(-1, H, W, d).permute(0, 3, 1, 2)               # (M, d, H, W)
    out = F.adaptive_avg_pool2d(img, pool)                          # (M, d, h', w')
    return out.flatten(2).transpose(1, 2).reshape(*lead, -1, d)     # (..., n, d)


def dwconv3x3(x, w, b):
    """Channels-last x (B, H, W, C), torch depthwise weight (C, 1, 3, 3)."""
    y = F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=1, groups=x.shape[-1])
    return y.permute(0, 2, 3, 1)


def lambda_init(layer_index):
    return 0.8 - 0.6 * math.exp(-0.3 * layer_index)


def lambda_(lq1, lk1, lq2, lk2, init):
    return torch.exp(torch.dot(lq1, lk1)) - torch.exp(torch.dot(lq2, lk2)) + init


def diff_combine(a, b, lam):
    return a - lam * b


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def patch_embed(img, w, b):
    p = w.shape[-1]
    return F.conv2d(img, w, b, stride=p).flatten(2).transpose(1, 2)  # (B, N, C)


def cross_entropy(logits, labels, label_smoothing=0.0):
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def mse(pred, target):
    return F.mse_loss(pred, target)


# --------------------------------------------------------------------------- modules


class TorchMHSA(nn.Module):
    """Standard multi-head self-attention (qkv / proj names as in timm)."""

    def __init__(self, dim, num_heads, dtype=torch.float64):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, dtype=dtype)
        self.proj = nn.Linear(dim, dim, dtype=dtype)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)                  # (B, h, N, d)
        return self.proj(o.transpose(1, 2).reshape(B, N, C))


class DiffStage(nn.Module):
    """The learnable part of one differential stage: four lambda vectors and an RMSNorm."""

    def __init__(self, head_dim, eps, dtype):
        super().__init__()
        for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
            setattr(self, name, nn.Parameter(0.1 * torch.randn(head_dim, dtype=dtype)))
        self.norm = nn.RMSNorm(head_dim, eps=eps, dtype=dtype)

    def lam(self, init):
        return lambda_(self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2, init)


class TorchVCA(nn.Module):
    """Visual-Contrast Attention as docs/spec.md describes it, with every option of its table."""

    def __init__(self, dim, num_heads, grid_size, pool_size, num_prefix_tokens=0, layer_index=0,
                 stage2_softmax="joint", tied_embeddings=False, pool_queries=True, use_dwconv=True,
                 differential="both", eps=1e-5, lambda_init_scale=1.0, dtype=torch.float64):
        super().__init__()
        pair = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
        self.grid_size, self.pool_size = pair(grid_size), pair(pool_size)
        self.num_heads, self.P = num_heads, num_prefix_tokens
        self.init = lambda_init_scale * lambda_init(layer_index)     # scale 1: the paper
        self.stage2_softmax, self.pool_queries = stage2_softmax, pool_queries
        n, d = self.pool_size[0] * self.pool_size[1], dim // num_heads

        self.qkv = nn.Linear(dim, 3 * dim, dtype=dtype)
        self.proj = nn.Linear(dim, dim, dtype=dtype)
        self.e_pos = nn.Parameter(torch.randn(1, n, dim, dtype=dtype))
        self.e_neg = (nn.Parameter(torch.randn(1, n, dim, dtype=dtype))
                      if not tied_embeddings and differential != "none" else None)
        self.stage1 = DiffStage(d, eps, dtype) if differential in ("both", "stage1") else None
        self.stage2 = DiffStage(d, eps, dtype) if differential in ("both", "stage2") else None
        self.dwc = (nn.Conv2d(dim, dim, 3, padding=1, groups=dim, dtype=dtype)
                    if use_dwconv else None)

    def forward(self, x):
        B, N, C = x.shape
        h, (H, W), P = self.num_heads, self.grid_size, self.P
        n, d = self.pool_size[0] * self.pool_size[1], C // h
        assert N == P + H * W
        q, k, v = self.qkv(x).view(B, N, 3, h, d).permute(2, 0, 3, 1, 4)   # (B, h, N, d) each

        # 1. contrast tokens: adaptive-average-pool the patch-query map (B, C, H, W)
        if self.pool_queries:
            qmap = q[:, :, P:].transpose(-1, -2).reshape(B, C, H, W)      # channel = head*d + j
            pooled = F.adaptive_avg_pool2d(qmap, self.pool_size)           # (B, C, h', w')
            t = pooled.reshape(B, h, d, n).transpose(-1, -2)               # (B, h, n, d)
        else:
            t = torch.zeros(B, h, n, d, dtype=x.dtype)
        # 2. dual positional embeddings, per head
        per_head = (lambda e: e.view(1, n, h, d).transpose(1, 2))         # (1, h, n, d)
        t_pos = t + per_head(self.e_pos)
        t_neg = t + per_head(self.e_neg if self.e_neg is not None else self.e_pos)

        # 4. Stage I: the contrast tokens attend to all N keys
        if self.stage1 is not None:
            u_pos = F.scaled_dot_product_attention(t_pos, k, v)            # (B, h, n, d)
            u_neg = F.scaled_dot_product_attention(t_neg, k, v)
            v_hat = (1 - self.init) * self.stage1.norm(u_pos - self.stage1.lam(self.init) * u_neg)
        else:
            v_hat = F.scaled_dot_product_attention(t_pos, k, v)

        # 5. Stage II: every query attends to the 2n contrast tokens
        if self.stage2 is not None:
            logit_pos = q @ t_pos.transpose(-1, -2) / math.sqrt(d)         # (B, h, N, n)
            logit_neg = q @ t_neg.transpose(-1, -2) / math.sqrt(d)
            if self.stage2_softmax == "joint":
                a_pos, a_neg = torch.softmax(torch.cat([logit_pos, logit_neg], -1), -1).split(n, -1)
            else:
                a_pos, a_neg = torch.softmax(logit_pos, -1), torch.softmax(logit_neg, -1)
            att = a_pos - self.stage2.lam(self.init) * a_neg
            o = (1 - self.init) * self.stage2.norm(att @ v_hat)            # (B, h, N, d)
        else:
            o = F.scaled_dot_product_attention(q, t_pos, v_hat)
        o = o.transpose(1, 2).reshape(B, N, C)

        # 6. depthwise-conv residual on the patch rows (prefix rows get zero)
        if self.dwc is not None:
            vmap = v[:, :, P:].transpose(-1, -2).reshape(B, C, H, W)
            conv = self.dwc(vmap).flatten(2).transpose(1, 2)                # (B, H*W, C)
            o = o + F.pad(conv, (0, 0, P, 0))
        # 7. output projection
        return self.proj(o)
