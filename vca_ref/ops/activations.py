"""Pointwise activations: GELU (exact erf and tanh approximation) and SiLU.

Shapes: x (...) -> y (...), same shape and dtype.

    gelu(x)      = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    gelu_tanh(x) = x/2 * (1 + tanh(u)),  u = sqrt(2/pi) * (x + 0.044715 x^3)
    silu(x)      = x * sigmoid(x)

Derivatives (dout given: dx = dout * y'(x)):
    gelu'(x)      = Phi(x) + x * phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
    gelu_tanh'(x) = (1 + t)/2 + x/2 * (1 - t^2) * sqrt(2/pi) * (1 + 3*0.044715 x^2),  t = tanh(u)
    silu'(x)      = s * (1 + x * (1 - s)),  s = sigmoid(x)
"""
from __future__ import annotations

import math
from typing import NamedTuple

from vca_ref.backend import erf, get_array_module
from vca_ref.fast import overridable

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_C = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")


class GeluCache(NamedTuple):
    x: object           # (...) the input
    approximate: str    # "none" or "tanh"


@overridable
def gelu_forward(x, approximate: str = "none"):
    """GELU of x (...); ``approximate`` is ``"none"`` (exact erf) or ``"tanh"``."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    xp = get_array_module(x)
    if approximate == "tanh":
        t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x))   # (...)
        y = 0.5 * x * (1.0 + t)                                        # (...)
    else:
        y = 0.5 * x * (1.0 + erf(x * INV_SQRT_2))                      # (...)
    return y, GeluCache(x=x, approximate=approximate)


@overridable
def gelu_backward(dout, cache: GeluCache):
    """Return ``dx`` (same shape as x)."""
    x = cache.x
    xp = get_array_module(x)
    if cache.approximate == "tanh":
        t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x))   # (...)
        dudx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x)      # (...)
        # y = 0.5 * x * (1 + tanh(u)),  u = sqrt(2/pi) * (x + c x^3)
        return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx)
    cdf = 0.5 * (1.0 + erf(x * INV_SQRT_2))                            # (...) Phi(x)
    pdf = INV_SQRT_2PI * xp.exp(-0.5 * x * x)                          # (...) phi(x)
    # y = x * Phi(x)
    return dout * (cdf + x * pdf)


class SiluCache(NamedTuple):
    x: object       # (...) the input
    s: object       # (...) sigmoid(x)


def sigmoid(x):
    """Overflow-free logistic function ``1 / (1 + exp(-x)) = (1 + tanh(x/2)) / 2``."""
    xp = get_array_module(x)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


@overridable
def silu_forward(x):
    """SiLU (swish) of x (...)."""
    s = sigmoid(x)                                  # (...)
    return x * s, SiluCache(x=x, s=s)


@overridable
def silu_backward(dout, cache: SiluCache):
    """Return ``dx``."""
    x, s = cache.x, cache.s
    # y = x * s(x),  s' = s (1 - s)
    return dout * s * (1.0 + x * (1.0 - s))
