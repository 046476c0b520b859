"""vca_ref: a from-scratch NumPy/CuPy reference implementation of Visual-Contrast Attention.

Every layer has a hand-written forward AND backward pass (:mod:`vca_ref.ops`), thin modules
hold parameters under PyTorch names (:mod:`vca_ref.nn`), and :func:`vca_ref.gradcheck.gradcheck`
proves gradients against central differences.
"""
from vca_ref import backend, ops
from vca_ref.gradcheck import gradcheck, gradcheck_module
from vca_ref.nn import Module, MultiHeadSelfAttention, VisualContrastAttention
from vca_ref.ops.vca_config import VCAConfig

__version__ = "0.1.0"
__all__ = ["backend", "ops", "gradcheck", "gradcheck_module", "Module", "MultiHeadSelfAttention",
           "VisualContrastAttention", "VCAConfig", "__version__"]
