"""Seed statistics for the ablation and sweep tables: mean ± std and paired differences.

For one variant trained with seeds s = 1 … k, with metric values a_s (test accuracy, or a
generation score):

    mean  ā = (1/k) Σ_s a_s
    std   sd = sqrt( Σ_s (a_s − ā)² / (k − 1) )            (sample std, ddof = 1; 0 when k = 1)

Paired difference to a reference variant b trained with the SAME seeds (same split, same
initial shared weights, same batches), over the k seeds both have:

    δ_s   = a_s − b_s
    δ̄     = mean(δ),   se = sd(δ) / sqrt(k)
    95 %  interval  δ̄ ± t_{0.975, k−1} · se                 (Student t, k − 1 degrees of freedom)

Pairing removes what the seed does to both runs alike (the split, the batch order), so the
interval is usually much narrower than the two stds suggest.  A difference is "within noise"
when its interval covers 0; with one common seed there is no interval (``None``).
"""
from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def mean_std(values) -> tuple[float, float]:
    """``(mean, sample std)`` of a list of numbers; the std is 0.0 for a single value."""
    v = np.asarray(values, dtype=np.float64)                                # (k,)
    if v.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def t_quantile(dof: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t critical value t_{(1 + confidence)/2, dof}."""
    from scipy.stats import t
    return float(t.ppf(0.5 + confidence / 2.0, dof))


def paired_difference(values: dict, reference: dict, confidence: float = CONFIDENCE) -> dict:
    """Paired difference of ``values`` minus ``reference`` over the seeds both contain.

    Args:
        values, reference: ``{seed: metric}``.
    Returns:
        ``{"mean": δ̄, "low", "high": the interval (None with fewer than 2 common seeds),
        "n": common seeds, "within_noise": low <= 0 <= high (None without an interval),
        "confidence": confidence}``.
    """
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        raise ValueError("paired_difference: no seed in common")
    d = np.array([values[s] - reference[s] for s in seeds], dtype=np.float64)  # (k,)
    out = {"mean": float(d.mean()), "low": None, "high": None, "n": len(seeds),
           "within_noise": None, "confidence": confidence}
    if len(seeds) >= 2:
        half = t_quantile(len(seeds) - 1, confidence) * float(d.std(ddof=1)) / math.sqrt(len(seeds))
        out["low"], out["high"] = out["mean"] - half, out["mean"] + half
        out["within_noise"] = bool(out["low"] <= 0.0 <= out["high"])
    return out


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``"0.9640 ± 0.0031"``."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_difference(diff: dict | None, digits: int = 4) -> str:
    """``"+0.0120 [+0.0031, +0.0209]"``; the interval is left out when there is none."""
    if diff is None:
        return "—"
    text = f"{diff['mean']:+.{digits}f}"
    if diff["low"] is not None:
        text += f" [{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]"
    return text


def noise_verdict(diff: dict | None, higher_is_better: bool = True, reference: bool = False) -> str:
    """Words for the table: "reference", "within noise", "better", "worse", or why there is none."""
    if reference:
        return "reference"
    if diff is None:
        return "—"
    if diff["within_noise"] is None:
        return f"{diff['n']} seed: no interval"
    if diff["within_noise"]:
        return "within noise"
    return "better" if (diff["mean"] > 0) == higher_is_better else "worse"
