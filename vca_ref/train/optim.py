"""Hand-written optimisers with PyTorch semantics: AdamW and SGD (momentum, Nesterov).

Both act on a :class:`~vca_ref.nn.module.Module`: each ``step()`` reads the module's
``named_parameters()`` and ``named_grads()`` afresh (so ``module.to(...)`` or
``load_state_dict`` in between is fine) and updates every parameter IN PLACE.  In place keeps the
array objects that the module holds, so nothing else must be re-pointed.  Consequence:
parameters must be writeable arrays, and two parameters must not share memory.

Optimiser state is keyed by the full parameter name, which makes ``state_dict()`` a flat
``{name: array}`` dict that checkpoints as safetensors:
``step`` (0-d int64) and ``<state>.<param name>`` (e.g. ``exp_avg.blocks.0.attn.qkv.weight``).

AdamW (torch.optim.AdamW, amsgrad=False), step t = 1, 2, …, gradient g, weight decay wd:
    p   ← p · (1 − lr·wd)                         decoupled weight decay
    m   ← β₁ m + (1 − β₁) g                       (torch: m.lerp_(g, 1 − β₁))
    v   ← β₂ v + (1 − β₂) g²
    p   ← p − lr/(1 − β₁ᵗ) · m / ( sqrt(v)/sqrt(1 − β₂ᵗ) + ε )

SGD (torch.optim.SGD), momentum μ, dampening τ:
    d   ← g + wd · p                              (L2 penalty folded into the gradient)
    b   ← d                       at the first step
    b   ← μ b + (1 − τ) d         afterwards
    d   ← d + μ b  (nesterov)     or   d ← b
    p   ← p − lr · d

``no_decay(name, p) -> bool`` selects parameters with weight decay 0 (PyTorch: a second
parameter group); :func:`default_no_decay` is timm's rule (1-D tensors: biases, norms, λ).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from vca_ref.backend import device_of, get_array_module, to_device, to_numpy
from vca_ref.fast import overridable


@overridable
def adamw_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float, step: int) -> None:
    """One AdamW step (torch.optim.AdamW, amsgrad=False) on p, m, v IN PLACE; ``step`` t >= 1.

    p, g, m, v: arrays of one shape (the parameter, its gradient, the two moments).
    """
    xp = get_array_module(p)
    bias_c1 = 1.0 - beta1 ** step
    bias_c2 = 1.0 - beta2 ** step
    step_size = lr / bias_c1
    m[...] = m + (1.0 - beta1) * (g - m)            # β₁ m + (1 − β₁) g, as torch's m.lerp_(g, 1 − β₁)
    v[...] = beta2 * v + (1.0 - beta2) * g ** 2
    denom = xp.sqrt(v) / math.sqrt(bias_c2) + eps   # sqrt(v)/sqrt(1 − β₂ᵗ) + ε
    p[...] = p * (1.0 - lr * weight_decay) - step_size * (m / denom)


def default_no_decay(name: str, p) -> bool:
    """timm's rule: no weight decay on tensors with ``ndim <= 1`` (biases, norm gains, λ vectors)."""
    return p.ndim <= 1


class Optimizer:
    """Shared machinery: the step loop, the name-keyed state and its (de)serialisation."""

    state_names: tuple[str, ...] = ()        # per-parameter state arrays, in update order

    def __init__(self, module, lr: float, weight_decay: float,
                 no_decay: Callable[[str, object], bool] | None):
        if not hasattr(module, "named_parameters") or not hasattr(module, "named_grads"):
            raise TypeError(f"expected a vca_ref Module, got {type(module).__name__}")
        if lr < 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.module = module
        self.lr = float(lr)                   # set by a schedule before each step
        self.weight_decay = float(weight_decay)
        self.no_decay = no_decay
        self.step_count = 0                   # t: number of steps taken
        self.state: dict[str, dict[str, object]] = {k: {} for k in self.state_names}

    # ------------------------------------------------------------------ stepping
    def zero_grad(self) -> None:
        self.module.zero_grad()

    def step(self) -> None:
        """One update of every parameter from the module's current gradients."""
        grads = self.module.named_grads()     # raises if backward() was not called
        self.step_count += 1
        for name, p in self.module.named_parameters():
            g = grads[name]
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"gradient of {name!r} has shape {tuple(g.shape)}, "
                                 f"expected the parameter's shape {tuple(p.shape)}")
            if isinstance(p, np.ndarray) and not p.flags.writeable:
                raise ValueError(f"parameter {name!r} is a read-only array; the optimiser updates "
                                 "parameters in place (load weights with module.load_state_dict)")
            wd = 0.0 if (self.no_decay is not None and self.no_decay(name, p)) else self.weight_decay
            self._update(name, p, g, wd)

    def _update(self, name: str, p, g, wd: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def hparams(self) -> dict:
        """Hyper-parameters as plain JSON values (stored in checkpoint metadata)."""
        raise NotImplementedError  # pragma: no cover

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, object]:
        """``{"step": 0-d int64, "<state>.<param>": array}``; the arrays are COPIES."""
        out: dict[str, object] = {"step": np.array(self.step_count, dtype=np.int64)}
        for key in self.state_names:
            for name, a in self.state[key].items():
                out[f"{key}.{name}"] = get_array_module(a).array(a, copy=True)
        return out

    def check_state_dict(self, state: dict) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first problem; touches nothing."""
        if not isinstance(state, dict):
            raise TypeError(f"optimiser state must be a dict of arrays, got {type(state).__name__}")
        if "step" not in state:
            raise ValueError("optimiser state has no 'step' entry")
        step = to_numpy(state["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"optimiser 'step' must be a non-negative 0-d integer array, "
                             f"got dtype {step.dtype} shape {step.shape}")
        params = dict(self.module.named_parameters())
        for k in state:
            if k == "step":
                continue
            key, _, name = k.partition(".")
            if key not in self.state_names:
                raise ValueError(f"unexpected optimiser state entry {k!r}; {type(self).__name__} "
                                 f"keeps {list(self.state_names)} per parameter")
            if name not in params:
                raise ValueError(f"optimiser state entry {k!r} names no parameter of the module")
            v = state[k]
            if not hasattr(v, "dtype") or np.dtype(v.dtype).kind != "f":
                raise TypeError(f"optimiser state entry {k!r} must be a floating array, "
                                f"got {getattr(v, 'dtype', type(v).__name__)}")
            if tuple(v.shape) != tuple(params[name].shape):
                raise ValueError(f"optimiser state entry {k!r} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(params[name].shape)}")
        for key in self.state_names:          # a state kind is present for all parameters or none
            have = [n for n in params if f"{key}.{n}" in state]
            if have and len(have) != len(params):
                missing = [n for n in params if f"{key}.{n}" not in state]
                raise ValueError(f"optimiser state {key!r} is missing for parameters {missing}")

    def load_state_dict(self, state: dict) -> None:
        """Validate everything, then copy the state in (cast to each parameter's dtype/device)."""
        self.check_state_dict(state)
        params = dict(self.module.named_parameters())
        new: dict[str, dict[str, object]] = {k: {} for k in self.state_names}
        for key in self.state_names:
            for name, p in params.items():
                if f"{key}.{name}" in state:
                    a = to_device(state[f"{key}.{name}"], device_of(p))
                    new[key][name] = get_array_module(a).array(a, dtype=p.dtype, copy=True)
        self.state = new
        self.step_count = int(to_numpy(state["step"]))


class AdamW(Optimizer):
    """AdamW with decoupled weight decay and bias correction (torch.optim.AdamW, amsgrad=False)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2,
                 no_decay: Callable[[str, object], bool] | None = None):
        super().__init__(module, lr, weight_decay, no_decay)
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.betas = (b1, b2)
        self.eps = float(eps)

    def hparams(self) -> dict:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, name: str, p, g, wd: float) -> None:
        xp = get_array_module(p)
        if name not in self.state["exp_avg"]:            # lazily: zeros at the first step
            self.state["exp_avg"][name] = xp.zeros_like(p)
            self.state["exp_avg_sq"][name] = xp.zeros_like(p)
        m = self.state["exp_avg"][name]                  # first moment, same shape as p
        v = self.state["exp_avg_sq"][name]               # second moment
        b1, b2 = self.betas
        adamw_update(p, g, m, v, self.lr, b1, b2, self.eps, wd, self.step_count)


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov and (coupled) weight decay (torch.optim.SGD)."""

    state_names = ("momentum_buffer",)

    def __init__(self, module, lr: float = 1e-2, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False,
                 no_decay: Callable[[str, object], bool] | None = None):
        super().__init__(module, lr, weight_decay, no_decay)
        if momentum < 0.0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening == 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)

    def hparams(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _update(self, name: str, p, g, wd: float) -> None:
        xp = get_array_module(p)
        d = g + wd * p if wd != 0.0 else g               # d = g + wd·p   (a new array or g itself)
        if self.momentum != 0.0:
            buf = self.state["momentum_buffer"].get(name)
            if buf is None:                              # first step: b ← d
                buf = self.state["momentum_buffer"][name] = xp.array(d, dtype=p.dtype, copy=True)
            else:                                        # b ← μ b + (1 − τ) d
                buf[...] = self.momentum * buf + (1.0 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        p[...] = p - self.lr * d                         # p ← p − lr·d
