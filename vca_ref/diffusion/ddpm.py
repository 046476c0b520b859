"""DDPM: forward noising, the ε-prediction loss, and ancestral sampling (DiT / improved DDPM).

Shapes: x (B, C, H, W); t (B,) int64 in [0, T); model output (B, C, H, W), or (B, 2C, H, W) with
``learn_sigma`` (ε first, then the variance channels).

Forward process and training (ε-prediction):
    x_t  = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε,        ε ~ N(0, I),  t ~ U{0, …, T−1}
    L    = mean( (ε_θ(x_t, t, y) − ε)² )           over B·C·H·W elements
    dL/dε_θ = 2 (ε_θ − ε) / (B·C·H·W)

SIMPLIFICATION: with ``learn_sigma`` the variance half of the output gets NO loss here (DiT
trains it with the variational bound L_vlb); its gradient is zero and the samplers ignore it,
using a fixed variance instead.

Reverse step (ancestral), from the predicted clean image:
    x̂_0  = sqrt(1/ᾱ_t) x_t − sqrt(1/ᾱ_t − 1) ε_θ                   (optionally clipped)
    μ    = β_t sqrt(ᾱ_{t−1}) / (1 − ᾱ_t) · x̂_0 + (1 − ᾱ_{t−1}) sqrt(α_t) / (1 − ᾱ_t) · x_t
    x_{t−1} = μ + σ_t z  (z ~ N(0, I); no noise at t = 0)
    σ_t² = β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)     variance="small" (posterior; log clipped at t=0)
    σ_t² = β_t   (β̃_1 at t = 0)                     variance="large"

The model is any callable ``model(x, t, y) -> output`` with t the ORIGINAL step index, so a
respaced chain (fewer sampling steps, see :func:`~.schedules.respaced_betas`) needs no change
to the model.

Devices: with x on CUDA, every random number is drawn on the device (``backend.generator_for``:
a CuPy generator seeded by one draw of the host generator), t lives there too, and the
schedule tables are copied once and gathered there; a sampling step reads nothing back.
"""
from __future__ import annotations

import numpy as np

from vca_ref.backend import (device_of, generator_for, get_array_module, is_cuda_array,
                             require_device, to_device)
from vca_ref.ops.losses import mse_backward, mse_forward
from vca_ref.diffusion.schedules import get_beta_schedule, respaced_betas, space_timesteps

VARIANCES = ("small", "large")


def split_output(out, x):
    """The ε (or velocity) half of a model output: ``out`` itself (C channels) or ``out[:, :C]`` (2C)."""
    C = x.shape[1]
    if out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:] or out.shape[1] not in (C, 2 * C):
        raise ValueError(f"model output has shape {tuple(out.shape)}; expected ({x.shape[0]}, {C} or "
                         f"{2 * C}, {', '.join(map(str, x.shape[2:]))}) for input {tuple(x.shape)}")
    return out[:, :C]


def output_mse_loss(model_output, target):
    """``(loss, dloss/dmodel_output)`` of ``mean((out[:, :C] − target)²)``; the learn_sigma half gets 0.

    model_output (B, C or 2C, H, W), target (B, C, H, W) -> loss 0-d array, dout like model_output.
    """
    pred = split_output(model_output, target)                          # (B, C, H, W)
    loss, cache = mse_forward(pred, target)
    dpred, _ = mse_backward(1.0, cache)                                # 2 (pred − target) / numel
    if model_output.shape[1] == target.shape[1]:
        return loss, dpred
    xp = get_array_module(model_output)
    dout = xp.zeros_like(model_output)                                 # (B, 2C, H, W)
    dout[:, :target.shape[1]] = dpred                                  # variance half: no gradient
    return loss, dout


def _per_sample(coef: np.ndarray, t, x, tables: dict):
    """``coef[t]`` for the samples of x: a Python float for one step index t (an int) shared by
    the batch, else a (B, 1, 1, …) array of x's dtype on x's device.

    A host t (B,) is checked (integers in range) and its values copied; a device t (B,) is
    gathered from the device copy of ``coef`` (made once, kept in ``tables``) without a read:
    its range is then the caller's promise (the trainers draw it in range).
    """
    if isinstance(t, (int, np.integer)):
        if not 0 <= t < len(coef):
            raise ValueError(f"step index must be in [0, {len(coef)}), got {t}")
        return float(coef[t])
    if t.ndim != 1 or t.shape[0] != x.shape[0] or np.dtype(t.dtype).kind not in "iu":
        raise ValueError(f"t must be an integer array of shape ({x.shape[0]},), got {t.dtype} {t.shape}")
    shape = (-1,) + (1,) * (x.ndim - 1)
    if is_cuda_array(t):
        require_device(x, "cuda", "x")
        xp = get_array_module(t)
        key = (id(coef), np.dtype(x.dtype).str, xp.__name__)
        if key not in tables:
            tables[key] = xp.asarray(coef.astype(x.dtype))                       # (T,) one copy
        return tables[key][t].reshape(shape)                                     # (B, 1, 1, 1)
    if t.size and (t.min() < 0 or t.max() >= len(coef)):
        raise ValueError(f"t must be in [0, {len(coef)}), got range [{t.min()}, {t.max()}]")
    return to_device(coef[t].astype(x.dtype).reshape(shape), device_of(x))      # (B, 1, 1, 1)


def gaussian_noise(rng, shape, dtype, device: str = "cpu"):
    """N(0, I) drawn on ``device``: from ``rng`` (a NumPy generator) on the CPU; on CUDA from
    ``generator_for(rng, "cuda")``, or from ``rng`` itself when it is already a CuPy generator."""
    if isinstance(rng, np.random.Generator):
        rng = generator_for(rng, device)
    elif device == "cpu" or not hasattr(rng, "standard_normal"):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    return rng.standard_normal(shape).astype(dtype)


class GaussianDiffusion:
    """A discrete β schedule with its derived coefficients (float64, host)."""

    def __init__(self, num_timesteps: int = 1000, schedule: str = "linear", betas=None,
                 timestep_map=None):
        betas = get_beta_schedule(schedule, num_timesteps) if betas is None else np.asarray(betas, np.float64)
        if betas.ndim != 1 or not np.all((betas > 0) & (betas < 1)):
            hint = (f"; the linear schedule scales β_end = 0.02·1000/T, which needs T > 20 (got T = "
                    f"{num_timesteps})" if schedule == "linear" else "")
            raise ValueError(f"betas must be a 1-D array with values in (0, 1), got range "
                             f"[{betas.min():.4g}, {betas.max():.4g}]{hint}")
        self.schedule = schedule
        self.betas = betas                                                    # (T,)
        self.num_timesteps = T = len(betas)
        self.timestep_map = np.arange(T, dtype=np.int64) if timestep_map is None else \
            np.asarray(timestep_map, dtype=np.int64)                         # model index of each step
        alphas = 1.0 - betas
        ac = self.alphas_cumprod = np.cumprod(alphas)                         # ᾱ_t
        acp = self.alphas_cumprod_prev = np.append(1.0, ac[:-1])              # ᾱ_{t−1}
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1.0)
        self.posterior_variance = betas * (1.0 - acp) / (1.0 - ac)           # β̃_t (0 at t = 0)
        pv1 = self.posterior_variance[1] if T > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(pv1, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(acp) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - acp) * np.sqrt(alphas) / (1.0 - ac)
        self.large_log_variance = np.log(np.append(pv1, betas[1:]))
        self._tables: dict = {}                      # device copies of the tables above (by use)

    def _coef(self, coef: np.ndarray, t, x):
        return _per_sample(coef, t, x, self._tables)

    # ------------------------------------------------------------------ training
    def sample_timesteps(self, rng, batch: int):
        """t ~ U{0, …, T−1}, (B,) int64, from a NumPy or CuPy generator (on its device)."""
        return rng.integers(0, self.num_timesteps, size=batch, dtype=np.int64)

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε.  x0, noise (B, C, H, W), t (B,) -> (B, C, H, W)."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
        return (self._coef(self.sqrt_alphas_cumprod, t, x0) * x0
                + self._coef(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def training_inputs(self, x0, rng: np.random.Generator):
        """Draw t and ε on x0's device, return ``(x_t, t, noise)`` for one training step (noise
        is the target); on the CPU the draws come from ``rng`` itself."""
        g = generator_for(rng, device_of(x0))
        t = self.sample_timesteps(g, x0.shape[0])                            # (B,)
        noise = gaussian_noise(g, x0.shape, x0.dtype, device_of(x0))          # (B, C, H, W)
        return self.q_sample(x0, t, noise), t, noise

    def loss(self, model_output, noise):
        """ε-prediction MSE: ``(loss, dloss/dmodel_output)`` (see :func:`output_mse_loss`)."""
        return output_mse_loss(model_output, noise)

    # ------------------------------------------------------------------ reverse process
    def predict_x0(self, x_t, t, eps):
        """x̂_0 = sqrt(1/ᾱ_t) x_t − sqrt(1/ᾱ_t − 1) ε."""
        return (self._coef(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - self._coef(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def predict_eps(self, x_t, t, x0):
        """ε = (sqrt(1/ᾱ_t) x_t − x̂_0) / sqrt(1/ᾱ_t − 1)  (inverse of :meth:`predict_x0`)."""
        return ((self._coef(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0)
                / self._coef(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    def q_posterior_mean(self, x0, x_t, t):
        """μ̃(x_t, x_0) of q(x_{t−1} | x_t, x_0)."""
        return (self._coef(self.posterior_mean_coef1, t, x_t) * x0
                + self._coef(self.posterior_mean_coef2, t, x_t) * x_t)

    def respace(self, num_steps: int) -> "GaussianDiffusion":
        """The same process with ``num_steps`` evenly spaced steps (identity when num_steps = T)."""
        use = space_timesteps(self.num_timesteps, num_steps)                 # (K,) ascending
        return GaussianDiffusion(betas=respaced_betas(self.alphas_cumprod, use), schedule=self.schedule,
                                 timestep_map=self.timestep_map[use])

    def model_eps(self, model, x, i: int, y):
        """Call the model at chain step i (index t_model = timestep_map[i]) and return its ε half."""
        xp = get_array_module(x)
        t_model = xp.full(x.shape[0], int(self.timestep_map[i]), dtype=np.int64)  # (B,) on x's device
        return split_output(model(x, t_model, y), x).astype(x.dtype, copy=False)

    def predict_start(self, model, x, i: int, y, clip_range=None):
        """One model call at chain index ``i``: ``(i, x̂_0, ε̂)`` for the samplers.

        The step index i is shared by the whole batch (the coefficients are host scalars);
        x̂_0 clipped to ``clip_range`` when given, and ε̂ then recomputed from the clipped x̂_0
        so the two stay consistent (what DDIM needs).
        """
        xp = get_array_module(x)
        eps = self.model_eps(model, x, i, y)                                       # (B, C, H, W)
        x0 = self.predict_x0(x, i, eps)
        if clip_range is not None:
            x0 = xp.clip(x0, clip_range[0], clip_range[1])
            eps = self.predict_eps(x, i, x0)
        return i, x0, eps

    def p_sample_loop(self, model, shape, y=None, rng: np.random.Generator | None = None, x_T=None,
                      num_steps: int | None = None, variance: str = "small", clip_range=None,
                      dtype=np.float32, device: str = "cpu"):
        """Ancestral sampling from x_T ~ N(0, I) (or the given ``x_T``) down to x_0.

        ``num_steps`` < T samples a respaced chain; ``clip_range=(lo, hi)`` clips x̂_0.
        Returns x_0 with the shape, dtype and device of x_T.
        """
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
        chain = self if num_steps is None or num_steps == self.num_timesteps else self.respace(num_steps)
        logvar = chain.posterior_log_variance_clipped if variance == "small" else chain.large_log_variance
        device = device if x_T is None else device_of(x_T)
        rng = generator_for(np.random.default_rng() if rng is None else rng, device)
        x = gaussian_noise(rng, shape, dtype, device) if x_T is None else x_T      # (B, C, H, W)
        for i in reversed(range(chain.num_timesteps)):
            _, x0, _ = chain.predict_start(model, x, i, y, clip_range)             # (B, C, H, W)
            mean = chain.q_posterior_mean(x0, x, i)
            if i > 0:
                x = mean + float(np.exp(0.5 * logvar[i])) * gaussian_noise(rng, x.shape, x.dtype, device)
            else:
                x = mean                                                           # t = 0: no noise
        return x
