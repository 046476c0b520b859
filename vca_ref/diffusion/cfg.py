"""Classifier-free guidance (Ho & Salimans 2022) as used by DiT and SiT.

Training: each class label is replaced by the null class (index ``num_classes``: the extra row
of DiT's label-embedding table) with probability p (DiT: 0.1), see :func:`drop_labels`.

Sampling, guidance scale s (s = 1: plain conditional model; s = 0: unconditional):
    out = out_uncond + s · (out_cond − out_uncond)
applied to the whole output (ε or velocity; the variance half of a learn_sigma output is
combined too, but samplers here ignore it).  :func:`guided_model` wraps a model so that one
call evaluates the conditional and unconditional halves as ONE batch of 2B, and any sampler in
this package can use it unchanged.
"""
from __future__ import annotations

import math

import numpy as np

from vca_ref.backend import device_of, generator_for, get_array_module


def cfg_combine(cond, uncond, scale: float):
    """``uncond + scale · (cond − uncond)``; cond, uncond of one shape."""
    if cond.shape != uncond.shape:
        raise ValueError(f"cond shape {tuple(cond.shape)} != uncond shape {tuple(uncond.shape)}")
    return uncond + scale * (cond - uncond)


def drop_labels(y, rng: np.random.Generator, p: float, null_class: int):
    """Return a copy of the labels y (B,) with each one replaced by ``null_class`` with probability p
    (the mask is drawn on y's device; on the CPU from ``rng`` itself)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability must be in [0, 1], got {p}")
    drop = generator_for(rng, device_of(y)).random(y.shape[0]) < p          # (B,) bool, y's device
    xp = get_array_module(y)
    return xp.where(drop, null_class, y).astype(y.dtype)


def guided_model(model, scale: float, null_class: int):
    """Wrap ``model(x, t, y)`` into a classifier-free-guided callable with the same signature.

    The wrapper stacks (x, y) and (x, null) into one batch of 2B, calls the model once and
    combines the halves with :func:`cfg_combine`.  With ``scale == 1`` the model is returned as is.
    """
    if not math.isfinite(scale):
        raise ValueError(f"the guidance scale must be a finite number, got {scale}")
    if scale == 1.0:
        return model

    def guided(x, t, y):
        if y is None:
            raise ValueError("classifier-free guidance needs class labels y (B,)")
        xp, yp, tp = get_array_module(x), get_array_module(y), get_array_module(t)  # t, y: any device
        B = x.shape[0]
        x2 = xp.concatenate([x, x], axis=0)                                  # (2B, C, H, W)
        t2 = tp.concatenate([t, t])                                          # (2B,)
        y2 = yp.concatenate([y, yp.full_like(y, null_class)], axis=0)        # (2B,)
        out = model(x2, t2, y2)                                              # (2B, C', H, W)
        return cfg_combine(out[:B], out[B:], scale)

    return guided
