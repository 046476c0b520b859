"""DDIM sampling (Song et al. 2021) on a :class:`~.ddpm.GaussianDiffusion`, as in DiT's ``ddim_sample``.

For consecutive kept steps t > s (s = the previous step of the respaced chain, ᾱ_s = 1 after the
last one), with ε_θ = model(x_t, t, y):

    x̂_0 = sqrt(1/ᾱ_t) x_t − sqrt(1/ᾱ_t − 1) ε_θ          (clipped if asked; ε is then recomputed
    ε    = (sqrt(1/ᾱ_t) x_t − x̂_0) / sqrt(1/ᾱ_t − 1)       from the clipped x̂_0, as in DiT)
    σ    = η · sqrt( (1 − ᾱ_s)/(1 − ᾱ_t) ) · sqrt( 1 − ᾱ_t/ᾱ_s )
    x_s  = sqrt(ᾱ_s) x̂_0 + sqrt(1 − ᾱ_s − σ²) ε + σ z      (no noise at the last step)

η = 0 is the deterministic DDIM ODE sampler; η = 1 matches the ancestral DDPM step's variance
(β̃) on the same chain.  Shapes: x (B, C, H, W); the model is ``model(x, t, y) -> output``.
The coefficients are host scalars and the noise is drawn on x's device: a step reads nothing back.
"""
from __future__ import annotations

import math

import numpy as np

from vca_ref.backend import device_of, generator_for
from vca_ref.diffusion.ddpm import GaussianDiffusion, gaussian_noise


def ddim_sample_loop(diffusion: GaussianDiffusion, model, shape, y=None,
                     rng: np.random.Generator | None = None, x_T=None, num_steps: int | None = 50,
                     eta: float = 0.0, clip_range=None, dtype=np.float32, device: str = "cpu"):
    """DDIM from x_T ~ N(0, I) (or the given ``x_T``) over ``num_steps`` evenly spaced steps.

    ``num_steps=None`` uses all T steps.  Returns x_0 with the shape, dtype and device of x_T.
    """
    if eta < 0.0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    T = diffusion.num_timesteps
    chain = diffusion if num_steps is None or num_steps == T else diffusion.respace(min(num_steps, T))
    device = device if x_T is None else device_of(x_T)
    rng = generator_for(np.random.default_rng() if rng is None else rng, device)     # draws on device
    x = gaussian_noise(rng, shape, dtype, device) if x_T is None else x_T            # (B, C, H, W)
    for i in reversed(range(chain.num_timesteps)):
        _, x0, eps = chain.predict_start(model, x, i, y, clip_range)                # (B, C, H, W)
        ab, ab_prev = chain.alphas_cumprod[i], chain.alphas_cumprod_prev[i]
        sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab)) * math.sqrt(1.0 - ab / ab_prev)
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - sigma ** 2, 0.0)) * eps
        if i > 0 and sigma > 0.0:
            x = x + sigma * gaussian_noise(rng, x.shape, x.dtype, device)
    return x
