"""VCA against MHSA as the attention of a TinyDiT: same seed, same data, same budget, one judge.

``compare_dit`` runs, inside one output folder,

    classifier/     a TinyViT trained on the same digits (train_vit): the shared judge
    dit-vca/        train_dit with attention="vca"      } one DiTTrainConfig, only
    dit-mhsa/       train_dit with attention="mhsa"     } ``attention`` and ``out_dir`` differ
    table.md, results.json     the rows below (+ the judge's test accuracy, the settings)
    curves.png      training loss and EMA validation loss per epoch, both attentions
    samples.png     the two sample grids side by side (one row per class, same sampling noise)

and returns one row per attention with

    attention, frechet_distance (TinyViT features, NOT ImageNet FID; lower is better),
    classifier_accuracy (mean per-class accuracy of the judge on the samples), params,
    macs_per_image, train_seconds, images_per_s
    (+ per_class_accuracy, frechet_real_baseline, final_train_loss, final_val_loss, history,
    run_dir, grid_path)

Both DiTs start from the same seed (so every weight they share is drawn identically), see the
same batches, noise and label dropout, and are sampled from the same starting noise.  The judge
is an MHSA TinyViT by default (the standard ViT, as FID uses a standard network); its training
settings for the digits are pinned here (``CLASSIFIER_SETTINGS``) so that changes to the ViT
defaults (tuned for MNIST) do not silently change the judge.
"""
from __future__ import annotations

import dataclasses
import os

from vca_ref.experiments.compare import plot_curves, save_results
from vca_ref.experiments.evaluation import evaluate_dit_run, load_classifier

ATTENTIONS = ("vca", "mhsa")
METRIC = ("frechet_distance", "Fréchet distance on TinyViT features (not ImageNet FID) ↓")
# The judge per dataset (ViTTrainConfig fields).  Digits: ≈94 % test accuracy in 40 epochs;
# no shift augmentation (2 pixels of an 8x8 digit is a quarter of it).  MNIST: the ViT defaults.
CLASSIFIER_SETTINGS = {
    "digits": dict(model="tiny-digits", epochs=40, batch_size=32, lr=3e-3, weight_decay=0.05,
                   warmup_epochs=1.0, label_smoothing=0.1, augment_shift=0),
    "mnist": dict(),
}


def train_judge(dataset: str, seed: int, out_dir: str, attention: str = "mhsa",
                device: str = "cpu", progress: bool = True, overwrite: bool = False, **overrides) -> dict:
    """Train the TinyViT classifier that judges the samples; returns train_vit's summary."""
    from vca_ref.experiments.classify import ViTTrainConfig, train_vit
    names = {f.name for f in dataclasses.fields(ViTTrainConfig)}
    kw = {k: v for k, v in {**CLASSIFIER_SETTINGS[dataset], **overrides}.items() if k in names}
    cfg = ViTTrainConfig(dataset=dataset, attention=attention, seed=seed, device=device,
                         out_dir=out_dir, progress=progress, **kw)
    return train_vit(cfg, overwrite=overwrite)


def compare_dit(cfg=None, out_dir: str = os.path.join("runs", "compare-dit"),
                num_per_class: int = 50, sampler: str | None = None, num_steps: int | None = None,
                cfg_scale: float | None = None, classifier_run: str | None = None,
                classifier_attention: str = "mhsa", classifier_overrides: dict | None = None,
                attentions=ATTENTIONS, overwrite: bool = False) -> list[dict]:
    """Train one DiT per attention from ``cfg`` (same seed and budget), judge both, plot, return rows.

    Args:
        cfg: the base :class:`~vca_ref.experiments.generate.DiTTrainConfig` (None: the defaults);
            its ``attention`` and ``out_dir`` are replaced per run.
        out_dir: the comparison folder (sub-runs, ``table.md``, ``results.json``, plots).
        num_per_class: generated digits per class for the accuracy and the Fréchet distance.
        sampler, num_steps, cfg_scale: see :func:`vca_ref.experiments.sampling.sample_images`.
        classifier_run: an existing ``train_vit`` run folder on the same dataset to judge with;
            None trains one into ``out_dir/classifier`` (``CLASSIFIER_SETTINGS``).
        classifier_attention: attention of that classifier ("mhsa" | "vca").
        classifier_overrides: :class:`~vca_ref.experiments.classify.ViTTrainConfig` fields that
            replace ``CLASSIFIER_SETTINGS[dataset]`` (e.g. ``{"epochs": 1}`` for a smoke test).
        attentions: the DiTs to train, in table order.
        overwrite: replace the runs an earlier comparison left in ``out_dir`` (else refused).
    Returns:
        one dict per attention (fields in the module docstring); ``results.json`` also holds
        ``{"classifier": {"run_dir", "test_acc"}, "plots": {...}, "config": cfg}``.
    """
    from vca_ref.experiments.data import load_dataset
    from vca_ref.experiments.classify import evaluate_accuracy
    from vca_ref.experiments.generate import DiTTrainConfig, train_dit
    cfg = DiTTrainConfig() if cfg is None else cfg
    os.makedirs(out_dir, exist_ok=True)
    # 1. the shared judge
    if classifier_run is None:
        classifier_run = os.path.join(out_dir, "classifier")
        train_judge(cfg.dataset, cfg.seed, classifier_run, classifier_attention, cfg.device,
                    cfg.progress, overwrite=overwrite, **(classifier_overrides or {}))
    judge = load_classifier(classifier_run, cfg.device)
    d = load_dataset(cfg.dataset, test_fraction=cfg.test_fraction, seed=cfg.seed)     # "standard"
    judge_acc = evaluate_accuracy(judge.model, d.x_test, d.y_test, device=cfg.device)
    # 2. one DiT per attention, identical otherwise
    rows = []
    for att in attentions:
        run_cfg = dataclasses.replace(cfg, attention=att, out_dir=os.path.join(out_dir, f"dit-{att}"))
        s = train_dit(run_cfg, overwrite=overwrite)
        ev = evaluate_dit_run(run_cfg.out_dir, judge, num_per_class=num_per_class, seed=cfg.seed,
                              sampler=sampler, num_steps=num_steps, cfg_scale=cfg_scale)
        rows.append({"attention": att, "frechet_distance": ev["frechet_distance"],
                     "classifier_accuracy": ev["mean_accuracy"], "params": s["params"],
                     "macs_per_image": s["macs_per_image"], "train_seconds": s["train_seconds"],
                     "images_per_s": s["images_per_s"],
                     "per_class_accuracy": ev["per_class_accuracy"],
                     "frechet_real_baseline": ev["frechet_real_baseline"],
                     "final_train_loss": s["train_loss"], "final_val_loss": s["val_loss"],
                     "history": s["history"], "run_dir": run_cfg.out_dir, "grid_path": ev["grid_path"],
                     "sampler": ev["sampler"], "num_steps": ev["num_steps"], "cfg_scale": ev["cfg_scale"]})
        if cfg.progress:
            print(f"[dit-{att}] Fréchet distance {ev['frechet_distance']:.3f} (real vs real "
                  f"{ev['frechet_real_baseline']:.3f})  classifier accuracy on samples "
                  f"{ev['mean_accuracy']:.3f}", flush=True)
    # 3. plots, table and results
    plots = {"curves": plot_curves(rows, os.path.join(out_dir, "curves.png"),
                                   [("train_loss", "training loss"),
                                    ("val_loss", "validation loss (EMA weights)")]),
             "samples": plot_grids_side_by_side({r["attention"]: r["grid_path"] for r in rows},
                                                os.path.join(out_dir, "samples.png"))}
    save_results(rows, out_dir, METRIC,
                 {"task": "dit", "config": dataclasses.asdict(cfg), "plots": plots,
                  "classifier": {"run_dir": classifier_run, "test_acc": judge_acc,
                                 "attention": judge.model.config.attention},
                  "metric": "Fréchet distance on TinyViT classifier features (not ImageNet FID)"})
    return rows


def plot_grids_side_by_side(grids: dict, path: str) -> str:
    """Place saved sample-grid PNGs ``{attention: path}`` next to each other, titled."""
    from vca_ref.experiments.plotting import new_figure, read_png, save_figure
    fig, axes = new_figure(4.5 * len(grids), 4.8, 1, len(grids))
    for ax, (att, p) in zip(axes[0], grids.items()):
        ax.imshow(read_png(p))
        ax.set_title(att.upper())
        ax.axis("off")
    return save_figure(fig, path, dpi=100)
