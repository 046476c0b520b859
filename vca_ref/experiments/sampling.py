"""Sample digits from a trained TinyDiT (classifier-free guidance) and save them as a PNG grid.

Samplers, by training objective (:class:`~vca_ref.experiments.generate.DiTTrainConfig.objective`):

    ddpm objective:  "ddim" (deterministic, η = 0) or "ddpm" (ancestral), on ``num_steps``
                     evenly respaced steps of the T-step chain; x̂_0 is clipped to [-1, 1]
    flow objective:  "euler" or "heun", integrating dx/dt = v_θ(x, t, y) from noise (t = 0)
                     to data (t = 1) in ``num_steps`` uniform steps

Classifier-free guidance with scale s, applied to the model output (ε or velocity):

    out = out(x, t, ∅) + s · (out(x, t, y) − out(x, t, ∅))          (s = 1: the conditional model)

Samples live in the DiT's "symmetric" space [-1, 1] (pixel = (x + 1)/2) and are clipped to it.
Shapes: labels (M,) int in [0, K); images (M, Cin, H, W) float32 NumPy.
"""
from __future__ import annotations

import os
from contextlib import nullcontext

import numpy as np

from vca_ref.backend import to_device, to_numpy
from vca_ref.io.checkpoint import load_into
from vca_ref.diffusion import ddim_sample_loop, flow_sample, guided_model

SAMPLERS = {"ddpm": ("ddim", "ddpm"), "flow": ("euler", "heun")}
DEFAULT_SAMPLER = {"ddpm": "ddim", "flow": "heun"}
DEFAULT_STEPS = {"ddim": 50, "ddpm": 250, "euler": 50, "heun": 25}     # heun: 2 model calls a step
DEFAULT_CFG_SCALE = 2.0


def sample_images(model, cfg, labels, rng: np.random.Generator, sampler: str | None = None,
                  num_steps: int | None = None, cfg_scale: float = DEFAULT_CFG_SCALE, ema=None,
                  batch_size: int = 500) -> np.ndarray:
    """Generate one image per label.

    Args:
        model: a :class:`~vca_ref.models.dit.TinyDiT` holding the weights to sample with
            (a run's ``model.safetensors`` already holds the EMA weights).
        cfg: the run's :class:`~vca_ref.experiments.generate.DiTTrainConfig` (objective, schedule, device).
        labels: (M,) class indices in [0, K) (NumPy or on the device).
        rng: the generator of all sampling noise (same seed -> same images).
        sampler: "ddim" | "ddpm" (ddpm objective) or "euler" | "heun" (flow objective);
            None picks ddim / heun.
        num_steps: sampler steps (None: ddim 50, ddpm 250, euler 50, heun 25).
        cfg_scale: classifier-free guidance scale s (1 = plain conditional model).
        ema: optional :class:`~vca_ref.train.ema.EMA` whose averages are swapped in while sampling.
        batch_size: images per sampler call (guidance doubles the model batch).
    Returns:
        images (M, Cin, H, W) float32 in [-1, 1], on the host (read once per batch of images;
        the sampler's steps read nothing back).
    """
    from vca_ref.experiments.generate import build_diffusion   # late import: train -> sampling is the usual way
    objective = cfg.objective
    sampler = DEFAULT_SAMPLER[objective] if sampler is None else sampler
    if sampler not in SAMPLERS[objective]:
        raise ValueError(f"sampler {sampler!r} does not fit a {objective!r} model; "
                         f"use one of {SAMPLERS[objective]}")
    num_steps = DEFAULT_STEPS[sampler] if num_steps is None else int(num_steps)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    labels = np.asarray(to_numpy(labels))                                    # host or device
    K = model.config.num_classes
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and
                                                              (labels.min() < 0 or labels.max() >= K)):
        raise ValueError(f"labels must be a 1-D integer array with values in [0, {K}), got "
                         f"{labels.dtype} {labels.shape}")
    mc = model.config
    diffusion = build_diffusion(cfg)
    if diffusion is not None:
        num_steps = min(num_steps, diffusion.num_timesteps)
    dt = model.dtype

    def net(x, t, y):
        return model.forward(x, t, y)                                        # (b, Cout, H, W)

    fn = guided_model(net, float(cfg_scale), null_class=K)
    out = []
    with (nullcontext() if ema is None else ema.applied_to(model)):
        for i in range(0, len(labels), batch_size):
            y = to_device(labels[i:i + batch_size].astype(np.int64), cfg.device)   # (b,)
            shape = (len(y), mc.in_chans, mc.img_size, mc.img_size)
            kw = dict(y=y, rng=rng, num_steps=num_steps, dtype=dt, device=cfg.device)
            if sampler == "ddim":
                x = ddim_sample_loop(diffusion, fn, shape, clip_range=(-1.0, 1.0), **kw)
            elif sampler == "ddpm":
                x = diffusion.p_sample_loop(fn, shape, clip_range=(-1.0, 1.0), **kw)
            else:
                x = flow_sample(fn, shape, method=sampler, **kw)
            out.append(np.clip(to_numpy(x), -1.0, 1.0).astype(np.float32))  # (b, Cin, H, W)
    if not out:
        return np.zeros((0, mc.in_chans, mc.img_size, mc.img_size), np.float32)
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------- run folders
def load_dit_run(run_dir: str, device: str | None = None):
    """``(model, cfg)`` of a finished run: ``config.json`` + ``model.safetensors`` (EMA weights)."""
    from vca_ref.experiments.classify import ViTTrainConfig
    from vca_ref.experiments.generate import DiTTrainConfig, build_dit
    from vca_ref.experiments.run_config import read_run_config
    from vca_ref.experiments.runner import FINAL_MODEL
    cfg = read_run_config(run_dir, DiTTrainConfig, others=(ViTTrainConfig,))
    model_path = os.path.join(run_dir, FINAL_MODEL)
    if not os.path.exists(model_path):
        raise FileNotFoundError(f"{model_path} does not exist: the train-dit run in {run_dir} has not "
                                "finished (an interrupted run continues with --resume)")
    if device is not None:
        cfg.device = device
    model = build_dit(cfg)
    load_into(model, model_path)
    return model, cfg


def class_labels(num_per_class: int, classes=None, num_classes: int = 10) -> np.ndarray:
    """``[c0]*n + [c1]*n + …`` (M,) int64: one grid row per class."""
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1, got {num_per_class}")
    return np.repeat(np.asarray(classes, dtype=np.int64), num_per_class)


def sample_from_run(run_dir: str, num_per_class: int = 8, classes=None, seed: int = 0,
                    sampler: str | None = None, num_steps: int | None = None,
                    cfg_scale: float = DEFAULT_CFG_SCALE, grid_path: str | None = None,
                    device: str | None = None) -> dict:
    """Load a finished DiT run, sample ``num_per_class`` digits of each class, save a grid.

    Args:
        run_dir: a ``train_dit`` run folder (``config.json`` + ``model.safetensors``).
        num_per_class: images per class (one grid row per class).
        classes: the classes to draw (default: all K).
        seed: seed of the sampling noise.
        sampler, num_steps, cfg_scale: see :func:`sample_images`.
        grid_path: PNG to write (default ``run_dir/samples_<sampler>.png``; "" writes none).
        device: override the run's device ("cpu" | "cuda").
    Returns:
        ``{"images": (M, Cin, H, W) in [-1, 1], "labels": (M,), "grid_path": str | None,
        "sampler": str, "num_steps": int, "cfg_scale": float}``.
    """
    model, cfg = load_dit_run(run_dir, device)
    labels = class_labels(num_per_class, classes, model.config.num_classes)
    sampler = DEFAULT_SAMPLER[cfg.objective] if sampler is None else sampler
    num_steps = DEFAULT_STEPS.get(sampler, 50) if num_steps is None else num_steps
    images = sample_images(model, cfg, labels, np.random.default_rng(seed), sampler, num_steps,
                           cfg_scale)
    if grid_path is None:
        grid_path = os.path.join(run_dir, f"samples_{sampler}.png")
    if grid_path:
        save_grid(images, grid_path, nrow=len(np.unique(labels)),
                  row_labels=[str(c) for c in np.unique(labels)],
                  title=f"DiT-{cfg.attention} · {sampler} {num_steps} steps · CFG {cfg_scale:g}")
    return {"images": images, "labels": labels, "grid_path": grid_path or None, "sampler": sampler,
            "num_steps": int(num_steps), "cfg_scale": float(cfg_scale)}


# --------------------------------------------------------------------------- grids
def image_grid(images, nrow: int, pad: int = 1, value_range=(-1.0, 1.0)) -> np.ndarray:
    """Tile images (M, Cin, H, W) into an (nrow·(H+pad)+pad, ncol·(W+pad)+pad) array in [0, 1].

    Row r holds images ``r·ncol … (r+1)·ncol − 1`` with ``ncol = ceil(M / nrow)`` (with
    :func:`class_labels` order that is one row per class).  Multi-channel images are averaged.
    """
    images = np.asarray(to_numpy(images), dtype=np.float64)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must have shape (M, Cin, H, W) with M >= 1, got {images.shape}")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    lo, hi = value_range
    M, _, H, W = images.shape
    ncol = -(-M // nrow)
    img = np.clip((images.mean(axis=1) - lo) / (hi - lo), 0.0, 1.0)            # (M, H, W)
    grid = np.ones((nrow * (H + pad) + pad, ncol * (W + pad) + pad))           # white frame
    for k in range(M):
        r, c = divmod(k, ncol)
        grid[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = img[k]
    return grid


def save_grid(images, path: str, nrow: int, row_labels=None, title: str | None = None,
              value_range=(-1.0, 1.0)) -> str:
    """Write images (M, Cin, H, W) as a PNG grid with matplotlib (one row per class); returns path.

    ``row_labels`` (nrow strings) label the rows; ``value_range`` maps to black … white.
    """
    from vca_ref.experiments.plotting import new_figure, save_figure
    grid = image_grid(images, nrow, value_range=value_range)
    h, w = grid.shape
    fig, axes = new_figure(max(3.0, 0.04 * w + 1.0), max(3.0, 0.04 * h + 0.8))
    ax = axes[0, 0]
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        if len(row_labels) != nrow:
            raise ValueError(f"row_labels has {len(row_labels)} entries for {nrow} rows")
        cell = (h - 1) / nrow
        ax.set_yticks([0.5 + cell * (r + 0.5) for r in range(nrow)])
        ax.set_yticklabels(row_labels)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi=100)
