"""The differential combine ``z = a - lam * b`` of both VCA stages (and of differential attention).

Shapes: a, b (...) of one shape, lam a scalar (a 0-d array from :func:`vca_ref.ops.lambdas.lambda_forward`)
        -> z (...).

Backward (dout given):
    da = dout      db = -lam * dout      dlam = -sum(dout * b)      (dlam a 0-d array)
"""
from __future__ import annotations

from typing import NamedTuple

from vca_ref.fast import overridable


class DiffCombineCache(NamedTuple):
    b: object       # (...) the subtracted array
    lam: object     # the scalar lambda (float or 0-d array)


@overridable
def diff_combine_forward(a, b, lam):
    """``z = a - lam * b`` for arrays a, b of one shape and a scalar lam."""
    z = a - lam * b                                 # (...)
    return z, DiffCombineCache(b=b, lam=lam)


@overridable
def diff_combine_backward(dout, cache: DiffCombineCache):
    """Return ``(da, db, dlam)``; ``dlam`` is a 0-d array (summed over everything)."""
    # z = a - lam * b
    return dout, -cache.lam * dout, -(dout * cache.b).sum()
