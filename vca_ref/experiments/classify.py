"""Train and evaluate a TinyViT classifier on the shipped digits.

One step (hand-written end to end):

    logits = model.forward(x)                         (B, K)
    loss   = CE(logits, y; label_smoothing)           ()
    dlogits = dCE/dlogits                             (B, K)
    model.backward(dlogits)                           fills model grads
    clip_grad_norm(model, clip);  lr = cosine_warmup(step);  optimizer.step()
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vca_ref.backend import check_device, read_scalars, to_device, to_numpy
from vca_ref.experiments.data import DATASETS, iterate_batches, load_dataset, num_batches, random_shift
from vca_ref.experiments.run_config import check_choice, check_int, check_real, check_run_fields
from vca_ref.experiments.runner import Run, Timer, clip_gradients, progress
from vca_ref.models.vit import VIT_CONFIGS, ViTConfig, create_vit
from vca_ref.ops.losses import cross_entropy_backward, cross_entropy_forward
from vca_ref.train.optim import SGD, AdamW
from vca_ref.train.schedule import cosine_warmup_lr

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class ViTTrainConfig:
    """Everything that defines a classification run (saved as config.json)."""
    dataset: str = "mnist"               # "digits" (8x8) | "mnist" (28x28 sample)
    model: str = "tiny-mnist-p7"         # a key of vca_ref.models.VIT_CONFIGS
    attention: str = "vca"               # "vca" | "mhsa"
    model_overrides: dict = field(default_factory=dict)   # ViTConfig fields, e.g. {"depth": 4}
    epochs: int = 25
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 5e-3
    weight_decay: float = 0.05
    momentum: float = 0.9                # SGD only
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    clip_grad: float = 1.0               # max global grad norm (0 = off)
    label_smoothing: float = 0.1
    augment_shift: int = 2               # random translation of up to this many pixels (0 = off)
    image_size: int = 0                  # resize the images to this many pixels a side (0 = as shipped)
    test_fraction: float = 0.2
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    out_dir: str = "runs/vit"
    progress: bool = True

    def __post_init__(self):
        check_run_fields(self, VIT_CONFIGS, ViTConfig, DATASETS)
        check_choice(self, "optimizer", OPTIMIZERS)
        check_real(self, "momentum", 0.0, 1.0, hi_open=True)
        check_real(self, "label_smoothing", 0.0, 1.0, hi_open=True)
        check_int(self, "augment_shift", 0)
        check_int(self, "image_size", 0)               # 0 keeps the dataset's size


def build_vit(cfg: ViTTrainConfig, image_size: int):
    """The model of a run (seeded), checked against the dataset's image size.

    With ``cfg.image_size`` set, the model's ``img_size`` is that size (the data are resized)."""
    overrides = dict(cfg.model_overrides)
    if cfg.image_size:
        overrides.setdefault("img_size", cfg.image_size)
    model = create_vit(cfg.model, seed=cfg.seed, attention=cfg.attention, dtype=cfg.dtype, **overrides)
    if model.config.img_size != image_size:
        raise ValueError(f"model {cfg.model!r} expects {model.config.img_size}x{model.config.img_size} "
                         f"images but dataset {cfg.dataset!r} has {image_size}x{image_size}")
    return model.to(device=cfg.device)


def build_optimizer(cfg, model):
    if cfg.optimizer == "adamw":
        return AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


def evaluate_accuracy(model, x, y, batch_size: int = 500, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on images x (M, Cin, H, W) with labels y (M,)."""
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model.forward(to_device(x[i:i + batch_size].astype(model.dtype), device))  # (b, K)
        correct += int((to_numpy(logits).argmax(axis=1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def train_vit(cfg: ViTTrainConfig, resume: bool = False, stop_after: int | None = None,
              overwrite: bool = False, on_epoch=None) -> dict:
    """Train (or resume) a TinyViT run; returns the summary dict (also in summary.json).

    ``stop_after`` ends the process after that many completed epochs, as a preemption would
    (the checkpoint is written, no final model); ``resume=True`` then continues the run.
    A folder that already holds a run needs ``resume`` or ``overwrite`` (start again).
    Raises ``TrainingDiverged`` when the loss, a gradient or a layer's input becomes NaN/inf.
    ``on_epoch`` (if given) is called with each epoch's record once its checkpoint is written.
    """
    check_device(cfg.device)
    data = load_dataset(cfg.dataset, test_fraction=cfg.test_fraction, seed=cfg.seed,
                        image_size=cfg.image_size or None)
    model = build_vit(cfg, data.image_size)
    opt = build_optimizer(cfg, model)
    rngs = {"data": np.random.default_rng([cfg.seed, 1])}
    run = Run(cfg.out_dir, cfg, resume=resume, overwrite=overwrite)
    run.start(model, opt, rngs)
    steps_per_epoch = num_batches(len(data.x_train), cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = min(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    one = np.asarray(1.0, dtype=model.dtype)
    st = run.state
    while st.epoch < cfg.epochs:
        bar = progress(steps_per_epoch, f"{cfg.attention} epoch {st.epoch + 1}/{cfg.epochs}", cfg.progress)
        loss_sum, t_epoch = 0.0, time.perf_counter()
        for xb, yb in iterate_batches(data.x_train, data.y_train, cfg.batch_size, rngs["data"]):
            xb = random_shift(xb, cfg.augment_shift, rngs["data"])                 # (B, 1, H, W)
            with Timer(st), run.guard():
                opt.lr = cosine_warmup_lr(st.step, cfg.lr, total, warmup, min(cfg.min_lr, cfg.lr))
                logits = model.forward(to_device(xb.astype(model.dtype), cfg.device))   # (B, K)
                loss, c_ce = cross_entropy_forward(logits, to_device(yb, cfg.device), cfg.label_smoothing)
                model.backward(cross_entropy_backward(one, c_ce))
                gnorm = clip_gradients(model, cfg.clip_grad)
                loss, gnorm = read_scalars(loss, gnorm)   # the step's one read (+ device checks)
                run.check_finite("loss", loss)
                run.check_finite("gradient norm", gnorm)
                opt.step()
            st.step += 1
            st.images_seen += len(xb)
            loss_sum += loss
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{st.images_seen / max(st.train_seconds, 1e-9):.0f}")
        bar.close()
        with run.guard():
            acc = evaluate_accuracy(model, data.x_test, data.y_test, device=cfg.device)
        rec = run.end_epoch(model, opt, rngs, train_loss=loss_sum / steps_per_epoch, test_acc=acc,
                            lr=opt.lr, epoch_seconds=time.perf_counter() - t_epoch,
                            images_per_s=st.images_seen / max(st.train_seconds, 1e-9))
        if on_epoch is not None:
            on_epoch(rec)
        if cfg.progress:
            print(f"[{cfg.attention}] epoch {rec['epoch']:3d}  loss {rec['train_loss']:.4f}  "
                  f"test acc {acc:.4f}  ({rec['epoch_seconds']:.1f}s)", flush=True)
        if stop_after is not None and st.epoch >= stop_after and st.epoch < cfg.epochs:
            return {"kind": "stopped", "epoch": st.epoch, "step": st.step}
    final_acc = evaluate_accuracy(model, data.x_test, data.y_test, device=cfg.device)
    return run.finish(model, {
        "attention": cfg.attention, "test_acc": final_acc, "params": model.num_parameters(),
        "macs_per_image": model.macs(), "train_seconds": st.train_seconds,
        "images_per_s": st.images_seen / max(st.train_seconds, 1e-9), "epochs": st.epoch,
        "steps": st.step, "history": st.history})
