"""Pointwise activations: GELU (exact erf and tanh approximation) and SiLU.

Shapes: x (...) -> y (...), same shape and dtype.

    gelu(x)      = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    gelu_tanh(x) = x/2 * (1 + tanh(u)),  u = sqrt(2/pi) * (x + 0.044715 x^3)
    silu(x)      = x * sigmoid(x)

Derivatives:
    gelu'(x)      = Phi(x) + x * phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
    gelu_tanh'(x) = (1 + t)/2 + x/2 * (1 - t^2) * sqrt(2/pi) * (1 + 3*0.044715 x^2),  t = tanh(u)
    silu'(x)      = s * (1 + x * (1 - s)),  s = sigmoid(x)
"""
from __future__ import annotations

import math
from typing import NamedTuple

from vca_ref.fast import kernels
from vca_ref.backend import erf, get_array_module
from vca_ref.fast.kernels import cuda as kcuda

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_C = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")


class GeluCache(NamedTuple):
    x: object
    approximate: str
    cdf: object = None  # Phi(x) of the exact GELU, kept: erf costs ~30x an exp on the CPU


def gelu_forward(x, approximate: str = "none"):
    """GELU of x (...); ``approximate`` is ``"none"`` (exact erf) or ``"tanh"``."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    if kernels.applies(x):                      # CUDA twin of the lines below (vca_ref.fast.kernels)
        return kcuda.gelu_forward(x, approximate), GeluCache(x=x, approximate=approximate)
    xp = get_array_module(x)
    if approximate == "tanh":
        t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x))
        y = 0.5 * x * (1.0 + t)
    else:
        cdf = erf(x * INV_SQRT_2)                    # Phi(x) = (1 + erf(x / sqrt 2)) / 2,
        cdf += 1.0                                   # built in place
        cdf *= 0.5
        return x * cdf, GeluCache(x=x, approximate=approximate, cdf=cdf)
    return y, GeluCache(x=x, approximate=approximate)


def gelu_backward(dy, cache: GeluCache):
    """Return ``dx`` (same shape as x)."""
    x = cache.x
    if kernels.applies(dy, x):                  # CUDA twin of the lines below
        return kcuda.gelu_backward(dy, x, cache.approximate)
    xp = get_array_module(x)
    if cache.approximate == "tanh":
        # y = x/2 * (1 + tanh(sqrt(2/pi) * (x + c x^3)))
        t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x))
        dudx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x)
        return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx)
    # y = x * Phi(x)  =>  dx = dy * (Phi(x) + x * phi(x)), computed in place in one array
    cdf = cache.cdf if cache.cdf is not None else 0.5 * (1.0 + erf(x * INV_SQRT_2))
    dx = x * x
    dx *= -0.5
    xp.exp(dx, out=dx)
    dx *= INV_SQRT_2PI                               # phi(x) = exp(-x^2/2) / sqrt(2 pi)
    dx *= x
    dx += cdf
    dx *= dy
    return dx


class SiluCache(NamedTuple):
    x: object
    s: object       # sigmoid(x)


def sigmoid(x):
    """Overflow-free logistic function ``1 / (1 + exp(-x)) = (1 + tanh(x/2)) / 2``."""
    xp = get_array_module(x)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def silu_forward(x):
    """SiLU (swish) of x (...)."""
    if kernels.applies(x):                      # CUDA twin of the lines below
        y, s = kcuda.silu_forward(x)
        return y, SiluCache(x=x, s=s)
    s = sigmoid(x)
    return x * s, SiluCache(x=x, s=s)


def silu_backward(dy, cache: SiluCache):
    """Return ``dx``."""
    x, s = cache.x, cache.s
    if kernels.applies(dy, x, s):               # CUDA twin of the line below
        return kcuda.silu_backward(dy, x, s)
    # y = x * s(x),  s' = s (1 - s)
    return dy * s * (1.0 + x * (1.0 - s))
