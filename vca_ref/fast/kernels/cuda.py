"""The CuPy kernels and their drop-in twin functions.

Every function here is the twin of NumPy/CuPy lines in :mod:`vca_ref.ops` (or of the AdamW
update in :mod:`vca_ref.train.optim`) and returns the same arrays those lines compute:

    gelu_forward(x, approximate)          y            ops.activations.gelu_forward
    gelu_backward(dy, x, approximate)     dx           ops.activations.gelu_backward
    silu_forward(x)                       (y, s)       ops.activations.silu_forward
    silu_backward(dy, x, s)               dx           ops.activations.silu_backward
    diff_combine_forward(a, b, lam)       z            ops.diff_combine.diff_combine_forward
    diff_combine_backward(dz, b, lam)     (da, db, dlam)
    modulate_forward(x, shift, scale)     y            ops.modulate.modulate_forward
    modulate_backward(dy, x, scale)       (dx, dshift, dscale)
    softmax_backward(dy, y)               dx           ops.softmax.softmax_backward
    rmsnorm_forward(z, w, eps)            (y, zhat, rstd)
    rmsnorm_backward(dy, zhat, rstd, w)   (dz, dw)
    adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step)   in place

Shapes follow the ops (B batch, N tokens, C channels; rows = every axis but the last).
Elementwise work is a ``cupy.ElementwiseKernel`` whose operation is one call into the .cuh
math; row-wise work (RMSNorm, softmax backward) is a ``cupy.RawKernel`` with one thread block
per row.  Kernel objects are built on first use and memoised per (device id, dtype); the .cuh
text goes in as the preamble (CuPy's compile cache is keyed by the source text, so an edited
.cuh is recompiled).  CuPy is reached only through :func:`vca_ref.backend.cupy_module`.
"""
from __future__ import annotations

import functools
import math
import re
import string
from typing import NamedTuple

import numpy as np

from vca_ref.backend import cupy_module
from vca_ref.fast.kernels import cuh_text

DTYPES = {np.dtype(np.float32): ("float32", "float", "f32"),
          np.dtype(np.float64): ("float64", "double", "f64")}


class Elementwise(NamedTuple):
    in_params: str          # "T x, T y": T becomes float32/float64
    out_params: str
    operation: str          # one call into the .cuh math
    cuh: tuple              # the .cuh files of the preamble (common.cuh is always added)
    scalars: tuple = ()     # parameters passed as host scalars (not arrays)
    either: tuple = ()      # parameters passed as a host scalar or a device array


ELEMENTWISE = {
    "gelu_erf_forward": Elementwise("T x", "T y", "y = vca::gelu_erf_forward(x)",
                                    ("activations.cuh",)),
    "gelu_erf_backward": Elementwise("T dy, T x", "T dx", "dx = vca::gelu_erf_backward(dy, x)",
                                     ("activations.cuh",)),
    "gelu_tanh_forward": Elementwise("T x", "T y", "y = vca::gelu_tanh_forward(x)",
                                     ("activations.cuh",)),
    "gelu_tanh_backward": Elementwise("T dy, T x", "T dx", "dx = vca::gelu_tanh_backward(dy, x)",
                                      ("activations.cuh",)),
    "silu_forward": Elementwise("T x", "T y, T s", "y = vca::silu_forward(x, s)",
                                ("activations.cuh",)),
    "silu_backward": Elementwise("T dy, T x, T s", "T dx", "dx = vca::silu_backward(dy, x, s)",
                                 ("activations.cuh",)),
    "diff_combine_forward": Elementwise("T a, T b, T lam", "T z",
                                        "z = vca::diff_combine_forward(a, b, lam)",
                                        ("combine.cuh",), either=("lam",)),
    "diff_combine_backward_b": Elementwise("T dz, T lam", "T db",
                                           "db = vca::diff_combine_backward_b(dz, lam)",
                                           ("combine.cuh",), either=("lam",)),
    "modulate_forward": Elementwise("T x, T shift, T scale", "T y",
                                    "y = vca::modulate_forward(x, shift, scale)",
                                    ("combine.cuh",)),
    "modulate_backward_x": Elementwise("T dy, T scale", "T dx",
                                       "dx = vca::modulate_backward_x(dy, scale)",
                                       ("combine.cuh",)),
    "adamw_update": Elementwise(
        "T g, T decay, T omb1, T b2, T omb2, T eps, T bc2_sqrt, T step_size", "T p, T m, T v",
        "vca::adamw_update(p, m, v, g, decay, omb1, b2, omb2, eps, bc2_sqrt, step_size)",
        ("adamw.cuh",), scalars=("decay", "omb1", "b2", "omb2", "eps", "bc2_sqrt", "step_size")),
}


class Rowwise(NamedTuple):
    entry: str              # the __global__ entry point; $name is replaced, scalar_t is T
    cuh: tuple


ROWWISE = {
    "rmsnorm_forward": Rowwise(r"""
extern "C" __global__ void $name(const scalar_t* z, const scalar_t* w, scalar_t* y,
                                 scalar_t* zhat, scalar_t* rstd, long long rows, int d,
                                 scalar_t eps) {
    const vca::BlockTeam team;                                  // one block per row
    for (long long r = blockIdx.x; r < rows; r += gridDim.x)
        vca::rmsnorm_forward_row(team, z + r * d, w, y + r * d, zhat + r * d, rstd + r, d, eps);
}
""", ("reduce.cuh", "rmsnorm.cuh")),
    "rmsnorm_backward": Rowwise(r"""
extern "C" __global__ void $name(const scalar_t* dy, const scalar_t* zhat, const scalar_t* w,
                                 const scalar_t* rstd, scalar_t* dz, long long rows, int d) {
    const vca::BlockTeam team;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x)
        vca::rmsnorm_backward_row(team, dy + r * d, zhat + r * d, w, rstd[r], dz + r * d, d);
}
""", ("reduce.cuh", "rmsnorm.cuh")),
    "softmax_backward": Rowwise(r"""
extern "C" __global__ void $name(const scalar_t* dy, const scalar_t* y, scalar_t* dx,
                                 long long rows, int K) {
    const vca::BlockTeam team;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x)
        vca::softmax_backward_row(team, dy + r * K, y + r * K, dx + r * K, K);
}
""", ("reduce.cuh", "softmax.cuh")),
}

KERNEL_NAMES = tuple(ELEMENTWISE) + tuple(ROWWISE)


def _cp():
    cp = cupy_module()
    if cp is None:
        raise RuntimeError("vca_ref.fast.kernels.cuda needs CuPy: pip install 'vca_ref[gpu]'")
    return cp


def kernel_name(name: str, dtype) -> str:
    """The C name of one variant, e.g. ``vca_gelu_erf_forward_f32``."""
    return f"vca_{name}_{DTYPES[np.dtype(dtype)][2]}"


def build_kernel(name: str, dtype):
    """A new (uncompiled) CuPy kernel object; CuPy compiles it on the first launch."""
    cp = _cp()
    np_name, c_type, _ = DTYPES[np.dtype(dtype)]
    if name in ELEMENTWISE:
        spec = ELEMENTWISE[name]
        in_params = re.sub(r"\bT\b", np_name, spec.in_params)      # "T x" -> "float32 x"
        out_params = re.sub(r"\bT\b", np_name, spec.out_params)
        return cp.ElementwiseKernel(in_params, out_params, spec.operation,
                                    kernel_name(name, dtype), preamble=cuh_text(*spec.cuh))
    spec = ROWWISE[name]
    code = (cuh_text(*spec.cuh) + f"typedef {c_type} scalar_t;\n"
            + string.Template(spec.entry).substitute(name=kernel_name(name, dtype)))
    return cp.RawKernel(code, kernel_name(name, dtype))


@functools.lru_cache(maxsize=None)
def _memo(name: str, device_id: int, dtype: np.dtype):
    return build_kernel(name, dtype)


def get_kernel(name: str, dtype):
    """The kernel object for the current CUDA device and ``dtype`` (built once, then reused)."""
    return _memo(name, _cp().cuda.runtime.getDevice(), np.dtype(dtype))


# ----------------------------------------------------------------------------- helpers
def _same_dtype(*arrays):
    """The one dtype of ``arrays`` (CuPy, float32/float64); raw kernels would misread a mix."""
    dtypes = {np.dtype(a.dtype) for a in arrays}
    if len(dtypes) != 1 or next(iter(dtypes)) not in DTYPES:
        raise TypeError(f"kernel inputs must share one dtype, float32 or float64; got {dtypes}")
    return dtypes.pop()


def _launch_rows(name: str, dtype, rows: int, K: int, args: tuple) -> None:
    """One thread block per row of K entries (a multiple of 32 threads, at most 256)."""
    if rows == 0 or K == 0:
        return
    threads = min(256, 32 * ((K + 31) // 32))
    grid = min(rows, 1 << 20)                       # the kernel loops over the remaining rows
    get_kernel(name, dtype)((grid,), (threads,), args)


def _scalar_or_array(lam):
    """A CuPy array stays on the device; a host scalar (float, 0-d NumPy) becomes a float."""
    cp = _cp()
    return lam if isinstance(lam, cp.ndarray) else float(lam)


# ----------------------------------------------------------------------------- activations
def gelu_forward(x, approximate: str = "none"):
    """``y = gelu(x)``; x (...) -> y (...).  Twin of ``ops.activations.gelu_forward``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    name = "gelu_tanh_forward" if approximate == "tanh" else "gelu_erf_forward"
    return get_kernel(name, _same_dtype(x))(x)                           # (...)


def gelu_backward(dy, x, approximate: str = "none"):
    """``dx = dy * gelu'(x)``; dy, x (...) -> dx (...)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    name = "gelu_tanh_backward" if approximate == "tanh" else "gelu_erf_backward"
    return get_kernel(name, _same_dtype(dy, x))(dy, x)                   # (...)


def silu_forward(x):
    """``(y, s)`` with ``s = sigmoid(x)``, ``y = x * s``; both (...)."""
    return get_kernel("silu_forward", _same_dtype(x))(x)


def silu_backward(dy, x, s):
    """``dx = dy * s * (1 + x (1 - s))``; all (...)."""
    return get_kernel("silu_backward", _same_dtype(dy, x, s))(dy, x, s)


# ----------------------------------------------------------------------------- combine / modulate
def diff_combine_forward(a, b, lam):
    """``z = a - lam * b``; a, b (...), lam a scalar or 0-d array."""
    return get_kernel("diff_combine_forward", _same_dtype(a, b))(a, b, _scalar_or_array(lam))


def diff_combine_backward(dz, b, lam):
    """``(da, db, dlam) = (dz, -lam * dz, -sum(dz * b))``; dlam is a 0-d CuPy sum."""
    db = get_kernel("diff_combine_backward_b", _same_dtype(dz, b))(dz, _scalar_or_array(lam))
    return dz, db, -(dz * b).sum()


def modulate_forward(x, shift, scale):
    """``y = x * (1 + scale) + shift``; x (B, N, C), shift/scale (B, C) -> y (B, N, C)."""
    return get_kernel("modulate_forward", _same_dtype(x, shift, scale))(
        x, shift[:, None, :], scale[:, None, :])                          # (B, N, C)


def modulate_backward(dy, x, scale):
    """``(dx, dshift, dscale)``; dx (B, N, C) by the kernel, the two (B, C) sums by CuPy."""
    dx = get_kernel("modulate_backward_x", _same_dtype(dy, x, scale))(dy, scale[:, None, :])
    return dx, dy.sum(axis=1), (dy * x).sum(axis=1)                      # (B,N,C) (B,C) (B,C)


# ----------------------------------------------------------------------------- row-wise
def softmax_backward(dy, y):
    """``dx = y * (dy - sum(dy * y, -1))``; dy, y (..., K) -> dx (..., K)."""
    cp = _cp()
    if dy.shape != y.shape:
        raise ValueError(f"dy {dy.shape} and y {y.shape} must have one shape")
    dtype = _same_dtype(dy, y)
    K = y.shape[-1]
    dy, y = cp.ascontiguousarray(dy), cp.ascontiguousarray(y)
    dx = cp.empty_like(y)                                                # (..., K)
    _launch_rows("softmax_backward", dtype, y.size // max(K, 1), K,
                 (dy, y, dx, np.int64(y.size // max(K, 1)), np.int32(K)))
    return dx


def rmsnorm_forward(z, w, eps: float = 1e-5):
    """``(y, zhat, rstd)``: z (..., d), w (d,) -> y, zhat (..., d), rstd (..., 1)."""
    cp = _cp()
    dtype = _same_dtype(z, w)
    d = z.shape[-1]
    if w.shape != (d,):
        raise ValueError(f"w must have shape ({d},), got {w.shape}")
    z, w = cp.ascontiguousarray(z), cp.ascontiguousarray(w)
    y, zhat = cp.empty_like(z), cp.empty_like(z)                         # (..., d)
    rstd = cp.empty(z.shape[:-1] + (1,), dtype=dtype)                    # (..., 1)
    rows = z.size // max(d, 1)
    _launch_rows("rmsnorm_forward", dtype, rows, d,
                 (z, w, y, zhat, rstd, np.int64(rows), np.int32(d), dtype.type(eps)))
    return y, zhat, rstd


def rmsnorm_backward(dy, zhat, rstd, w):
    """``(dz, dw)``: dz (..., d) by the row kernel, dw (d,) = sum_rows dy * zhat by CuPy."""
    cp = _cp()
    dtype = _same_dtype(dy, zhat, rstd, w)
    d = zhat.shape[-1]
    if dy.shape != zhat.shape or rstd.shape != zhat.shape[:-1] + (1,) or w.shape != (d,):
        raise ValueError(f"shapes dy {dy.shape}, zhat {zhat.shape}, rstd {rstd.shape}, "
                         f"w {w.shape} do not fit (..., d), (..., d), (..., 1), (d,)")
    dy, zhat = cp.ascontiguousarray(dy), cp.ascontiguousarray(zhat)
    rstd, w = cp.ascontiguousarray(rstd), cp.ascontiguousarray(w)
    dz = cp.empty_like(zhat)                                             # (..., d)
    rows = zhat.size // max(d, 1)
    _launch_rows("rmsnorm_backward", dtype, rows, d,
                 (dy, zhat, w, rstd, dz, np.int64(rows), np.int32(d)))
    dw = (dy * zhat).reshape(-1, d).sum(axis=0)                          # (d,)
    return dz, dw


# ----------------------------------------------------------------------------- optimiser
def adamw_scalars(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                  step: int) -> tuple[float, ...]:
    """The step's scalars of adamw.cuh, in double as the NumPy reference computes them:
    ``(decay, 1 - b1, b2, 1 - b2, eps, sqrt(1 - b2^t), lr / (1 - b1^t))``."""
    if step < 1:
        raise ValueError(f"step must be >= 1 (the first step is 1), got {step}")
    bias_c1 = 1.0 - beta1 ** step
    bias_c2 = 1.0 - beta2 ** step
    return (1.0 - lr * weight_decay, 1.0 - beta1, beta2, 1.0 - beta2, eps,
            math.sqrt(bias_c2), lr / bias_c1)


def adamw_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float, step: int) -> None:
    """One AdamW step (torch.optim.AdamW semantics) on p, m, v IN PLACE; ``step`` t >= 1.

    p <- p(1 - lr wd);  m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;
    p <- p - lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps).
    All of p, g, m, v: CuPy arrays of one shape and dtype.
    """
    cp = _cp()
    scalars = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step)
    if not all(isinstance(a, cp.ndarray) for a in (p, g, m, v)):
        raise TypeError("adamw_update works in place on CuPy arrays p, g, m, v")
    if not (p.shape == g.shape == m.shape == v.shape):
        raise ValueError(f"p {p.shape}, g {g.shape}, m {m.shape}, v {v.shape} must share a shape")
    get_kernel("adamw_update", _same_dtype(p, g, m, v))(g, *scalars, p, m, v)


__all__ = ["KERNEL_NAMES", "adamw_scalars", "adamw_update", "build_kernel", "diff_combine_backward",
           "diff_combine_forward", "gelu_backward", "gelu_forward", "get_kernel", "kernel_name",
           "modulate_backward", "modulate_forward", "rmsnorm_backward", "rmsnorm_forward",
           "silu_backward", "silu_forward", "softmax_backward"]
