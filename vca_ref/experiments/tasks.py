"""What one cell of a grid trains and how it is scored: a TinyViT (test accuracy) or a TinyDiT.

    vit   train_vit(cfg)                          score = test accuracy ↑ (summary.json)
    dit   train_dit(cfg), then sample and judge   score = Fréchet distance on the features of
          with ONE TinyViT classifier shared by    a TinyViT judge ↓ (evaluation.json; NOT
          every cell (OUT/classifier)              ImageNet FID, see vca_ref.experiments.evaluation)

A task knows its run-config class, how to train a cell (resuming when asked), whether a cell
folder is finished, and how to read its score back, so a grid never trains a finished cell.
"""
from __future__ import annotations

import dataclasses
import os

from vca_ref.experiments.run_config import read_json
from vca_ref.experiments.runner import CONFIG, SUMMARY

EVALUATION = "evaluation.json"
IMAGE_SIZE = {"digits": 8, "mnist": 28}          # pixels a side of each shipped dataset


def dataset_image_size(cfg) -> int:
    """The side of the images a run trains on: ``image_size`` if set, else the dataset's own."""
    if cfg.dataset not in IMAGE_SIZE:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; expected one of {sorted(IMAGE_SIZE)}")
    return getattr(cfg, "image_size", 0) or IMAGE_SIZE[cfg.dataset]


class ViTTask:
    """Classification: a TinyViT cell, scored by its final test accuracy."""
    name = "vit"
    metric = "test_acc"
    metric_title = "test accuracy ↑"
    higher_is_better = True

    @property
    def config_class(self):
        from vca_ref.experiments.classify import ViTTrainConfig
        return ViTTrainConfig

    def build_model(self, cfg):
        """The cell's model (to validate the config and count parameters/MACs before training)."""
        from vca_ref.experiments.classify import build_vit
        return build_vit(cfg, dataset_image_size(cfg))

    def shared_epochs(self, out_dir: str, base_cfg) -> int:
        """Epochs of shared training still to do before the cells (none for classification)."""
        return 0

    def prepare(self, out_dir: str, base_cfg, on_epoch) -> None:
        """Nothing is shared between classification cells."""

    def train(self, cfg, resume: bool, on_epoch) -> dict:
        from vca_ref.experiments.classify import train_vit
        return train_vit(cfg, resume=resume, on_epoch=on_epoch)

    def finished(self, run_dir: str) -> bool:
        return os.path.exists(os.path.join(run_dir, SUMMARY))

    def score(self, cfg, summary: dict) -> float:
        return float(summary["test_acc"])


class DiTTask:
    """Generation: a TinyDiT cell, scored by the judge's Fréchet distance (lower is better).

    Args:
        num_per_class: generated digits per class to judge.
        sampler, num_steps, cfg_scale: see :func:`vca_ref.experiments.sampling.sample_images`.
        judge_overrides: ViTTrainConfig fields replacing the judge's settings (e.g. epochs).
    """
    name = "dit"
    metric = "frechet_distance"
    metric_title = "Fréchet distance on TinyViT features (not ImageNet FID) ↓"
    higher_is_better = False

    def __init__(self, num_per_class: int = 50, sampler=None, num_steps=None, cfg_scale=None,
                 judge_overrides: dict | None = None):
        self.num_per_class, self.sampler, self.num_steps = num_per_class, sampler, num_steps
        self.cfg_scale, self.judge_overrides = cfg_scale, dict(judge_overrides or {})
        self.judge = None

    @property
    def config_class(self):
        from vca_ref.experiments.generate import DiTTrainConfig
        return DiTTrainConfig

    def build_model(self, cfg):
        from vca_ref.experiments.generate import build_dit
        return build_dit(cfg, dataset_image_size(cfg))

    def judge_config(self, out_dir: str, base_cfg):
        """The shared judge's ViTTrainConfig: compare-dit's settings for the dataset, seed of the grid."""
        from vca_ref.experiments.classify import ViTTrainConfig
        from vca_ref.experiments.compare_dit import CLASSIFIER_SETTINGS
        kw = {**CLASSIFIER_SETTINGS[base_cfg.dataset], **self.judge_overrides}
        return ViTTrainConfig(dataset=base_cfg.dataset, attention="mhsa", seed=base_cfg.seed,
                              device=base_cfg.device, out_dir=os.path.join(out_dir, "classifier"),
                              progress=False, **kw)

    def shared_epochs(self, out_dir: str, base_cfg) -> int:
        """The judge's epochs, unless it is finished."""
        jcfg = self.judge_config(out_dir, base_cfg)
        return 0 if os.path.exists(os.path.join(jcfg.out_dir, SUMMARY)) else jcfg.epochs

    def prepare(self, out_dir: str, base_cfg, on_epoch) -> None:
        """Train the shared judge (resuming it, unless finished) and load it."""
        from vca_ref.experiments.classify import train_vit
        from vca_ref.experiments.evaluation import load_classifier
        jcfg = self.judge_config(out_dir, base_cfg)
        if self.shared_epochs(out_dir, base_cfg):
            resume = os.path.exists(os.path.join(jcfg.out_dir, CONFIG))
            train_vit(jcfg, resume=resume, on_epoch=on_epoch)
        self.judge = load_classifier(jcfg.out_dir, base_cfg.device)

    def train(self, cfg, resume: bool, on_epoch) -> dict:
        from vca_ref.experiments.generate import train_dit
        return train_dit(cfg, resume=resume, on_epoch=on_epoch)

    def finished(self, run_dir: str) -> bool:
        return all(os.path.exists(os.path.join(run_dir, f)) for f in (SUMMARY, EVALUATION))

    def score(self, cfg, summary: dict) -> float:
        """Judge the cell's samples once (evaluation.json), then read the score back."""
        from vca_ref.experiments.evaluation import evaluate_dit_run
        path = os.path.join(cfg.out_dir, EVALUATION)
        if not os.path.exists(path):
            evaluate_dit_run(cfg.out_dir, self.judge, num_per_class=self.num_per_class, seed=cfg.seed,
                             sampler=self.sampler, num_steps=self.num_steps, cfg_scale=self.cfg_scale)
        return float(read_json(path)["frechet_distance"])


def make_task(name: str, **dit_options):
    """``"vit"`` -> :class:`ViTTask`, ``"dit"`` -> :class:`DiTTask` (with ``dit_options``)."""
    if name == "vit":
        return ViTTask()
    if name == "dit":
        return DiTTask(**dit_options)
    raise ValueError(f"task must be 'vit' or 'dit', got {name!r}")


def with_fields(cfg, fields: dict):
    """A copy of a run config with run fields and ``model_overrides`` entries replaced."""
    names = {f.name for f in dataclasses.fields(cfg)}
    run = {k: v for k, v in fields.items() if k in names}
    model = {k: v for k, v in fields.items() if k not in names}
    return dataclasses.replace(cfg, **run, model_overrides={**cfg.model_overrides, **model})
