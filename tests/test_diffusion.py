"""DDPM / DDIM / flow matching / CFG against closed forms on toy inputs (float64)."""
import math

import numpy as np
import pytest

from vca_ref.backend import to_device, to_numpy
from vca_ref.diffusion import (GaussianDiffusion, cfg_combine, ddim_sample_loop, drop_labels,
                               euler_sample, flow_interpolate, flow_matching_loss, flow_sample,
                               flow_training_inputs, get_beta_schedule, guided_model, heun_sample,
                               space_timesteps)
from vca_ref.diffusion.schedules import cosine_alpha_bar


def rel_error(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


# --------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("T", [1000, 250])
def test_linear_schedule_closed_form(T):
    b = get_beta_schedule("linear", T)
    s = 1000 / T
    assert b.shape == (T,) and b.dtype == np.float64
    assert b[0] == pytest.approx(1e-4 * s) and b[-1] == pytest.approx(0.02 * s)
    np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) * s / (T - 1), rtol=1e-9)


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_schedule_closed_form(T):
    d = GaussianDiffusion(T, "cosine")
    f0 = cosine_alpha_bar(0.0)
    want = np.array([cosine_alpha_bar((t + 1) / T) / f0 for t in range(T)])   # ᾱ_t telescopes
    np.testing.assert_allclose(d.alphas_cumprod[:-1], want[:-1], rtol=1e-10)
    assert d.betas[-1] == pytest.approx(0.999)                                 # clipped last step
    assert np.all(d.betas <= 0.999) and np.all(np.diff(d.betas) > 0)
    with pytest.raises(ValueError, match="unknown beta schedule 'sigmoid'"):
        get_beta_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="needs T > 20"):
        GaussianDiffusion(10, "linear")


def test_derived_coefficients():
    d = GaussianDiffusion(100, "linear")
    a = 1 - d.betas
    np.testing.assert_allclose(d.alphas_cumprod, np.cumprod(a), rtol=1e-12)
    assert d.posterior_variance[0] == 0.0
    np.testing.assert_allclose(d.posterior_log_variance_clipped[0], np.log(d.posterior_variance[1]))
    # q(x_{t-1} | x_t, x0) by Gaussian conditioning: N(x_t; sqrt(α_t) x_{t-1}, β_t) N(x_{t-1}; sqrt(ᾱ_{t-1}) x0, 1-ᾱ_{t-1})
    for t in (1, 37, 99):
        prec = a[t] / d.betas[t] + 1 / (1 - d.alphas_cumprod_prev[t])
        assert d.posterior_variance[t] == pytest.approx(1 / prec, rel=1e-12)
        assert d.posterior_mean_coef2[t] == pytest.approx(math.sqrt(a[t]) / d.betas[t] / prec, rel=1e-12)
        assert d.posterior_mean_coef1[t] == pytest.approx(
            math.sqrt(d.alphas_cumprod_prev[t]) / (1 - d.alphas_cumprod_prev[t]) / prec, rel=1e-12)


def test_respacing_keeps_alpha_bar():
    d = GaussianDiffusion(1000, "cosine")
    use = space_timesteps(1000, 10)
    assert use[0] == 0 and use[-1] == 999 and len(use) == 10
    r = d.respace(10)
    np.testing.assert_array_equal(r.timestep_map, use)
    np.testing.assert_allclose(r.alphas_cumprod, d.alphas_cumprod[use], rtol=1e-8)
    np.testing.assert_allclose(d.respace(1000).betas, d.betas, rtol=1e-12)


# --------------------------------------------------------------------------- forward process
def test_q_sample_formula_and_statistics():
    d = GaussianDiffusion(1000, "linear")
    rng = np.random.default_rng(0)
    x0 = np.full((20000, 1, 2, 2), 1.5)
    t = np.full(20000, 300, dtype=np.int64)
    noise = rng.standard_normal(x0.shape)
    xt = d.q_sample(x0, t, noise)
    ab = d.alphas_cumprod[300]
    np.testing.assert_allclose(xt, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise, rtol=1e-12)
    assert xt.mean() == pytest.approx(math.sqrt(ab) * 1.5, abs=0.01)
    assert xt.var() == pytest.approx(1 - ab, rel=0.02)
    # per-sample t: each row uses its own ᾱ
    t2 = np.array([0, 999], dtype=np.int64)
    x2 = d.q_sample(np.ones((2, 1, 1, 1)), t2, np.zeros((2, 1, 1, 1)))
    np.testing.assert_allclose(x2.ravel(), np.sqrt(d.alphas_cumprod[[0, 999]]))
    with pytest.raises(ValueError, match=r"t must be in \[0, 1000\), got range \[-1, 0\]"):
        d.q_sample(np.ones((2, 1, 1, 1)), np.array([-1, 0]), np.zeros((2, 1, 1, 1)))
    with pytest.raises(ValueError, match="integer array of shape"):
        d.q_sample(np.ones((2, 1, 1, 1)), np.array([0.5, 0.5]), np.zeros((2, 1, 1, 1)))
    xt32, t32, n32 = d.training_inputs(np.ones((4, 1, 3, 3), np.float32), rng)
    assert xt32.dtype == np.float32 and t32.dtype == np.int64 and n32.shape == (4, 1, 3, 3)


@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("loss_fn", [GaussianDiffusion(100).loss, flow_matching_loss])
def test_loss_gradient_vs_finite_differences(learn_sigma, loss_fn):
    rng = np.random.default_rng(1)
    target = rng.standard_normal((2, 3, 4, 4))
    out = rng.standard_normal((2, 6 if learn_sigma else 3, 4, 4))
    loss, dout = loss_fn(out, target)
    assert dout.shape == out.shape
    assert float(loss) == pytest.approx(np.mean((out[:, :3] - target) ** 2), rel=1e-13)
    h = 1e-6
    num = np.zeros_like(out)
    for idx in np.ndindex(out.shape):                                   # full numerical gradient
        e = np.zeros_like(out); e[idx] = h
        num[idx] = (float(loss_fn(out + e, target)[0]) - float(loss_fn(out - e, target)[0])) / (2 * h)
    assert rel_error(num, dout) < 1e-6
    if learn_sigma:
        assert np.all(dout[:, 3:] == 0)
    with pytest.raises(ValueError, match="expected"):
        loss_fn(out[:, :2], target)


# --------------------------------------------------------------------------- samplers
def oracle_eps(d, x0):
    """The exact ε for a known x0: ε = (x_t − sqrt(ᾱ_t) x0) / sqrt(1 − ᾱ_t), t = ORIGINAL index."""
    calls = []

    def model(x, t, y):
        calls.append(t.copy())
        ab = d.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
    return model, calls


def gaussian_data_eps(d, mu, s):
    """Bayes-optimal ε for data x0 ~ N(mu, s²) (per pixel)."""
    def model(x, t, y):
        ab = d.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return np.sqrt(1 - ab) * (x - np.sqrt(ab) * mu) / (ab * s * s + 1 - ab)
    return model


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [None, 25])
def test_oracle_model_recovers_x0(schedule, steps):
    d = GaussianDiffusion(200, schedule)
    x0 = np.random.default_rng(2).standard_normal((3, 1, 4, 4))
    for eta in (0.0, 1.0):
        m, calls = oracle_eps(d, x0)
        out = ddim_sample_loop(d, m, x0.shape, rng=np.random.default_rng(3), num_steps=steps,
                               eta=eta, dtype=np.float64)
        np.testing.assert_allclose(out, x0, atol=1e-8)
        assert len(calls) == (steps or 200) and calls[0][0] == 199 and calls[-1][0] == 0
    m, _ = oracle_eps(d, x0)
    out = d.p_sample_loop(m, x0.shape, rng=np.random.default_rng(3), num_steps=steps, dtype=np.float64)
    np.testing.assert_allclose(out, x0, atol=1e-8)


def test_ddim_eta0_is_deterministic_and_eta1_is_not():
    d = GaussianDiffusion(100)
    model = gaussian_data_eps(d, 0.3, 0.5)
    xT = np.random.default_rng(0).standard_normal((4, 1, 2, 2))
    a = ddim_sample_loop(d, model, None, rng=np.random.default_rng(1), x_T=xT, num_steps=20)
    b = ddim_sample_loop(d, model, None, rng=np.random.default_rng(2), x_T=xT, num_steps=20)
    np.testing.assert_array_equal(a, b)
    c = ddim_sample_loop(d, model, None, rng=np.random.default_rng(2), x_T=xT, num_steps=20, eta=1.0)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samplers_reach_the_data_distribution(sampler):
    """With the exact ε of Gaussian data N(mu, s²), samples must have mean mu and std s."""
    mu, s = 0.7, 0.4
    d = GaussianDiffusion(1000, "linear")
    model = gaussian_data_eps(d, mu, s)
    shape = (2000, 1, 2, 2)
    if sampler == "ddim":
        x = ddim_sample_loop(d, model, shape, rng=np.random.default_rng(5), num_steps=100, dtype=np.float64)
    else:
        # the fixed "small" variance β̃ under-disperses by O(1/steps) for non-degenerate data: use all 1000
        x = d.p_sample_loop(model, shape, rng=np.random.default_rng(5), dtype=np.float64)
    assert x.mean() == pytest.approx(mu, abs=0.015)
    assert x.std() == pytest.approx(s, rel=0.03)


def test_ddim_eta1_is_the_ancestral_sampler():
    d = GaussianDiffusion(1000, "cosine")
    model = gaussian_data_eps(d, 0.2, 0.6)
    a = ddim_sample_loop(d, model, (50, 1, 2, 2), rng=np.random.default_rng(4), num_steps=40, eta=1.0,
                         dtype=np.float64)
    b = d.p_sample_loop(model, (50, 1, 2, 2), rng=np.random.default_rng(4), num_steps=40, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_sampler_dtype_and_learn_sigma_output():
    d = GaussianDiffusion(50)
    x0 = np.zeros((2, 1, 3, 3), np.float32)
    m, _ = oracle_eps(d, x0)
    two = lambda x, t, y: np.concatenate([m(x, t, y), np.full_like(x, 9.0)], axis=1)  # (B, 2C, H, W)
    out = ddim_sample_loop(d, two, x0.shape, rng=np.random.default_rng(0), num_steps=10)
    assert out.dtype == np.float32 and np.abs(out).max() < 1e-4
    with pytest.raises(ValueError, match="variance must be one of"):
        d.p_sample_loop(m, x0.shape, variance="medium")


# --------------------------------------------------------------------------- flow matching
def test_flow_interpolant_convention():
    rng = np.random.default_rng(0)
    x1, eps = rng.standard_normal((3, 1, 2, 2)), rng.standard_normal((3, 1, 2, 2))
    xt, v = flow_interpolate(x1, eps, np.array([0.0, 1.0, 0.25]))
    np.testing.assert_allclose(xt[0], eps[0])                             # noise at t = 0
    np.testing.assert_allclose(xt[1], x1[1])                              # data at t = 1
    np.testing.assert_allclose(xt[2], 0.25 * x1[2] + 0.75 * eps[2])
    np.testing.assert_allclose(v, x1 - eps)
    t = np.full(3, 0.4); dt = 1e-6                                        # v is dx_t/dt
    fd = (flow_interpolate(x1, eps, t + dt)[0] - flow_interpolate(x1, eps, t - dt)[0]) / (2 * dt)
    np.testing.assert_allclose(fd, v, rtol=1e-6)
    xt, t, v = flow_training_inputs(x1.astype(np.float32), rng)
    assert xt.dtype == np.float32 and t.shape == (3,) and np.all((t >= 0) & (t < 1))


def linear_field(a, b):
    """v(x, t) = a x + b t, solution x(1) = e^a (x0 + b/a²) − b/a − b/a²."""
    model = lambda x, t, y: a * x + b * t.reshape(-1, 1, 1, 1)
    exact = lambda x0: math.exp(a) * (x0 + b / a ** 2) - b / a - b / a ** 2
    return model, exact


def test_euler_and_heun_vs_closed_form():
    model, exact = linear_field(-0.8, 1.5)
    x0 = np.random.default_rng(0).standard_normal((4, 1, 2, 2))
    errs = {}
    for method in ("euler", "heun"):
        for n in (20, 40):
            out = flow_sample(model, x0=x0, num_steps=n, method=method)
            errs[method, n] = np.abs(out - exact(x0)).max()
    assert errs["heun", 20] < errs["euler", 20] / 20                     # Heun far more accurate
    assert 1.8 < errs["euler", 20] / errs["euler", 40] < 2.2              # first order
    assert 3.6 < errs["heun", 20] / errs["heun", 40] < 4.4                # second order
    np.testing.assert_allclose(heun_sample(model, x0=x0, num_steps=400), exact(x0), atol=1e-5)
    np.testing.assert_array_equal(euler_sample(model, x0=x0, num_steps=20),
                                  flow_sample(model, x0=x0, num_steps=20, method="euler"))


def test_flow_sampler_with_optimal_velocity_reaches_data():
    """Exact velocity of Gaussian data N(mu, s²) under x_t = t x1 + (1−t) ε."""
    mu, s = -0.5, 0.3

    def model(x, t, y):
        t = t.reshape(-1, 1, 1, 1)
        var = t * t * s * s + (1 - t) ** 2
        return mu + (t * s * s - (1 - t)) / var * (x - t * mu)
    x = heun_sample(model, (4000, 1, 1, 1), rng=np.random.default_rng(1), num_steps=50, dtype=np.float64)
    assert x.mean() == pytest.approx(mu, abs=0.015) and x.std() == pytest.approx(s, rel=0.03)


# --------------------------------------------------------------------------- classifier-free guidance
def test_cfg_combine_and_guided_model():
    c, u = np.array([2.0, 4.0]), np.array([1.0, 1.0])
    np.testing.assert_allclose(cfg_combine(c, u, 3.0), u + 3.0 * (c - u))
    np.testing.assert_allclose(cfg_combine(c, u, 1.0), c)
    np.testing.assert_allclose(cfg_combine(c, u, 0.0), u)
    seen = []

    def model(x, t, y):
        seen.append((x.shape[0], y.copy()))
        return x + y.reshape(-1, 1, 1, 1).astype(x.dtype)
    null = 10
    g = guided_model(model, 4.0, null)
    x = np.random.default_rng(0).standard_normal((3, 1, 2, 2))
    y = np.array([1, 5, 7])
    out = g(x, np.array([3, 3, 3]), y)
    assert len(seen) == 1 and seen[0][0] == 6                             # one batched call of 2B
    np.testing.assert_array_equal(seen[0][1], [1, 5, 7, null, null, null])
    np.testing.assert_allclose(out, x + null + 4.0 * (y - null).reshape(-1, 1, 1, 1))
    assert guided_model(model, 1.0, null) is model
    # guidance composes with the samplers unchanged
    d = GaussianDiffusion(50)
    x0 = np.zeros((1, 1, 2, 2))
    m, _ = oracle_eps(d, x0)
    out = ddim_sample_loop(d, guided_model(lambda x, t, y: m(x, t, y), 2.5, null), (3, 1, 2, 2), y=y,
                           rng=np.random.default_rng(0), num_steps=5, dtype=np.float64)
    np.testing.assert_allclose(out, np.zeros((3, 1, 2, 2)), atol=1e-8)  # cond = uncond: guidance is a no-op


def test_drop_labels():
    rng = np.random.default_rng(0)
    y = np.arange(10000) % 10
    np.testing.assert_array_equal(drop_labels(y, rng, 0.0, 10), y)
    assert np.all(drop_labels(y, rng, 1.0, 10) == 10)
    z = drop_labels(y, rng, 0.1, 10)
    assert z.dtype == y.dtype and abs(np.mean(z == 10) - 0.1) < 0.01
    assert np.all((z == 10) | (z == y))


def test_samplers_on_every_backend(backend):
    """One body for NumPy, the CuPy-strict stand-in and (when a GPU exists) CuPy: q_sample, DDIM
    and Heun agree with the CPU."""
    device = backend
    d = GaussianDiffusion(100, "cosine")
    model = gaussian_data_eps(d, 0.1, 0.5)
    xp_model = lambda x, t, y: to_device(model(to_numpy(x), to_numpy(t), y), device)  # a host oracle
    x0 = np.random.default_rng(0).standard_normal((2, 1, 2, 2))
    t = np.array([5, 80])
    ref = d.q_sample(x0, t, x0[::-1])
    np.testing.assert_allclose(to_numpy(d.q_sample(to_device(x0, device), t, to_device(x0[::-1], device))), ref)
    x_T = np.random.default_rng(1).standard_normal(x0.shape)     # one start: a device draws its own noise
    a = ddim_sample_loop(d, model, None, x_T=x_T, num_steps=10)
    b = ddim_sample_loop(d, xp_model, None, x_T=to_device(x_T, device), num_steps=10)
    np.testing.assert_allclose(to_numpy(b), a, rtol=1e-10)
    lin, _ = linear_field(0.5, 0.2)
    h = heun_sample(lambda x, t, y: lin(x, to_device(t, device), y), x0=to_device(x0, device), num_steps=5)
    np.testing.assert_allclose(to_numpy(h), heun_sample(lin, x0=x0, num_steps=5), rtol=1e-12)
