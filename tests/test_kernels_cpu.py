"""The .cuh kernel math on a CPU: g++ builds it into a shared library, ctypes runs it on NumPy
arrays, and every function is compared with the NumPy reference op of vca_ref.ops.

The library is built from ``cuh_text(*CUH_FILES)`` (the very text the CUDA preamble uses) plus
tests/kernel_harness.cpp, with ``-ffp-contract=off`` (no fused multiply-add: every operation
rounds as NumPy's does) and ``-Wdouble-promotion -Wfloat-conversion -Werror`` (a float
instantiation that silently computes in double does not build).

Tolerances, in units of the dtype's machine epsilon ``eps``:
* no transcendental function, same operation order as NumPy  -> bit-for-bit equal;
* erf/tanh/exp: glibc and NumPy/SciPy each round their result (within ~1 ulp), so results differ
  by a few ulp of the quantity that carries the function value -- the bound below is written
  per element as ``n * eps * scale`` with the ``scale`` named in each test;
* row sums (softmax backward, RMSNorm): one serial sum against NumPy's pairwise sum; the bound
  is the classic ``K * eps * sum|terms|`` for a sum of K terms, carried through the row formula.
"""
from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vca_ref import fast
from vca_ref.fast import kernels
from vca_ref.fast.kernels import CUH_FILES, cuh_text
from vca_ref.fast.kernels.cuda import adamw_scalars
from vca_ref.ops import activations, diff_combine, modulate, rmsnorm, softmax

HARNESS = Path(__file__).with_name("kernel_harness.cpp")
DTYPES = [np.float32, np.float64]
SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
CFLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Wdouble-promotion",
          "-Wfloat-conversion", "-Werror", "-shared", "-fPIC", "-Wl,-z,defs"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The harness library, built once per test module in a pytest temporary directory."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: the CPU check of the .cuh math needs a C++ compiler")
    out = tmp_path_factory.mktemp("vca_kernel_harness")
    src = out / "harness.cpp"
    src.write_text(cuh_text(*CUH_FILES) + HARNESS.read_text())
    so = out / "libvca_harness.so"
    res = subprocess.run([gxx, *CFLAGS, str(src), "-o", str(so), "-lm"],
                         capture_output=True, text=True)
    if res.returncode != 0:                        # a build error is a failure, never a skip
        pytest.fail(f"g++ could not build the kernel harness:\n{res.stderr}")
    return ctypes.CDLL(str(so))


def call(lib, name, dtype, *args):
    """Call ``name_f32``/``name_f64``: arrays go as pointers, np.int32 as int, other ints as
    long long, floats and 0-d arrays as T (float or double)."""
    fn = getattr(lib, f"{name}_{SUFFIX[np.dtype(dtype)]}")
    ctype = ctypes.c_float if np.dtype(dtype) == np.float32 else ctypes.c_double
    conv = []
    for a in args:
        if isinstance(a, np.ndarray) and a.ndim > 0:
            assert a.dtype == dtype and a.flags.c_contiguous, (name, a.dtype, a.flags)
            conv.append(a.ctypes.data_as(ctypes.c_void_p))
        elif isinstance(a, np.int32):
            conv.append(ctypes.c_int(int(a)))
        elif isinstance(a, (int, np.integer)):
            conv.append(ctypes.c_longlong(int(a)))
        else:
            conv.append(ctype(float(a)))
    fn.restype = None
    fn(*conv)


def assert_within(got, ref, scale, n_eps, what):
    """``|got - ref| <= n_eps * eps * scale`` elementwise, with a per-element report on failure."""
    eps = np.finfo(ref.dtype).eps
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = n_eps * eps * np.asarray(scale, dtype=np.float64)
    bad = err > bound
    worst = float(np.max(err / np.maximum(eps * scale, np.finfo(np.float64).tiny)))
    assert not bad.any(), (f"{what} [{ref.dtype}]: {int(bad.sum())}/{bad.size} elements beyond "
                           f"{n_eps} eps * scale; worst {worst:.2f} eps * scale")


def sample(rng, shape, dtype, spread=3.0):
    """Normal values clipped to +-8, so no result is subnormal (the GPU flushes those)."""
    return np.clip(rng.normal(scale=spread, size=shape), -8.0, 8.0).astype(dtype)


# ----------------------------------------------------------------------------- the constants
def test_constants_match_python_exactly(lib):
    lib.vca_constant.restype = ctypes.c_double
    lib.vca_constant.argtypes = [ctypes.c_int]
    expected = [activations.SQRT_2_OVER_PI, activations.INV_SQRT_2, activations.INV_SQRT_2PI,
                activations.GELU_TANH_C]
    assert [lib.vca_constant(i) for i in range(4)] == expected


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_numpy(lib, dtype, approximate):
    rng = np.random.default_rng(1)
    x = np.concatenate([sample(rng, 20000, dtype), np.linspace(-8, 8, 4001, dtype=dtype)])
    dy = sample(rng, x.shape, dtype, spread=1.0)
    kind = "erf" if approximate == "none" else "tanh"
    y, dx = np.empty_like(x), np.empty_like(x)
    call(lib, f"gelu_{kind}_forward", dtype, x, y, x.size)
    call(lib, f"gelu_{kind}_backward", dtype, dy, x, dx, x.size)
    y_ref, cache = activations.gelu_forward(x, approximate)
    dx_ref = activations.gelu_backward(dy, cache)
    # y = x * F(x), F = (1 + erf)/2 or (1 + tanh)/2 in [0, 1]: libm vs NumPy/SciPy differ by
    # ~1 ulp in F, so |dy| <= |x| (1 ulp + 2 roundings).  Measured worst: 1.75 eps |x|.
    assert_within(y, y_ref, np.abs(x), 4, f"gelu({approximate}) forward")
    # dx = dy * (F + x F'), F' carries x^2 (erf: exp(-x^2/2); tanh: 1 + 3c x^2): the same ulp
    # differences scaled by |dy| (1 + x^2).  Measured worst: 1.36 eps |dy| (1 + x^2).
    assert_within(dx, dx_ref, np.abs(dy) * (1.0 + x.astype(np.float64) ** 2), 4,
                  f"gelu({approximate}) backward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_matches_numpy(lib, dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([sample(rng, 20000, dtype), np.linspace(-8, 8, 4001, dtype=dtype)])
    dy = sample(rng, x.shape, dtype, spread=1.0)
    y, s, dx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    call(lib, "silu_forward", dtype, x, y, s, x.size)
    y_ref, cache = activations.silu_forward(x)
    # s = (1 + tanh(x/2))/2 in (0, 1): one libm-vs-NumPy tanh ulp plus roundings (measured
    # worst 1.0 eps); y = x * s inherits it times |x| (measured worst 1.48 eps |x|).
    assert_within(s, cache.s, np.ones_like(x), 2, "sigmoid")
    assert_within(y, y_ref, np.abs(x), 4, "silu forward")
    # No transcendental in the backward (s comes from the cache): bit for bit.
    call(lib, "silu_backward", dtype, dy, x, cache.s, dx, x.size)
    np.testing.assert_array_equal(dx, activations.silu_backward(dy, cache))


# ----------------------------------------------------------------------------- combine / modulate
@pytest.mark.parametrize("dtype", DTYPES)
def test_diff_combine_is_bitwise_numpy(lib, dtype):
    rng = np.random.default_rng(3)
    a, b, dz = (sample(rng, (2, 3, 5, 8), dtype) for _ in range(3))
    lam = np.asarray(0.3717, dtype=dtype)                 # a 0-d array, as lambda_forward gives
    z, db = np.empty_like(a), np.empty_like(a)
    call(lib, "diff_combine_forward", dtype, a, b, lam, z, a.size)
    call(lib, "diff_combine_backward_b", dtype, dz, lam, db, a.size)
    z_ref, cache = diff_combine.diff_combine_forward(a, b, lam)
    np.testing.assert_array_equal(z, z_ref)
    np.testing.assert_array_equal(db, diff_combine.diff_combine_backward(dz, cache)[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_modulate_is_bitwise_numpy(lib, dtype):
    rng = np.random.default_rng(4)
    B, N, C = 2, 7, 12
    x, dy = sample(rng, (B, N, C), dtype), sample(rng, (B, N, C), dtype)
    shift, scale = sample(rng, (B, C), dtype, 0.5), sample(rng, (B, C), dtype, 0.5)
    y, dx = np.empty_like(x), np.empty_like(x)
    call(lib, "modulate_forward", dtype, x, shift, scale, y, B, N, C)
    call(lib, "modulate_backward_x", dtype, dy, scale, dx, B, N, C)
    y_ref, cache = modulate.modulate_forward(x, shift, scale)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, modulate.modulate_backward(dy, cache)[0])


# ----------------------------------------------------------------------------- row-wise
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K", [1, 7, 98, 300])
def test_softmax_backward_row(lib, dtype, K):
    rng = np.random.default_rng(5 + K)
    y, _ = softmax.softmax_forward(sample(rng, (3, 4, K), dtype))
    dy = sample(rng, y.shape, dtype, spread=1.0)
    dx = np.empty_like(y)
    call(lib, "softmax_backward", dtype, dy, y, dx, y.size // K, np.int32(K))
    dx_ref = softmax.softmax_backward(dy, softmax.SoftmaxCache(y=y))
    # rowdot = sum_k dy_k y_k: serial vs pairwise order, each within (K-1) eps/2 sum|dy y|, then
    # one subtraction and one product.  Bound: eps y (|dy| + |rowdot| + K sum|dy y|).
    t = np.abs(dy.astype(np.float64) * y)
    rowdot = np.abs((dy.astype(np.float64) * y).sum(-1, keepdims=True))
    scale = y * (np.abs(dy) + rowdot + K * t.sum(-1, keepdims=True))
    assert_within(dx, dx_ref, scale, 1, f"softmax backward K={K}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 24, 64, 257])
def test_rmsnorm_rows(lib, dtype, d):
    rng = np.random.default_rng(6 + d)
    z, dy = sample(rng, (2, 3, 5, d), dtype), sample(rng, (2, 3, 5, d), dtype)
    w = sample(rng, (d,), dtype, spread=1.0)
    rows = z.size // d
    y, zhat, rstd = np.empty_like(z), np.empty_like(z), np.empty(z.shape[:-1] + (1,), dtype)
    call(lib, "rmsnorm_forward", dtype, z, w, y, zhat, rstd, rows, np.int32(d), 1e-5)
    y_ref, cache = rmsnorm.rmsnorm_forward(z, w, 1e-5)
    # sum z^2 (positive terms): serial vs pairwise differ by <= d eps relative; sqrt halves it,
    # then /d, +eps, sqrt, 1/x round once each: rstd within (d/2 + 2) eps relative, and
    # zhat = z rstd, y = zhat w one more rounding each.
    assert_within(rstd, cache.rstd, np.abs(cache.rstd), d / 2 + 2, "rmsnorm rstd")
    assert_within(zhat, cache.zhat, np.abs(cache.zhat), d / 2 + 3, "rmsnorm zhat")
    assert_within(y, y_ref, np.abs(y_ref), d / 2 + 3, "rmsnorm y")

    dz = np.empty_like(z)
    call(lib, "rmsnorm_backward", dtype, dy, cache.zhat, w, cache.rstd, dz, rows, np.int32(d))
    dz_ref, _ = rmsnorm.rmsnorm_backward(dy, cache)
    # mean(g zhat) = sum / d: the two sums differ by <= d eps sum|g zhat|, so the mean by
    # eps sum|g zhat|; then g - zhat mean and * rstd round.  Bound:
    # eps rstd (|g| + |zhat| |mean| + |zhat| sum|g zhat|), with g = dy w.
    g = dy.astype(np.float64) * w
    gz = g * cache.zhat
    scale = cache.rstd * (np.abs(g) + np.abs(cache.zhat) * np.abs(gz.mean(-1, keepdims=True))
                          + np.abs(cache.zhat) * np.abs(gz).sum(-1, keepdims=True))
    assert_within(dz, dz_ref, scale, 2, "rmsnorm backward dz")


# ----------------------------------------------------------------------------- AdamW
def run_harness_adamw(lib, dtype, p0, grads, hp):
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        scalars = adamw_scalars(hp["lr"], *hp["betas"], hp["eps"], hp["weight_decay"], t)
        call(lib, "adamw_update", dtype, p, m, v, g, p.size, *scalars)
    return p, m, v


ADAMW_CASES = [dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
               dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hp", ADAMW_CASES)
def test_adamw_is_bitwise_the_numpy_optimiser(lib, dtype, hp):
    optim = pytest.importorskip("vca_ref.train.optim", reason="vca_ref.train.optim not present")
    from vca_ref.nn.module import Module

    rng = np.random.default_rng(7)
    p0 = sample(rng, (6, 5), dtype, spread=1.0)
    grads = [sample(rng, p0.shape, dtype, spread=1.0) for _ in range(5)]
    p, m, v = run_harness_adamw(lib, dtype, p0, grads, hp)

    mod = Module(dtype)
    mod.params = {"w": p0.copy()}
    opt = optim.AdamW(mod, **hp)
    for g in grads:
        mod.grads = {"w": g}
        opt.step()
    # Same operations in the same order, sqrt and division correctly rounded: bit for bit.
    np.testing.assert_array_equal(p, mod.params["w"])
    np.testing.assert_array_equal(m, opt.state["exp_avg"]["w"])
    np.testing.assert_array_equal(v, opt.state["exp_avg_sq"]["w"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hp", ADAMW_CASES)
def test_adamw_matches_torch(lib, dtype, hp):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    p0 = sample(rng, (6, 5), dtype, spread=1.0)
    grads = [sample(rng, p0.shape, dtype, spread=1.0) for _ in range(5)]
    p, m, v = run_harness_adamw(lib, dtype, p0, grads, hp)

    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.AdamW([tp], foreach=False, **hp)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
    st = opt.state[tp]
    # torch rounds some operations in another order or fused (lerp, addcmul, addcdiv), so each
    # step may differ by a few ulp of the terms involved.  Scales: m is an average of signed
    # gradients (it can cancel), so its scale is the same average of |g|; v sums positive terms,
    # so |v|; p moves by at most lr/(1 - b1^t)-ish per step, so |p0| + 5 lr / (1 - b1).
    b1 = hp["betas"][0]
    m_abs = np.zeros(p0.shape)
    for g in grads:
        m_abs = b1 * m_abs + (1.0 - b1) * np.abs(g)
    assert_within(m, st["exp_avg"].numpy(), m_abs, 4, "adamw m")
    assert_within(v, st["exp_avg_sq"].numpy(), np.abs(st["exp_avg_sq"].numpy()), 4, "adamw v")
    assert_within(p, tp.detach().numpy(), np.abs(p0) + 5 * hp["lr"] / (1.0 - b1), 4, "adamw p")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_optimiser_hook_runs_the_adamw_math(lib, dtype, monkeypatch):
    """The optimiser's kernel override, driven on the CPU: ``kernels.applies`` is forced true and
    the CUDA twin ``kernels.cuda.adamw_update`` is replaced by the g++ build of the same adamw.cuh;
    the dispatch table holds the registry's kernel entry for ``adamw_update`` alone.
    The optimiser through the kernel must equal the reference lines (every override off) bit for
    bit, which holds only if the registry hands the twin (p, g, m, v, lr, beta1, beta2, eps,
    weight_decay, step) in that order, with the per-parameter weight decay (0 for the bias under
    ``default_no_decay``)."""
    from vca_ref.fast import registry
    from vca_ref.fast.kernels import cuda as kcuda
    from vca_ref.nn.module import Module
    from vca_ref.train import optim
    from vca_ref.train.optim import AdamW, default_no_decay

    hp = dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.2)   # all distinguishable
    rng = np.random.default_rng(11)
    params0 = {"weight": sample(rng, (6, 5), dtype, 1.0), "bias": sample(rng, (5,), dtype, 1.0)}
    grads = [{k: sample(rng, v.shape, dtype, 1.0) for k, v in params0.items()} for _ in range(4)]

    def run():
        mod = Module(dtype)
        mod.params = {k: v.copy() for k, v in params0.items()}
        opt = AdamW(mod, no_decay=default_no_decay, **hp)
        for g in grads:
            mod.grads = g
            opt.step()
        return mod.params, opt.state

    with fast.enabled(False):
        ref_params, ref_state = run()                 # NumPy arrays: the reference lines
    calls = []

    def twin(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        calls.append((lr, beta1, beta2, eps, weight_decay, step))
        call(lib, "adamw_update", dtype, p, m, v, g, p.size,
             *adamw_scalars(lr, beta1, beta2, eps, weight_decay, step))

    monkeypatch.setattr(kernels, "applies", lambda *arrays: True)
    # the registry's kernel entry alone (its CPU twin would take these NumPy arrays first)
    monkeypatch.setattr(fast, "_twins", {fast.reference_name(o.reference): ((o.accepts, o.twin),)
                                         for o in registry.CUDA if o.reference is optim.adamw_update})
    monkeypatch.setattr(kcuda, "adamw_update", twin)
    with fast.enabled(True):
        params, state = run()
    assert calls[:2] == [(3e-2, 0.8, 0.95, 1e-3, 0.2, 1), (3e-2, 0.8, 0.95, 1e-3, 0.0, 1)]
    assert len(calls) == 2 * len(grads) and calls[-1][-1] == len(grads)
    for name in params0:
        np.testing.assert_array_equal(params[name], ref_params[name], err_msg=name)
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(state[key][name], ref_state[key][name], err_msg=key)


# ----------------------------------------------------------------------------- the switch
def test_switch_and_dispatch_on_cpu(monkeypatch):
    x = np.ones(3, np.float32)
    try:
        monkeypatch.delenv(kernels.ENV_VAR, raising=False)
        kernels.set_enabled(None)                        # read the environment again
        assert kernels.kernels_enabled()
        assert not kernels.applies(x)                    # NumPy arrays never take a kernel
        monkeypatch.setenv(kernels.ENV_VAR, "0")
        kernels.set_enabled(None)
        assert not kernels.kernels_enabled()
        with kernels.enabled(True):
            assert kernels.kernels_enabled()
        assert not kernels.kernels_enabled()
        with pytest.raises(TypeError):
            kernels.set_enabled("no")
    finally:
        monkeypatch.undo()                               # the environment as it was, read again
        kernels.set_enabled(None)
    assert "T gelu_erf_forward(T x)" in cuh_text("activations.cuh")
    assert cuh_text("softmax.cuh").index("VCA_COMMON_CUH") < cuh_text("softmax.cuh").index(
        "VCA_SOFTMAX_CUH")                               # dependencies come first
    assert math.isclose(adamw_scalars(0.1, 0.9, 0.99, 1e-8, 0.5, 1)[-1], 0.1 / (1 - 0.9))
