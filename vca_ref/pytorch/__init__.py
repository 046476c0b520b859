"""VCA in PyTorch (optional: ``pip install vca_ref[torch]``): the layer, the models, the files.

* :class:`VisualContrastAttention` / :class:`MultiHeadSelfAttention`: ``torch.nn.Module`` layers
  with the NumPy layers' options, parameter names and layouts (docs/spec.md);
* :func:`vision_transformer` (a timm ``VisionTransformer`` with VCA in every block) and
  :class:`DiT` (the reference DiT's names), built from a ``vca_ref`` config by :func:`from_config`;
* :func:`load_model`, :func:`save_model`, :func:`load_run`: the NumPy package's safetensors files;
* ``python -m vca_ref.pytorch.train`` (``torchrun``-launchable): DistributedDataParallel training.

The core package never imports this subpackage or torch.
"""
from vca_ref.pytorch.attention import MultiHeadSelfAttention, VisualContrastAttention
from vca_ref.pytorch.checkpoint import from_numpy, load_model, load_run, save_model
from vca_ref.pytorch.models import DiT, from_config, vision_transformer

__all__ = ["VisualContrastAttention", "MultiHeadSelfAttention", "vision_transformer", "DiT",
           "from_config", "from_numpy", "load_model", "save_model", "load_run"]
