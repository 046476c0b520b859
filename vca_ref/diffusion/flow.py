"""Flow matching in the SiT style: linear interpolant, velocity prediction, Euler and Heun ODE samplers.

Convention (SiT's ``Linear`` path): time runs from NOISE at t = 0 to DATA at t = 1,

    x_t = t · x_1 + (1 − t) · ε,      x_1 = data, ε ~ N(0, I), t ~ U[0, 1)
    v*  = dx_t/dt = x_1 − ε                      (the velocity target)
    L   = mean( (v_θ(x_t, t, y) − v*)² ),   dL/dv_θ = 2 (v_θ − v*) / (B·C·H·W)

(The "rectified flow" papers use the mirror convention x_t = (1 − t) x_0 + t ε with t = 1 at noise;
it is the same path with t ↦ 1 − t and v ↦ −v.)  The model receives t as a float array (B,) in
[0, 1] (SiT feeds it to the DiT timestep embedder unchanged).  With ``learn_sigma`` the extra half
of the output gets no loss and is ignored by the samplers (as in :mod:`.ddpm`).

Sampling integrates dx/dt = v_θ(x, t, y) from t = 0 (x = ε) to t = 1 with N uniform steps h = 1/N:
    Euler:  x ← x + h v(x, t)                                              (error O(h))
    Heun:   x̃ = x + h v(x, t);   x ← x + h/2 (v(x, t) + v(x̃, t + h))        (error O(h²), 2 calls)
"""
from __future__ import annotations

import numpy as np

from vca_ref.backend import (device_of, generator_for, get_array_module, is_cuda_array,
                             require_device, to_device)
from vca_ref.diffusion.ddpm import gaussian_noise, output_mse_loss, split_output

FLOW_SAMPLERS = ("euler", "heun")


def _bcast_t(t, x):
    """t (B,) as (B, 1, 1, 1) in x's dtype on x's device (a host t is copied there)."""
    if is_cuda_array(t):
        require_device(x, "cuda", "x")
    else:
        t = to_device(np.asarray(t, dtype=np.float64), device_of(x))            # (B,)
    return t.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


def flow_interpolate(x1, noise, t):
    """``(x_t, v*)`` with x_t = t x_1 + (1 − t) ε and v* = x_1 − ε.  x1, noise (B, C, H, W), t (B,)."""
    if noise.shape != x1.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != data shape {tuple(x1.shape)}")
    tb = _bcast_t(t, x1)                                                    # (B, 1, 1, 1)
    return tb * x1 + (1.0 - tb) * noise, x1 - noise


def flow_training_inputs(x1, rng: np.random.Generator):
    """Draw t ~ U[0, 1) and ε on x1's device; return ``(x_t, t, v_target)``, t as (B,) in x's
    dtype (on the CPU the draws come from ``rng`` itself)."""
    g = generator_for(rng, device_of(x1))
    t = g.random(x1.shape[0]).astype(x1.dtype)                              # (B,)
    noise = gaussian_noise(g, x1.shape, x1.dtype, device_of(x1))            # (B, C, H, W)
    x_t, v = flow_interpolate(x1, noise, t)
    return x_t, t, v


def flow_matching_loss(model_output, v_target):
    """Velocity MSE: ``(loss, dloss/dmodel_output)``; a learn_sigma half gets zero gradient."""
    return output_mse_loss(model_output, v_target)


def _velocity(model, x, t: float, y):
    tt = get_array_module(x).full(x.shape[0], t, dtype=x.dtype)             # (B,) on x's device
    return split_output(model(x, tt, y), x).astype(x.dtype, copy=False)


def flow_sample(model, shape=None, y=None, rng: np.random.Generator | None = None, x0=None,
                num_steps: int = 50, method: str = "heun", dtype=np.float32, device: str = "cpu",
                t_start: float = 0.0, t_end: float = 1.0):
    """Integrate the velocity field from noise (t_start) to data (t_end) with Euler or Heun.

    ``x0`` is the starting noise (drawn from ``rng`` with ``shape`` when None).  Returns x(t_end).
    """
    if method not in FLOW_SAMPLERS:
        raise ValueError(f"method must be one of {FLOW_SAMPLERS}, got {method!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if x0 is None:
        if shape is None:
            raise ValueError("give either x0 (the starting noise) or shape")
        x0 = gaussian_noise(np.random.default_rng() if rng is None else rng, shape, dtype, device)
    x = x0                                                                  # (B, C, H, W)
    ts = np.linspace(t_start, t_end, num_steps + 1)                         # (N+1,) host floats
    for k in range(num_steps):
        t, h = float(ts[k]), float(ts[k + 1] - ts[k])
        v = _velocity(model, x, t, y)
        if method == "euler":
            x = x + h * v
        else:
            x_pred = x + h * v                                              # Euler predictor
            v_next = _velocity(model, x_pred, float(ts[k + 1]), y)
            x = x + (0.5 * h) * (v + v_next)                                # trapezoidal corrector
    return x


def euler_sample(model, shape=None, y=None, rng=None, x0=None, num_steps: int = 50, **kw):
    """:func:`flow_sample` with ``method="euler"`` (N model calls)."""
    return flow_sample(model, shape, y, rng, x0, num_steps, method="euler", **kw)


def heun_sample(model, shape=None, y=None, rng=None, x0=None, num_steps: int = 50, **kw):
    """:func:`flow_sample` with ``method="heun"`` (2N model calls)."""
    return flow_sample(model, shape, y, rng, x0, num_steps, method="heun", **kw)
