"""The lambda re-parameterisation of differential attention.

    lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init        (a scalar)
    lambda_init(l) = 0.8 - 0.6 * exp(-0.3 * l)                   (l = 0-based block index)

Shapes: lq1, lk1, lq2, lk2 (d,) -> lambda () (0-d array).

Backward (dout = dL/dlambda given, a scalar):
    dlq1 =  dout * exp(lq1.lk1) * lk1     dlk1 =  dout * exp(lq1.lk1) * lq1
    dlq2 = -dout * exp(lq2.lk2) * lk2     dlk2 = -dout * exp(lq2.lk2) * lq2

The differential combine ``z = a - lambda * b`` that uses lambda is in ops/diff_combine.py.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from vca_ref.backend import get_array_module


def lambda_init_for_layer(layer_index: int) -> float:
    """``0.8 - 0.6 exp(-0.3 l)``: the fixed part of lambda for 0-based block ``l``."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_index)


class LambdaCache(NamedTuple):
    lq1: object
    lk1: object
    lq2: object
    lk2: object
    e1: object      # exp(lq1 . lk1)
    e2: object      # exp(lq2 . lk2)


def lambda_forward(lq1, lk1, lq2, lk2, lambda_init: float):
    """Return ``(lam, cache)`` with ``lam`` a 0-d array of the inputs' dtype."""
    xp = get_array_module(lq1)
    e1 = xp.exp((lq1 * lk1).sum())      # ()  0-d array, keeps the dtype
    e2 = xp.exp((lq2 * lk2).sum())      # ()
    lam = e1 - e2 + lambda_init
    return lam, LambdaCache(lq1=lq1, lk1=lk1, lq2=lq2, lk2=lk2, e1=e1, e2=e2)


def lambda_backward(dout, cache: LambdaCache):
    """Return ``(dlq1, dlk1, dlq2, dlk2)``, each (d,)."""
    c = cache
    g1 = dout * c.e1                 # lam = e1 - e2 + init,  e1 = exp(lq1 . lk1)
    g2 = -dout * c.e2
    return g1 * c.lk1, g1 * c.lq1, g2 * c.lk2, g2 * c.lq2
