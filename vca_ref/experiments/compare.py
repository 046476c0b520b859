"""Side-by-side comparison of VCA and MHSA under the same seed and budget.

``compare_vit`` trains the two TinyViT variants with one configuration (only ``attention``
differs), then writes ``table.md``, ``results.json`` and ``curves.png`` (training loss and test
accuracy per epoch) into the output folder.  ``compare_seeds`` repeats the pair for several seeds
(a grid of run folders, :mod:`vca_ref.experiments.grid`) and reports mean ± std over seeds and
the paired difference VCA − MHSA with its 95 % interval instead of one number per attention.  The DiT counterpart lives in
:func:`vca_ref.experiments.compare_dit.compare_dit`; both return rows for :func:`format_table`.
"""
from __future__ import annotations

import dataclasses
import json
import os

from vca_ref.experiments.plotting import new_figure, save_figure
from vca_ref.experiments.runner import write_json

ATTENTIONS = ("vca", "mhsa")


def compare_vit(cfg, out_dir: str = os.path.join("runs", "compare"), overwrite: bool = False) -> list[dict]:
    """Train TinyViT with VCA and with MHSA (same seed, data, schedule); return one row each.

    ``overwrite``: replace the runs an earlier comparison left in ``out_dir`` (else refused).
    """
    from vca_ref.experiments.classify import train_vit
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for att in ATTENTIONS:
        run_cfg = dataclasses.replace(cfg, attention=att, out_dir=os.path.join(out_dir, f"vit-{att}"))
        s = train_vit(run_cfg, overwrite=overwrite)
        rows.append({"attention": att, "test_acc": s["test_acc"], "params": s["params"],
                     "macs_per_image": s["macs_per_image"], "train_seconds": s["train_seconds"],
                     "images_per_s": s["images_per_s"], "history": s["history"],
                     "run_dir": run_cfg.out_dir})
    save_results(rows, out_dir, ("test_acc", "test accuracy ↑"),
                 {"task": "vit", "config": dataclasses.asdict(cfg)})
    plot_curves(rows, os.path.join(out_dir, "curves.png"),
                [("train_loss", "training loss"), ("test_acc", "test accuracy")])
    return rows


def format_table(rows: list[dict], metric: tuple[str, str]) -> str:
    """A Markdown table: attention, the metric, parameters, MACs/image, wall time, images/s."""
    key, title = metric
    lines = [f"| attention | {title} | parameters | MACs / image | train time (s) | images/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['attention'].upper()} | {r[key]:.4f} | {r['params']:,} | "
                     f"{r['macs_per_image']:,} | {r['train_seconds']:.1f} | {r['images_per_s']:.0f} |")
    return "\n".join(lines)


def save_results(rows: list[dict], out_dir: str, metric: tuple[str, str], extra: dict) -> None:
    """``table.md`` and ``results.json`` (atomic writes)."""
    from vca_ref.io.safetensors_format import atomic_write
    table = format_table(rows, metric) + "\n"
    atomic_write(os.path.join(out_dir, "table.md"), lambda f: f.write(table.encode()))
    write_json(os.path.join(out_dir, "results.json"),
               {**extra, "rows": [{k: v for k, v in r.items()} for r in rows]})


def plot_curves(rows: list[dict], path: str, panels: list[tuple[str, str]]) -> str:
    """One panel per per-epoch metric, one line per attention; saved as PNG."""
    fig, axes = new_figure(5 * len(panels), 3.6, 1, len(panels))
    for ax, (key, title) in zip(axes[0], panels):
        for r in rows:
            hist = [h for h in r["history"] if key in h]
            ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], marker="o", ms=3,
                    label=r["attention"].upper())
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path, dpi=120)


def load_results(out_dir: str) -> dict:
    """Read back ``results.json`` of a comparison."""
    with open(os.path.join(out_dir, "results.json")) as f:
        return json.load(f)


def compare_seeds(task, cfg, seeds, out_dir: str, progress: bool = True) -> dict:
    """VCA and MHSA trained with every seed; rows as in ``vca-ref ablate`` (reference: MHSA)."""
    from vca_ref.experiments.ablate import plot_ablation
    from vca_ref.experiments.grid import run_grid
    labelled = {att: {"attention": att} for att in ATTENTIONS}
    return run_grid(task, cfg, labelled, seeds, out_dir, "mhsa", "attention", plot_ablation,
                    progress, {"vca": "Visual-Contrast Attention", "mhsa": "the baseline"})
