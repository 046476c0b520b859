"""Judge generated digits with a trained TinyViT classifier: per-class accuracy and a Fréchet distance.

NOT ImageNet FID.  The Fréchet distance here is computed on the features of a small TinyViT
classifier trained on the same digits (the final-LayerNorm class token, C numbers per image),
between real held-out digits and generated ones.  Numbers are only comparable between runs
judged by the SAME classifier with the same sample sizes (the estimate is biased upward for few
samples); :func:`evaluate_dit_run` therefore also reports the distance between two sets of REAL
digits of the same size (a floor for what a perfect generator would score).

Fréchet distance between Gaussians fitted to features f_r (M_r, C) and f_g (M_g, C):

    μ = mean(f),  Σ = cov(f)  (unbiased, ddof = 1)
    d² = ‖μ_r − μ_g‖² + Tr( Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2} )

with the matrix square root from ``scipy.linalg.sqrtm`` (as pytorch-fid; a tiny ε·I is added to
both covariances if the product is singular, and the imaginary part from round-off is dropped).

Normalisation (explicit, because the two models live in different spaces):
    DiT images x ∈ [-1, 1]   ("symmetric":  x = (pixel − 0.5) / 0.5)
    classifier input z        ("standard":   z = (pixel − μ) / σ, μ, σ of the classifier's train pixels)
    so  pixel = clip((x + 1) / 2, 0, 1)  and  z = (pixel − μ) / σ          (:func:`to_classifier_space`)
Real images go through the very same function, so both sides are treated alike.

Every function takes NumPy or device (CuPy) arrays; results come back on the host (NumPy).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vca_ref.backend import is_cuda_array, to_device, to_numpy


# --------------------------------------------------------------------------- the judge
@dataclass
class DigitClassifier:
    """A trained TinyViT plus the (μ, σ) of its "standard" input normalisation."""
    model: object                # vca_ref.models.vit.TinyViT
    mean: float                  # μ:  z = (pixel − μ) / σ
    std: float                   # σ
    device: str = "cpu"

    def to_input(self, x_sym) -> np.ndarray:
        """DiT-space images (M, 1, H, W) in [-1, 1] -> classifier inputs (M, 1, H, W)."""
        return to_classifier_space(x_sym, self.mean, self.std)


def to_classifier_space(x_sym, mean: float, std: float) -> np.ndarray:
    """``z = (clip((x + 1)/2, 0, 1) − μ) / σ``: "symmetric" [-1, 1] -> "standard" (float32)."""
    pixel = np.clip((np.asarray(to_numpy(x_sym), dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)
    return ((pixel - mean) / std).astype(np.float32)                           # (M, 1, H, W)


def load_classifier(run_dir: str, device: str | None = None) -> DigitClassifier:
    """The classifier of a finished ``train_vit`` run, with its dataset's normalisation stats."""
    from vca_ref.io.checkpoint import load_into
    from vca_ref.experiments.data import load_dataset
    from vca_ref.experiments.classify import ViTTrainConfig, build_vit
    from vca_ref.experiments.generate import DiTTrainConfig
    from vca_ref.experiments.run_config import read_run_config
    from vca_ref.experiments.runner import FINAL_MODEL
    cfg = read_run_config(run_dir, ViTTrainConfig, others=(DiTTrainConfig,))
    model_path = os.path.join(run_dir, FINAL_MODEL)
    if not os.path.exists(model_path):
        raise FileNotFoundError(f"{model_path} does not exist: the train-vit run in {run_dir} has not finished")
    if device is not None:
        cfg.device = device
    data = load_dataset(cfg.dataset, test_fraction=cfg.test_fraction, seed=cfg.seed,
                        image_size=cfg.image_size or None)                        # "standard"
    model = build_vit(cfg, data.image_size)
    load_into(model, model_path)
    return DigitClassifier(model, data.mean, data.std, cfg.device)


def _array(x):
    """x as an array where it lives: a device array stays on its device, anything else NumPy."""
    return x if is_cuda_array(x) else np.asarray(x)


def _batched(fn, x, batch_size: int, device: str, dtype) -> np.ndarray:
    outs = [to_numpy(fn(to_device(x[i:i + batch_size].astype(dtype), device)))
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0)


def classifier_features(model, x, batch_size: int = 500, device: str = "cpu") -> np.ndarray:
    """Final-LN class-token features of a TinyViT: x (M, Cin, H, W) classifier space -> (M, C) float64."""
    return _batched(model.features, _array(x), batch_size, device, model.dtype).astype(np.float64)


def classifier_accuracy_per_class(classifier, images, labels, num_classes: int | None = None,
                                  batch_size: int = 500, device: str = "cpu") -> dict:
    """How often the classifier recognises each requested class.

    Args:
        classifier: a TinyViT (or :class:`DigitClassifier`, whose ``model`` is used).
        images: (M, Cin, H, W) already in the classifier's input space.
        labels: (M,) the classes the images were asked to be.
    Returns:
        ``{"per_class": [acc_0, …, acc_{K−1}] (NaN for a class with no images), "counts": [m_k],
        "mean_accuracy": mean over the classes present, "accuracy": over all images,
        "predictions": (M,) int64}``.
    """
    model = classifier.model if isinstance(classifier, DigitClassifier) else classifier
    labels = np.asarray(to_numpy(labels))
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    K = model.config.num_classes if num_classes is None else num_classes
    logits = _batched(model.forward, _array(images), batch_size, device, model.dtype)  # (M, K)
    pred = logits.argmax(axis=1).astype(np.int64)                                       # (M,)
    correct = pred == labels
    counts = np.bincount(labels, minlength=K)[:K]                                       # (K,)
    hits = np.bincount(labels, weights=correct, minlength=K)[:K]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return {"per_class": [float(a) for a in per_class], "counts": [int(c) for c in counts],
            "mean_accuracy": float(np.nanmean(per_class)) if counts.any() else float("nan"),
            "accuracy": float(correct.mean()) if len(labels) else float("nan"),
            "predictions": pred}


# --------------------------------------------------------------------------- Fréchet distance
def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """``(μ (C,), Σ (C, C))`` of features (M, C), float64, Σ unbiased (ddof = 1)."""
    f = np.asarray(to_numpy(feats), dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (M, C) with M >= 2, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}) (see the module docstring)."""
    from scipy.linalg import sqrtm
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: μ {mu1.shape} vs {mu2.shape}, "
                         f"Σ {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = sqrtm(sigma1 @ sigma2)                                            # (C, C)
    if not np.isfinite(covmean).all():                                          # singular product
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)                                                  # drop round-off imag
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance(feats_real, feats_fake) -> float:
    """Fréchet distance on TinyViT classifier features (not ImageNet FID): (M_r, C), (M_g, C) -> d²."""
    mu1, s1 = gaussian_stats(feats_real)
    mu2, s2 = gaussian_stats(feats_fake)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature widths differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


# --------------------------------------------------------------------------- a DiT run
def _as_classifier(classifier, dataset_cfg, device: str) -> DigitClassifier:
    if isinstance(classifier, DigitClassifier):
        return classifier
    if isinstance(classifier, (str, os.PathLike)):
        return load_classifier(os.fspath(classifier), device)
    if hasattr(classifier, "features"):         # a bare TinyViT: stats of the DiT's own split
        from vca_ref.experiments.data import load_dataset
        d = load_dataset(dataset_cfg.dataset, test_fraction=dataset_cfg.test_fraction,
                         seed=dataset_cfg.seed)                                 # "standard"
        return DigitClassifier(classifier, d.mean, d.std, device)
    raise TypeError("classifier must be a train-vit run folder, a DigitClassifier or a TinyViT, "
                    f"got {type(classifier).__name__}")


def balanced_subset(y, num_per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``num_per_class`` random images of every class (sorted)."""
    idx = [rng.permutation(np.flatnonzero(y == c))[:num_per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def evaluate_dit_run(run_dir: str, classifier, num_per_class: int = 50, seed: int = 0,
                     sampler: str | None = None, num_steps: int | None = None,
                     cfg_scale: float | None = None, grid_path: str | None = None,
                     grid_per_class: int = 10, device: str | None = None) -> dict:
    """Sample a finished DiT run and judge the samples with a TinyViT classifier.

    Args:
        run_dir: a finished ``train_dit`` run folder.
        classifier: a ``train_vit`` run folder on the same dataset, a :class:`DigitClassifier`,
            or a TinyViT (normalisation stats then taken from the DiT's dataset split).
        num_per_class: generated images per class for the accuracy and the Fréchet distance.
        seed: sampling seed (and of the real subset of the baseline).
        sampler, num_steps, cfg_scale: see :func:`vca_ref.experiments.sampling.sample_images`.
        grid_path: PNG of the first ``grid_per_class`` samples of each class
            (default ``run_dir/samples_<sampler>.png``; "" writes none).
    Returns:
        ``{"per_class_accuracy": [K], "mean_accuracy", "frechet_distance",
        "frechet_real_baseline", "num_generated", "num_real", "grid_path", "sampler",
        "num_steps", "cfg_scale", "metric": "Fréchet distance on TinyViT classifier features
        (not ImageNet FID)"}``.  Also written to ``run_dir/evaluation.json``.
    """
    from vca_ref.experiments.data import load_dataset
    from vca_ref.experiments.sampling import (DEFAULT_CFG_SCALE, DEFAULT_SAMPLER, DEFAULT_STEPS, class_labels,
                           load_dit_run, sample_images, save_grid)
    from vca_ref.experiments.runner import write_json
    model, cfg = load_dit_run(run_dir, device)
    judge = _as_classifier(classifier, cfg, cfg.device)
    K = model.config.num_classes
    sampler = DEFAULT_SAMPLER[cfg.objective] if sampler is None else sampler
    num_steps = DEFAULT_STEPS[sampler] if num_steps is None else int(num_steps)
    cfg_scale = DEFAULT_CFG_SCALE if cfg_scale is None else float(cfg_scale)
    labels = class_labels(num_per_class, None, K)                               # (M,)
    fake = sample_images(model, cfg, labels, np.random.default_rng([seed, 11]), sampler, num_steps,
                         cfg_scale)                                             # (M, 1, H, W) [-1, 1]
    # real digits in the same "symmetric" space, held out from both the DiT and the classifier
    data = load_dataset(cfg.dataset, test_fraction=cfg.test_fraction, seed=cfg.seed,
                        normalization="symmetric")
    z_fake, z_test = judge.to_input(fake), judge.to_input(data.x_test)
    acc = classifier_accuracy_per_class(judge, z_fake, labels, K, device=judge.device)
    f_fake = classifier_features(judge.model, z_fake, device=judge.device)     # (M, C)
    f_test = classifier_features(judge.model, z_test, device=judge.device)     # (M_te, C)
    sub = balanced_subset(data.y_train, num_per_class, np.random.default_rng([seed, 12]))
    f_train = classifier_features(judge.model, judge.to_input(data.x_train[sub]), device=judge.device)
    if grid_path is None:
        grid_path = os.path.join(run_dir, f"samples_{sampler}.png")
    if grid_path:
        show = np.concatenate([np.flatnonzero(labels == c)[:grid_per_class] for c in range(K)])
        save_grid(fake[show], grid_path, nrow=K, row_labels=[str(c) for c in range(K)],
                  title=f"DiT-{cfg.attention} · {sampler} {num_steps} · CFG {cfg_scale:g}")
    result = {
        "metric": "Fréchet distance on TinyViT classifier features (not ImageNet FID)",
        "attention": cfg.attention, "per_class_accuracy": acc["per_class"],
        "mean_accuracy": acc["mean_accuracy"],
        "frechet_distance": frechet_distance(f_test, f_fake),
        "frechet_real_baseline": frechet_distance(f_test, f_train),
        "num_generated": int(len(fake)), "num_real": int(len(f_test)),
        "num_real_baseline": int(len(f_train)), "grid_path": grid_path or None,
        "sampler": sampler, "num_steps": num_steps, "cfg_scale": cfg_scale, "seed": seed}
    write_json(os.path.join(run_dir, "evaluation.json"), result)
    return result
