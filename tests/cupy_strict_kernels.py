"""The stand-in's ``ElementwiseKernel`` and ``RawKernel``: launches checked, results from NumPy twins.

A launch is checked against what a GPU would check, or silently get wrong:

* ``ElementwiseKernel``: the argument count, every array argument a device array whose dtype is
  the one its C parameter declares (``float32 x``), the shapes broadcast, given outputs of the
  broadcast shape; the launched variant (indexer dimensions after CuPy merges contiguous axes,
  each argument's kind and contiguity) is recorded for the NVRTC tests.
* ``RawKernel``: grid and block within CUDA's limits (block <= 1024 threads, 1024 x 1024 x 64;
  grid x < 2^31, y and z <= 65535), the block a whole number of warps for the one-block-per-row
  kernels, and every argument matching the C signature parsed from the source: a pointer takes a
  C-contiguous device array of that type and large enough for the rows, ``long long`` takes
  ``np.int64``, ``int`` takes ``np.int32``, ``scalar_t`` a scalar of the kernel's dtype.

The result is computed by the kernel's NumPy twin, the reference function of :mod:`vca_ref.ops`
(or the reference line the .cuh quotes), on the host buffers.
"""
from __future__ import annotations

import re

import numpy as np

from cupy_strict import COUNTS, DeviceArray
from vca_ref import ops
from vca_ref.ops.activations import SiluCache, sigmoid
from vca_ref.ops.rmsnorm import RMSNormCache
from vca_ref.ops.softmax import SoftmaxCache

C_TYPES = {"float": np.float32, "double": np.float64, "long long": np.int64, "int": np.int32}
MAX_BLOCK, MAX_GRID = (1024, 1024, 64), (2 ** 31 - 1, 65535, 65535)


def _gelu_backward(approximate):
    return lambda dy, x: ops.gelu_backward(dy, ops.gelu_forward(x, approximate)[1])


def _adamw(g, decay, omb1, b2, omb2, eps, bc2_sqrt, step_size, p, m, v):
    p = p * decay                                      # the lines adamw.cuh quotes, in its order
    m = m + (g - m) * omb1
    v = v * b2 + g * g * omb2
    return p - m / (np.sqrt(v) / bc2_sqrt + eps) * step_size, m, v


ELEMENTWISE_TWINS = {
    "gelu_erf_forward": lambda x: ops.gelu_forward(x, "none")[0],
    "gelu_erf_backward": _gelu_backward("none"),
    "gelu_tanh_forward": lambda x: ops.gelu_forward(x, "tanh")[0],
    "gelu_tanh_backward": _gelu_backward("tanh"),
    "silu_forward": lambda x: (ops.silu_forward(x)[0], sigmoid(x)),
    "silu_backward": lambda dy, x, s: ops.silu_backward(dy, SiluCache(x=x, s=s)),
    "diff_combine_forward": lambda a, b, lam: a - lam * b,
    "diff_combine_backward_b": lambda dz, lam: -lam * dz,
    "modulate_forward": lambda x, shift, scale: x * (1.0 + scale) + shift,
    "modulate_backward_x": lambda dy, scale: dy * (1.0 + scale),
    "adamw_update": _adamw,
}


def base_name(c_name: str) -> str:
    """``vca_gelu_erf_forward_f32`` -> ``gelu_erf_forward``."""
    return re.sub(r"^vca_|_f(32|64)$", "", c_name)


def _params(text: str) -> list[tuple[str, str]]:
    return [tuple(p.split()) for p in text.split(",") if p.strip()]


def _variant(arrays: list, shape: tuple) -> tuple[int, tuple]:
    """CuPy's launch variant: indexer ndim after merging axes every array steps through
    contiguously (size-1 axes dropped), and each array's C-contiguity in the merged view."""
    axes = [k for k, n in enumerate(shape) if n != 1]
    groups: list[list[int]] = []
    for k in axes:
        if groups and all(a.strides[groups[-1][-1]] == a.strides[k] * shape[k] for a in arrays):
            groups[-1].append(k)
        else:
            groups.append([k])
    contiguous = []
    for a in arrays:
        expect, ok = a.itemsize, True
        for g in reversed(groups):
            ok &= a.strides[g[-1]] == expect
            expect *= int(np.prod([shape[k] for k in g]))
        contiguous.append(bool(ok))
    return max(len(groups), 1), tuple(contiguous)


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.operation, self.name, self.preamble = operation, name, preamble
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.twin = ELEMENTWISE_TWINS[base_name(name)]

    def __call__(self, *args, **kwargs):
        if len(args) not in (self.nin, self.nin + self.nout):
            raise TypeError(f"{self.name}: wrong number of arguments: {len(args)} for {self.nin} "
                            f"inputs (+ {self.nout} outputs)")
        params = self.in_params + self.out_params
        values, arrays = [], []
        for (ctype, pname), a in zip(params, args):
            if isinstance(a, np.ndarray):
                raise TypeError(f"{self.name}: Unsupported type {type(a)} for {pname}: a host array")
            if isinstance(a, DeviceArray):
                if a.dtype != np.dtype(ctype):
                    raise TypeError(f"{self.name}: argument {pname} has dtype {a.dtype}; the "
                                    f"kernel's C signature declares {ctype} {pname}")
                arrays.append(a._a)
                values.append(a._a)
            elif isinstance(a, (int, float, np.generic)):
                values.append(np.dtype(ctype).type(a))
            else:
                raise TypeError(f"{self.name}: Unsupported type {type(a)} for {pname}")
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        outs = args[self.nin:]
        for (_, pname), o in zip(self.out_params, outs):
            if not isinstance(o, DeviceArray) or o.shape != shape:
                raise ValueError(f"{self.name}: output {pname} must be a device array of the "
                                 f"broadcast shape {shape}")
        ndim, contig = _variant([np.broadcast_to(a, shape) for a in arrays], shape)
        missing = self.nin + self.nout - len(args)              # outputs CuPy allocates (C order)
        kinds = tuple("array" if isinstance(a, DeviceArray) else "scalar" for a in args)
        COUNTS.launches.append((self.name, ndim, kinds + ("array",) * missing,
                                contig + (True,) * missing))
        result = self.twin(*values[:self.nin] if not outs else values)
        result = result if isinstance(result, tuple) else (result,)
        if outs:
            for o, r in zip(outs, result):
                o._a[...] = r
            return outs if len(outs) > 1 else outs[0]
        new = tuple(DeviceArray(np.ascontiguousarray(np.broadcast_to(r, shape), dtype=np.dtype(t)))
                    for (t, _), r in zip(self.out_params, result))
        return new if len(new) > 1 else new[0]


# ----------------------------------------------------------------------------- raw kernels
def _softmax_backward(dy, y, dx, rows, K):
    dx[...] = ops.softmax_backward(dy, SoftmaxCache(y=y))


def _rmsnorm_forward(z, w, y, zhat, rstd, rows, d, eps):
    out, cache = ops.rmsnorm_forward(z, w, float(eps))
    y[...], zhat[...], rstd[...] = out, cache.zhat, cache.rstd


def _rmsnorm_backward(dy, zhat, w, rstd, dz, rows, d):
    dz[...] = ops.rmsnorm_backward(dy, RMSNormCache(zhat=zhat, rstd=rstd, w=w))[0]


RAW_TWINS = {"softmax_backward": _softmax_backward, "rmsnorm_forward": _rmsnorm_forward,
             "rmsnorm_backward": _rmsnorm_backward}
ROW_ARGS = {"softmax_backward": ("rows", "K"), "rmsnorm_forward": ("rows", "d"),
            "rmsnorm_backward": ("rows", "d")}


class RawKernel:
    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, *,
                 enable_cooperative_groups=False, jitify=None):
        self.code, self.name = code, name
        scalar = re.search(r"typedef\s+(float|double)\s+scalar_t;", code).group(1)
        sig = re.search(rf"void\s+{name}\s*\(([^)]*)\)", code).group(1)
        self.params = []                                   # (C type, is pointer, name)
        for p in sig.split(","):
            m = re.match(r"\s*(?:const\s+)?([\w ]+?)\s*(\*?)\s*(\w+)\s*$", p)
            ctype = scalar if m.group(1) == "scalar_t" else m.group(1)
            self.params.append((ctype, bool(m.group(2)), m.group(3)))
        self.twin = RAW_TWINS[base_name(name)]

    def __call__(self, grid, block, args, *, shared_mem=0):
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        if (any(b < 1 or b > lim for b, lim in zip(block, MAX_BLOCK)) or np.prod(block) > 1024
                or any(g < 1 or g > lim for g, lim in zip(grid, MAX_GRID))):
            raise ValueError(f"{self.name}: CUDA_ERROR_INVALID_VALUE: grid {grid}, block {block} "
                             f"outside the limits (block <= {MAX_BLOCK}, 1024 threads; grid <= "
                             f"{MAX_GRID})")
        if block[0] % 32 or block[1:] != (1, 1):
            raise ValueError(f"{self.name}: block {block}: a row team needs whole warps in x")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.params)} parameters")
        values = {}
        for (ctype, pointer, pname), a in zip(self.params, args):
            want = np.dtype(C_TYPES[ctype])
            if pointer and not (isinstance(a, DeviceArray) and a.dtype == want
                                and a.flags.c_contiguous):
                raise TypeError(f"{self.name}: {ctype}* {pname} needs a C-contiguous device array "
                                f"of {want}, got {type(a).__name__} {getattr(a, 'dtype', '')}")
            if not pointer and not (isinstance(a, np.generic) and a.dtype == want):
                raise TypeError(f"{self.name}: {ctype} {pname} needs a {want} scalar, got "
                                f"{type(a).__name__} {getattr(a, 'dtype', '')}")
            values[pname] = a._a if pointer else a
        rows_name, width_name = ROW_ARGS[base_name(self.name)]
        rows, width = int(values[rows_name]), int(values[width_name])
        for ctype, pointer, pname in self.params:
            if pointer and values[pname].size < rows and pname != "w":
                raise ValueError(f"{self.name}: {pname} holds {values[pname].size} entries for "
                                 f"{rows} rows of {width}")
        COUNTS.launches.append((self.name, grid, block))
        shaped = {k: (v.reshape(rows, -1) if isinstance(v, np.ndarray) and k != "w" else v)
                  for k, v in values.items()}
        self.twin(*shaped.values())
