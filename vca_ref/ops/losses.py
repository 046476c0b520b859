"""Losses: cross-entropy (optional label smoothing) and mean-squared error.

Cross-entropy, logits z (B, K), integer labels y (B,), smoothing eps:
    p = softmax(z),  q = (1 - eps) onehot(y) + eps / K
    loss = mean_b( -sum_k q_k log p_k )          (PyTorch's CrossEntropyLoss semantics)
    dz   = (p - q) / B * dout

MSE, prediction a and target t of one shape:
    loss = mean((a - t)^2)        da = 2 (a - t) / numel * dout,   dt = -da
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vca_ref.backend import check, get_array_module


class CrossEntropyCache(NamedTuple):
    p: object       # (B, K) probabilities
    q: object       # (B, K) smoothed targets


def cross_entropy_forward(logits, labels, label_smoothing: float = 0.0):
    """Mean cross-entropy of logits (B, K) against int labels (B,). Returns a 0-d array."""
    xp = get_array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(logits.shape)}")
    B, K = logits.shape
    if labels.shape != (B,) or np.dtype(labels.dtype).kind not in "iu":
        raise TypeError(f"labels must be an integer array of shape ({B},), got "
                        f"{labels.dtype} {tuple(labels.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    check((labels.min() >= 0) & (labels.max() < K), lambda: ValueError(   # on a device: one sync a step
        f"labels must be in [0, {K}), got range [{int(labels.min())}, {int(labels.max())}]"))
    z = logits - logits.max(axis=1, keepdims=True)                  # (B, K)
    logp = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))         # (B, K) log-softmax
    q = xp.full((B, K), label_smoothing / K, dtype=logits.dtype)    # (B, K)
    q[xp.arange(B), labels] += 1.0 - label_smoothing
    loss = -(q * logp).sum() / B                                    # ()
    return loss, CrossEntropyCache(p=xp.exp(logp), q=q)


def cross_entropy_backward(dout, cache: CrossEntropyCache):
    """Return ``dlogits`` (B, K); ``dout`` is the upstream gradient of the loss (a scalar)."""
    B = cache.p.shape[0]
    # loss = -sum(q * log softmax(z)) / B
    return (cache.p - cache.q) * (dout / B)                          # (B, K)


class MSECache(NamedTuple):
    diff: object    # a - t


def mse_forward(pred, target):
    """``mean((pred - target)^2)`` as a 0-d array."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    diff = pred - target                                             # (...)
    return (diff * diff).mean(), MSECache(diff=diff)


def mse_backward(dout, cache: MSECache):
    """Return ``(dpred, dtarget)``; ``dout`` is the upstream gradient of the loss (a scalar)."""
    # loss = mean(diff^2),  diff = pred - target
    dpred = cache.diff * (2.0 * dout / cache.diff.size)            # (...)
    return dpred, -dpred
