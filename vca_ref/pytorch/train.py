"""Training on torch.distributed: the ViT and the DiT with DistributedDataParallel.

Launch with ``torchrun`` (one process per GPU, or several CPU processes)::

    torchrun --nproc_per_node=2 -m vca_ref.pytorch.train --init-from runs/compare/vit-vca \\
        --epochs 5 --out-dir runs/torch/vit-vca

or as one plain process (``python -m vca_ref.pytorch.train …``).  Backend: NCCL when CUDA is
available, gloo otherwise (``--backend`` overrides).  The model comes from a NumPy run folder
(``--init-from``: its ``config.json`` and ``model.safetensors``) or from scratch (``--task``,
``--dataset``, ``--model``, ``--attention``); the data are the shipped datasets of
:mod:`vca_ref.experiments.data`, split by a ``DistributedSampler``.  ``--batch-size`` is the global
batch: each of the W processes takes ``batch_size / W`` samples, DDP averages the gradients, so a
step equals one single-process step on the combined batch.

The losses are those of ``vca-ref train-vit`` / ``train-dit``: cross-entropy with label smoothing
(ViT; no random-shift augmentation), the DDPM noise-prediction or flow-matching velocity loss with
label dropout (DiT; t, noise and dropout drawn per sample from ``(seed, epoch)``, so they do not
depend on the number of processes); AdamW (or SGD) with the cosine warm-up schedule and global
gradient-norm clipping; no EMA.

The output folder is a run folder the NumPy package reads: ``config.json`` (the run
configuration), ``model.safetensors`` (PyTorch names and layouts), ``metrics.jsonl`` (one line
per epoch) and ``summary.json`` (steps, processes, seconds, images/s, the final loss; test
accuracy for the ViT).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from vca_ref.diffusion.ddpm import GaussianDiffusion
from vca_ref.experiments.classify import ViTTrainConfig
from vca_ref.experiments.data import load_dataset
from vca_ref.experiments.generate import DiTTrainConfig
from vca_ref.experiments.runner import CONFIG, FINAL_MODEL, METRICS, SUMMARY, write_json
from vca_ref.io.atomic import atomic_write
from vca_ref.pytorch.checkpoint import load_model, model_config, read_config, save_model
from vca_ref.pytorch.models import from_config
from vca_ref.train.schedule import cosine_warmup_lr


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vca_ref.pytorch.train", description=__doc__.split("\n")[0])
    p.add_argument("--init-from", default=None, help="a train-vit / train-dit run folder to start from")
    p.add_argument("--task", choices=("vit", "dit"), default=None, help="from scratch: vit (default) or dit")
    p.add_argument("--dataset", default=None, help="from scratch: 'digits' or 'mnist'")
    p.add_argument("--model", default=None, help="from scratch: a size of VIT_CONFIGS / DIT_CONFIGS")
    p.add_argument("--attention", choices=("vca", "mhsa"), default=None, help="from scratch: vca or mhsa")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (divisible by the processes)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--backend", choices=("nccl", "gloo"), default=None, help="default: nccl with CUDA, else gloo")
    p.add_argument("--out-dir", required=True, help="the run folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a run folder that holds a model")
    return p.parse_args(argv)


def run_configuration(args):
    """The run configuration: the ``--init-from`` folder's or a fresh one, with the flags applied."""
    if args.init_from is not None:
        cfg = read_config(args.init_from)
        if args.task is not None and args.task != ("vit" if isinstance(cfg, ViTTrainConfig) else "dit"):
            raise ValueError(f"--task {args.task} does not match the run in {args.init_from}")
    else:
        cfg = ViTTrainConfig(dataset="digits", model="tiny-digits") if args.task in (None, "vit") \
            else DiTTrainConfig()
    flags = {"dataset": args.dataset, "model": args.model, "attention": args.attention, "dtype": args.dtype,
             "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr}
    changes = {k: v for k, v in flags.items() if v is not None}
    if args.init_from is not None and set(changes) & {"dataset", "model", "attention"}:
        raise ValueError("--dataset, --model and --attention come from the --init-from run; leave them out")
    # fields validated by the config class; the NumPy package reads this folder back
    return replace(cfg, epochs=args.epochs, out_dir=args.out_dir, device="cpu", progress=False, **changes)


def setup_distributed(backend: str | None) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; joins the process group when started by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return (dist.get_rank() if world > 1 else 0), world, device


def dit_draws(cfg: DiTTrainConfig, n: int, epoch: int, image_shape, dtype) -> dict:
    """Per-sample random inputs of the DiT loss for one epoch (the same in every process)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    t = (torch.randint(0, cfg.num_timesteps, (n,), generator=g) if cfg.objective == "ddpm"
         else torch.rand(n, generator=g, dtype=torch.float64))
    noise = torch.randn((n,) + tuple(image_shape), generator=g, dtype=torch.float64)
    drop = torch.rand(n, generator=g) < model_config(cfg).class_dropout_prob
    return {"t": t, "noise": noise.to(dtype), "drop": drop}


def vit_loss(model, cfg, x, y, idx, draws):
    return F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)


def dit_loss(model, cfg, x, y, idx, draws, coefs=None):
    """DDPM: ||eps_theta(x_t, t, y) - eps||^2;  flow: ||v_theta(x_t, t, y) - (x - eps)||^2 (mean)."""
    t, noise, drop = draws["t"][idx].to(x.device), draws["noise"][idx].to(x.device), draws["drop"][idx].to(x.device)
    if cfg.objective == "ddpm":
        a, b = coefs                                                              # (T,) each
        xt = a[t].view(-1, 1, 1, 1) * x + b[t].view(-1, 1, 1, 1) * noise          # (B, Cin, H, W)
        target, tm = noise, t
    else:
        tb = t.to(x.dtype).view(-1, 1, 1, 1)
        xt, target, tm = tb * x + (1 - tb) * noise, x - noise, t.to(x.dtype)
    out = model(xt, tm, y, drop)                                                  # (B, Cout, H, W)
    return F.mse_loss(out[:, :x.shape[1]], target)


def train(args) -> dict:
    cfg = run_configuration(args)
    rank, world, device = setup_distributed(args.backend)
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size {cfg.batch_size} must be divisible by the {world} processes")
    out = cfg.out_dir
    if rank == 0 and os.path.exists(os.path.join(out, FINAL_MODEL)) and not args.overwrite:
        raise FileExistsError(f"{out} already holds a model; pass --overwrite to replace it")
    is_vit = isinstance(cfg, ViTTrainConfig)
    dtype = getattr(torch, cfg.dtype)
    if is_vit:
        data = load_dataset(cfg.dataset, test_fraction=cfg.test_fraction, seed=cfg.seed,
                            image_size=cfg.image_size or None)
    else:                                   # the DiT's images x_0 in [-1, 1], as train-dit
        data = load_dataset(cfg.dataset, test_fraction=cfg.test_fraction, seed=cfg.seed,
                            normalization="symmetric")
    torch.manual_seed(cfg.seed)
    model = from_config(model_config(cfg))
    if args.init_from is not None:
        load_model(model, os.path.join(args.init_from, FINAL_MODEL))
    model.to(device)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    x_train = torch.from_numpy(data.x_train).to(dtype)                          # (M, Cin, H, W)
    dataset = TensorDataset(x_train, torch.from_numpy(data.y_train), torch.arange(len(x_train)))
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    loader = DataLoader(dataset, batch_size=cfg.batch_size // world, sampler=sampler, drop_last=True)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.epochs if not args.max_steps else min(args.max_steps, steps_per_epoch * cfg.epochs)
    warmup = min(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    if getattr(cfg, "optimizer", "adamw") == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                              weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    coefs = None
    if not is_vit and cfg.objective == "ddpm":
        diff = GaussianDiffusion(cfg.num_timesteps, cfg.beta_schedule)
        coefs = tuple(torch.from_numpy(c).to(dtype).to(device)
                      for c in (diff.sqrt_alphas_cumprod, diff.sqrt_one_minus_alphas_cumprod))
    step, records, start, loss = 0, [], time.perf_counter(), float("nan")
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        draws = None if is_vit else dit_draws(cfg, len(x_train), epoch, x_train.shape[1:], dtype)
        losses = []
        for xb, yb, idx in loader:
            if step >= total:
                break
            for group in opt.param_groups:
                group["lr"] = cosine_warmup_lr(step, cfg.lr, total, warmup, cfg.min_lr)
            xb, yb = xb.to(device), yb.to(device)
            batch_loss = (vit_loss(net, cfg, xb, yb, idx, draws) if is_vit
                          else dit_loss(net, cfg, xb, yb, idx, draws, coefs))
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()                  # DDP: gradients averaged over the processes here
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            losses.append(batch_loss.detach())
            step += 1
        if losses:
            loss = torch.stack(losses).mean()
            if world > 1:
                dist.all_reduce(loss)
                loss = loss / world
            loss = float(loss)
            records.append({"epoch": epoch + 1, "step": step, "train_loss": loss})
            if rank == 0:
                print(f"epoch {epoch + 1}: loss {loss:.4f} ({step} steps)", flush=True)
    seconds = time.perf_counter() - start
    summary = {"processes": world, "backend": dist.get_backend() if world > 1 else None,
               "device": device.type, "steps": step, "global_batch": cfg.batch_size,
               "seconds": seconds, "images_per_s": step * cfg.batch_size / max(seconds, 1e-9),
               "final_train_loss": loss, "init_from": args.init_from}
    if rank == 0:
        if is_vit:
            with torch.no_grad():
                logits = model(torch.from_numpy(data.x_test).to(dtype).to(device))
            summary["test_accuracy"] = float((logits.argmax(1).cpu().numpy() == data.y_test).mean())
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, CONFIG), asdict(cfg))
        save_model(model, os.path.join(out, FINAL_MODEL), config=asdict(cfg),
                   metadata={"trainer": "vca_ref.pytorch.train", "processes": str(world)})
        atomic_write(os.path.join(out, METRICS), "".join(json.dumps(r) + "\n" for r in records).encode())
        write_json(os.path.join(out, SUMMARY), summary)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv=None) -> int:
    summary = train(parse_args(argv))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, float) or math.isfinite(v)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
