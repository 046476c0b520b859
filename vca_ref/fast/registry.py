"""Every override, in one place: which twin replaces which reference function, and when.

A call of an ``@overridable`` reference runs the FIRST entry below whose predicate accepts the
call's arguments, else the reference itself; ``VCA_REF_FAST=0`` or
:func:`vca_ref.fast.set_enabled` (False) skips this table altogether.  The predicates take the
reference's own arguments; a twin's inputs that a predicate does not admit (a mix of dtypes,
shapes a kernel does not handle, bad input) go to the reference, which raises the clear error.

Imported on the first dispatch (:func:`vca_ref.fast.overrides`), after the reference modules.
"""
from __future__ import annotations

from vca_ref.fast import Override
from vca_ref.fast import cpu_activations, cpu_adamw, cpu_dwconv, cpu_linear, cpu_norms, cpu_softmax
from vca_ref.fast import cuda_twins, kernels, separable_pooling
from vca_ref.fast.predicates import array_operands, numpy_floats
from vca_ref.ops import (activations, diff_combine, dwconv, layernorm, linear, modulate, pooling, rmsnorm,
                         softmax)
from vca_ref.train import optim


def _is_array(a) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype")


# ----------------------------------------------------------------------------- CUDA kernels
def _cuda_gelu_forward(x, approximate="none"):
    return kernels.applies(x) and approximate in activations.GELU_APPROXIMATIONS


def _cuda_rmsnorm_forward(z, w, eps=1e-5):
    return kernels.applies(z, w) and w.shape == z.shape[-1:]


def _cuda_rmsnorm_backward(dout, cache):
    return kernels.applies(dout, cache.zhat, cache.rstd, cache.w) and dout.shape == cache.zhat.shape


def _cuda_softmax_backward(dout, cache):
    return kernels.applies(dout, cache.y) and dout.shape == cache.y.shape


CUDA = (
    Override(activations.gelu_forward, cuda_twins.gelu_forward, _cuda_gelu_forward),
    Override(activations.gelu_backward, cuda_twins.gelu_backward,
             lambda dout, cache: kernels.applies(dout, cache.x)),
    Override(activations.silu_forward, cuda_twins.silu_forward, lambda x: kernels.applies(x)),
    Override(activations.silu_backward, cuda_twins.silu_backward,
             lambda dout, cache: kernels.applies(dout, cache.x, cache.s)),
    Override(diff_combine.diff_combine_forward, cuda_twins.diff_combine_forward,
             lambda a, b, lam: kernels.applies(a, b, *array_operands(lam))),
    Override(diff_combine.diff_combine_backward, cuda_twins.diff_combine_backward,
             lambda dout, cache: kernels.applies(dout, cache.b, *array_operands(cache.lam))),
    Override(modulate.modulate_forward, cuda_twins.modulate_forward,
             lambda x, shift, scale: kernels.applies(x, shift, scale)),
    Override(modulate.modulate_backward, cuda_twins.modulate_backward,
             lambda dout, cache: kernels.applies(dout, cache.x, cache.scale)),
    Override(softmax.softmax_backward, cuda_twins.softmax_backward, _cuda_softmax_backward),
    Override(rmsnorm.rmsnorm_forward, cuda_twins.rmsnorm_forward, _cuda_rmsnorm_forward),
    Override(rmsnorm.rmsnorm_backward, cuda_twins.rmsnorm_backward, _cuda_rmsnorm_backward),
    Override(optim.adamw_update, cuda_twins.adamw_update,
             lambda p, g, m, v, *hyper: kernels.applies(p, g, m, v)),
)


# ----------------------------------------------------------------------------- NumPy (CPU)
def _cpu_layernorm_forward(x, w=None, b=None, eps=1e-5):
    return numpy_floats(x, w, b) and all(a is None or a.shape == x.shape[-1:] for a in (w, b))


def _cpu_layernorm_backward(dout, cache):
    return numpy_floats(dout, cache.xhat, cache.rstd, cache.w) and dout.shape == cache.xhat.shape


def _cpu_rmsnorm_forward(z, w, eps=1e-5):
    return numpy_floats(z, w) and w.shape == z.shape[-1:]


def _cpu_rmsnorm_backward(dout, cache):
    return numpy_floats(dout, cache.zhat, cache.rstd, cache.w) and dout.shape == cache.zhat.shape


def _cpu_softmax_forward(x):
    return numpy_floats(x) and x.ndim >= 1 and x.shape[-1] > 0


def _cpu_softmax_backward(dout, cache):
    return numpy_floats(dout, cache.y) and dout.shape == cache.y.shape


def _cpu_gelu_forward(x, approximate="none"):
    return numpy_floats(x) and approximate == "none"


def _cpu_gelu_backward(dout, cache):
    return (numpy_floats(dout, cache.x) and cache.approximate == "none"
            and dout.shape == cache.x.shape)


def _cpu_dwconv_forward(x, w, b):
    return (numpy_floats(x, w, b) and x.ndim == 4 and w.shape == (x.shape[-1], 1, 3, 3)
            and b.shape == x.shape[-1:])


def _cpu_dwconv_backward(dout, cache):
    return numpy_floats(dout, cache.x, cache.w) and dout.shape == cache.x.shape


def _cpu_linear_forward(x, w, b=None):
    return (numpy_floats(x, w, b) and x.ndim >= 1 and w.ndim == 2 and x.shape[-1] == w.shape[1]
            and (b is None or b.shape == w.shape[:1]))


def _cpu_linear_backward(dout, cache):
    return (numpy_floats(dout, cache.x, cache.w)
            and dout.shape == cache.x.shape[:-1] + cache.w.shape[:1])


def _cpu_adamw_update(p, g, m, v, *hyper):
    return numpy_floats(p, g, m, v) and p.shape == g.shape == m.shape == v.shape


def _pool_forward(x, grid, pool):
    return (_is_array(x) and x.ndim >= 2 and x.shape[-2] == grid[0] * grid[1]
            and 1 <= pool[0] <= grid[0] and 1 <= pool[1] <= grid[1])


def _pool_backward(dout, cache):
    return _is_array(dout) and dout.ndim >= 2 and dout.shape[-2] == cache.pool[0] * cache.pool[1]


CPU = (
    Override(layernorm.layernorm_forward, cpu_norms.layernorm_forward, _cpu_layernorm_forward),
    Override(layernorm.layernorm_backward, cpu_norms.layernorm_backward, _cpu_layernorm_backward),
    Override(rmsnorm.rmsnorm_forward, cpu_norms.rmsnorm_forward, _cpu_rmsnorm_forward),
    Override(rmsnorm.rmsnorm_backward, cpu_norms.rmsnorm_backward, _cpu_rmsnorm_backward),
    Override(softmax.softmax_forward, cpu_softmax.softmax_forward, _cpu_softmax_forward),
    Override(softmax.softmax_backward, cpu_softmax.softmax_backward, _cpu_softmax_backward),
    Override(activations.gelu_forward, cpu_activations.gelu_forward, _cpu_gelu_forward),
    Override(activations.gelu_backward, cpu_activations.gelu_backward, _cpu_gelu_backward),
    Override(dwconv.dwconv3x3_forward, cpu_dwconv.dwconv3x3_forward, _cpu_dwconv_forward),
    Override(dwconv.dwconv3x3_backward, cpu_dwconv.dwconv3x3_backward, _cpu_dwconv_backward),
    Override(linear.linear_forward, cpu_linear.linear_forward, _cpu_linear_forward),
    Override(linear.linear_backward, cpu_linear.linear_backward, _cpu_linear_backward),
    Override(optim.adamw_update, cpu_adamw.adamw_update, _cpu_adamw_update),
    # NumPy and CuPy: two small products instead of the dense pooling matrix
    Override(pooling.adaptive_avg_pool_forward, separable_pooling.adaptive_avg_pool_forward,
             _pool_forward),
    Override(pooling.adaptive_avg_pool_backward, separable_pooling.adaptive_avg_pool_backward,
             _pool_backward),
)

OVERRIDES = CPU + CUDA           # NumPy calls meet their predicates first
