"""Gradient-norm clipping with the semantics of ``torch.nn.utils.clip_grad_norm_``.

For gradients g_1 … g_K (all tensors of a model) and p = ``norm_type``:

    total = ‖ (‖g_1‖_p, …, ‖g_K‖_p) ‖_p         (p = inf: the largest |entry|)
    coef  = min(1, max_norm / (total + 1e-6))
    g_k  ← coef · g_k

and ``total`` (the norm BEFORE clipping) is returned, as torch does.  The scaled gradients are
NEW arrays written back under the same names (no in-place write: a gradient array may be shared
with something else).  When coef = 1 nothing is rewritten (multiplying by 1 changes no value).
A non-finite total is returned as is (torch then scales by NaN); pass ``error_if_nonfinite=True``
to raise instead.

On a CUDA device ``total`` stays a 0-d device array and every gradient is scaled by the clamped
coef, since deciding "coef < 1?" on the host would cost a synchronisation; where the total is not
finite the coef is 1 (the gradients stay as they are: the caller reads the total and stops), and
``error_if_nonfinite=True`` reads the total to raise (one synchronisation, on request).
"""
from __future__ import annotations

import math

from vca_ref.backend import get_array_module, is_cuda_array, read_scalars


def _grad_tables(grads):
    """[(dict, key)] pointing at every gradient array, for a Module or a plain dict."""
    if isinstance(grads, dict):
        return [(grads, k) for k in grads]
    if hasattr(grads, "named_modules") and hasattr(grads, "named_grads"):
        grads.named_grads()                               # raises a clear error if backward() was not run
        return [(mod.grads, k) for _, mod in grads.named_modules() for k in mod.params]
    raise TypeError(f"expected a Module or a dict of gradient arrays, got {type(grads).__name__}")


def grad_norm(grads, norm_type: float = 2.0):
    """The total norm of all gradients (no clipping): a float, or a 0-d array on a CUDA device."""
    tables = _grad_tables(grads)
    if not tables:
        return 0.0
    p = float(norm_type)
    arrays = [t[k] for t, k in tables]
    xp = get_array_module(*arrays)
    norms = xp.stack([xp.linalg.norm(g.ravel(), ord=p) for g in arrays])   # (K,)
    total = xp.linalg.norm(norms, ord=p)                                    # ()
    return total if is_cuda_array(total) else float(total)


def clip_grad_norm(grads, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False):
    """Scale all gradients so that their total ``norm_type`` norm is at most ``max_norm``.

    ``grads`` is a Module (its ``grads`` dicts are rewritten) or a dict name -> array.
    Returns the total norm before clipping (a float; a 0-d device array on CUDA).
    """
    if max_norm <= 0.0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    total = grad_norm(grads, norm_type)
    if is_cuda_array(total):
        xp = get_array_module(total)
        if error_if_nonfinite:
            _check_total(read_scalars(total)[0], norm_type)                  # a read, on request
        coef = xp.where(xp.isfinite(total), xp.minimum(max_norm / (total + 1e-6), 1.0), 1.0)  # ()
        for table, k in _grad_tables(grads):
            table[k] = table[k] * coef.astype(table[k].dtype)
        return total
    if error_if_nonfinite:
        _check_total(total, norm_type)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or not math.isfinite(total):            # torch clamps coef to <= 1 (NaN stays NaN)
        for table, k in _grad_tables(grads):
            table[k] = table[k] * coef                    # new array: no write into a shared one
    return total


def _check_total(total: float, norm_type: float) -> None:
    if not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is {total}; "
                           "set error_if_nonfinite=False to scale them anyway")
