"""Whole models with hand-written forward and backward: TinyViT (classification) and TinyDiT (diffusion)."""
from .dit import DIT_CONFIGS, DiTConfig, TinyDiT, create_dit
from .vit import VIT_CONFIGS, TinyViT, ViTConfig, create_vit

__all__ = ["DIT_CONFIGS", "DiTConfig", "TinyDiT", "create_dit",
           "VIT_CONFIGS", "TinyViT", "ViTConfig", "create_vit"]
