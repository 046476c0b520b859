"""CPU-fast twin of the AdamW update (:func:`vca_ref.train.optim.adamw_update`), for NumPy.

The reference writes each formula as one expression, which allocates a temporary per operation;
this twin runs the same update through ONE scratch array with ``out=`` and in-place operators.
"""
from __future__ import annotations

import math

import numpy as np


def adamw_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float, step: int) -> None:
    """Twin of :func:`vca_ref.train.optim.adamw_update`: p, m, v updated in place."""
    bias_c1 = 1.0 - beta1 ** step
    bias_c2 = 1.0 - beta2 ** step
    tmp = np.empty_like(p)                           # one scratch array, reused below
    np.subtract(g, m, out=tmp)
    tmp *= 1.0 - beta1
    m += tmp                                         # m ← m + (1 − β₁)(g − m)
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - beta2
    v *= beta2
    v += tmp                                         # v ← β₂ v + (1 − β₂) g²
    if weight_decay != 0.0:
        p *= 1.0 - lr * weight_decay                 # p ← p(1 − lr·wd)
    np.sqrt(v, out=tmp)
    tmp /= math.sqrt(bias_c2)
    tmp += eps                                       # denom = sqrt(v)/sqrt(1 − β₂ᵗ) + ε
    np.divide(m, tmp, out=tmp)
    tmp *= lr / bias_c1
    p -= tmp                                         # p ← p − lr/(1 − β₁ᵗ) · m / denom
