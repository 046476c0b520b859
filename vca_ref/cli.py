"""The ``vca-ref`` command line (also ``python -m vca_ref``).

    vca-ref train-vit  [options]     train a TinyViT classifier (VCA or MHSA) on digits
    vca-ref train-dit  [options]     train a TinyDiT (DDPM or flow matching) on digits
    vca-ref sample     RUN_DIR       draw a sample grid from a trained DiT run
    vca-ref compare    [--task vit|dit] [options]
                                     train VCA and MHSA with the same seed and budget and print
                                     a table (accuracy or Fréchet distance, parameters, MACs,
                                     wall time, images/s); saves curves and sample grids;
                                     --seeds 0,1,2: mean ± std and the paired difference
    vca-ref ablate     [--variants V,V] [--seeds S,S] [options]
                                     the paper's ablation variants and MHSA over seeds
    vca-ref sweep      FIELD VALUE…  one config field over values, over seeds

Every run writes into a run folder (``--out-dir``): config.json, metrics.jsonl, checkpoints,
plots.  A folder that already holds a run is continued with --resume or started again with
--overwrite, never replaced silently.  ``vca-ref COMMAND --help`` lists every option with its
default.  Every error is one line, ``vca-ref COMMAND: error: ...``, exit status 2 (--debug shows
the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from vca_ref import __version__
from vca_ref.cli_args import add_config_args, config_from_args, count_arg, finite_arg, seed_arg
from vca_ref.cli_errors import USER_ERRORS, describe_error


def _force_single_thread_blas() -> None:
    """Tiny models run fastest with one BLAS thread per process on a small shared machine."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(os.environ.get("VCA_REF_BLAS_THREADS", "1")))
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


# --------------------------------------------------------------------------- commands
def _train(args, cfg_cls, train_fn, describe) -> int:
    """Shared body of train-vit / train-dit: config from options, run, one summary line."""
    cfg = config_from_args(cfg_cls, args, attention=args.attention)
    s = train_fn(cfg, resume=args.resume, stop_after=args.stop_after, overwrite=args.overwrite)
    if s.get("kind") == "stopped":
        print(f"stopped after epoch {s['epoch']} (checkpoint in {cfg.out_dir}); continue with --resume")
    else:
        print(f"{describe(s)}  {s['images_per_s']:.0f} images/s  -> {cfg.out_dir}")
    return 0


def cmd_train_vit(args) -> int:
    from vca_ref.experiments.classify import ViTTrainConfig, train_vit
    return _train(args, ViTTrainConfig, train_vit,
                  lambda s: f"test accuracy {s['test_acc']:.4f}  params {s['params']:,}")


def cmd_train_dit(args) -> int:
    from vca_ref.experiments.generate import DiTTrainConfig, train_dit
    return _train(args, DiTTrainConfig, train_dit,
                  lambda s: f"final train loss {s['train_loss']:.4f}  validation loss {s['val_loss']:.4f}")


def cmd_sample(args) -> int:
    from vca_ref.experiments.sampling import sample_from_run
    if args.out is not None and (os.path.isdir(args.out) or not args.out.lower().endswith(".png")):
        raise ValueError(f"argument --out: expected the path of a .png file, got {args.out!r}")
    r = sample_from_run(args.run_dir, num_per_class=args.per_class, seed=args.seed,
                        sampler=args.sampler, num_steps=args.steps, cfg_scale=args.cfg_scale,
                        grid_path=args.out)
    print(f"{len(r['labels'])} samples ({r['sampler']}, {r['num_steps']} steps, guidance "
          f"{r['cfg_scale']}) -> {r['grid_path']}")
    return 0


def cmd_compare(args) -> int:
    if args.seeds is not None:
        return cmd_compare_seeds(args)
    if args.out_dir is None:
        args.out_dir = os.path.join("runs", "compare-dit" if args.task == "dit" else "compare")
    if args.task == "dit":
        from vca_ref.experiments.compare_dit import METRIC, compare_dit
        from vca_ref.experiments.generate import DiTTrainConfig
        cfg = config_from_args(DiTTrainConfig, args, attention="vca")
        rows = compare_dit(cfg, out_dir=args.out_dir, overwrite=args.overwrite)
        metric = METRIC
    else:
        from vca_ref.experiments.classify import ViTTrainConfig
        from vca_ref.experiments.compare import compare_vit
        cfg = config_from_args(ViTTrainConfig, args, attention="vca")
        rows = compare_vit(cfg, out_dir=args.out_dir, overwrite=args.overwrite)
        metric = ("test_acc", "test accuracy ↑")
    from vca_ref.experiments.compare import format_table
    print(format_table(rows, metric))
    print(f"(run folders, metrics, table and plots under {args.out_dir})")
    return 0


# --------------------------------------------------------------------------- research grids
# `ablate`, `sweep` and `compare --seeds`: grids of (label, seed) run folders, resumable, one
# progress bar (vca_ref.experiments.grid); mean ± std over seeds and paired differences.
# the timed default grid (docs/reproduction.md): TinyViT on the 8x8 digits, no shift augmentation
ABLATE_VIT_DEFAULTS = {"dataset": "digits", "model": "tiny-digits", "epochs": 12, "augment_shift": 0}
ABLATE_SEEDS = "0,1,2,3,4"
ABLATE_MINUTES = "about 6 minutes"      # measured: 5.4 min of CPU time (docs/reproduction.md)
_ABLATE_EPILOG = f"""\
variants: full (VCA as specified), stage1-only, stage2-only (the other stage plain softmax
attention), no-pooling (contrast tokens from E± alone), tied-embeddings (E⁺ = E⁻), no-dwconv,
separate-softmax (two Stage-II softmaxes), mhsa (the baseline).

The default grid: 8 variants x seeds {ABLATE_SEEDS} of TinyViT tiny-digits on the 8x8 digits,
{ABLATE_VIT_DEFAULTS['epochs']} epochs, no shift augmentation (these replace the train-vit defaults of
--dataset, --model, --epochs and --augment-shift unless given; `sweep` uses them too).  It takes
{ABLATE_MINUTES} on 2 idle CPU cores (5.4 minutes of CPU time measured, one
process).  --task dit trains TinyDiTs with the train-dit defaults and judges them with one
TinyViT (OUT/classifier); it is not timed.

Every cell is a run folder OUT/VARIANT/seedS; rerunning the same command reads finished cells
back and resumes a stopped one, so a killed grid continues where it stopped."""


def _grid_config(args, defaults: dict):
    """(task, run config, seeds) of a grid command; bad options fail before anything trains."""
    from vca_ref.experiments.grid import parse_seeds
    from vca_ref.experiments.tasks import make_task
    task = make_task(args.task)
    seeds = parse_seeds(args.seeds)
    extra = {k: v for k, v in defaults.items() if task.name == "vit" and k not in vars(args)}
    return task, config_from_args(task.config_class, args, **extra), seeds


def _print_grid(results: dict, out_dir: str) -> int:
    print(results["table"])
    print(f"(run folders, table.md, results.json and {os.path.basename(results['plot'])} under {out_dir})")
    return 0


def cmd_ablate(args) -> int:
    from vca_ref.experiments.ablate import parse_variants, run_ablation
    variants = parse_variants(args.variants)
    task, cfg, seeds = _grid_config(args, ABLATE_VIT_DEFAULTS)
    out_dir = args.out_dir or os.path.join("runs", f"ablate-{task.name}")
    return _print_grid(run_ablation(task, cfg, variants, seeds, out_dir, cfg.progress), out_dir)


def cmd_sweep(args) -> int:
    from vca_ref.experiments.sweep import run_sweep
    task, cfg, seeds = _grid_config(args, ABLATE_VIT_DEFAULTS)
    out_dir = args.out_dir or os.path.join("runs", f"sweep-{args.field}")
    results = run_sweep(task, cfg, args.field, args.values, seeds, out_dir, cfg.progress)
    return _print_grid(results, out_dir)


def cmd_compare_seeds(args) -> int:
    from vca_ref.experiments.compare import compare_seeds
    if getattr(args, "overwrite", False):
        raise ValueError("--overwrite does not apply with --seeds: the grid reads finished cells back "
                         "and resumes stopped ones; choose another --out-dir to start again")
    task, cfg, seeds = _grid_config(args, {})
    out_dir = args.out_dir or os.path.join("runs", f"compare-seeds-{task.name}")
    return _print_grid(compare_seeds(task, cfg, seeds, out_dir, cfg.progress), out_dir)


def _add_grid_commands(sub, compare_parser, vit_cls, dit_cls):
    """The `ablate` and `sweep` parsers (returned), and `--seeds` for `compare`."""
    from vca_ref.experiments.ablate import VARIANTS
    compare_parser.add_argument("--seeds", default=None, metavar="S,S,...",
                                help="train both attentions with each seed and report mean ± std and "
                                     "the paired difference VCA − MHSA (e.g. 0,1,2)")
    skip = ("model_overrides", "attention", "out_dir", "seed")
    ab = sub.add_parser("ablate", help="the paper's ablation variants and MHSA over seeds, with error bars",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_ABLATE_EPILOG,
                        description="Train every variant with every seed (same split and budget) and "
                                    "report mean ± std, the paired difference to full VCA with its "
                                    "95 % interval, parameters, MACs and measured images/s.")
    ab.add_argument("--variants", default=",".join(VARIANTS), metavar="V,V,...",
                    help=f"variants to train, in table order (default: all, {','.join(VARIANTS)})")
    sw = sub.add_parser("sweep", help="one config field over several values, over seeds",
                        description="Train the model once per VALUE of FIELD and seed; report accuracy, "
                                    "parameters, MACs and images/s per value and plot accuracy "
                                    "against cost.  Examples: sweep pool_size 1x1 2x2 3x3 4x4; sweep "
                                    "lambda_init_scale 0 0.5 1; sweep embed_init_scale 0.1 1; "
                                    "sweep img_size 14 21 28.")
    sw.add_argument("field", help="a model-config or run-config field, e.g. pool_size, img_size")
    sw.add_argument("values", nargs="*", metavar="VALUE",
                    help="JSON (2, 0.5, [2, 3], true), AxB for a pair, or a word")
    for p, cmd, out, seeds in ((ab, cmd_ablate, "runs/ablate-TASK", ABLATE_SEEDS),
                               (sw, cmd_sweep, "runs/sweep-FIELD", "0,1,2")):
        p.add_argument("--task", choices=("vit", "dit"), default="vit",
                       help="vit: test accuracy of a TinyViT; dit: Fréchet distance of a TinyDiT's "
                            "samples on TinyViT features (default: vit)")
        p.add_argument("--seeds", default=seeds, metavar="S,S,...", help=f"seeds (default: {seeds})")
        p.add_argument("--out-dir", default=None, help=f"grid folder (default: {out})")
        add_config_args(p, vit_cls, dit_cls, skip=skip)
        p.set_defaults(func=cmd)
    return ab, sw


# --------------------------------------------------------------------------- parser
def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its checkpoint")
    _add_overwrite(p)
    p.add_argument("--stop-after", type=count_arg, default=None, metavar="EPOCHS",
                   help="stop after this many epochs as a preemption would (resume later)")


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in --out-dir and start again")


def build_parser() -> argparse.ArgumentParser:
    from vca_ref.experiments.classify import ViTTrainConfig
    p = argparse.ArgumentParser(prog="vca-ref", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--version", action="version", version=f"vca_ref {__version__}")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    tv = sub.add_parser("train-vit", help="train a TinyViT classifier")
    tv.add_argument("--attention", choices=("vca", "mhsa"), default="vca", help="attention type")
    add_config_args(tv, ViTTrainConfig)
    _add_run_args(tv)
    tv.set_defaults(func=cmd_train_vit)

    from vca_ref.experiments.generate import DiTTrainConfig
    td = sub.add_parser("train-dit", help="train a TinyDiT (DDPM or flow matching)")
    td.add_argument("--attention", choices=("vca", "mhsa"), default="vca", help="attention type")
    add_config_args(td, DiTTrainConfig)
    _add_run_args(td)
    td.set_defaults(func=cmd_train_dit)

    sp = sub.add_parser("sample", help="draw a sample grid from a trained DiT run",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sp.add_argument("run_dir", help="a train-dit run folder")
    sp.add_argument("--sampler", choices=("ddim", "ddpm", "euler", "heun"), default=None,
                    help="sampler (default: ddim for DDPM runs, heun for flow runs)")
    sp.add_argument("--steps", type=count_arg, default=None,
                    help="sampling steps (default: ddim 50, ddpm 250, euler 50, heun 25)")
    sp.add_argument("--cfg-scale", type=finite_arg, default=2.0, help="classifier-free guidance scale")
    sp.add_argument("--per-class", type=count_arg, default=8, help="samples per class (one row each)")
    sp.add_argument("--seed", type=seed_arg, default=0, help="sampling seed")
    sp.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples.png)")
    sp.set_defaults(func=cmd_sample)

    cp = sub.add_parser("compare", help="train VCA and MHSA side by side and print a table")
    cp.add_argument("--task", choices=("vit", "dit"), default="vit",
                    help="vit: classification accuracy; dit: generation quality (default: vit)")
    add_config_args(cp, ViTTrainConfig, DiTTrainConfig, skip=("model_overrides", "attention", "out_dir"))
    cp.add_argument("--out-dir", default=None,
                    help="output folder (default: runs/compare, or runs/compare-dit with --task dit)")
    _add_overwrite(cp)
    cp.set_defaults(func=cmd_compare)
    ab, sw = _add_grid_commands(sub, cp, ViTTrainConfig, DiTTrainConfig)
    for sub_p in (tv, td, sp, cp, ab, sw):
        sub_p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="show the Python traceback of an error")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    _force_single_thread_blas()
    t0 = time.perf_counter()
    try:
        rc = args.func(args)
    except USER_ERRORS as e:
        if args.debug:
            traceback.print_exc()
        print(f"vca-ref {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vca-ref {args.command}: interrupted; a training run continues with --resume",
              file=sys.stderr)
        return 130
    print(f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    return rc
