"""The override layer: fast twins of reference functions, and the one switch that turns them off.

The reference (:mod:`vca_ref.ops`, :mod:`vca_ref.train.optim`) is the plain line of math.  Every
speed trick lives here instead, as the twin of exactly ONE reference function: CPU-fast NumPy
variants (``cpu_*.py``) and hand-written CUDA kernels (:mod:`vca_ref.fast.kernels`, wrapped with
the reference's signature in ``cuda_twins.py``).  A reference function is marked ``@overridable``;
a call then runs the first registered twin whose predicate accepts the arguments, else the
reference body itself::

    @overridable
    def softmax_backward(dout, cache):        # the plain line of math
        ...

    # vca_ref/fast/registry.py, the one place that lists every twin:
    Override(softmax.softmax_backward, cpu_softmax.softmax_backward, numpy_floats),

Every twin returns what its reference returns (same values up to rounding, same cache type) and
has a parity test (``tests/test_fast_parity.py``).  The registry is imported on the first
dispatch, so no import cycle can form between the reference modules and their twins.

One switch runs the reference alone: the environment variable ``VCA_REF_FAST=0`` (read at import
and by ``set_enabled(None)``), :func:`set_enabled` (False) or ``with enabled(False): ...``.  The CUDA
kernels have a second, narrower switch of their own (``VCA_REF_KERNELS=0``,
:func:`vca_ref.fast.kernels.set_enabled`) that leaves the CPU twins on.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from vca_ref.fast.switch import Switch

ENV_VAR = "VCA_REF_FAST"
SWITCH = Switch(ENV_VAR)
_twins: dict | None = None      # reference name -> ((accepts, twin), ...), built on first dispatch


class Override(NamedTuple):
    """One registry entry: ``twin`` replaces ``reference`` on the calls ``accepts`` admits."""
    reference: Callable     # the @overridable function (the dispatcher)
    twin: Callable          # same signature, same return
    accepts: Callable       # accepts(*args, **kwargs) -> bool, called with the reference's arguments


def reference_name(fn) -> str:
    """``module.qualname`` of a reference function (or of its dispatcher)."""
    fn = getattr(fn, "reference", fn)
    return f"{fn.__module__}.{fn.__qualname__}"


def is_enabled() -> bool:
    """True unless switched off by ``VCA_REF_FAST=0``, :func:`set_enabled` or :func:`enabled`."""
    return SWITCH.is_on()


def set_enabled(flag: bool | None) -> bool | None:
    """Turn every override on or off (``None``: read ``VCA_REF_FAST`` again and follow it);
    returns the previous setting (None when it followed the environment)."""
    return SWITCH.set(flag)


def enabled(flag: bool):
    """``with enabled(False): ...`` runs every reference function alone inside the block."""
    return SWITCH.scoped(flag)


def overrides() -> tuple[Override, ...]:
    """Every registered override, in registry order (imports the registry)."""
    from vca_ref.fast import registry
    return registry.OVERRIDES


def _twins_of(name: str) -> tuple:
    global _twins
    if _twins is None:
        table: dict = {}
        for o in overrides():
            table.setdefault(reference_name(o.reference), []).append((o.accepts, o.twin))
        _twins = {k: tuple(v) for k, v in table.items()}
    return _twins.get(name, ())


def overridable(reference: Callable) -> Callable:
    """Mark ``reference`` as the plain line that registered twins may replace.

    The returned dispatcher has the reference's name, signature and docstring; the undecorated
    body stays reachable as ``dispatcher.reference`` (what the parity tests compare with).
    """
    name = reference_name(reference)

    @functools.wraps(reference)
    def dispatch(*args, **kwargs):
        if SWITCH.on:
            for accepts, twin in _twins_of(name):
                if accepts(*args, **kwargs):
                    return twin(*args, **kwargs)
        return reference(*args, **kwargs)

    dispatch.reference = reference
    return dispatch


__all__ = ["ENV_VAR", "Override", "enabled", "is_enabled", "overridable", "overrides",
           "reference_name", "set_enabled"]
