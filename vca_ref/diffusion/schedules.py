"""Noise schedules of DDPM / improved DDPM, exactly as in the DiT reference code.

Discrete time t ∈ {0, …, T−1}; β_t is the variance added at step t, α_t = 1 − β_t and
ᾱ_t = ∏_{s ≤ t} α_s, so  q(x_t | x_0) = N( sqrt(ᾱ_t) x_0, (1 − ᾱ_t) I ).

linear (Ho et al. 2020, rescaled to any T as in improved DDPM / DiT):
    β_t = linspace(0.0001 · 1000/T, 0.02 · 1000/T, T)[t]

cosine (Nichol & Dhariwal 2021):
    f(u) = cos( (u + 0.008) / 1.008 · π/2 )²,   ᾱ(u) = f(u)/f(0)
    β_t = min( 1 − f((t+1)/T) / f(t/T),  0.999 )

Respacing (improved DDPM's ``SpacedDiffusion``): keeping only the steps S = {s_0 < s_1 < …}
of a T-step schedule gives a new chain with the SAME ᾱ at the kept steps,
    β'_k = 1 − ᾱ_{s_k} / ᾱ_{s_{k−1}}        (ᾱ_{s_{−1}} = 1)
and the model is still called with the original index s_k.

All arrays here are float64 NumPy (host); samplers cast per-step coefficients to the data dtype.
"""
from __future__ import annotations

import math

import numpy as np

BETA_SCHEDULES = ("linear", "cosine")


def linear_beta_schedule(num_timesteps: int) -> np.ndarray:
    """β (T,) of the linear schedule, scaled so that T = 1000 gives 1e-4 … 0.02."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)  # (T,)


def betas_for_alpha_bar(num_timesteps: int, alpha_bar, max_beta: float = 0.999) -> np.ndarray:
    """β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), max_beta) for a continuous ᾱ(u), u ∈ [0, 1]."""
    betas = [min(1.0 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
             for i in range(num_timesteps)]
    return np.array(betas, dtype=np.float64)                                         # (T,)


def cosine_alpha_bar(u: float) -> float:
    """f(u) = cos((u + 0.008)/1.008 · π/2)² (unnormalised; only ratios are used)."""
    return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2


def cosine_beta_schedule(num_timesteps: int) -> np.ndarray:
    """β (T,) of the cosine schedule (improved DDPM), clipped at 0.999."""
    return betas_for_alpha_bar(num_timesteps, cosine_alpha_bar)


def get_beta_schedule(name: str, num_timesteps: int) -> np.ndarray:
    """``name`` is ``"linear"`` or ``"cosine"``."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if name == "linear":
        return linear_beta_schedule(num_timesteps)
    if name == "cosine":
        return cosine_beta_schedule(num_timesteps)
    raise ValueError(f"unknown beta schedule {name!r}; expected one of {BETA_SCHEDULES}")


def space_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """``num_steps`` original indices spread evenly over [0, T−1], both ends kept (int64, ascending)."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
    if num_steps == 1:
        return np.array([num_timesteps - 1], dtype=np.int64)
    steps = np.round(np.linspace(0, num_timesteps - 1, num_steps)).astype(np.int64)   # (K,)
    return np.unique(steps)


def respaced_betas(alphas_cumprod: np.ndarray, use_timesteps: np.ndarray) -> np.ndarray:
    """β'_k = 1 − ᾱ_{s_k}/ᾱ_{s_{k−1}} for the kept steps s (ascending)."""
    ab = alphas_cumprod[use_timesteps]                                               # (K,)
    ab_prev = np.concatenate([[1.0], ab[:-1]])                                       # (K,)
    return 1.0 - ab / ab_prev
