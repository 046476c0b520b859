"""Finite-difference gradient checking, the core test of this project.

Everything is contracted with a random upstream gradient ``dout`` (an all-ones
``dout`` would hide broken softmax backwards: the gradient of a sum of
probabilities is zero).  The scalar probed is

    L(inputs) = sum(f(inputs) * dout)

and its derivative along a direction u is estimated by central differences

    dL/du ~= (L(x + eps u) - L(x - eps u)) / (2 eps)            (error O(eps^2))

For a tensor with at most ``full_max`` entries every coordinate is probed (the full
Jacobian-vector product); larger tensors are probed along ``num_directions`` random
unit directions and at ``num_coords`` sampled coordinates.  Every comparison
reports the absolute error and the relative error

    rel = |a - n| / max(|a| + |n|, 1e-8)                        (CS231n's floor)

and an entry passes when ``rel <= rtol`` or ``abs <= atol + scale_tol * s + 10 * noise``,
where ``s`` is the largest gradient magnitude of that tensor and
``noise = 2^-52 * sum|f * dout| / eps`` is the round-off floor of a central difference
(~1e-9 .. 1e-8 here).  The absolute clause exists because that noise sits in EVERY entry,
so entries whose true gradient is ~0 (the key bias, which softmax's shift invariance makes
exactly zero; lambda_1 when E+ = E-, which RMSNorm's scale invariance makes ~0) have a
large relative error even when correct; a broken backward is wrong by a fraction of
``s``, far above ``scale_tol = 1e-6`` and the noise floor.
Checks run in float64 only: float32 differences are dominated by round-off.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vca_ref.backend import get_array_module, to_numpy

REL_FLOOR = 1e-8


def rel_error(a, b) -> float:
    """Max elementwise ``|a - b| / max(|a| + |b|, 1e-8)``."""
    a, b = np.asarray(to_numpy(a), dtype=np.float64), np.asarray(to_numpy(b), dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), REL_FLOOR), initial=0.0))


@dataclass
class TensorReport:
    """Result for one input tensor."""
    name: str
    mode: str               # "full" or "sampled"
    max_abs: float
    max_rel: float
    passed: bool


@dataclass
class GradcheckReport:
    """Per-tensor results; ``bool(report)`` is True when every tensor passed."""
    tensors: list[TensorReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tensors)

    def __bool__(self) -> bool:
        return self.passed

    def table(self) -> str:
        """The one-line-per-tensor table (name, mode, max abs, max rel, pass/fail)."""
        w = max([len(t.name) for t in self.tensors] + [6])
        lines = [f"{'tensor':<{w}}  mode     max_abs     max_rel     result"]
        for t in self.tensors:
            lines.append(f"{t.name:<{w}}  {t.mode:<7}  {t.max_abs:9.3e}   {t.max_rel:9.3e}   "
                         f"{'ok' if t.passed else 'FAIL'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _check_inputs(inputs: dict) -> None:
    for k, v in inputs.items():
        if hasattr(v, "dtype") and np.dtype(v.dtype).kind == "f" and np.dtype(v.dtype) != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs; {k!r} is {v.dtype}")


def gradcheck(f: Callable[[dict], object], inputs: dict, analytic: Callable[[dict, object], dict], *,
              wrt: list[str] | None = None, seed: int = 0, eps: float = 1e-6, rtol: float = 1e-6,
              atol: float = 1e-10, scale_tol: float = 1e-6, full_max: int = 512, num_directions: int = 4, num_coords: int = 16,
              raise_on_fail: bool = True, verbose: bool = False) -> GradcheckReport:
    """Compare analytic gradients with central differences.

    Args:
        f: ``f(inputs) -> out``, a pure function of a dict of arrays (it must not
            modify them).
        inputs: name -> array.  Float arrays must be float64; non-float entries
            (e.g. integer labels) are passed through as constants.
        analytic: ``analytic(inputs, dout) -> {name: grad}``: the hand-written
            forward+backward contracted with the upstream gradient ``dout``.
        wrt: names to check (default: every float array in ``inputs``).
        eps, rtol, atol, scale_tol: step and tolerances (see the module docstring).
        full_max: tensors with at most this many entries get every coordinate probed.
        num_directions, num_coords: probes for larger tensors.
        raise_on_fail: raise ``AssertionError`` with the per-tensor table on failure.

    Returns:
        A :class:`GradcheckReport`.
    """
    _check_inputs(inputs)
    rng = np.random.default_rng(seed)
    out0 = f(inputs)
    xp = get_array_module(out0)
    dout = xp.asarray(rng.standard_normal(out0.shape))                    # random upstream gradient
    grads = analytic(inputs, dout)
    names = wrt if wrt is not None else [k for k, v in inputs.items()
                                         if hasattr(v, "dtype") and np.dtype(v.dtype).kind == "f"]

    def loss(perturbed: dict) -> float:
        return float((f(perturbed) * dout).sum())

    noise = np.finfo(np.float64).eps * float(abs(out0 * dout).sum()) / eps   # round-off floor

    report = GradcheckReport()
    for name in names:
        x = inputs[name]
        if name not in grads or grads[name] is None:
            raise KeyError(f"analytic gradients have no entry for {name!r}")
        a = to_numpy(grads[name]).astype(np.float64)
        if a.shape != tuple(x.shape):
            raise ValueError(f"gradient of {name!r} has shape {a.shape}, expected {tuple(x.shape)}")

        def probe(u):
            plus, minus = dict(inputs), dict(inputs)
            plus[name] = x + eps * u
            minus[name] = x - eps * u
            return (loss(plus) - loss(minus)) / (2 * eps)

        if x.size <= full_max:
            mode = "full"
            num, ana = np.zeros(x.size), a.ravel()
            for i in range(x.size):
                u = np.zeros(x.size)
                u[i] = 1.0
                num[i] = probe(xp.asarray(u.reshape(x.shape)))
        else:
            mode = "sampled"
            num, ana = [], []
            for _ in range(num_directions):
                u = rng.standard_normal(x.shape)
                u /= np.linalg.norm(u)
                num.append(probe(xp.asarray(u)))
                ana.append(float((a * u).sum()))
            for i in rng.choice(x.size, size=min(num_coords, x.size), replace=False):
                u = np.zeros(x.size)
                u[i] = 1.0
                num.append(probe(xp.asarray(u.reshape(x.shape))))
                ana.append(float(a.ravel()[i]))
            num, ana = np.array(num), np.array(ana)
        abs_err = np.abs(num - ana)
        rel = abs_err / np.maximum(np.abs(num) + np.abs(ana), REL_FLOOR)
        scale = float(np.max(np.abs(num), initial=0.0))
        ok = bool(np.all((rel <= rtol) | (abs_err <= atol + scale_tol * scale + 10 * noise)))
        report.tensors.append(TensorReport(name, mode, float(abs_err.max(initial=0.0)),
                                           float(rel.max(initial=0.0)), ok))
    if verbose or not report.passed:
        print(report.table())
    if raise_on_fail and not report.passed:
        raise AssertionError("gradient check failed:\n" + report.table())
    return report


def gradcheck_module(module, x, *, seed: int = 0, **kwargs) -> GradcheckReport:
    """Gradcheck a :class:`vca_ref.nn.Module` with respect to its input and every parameter.

    ``module.forward(x)`` / ``module.backward(dout) -> dx`` and ``module.named_grads()``
    supply the analytic side; parameters are perturbed through ``load``-free in-place
    swaps and always restored.  The module and ``x`` must be float64.
    """
    from vca_ref.nn.module import Module  # local import: gradcheck is usable without nn
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck_module needs a vca_ref Module, got {type(module).__name__}")
    owners = {}
    for prefix, mod in module.named_modules():
        for pname in mod.params:
            owners[prefix + pname] = (mod, pname)
    inputs = {"x": x}
    inputs.update({name: mod.params[p] for name, (mod, p) in owners.items()})

    def set_params(inp: dict):
        for name, (mod, p) in owners.items():
            mod.params[p] = inp[name]

    originals = {name: mod.params[p] for name, (mod, p) in owners.items()}

    def f(inp):
        try:
            set_params(inp)
            return module.forward(inp["x"])
        finally:
            set_params({**originals, "x": x})

    def analytic(inp, dout):
        module.forward(inp["x"])
        dx = module.backward(dout)
        return {"x": dx, **module.named_grads()}

    return gradcheck(f, inputs, analytic, seed=seed, **kwargs)
