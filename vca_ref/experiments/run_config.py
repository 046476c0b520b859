"""Run configurations: every field checked before anything on disk changes.

``ViTTrainConfig`` and ``DiTTrainConfig`` call :func:`check_run_fields` (and their own checks)
in ``__post_init__``, so a configuration that exists is a valid one.  Each problem raises a
:class:`ConfigError` naming the field, the value and what is expected; the CLI prints the field
as its ``--flag``.  :func:`read_run_config` reads a run folder's ``config.json`` back with errors
that name the file, and says so when the folder holds a different kind of run.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import fields

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
ATTENTIONS = ("vca", "mhsa")
RUN_COMMANDS = {"ViTTrainConfig": "train-vit", "DiTTrainConfig": "train-dit"}


class ConfigError(ValueError):
    """A run-config field with a bad value; ``field`` names it, ``problem`` says what is expected."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")


# --------------------------------------------------------------------------- one field
def check_choice(cfg, name: str, choices) -> None:
    """``cfg.name`` must be one of ``choices``."""
    v = getattr(cfg, name)
    if not isinstance(v, str) or v not in choices:
        raise ConfigError(name, f"must be one of {list(choices)}, got {v!r}")


def check_int(cfg, name: str, lo: int) -> None:
    """``cfg.name`` must be an integer >= ``lo``."""
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ConfigError(name, f"must be an integer >= {lo}, got {v!r}")


def check_real(cfg, name: str, lo: float, hi: float = math.inf, lo_open: bool = False,
               hi_open: bool = False) -> None:
    """``cfg.name`` must be a finite real number in the interval lo..hi (open ends as given)."""
    v = getattr(cfg, name)
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open or hi == math.inf else ']'}"
    real = not isinstance(v, bool) and isinstance(v, numbers.Real)
    if not real or not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        raise ConfigError(name, f"must be a finite number in {interval}, got {v!r}")


def check_overrides(cfg, model_config_cls, own_flags=("attention", "dtype")) -> None:
    """``cfg.model_overrides`` must be a dict of ``model_config_cls`` fields (set with ``--set``)."""
    o = cfg.model_overrides
    if not isinstance(o, dict):
        raise ConfigError("model_overrides", f"must be a dict of model fields, got {o!r}")
    defaults = {f.name: f.default for f in fields(model_config_cls) if f.name not in own_flags}
    valid = list(defaults)
    for k, v in o.items():
        if k in own_flags:
            raise ConfigError("model_overrides", f"sets {k!r}: use --{k} (the run's own option) instead")
        if k not in valid:
            raise ConfigError("model_overrides", f"has unknown {model_config_cls.__name__} field {k!r}; "
                                                 f"expected one of {valid}")
        kind = _kind_of(defaults[k])
        if kind is not None and not _is_kind(v, kind):
            raise ConfigError("model_overrides", f"sets {k}={v!r}; expected {kind} "
                                                 f"(the default is {defaults[k]!r})")


def _kind_of(default) -> str | None:
    """What an override of a field with this default must be (None: left to the model config)."""
    for t, kind in ((bool, "true or false"), (int, "an integer"), (float, "a finite number"),
                    (str, "a string")):
        if isinstance(default, t):
            return kind
    return None


def _is_kind(v, kind: str) -> bool:
    real = isinstance(v, numbers.Real) and not isinstance(v, bool)
    return {"true or false": isinstance(v, bool),
            "an integer": real and isinstance(v, numbers.Integral),
            "a finite number": real and math.isfinite(v),
            "a string": isinstance(v, str)}[kind]


# --------------------------------------------------------------------------- the shared fields
def check_run_fields(cfg, model_names, model_config_cls, datasets) -> None:
    """The checks every training configuration shares (ViT and DiT)."""
    check_choice(cfg, "dataset", datasets)
    check_choice(cfg, "model", sorted(model_names))
    check_choice(cfg, "attention", ATTENTIONS)
    check_overrides(cfg, model_config_cls)
    for name in ("epochs", "batch_size"):
        check_int(cfg, name, 1)
    check_int(cfg, "seed", 0)
    check_real(cfg, "lr", 0.0, lo_open=True)
    for name in ("weight_decay", "warmup_epochs", "min_lr", "clip_grad"):
        check_real(cfg, name, 0.0)
    check_real(cfg, "test_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    check_choice(cfg, "device", DEVICES)
    check_choice(cfg, "dtype", DTYPES)
    if not isinstance(cfg.out_dir, str) or not cfg.out_dir:
        raise ConfigError("out_dir", f"must be a folder path, got {cfg.out_dir!r}")
    if not isinstance(cfg.progress, bool):
        raise ConfigError("progress", f"must be True or False, got {cfg.progress!r}")


# --------------------------------------------------------------------------- config.json
def read_json(path: str):
    """``json.load`` of ``path`` with errors that name the file."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, expected a JSON file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the file is damaged") from None


def config_from_dict(cls, d: dict, where: str = "config"):
    """Build a run-config dataclass from a dict, rejecting unknown keys by name."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(d).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} fields {unknown}; expected some of {names}")
    return cls(**d)


def read_run_config(run_dir: str, cls, others=()):
    """The configuration in ``run_dir/config.json`` as a ``cls``; errors name the file.

    ``others``: the other run-config classes; a folder holding one of those kinds of run gets
    an error saying which command made it (e.g. a ``train-vit`` run given to ``sample``).
    """
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a run folder (it does not exist or is a file)")
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run folder")
    d = read_json(path)
    if isinstance(d, dict):
        keys = set(d)
        for other in others:
            names = {f.name for f in fields(other)}
            if keys <= names and not keys <= {f.name for f in fields(cls)}:
                raise ValueError(f"{run_dir} holds a {RUN_COMMANDS.get(other.__name__, other.__name__)} "
                                 f"run ({path} has {other.__name__} fields); expected a "
                                 f"{RUN_COMMANDS.get(cls.__name__, cls.__name__)} run")
    return config_from_dict(cls, d, where=path)
