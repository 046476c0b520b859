"""Checkpoints as safetensors: model weights, and the full training state for ``--resume``.

Two kinds of file, both plain safetensors written and read by the ``safetensors`` library (see
:mod:`vca_ref.io.safetensors_format`; no pickle):

1. **Model file** (``save_module`` / ``load_into``): the module's ``state_dict()`` under its
   PyTorch names and layouts, nothing else, so ``safetensors.torch.load_file(path)`` gives a dict
   that ``torch_model.load_state_dict`` accepts.  Optional string metadata (e.g. ``config`` JSON).

2. **Training-state file** (``save_training_state`` / ``load_training_state``): one file with
   namespaced keys and metadata

       model.<name>             model parameters and buffers
       optim.step, optim.<state>.<name>     optimiser state (e.g. optim.exp_avg.head.weight)
       ema.<name>               EMA averages
       __metadata__: format="vca_ref.training_state", format_version, step, config (JSON),
                     optimizer (JSON: class + hparams), ema (JSON: decay),
                     rng (JSON: {name: numpy bit_generator.state}), plus caller's extras

Loading is all-or-nothing: the file is parsed and validated (layout, then names, shapes, dtypes
of every section against the objects to fill, and every floating tensor finite: a file holding
NaN or inf comes from a diverged run and is refused) BEFORE any of them is touched; the first
problem raises a ``ValueError``/``TypeError`` naming the file and the entry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from vca_ref.io.safetensors_format import load_file, load_file_with_metadata, read_metadata, save_file

TRAINING_STATE_FORMAT = "vca_ref.training_state"
TRAINING_STATE_VERSION = "1"
SECTIONS = ("model", "optim", "ema")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")

__all__ = ["save_file", "load_file", "load_file_with_metadata", "read_metadata", "save_module",
           "check_module_state", "check_finite_tensors", "load_into", "save_training_state",
           "load_training_state", "TrainingState"]


# --------------------------------------------------------------------------- model files
def save_module(module, path: str, metadata: dict | None = None, config: dict | None = None) -> None:
    """Write ``module.state_dict()`` (PyTorch names/layouts) atomically; ``config`` goes in as JSON."""
    meta = dict(metadata or {})
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True)
    save_file(module.state_dict(), path, metadata=meta or None)


def check_module_state(module, state: dict, strict: bool = True, exact_dtype: bool = False,
                       where: str = "checkpoint") -> None:
    """Raise unless ``state`` can be loaded into ``module``: names, shapes and floating dtypes.

    ``strict``: the names must be exactly the module's.  ``exact_dtype``: each array must already
    have the module's dtype (otherwise any float dtype is accepted and cast on load).
    """
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state)
    extra = sorted(k for k in state if k not in own)
    if extra or (strict and missing):
        raise ValueError(f"{where} does not match the model: "
                         + "; ".join(s for s in (f"missing keys {missing}" if strict and missing else "",
                                                 f"unexpected keys {extra}" if extra else "") if s))
    for k, v in state.items():
        if np.dtype(v.dtype).kind != "f":
            raise TypeError(f"{where} entry {k!r} has dtype {v.dtype}, expected a floating dtype "
                            f"(the model is {module.dtype})")
        if exact_dtype and np.dtype(v.dtype) != module.dtype:
            raise TypeError(f"{where} entry {k!r} has dtype {v.dtype}, expected {module.dtype}")
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{where} entry {k!r} has shape {tuple(v.shape)}, "
                             f"expected {tuple(own[k].shape)}")


def check_finite_tensors(tensors: dict, where: str) -> None:
    """Raise ``ValueError`` naming the first floating entry of ``tensors`` that holds NaN or inf."""
    for k, v in tensors.items():
        if np.dtype(v.dtype).kind == "f" and not np.isfinite(v).all():
            bad = int((~np.isfinite(v)).sum())
            raise ValueError(f"{where} entry {k!r} holds NaN or inf values ({bad} of {v.size}): the "
                             "run that wrote it had diverged; use an earlier checkpoint")


def load_into(module, path: str, strict: bool = True, exact_dtype: bool = False) -> dict[str, str]:
    """Load a model file into ``module`` (validated first; the module is untouched on error).

    Returns the file's metadata.  Works for files written by ``safetensors.torch.save_file``.
    A file holding NaN or inf is refused.
    """
    tensors, metadata = load_file_with_metadata(path)
    check_module_state(module, tensors, strict=strict, exact_dtype=exact_dtype, where=path)
    check_finite_tensors(tensors, where=path)
    module.load_state_dict(tensors, strict=strict)
    return metadata


# --------------------------------------------------------------------------- RNG state
def _rng_table(rng) -> dict:
    if rng is None:
        return {}
    if isinstance(rng, np.random.Generator):
        return {"default": rng}
    if isinstance(rng, dict) and all(isinstance(g, np.random.Generator) for g in rng.values()):
        return dict(rng)
    raise TypeError("rng must be a np.random.Generator or a dict name -> np.random.Generator, "
                    f"got {type(rng).__name__}")


def _json_default(o):
    if isinstance(o, np.ndarray):            # MT19937 keeps its key as an array
        return o.tolist()
    if isinstance(o, np.integer):
        return int(o)
    raise TypeError(f"cannot encode {type(o).__name__} as JSON")


# --------------------------------------------------------------------------- training state
@dataclass
class TrainingState:
    """What :func:`load_training_state` returns besides filling the objects it was given."""
    step: int
    config: dict | None = None
    metadata: dict = field(default_factory=dict)


def save_training_state(path: str, model, optimizer=None, ema=None, step: int = 0, rng=None,
                        config: dict | None = None, metadata: dict | None = None) -> None:
    """Write model + optimiser + EMA + step + RNG state to one safetensors file, atomically.

    ``rng``: a Generator or a dict name -> Generator (e.g. ``{"data": ..., "noise": ...}``).
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {"format": TRAINING_STATE_FORMAT, "format_version": TRAINING_STATE_VERSION,
            "step": str(int(step))}
    if optimizer is not None:
        tensors.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
        meta["optimizer"] = json.dumps({"class": type(optimizer).__name__, "hparams": optimizer.hparams()})
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
        meta["ema"] = json.dumps({"decay": ema.decay})
    gens = _rng_table(rng)
    if gens:
        meta["rng"] = json.dumps({k: g.bit_generator.state for k, g in gens.items()}, default=_json_default)
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True)
    for k, v in (metadata or {}).items():
        if k in meta:
            raise ValueError(f"metadata key {k!r} is reserved by the training-state format")
        meta[k] = v
    save_file(tensors, path, metadata=meta)


def _json_meta(path: str, meta: dict, key: str):
    """``json.loads(meta[key])`` (None when absent) with an error naming the file and key."""
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except ValueError as e:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON ({e})") from None


def _section(tensors: dict, name: str) -> dict:
    p = name + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def load_training_state(path: str, model, optimizer=None, ema=None, rng=None) -> TrainingState:
    """Validate everything, then fill ``model`` (and ``optimizer``, ``ema``, ``rng`` if given).

    Generators in ``rng`` (same structure as when saving) get their saved state in place.
    Returns the step, the config and the raw metadata.
    """
    tensors, meta = load_file_with_metadata(path)
    if meta.get("format") != TRAINING_STATE_FORMAT:
        raise ValueError(f"{path}: not a training-state checkpoint (metadata format is "
                         f"{meta.get('format')!r}, expected {TRAINING_STATE_FORMAT!r}); "
                         "a model-only file loads with vca_ref.io.checkpoint.load_into")
    if meta.get("format_version") != TRAINING_STATE_VERSION:
        raise ValueError(f"{path}: training-state format_version {meta.get('format_version')!r}, "
                         f"expected {TRAINING_STATE_VERSION!r}")
    stray = sorted(k for k in tensors if not any(k.startswith(s + ".") for s in SECTIONS))
    if stray:
        raise ValueError(f"{path}: keys outside the sections {SECTIONS}: {stray[:5]}")
    try:
        step = int(meta["step"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: metadata 'step' must be an integer, got {meta.get('step')!r}") from None

    # ---- 1. validate every section against what it will fill (nothing touched yet)
    model_state = _section(tensors, "model")
    check_module_state(model, model_state, where=f"{path} [model]")
    check_finite_tensors(tensors, where=path)
    optim_state = _section(tensors, "optim")
    if optimizer is not None:
        saved = _json_meta(path, meta, "optimizer") or {}
        if not optim_state or saved.get("class") != type(optimizer).__name__:
            raise ValueError(f"{path}: holds optimiser state of {saved.get('class')!r}, "
                             f"expected {type(optimizer).__name__!r}")
        optimizer.check_state_dict(optim_state)
    ema_state = _section(tensors, "ema")
    if ema is not None:
        if not ema_state:
            raise ValueError(f"{path}: holds no EMA state, but an EMA was given to fill")
        ema.check_state_dict(ema_state)
    gens = _rng_table(rng)
    saved_rng = _json_meta(path, meta, "rng") or {}
    for k, g in gens.items():
        if k not in saved_rng:
            raise ValueError(f"{path}: holds no RNG state named {k!r} (it has {sorted(saved_rng)})")
        kind = saved_rng[k].get("bit_generator") if isinstance(saved_rng[k], dict) else None
        if kind not in _BIT_GENERATORS or kind != type(g.bit_generator).__name__:
            raise ValueError(f"{path}: RNG {k!r} was a {kind!r}, expected "
                             f"{type(g.bit_generator).__name__!r}")
        try:                                      # set it on a throw-away generator first
            type(g.bit_generator)().state = saved_rng[k]
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: RNG state {k!r} is malformed ({e})") from None

    config = _json_meta(path, meta, "config")

    # ---- 2. assign
    model.load_state_dict(model_state)
    if optimizer is not None:
        optimizer.load_state_dict(optim_state)
    if ema is not None:
        ema.load_state_dict(ema_state)
    for k, g in gens.items():
        g.bit_generator.state = saved_rng[k]
    return TrainingState(step=step, config=config, metadata=meta)
