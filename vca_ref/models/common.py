"""What TinyViT and TinyDiT share: the attention switch and config validation.

``attention="vca"`` builds a :class:`~vca_ref.nn.VisualContrastAttention` with the VCA options
of the config passed through; ``attention="mhsa"`` builds the quadratic baseline
:class:`~vca_ref.nn.MultiHeadSelfAttention`.  Both keep their parameters under the same
``qkv.*`` / ``proj.*`` names, so a model's state dict differs between the two only by the
VCA extras (``e_pos``, ``e_neg``, ``stage{1,2}.*``, ``dwc.*``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vca_ref.nn.checks import check_positive_int
from vca_ref.nn.mhsa import MultiHeadSelfAttention
from vca_ref.nn.module import check_float_dtype
from vca_ref.nn.vca import VisualContrastAttention
from vca_ref.ops.vca_config import int_pair

ATTENTIONS = ("vca", "mhsa")
VCA_OPTION_FIELDS = ("stage2_softmax", "tied_embeddings", "pool_queries", "use_dwconv", "differential",
                     "lambda_init_scale", "embed_init_scale")


@dataclass(frozen=True)
class TokenModelConfig:
    """The fields TinyViT's and TinyDiT's configs share: image, patch grid, widths, attention.

    Subclasses add their own fields (after these) and set ``num_prefix_tokens``.
    """
    img_size: int = 8                    # Hi = Wi
    patch_size: int = 2                  # p
    in_chans: int = 1                    # Cin
    num_classes: int = 10                # K
    dim: int = 32                        # C
    depth: int = 2                       # number of blocks
    num_heads: int = 2                   # h
    mlp_ratio: float = 2.0               # MLP hidden = mlp_ratio * C
    attention: str = "vca"               # "vca" | "mhsa"
    pool_size: tuple = (2, 2)            # VCA contrast grid (h', w')
    stage2_softmax: str = "joint"        # VCA options, see vca_ref.ops.vca_config.VCAConfig
    tied_embeddings: bool = False
    pool_queries: bool = True
    use_dwconv: bool = True
    differential: str = "both"
    lambda_init_scale: float = 1.0       # VCA design knobs (1 = the paper): lambda_init multiplier,
    embed_init_scale: float = 1.0        # std of the E+- initialisation

    num_prefix_tokens: ClassVar[int] = 0  # P: tokens before the patch grid

    def __post_init__(self):
        object.__setattr__(self, "pool_size", int_pair(self.pool_size, "config.pool_size"))

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.img_size // self.patch_size
        return g, g

    @property
    def num_tokens(self) -> int:
        """N = P + H*W."""
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]


def vca_options(cfg) -> dict:
    """The VCA ablation options of a model config, as keyword arguments."""
    return {k: getattr(cfg, k) for k in VCA_OPTION_FIELDS}


def make_attention(cfg, grid_size: tuple[int, int], num_prefix_tokens: int, layer_index: int,
                   rng, dtype):
    """Build block ``layer_index``'s attention from a model config.

    ``cfg`` needs ``attention``, ``dim``, ``num_heads``, ``pool_size`` and the VCA option fields.
    """
    if cfg.attention == "mhsa":
        return MultiHeadSelfAttention(cfg.dim, cfg.num_heads, seed=rng, dtype=dtype)
    return VisualContrastAttention(cfg.dim, cfg.num_heads, grid_size, cfg.pool_size,
                                   num_prefix_tokens, layer_index, **vca_options(cfg),
                                   seed=rng, dtype=dtype)


def check_model_config(cfg) -> None:
    """Validate the fields both configs share; raise ``ValueError``/``TypeError`` naming the field."""
    for name in ("img_size", "patch_size", "in_chans", "num_classes", "dim", "depth", "num_heads"):
        check_positive_int(getattr(cfg, name), f"config.{name}")
    if cfg.img_size % cfg.patch_size:
        raise ValueError(f"config.patch_size {cfg.patch_size} must divide config.img_size {cfg.img_size}")
    if cfg.dim % cfg.num_heads:
        raise ValueError(f"config.dim {cfg.dim} is not divisible by config.num_heads {cfg.num_heads}")
    if not cfg.mlp_ratio > 0:
        raise ValueError(f"config.mlp_ratio must be > 0, got {cfg.mlp_ratio!r}")
    if cfg.attention not in ATTENTIONS:
        raise ValueError(f"config.attention must be one of {ATTENTIONS}, got {cfg.attention!r}")
    grid = cfg.img_size // cfg.patch_size
    ph, pw = cfg.pool_size
    if cfg.attention == "vca" and (ph > grid or pw > grid):
        raise ValueError(f"config.pool_size {tuple(cfg.pool_size)} is larger than the patch grid "
                         f"({grid}, {grid})")
    check_float_dtype(cfg.dtype)
