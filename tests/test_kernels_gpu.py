"""Kernel vs NumPy parity on a CUDA device, through the ops (CuPy arrays take the kernel path).

For each op with a kernel twin: the NumPy op on the host is the reference; the same op on CuPy
arrays runs (a) the kernel (checked with a spy on ``vca_ref.fast.kernels.cuda``) and (b) the plain
CuPy reference lines (``kernels.enabled(False)``); both must match NumPy.

Tolerances are those of tests/test_kernels_cpu.py (same scales, see there) with room for what a
GPU adds: CUDA's erff/expf/tanhf are within 2 ulp (CUDA C Programming Guide, "Mathematical
Functions"), and NVRTC contracts ``a * b + c`` into one FMA (one rounding instead of two: at
most 1 eps of the product term).  Reductions use the order-free bound ``K eps sum|terms|``.
Skipped, with the reason, where no CUDA device answers.
"""
from __future__ import annotations

import numpy as np
import pytest

from vca_ref import backend
from vca_ref.fast import kernels
from vca_ref.fast.kernels import cuda as kcuda
from vca_ref.ops import activations, diff_combine, modulate, rmsnorm, softmax

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.cuda_available(),
                                 reason=f"no CUDA device: {backend.describe()}")]

DTYPES = [np.float32, np.float64]


def gpu(*arrays):
    return [backend.to_device(a, "cuda") for a in arrays]


def assert_within(got, ref, scale, n_eps, what):
    """``|got - ref| <= n_eps * eps * scale`` elementwise (got may live on the GPU)."""
    got, ref = backend.to_numpy(got), np.asarray(ref)
    assert got.dtype == ref.dtype and got.shape == ref.shape, (what, got.dtype, got.shape)
    eps = np.finfo(ref.dtype).eps
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bad = err > n_eps * eps * np.asarray(scale, dtype=np.float64)
    assert not bad.any(), (f"{what} [{ref.dtype}]: {int(bad.sum())}/{bad.size} elements beyond "
                           f"{n_eps} eps * scale; worst error {float(err.max()):.3g}")


def sample(rng, shape, dtype, spread=3.0):
    """Normal values clipped to +-8, so no result is subnormal (-ftz flushes those)."""
    return np.clip(rng.normal(scale=spread, size=shape), -8.0, 8.0).astype(dtype)


@pytest.fixture
def spy(monkeypatch):
    """``spy("gelu_forward", ...)`` returns one list that records every call of those twins."""
    def install(*names):
        log = []
        for name in names:
            def wrapper(*args, _real=getattr(kcuda, name), _name=name, **kw):
                log.append(_name)
                return _real(*args, **kw)
            monkeypatch.setattr(kcuda, name, wrapper)
        return log
    return install


def both_paths(run, spy_log):
    """``run()`` on the GPU with the kernels (must hit the spy) and with the plain CuPy lines."""
    with kernels.enabled(True):
        fast = run()
    assert spy_log, "the op did not take the kernel path"
    n_calls = len(spy_log)
    with kernels.enabled(False):
        plain = run()
    assert len(spy_log) == n_calls, "the kernel ran although kernels were disabled"
    return fast, plain


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(spy, dtype, approximate):
    rng = np.random.default_rng(1)
    x = np.concatenate([sample(rng, 50000, dtype), np.linspace(-8, 8, 4001, dtype=dtype)])
    dy = sample(rng, x.shape, dtype, spread=1.0)
    y_ref, cache = activations.gelu_forward(x, approximate)
    dx_ref = activations.gelu_backward(dy, cache)
    xg, dyg = gpu(x, dy)
    log = spy("gelu_forward", "gelu_backward")

    def run():
        y, c = activations.gelu_forward(xg, approximate)
        return y, activations.gelu_backward(dyg, c)
    for (y, dx), path in zip(both_paths(run, log), ("kernel", "cupy")):
        assert_within(y, y_ref, np.abs(x), 8, f"gelu {approximate} forward, {path}")
        assert_within(dx, dx_ref, np.abs(dy) * (1.0 + x.astype(np.float64) ** 2), 8,
                      f"gelu {approximate} backward, {path}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu(spy, dtype):
    rng = np.random.default_rng(2)
    x, dy = sample(rng, (64, 999), dtype), sample(rng, (64, 999), dtype, spread=1.0)
    y_ref, cache = activations.silu_forward(x)
    dx_ref = activations.silu_backward(dy, cache)
    xg, dyg = gpu(x, dy)
    log = spy("silu_forward", "silu_backward")

    def run():
        y, c = activations.silu_forward(xg)
        return y, c.s, activations.silu_backward(dyg, c)
    for (y, s, dx), path in zip(both_paths(run, log), ("kernel", "cupy")):
        assert_within(s, cache.s, np.ones_like(x), 4, f"sigmoid, {path}")
        assert_within(y, y_ref, np.abs(x), 8, f"silu forward, {path}")
        # dy s (1 + x (1 - s)): s differs by a few eps; one FMA in 1 + x (1 - s)
        assert_within(dx, dx_ref, np.abs(dy) * (1.0 + np.abs(x)), 8, f"silu backward, {path}")


# ----------------------------------------------------------------------------- combine / modulate
@pytest.mark.parametrize("dtype", DTYPES)
def test_diff_combine(spy, dtype):
    rng = np.random.default_rng(3)
    a, b, dz = (sample(rng, (2, 3, 49, 64), dtype) for _ in range(3))
    lam = np.asarray(0.3717, dtype=dtype)
    z_ref, cache = diff_combine.diff_combine_forward(a, b, lam)
    _, db_ref, dlam_ref = diff_combine.diff_combine_backward(dz, cache)
    ag, bg, dzg, lamg = gpu(a, b, dz, lam)
    log = spy("diff_combine_forward", "diff_combine_backward")

    def run():
        z, c = diff_combine.diff_combine_forward(ag, bg, lamg)
        return (z, *diff_combine.diff_combine_backward(dzg, c))
    for (z, da, db, dlam), path in zip(both_paths(run, log), ("kernel", "cupy")):
        assert da is dzg
        # an FMA rounds once where NumPy rounds twice: <= 1.5 eps |lam b| + eps |a|
        assert_within(z, z_ref, np.abs(a) + np.abs(lam * b), 2, f"a - lam b, {path}")
        np.testing.assert_array_equal(backend.to_numpy(db), db_ref)    # one product: exact
        assert_within(dlam, dlam_ref, a.size * np.abs(dz * b).sum(), 1, f"dlam sum, {path}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_modulate(spy, dtype):
    rng = np.random.default_rng(4)
    B, N, C = 3, 257, 96
    x, dy = sample(rng, (B, N, C), dtype), sample(rng, (B, N, C), dtype)
    shift, scale = sample(rng, (B, C), dtype, 0.5), sample(rng, (B, C), dtype, 0.5)
    y_ref, cache = modulate.modulate_forward(x, shift, scale)
    dx_ref, dshift_ref, dscale_ref = modulate.modulate_backward(dy, cache)
    xg, dyg, shiftg, scaleg = gpu(x, dy, shift, scale)
    log = spy("modulate_forward", "modulate_backward")

    def run():
        y, c = modulate.modulate_forward(xg, shiftg, scaleg)
        return (y, *modulate.modulate_backward(dyg, c))
    for (y, dx, dshift, dscale), path in zip(both_paths(run, log), ("kernel", "cupy")):
        term = np.abs(x * (1.0 + scale[:, None, :]))
        assert_within(y, y_ref, term + np.abs(shift[:, None, :]), 2, f"modulate (FMA), {path}")
        np.testing.assert_array_equal(backend.to_numpy(dx), dx_ref)    # (1 + s) then *: exact
        assert_within(dshift, dshift_ref, N * np.abs(dy).sum(1), 1, f"dshift, {path}")
        assert_within(dscale, dscale_ref, N * np.abs(dy * x).sum(1), 1, f"dscale, {path}")


# ----------------------------------------------------------------------------- row-wise
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 98), (2, 16384), ((1 << 20) + 3, 2), (0, 5)])
def test_softmax_backward(spy, dtype, shape):
    rng = np.random.default_rng(5)
    y, _ = softmax.softmax_forward(sample(rng, shape, dtype))
    dy = sample(rng, shape[::-1], dtype, spread=1.0).T          # a non-contiguous view
    dx_ref = softmax.softmax_backward(dy, softmax.SoftmaxCache(y=y))
    yg, = gpu(y)
    dyg = backend.to_device(np.ascontiguousarray(dy.T), "cuda").T  # non-contiguous on the GPU too
    log = spy("softmax_backward")
    t = np.abs(dy.astype(np.float64) * y)
    rowdot = np.abs((dy.astype(np.float64) * y).sum(-1, keepdims=True))
    scale = y * (np.abs(dy) + rowdot + shape[-1] * t.sum(-1, keepdims=True))
    fast, plain = both_paths(lambda: softmax.softmax_backward(dyg, softmax.SoftmaxCache(y=yg)), log)
    for dx, path in ((fast, "kernel"), (plain, "cupy")):
        assert_within(dx, dx_ref, scale, 2, f"softmax backward {shape}, {path}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 24, 64, 1000])
def test_rmsnorm(spy, dtype, d):
    rng = np.random.default_rng(6 + d)
    z, dy = sample(rng, (2, 3, 65, d), dtype), sample(rng, (2, 3, 65, d), dtype)
    w = sample(rng, (d,), dtype, spread=1.0)
    y_ref, cache = rmsnorm.rmsnorm_forward(z, w, 1e-5)
    dz_ref, dw_ref = rmsnorm.rmsnorm_backward(dy, cache)
    zg, dyg, wg = gpu(z, dy, w)
    log = spy("rmsnorm_forward", "rmsnorm_backward")

    def run():
        y, c = rmsnorm.rmsnorm_forward(zg, wg, 1e-5)
        return (y, c.zhat, c.rstd, *rmsnorm.rmsnorm_backward(dyg, c))
    g = dy.astype(np.float64) * w
    gz = g * cache.zhat
    dz_scale = cache.rstd * (np.abs(g) + np.abs(cache.zhat) * np.abs(gz.mean(-1, keepdims=True))
                             + np.abs(cache.zhat) * np.abs(gz).sum(-1, keepdims=True))
    rows = z.size // d
    for (y, zhat, rstd, dz, dw), path in zip(both_paths(run, log), ("kernel", "cupy")):
        assert_within(rstd, cache.rstd, np.abs(cache.rstd), d / 2 + 2, f"rstd, {path}")
        assert_within(zhat, cache.zhat, np.abs(cache.zhat), d / 2 + 3, f"zhat, {path}")
        assert_within(y, y_ref, np.abs(y_ref), d / 2 + 3, f"y, {path}")
        # dz and dw use the GPU's own zhat and rstd, within delta = (d/2 + 3) eps of NumPy's;
        # dz = rstd (g - zhat mean(g zhat)) moves by <= 3 delta dz_scale, plus its roundings
        assert_within(dz, dz_ref, dz_scale * (d / 2 + 3), 4, f"dz, {path}")
        # dw: a sum over `rows` terms (rows eps) of dy zhat (delta)
        assert_within(dw, dw_ref, (rows + d / 2 + 4) * np.abs(dy * cache.zhat).sum((0, 1, 2)), 1,
                      f"dw, {path}")


# ----------------------------------------------------------------------------- AdamW
@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_update_matches_the_numpy_optimiser(dtype):
    optim = pytest.importorskip("vca_ref.train.optim", reason="vca_ref.train.optim not present")
    from vca_ref.nn.module import Module
    hp = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    rng = np.random.default_rng(7)
    p0 = sample(rng, (64, 33), dtype, spread=1.0)
    grads = [sample(rng, p0.shape, dtype, spread=1.0) for _ in range(5)]
    mod = Module(dtype)
    mod.params = {"w": p0.copy()}
    opt = optim.AdamW(mod, **hp)
    pg, mg, vg = gpu(p0, np.zeros_like(p0), np.zeros_like(p0))
    for t, g in enumerate(grads, start=1):
        mod.grads = {"w": g}
        opt.step()
        kcuda.adamw_update(pg, gpu(g)[0], mg, vg, hp["lr"], *hp["betas"], hp["eps"],
                           hp["weight_decay"], t)
    b1 = hp["betas"][0]
    m_abs = np.zeros(p0.shape)
    for g in grads:
        m_abs = b1 * m_abs + (1.0 - b1) * np.abs(g)
    # Same operations as the NumPy lines; the GPU only fuses some a * b + c into one FMA
    # (<= 1.5 eps of the terms per step, carried over 5 steps: scales as in test_kernels_cpu).
    assert_within(mg, opt.state["exp_avg"]["w"], m_abs, 8, "adamw m")
    assert_within(vg, opt.state["exp_avg_sq"]["w"], np.abs(opt.state["exp_avg_sq"]["w"]), 8,
                  "adamw v")
    assert_within(pg, mod.params["w"], np.abs(p0) + 5 * hp["lr"] / (1.0 - b1), 8, "adamw p")
    with pytest.raises(ValueError):
        kcuda.adamw_update(pg, pg, mg, vg, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_optimiser_step_kernel_vs_cupy_vs_numpy(spy, dtype):
    """The optimiser's own ``step()`` on CuPy parameters, through the fused kernel at its hook
    (the spy must see it) and through the plain CuPy reference lines, both against the NumPy
    optimiser; a 2-D weight (weight decay on) and a bias (off under ``default_no_decay``)."""
    from vca_ref.nn.module import Module
    from vca_ref.train.optim import AdamW, default_no_decay
    hp = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    rng = np.random.default_rng(9)
    params0 = {"weight": sample(rng, (64, 33), dtype, spread=1.0),
               "bias": sample(rng, (33,), dtype, spread=1.0)}
    grads = [{k: sample(rng, v.shape, dtype, spread=1.0) for k, v in params0.items()}
             for _ in range(5)]

    def run(device):
        mod = Module(dtype)
        mod.params = {k: backend.to_device(v.copy(), device) for k, v in params0.items()}
        opt = AdamW(mod, no_decay=default_no_decay, **hp)
        for g in grads:
            mod.grads = {k: backend.to_device(v, device) for k, v in g.items()}
            opt.step()
        return mod.params, opt.state

    ref_params, ref_state = run("cpu")
    log = spy("adamw_update")
    fast, plain = both_paths(lambda: run("cuda"), log)
    assert len(log) == len(params0) * len(grads)             # every parameter, every step
    b1 = hp["betas"][0]
    for (params, state), path in ((fast, "kernel"), (plain, "cupy")):
        for name, p0 in params0.items():
            m_abs = np.zeros(p0.shape)
            for g in grads:
                m_abs = b1 * m_abs + (1.0 - b1) * np.abs(g[name])
            v_ref = ref_state["exp_avg_sq"][name]
            # scales as in test_adamw_update_matches_the_numpy_optimiser above
            assert_within(state["exp_avg"][name], ref_state["exp_avg"][name], m_abs, 8,
                          f"adamw m {name}, {path}")
            assert_within(state["exp_avg_sq"][name], v_ref, np.abs(v_ref), 8,
                          f"adamw v {name}, {path}")
            assert_within(params[name], ref_params[name],
                          np.abs(p0) + len(grads) * hp["lr"] / (1.0 - b1), 8,
                          f"adamw p {name}, {path}")
            assert backend.is_cuda_array(params[name]), f"{name} left the GPU ({path})"


# ----------------------------------------------------------------------------- plumbing
def test_kernels_are_memoised_per_device_and_dtype():
    k32 = kcuda.get_kernel("gelu_erf_forward", np.float32)
    assert kcuda.get_kernel("gelu_erf_forward", np.float32) is k32
    assert kcuda.get_kernel("gelu_erf_forward", np.float64) is not k32


def test_mixed_dtypes_take_the_reference_path(spy):
    log = spy("diff_combine_forward")
    a, b = gpu(np.ones(4, np.float32), np.ones(4, np.float64))
    z, _ = diff_combine.diff_combine_forward(a, b, 0.5)
    assert not log and z.dtype == np.float64                 # NumPy promotion, as on the host
