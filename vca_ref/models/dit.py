"""TinyDiT: a class-conditional diffusion transformer with adaLN-Zero blocks, forward and backward by hand.

Legend: B batch, Cin input channels, Cout = Cin (or 2 Cin with ``learn_sigma``), Hi = Wi = img_size,
p patch size, N = H*W tokens (no prefix token, P = 0), C channels, K classes.

Forward (the reference DiT ``models.py``, names exactly its state-dict names):
    1. x  = x_embedder(img) + pos_embed                      (B, N, C)   pos_embed: fixed 2-D sin-cos
    2. c  = t_embedder(t) + y_embedder(y)                    (B, C)      y = K is the null class
    3. for each block i (adaLN-Zero):
         shift1, scale1, gate1, shift2, scale2, gate2 = adaLN_modulation(c)      (B, C) each
         x += gate1 * Attn(modulate(LN(x), shift1, scale1))
         x += gate2 * MLP(modulate(LN(x), shift2, scale2))    (LN without affine, eps 1e-6; GELU tanh)
    4. shift, scale = final_layer.adaLN_modulation(c)
       x  = final_layer.linear(modulate(LN(x), shift, scale))   (B, N, p*p*Cout)
    5. out = unpatchify(x)                                     (B, Cout, Hi, Wi)
with ``adaLN_modulation = Linear(SiLU(c))`` and ``modulate(x, shift, scale) = x (1 + scale) + shift``.
Backward runs 5 -> 1; c feeds every block and the final layer, so dc is the explicit sum of
their gradients; it then flows into both embedders (t and y themselves get none).

Init is adaLN-Zero (the reference): the modulation linears and ``final_layer.linear`` are zero,
so a fresh model outputs zeros.  Gradient tests must randomise them: zero gates hide broken branches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from vca_ref.backend import check, get_array_module
from vca_ref.nn import init
from vca_ref.nn.embedders import LabelEmbedder, TimestepEmbedder, sincos_2d
from vca_ref.nn.checks import check_array, check_dout
from vca_ref.nn.layers import LayerNorm, Linear, Mlp, PatchEmbed
from vca_ref.nn.module import Module
from vca_ref.ops.activations import silu_backward, silu_forward
from vca_ref.ops.modulate import modulate_backward, modulate_forward
from vca_ref.ops.patchify import patchify, unpatchify
from vca_ref.models.common import TokenModelConfig, check_model_config, make_attention


@dataclass(frozen=True)
class DiTConfig(TokenModelConfig):
    """Sizes and options of a TinyDiT (validated by :class:`TinyDiT`); shared fields in
    :class:`~vca_ref.models.common.TokenModelConfig` (``img_size`` is the reference's
    ``input_size``, ``dim`` its ``hidden_size``, divisible by 4 for the sin-cos embedding; the label
    table has K + 1 rows).  No prefix tokens: N = H*W."""
    class_dropout_prob: float = 0.1      # training-time label dropout (classifier-free guidance)
    learn_sigma: bool = False            # True: Cout = 2 Cin (the reference's default is True)
    dtype: str = "float32"

    @property
    def out_chans(self) -> int:
        return 2 * self.in_chans if self.learn_sigma else self.in_chans


class AdaLNModulation(Linear):
    """``Linear(SiLU(c))``: c (B, C) -> (B, k C), the reference's ``nn.Sequential(SiLU, Linear)``."""

    def forward(self, c):
        a, self._silu = silu_forward(c)                                  # (B, C)
        return super().forward(a)                                        # (B, k C)

    def backward(self, dout):
        da = super().backward(dout)                                      # (B, C)
        # a = SiLU(c)
        return silu_backward(da, self._silu)                             # (B, C)


class DiTBlockCache(NamedTuple):
    a: object           # (B, N, C) attention branch output
    gate1: object       # (B, C)
    mod1: object        # ModulateCache of the attention branch input
    f: object           # (B, N, C) MLP branch output
    gate2: object       # (B, C)
    mod2: object        # ModulateCache of the MLP branch input


class DiTBlock(Module):
    """adaLN-Zero block.  x (B, N, C), c (B, C) -> (B, N, C)."""

    def __init__(self, cfg: DiTConfig, layer_index: int, *, seed=0, dtype=np.float32):
        super().__init__(dtype)
        rng, C = init.as_rng(seed), cfg.dim
        self.norm1 = LayerNorm(C, 1e-6, elementwise_affine=False, dtype=dtype)
        self.attn = make_attention(cfg, cfg.grid_size, 0, layer_index, rng, dtype)
        self.norm2 = LayerNorm(C, 1e-6, elementwise_affine=False, dtype=dtype)
        self.mlp = Mlp(C, int(C * cfg.mlp_ratio), approximate="tanh", seed=rng, dtype=dtype)
        self.adaLN = AdaLNModulation(C, 6 * C, seed=rng, dtype=dtype)
        self.children = {"norm1": self.norm1, "attn": self.attn, "norm2": self.norm2,
                         "mlp": self.mlp, "adaLN_modulation.1": self.adaLN}

    def forward(self, x, c):
        """x (B, N, C), c (B, C) -> (B, N, C)."""
        xp = get_array_module(x)
        mod = self.adaLN(c)                                                       # (B, 6C)
        shift1, scale1, gate1, shift2, scale2, gate2 = xp.split(mod, 6, axis=1)   # (B, C) each
        m1, c_m1 = modulate_forward(self.norm1(x), shift1, scale1)                # (B, N, C)
        a = self.attn(m1)                                                         # (B, N, C)
        x1 = x + gate1[:, None] * a                                               # (B, N, C)
        m2, c_m2 = modulate_forward(self.norm2(x1), shift2, scale2)               # (B, N, C)
        f = self.mlp(m2)                                                          # (B, N, C)
        x2 = x1 + gate2[:, None] * f                                              # (B, N, C)
        self.cache = DiTBlockCache(a=a, gate1=gate1, mod1=c_m1, f=f, gate2=gate2, mod2=c_m2)
        return x2

    def backward(self, dout):
        """dout (B, N, C) -> (dx (B, N, C), dc (B, C)); fills every child's grads."""
        xp = get_array_module(dout)
        c = self.cache
        # x2 = x1 + gate2 * f  (dout = dx2)
        dgate2 = (dout * c.f).sum(axis=1)                                         # (B, C)
        df = dout * c.gate2[:, None]                                              # (B, N, C)
        dm2 = self.mlp.backward(df)                                               # (B, N, C)
        # m2 = modulate(norm2(x1), shift2, scale2)
        dh2, dshift2, dscale2 = modulate_backward(dm2, c.mod2)
        dx1 = dout + self.norm2.backward(dh2)                                     # skip + branch
        # x1 = x + gate1 * a
        dgate1 = (dx1 * c.a).sum(axis=1)                                          # (B, C)
        da = dx1 * c.gate1[:, None]                                               # (B, N, C)
        dm1 = self.attn.backward(da)                                              # (B, N, C)
        # m1 = modulate(norm1(x), shift1, scale1)
        dh1, dshift1, dscale1 = modulate_backward(dm1, c.mod1)
        dx = dx1 + self.norm1.backward(dh1)                                       # skip + branch
        # mod = adaLN(c), split into six
        dmod = xp.concatenate([dshift1, dscale1, dgate1, dshift2, dscale2, dgate2], axis=1)  # (B, 6C)
        dc = self.adaLN.backward(dmod)                                            # (B, C)
        return dx, dc


class FinalLayer(Module):
    """``linear(modulate(LN(x), shift, scale))`` with ``shift, scale = adaLN_modulation(c)``."""

    def __init__(self, dim: int, patch_size: int, out_chans: int, *, seed=0, dtype=np.float32):
        super().__init__(dtype)
        rng = init.as_rng(seed)
        self.norm_final = LayerNorm(dim, 1e-6, elementwise_affine=False, dtype=dtype)
        self.linear = Linear(dim, patch_size * patch_size * out_chans, seed=rng, dtype=dtype)
        self.adaLN = AdaLNModulation(dim, 2 * dim, seed=rng, dtype=dtype)
        self.children = {"norm_final": self.norm_final, "linear": self.linear,
                         "adaLN_modulation.1": self.adaLN}

    def forward(self, x, c):
        """x (B, N, C), c (B, C) -> (B, N, p*p*Cout)."""
        xp = get_array_module(x)
        shift, scale = xp.split(self.adaLN(c), 2, axis=1)                         # (B, C) each
        m, self.cache = modulate_forward(self.norm_final(x), shift, scale)        # (B, N, C)
        return self.linear(m)                                                     # (B, N, p*p*Cout)

    def backward(self, dout):
        """dout (B, N, p*p*Cout) -> (dx (B, N, C), dc (B, C))."""
        xp = get_array_module(dout)
        dm = self.linear.backward(dout)                                           # (B, N, C)
        dh, dshift, dscale = modulate_backward(dm, self.cache)
        dx = self.norm_final.backward(dh)                                         # (B, N, C)
        dc = self.adaLN.backward(xp.concatenate([dshift, dscale], axis=1))        # (B, C)
        return dx, dc


class TinyDiT(Module):
    """Class-conditional DiT; ``forward(x, t, y) -> out``, ``backward(dout) -> dx``.

    Args:
        config: a :class:`DiTConfig` (``DIT_CONFIGS[name]()`` for the named sizes).
        seed: int or ``np.random.Generator`` for the init (and the label-dropout generator).
        zero_init: adaLN-Zero (default True): zero modulation linears and final linear.
    State dict: the parameters plus the fixed buffer ``pos_embed`` (1, N, C), as the reference
    (whose ``pos_embed`` is a frozen parameter) saves it.
    """

    def __init__(self, config: DiTConfig | None = None, *, seed=0, zero_init: bool = True):
        cfg = DiTConfig() if config is None else config
        check_model_config(cfg)
        if cfg.dim % 4:
            raise ValueError(f"config.dim must be divisible by 4 for the 2-D sin-cos embedding, got {cfg.dim}")
        super().__init__(cfg.dtype)
        self.config, dt, C, p = cfg, self.dtype, cfg.dim, cfg.patch_size
        rng = init.as_rng(seed)
        self.x_embedder = PatchEmbed(cfg.img_size, p, cfg.in_chans, C, seed=rng, dtype=dt)
        self.t_embedder = TimestepEmbedder(C, seed=rng, dtype=dt)
        self.y_embedder = LabelEmbedder(cfg.num_classes, C, cfg.class_dropout_prob, seed=rng, dtype=dt)
        self.buffers["pos_embed"] = sincos_2d(C, cfg.grid_size)[None].astype(dt)     # (1, N, C)
        self.blocks = [DiTBlock(cfg, i, seed=rng, dtype=dt) for i in range(cfg.depth)]
        self.final_layer = FinalLayer(C, p, cfg.out_chans, seed=rng, dtype=dt)
        self.children = {"x_embedder": self.x_embedder, "t_embedder": self.t_embedder,
                         "y_embedder": self.y_embedder,
                         **{f"blocks.{i}": b for i, b in enumerate(self.blocks)},
                         "final_layer": self.final_layer}
        self._initialize_weights(rng, zero_init)
        self._out_shape = None

    def _initialize_weights(self, rng, zero_init: bool) -> None:
        """The reference init: xavier-uniform linears (patch embedding as a linear), zero biases;
        the embedders keep N(0, 0.02^2); adaLN-Zero zeros when ``zero_init``."""
        def xavier(shape):
            fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
            return init.uniform(rng, shape, (6.0 / (fan_in + fan_out)) ** 0.5, self.dtype)

        for blk in self.blocks:
            for mod, names in ((blk.attn, ("qkv", "proj")), (blk.mlp.fc1, ("",)), (blk.mlp.fc2, ("",)),
                               (blk.adaLN, ("",))):
                for n in names:
                    pre = f"{n}." if n else ""
                    mod.params[pre + "weight"] = xavier(mod.params[pre + "weight"].shape)
                    mod.params[pre + "bias"] = init.zeros(mod.params[pre + "bias"].shape, self.dtype)
        xe = self.x_embedder.params
        xe["proj.weight"] = xavier(xe["proj.weight"].shape)
        xe["proj.bias"] = init.zeros(xe["proj.bias"].shape, self.dtype)
        last = [blk.adaLN for blk in self.blocks] + [self.final_layer.adaLN, self.final_layer.linear]
        for lin in last:
            if zero_init:
                lin.params = {k: init.zeros(v.shape, self.dtype) for k, v in lin.params.items()}
            else:
                lin.params = {"weight": xavier(lin.params["weight"].shape),
                              "bias": init.zeros(lin.params["bias"].shape, self.dtype)}

    def forward(self, x, t, y, *, train: bool = False, rng=None, force_drop_ids=None):
        """x (B, Cin, Hi, Wi), t (B,) float or int timesteps, y (B,) int labels in [0, K]
        -> (B, Cout, Hi, Wi).  With ``train=True`` labels are dropped to the null class K with
        probability ``class_dropout_prob``, drawn from ``rng`` (default: ``y_embedder.rng``)."""
        cfg = self.config
        check_array(x, "x", ndim=4, dtype=self.dtype, device=self.device)
        expected = (cfg.in_chans, cfg.img_size, cfg.img_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(x.shape)}")
        B = x.shape[0]
        for name, v in (("t", t), ("y", y)):
            if not hasattr(v, "shape") or tuple(v.shape) != (B,):
                raise ValueError(f"{name} must have shape ({B},) to match x, got {getattr(v, 'shape', v)!r}")
        if np.dtype(t.dtype).kind not in "iuf":
            raise TypeError(f"t must hold real timesteps (an integer or float dtype), got dtype {t.dtype}")
        if np.dtype(y.dtype).kind not in "iu":
            raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
        check(get_array_module(t).isfinite(t).all(),                       # device: read with the loss
              lambda: ValueError("t contains NaN or inf timesteps; expected finite values"))
        # 1. patch tokens + fixed position embedding
        h = self.x_embedder(x) + self.buffers["pos_embed"]                      # (B, N, C)
        # 2. conditioning vector
        c = self.t_embedder(t) + self.y_embedder(y, train, rng, force_drop_ids)  # (B, C)
        # 3. adaLN-Zero blocks
        for blk in self.blocks:
            h = blk(h, c)                                                       # (B, N, C)
        # 4. final adaLN layer
        h = self.final_layer(h, c)                                              # (B, N, p*p*Cout)
        # 5. tokens -> image
        out = unpatchify(h, cfg.patch_size, cfg.grid_size)                      # (B, Cout, Hi, Wi)
        self._out_shape = out.shape
        return out

    def backward(self, dout):
        """dout (B, Cout, Hi, Wi) -> dx (B, Cin, Hi, Wi); fills every parameter gradient."""
        check_dout(dout, self._out_shape, self.dtype, "TinyDiT")
        # 5. out = unpatchify(h)
        dh = patchify(dout, self.config.patch_size)                             # (B, N, p*p*Cout)
        # 4. h = final_layer(h, c)
        dh, dc = self.final_layer.backward(dh)                                  # (B, N, C), (B, C)
        # 3. h = block(h, c), last first; c feeds every block: sum the gradients
        for blk in reversed(self.blocks):
            dh, dc_blk = blk.backward(dh)
            dc = dc + dc_blk                                                    # (B, C)
        # 2. c = t_embedder(t) + y_embedder(y)
        self.t_embedder.backward(dc)
        self.y_embedder.backward(dc)
        # 1. h = x_embedder(x) + pos_embed  (pos_embed is fixed)
        return self.x_embedder.backward(dh)                                     # (B, Cin, Hi, Wi)

    def macs(self) -> int:
        """Multiply-accumulates of one forward per image (matmuls and the attention core)."""
        cfg, N, C = self.config, self.config.num_tokens, self.config.dim
        t_emb = self.t_embedder.frequency_embedding_size * C + C * C
        blocks = sum(b.attn.macs(N) + b.mlp.macs(N) + 6 * C * C for b in self.blocks)
        final = 2 * C * C + N * C * cfg.patch_size ** 2 * cfg.out_chans
        return self.x_embedder.macs() + t_emb + blocks + final


# ------------------------------------------------------------------ named sizes
def dit_tiny_digits(**overrides) -> DiTConfig:
    """scikit-learn digits, 8x8: patch 2 -> 4x4 grid (16 tokens), C 64, 3 blocks, 4 heads, 2x2 contrast grid."""
    return DiTConfig(**{**dict(img_size=8, patch_size=2, dim=64, depth=3, num_heads=4,
                               mlp_ratio=2.0, pool_size=(2, 2)), **overrides})


def dit_tiny_mnist(**overrides) -> DiTConfig:
    """MNIST sample, 28x28: patch 4 -> 7x7 grid (49 tokens), C 64, 4 blocks, 4 heads, 3x3 contrast grid."""
    return DiTConfig(**{**dict(img_size=28, patch_size=4, dim=64, depth=4, num_heads=4,
                               mlp_ratio=2.0, pool_size=(3, 3)), **overrides})


DIT_CONFIGS = {"tiny-digits": dit_tiny_digits, "tiny-mnist": dit_tiny_mnist}


def create_dit(name: str, *, seed=0, zero_init: bool = True, **overrides) -> TinyDiT:
    """``TinyDiT(DIT_CONFIGS[name](**overrides), seed=seed)``, e.g. ``create_dit("tiny-digits", attention="mhsa")``."""
    if name not in DIT_CONFIGS:
        raise ValueError(f"unknown DiT size {name!r}; expected one of {sorted(DIT_CONFIGS)}")
    return TinyDiT(DIT_CONFIGS[name](**overrides), seed=seed, zero_init=zero_init)
