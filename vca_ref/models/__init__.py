"""Whole models with hand-written forward and backward: TinyViT (classification) and TinyDiT (diffusion)."""
from vca_ref.models.dit import DIT_CONFIGS, DiTConfig, TinyDiT, create_dit
from vca_ref.models.vit import VIT_CONFIGS, TinyViT, ViTConfig, create_vit

__all__ = ["DIT_CONFIGS", "DiTConfig", "TinyDiT", "create_dit",
           "VIT_CONFIGS", "TinyViT", "ViTConfig", "create_vit"]
