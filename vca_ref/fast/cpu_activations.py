"""CPU-fast twins of the exact-erf GELU pair (:mod:`vca_ref.ops.activations`), for NumPy arrays.

``erf`` costs about 30 exponentials on the CPU, and the reference computes ``Phi(x)`` twice
(forward and backward).  The forward twin keeps ``Phi(x)`` on its cache (a :class:`GeluCache`
that also carries ``cdf``); the backward twin reuses it and builds
``dout * (cdf + x * pdf)`` in place in one array.  A cache without ``cdf`` (made by the
reference) is handled too: ``Phi`` is then computed again.
"""
from __future__ import annotations

import numpy as np

from vca_ref.backend import erf
from vca_ref.ops.activations import INV_SQRT_2, INV_SQRT_2PI, GeluCache


class GeluCdfCache(GeluCache):
    """A :class:`GeluCache` (same fields, equal as a tuple) that also holds ``cdf`` = Phi(x)."""


def gelu_forward(x, approximate: str = "none"):
    """Twin of :func:`vca_ref.ops.activations.gelu_forward` (``approximate="none"``)."""
    cdf = erf(x * INV_SQRT_2)                    # Phi(x) = (1 + erf(x / sqrt 2)) / 2,
    cdf += 1.0                                   # built in place
    cdf *= 0.5
    cache = GeluCdfCache(x=x, approximate=approximate)
    cache.cdf = cdf                              # (...) kept for the backward
    return x * cdf, cache


def gelu_backward(dout, cache: GeluCache):
    """Twin of :func:`vca_ref.ops.activations.gelu_backward` (``approximate="none"``)."""
    x = cache.x
    cdf = getattr(cache, "cdf", None)
    if cdf is None:
        cdf = 0.5 * (1.0 + erf(x * INV_SQRT_2))  # (...)
    dx = x * x
    dx *= -0.5
    np.exp(dx, out=dx)
    dx *= INV_SQRT_2PI                           # phi(x) = exp(-x^2/2) / sqrt(2 pi)
    dx *= x
    dx += cdf
    dx *= dout
    return dx
