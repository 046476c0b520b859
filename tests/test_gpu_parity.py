"""NumPy vs CuPy parity of every op, module and model, forward and backward: one body per backend.

Every test takes the ``backend`` fixture (tests/conftest.py), parametrised over the devices of
:data:`vca_ref.backend.DEVICES` and the CuPy-strict stand-in: ``"cpu"`` always runs, ``"cuda"``
runs where :func:`vca_ref.backend.available_devices` lists it and is otherwise skipped with the
reason (``no CUDA device: <backend.describe()>``), and ``strict`` runs the CUDA body on the
stand-in (tests/cupy_strict.py: CuPy's names, keywords and launch rules, computed by NumPy), so
the device code paths are exercised on every machine.

The same body on every backend:

1. build the case in dtype D (float32 or float64) on the host;
2. the reference is the NumPy code in float64 run on exactly those D values (inputs, parameters
   and upstream gradient widened), so the error measured is D's round-off on that backend alone
   (the recipe of tests/test_torch_oracle.py);
3. move the case to ``backend`` and run forward and backward; on CUDA twice, with the CUDA
   kernels (a spy checks that some twin really ran) and with the plain CuPy reference lines
   (``kernels.enabled(False)``; the spy must stay silent); on the CPU once (no kernel may run);
4. every output and gradient must have dtype D, live on ``backend``, and be within
   ``helpers.TOL[D]`` (1e-10 float64, 1e-4 float32) of the reference in the normwise relative
   error of :func:`helpers.compare`.

On the CPU the float32 cases are a real accuracy check; the float64 ones compare NumPy with
itself and only exercise the body.  The GPU kernels against their NumPy twins, op by op and at
bigger shapes, are in tests/test_kernels_gpu.py.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from helpers import (DIT_TINY, TOL, VCA_CASES, VIT_TINY, OpCase, compare, float32_resolvable, make_mhsa,
                     make_vca, op_cases, randomised, tokens)
from vca_ref import ops
from vca_ref.fast import kernels
from vca_ref.backend import device_of, to_device, to_numpy
from vca_ref.fast.kernels import cuda as kcuda
from vca_ref.models import DiTConfig, TinyDiT, TinyViT, ViTConfig
from vca_ref.nn.vca import VisualContrastAttention

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]

# The twin functions of vca_ref.fast.kernels.cuda that the ops call (adamw_update is the optimiser's).
TWINS = ("gelu_forward", "gelu_backward", "silu_forward", "silu_backward", "diff_combine_forward",
         "diff_combine_backward", "modulate_forward", "modulate_backward", "softmax_backward",
         "rmsnorm_forward", "rmsnorm_backward")


@pytest.fixture
def twin_calls(monkeypatch):
    """A list that records every call of a kernel twin of :mod:`vca_ref.fast.kernels.cuda`."""
    log: list[str] = []
    for name in TWINS:
        def wrapper(*args, _real=getattr(kcuda, name), _name=name, **kw):
            log.append(_name)
            return _real(*args, **kw)
        monkeypatch.setattr(kcuda, name, wrapper)
    return log


def paths(backend: str) -> tuple[str, ...]:
    """The code paths to run on ``backend``: CUDA kernels and plain CuPy, or NumPy."""
    return ("kernels", "cupy") if backend == "cuda" else ("numpy",)


def run_path(path: str, fn, twin_calls: list, uses_kernels: bool = True):
    """``fn()`` on one path; checks that the twins ran exactly when they should."""
    before = len(twin_calls)
    with kernels.enabled(path == "kernels"):
        out = fn()
    ran = len(twin_calls) - before
    if path == "kernels" and uses_kernels:
        assert ran > 0, "no CUDA kernel twin ran on the kernel path"
    if path != "kernels":
        assert ran == 0, f"{ran} kernel twin call(s) on the {path} path: {twin_calls[before:]}"
    return out


def widen(a):
    """A float64 NumPy copy of ``a`` (any device, any float dtype); integers are kept."""
    a = to_numpy(a)
    return a.astype(np.float64) if np.dtype(a.dtype).kind == "f" else a


def check(pairs: dict, dtype, backend: str) -> None:
    """Everything on ``backend`` and within ``TOL[dtype]`` of the float64 reference."""
    off = [k for k, (ours, _) in pairs.items() if device_of(ours) != backend]
    assert not off, f"not on {backend}: {off}"
    compare({k: (to_numpy(ours), ref) for k, (ours, ref) in pairs.items()}, TOL[dtype], dtype)


# ----------------------------------------------------------------------------- ops
def _embedding_case() -> OpCase:
    consts = {"ids": np.array([[0, 5, 2], [2, 2, 1]])}            # (B, M), id 2 repeats
    table = np.random.default_rng(99).standard_normal((6, 5))     # (V, C)
    return OpCase("embedding", {"table": table},
                  lambda inp: ops.embedding_forward(consts["ids"], inp["table"]),
                  lambda dout, cache: {"table": ops.embedding_backward(dout, cache)}, consts)


OPS = {**op_cases(), "embedding": _embedding_case()}
# op cases whose CuPy path must reach at least one kernel twin
OPS_WITH_KERNELS = {"gelu_erf", "gelu_tanh", "silu", "softmax", "rmsnorm", "diff_combine",
                    "modulate", "mhsa", "vca", "vca_separate_tied_noconv", "vca_stage1_nopool"}


@contextlib.contextmanager
def consts_on(case: OpCase, device: str):
    """The case's constant arrays (labels, ids) on ``device`` inside the block.

    The forward closures of helpers' op cases read the very dict ``case.consts``, so the
    arrays are swapped in that dict and restored afterwards.
    """
    saved = dict(case.consts)
    case.consts.update({k: to_device(v, device) for k, v in saved.items()
                        if isinstance(v, np.ndarray)})
    try:
        yield
    finally:
        case.consts.clear()
        case.consts.update(saved)


# case-name prefix of each op pair where it differs from the pair's name
CASE_PREFIX = {"adaptive_avg_pool": "pool", "dwconv3x3": "dwconv"}


def test_every_op_pair_has_a_case():
    """Every ``*_forward`` of vca_ref.ops (and the two attention pairs) has a parity case."""
    pairs = {n[:-len("_forward")] for n in dir(ops) if n.endswith("_forward")} | {"mhsa", "vca"}
    missing = sorted(p for p in pairs if not any(c.startswith(CASE_PREFIX.get(p, p)) for c in OPS))
    assert not missing, f"op pairs without a parity case: {missing}"
    assert OPS_WITH_KERNELS <= set(OPS)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(OPS))
def test_op(backend, twin_calls, name, dtype):
    case = OPS[name].cast(dtype)
    ref_inputs = {k: widen(v) for k, v in case.inputs.items()}
    out0, _ = case.forward(case.inputs)                       # the output's shape, on the host
    dout = np.asarray(np.random.default_rng(0).standard_normal(np.shape(out0))).astype(dtype)
    ref_out, ref_cache = case.forward(ref_inputs)
    ref_grads = case.backward(widen(dout), ref_cache)

    def run():
        with consts_on(case, backend):
            inputs = {k: to_device(v, backend) for k, v in case.inputs.items()}
            out, cache = case.forward(inputs)
            return out, case.backward(to_device(dout, backend), cache)

    for path in paths(backend):
        out, grads = run_path(path, run, twin_calls, uses_kernels=name in OPS_WITH_KERNELS)
        assert set(grads) == set(case.inputs) == set(ref_grads), (path, sorted(grads))
        pairs = {"out": (out, ref_out), **{f"d{k}": (grads[k], ref_grads[k]) for k in grads}}
        check(pairs, dtype, backend)


# ----------------------------------------------------------------------------- modules
def module_case(make, dtype, x_of):
    """(module in dtype D on the host, float64 twin holding the same D values, input x (D))."""
    m = make(dtype)
    ref = make(np.float64)
    ref.load_state_dict({k: widen(v) for k, v in m.state_dict().items()})
    return m, ref, x_of(m)


def run_module(m, ref, x, backend: str, twin_calls: list, forward=None) -> None:
    """Forward + backward of ``m`` on ``backend`` (every path) against the float64 ``ref``."""
    forward = forward or (lambda mod, inp: mod.forward(inp))
    dtype = m.dtype.type
    y_ref = forward(ref, widen(x))
    dy = np.random.default_rng(9).standard_normal(y_ref.shape).astype(dtype)
    dx_ref = ref.backward(widen(dy))
    g_ref = ref.named_grads()

    m.to(device=backend)
    xd, dyd = to_device(x, backend), to_device(dy, backend)

    def run():
        y = forward(m, xd)
        dx = m.backward(dyd)
        return y, dx, m.named_grads()

    for path in paths(backend):
        y, dx, grads = run_path(path, run, twin_calls)
        assert set(grads) == set(g_ref)
        pairs = {"y": (y, y_ref), "dx": (dx, dx_ref)}
        pairs.update({f"d[{k}]": (grads[k], g_ref[k]) for k in grads})
        check(pairs, dtype, backend)


def _resolvable_seed(case: str, dtype) -> int:
    seed = 11                      # the first seed from 11 that float32 can resolve (see helpers)
    if dtype == np.float32:
        while not float32_resolvable(make_vca(case, seed=seed)):
            seed += 1
    return seed


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(VCA_CASES))
def test_vca_module(backend, twin_calls, case, dtype):
    seed = _resolvable_seed(case, dtype)
    m, ref, x = module_case(lambda dt: make_vca(case, seed=seed, dtype=dt), dtype,
                            lambda m: tokens(m, batch=2, seed=12, dtype=dtype))
    run_module(m, ref, x, backend, twin_calls)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_vca_module_larger_layer(backend, twin_calls, dtype):
    """C=48, h=3, a 7x6 grid pooled unevenly to 4x4, class token, block 9, the specification's default init."""
    m, ref, x = module_case(
        lambda dt: VisualContrastAttention(48, 3, (7, 6), (4, 4), 1, 9, seed=15, dtype=dt), dtype,
        lambda m: tokens(m, batch=2, seed=16, dtype=dtype))
    run_module(m, ref, x, backend, twin_calls)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_mhsa_module(backend, twin_calls, num_heads, dtype):
    m, ref, x = module_case(lambda dt: make_mhsa(8, num_heads, seed=13, dtype=dt), dtype,
                            lambda m: tokens(m, batch=3, seed=14, dtype=dtype))
    run_module(m, ref, x, backend, twin_calls)


# ----------------------------------------------------------------------------- models
# Tiny sizes and the whole-model randomiser are shared with tests/test_models.py (helpers.py).


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("attention", ["vca", "mhsa"])
def test_vit(backend, twin_calls, attention, dtype):
    def make(dt):
        cfg = ViTConfig(**VIT_TINY, attention=attention, dtype=np.dtype(dt).name)
        return randomised(TinyViT(cfg, seed=0), 1)
    m, ref, x = module_case(make, dtype, lambda m: np.random.default_rng(5).standard_normal(
        (2, 2, 6, 6)).astype(dtype))
    run_module(m, ref, x, backend, twin_calls)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("attention", ["vca", "mhsa"])
def test_dit(backend, twin_calls, attention, dtype):
    def make(dt):
        cfg = DiTConfig(**DIT_TINY, attention=attention, dtype=np.dtype(dt).name)
        return randomised(TinyDiT(cfg, seed=0, zero_init=False), 1)
    m, ref, x = module_case(make, dtype, lambda m: np.random.default_rng(3).standard_normal(
        (3, 2, 6, 6)).astype(dtype))
    t = np.array([3.7, 611.0, 999.0])                    # (B,) timesteps
    y = np.array([0, DIT_TINY["num_classes"], 2])        # (B,) labels, the null class included

    def forward(mod, inp):                               # t and y live where the model lives
        return mod.forward(inp, to_device(t, mod.device), to_device(y, mod.device))
    run_module(m, ref, x, backend, twin_calls, forward=forward)
