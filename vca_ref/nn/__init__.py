"""Thin modules that hold parameters and chain the op pairs."""
from vca_ref.nn.embedders import LabelEmbedder, TimestepEmbedder
from vca_ref.nn.layers import LayerNorm, Linear, Mlp, PatchEmbed
from vca_ref.nn.mhsa import MultiHeadSelfAttention
from vca_ref.nn.module import Module
from vca_ref.nn.vca import VisualContrastAttention

__all__ = ["Module", "MultiHeadSelfAttention", "VisualContrastAttention", "Linear", "LayerNorm", "Mlp",
           "PatchEmbed", "TimestepEmbedder", "LabelEmbedder"]
