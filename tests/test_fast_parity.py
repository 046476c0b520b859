"""The override layer: every registered twin against its reference, the registry and the switch.

* Parity: each twin of :mod:`vca_ref.fast.registry` runs on the same arguments as the reference
  body (``dispatcher.reference``) in float32 and float64, on odd shapes, with contiguous, strided
  (non-contiguous) and broadcast (zero-stride) inputs; outputs, caches and gradients must agree
  to round-off (normwise relative error, 1e-12 in float64 and 1e-5 in float32: the twins sum in
  another order).  A backward twin is fed the caches of both forwards (the twin's may carry more).
  The CUDA twins run the same cases on CuPy arrays where a device answers, and always on the
  CuPy-strict stand-in.
* The registry lists exactly the twins below; the switch (``VCA_REF_FAST=0``,
  ``set_enabled``, ``enabled``) turns every one of them off, seen by spies.
* Each ``// ref:`` line of a ``.cuh`` kernel is a line of its reference source, verbatim.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

import vca_ref.fast as fast
from vca_ref.backend import available_devices, describe, to_device
from vca_ref.fast import cpu_dwconv, registry
from vca_ref.fast.kernels import CUH_FILES, cuh_path
from vca_ref.ops import activations, diff_combine, dwconv, layernorm, linear, modulate, pooling, rmsnorm, softmax
from vca_ref.train import optim

ROOT = Path(__file__).resolve().parents[1]
DTYPES = [np.float64, np.float32]
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
LAYOUTS = ["contiguous", "strided", "broadcast"]


# ----------------------------------------------------------------------------- inputs
class Maker:
    """Random arrays of one dtype in one memory layout (``place`` moves them to a device)."""

    def __init__(self, dtype, layout: str, seed: int = 0, place: Callable = lambda a: a):
        self.rng, self.dtype, self.layout, self.place = np.random.default_rng(seed), dtype, layout, place

    def param(self, *shape, scale=1.0):
        """A contiguous, writeable parameter-like array (weights, optimiser state)."""
        return self.place(scale * self.rng.standard_normal(shape).astype(self.dtype))

    def data(self, *shape, scale=1.0):
        """An input or upstream gradient in this maker's layout."""
        if self.layout == "strided" and len(shape) >= 1:        # every other entry of a wider array
            wide = self.rng.standard_normal(shape[:-1] + (2 * shape[-1],)).astype(self.dtype)
            a = (scale * wide)[..., ::2]
            assert not a.flags.c_contiguous
        elif self.layout == "broadcast" and len(shape) >= 2:    # one row repeated along axis 0
            a = np.broadcast_to(scale * self.rng.standard_normal((1,) + shape[1:]).astype(self.dtype), shape)
        else:
            a = scale * self.rng.standard_normal(shape).astype(self.dtype)
        return self.place(a)


class Case(NamedTuple):
    id: str
    reference: Callable                      # the @overridable dispatcher
    make: Callable                           # make(maker) -> (args, kwargs)
    forward: Callable | None = None          # for a backward: the forward whose cache it takes


def _bwd(forward, make_forward):
    """Backward arguments (dout, cache): the cache from ``forward`` on the forward's inputs."""
    def make(mk, forward_impl=None):
        args, kwargs = make_forward(mk)
        out, cache = (forward_impl or forward.reference)(*args, **kwargs)
        return (mk.data(*out.shape), cache), {}
    return make


def ln_affine(mk):
    return (mk.data(3, 7, 5, scale=2.0), mk.param(5), mk.param(5)), {"eps": 1e-5}


def ln_plain(mk):
    return (mk.data(2, 9, 11) + 0.5,), {}


def rms(mk):
    return (mk.data(3, 2, 7, 5), mk.param(5)), {"eps": 1e-6}


def soft_short(mk):
    return (mk.data(3, 4, 7, 9, scale=3.0),), {}


def soft_long(mk):
    return (mk.data(2, 5, 67, scale=3.0),), {}


def gelu(mk):
    return (mk.data(3, 7, 11, scale=2.0),), {"approximate": "none"}


def conv(mk):
    return (mk.data(2, 5, 7, 3), mk.param(3, 1, 3, 3), mk.param(3)), {}


def lin_bias(mk):
    return (mk.data(3, 7, 5), mk.param(4, 5), mk.param(4)), {}


def lin_nobias(mk):
    return (mk.data(13, 6), mk.param(3, 6)), {}


def pool(mk):
    return (mk.data(2, 3, 35, 4), (5, 7), (2, 3)), {}


def adamw_wd(mk):
    m, v = mk.param(7, 5, scale=0.1), abs(mk.param(7, 5, scale=0.1))
    return (mk.param(7, 5), mk.data(7, 5), m, v, 3e-2, 0.8, 0.95, 1e-3, 0.2, 3), {}


def adamw_nowd(mk):
    m, v = mk.param(11), abs(mk.param(11))
    return (mk.param(11), mk.data(11), m, v, 1e-2, 0.9, 0.999, 1e-8, 0.0, 1), {}


def gelu_any(approximate):
    return lambda mk: ((mk.data(3, 7, 11, scale=2.0),), {"approximate": approximate})


def silu(mk):
    return (mk.data(3, 7, 11, scale=3.0),), {}


def combine(mk):
    return (mk.data(3, 7, 5), mk.data(3, 7, 5), 0.37), {}


def modul(mk):
    return (mk.data(3, 7, 5), mk.param(3, 5), mk.param(3, 5)), {}


def rms_cuda(mk):
    return (mk.data(3, 7, 40), mk.param(40)), {"eps": 1e-5}


def pair(module, name: str, make, tag: str = "") -> list[Case]:
    """The forward case of one op pair and its backward case (the cache from that forward)."""
    fwd, bwd = getattr(module, f"{name}_forward"), getattr(module, f"{name}_backward")
    suffix = f"-{tag}" if tag else ""
    return [Case(f"{name}_forward{suffix}", fwd, make),
            Case(f"{name}_backward{suffix}", bwd, _bwd(fwd, make), fwd)]


CPU_CASES = [
    *pair(layernorm, "layernorm", ln_affine, "affine"),
    *pair(layernorm, "layernorm", ln_plain, "plain"),
    *pair(rmsnorm, "rmsnorm", rms),
    *pair(softmax, "softmax", soft_short, "short"),
    Case("softmax_forward-long", softmax.softmax_forward, soft_long),
    *pair(activations, "gelu", gelu),
    *pair(dwconv, "dwconv3x3", conv),
    *pair(linear, "linear", lin_bias, "bias"),
    *pair(linear, "linear", lin_nobias, "nobias"),
    Case("adamw_update-decay", optim.adamw_update, adamw_wd),
    Case("adamw_update-nodecay", optim.adamw_update, adamw_nowd),
    *pair(pooling, "adaptive_avg_pool", pool),
]

CUDA_CASES = [
    *pair(activations, "gelu", gelu_any("none"), "erf"),
    *pair(activations, "gelu", gelu_any("tanh"), "tanh"),
    *pair(activations, "silu", silu),
    *pair(diff_combine, "diff_combine", combine),
    *pair(modulate, "modulate", modul),
    pair(softmax, "softmax", soft_long)[1],                     # the backward alone has a kernel
    *pair(rmsnorm, "rmsnorm", rms_cuda),
    Case("adamw_update", optim.adamw_update, adamw_wd),
]


# ----------------------------------------------------------------------------- comparison
def _copy_args(args):
    """Fresh copies of the arrays an in-place function writes (the optimiser's p, m, v)."""
    return tuple(a.copy() if hasattr(a, "copy") and hasattr(a, "dtype") else a for a in args)


def assert_same(got, want, tol, where="out"):
    """Recursive comparison: arrays to ``tol`` (normwise), NamedTuples field by field, rest exact."""
    if hasattr(want, "_fields"):                                 # a cache
        assert isinstance(got, type(want)), f"{where}: {type(got).__name__} is no {type(want).__name__}"
        for name in want._fields:
            assert_same(getattr(got, name), getattr(want, name), tol, f"{where}.{name}")
    elif isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{where}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, tol, f"{where}[{i}]")
    elif hasattr(want, "shape") and hasattr(want, "dtype"):    # an array (0-d included)
        g, w = to_device(got, "cpu"), to_device(want, "cpu")
        assert g.shape == w.shape, f"{where}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{where}: dtype {g.dtype} != {w.dtype}"
        g, w = g.astype(np.float64), w.astype(np.float64)
        err = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)
        assert err <= tol, f"{where}: relative error {err:.3g} > {tol:g}"
    else:                                                        # None, a string, a Python scalar
        assert got == want, f"{where}: {got!r} != {want!r}"


def run_both(case: Case, twin: Callable, mk_ref: Maker, mk_twin: Maker, forward_twin=None):
    """(reference result, twin result) on the same random arguments (fresh copies each)."""
    if case.forward is None:
        args_r, kw_r = case.make(mk_ref)
        args_t, kw_t = case.make(mk_twin)
    else:
        args_r, kw_r = case.make(mk_ref)
        args_t, kw_t = case.make(mk_twin, forward_twin) if forward_twin else case.make(mk_twin)
    args_r, args_t = _copy_args(args_r), _copy_args(args_t)
    want = case.reference.reference(*args_r, **kw_r)
    got = twin(*args_t, **kw_t)
    if want is None:                                             # in place: compare the arguments
        return args_r[:4], args_t[:4]
    return want, got


def twin_of(case: Case, entries) -> tuple[Callable, Callable]:
    """The (twin, accepts) registered for ``case.reference`` among ``entries``."""
    found = [(o.twin, o.accepts) for o in entries if o.reference is case.reference]
    assert len(found) == 1, f"{case.id}: expected one twin in this table, found {len(found)}"
    return found[0]


def forward_twin_of(case: Case, entries):
    if case.forward is None:
        return None
    found = [o.twin for o in entries if o.reference is case.forward]
    return found[0] if found else None


# ----------------------------------------------------------------------------- CPU parity
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("case", CPU_CASES, ids=[c.id for c in CPU_CASES])
def test_cpu_twin_matches_reference(case, dtype, layout):
    twin, accepts = twin_of(case, registry.CPU)
    tol = TOL[np.dtype(dtype)]
    args, kwargs = case.make(Maker(dtype, layout))
    assert accepts(*args, **kwargs), f"{case.id}: the predicate refuses its own case"
    want, got = run_both(case, twin, Maker(dtype, layout), Maker(dtype, layout))
    assert_same(got, want, tol)
    ftwin = forward_twin_of(case, registry.CPU)
    if ftwin is not None:                         # the cache the fast forward built, too
        want, got = run_both(case, twin, Maker(dtype, layout), Maker(dtype, layout), ftwin)
        assert_same(got, want, tol, "out (twin's cache)")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_blocked_dwconv_over_many_row_blocks(dtype, monkeypatch):
    """Blocks of one and two rows: every block edge of the blocked correlation is crossed."""
    for block in (7 * 3 * 2, 7 * 3 * 2 * 2 + 1):
        monkeypatch.setattr(cpu_dwconv, "BLOCK_ELEMS", block)
        for case in CPU_CASES:
            if case.reference in (dwconv.dwconv3x3_forward, dwconv.dwconv3x3_backward):
                twin, _ = twin_of(case, registry.CPU)
                want, got = run_both(case, twin, Maker(dtype, "strided"), Maker(dtype, "strided"))
                assert_same(got, want, TOL[np.dtype(dtype)], f"{case.id} block {block}")


def test_mixed_dtypes_and_bad_input_take_the_reference():
    """What a predicate refuses runs the reference: NumPy's promotion, and its clear errors."""
    x32 = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    w64 = np.ones(6)
    y, _ = layernorm.layernorm_forward(x32, w64, None)
    assert y.dtype == np.float64                                  # promoted, as the reference does
    with pytest.raises(ValueError, match=r"dwconv weight must have shape \(3, 1, 3, 3\)"):
        dwconv.dwconv3x3_forward(np.zeros((1, 4, 4, 3)), np.zeros((3, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="pooling expects 5\\*7=35 tokens"):
        pooling.adaptive_avg_pool_forward(np.zeros((2, 34, 4)), (5, 7), (2, 3))


# ----------------------------------------------------------------------------- CUDA parity
def _cuda_param():
    if "cuda" in available_devices():
        return pytest.param("cuda", marks=pytest.mark.gpu)
    return pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skip(reason=f"no CUDA device: {describe()}")])


@pytest.fixture(params=[_cuda_param(), "strict"])
def device(request) -> str:
    """``"cuda"`` where a device answers, and always the CuPy-strict stand-in (tests/cupy_strict.py)
    playing it: there the kernels are computed by their NumPy twins, so the stand-in proves the
    glue (predicates, argument order, caches) and the reference lines' CuPy path."""
    if request.param == "strict":
        request.getfixturevalue("strict_cupy")
    return "cuda"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("case", CUDA_CASES, ids=[c.id for c in CUDA_CASES])
def test_cuda_twin_matches_reference(case, dtype, layout, device):
    place = lambda a: to_device(a, device)                      # noqa: E731
    twin, accepts = twin_of(case, registry.CUDA)
    args, kwargs = case.make(Maker(dtype, layout, place=place))
    assert accepts(*args, **kwargs), f"{case.id}: the predicate refuses its own case"
    want, got = run_both(case, twin, Maker(dtype, layout, place=place), Maker(dtype, layout, place=place),
                         forward_twin_of(case, registry.CUDA))
    assert_same(got, want, TOL[np.dtype(dtype)])


# ----------------------------------------------------------------------------- the registry
EXPECTED = {
    ("vca_ref.ops.activations.gelu_forward", "vca_ref.fast.cuda_twins.gelu_forward"),
    ("vca_ref.ops.activations.gelu_backward", "vca_ref.fast.cuda_twins.gelu_backward"),
    ("vca_ref.ops.activations.silu_forward", "vca_ref.fast.cuda_twins.silu_forward"),
    ("vca_ref.ops.activations.silu_backward", "vca_ref.fast.cuda_twins.silu_backward"),
    ("vca_ref.ops.diff_combine.diff_combine_forward", "vca_ref.fast.cuda_twins.diff_combine_forward"),
    ("vca_ref.ops.diff_combine.diff_combine_backward", "vca_ref.fast.cuda_twins.diff_combine_backward"),
    ("vca_ref.ops.modulate.modulate_forward", "vca_ref.fast.cuda_twins.modulate_forward"),
    ("vca_ref.ops.modulate.modulate_backward", "vca_ref.fast.cuda_twins.modulate_backward"),
    ("vca_ref.ops.softmax.softmax_backward", "vca_ref.fast.cuda_twins.softmax_backward"),
    ("vca_ref.ops.rmsnorm.rmsnorm_forward", "vca_ref.fast.cuda_twins.rmsnorm_forward"),
    ("vca_ref.ops.rmsnorm.rmsnorm_backward", "vca_ref.fast.cuda_twins.rmsnorm_backward"),
    ("vca_ref.train.optim.adamw_update", "vca_ref.fast.cuda_twins.adamw_update"),
    ("vca_ref.ops.layernorm.layernorm_forward", "vca_ref.fast.cpu_norms.layernorm_forward"),
    ("vca_ref.ops.layernorm.layernorm_backward", "vca_ref.fast.cpu_norms.layernorm_backward"),
    ("vca_ref.ops.rmsnorm.rmsnorm_forward", "vca_ref.fast.cpu_norms.rmsnorm_forward"),
    ("vca_ref.ops.rmsnorm.rmsnorm_backward", "vca_ref.fast.cpu_norms.rmsnorm_backward"),
    ("vca_ref.ops.softmax.softmax_forward", "vca_ref.fast.cpu_softmax.softmax_forward"),
    ("vca_ref.ops.softmax.softmax_backward", "vca_ref.fast.cpu_softmax.softmax_backward"),
    ("vca_ref.ops.activations.gelu_forward", "vca_ref.fast.cpu_activations.gelu_forward"),
    ("vca_ref.ops.activations.gelu_backward", "vca_ref.fast.cpu_activations.gelu_backward"),
    ("vca_ref.ops.dwconv.dwconv3x3_forward", "vca_ref.fast.cpu_dwconv.dwconv3x3_forward"),
    ("vca_ref.ops.dwconv.dwconv3x3_backward", "vca_ref.fast.cpu_dwconv.dwconv3x3_backward"),
    ("vca_ref.ops.linear.linear_forward", "vca_ref.fast.cpu_linear.linear_forward"),
    ("vca_ref.ops.linear.linear_backward", "vca_ref.fast.cpu_linear.linear_backward"),
    ("vca_ref.train.optim.adamw_update", "vca_ref.fast.cpu_adamw.adamw_update"),
    ("vca_ref.ops.pooling.adaptive_avg_pool_forward",
     "vca_ref.fast.separable_pooling.adaptive_avg_pool_forward"),
    ("vca_ref.ops.pooling.adaptive_avg_pool_backward",
     "vca_ref.fast.separable_pooling.adaptive_avg_pool_backward"),
}


def test_registry_lists_exactly_the_twins():
    listed = [(fast.reference_name(o.reference), f"{o.twin.__module__}.{o.twin.__qualname__}")
              for o in fast.overrides()]
    assert len(listed) == len(set(listed)), "a twin is registered twice"
    assert set(listed) == EXPECTED
    for o in fast.overrides():
        assert hasattr(o.reference, "reference"), f"{o.reference} is not @overridable"
        assert o.twin.__name__ == o.reference.__name__, "a twin carries its reference's name"


def test_every_overridable_function_has_a_twin():
    """Walk the reference modules: each ``@overridable`` function is registered, and nothing else."""
    import importlib
    import pkgutil
    import vca_ref.ops
    names = [f"vca_ref.ops.{m.name}" for m in pkgutil.iter_modules(vca_ref.ops.__path__)]
    marked = set()
    for name in names + ["vca_ref.train.optim"]:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if callable(obj) and hasattr(obj, "reference") and obj.__module__ == name:
                marked.add(fast.reference_name(obj))
    assert marked == {fast.reference_name(o.reference) for o in fast.overrides()}


def test_every_twin_has_a_parity_case():
    assert {c.reference for c in CPU_CASES} == {o.reference for o in registry.CPU}
    assert {c.reference for c in CUDA_CASES} == {o.reference for o in registry.CUDA}


# ----------------------------------------------------------------------------- the switch
@pytest.fixture
def spies(monkeypatch):
    """Every twin replaced by a spy that records its reference's name and then runs the twin."""
    calls: list[str] = []
    table: dict = {}
    for o in fast.overrides():
        def spy(*args, _twin=o.twin, _name=fast.reference_name(o.reference), **kwargs):
            calls.append(_name)
            return _twin(*args, **kwargs)
        table.setdefault(fast.reference_name(o.reference), []).append((o.accepts, spy))
    monkeypatch.setattr(fast, "_twins", {k: tuple(v) for k, v in table.items()})
    return calls


def _call_every_cpu_case():
    for case in CPU_CASES:
        args, kwargs = case.make(Maker(np.float64, "contiguous"))
        case.reference(*_copy_args(args), **kwargs)


def test_the_switch_turns_every_override_off(spies):
    assert fast.is_enabled()
    _call_every_cpu_case()
    assert set(spies) == {fast.reference_name(c.reference) for c in CPU_CASES}
    spies.clear()
    with fast.enabled(False):
        assert not fast.is_enabled()
        _call_every_cpu_case()
    assert spies == [] and fast.is_enabled()
    previous = fast.set_enabled(False)
    try:
        _call_every_cpu_case()
    finally:
        fast.set_enabled(previous)
    assert spies == []
    with pytest.raises(TypeError, match="True, False or None"):
        fast.set_enabled("0")


def test_the_environment_variable_turns_every_override_off():
    code = ("import numpy as np, vca_ref.fast as f\n"
            "from vca_ref.ops.softmax import softmax_forward\n"
            "seen = []\n"
            "f._twins = {f.reference_name(softmax_forward): ((lambda x: True, lambda x: seen.append(1)),)}\n"
            "softmax_forward(np.ones((2, 3)))\n"
            "print(f.is_enabled(), len(seen))\n")
    for value, expected in (("0", "False 0"), ("1", "True 1")):
        env = dict(os.environ, VCA_REF_FAST=value, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        assert " ".join(out) == expected


# ----------------------------------------------------------------------------- kernel quotes
def _code(line: str) -> str:
    """A Python line without its trailing comment and surrounding blanks."""
    return line.split("  #", 1)[0].split(" # ", 1)[0].strip()


@pytest.mark.parametrize("name", [n for n in CUH_FILES if n not in ("common.cuh", "reduce.cuh")])
def test_kernel_quotes_are_reference_lines(name):
    text = cuh_path(name).read_text(encoding="utf-8")
    header = re.search(r"^// Reference: ((?:vca_ref/\S+\.py ?)+)", text, re.M)
    assert header, f"{name} names no reference file"
    sources = [ROOT / p for p in header.group(1).split()]
    lines = {_code(line) for src in sources for line in src.read_text(encoding="utf-8").splitlines()}
    quotes = re.findall(r"^\s*// ref: (.*?)\s*$", text, re.M)
    assert quotes, f"{name} quotes no reference line"
    missing = [q for q in quotes if q not in lines]
    assert not missing, f"{name} quotes lines its reference does not have: {missing}"
