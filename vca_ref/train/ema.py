"""Exponential moving average (EMA) of a model's parameters, as in DiT's ``update_ema``.

    ema ← decay · ema + (1 − decay) · θ          after every optimiser step

The EMA starts as an exact copy of the parameters (DiT: ``update_ema(ema, model, decay=0)``)
and lives OUTSIDE the model, keyed by the full parameter names, so ``state_dict()`` has the
model's names and can be loaded into a model of the same architecture
(``model.load_state_dict(ema.state_dict(), strict=False)``; buffers are not averaged: they are
fixed).  Sampling with the averaged weights::

    with ema.applied_to(model):     # swaps the weights in, restores the training weights after
        x = sampler(model, ...)
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from vca_ref.backend import device_of, get_array_module, to_device


class EMA:
    """Shadow copy of a module's parameters updated with ``decay`` (DiT default 0.9999)."""

    def __init__(self, module, decay: float = 0.9999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.shadow = {name: get_array_module(p).array(p, copy=True)
                       for name, p in module.named_parameters()}

    def update(self, module) -> None:
        """``ema ← decay·ema + (1 − decay)·θ`` for every parameter (in place on the shadow)."""
        params = dict(module.named_parameters())
        if params.keys() != self.shadow.keys():
            raise ValueError("the module's parameters do not match the EMA's: "
                             f"missing {sorted(self.shadow.keys() - params.keys())}, "
                             f"unexpected {sorted(params.keys() - self.shadow.keys())}")
        for name, s in self.shadow.items():
            s *= self.decay
            s += (1.0 - self.decay) * params[name]

    def copy_to(self, module) -> None:
        """Overwrite the module's parameters with the averages (all-or-nothing)."""
        self.check_state_dict(self.shadow, module)      # same names and shapes as the module
        module.load_state_dict(self.shadow, strict=False)  # strict=False: buffers are not averaged

    @contextmanager
    def applied_to(self, module):
        """Temporarily load the averages into ``module``; restore its own weights on exit."""
        saved = {n: get_array_module(p).array(p, copy=True) for n, p in module.named_parameters()}
        self.check_state_dict(self.shadow, module)
        module.load_state_dict(self.shadow, strict=False)
        try:
            yield module
        finally:
            module.load_state_dict(saved, strict=False)

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, object]:
        """Copies of the averages under the model's parameter names."""
        return {n: get_array_module(s).array(s, copy=True) for n, s in self.shadow.items()}

    def check_state_dict(self, state: dict, module=None) -> None:
        """Names must equal the EMA's (or ``module``'s) parameters, with the same shapes."""
        ref = dict(module.named_parameters()) if module is not None else self.shadow
        if not isinstance(state, dict):
            raise TypeError(f"EMA state must be a dict of arrays, got {type(state).__name__}")
        if state.keys() != ref.keys():
            raise ValueError("EMA state does not match: "
                             f"missing {sorted(ref.keys() - state.keys())}, "
                             f"unexpected {sorted(state.keys() - ref.keys())}")
        for n, v in state.items():
            if not hasattr(v, "dtype") or np.dtype(v.dtype).kind != "f":
                raise TypeError(f"EMA entry {n!r} must be a floating array, "
                                f"got {getattr(v, 'dtype', type(v).__name__)}")
            if tuple(v.shape) != tuple(ref[n].shape):
                raise ValueError(f"EMA entry {n!r} has shape {tuple(v.shape)}, expected {tuple(ref[n].shape)}")

    def load_state_dict(self, state: dict) -> None:
        """Validate, then replace the averages with copies (keeping each one's dtype and device)."""
        self.check_state_dict(state)
        new = {}
        for n, s in self.shadow.items():
            a = to_device(state[n], device_of(s))
            new[n] = get_array_module(a).array(a, dtype=s.dtype, copy=True)
        self.shadow = new
