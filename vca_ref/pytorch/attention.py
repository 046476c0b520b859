"""Visual-Contrast Attention and multi-head self-attention as ``torch.nn.Module`` (autograd).

The same layer as :class:`vca_ref.nn.VisualContrastAttention`, written the way a PyTorch user
would: ``nn.Linear``, ``F.adaptive_avg_pool2d``, ``nn.RMSNorm``, a depthwise ``nn.Conv2d`` and
``F.scaled_dot_product_attention`` (SDPA) for every softmax attention of the layer. Every option,
parameter name and layout is the NumPy layer's (docs/spec.md), so one ``state_dict`` moves
between the two unchanged.

Legend: B batch, N = P + H*W tokens, C channels, h heads, d = C/h, n = h'*w' contrast tokens,
S streams (2: T+ and T-; 1 when no stage is differential), s = d^-1/2, li = lambda_init.

Each stage is a softmax attention, so each is one SDPA call:
    Stage I      U   = softmax(s T K^T) V            = SDPA(T, K, V)                 (B, h, S n, d)
                 Vh  = (1 - li) RMSNorm1(U+ - lam1 U-)
    Stage II     A Vh = S2+ Vh - lam2 S2- Vh         = SDPA(q, T, [Vh ; -lam2 Vh])   (joint softmax)
                      = SDPA(q, T+, Vh) - lam2 SDPA(q, T-, Vh)                      (separate)
                 O   = (1 - li) RMSNorm2(A Vh)
A stage that is not differential is the plain attention SDPA(T+, K, V) or SDPA(q, T+, Vh).

Shapes: x (B, N, C) -> y (B, N, C).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vca_ref.ops.vca_config import VCAConfig


def _check_tokens(x: torch.Tensor, dim: int, num_tokens: int | None, name: str) -> None:
    """One clear error for an input of the wrong shape (x must be (B, N, C))."""
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"{name} expects x of shape (B, N, {dim}), got {tuple(x.shape)}")
    if num_tokens is not None and x.shape[1] != num_tokens:
        raise ValueError(f"{name} expects N = P + H*W = {num_tokens} tokens, got {x.shape[1]}")


def _no_mask(attn_mask, is_causal) -> None:
    if attn_mask is not None or is_causal:
        raise ValueError("attention masks are not part of VCA or of the reference MHSA; "
                         "expected attn_mask=None, is_causal=False")


class DifferentialStage(nn.Module):
    """The learnable part of one differential stage: lambda_j and the head-shared RMSNorm.

    ``lam = exp(lambda_q1 . lambda_k1) - exp(lambda_q2 . lambda_k2) + li``; four vectors of size d
    (init N(0, 0.1^2)) and ``norm.weight`` (d,) (init 1).
    """

    def __init__(self, head_dim: int, lambda_init: float, eps: float, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.lambda_init = lambda_init
        self.lambda_q1 = nn.Parameter(0.1 * torch.randn(head_dim, **kw))
        self.lambda_k1 = nn.Parameter(0.1 * torch.randn(head_dim, **kw))
        self.lambda_q2 = nn.Parameter(0.1 * torch.randn(head_dim, **kw))
        self.lambda_k2 = nn.Parameter(0.1 * torch.randn(head_dim, **kw))
        self.norm = nn.RMSNorm(head_dim, eps=eps, **kw)

    def lam(self) -> torch.Tensor:
        """lambda_j, a scalar tensor."""
        return (torch.exp(self.lambda_q1 @ self.lambda_k1) - torch.exp(self.lambda_q2 @ self.lambda_k2)
                + self.lambda_init)

    def scaled_norm(self, z: torch.Tensor) -> torch.Tensor:
        """``(1 - li) RMSNorm(z)``, (B, h, ., d)."""
        return (1 - self.lambda_init) * self.norm(z)

    def readout(self, plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
        """``(1 - li) RMSNorm(plus - lam minus)``, (B, h, ., d)."""
        return self.scaled_norm(plus - self.lam() * minus)


class VisualContrastAttention(nn.Module):
    """Visual-Contrast Attention (docs/spec.md) with autograd; the options of the NumPy layer.

    Args: those of :class:`vca_ref.nn.VisualContrastAttention` (the sizes, ``num_prefix_tokens``,
    ``layer_index``, the ablation options, ``lambda_init_scale``, ``embed_init_scale``), with
    ``device`` and ``dtype`` as for any ``torch.nn`` module in place of ``seed`` and ``dtype``.

    Parameters (exactly those of the NumPy layer with the same options): ``qkv``, ``proj``,
    ``e_pos`` (1, n, C), ``e_neg`` (1, n, C), ``stage{1,2}.lambda_{q,k}{1,2}`` (d,),
    ``stage{1,2}.norm.weight`` (d,), ``dwc`` (C, 1, 3, 3) + (C,).

    Shapes: x (B, P + H*W, C) -> y (B, P + H*W, C).
    """

    def __init__(self, dim: int, num_heads: int, grid_size, pool_size, num_prefix_tokens: int = 0,
                 layer_index: int = 0, *, stage2_softmax: str = "joint", tied_embeddings: bool = False,
                 pool_queries: bool = True, use_dwconv: bool = True, differential: str = "both",
                 lambda_init_scale: float = 1.0, embed_init_scale: float = 1.0,
                 device=None, dtype=None):
        super().__init__()
        cfg = self.config = VCAConfig(dim, num_heads, grid_size, pool_size, num_prefix_tokens,
                                      layer_index, stage2_softmax, tied_embeddings, pool_queries,
                                      use_dwconv, differential, lambda_init_scale=lambda_init_scale)
        if isinstance(embed_init_scale, bool) or not isinstance(embed_init_scale, (int, float)) \
                or not 0 < embed_init_scale < float("inf"):
            raise ValueError(f"embed_init_scale must be a positive number, got {embed_init_scale!r}")
        kw = {"device": device, "dtype": dtype}
        C, d, n, li = dim, cfg.head_dim, cfg.num_contrast_tokens, cfg.lambda_init
        self.num_heads = num_heads
        self.qkv = nn.Linear(C, 3 * C, **kw)
        self.proj = nn.Linear(C, C, **kw)
        nn.init.trunc_normal_(self.qkv.weight, std=0.02)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)
        self.e_pos = nn.Parameter(embed_init_scale * torch.randn(1, n, C, **kw))     # E+ (1, n, C)
        self.e_neg = (nn.Parameter(embed_init_scale * torch.randn(1, n, C, **kw))    # E- (1, n, C)
                      if cfg.has_e_neg else None)
        self.stage1 = DifferentialStage(d, li, cfg.norm_eps, **kw) if cfg.stage1_differential else None
        self.stage2 = DifferentialStage(d, li, cfg.norm_eps, **kw) if cfg.stage2_differential else None
        self.dwc = nn.Conv2d(C, C, 3, padding=1, groups=C, **kw) if cfg.use_dwconv else None

    def contrast_tokens(self, q_patch: torch.Tensor) -> torch.Tensor:
        """Steps 1-2: q_patch (B, h, H*W, d) -> T (B, h, S n, d), the streams stacked [T+ ; T-]."""
        cfg = self.config
        B, h, HW, d = q_patch.shape
        (H, W), n = cfg.grid_size, cfg.num_contrast_tokens
        if self.e_neg is not None:
            E = torch.cat([self.e_pos, self.e_neg])                                    # (2, n, C)
        elif self.stage1 is not None or self.stage2 is not None:
            E = torch.cat([self.e_pos, self.e_pos])                                    # tied: E- = E+
        else:
            E = self.e_pos                                                             # one stream
        S = E.shape[0]
        bank = E.reshape(S, n, h, d).permute(2, 0, 1, 3).reshape(1, h, S * n, d)      # (1, h, S n, d)
        if not cfg.pool_queries:
            return bank.expand(B, -1, -1, -1)                                          # embeddings only
        # channel c = head * d + j: (B, h, d, HW) -> (B, C, H, W)
        qmap = q_patch.transpose(-1, -2).reshape(B, h * d, H, W)
        pooled = F.adaptive_avg_pool2d(qmap, cfg.pool_size)                            # (B, C, h', w')
        pooled = pooled.reshape(B, h, d, n).transpose(-1, -2)                          # (B, h, n, d)
        return pooled.repeat(1, 1, S, 1) + bank                                        # (B, h, S n, d)

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        """x (B, P + H*W, C) -> y (B, P + H*W, C)."""
        cfg = self.config
        _check_tokens(x, cfg.dim, cfg.num_tokens, type(self).__name__)
        _no_mask(attn_mask, is_causal)
        B, N, C = x.shape
        h, d, n, P = cfg.num_heads, cfg.head_dim, cfg.num_contrast_tokens, cfg.num_prefix_tokens
        # 0. projections
        q, k, v = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, N, d)
        # 1-2. contrast tokens
        T = self.contrast_tokens(q[:, :, P:])                                          # (B, h, S n, d)
        Tp = T[:, :, :n]                                                               # T+ (B, h, n, d)
        # 3-4. Stage I: the contrast tokens read all N keys
        if self.stage1 is not None:
            U = F.scaled_dot_product_attention(T, k, v)                                # (B, h, 2n, d)
            Vh = self.stage1.readout(U[:, :, :n], U[:, :, n:])                         # (B, h, n, d)
        else:
            Vh = F.scaled_dot_product_attention(Tp, k, v)                              # (B, h, n, d)
        # 3, 5. Stage II: every query reads the contrast tokens
        if self.stage2 is None:
            O = F.scaled_dot_product_attention(q, Tp, Vh)                              # (B, h, N, d)
        elif cfg.stage2_softmax == "joint":     # one softmax over 2n: S2+ Vh - lam S2- Vh
            V2 = torch.cat([Vh, -self.stage2.lam() * Vh], dim=2)                       # (B, h, 2n, d)
            O = self.stage2.scaled_norm(F.scaled_dot_product_attention(q, T, V2))      # (B, h, N, d)
        else:                                   # two softmaxes of n
            O = self.stage2.readout(F.scaled_dot_product_attention(q, Tp, Vh),
                                    F.scaled_dot_product_attention(q, T[:, :, n:], Vh))
        O = O.transpose(1, 2).reshape(B, N, C)                                         # (B, N, C)
        # 6. depthwise-conv residual on the patch rows
        if self.dwc is not None:
            vmap = v[:, :, P:].transpose(-1, -2).reshape(B, C, *cfg.grid_size)         # (B, C, H, W)
            D = self.dwc(vmap).flatten(2).transpose(1, 2)                              # (B, HW, C)
            O = torch.cat([O[:, :P], O[:, P:] + D], dim=1)                             # (B, N, C)
        # 7. output projection
        return self.proj(O)

    def lambdas(self) -> dict[str, float]:
        """Current lambda_1, lambda_2 values (float), for inspection."""
        return {f"lambda{j}": float(st.lam().detach()) for j, st in ((1, self.stage1), (2, self.stage2))
                if st is not None}


class MultiHeadSelfAttention(nn.Module):
    """``Proj(concat_h softmax(s q k^T) v)`` with SDPA; parameters ``qkv``, ``proj`` (timm's names).

    Shapes: x (B, N, C) -> y (B, N, C).
    """

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.qkv = nn.Linear(dim, 3 * dim, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        """x (B, N, C) -> y (B, N, C)."""
        _check_tokens(x, self.dim, None, type(self).__name__)
        _no_mask(attn_mask, is_causal)
        B, N, C = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, N, d)
        o = F.scaled_dot_product_attention(q, k, v)                                    # (B, h, N, d)
        return self.proj(o.transpose(1, 2).reshape(B, N, C))


__all__ = ["VisualContrastAttention", "MultiHeadSelfAttention", "DifferentialStage"]
