"""Configuration of one Visual-Contrast Attention layer: sizes and the ablation options.

Every option of the specification's (docs/spec.md) options table is a field here:

==================  ==========  ============================================================
field               default     alternative
==================  ==========  ============================================================
stage2_softmax      "joint"     "separate": two softmaxes of size n (the other reading)
tied_embeddings     False       True: E- = E+ (the differential signal collapses; sanity check)
pool_queries        True        False: contrast tokens from E+- alone ("embeddings only")
use_dwconv          True        False: no depthwise-conv residual
differential        "both"      "stage1" / "stage2" / "none": the non-differential stage uses
                                T+ alone with plain softmax attention (no lambda, no RMSNorm,
                                no (1 - lambda_init) scale)
==================  ==========  ============================================================

One design knob that is not an ablation of the paper (default: the paper's value):
``lambda_init_scale`` (1.0) multiplies lambda_init in both stages, lambda_init = s (0.8 - 0.6 exp(-0.3 l));
it must keep lambda_init in [0, 1), so that the output scale (1 - lambda_init) stays positive.

Parameters that an option makes unused are NOT created (and are absent from the state
dict): ``e_neg`` when the embeddings are tied or no stage is differential;
``stage{j}.*`` when stage j is not differential; ``dwc.*`` when the conv is off.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vca_ref.ops.lambdas import lambda_init_for_layer

STAGE2_SOFTMAX = ("joint", "separate")
DIFFERENTIAL = ("both", "stage1", "stage2", "none")
LAMBDA_NAMES = ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")
PAPER_OPTIONS = {"stage2_softmax": "joint", "tied_embeddings": False, "pool_queries": True,
                 "use_dwconv": True, "differential": "both"}


def is_int(v) -> bool:
    """True for Python/NumPy integers, False for bools and floats (3.5 must not become 3)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_pair(v, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> a pair of positive ints; ``TypeError``/``ValueError`` naming ``name``."""
    if is_int(v):
        v = (v, v)
    try:
        a, b = v
        if not (is_int(a) and is_int(b)):
            raise TypeError
        a, b = int(a), int(b)
    except Exception:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be positive, got {(a, b)}")
    return a, b


@dataclass(frozen=True)
class VCAConfig:
    """Sizes and options of a VCA layer (validated on construction)."""
    dim: int
    num_heads: int
    grid_size: tuple[int, int]          # (H, W) patch grid
    pool_size: tuple[int, int]          # (h', w') contrast grid
    num_prefix_tokens: int = 0          # P (1 for a class token)
    layer_index: int = 0                # l, sets lambda_init
    stage2_softmax: str = "joint"
    tied_embeddings: bool = False
    pool_queries: bool = True
    use_dwconv: bool = True
    differential: str = "both"
    norm_eps: float = 1e-5
    lambda_init_scale: float = 1.0      # s in lambda_init = s (0.8 - 0.6 exp(-0.3 l))

    def __post_init__(self):
        object.__setattr__(self, "grid_size", int_pair(self.grid_size, "grid_size"))
        object.__setattr__(self, "pool_size", int_pair(self.pool_size, "pool_size"))
        if not is_int(self.dim) or not is_int(self.num_heads) or self.dim < 1 or self.num_heads < 1:
            raise ValueError(f"dim and num_heads must be positive ints, got {self.dim!r}, {self.num_heads!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        (H, W), (ph, pw) = self.grid_size, self.pool_size
        if ph > H or pw > W:
            raise ValueError(f"pool_size {self.pool_size} is larger than the token grid {self.grid_size}")
        for name in ("num_prefix_tokens", "layer_index"):
            v = getattr(self, name)
            if not is_int(v):
                raise TypeError(f"{name} must be an int >= 0, got {v!r}")
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        for name in ("tied_embeddings", "pool_queries", "use_dwconv"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}")
        s = self.lambda_init_scale
        if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)) \
                or not 0 <= s < float("inf") or not self.lambda_init < 1:
            raise ValueError(f"lambda_init_scale must be >= 0 and keep lambda_init = s (0.8 - 0.6 "
                             f"exp(-0.3 l)) below 1 at layer {self.layer_index}, got {s!r}")
        if self.stage2_softmax not in STAGE2_SOFTMAX:
            raise ValueError(f"stage2_softmax must be one of {STAGE2_SOFTMAX}, got {self.stage2_softmax!r}")
        if self.differential not in DIFFERENTIAL:
            raise ValueError(f"differential must be one of {DIFFERENTIAL}, got {self.differential!r}")

    # -------------------------------------------------------------- derived sizes
    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def num_contrast_tokens(self) -> int:
        return self.pool_size[0] * self.pool_size[1]

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    @property
    def lambda_init(self) -> float:
        return self.lambda_init_scale * lambda_init_for_layer(self.layer_index)

    @property
    def stage1_differential(self) -> bool:
        return self.differential in ("both", "stage1")

    @property
    def stage2_differential(self) -> bool:
        return self.differential in ("both", "stage2")

    def changed_options(self) -> dict:
        """The options set away from the paper's choice, ``{field: value}`` (empty for the paper's layer)."""
        return {name: getattr(self, name) for name, default in PAPER_OPTIONS.items()
                if getattr(self, name) != default}

    @property
    def is_paper_layer(self) -> bool:
        """True when every option is the paper's choice (the layer of ops/vca.py)."""
        return not self.changed_options()

    @property
    def has_e_neg(self) -> bool:
        return not self.tied_embeddings and self.differential != "none"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names (PyTorch, docs/spec.md) and shapes, in state-dict order."""
        C, d, n = self.dim, self.head_dim, self.num_contrast_tokens
        shapes = {"qkv.weight": (3 * C, C), "qkv.bias": (3 * C,),
                  "proj.weight": (C, C), "proj.bias": (C,),
                  "e_pos": (1, n, C)}
        if self.has_e_neg:
            shapes["e_neg"] = (1, n, C)
        for j, on in ((1, self.stage1_differential), (2, self.stage2_differential)):
            if on:
                for name in LAMBDA_NAMES:
                    shapes[f"stage{j}.{name}"] = (d,)
                shapes[f"stage{j}.norm.weight"] = (d,)
        if self.use_dwconv:
            shapes["dwc.weight"] = (C, 1, 3, 3)
            shapes["dwc.bias"] = (C,)
        return shapes
