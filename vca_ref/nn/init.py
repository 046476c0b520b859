"""Parameter initialisers (NumPy generators; arrays are moved to a device afterwards)."""
from __future__ import annotations

import numpy as np


def trunc_normal(rng: np.random.Generator, shape, std: float = 0.02, dtype=np.float32) -> np.ndarray:
    """Normal(0, std^2) truncated to [-2 std, 2 std] (timm's ViT default)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * std).astype(dtype)


def normal(rng: np.random.Generator, shape, std: float = 1.0, dtype=np.float32) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(dtype)


def uniform(rng: np.random.Generator, shape, bound: float, dtype=np.float32) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def zeros(shape, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


def as_rng(seed_or_rng) -> np.random.Generator:
    """Accept a seed (int/None) or a Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)
