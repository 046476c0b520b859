"""Whole-model benchmark: one training step of TinyViT / TinyDiT, NumPy against PyTorch CPU eager.

Three columns for every model: the NumPy reference alone (every override of :mod:`vca_ref.fast`
off), the NumPy code with its overrides on (the default, "numpy" in the JSON) and PyTorch.

A training step is forward + loss + backward + AdamW update on a fixed batch:

* ViT: cross-entropy on class labels, ``AdamW(lr=1e-3, weight_decay=0.05)``;
* DiT: mean-squared error of the output against a fixed random target (the noise-prediction
  loss without the sampling of t and noise, which is the same cheap NumPy/torch code on both
  sides), labels without dropout, same AdamW.

The PyTorch side (:func:`vca_ref.pytorch.from_numpy`: timm's ``VisionTransformer`` with the VCA
layer of :mod:`vca_ref.pytorch`, or its DiT) is built from the NumPy model and holds the same
parameter values; the first forward of both is compared before timing (``max_abs_diff``).
Reported: median seconds per step over interleaved rounds (see :mod:`.common`), images/s, and the
ratios NumPy images/s / PyTorch images/s and reference / fast step time.
Results go to ``<out>/model_bench.json``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from vca_ref import fast
from vca_ref.models.dit import create_dit
from vca_ref.models.vit import create_vit
from vca_ref.ops.losses import (cross_entropy_backward, cross_entropy_forward, mse_backward,
                          mse_forward)
from vca_ref.train.optim import AdamW
from benchmarks import common
from benchmarks.common import save_results_json, torch

LR, WD = 1e-3, 0.05
# (name, kind, model size, overrides, batch, rounds)
FULL_CASES = [
    ("vit-tiny-mnist-vca", "vit", "tiny-mnist", dict(attention="vca"), 128, 9),
    ("vit-tiny-mnist-mhsa", "vit", "tiny-mnist", dict(attention="mhsa"), 128, 9),
    ("vit-deit-width-vca", "vit", "tiny-mnist",
     dict(attention="vca", img_size=56, patch_size=4, dim=192, num_heads=3, depth=2, mlp_ratio=4.0,
          pool_size=(7, 7)), 16, 7),
    ("dit-tiny-mnist-vca", "dit", "tiny-mnist", dict(attention="vca"), 128, 9),
    ("dit-tiny-mnist-mhsa", "dit", "tiny-mnist", dict(attention="mhsa"), 128, 9),
]
QUICK_CASES = [("vit-tiny-digits-vca", "vit", "tiny-digits", dict(attention="vca"), 8, 2),
               ("dit-tiny-digits-vca", "dit", "tiny-digits", dict(attention="vca"), 8, 2)]
SUMMARY_CASE = "vit-tiny-mnist-vca"


def _batch(model, kind: str, B: int, seed: int):
    cfg = model.config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, cfg.in_chans, cfg.img_size, cfg.img_size)).astype(np.float32)
    y = rng.integers(0, cfg.num_classes, size=B)
    if kind == "vit":
        return dict(x=x, y=y)
    t = rng.integers(0, 1000, size=B).astype(np.float32)
    target = rng.standard_normal((B, cfg.out_chans, cfg.img_size, cfg.img_size)).astype(np.float32)
    return dict(x=x, y=y, t=t, target=target)


def _numpy_step(model, kind: str, batch: dict, overrides: bool = True):
    """One training step with every override of vca_ref.fast on (fast) or off (reference)."""
    opt = AdamW(model, lr=LR, weight_decay=WD)

    def step():
        with fast.enabled(overrides):
            return _train_step(model, kind, batch, opt)
    return step


def _train_step(model, kind: str, batch: dict, opt):
    if kind == "vit":
        loss, c = cross_entropy_forward(model.forward(batch["x"]), batch["y"])
        model.backward(cross_entropy_backward(1.0, c))
    else:
        loss, c = mse_forward(model.forward(batch["x"], batch["t"], batch["y"]), batch["target"])
        model.backward(mse_backward(1.0, c)[0])
    opt.step()
    return loss


def _torch_step(tmodel, kind: str, batch: dict):
    F = torch.nn.functional
    opt = torch.optim.AdamW(tmodel.parameters(), lr=LR, weight_decay=WD)
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}

    def step():
        opt.zero_grad(set_to_none=True)
        if kind == "vit":
            loss = F.cross_entropy(tmodel(tb["x"]), tb["y"])
        else:
            loss = F.mse_loss(tmodel(tb["x"], tb["t"], tb["y"]), tb["target"])
        loss.backward()
        opt.step()
        return loss
    return step


def bench_case(name, kind, size, overrides, batch_size, rounds, with_torch=True, seed=0,
               settle: float = common.SETTLE_S) -> dict:
    """Time one model's training step on both sides; returns the JSON fields."""
    make = create_vit if kind == "vit" else create_dit
    kw = {} if kind == "vit" else dict(zero_init=False)   # adaLN-Zero would zero every branch
    model = make(size, seed=seed, **kw, **overrides)
    batch = _batch(model, kind, batch_size, seed)
    out = {"name": name, "model": kind, "size": size, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in overrides.items()},
           "batch": batch_size, "rounds": rounds, "num_parameters": model.num_parameters(),
           "tokens": model.config.num_tokens, "macs_fwd_per_image": int(model.macs())}
    fns = {}
    tmodel = None
    if with_torch and torch is not None:
        from vca_ref.pytorch import from_numpy
        try:
            tmodel = from_numpy(model)
        except ImportError as e:           # timm (the ViT) without a matching torchvision
            out["torch_skipped"] = str(e)
            print(f"{name}: no PyTorch column: {e}")
    if tmodel is not None:
        args = (batch["x"],) if kind == "vit" else (batch["x"], batch["t"], batch["y"])
        ref = model.forward(*args)
        with torch.no_grad():
            tref = tmodel(*(torch.from_numpy(a) for a in args)).numpy()
        out["max_abs_diff_first_forward"] = float(np.abs(ref - tref).max())
        fns["torch"] = _torch_step(tmodel, kind, batch)
    fns = {"numpy": _numpy_step(model, kind, batch), "reference": _numpy_step(model, kind, batch, False),
           **fns}
    t, cpu = common.interleaved_medians(fns, rounds, settle=settle)
    out["reference_s"], out["reference_cpu_s"] = t["reference"], cpu["reference"]
    out["reference_over_fast"] = t["reference"] / t["numpy"]
    out["numpy_s"] = t["numpy"]
    out["numpy_images_per_s"] = batch_size / t["numpy"]
    out["torch_s"] = t.get("torch")
    out["torch_images_per_s"] = batch_size / t["torch"] if "torch" in t else None
    out["numpy_over_torch_images_per_s"] = t["torch"] / t["numpy"] if "torch" in t else None
    out["numpy_cpu_s"], out["torch_cpu_s"] = cpu["numpy"], cpu.get("torch")
    out["numpy_over_torch_images_per_cpu_s"] = cpu["torch"] / cpu["numpy"] if "torch" in cpu else None
    return out


def run_model_bench(out: str | None = "benchmarks/results", *, quick: bool = False,
                    threads: int | None = None, cases=None, rounds: int | None = None,
                    with_torch: bool = True, verbose: bool = True) -> dict:
    """Run the training-step benchmark; returns the result dict (also ``<out>/model_bench.json``)."""
    threads = threads or common.blas_threads()
    limiter = common.set_threads(threads)   # noqa: F841  (keeps the BLAS limit alive)
    t0 = time.time()
    res = {"benchmark": "model", "quick": quick, "machine": common.machine_info(threads),
           "conventions": {"step": "forward + loss + backward + AdamW(lr=1e-3, wd=0.05) on a fixed batch",
                           "columns": "reference_s: every override of vca_ref.fast off; numpy_s: the "
                                      "overrides on (fast); torch_s: PyTorch eager",
                           "time": "median wall-clock seconds per step over interleaved rounds "
                                   "(*_cpu_s: median process CPU seconds of the same runs)",
                           "images_per_s": "batch / median step time",
                           "dit": "MSE against a fixed random target, no label dropout, adaLN gates non-zero"},
           "cases": []}
    for case in (cases or (QUICK_CASES if quick else FULL_CASES)):
        name, kind, size, overrides, B, r = case
        c = bench_case(name, kind, size, overrides, B, rounds or r, with_torch=with_torch,
                       settle=0.005 if quick else common.SETTLE_S)
        res["cases"].append(c)
        if verbose:
            ratio = c["numpy_over_torch_images_per_s"]
            tim = c["torch_images_per_s"]
            print(f"{name:22s} B={B:3d} N={c['tokens']:4d} | reference {c['reference_s'] * 1e3:8.1f} ms"
                  f" | fast {c['numpy_s'] * 1e3:8.1f} ms {c['numpy_images_per_s']:8.1f} img/s"
                  f" | ref/fast {c['reference_over_fast']:.2f} | PyTorch "
                  + ("-" if tim is None else f"{c['torch_s'] * 1e3:8.1f} ms {tim:8.1f} img/s")
                  + ("" if ratio is None else f" | NumPy/PyTorch images/s {ratio:.2f}"
                     f" (per CPU s {c['numpy_over_torch_images_per_cpu_s']:.2f})"
                     f" (first-forward max diff {c['max_abs_diff_first_forward']:.1e})"), flush=True)
    tc = next((c for c in res["cases"] if c["name"] == SUMMARY_CASE), None)
    if tc is not None and tc["numpy_over_torch_images_per_s"] is not None:
        res["figures"] = {"vit_step_numpy_over_torch_images_per_s": {
            "value": tc["numpy_over_torch_images_per_s"],
            "cpu_time_value": tc["numpy_over_torch_images_per_cpu_s"]}}
        if verbose:
            print(f"vit_step_numpy_over_torch_images_per_s ({SUMMARY_CASE}): "
                  f"{tc['numpy_over_torch_images_per_s']:.3f}")
    res["elapsed_s"] = time.time() - t0
    if out is not None:
        path = res["json_path"] = save_results_json(res, out, "model_bench.json")
        if verbose:
            print(f"wrote {path}")
    return res


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m benchmarks.model", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="two tiny models: a fast smoke run")
    p.add_argument("--threads", type=int, default=None, help="BLAS and PyTorch threads (default: BLAS's)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per model (default: per-case table)")
    p.add_argument("--only", type=str, default=None, help="comma list of case names to run")
    p.add_argument("--no-torch", action="store_true", help="NumPy only")
    return p


def main(argv=None) -> int:
    """``python -m benchmarks.model [--quick] [--out DIR] ...``; returns an exit code."""
    args = build_parser().parse_args(argv)
    cases = None
    if args.only:
        names = args.only.split(",")
        cases = [c for c in FULL_CASES + QUICK_CASES if c[0] in names]
    run_model_bench(args.out, quick=args.quick, threads=args.threads, cases=cases, rounds=args.rounds,
                    with_torch=not args.no_torch)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
