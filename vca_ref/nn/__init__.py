"""Thin modules that hold parameters and chain the op pairs."""
from .attention import MultiHeadSelfAttention, VisualContrastAttention
from .embedders import LabelEmbedder, TimestepEmbedder
from .layers import LayerNorm, Linear, Mlp, PatchEmbed
from .module import Module

__all__ = ["Module", "MultiHeadSelfAttention", "VisualContrastAttention", "Linear", "LayerNorm", "Mlp",
           "PatchEmbed", "TimestepEmbedder", "LabelEmbedder"]
