"""The conditioning embedders of DiT and its fixed 2-D sin-cos position embedding.

Legend: B batch, C channels, F = 256 frequencies, K classes, H x W patch grid.

Timestep embedding (reference DiT ``TimestepEmbedder``), half = F / 2, T = 10000:
    freqs_j = exp(-ln(T) j / half),  j = 0 .. half-1
    emb(t)  = [cos(t freqs) ; sin(t freqs)]                    (B, F)
    c_t     = mlp.2( SiLU( mlp.0(emb(t)) ) )                   (B, C)
Label embedding (reference DiT ``LabelEmbedder``): one table row per class plus a "null" row
(index K) for classifier-free guidance; during training each label is replaced by the null
class with probability ``dropout_prob``.
    c_y = embedding_table[y]                                   (B, C)
2-D sin-cos position embedding (MAE / DiT ``get_2d_sincos_pos_embed``): with
    emb1d(D, pos) = [sin(pos omega) ; cos(pos omega)],  omega_j = 10000^(-j / (D/2)),
the token at row r, column c gets [emb1d(C/2, c) ; emb1d(C/2, r)]  (the column index first,
because the reference stacks ``meshgrid(grid_w, grid_h)``).
The embedding is computed in the model's dtype (the reference computes the timestep sines
in float32, which a float64 model could not consume).
"""
from __future__ import annotations

import math

import numpy as np

from vca_ref.backend import check, device_of, generator_for, get_array_module
from vca_ref.ops.activations import silu_backward, silu_forward
from vca_ref.ops.embedding import embedding_backward, embedding_forward
from vca_ref.nn import init
from vca_ref.nn.checks import check_array, check_positive_int
from vca_ref.nn.layers import Linear
from vca_ref.nn.module import Module

FREQUENCY_EMBEDDING_SIZE = 256


def timestep_embedding(t, dim: int = FREQUENCY_EMBEDDING_SIZE, max_period: float = 10000.0, dtype=None):
    """Sinusoidal embedding of timesteps t (B,) (float or int) -> (B, dim), ``[cos ; sin]``."""
    xp = get_array_module(t)
    dtype = np.float32 if dtype is None else dtype
    half = dim // 2
    freqs = xp.exp(-math.log(max_period) * xp.arange(half, dtype=dtype) / half)   # (half,)
    args = xp.asarray(t, dtype=dtype)[:, None] * freqs[None]                      # (B, half)
    emb = xp.concatenate([xp.cos(args), xp.sin(args)], axis=-1)                   # (B, 2 half)
    if dim % 2:
        emb = xp.concatenate([emb, xp.zeros_like(emb[:, :1])], axis=-1)           # (B, dim)
    return emb


def sincos_1d(dim: int, pos) -> np.ndarray:
    """(M,) positions -> (M, dim) ``[sin(pos omega) ; cos(pos omega)]``, float64."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding dimension must be even, got {dim}")
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))   # (dim/2,)
    out = np.asarray(pos, dtype=np.float64).reshape(-1)[:, None] * omega[None]       # (M, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)                        # (M, dim)


def sincos_2d(dim: int, grid_size) -> np.ndarray:
    """Fixed 2-D position embedding (H*W, dim) for a (H, W) grid (an int means square), float64."""
    H, W = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    gw, gh = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))  # (H, W) each
    emb_first = sincos_1d(dim // 2, gw)                 # (H*W, dim/2)  column index
    emb_second = sincos_1d(dim // 2, gh)                # (H*W, dim/2)  row index
    return np.concatenate([emb_first, emb_second], axis=1)                      # (H*W, dim)


class TimestepEmbedder(Module):
    """Scalar timesteps -> vectors: ``mlp.2(SiLU(mlp.0(emb(t))))``.

    Parameters: ``mlp.0.weight`` (C, F), ``mlp.0.bias``, ``mlp.2.weight`` (C, C), ``mlp.2.bias``
    (index 1 is the parameter-free SiLU, as in the reference ``nn.Sequential``).
    Init: weights N(0, 0.02^2), biases zero (the reference DiT).
    Shapes: t (B,) -> c_t (B, C).  No gradient flows to t.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = FREQUENCY_EMBEDDING_SIZE, *,
                 seed=0, dtype=np.float32):
        super().__init__(dtype)
        check_positive_int(hidden_size, "hidden_size")
        check_positive_int(frequency_embedding_size, "frequency_embedding_size")
        rng = init.as_rng(seed)
        self.frequency_embedding_size = frequency_embedding_size
        self.fc0 = Linear(frequency_embedding_size, hidden_size, seed=rng, dtype=dtype)
        self.fc2 = Linear(hidden_size, hidden_size, seed=rng, dtype=dtype)
        for lin in (self.fc0, self.fc2):
            lin.params["weight"] = init.normal(rng, lin.params["weight"].shape, 0.02, self.dtype)
        self.children = {"mlp.0": self.fc0, "mlp.2": self.fc2}

    def forward(self, t):
        """t (B,) float or int timesteps -> (B, C)."""
        if not hasattr(t, "shape") or t.ndim != 1:
            raise ValueError(f"timesteps t must be a 1-D array of shape (B,), got {getattr(t, 'shape', t)!r}")
        t = get_array_module(self.fc0.params["weight"]).asarray(t)                     # on our device
        emb = timestep_embedding(t, self.frequency_embedding_size, dtype=self.dtype)   # (B, F)
        h = self.fc0(emb)                                                              # (B, C)
        a, self.cache = silu_forward(h)                                                # (B, C)
        return self.fc2(a)                                                             # (B, C)

    def backward(self, dout):
        """dout (B, C) -> None (timesteps are not differentiable); fills the grads."""
        da = self.fc2.backward(dout)                                                   # (B, C)
        # a = SiLU(h)
        dh = silu_backward(da, self.cache)                                             # (B, C)
        self.fc0.backward(dh)
        return None


class LabelEmbedder(Module):
    """Class labels -> vectors, with the null class ``num_classes`` for classifier-free guidance.

    Args:
        num_classes: K (the table has K + 1 rows; row K is the null class).
        hidden_size: C.
        dropout_prob: training-time probability of replacing a label by the null class.
        seed: seeds both the table init and :attr:`rng`, the generator of the label dropout.
    Parameter: ``embedding_table.weight`` (K + 1, C), init N(0, 0.02^2).
    Shapes: y (B,) ints in [0, K] -> c_y (B, C).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float = 0.0, *, seed=0,
                 dtype=np.float32):
        super().__init__(dtype)
        check_positive_int(num_classes, "num_classes")
        check_positive_int(hidden_size, "hidden_size")
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1), got {dropout_prob}")
        rng = init.as_rng(seed)
        self.num_classes, self.dropout_prob = num_classes, float(dropout_prob)
        self.params["embedding_table.weight"] = init.normal(rng, (num_classes + 1, hidden_size), 0.02,
                                                            self.dtype)
        self.rng = np.random.default_rng(rng.integers(2 ** 63))      # label-dropout generator

    def token_drop(self, labels, rng=None, force_drop_ids=None):
        """Replace labels by the null class where ``rand < dropout_prob`` (or ``force_drop_ids == 1``)."""
        xp = get_array_module(labels)
        if force_drop_ids is None:
            rng = self.rng if rng is None else rng
            u = generator_for(rng, device_of(labels)).random(labels.shape[0])          # (B,) on y's device
            drop = u < self.dropout_prob                                                 # (B,)
        else:
            drop = xp.asarray(force_drop_ids) == 1                                       # (B,)
        return xp.where(drop, self.num_classes, labels)

    def forward(self, y, train: bool = False, rng=None, force_drop_ids=None):
        """y (B,) int labels -> (B, C); label dropout when ``train`` and ``dropout_prob > 0``."""
        if not hasattr(y, "dtype") or np.dtype(y.dtype).kind not in "iu" or y.ndim != 1:
            raise TypeError(f"labels y must be a 1-D integer array of shape (B,), got "
                            f"{getattr(y, 'dtype', type(y).__name__)} {getattr(y, 'shape', '')}")
        if y.size:                                   # on a device: read with the step's one sync
            check((y.min() >= 0) & (y.max() <= self.num_classes), lambda: ValueError(
                f"labels y must be in [0, {self.num_classes}] ({self.num_classes} is the null "
                f"class), got range [{int(y.min())}, {int(y.max())}]"))
        y = get_array_module(self.params["embedding_table.weight"]).asarray(y)         # on our device
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            y = self.token_drop(y, rng, force_drop_ids)
        out, self.cache = embedding_forward(y, self.params["embedding_table.weight"])   # (B, C)
        return out

    def backward(self, dout):
        """dout (B, C) -> None (labels are not differentiable); fills the table gradient."""
        check_array(dout, "dout", ndim=2, dtype=self.dtype, finite=False)
        self.grads = {"embedding_table.weight": embedding_backward(dout, self.cache)}    # (K + 1, C)
        return None
