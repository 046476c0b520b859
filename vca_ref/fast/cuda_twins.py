"""The CUDA kernels of :mod:`vca_ref.fast.kernels.cuda`, with their reference's signature.

Each function here takes the arguments of one reference function and returns what it returns
(the output and the reference's own cache type), computing the arrays with a kernel.  The
registry pairs each with a predicate: CuPy arrays of one float dtype, kernels on
(:func:`vca_ref.fast.kernels.applies`), and the shapes the kernel expects.  The kernel module is
looked up at call time (``kcuda.<name>``), so a test can spy on every launch.
"""
from __future__ import annotations

from vca_ref.fast.kernels import cuda as kcuda
from vca_ref.ops.activations import GeluCache, SiluCache
from vca_ref.ops.diff_combine import DiffCombineCache
from vca_ref.ops.modulate import ModulateCache
from vca_ref.ops.rmsnorm import RMSNormCache


def gelu_forward(x, approximate: str = "none"):
    """Twin of :func:`vca_ref.ops.activations.gelu_forward`."""
    return kcuda.gelu_forward(x, approximate), GeluCache(x=x, approximate=approximate)


def gelu_backward(dout, cache: GeluCache):
    """Twin of :func:`vca_ref.ops.activations.gelu_backward`."""
    return kcuda.gelu_backward(dout, cache.x, cache.approximate)


def silu_forward(x):
    """Twin of :func:`vca_ref.ops.activations.silu_forward`."""
    y, s = kcuda.silu_forward(x)
    return y, SiluCache(x=x, s=s)


def silu_backward(dout, cache: SiluCache):
    """Twin of :func:`vca_ref.ops.activations.silu_backward`."""
    return kcuda.silu_backward(dout, cache.x, cache.s)


def diff_combine_forward(a, b, lam):
    """Twin of :func:`vca_ref.ops.diff_combine.diff_combine_forward`."""
    return kcuda.diff_combine_forward(a, b, lam), DiffCombineCache(b=b, lam=lam)


def diff_combine_backward(dout, cache: DiffCombineCache):
    """Twin of :func:`vca_ref.ops.diff_combine.diff_combine_backward`."""
    return kcuda.diff_combine_backward(dout, cache.b, cache.lam)


def modulate_forward(x, shift, scale):
    """Twin of :func:`vca_ref.ops.modulate.modulate_forward`."""
    return kcuda.modulate_forward(x, shift, scale), ModulateCache(x=x, scale=scale)


def modulate_backward(dout, cache: ModulateCache):
    """Twin of :func:`vca_ref.ops.modulate.modulate_backward`."""
    return kcuda.modulate_backward(dout, cache.x, cache.scale)


def softmax_backward(dout, cache):
    """Twin of :func:`vca_ref.ops.softmax.softmax_backward`."""
    return kcuda.softmax_backward(dout, cache.y)


def rmsnorm_forward(z, w, eps: float = 1e-5):
    """Twin of :func:`vca_ref.ops.rmsnorm.rmsnorm_forward`."""
    y, zhat, rstd = kcuda.rmsnorm_forward(z, w, eps)
    return y, RMSNormCache(zhat=zhat, rstd=rstd, w=w)


def rmsnorm_backward(dout, cache: RMSNormCache):
    """Twin of :func:`vca_ref.ops.rmsnorm.rmsnorm_backward`."""
    return kcuda.rmsnorm_backward(dout, cache.zhat, cache.rstd, cache.w)


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step) -> None:
    """Twin of :func:`vca_ref.train.optim.adamw_update` (one fused kernel, in place)."""
    kcuda.adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step)
