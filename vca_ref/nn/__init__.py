"""Thin modules that hold parameters and chain the op pairs."""
from .attention import MultiHeadSelfAttention, VisualContrastAttention
from .module import Module

__all__ = ["Module", "MultiHeadSelfAttention", "VisualContrastAttention"]
