"""The NumPy package's safetensors files, read and written from PyTorch models.

A model file of :mod:`vca_ref.io.checkpoint` is a plain ``state_dict`` under the PyTorch names
and layouts of docs/spec.md plus string metadata (``config`` JSON, ...), so:

* :func:`load_model` fills a PyTorch model from such a file (every name, shape and value checked
  before the model is touched; values cast to the model's dtype);
* :func:`save_model` writes a PyTorch model's ``state_dict`` in the same format, atomically, with
  its metadata, for :func:`vca_ref.io.checkpoint.load_into` to read into the NumPy model;
* :func:`load_run` builds the PyTorch model of a ``vca-ref train-vit`` / ``train-dit`` run folder
  (``config.json`` + ``model.safetensors``).
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

from vca_ref.backend import to_numpy
from vca_ref.experiments.classify import ViTTrainConfig
from vca_ref.experiments.generate import DiTTrainConfig
from vca_ref.experiments.run_config import read_run_config
from vca_ref.experiments.runner import CONFIG, FINAL_MODEL
from vca_ref.io.checkpoint import check_finite_tensors
from vca_ref.io.safetensors_format import load_file_with_metadata, save_file
from vca_ref.models import DIT_CONFIGS, VIT_CONFIGS
from vca_ref.nn import MultiHeadSelfAttention as NumpyMHSA
from vca_ref.nn import VisualContrastAttention as NumpyVCA
from vca_ref.pytorch.attention import MultiHeadSelfAttention, VisualContrastAttention
from vca_ref.pytorch.models import from_config


def numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    """``model.state_dict()`` as NumPy arrays on the host (the names unchanged)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def check_state(model: nn.Module, state: dict, where: str) -> None:
    """Raise unless ``state`` ({name: array}) has exactly ``model``'s names, shapes, floating dtypes."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"{where} does not match the model: missing keys {missing}, unexpected keys {extra}")
    for k, v in state.items():
        if np.dtype(v.dtype).kind != "f":
            raise TypeError(f"{where} entry {k!r} has dtype {v.dtype}, expected a floating dtype")
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{where} entry {k!r} has shape {tuple(v.shape)}, "
                             f"expected {tuple(own[k].shape)}")
    check_finite_tensors(state, where)


def load_model(model: nn.Module, path: str) -> dict[str, str]:
    """Load a vca_ref model file into ``model`` (validated first, untouched on error); returns its metadata."""
    tensors, metadata = load_file_with_metadata(path)
    check_state(model, tensors, where=path)
    own = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(v).to(own[k].dtype) for k, v in tensors.items()})
    return metadata


def save_model(model: nn.Module, path: str, metadata: dict | None = None,
               config: dict | None = None) -> None:
    """Write ``model.state_dict()`` as the NumPy package does (atomically); ``config`` goes in as JSON."""
    meta = dict(metadata or {})
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True)
    save_file(numpy_state(model), path, metadata=meta or None)


def from_numpy(module) -> nn.Module:
    """The PyTorch layer or model of a ``vca_ref`` one (VCA, MHSA, TinyViT, TinyDiT), same values and dtype."""
    dtype = getattr(torch, np.dtype(module.dtype).name)
    if isinstance(module, NumpyVCA):
        cfg = module.config
        twin = VisualContrastAttention(cfg.dim, cfg.num_heads, cfg.grid_size, cfg.pool_size,
                                       cfg.num_prefix_tokens, cfg.layer_index, **cfg.changed_options(),
                                       lambda_init_scale=cfg.lambda_init_scale, dtype=dtype)
    elif isinstance(module, NumpyMHSA):
        twin = MultiHeadSelfAttention(module.dim, module.num_heads, dtype=dtype)
    else:
        twin = from_config(module.config)
    state = {k: to_numpy(v) for k, v in module.state_dict().items()}       # from the host or a device
    check_state(twin, state, where=type(module).__name__)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return twin


def model_config(run_cfg):
    """The ``vca_ref`` ViTConfig / DiTConfig of a run configuration (as the run built it)."""
    overrides = dict(run_cfg.model_overrides)
    if isinstance(run_cfg, ViTTrainConfig):
        if run_cfg.image_size:
            overrides.setdefault("img_size", run_cfg.image_size)
        table = VIT_CONFIGS
    else:
        table = DIT_CONFIGS
    return table[run_cfg.model](attention=run_cfg.attention, dtype=run_cfg.dtype, **overrides)


def read_config(run_dir: str):
    """The run configuration of ``run_dir``: a ViTTrainConfig or a DiTTrainConfig."""
    path = os.path.join(run_dir, CONFIG)
    try:
        with open(path) as f:
            keys = set(json.load(f))
    except (OSError, ValueError):
        keys = set()                         # read_run_config names the problem
    is_dit = "objective" in keys or "num_timesteps" in keys
    if is_dit:
        return read_run_config(run_dir, DiTTrainConfig, others=(ViTTrainConfig,))
    return read_run_config(run_dir, ViTTrainConfig, others=(DiTTrainConfig,))


def load_run(run_dir: str, file: str = FINAL_MODEL):
    """``(model, run_cfg)``: the PyTorch model of a run folder, filled from its ``file``."""
    run_cfg = read_config(run_dir)
    path = os.path.join(run_dir, file)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: the run in {run_dir} has not finished")
    model = from_config(model_config(run_cfg))
    load_model(model, path)
    return model, run_cfg


__all__ = ["load_model", "save_model", "load_run", "from_numpy", "read_config", "model_config", "numpy_state",
           "check_state"]
