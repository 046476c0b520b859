"""PyTorch twins of the attention layers, for timing only (CPU eager autograd).

They compute the same math as :func:`vca_ref.ops.vca.vca_forward` and
:func:`vca_ref.ops.mhsa.mhsa_forward` from the same parameter dict (PyTorch names),
written the way a PyTorch user would: ``F.linear``, ``F.adaptive_avg_pool2d``, ``F.conv2d``,
``torch.softmax``, ``F.rms_norm`` and explicit ``q k^T`` attention (no fused SDPA, so both
sides do the same operations; MHSA keeps its (B, h, N, N) matrices like the NumPy code).
Autograd supplies the backward.  Only the options the benchmarks use are covered:
joint stage-II softmax, untied embeddings, pooled queries, both stages differential, any P,
conv on or off.

Shapes: x (B, N, C) -> y (B, N, C); per head (B, h, ., d).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from vca_ref.ops.vca_config import VCAConfig


def _params(params: dict, dtype=torch.float32) -> torch.nn.ParameterDict:
    return torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(
        torch.as_tensor(v, dtype=dtype).clone()) for k, v in params.items()})


class TorchVCA(torch.nn.Module):
    """VCA layer (docs/spec.md steps 0-7) with PyTorch autograd; parameters copied from ``params``."""

    def __init__(self, cfg: VCAConfig, params: dict, dtype=torch.float32):
        super().__init__()
        if (cfg.stage2_softmax, cfg.tied_embeddings, cfg.pool_queries, cfg.differential) != \
                ("joint", False, True, "both"):
            raise NotImplementedError("TorchVCA covers the default VCA options only")
        self.cfg = cfg
        self.p = _params(params, dtype)

    def _lam(self, j: int):
        p = self.p
        return (torch.exp(p[f"stage{j}__lambda_q1"] @ p[f"stage{j}__lambda_k1"])
                - torch.exp(p[f"stage{j}__lambda_q2"] @ p[f"stage{j}__lambda_k2"]) + self.cfg.lambda_init)

    def forward(self, x):
        cfg, p = self.cfg, self.p
        B, N, C = x.shape
        h, d, n, P = cfg.num_heads, cfg.head_dim, cfg.num_contrast_tokens, cfg.num_prefix_tokens
        (H, W), s, li, eps = cfg.grid_size, cfg.head_dim ** -0.5, cfg.lambda_init, cfg.norm_eps
        # 0. projections
        qkv = F.linear(x, p["qkv__weight"], p["qkv__bias"])                       # (B, N, 3C)
        q, k, v = qkv.reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)     # (B, h, N, d)
        # 1. pool the patch queries; channel c = head * d + j, so (B, h, d, HW) -> (B, C, H, W)
        qmap = q[:, :, P:].transpose(-1, -2).reshape(B, C, H, W)
        t0 = F.adaptive_avg_pool2d(qmap, cfg.pool_size).reshape(B, h, d, n).transpose(-1, -2)
        # 2. dual embeddings
        e_pos = p["e_pos"].reshape(1, n, h, d).transpose(1, 2)                     # (1, h, n, d)
        e_neg = p["e_neg"].reshape(1, n, h, d).transpose(1, 2)
        T = torch.cat([t0 + e_pos, t0 + e_neg], dim=2)                           # (B, h, 2n, d)
        # 3.-4. stage I
        S1 = torch.softmax((T * s) @ k.transpose(-1, -2), dim=-1)                # (B, h, 2n, N)
        U = S1 @ v                                                               # (B, h, 2n, d)
        Z1 = U[:, :, :n] - self._lam(1) * U[:, :, n:]
        Vh = (1 - li) * F.rms_norm(Z1, (d,), p["stage1__norm__weight"], eps)     # (B, h, n, d)
        # 5. stage II, one joint softmax
        S2 = torch.softmax((q * s) @ T.transpose(-1, -2), dim=-1)                # (B, h, N, 2n)
        A = S2[..., :n] - self._lam(2) * S2[..., n:]                             # (B, h, N, n)
        O = (1 - li) * F.rms_norm(A @ Vh, (d,), p["stage2__norm__weight"], eps)  # (B, h, N, d)
        Om = O.transpose(1, 2).reshape(B, N, C)                                  # (B, N, C)
        # 6. depthwise conv on the patch values
        if cfg.use_dwconv:
            vmap = v[:, :, P:].transpose(-1, -2).reshape(B, C, H, W)
            D = F.conv2d(vmap, p["dwc__weight"], p["dwc__bias"], padding=1, groups=C)
            D = D.reshape(B, C, H * W).transpose(1, 2)                           # (B, HW, C)
            Om = torch.cat([Om[:, :P], Om[:, P:] + D], dim=1) if P else Om + D
        # 7. output projection
        return F.linear(Om, p["proj__weight"], p["proj__bias"])


class TorchMHSA(torch.nn.Module):
    """Explicit softmax attention ``Proj(concat_h softmax(s q k^T) v)`` with PyTorch autograd."""

    def __init__(self, num_heads: int, params: dict, dtype=torch.float32):
        super().__init__()
        self.h = num_heads
        self.p = _params(params, dtype)

    def forward(self, x):
        p, h = self.p, self.h
        B, N, C = x.shape
        d = C // h
        qkv = F.linear(x, p["qkv__weight"], p["qkv__bias"])
        q, k, v = qkv.reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)     # (B, h, N, d)
        S = torch.softmax((q * d ** -0.5) @ k.transpose(-1, -2), dim=-1)         # (B, h, N, N)
        o = (S @ v).transpose(1, 2).reshape(B, N, C)
        return F.linear(o, p["proj__weight"], p["proj__bias"])


def torch_grads(module: torch.nn.Module) -> dict:
    """Parameter gradients under the PyTorch names of docs/spec.md (as NumPy arrays)."""
    return {k.replace("__", "."): v.grad.detach().numpy() for k, v in module.p.items()}


__all__ = ["TorchVCA", "TorchMHSA", "torch_grads"]
