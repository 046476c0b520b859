"""Thin layer modules: Linear, LayerNorm, Mlp and PatchEmbed.

Each module holds its parameters under the PyTorch (timm) names, chains the pure op pairs of
:mod:`vca_ref.ops`, keeps the cache of its last ``forward`` and fills ``self.grads`` in
``backward``.  No math lives here.

Legend: B batch, N tokens, C channels, Cin image channels, p patch size, Hi x Wi image.

| module      | parameters (PyTorch layout)                         | shapes                        |
|-------------|-----------------------------------------------------|-------------------------------|
| Linear      | ``weight`` (Dout, Din), ``bias`` (Dout,)            | (..., Din) -> (..., Dout)     |
| LayerNorm   | ``weight``, ``bias`` (D,) when affine               | (..., D) -> (..., D)          |
| Mlp         | ``fc1.*``, ``fc2.*``                                | (..., C) -> (..., Cout)       |
| PatchEmbed  | ``proj.weight`` (C, Cin, p, p), ``proj.bias`` (C,)  | (B, Cin, Hi, Wi) -> (B, N, C) |

    Mlp(x) = fc2(GELU(fc1(x)))         GELU exact (erf) or its tanh approximation
"""
from __future__ import annotations

import math

import numpy as np

from vca_ref.ops.activations import GELU_APPROXIMATIONS, gelu_backward, gelu_forward
from vca_ref.ops.layernorm import layernorm_backward, layernorm_forward
from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.patch_embed import patch_embed_backward, patch_embed_forward
from vca_ref.nn import init
from vca_ref.nn.checks import check_array, check_dout, check_positive_int
from vca_ref.nn.module import Module


class Linear(Module):
    """``y = x W^T + b`` with W (out_features, in_features).

    Init: weight truncated-normal(std 0.02), bias zeros (timm's ViT init).
    Shapes: x (..., in_features) -> y (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, seed=0,
                 dtype=np.float32):
        super().__init__(dtype)
        check_positive_int(in_features, "in_features")
        check_positive_int(out_features, "out_features")
        self.in_features, self.out_features = in_features, out_features
        rng = init.as_rng(seed)
        self.params["weight"] = init.trunc_normal(rng, (out_features, in_features), dtype=self.dtype)
        if bias:
            self.params["bias"] = init.zeros((out_features,), self.dtype)
        self._out_shape = None

    def forward(self, x):
        """x (..., Din) -> y (..., Dout)."""
        check_array(x, "x", dtype=self.dtype, last=self.in_features, finite=False,
                    device=self.device)
        y, self.cache = linear_forward(x, self.params["weight"], self.params.get("bias"))
        self._out_shape = y.shape
        return y

    def backward(self, dout):
        """dout (..., Dout) -> dx (..., Din); fills ``grads['weight']`` (and ``'bias'``)."""
        check_dout(dout, self._out_shape, self.dtype, "Linear")
        dx, dw, db = linear_backward(dout, self.cache)
        self.grads = {"weight": dw}
        if "bias" in self.params:
            self.grads["bias"] = db
        return dx


class LayerNorm(Module):
    """LayerNorm over the last axis, ``y = (x - mu) / sqrt(var + eps) * w + b``.

    ``elementwise_affine=False`` gives the parameter-free norm of DiT (no ``weight``/``bias``).
    Shapes: x (..., D) -> y (..., D).
    """

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True, *,
                 dtype=np.float32):
        super().__init__(dtype)
        check_positive_int(dim, "dim")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.dim, self.eps, self.elementwise_affine = dim, float(eps), elementwise_affine
        if elementwise_affine:
            self.params["weight"] = init.ones((dim,), self.dtype)
            self.params["bias"] = init.zeros((dim,), self.dtype)
        self._out_shape = None

    def forward(self, x):
        """x (..., D) -> y (..., D)."""
        check_array(x, "x", dtype=self.dtype, last=self.dim, finite=False)
        y, self.cache = layernorm_forward(x, self.params.get("weight"), self.params.get("bias"),
                                          self.eps)
        self._out_shape = y.shape
        return y

    def backward(self, dout):
        """dout (..., D) -> dx (..., D); fills ``grads`` when affine."""
        check_dout(dout, self._out_shape, self.dtype, "LayerNorm")
        dx, dw, db = layernorm_backward(dout, self.cache)
        self.grads = {"weight": dw, "bias": db} if self.elementwise_affine else {}
        return dx


class Mlp(Module):
    """The transformer MLP ``fc2(GELU(fc1(x)))`` (timm's ``Mlp``, no dropout).

    Args:
        in_features: C.   hidden_features: hidden width (mlp_ratio * C).
        out_features: output width (default C).
        approximate: ``"none"`` (exact erf GELU, ViT) or ``"tanh"`` (DiT).
    Shapes: x (..., C) -> y (..., Cout).
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 approximate: str = "none", *, seed=0, dtype=np.float32):
        super().__init__(dtype)
        for name, v in (("in_features", in_features), ("hidden_features", hidden_features)):
            check_positive_int(v, name)
        if approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
        out_features = in_features if out_features is None else out_features
        rng = init.as_rng(seed)
        self.approximate = approximate
        self.fc1 = Linear(in_features, hidden_features, seed=rng, dtype=dtype)
        self.fc2 = Linear(hidden_features, out_features, seed=rng, dtype=dtype)
        self.children = {"fc1": self.fc1, "fc2": self.fc2}

    def forward(self, x):
        """x (..., C) -> y (..., Cout)."""
        h = self.fc1(x)                                             # (..., hidden)
        a, c_act = gelu_forward(h, self.approximate)                # (..., hidden)
        self.cache = c_act
        return self.fc2(a)                                          # (..., Cout)

    def backward(self, dout):
        """dout (..., Cout) -> dx (..., C); fills the grads of fc1 and fc2."""
        if self.cache is None:
            raise RuntimeError("Mlp.backward called before forward")
        da = self.fc2.backward(dout)                                # (..., hidden)
        # a = GELU(h)
        dh = gelu_backward(da, self.cache)                          # (..., hidden)
        return self.fc1.backward(dh)                                # (..., C)

    def macs(self, num_tokens: int) -> int:
        """Multiply-accumulates per sample: N (C hidden + hidden Cout)."""
        return num_tokens * (self.fc1.in_features * self.fc1.out_features
                             + self.fc2.in_features * self.fc2.out_features)


class PatchEmbed(Module):
    """Non-overlapping p x p patches -> tokens: a stride-p conv written as one matmul.

    Args:
        img_size: (Hi, Wi) or an int.   patch_size: p (must divide Hi and Wi).
        in_chans: Cin.   embed_dim: C.
    Parameters: ``proj.weight`` (C, Cin, p, p), ``proj.bias`` (C,), PyTorch ``Conv2d`` layout and
    default init (uniform in +-1/sqrt(Cin p p)).
    Shapes: img (B, Cin, Hi, Wi) -> x (B, N, C), N = (Hi/p)(Wi/p), row-major grid order.
    """

    def __init__(self, img_size, patch_size: int, in_chans: int, embed_dim: int, *, seed=0,
                 dtype=np.float32):
        super().__init__(dtype)
        Hi, Wi = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        p = patch_size
        for name, v in (("image height", Hi), ("image width", Wi), ("patch_size", p),
                        ("in_chans", in_chans), ("embed_dim", embed_dim)):
            check_positive_int(v, name)
        if Hi % p or Wi % p:
            raise ValueError(f"patch_size {p} must divide the image size {(Hi, Wi)}")
        self.img_size, self.patch_size, self.in_chans, self.embed_dim = (Hi, Wi), p, in_chans, embed_dim
        self.grid_size = (Hi // p, Wi // p)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        rng, bound = init.as_rng(seed), 1.0 / math.sqrt(in_chans * p * p)
        self.params = {
            "proj.weight": init.uniform(rng, (embed_dim, in_chans, p, p), bound, self.dtype),
            "proj.bias": init.uniform(rng, (embed_dim,), bound, self.dtype),
        }
        self._out_shape = None

    def forward(self, img):
        """img (B, Cin, Hi, Wi) -> x (B, N, C)."""
        check_array(img, "images", ndim=4, dtype=self.dtype, device=self.device)
        if tuple(img.shape[1:]) != (self.in_chans,) + self.img_size:
            raise ValueError(f"images must have shape (B, {self.in_chans}, {self.img_size[0]}, "
                             f"{self.img_size[1]}), got {tuple(img.shape)}")
        x, self.cache = patch_embed_forward(img, self.params["proj.weight"], self.params["proj.bias"])
        self._out_shape = x.shape
        return x                                                    # (B, N, C)

    def backward(self, dout):
        """dout (B, N, C) -> dimg (B, Cin, Hi, Wi); fills ``proj.weight``/``proj.bias`` grads."""
        check_dout(dout, self._out_shape, self.dtype, "PatchEmbed")
        dimg, dw, db = patch_embed_backward(dout, self.cache)
        self.grads = {"proj.weight": dw, "proj.bias": db}
        return dimg

    def macs(self) -> int:
        """Multiply-accumulates per image: N C Cin p^2."""
        return self.num_patches * self.embed_dim * self.in_chans * self.patch_size ** 2
