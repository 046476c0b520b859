"""The paper's ablation table at toy scale: every VCA variant and MHSA, same split, budget, seeds.

    variant             what changes (docs/spec.md, options table)       the paper's claim it tests
    full                nothing: VCA as specified                        the reference row
    stage1-only         differential="stage1" (Stage II plain softmax)   (iii) both stages beat one
    stage2-only         differential="stage2" (Stage I plain softmax)    (iii)
    no-pooling          pool_queries=False (tokens from E± alone)        (i) pooling gives global cues
    tied-embeddings     tied_embeddings=True (E⁺ = E⁻: no contrast)      (ii) dual embeddings matter
    no-dwconv           use_dwconv=False                                 the conv residual's share
    separate-softmax    stage2_softmax="separate" (two size-n softmaxes) the other reading of Stage II
    mhsa                attention="mhsa" (quadratic softmax attention)   the baseline

Every variant is trained with every seed (a grid of run folders, :mod:`vca_ref.experiments.grid`);
a seed fixes the split, the batches and every initial weight the variants share.  The output
folder gets ``table.md`` and ``results.json`` (per variant: mean ± std of the score over seeds,
the paired difference to full VCA with its 95 % t-interval and whether it is within noise,
parameters, MACs per image, measured training images/s) and ``variant.png`` (error bars).
"""
from __future__ import annotations

import dataclasses
import os

from vca_ref.experiments.grid import run_grid

VARIANTS = {
    "full": {},
    "stage1-only": {"differential": "stage1"},
    "stage2-only": {"differential": "stage2"},
    "no-pooling": {"pool_queries": False},
    "tied-embeddings": {"tied_embeddings": True},
    "no-dwconv": {"use_dwconv": False},
    "separate-softmax": {"stage2_softmax": "separate"},
    "mhsa": {"attention": "mhsa"},
}
REFERENCE = "full"
DESCRIPTIONS = {
    "full": "full VCA", "stage1-only": "Stage I only differential",
    "stage2-only": "Stage II only differential", "no-pooling": "embeddings without pooling",
    "tied-embeddings": "tied E⁺ = E⁻", "no-dwconv": "no depthwise conv",
    "separate-softmax": "separate Stage-II softmaxes", "mhsa": "MHSA baseline",
}


def parse_variants(text) -> list[str]:
    """``"full,mhsa"`` (or a list) -> names in the given order; unknown or repeated names fail."""
    names = [v.strip() for v in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names or len(set(names)) != len(names):
        what = f"unknown variant(s) {unknown}" if unknown else f"empty or repeated variants {names}"
        raise ValueError(f"--variants: {what}; expected some of {', '.join(VARIANTS)}")
    return names


def run_ablation(task, base_cfg, variants=tuple(VARIANTS), seeds=(0, 1, 2, 3, 4),
                 out_dir: str = os.path.join("runs", "ablate"), progress: bool = True) -> dict:
    """Train (or read back) every (variant, seed) cell; write and return the results.

    Args:
        task: :class:`~vca_ref.experiments.tasks.ViTTask` or ``DiTTask``.
        base_cfg: the run config of full VCA; each variant changes only its fields above.
        variants, seeds: the grid (full VCA is the reference of the paired differences; when it
            is not in ``variants`` there are none).
    Returns:
        the ``results.json`` dict: task, metric, seeds, variants, rows (see
        :func:`vca_ref.experiments.grid.summarise`, plus ``description``), cells, config.
    """
    variants = parse_variants(list(variants))
    return run_grid(task, dataclasses.replace(base_cfg, attention="vca"),
                    {v: VARIANTS[v] for v in variants}, seeds, out_dir, REFERENCE, "variant",
                    plot_ablation, progress, DESCRIPTIONS, variants=variants)


def plot_ablation(rows: list[dict], task, path: str) -> str:
    """Left: score per label (mean ± std, seeds as crosses). Right: paired difference, 95 % CI."""
    from vca_ref.experiments.plotting import new_figure, save_figure
    fig, axes = new_figure(11, 0.45 * len(rows) + 1.8, 1, 2)
    ys = list(range(len(rows)))[::-1]
    ax = axes[0][0]
    for y, r in zip(ys, rows):
        ax.errorbar([r["mean"]], [y], xerr=[r["std"]], fmt="o", color="C0", capsize=4)
        ax.plot(list(r["scores"].values()), [y] * len(r["scores"]), "x", color="0.5", ms=5)
    ax.set_yticks(ys, [r["label"] for r in rows])
    ax.set_xlabel(task.metric_title + " (mean ± std; × = one seed)")
    ax = axes[0][1]
    ref = next((r["label"] for r in rows if r["diff"] is None), "the reference")
    ax.axvline(0.0, color="0.3", lw=1)
    for y, r in zip(ys, rows):
        d = r["diff"]
        if d is not None:
            lo, hi = (d["low"], d["high"]) if d["low"] is not None else (d["mean"], d["mean"])
            ax.errorbar([d["mean"]], [y], xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="s",
                        color="C2" if d["within_noise"] else "C3", capsize=4)
    ax.set_yticks(ys, [r["label"] for r in rows])
    ax.set_xlabel(f"paired difference to {ref} (95 % CI; green: within noise)")
    return save_figure(fig, path)
