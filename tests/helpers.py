"""Shared test helpers: the VCA option matrix, random parameters, tensor comparison."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dataclasses

import numpy as np
import torch

import torch_oracle
from vca_ref import MultiHeadSelfAttention, VisualContrastAttention, ops
from vca_ref.ops.mhsa import mhsa_backward, mhsa_forward
from vca_ref.ops import vca_dwc, vca_stage1, vca_stage2, vca_tokens
from vca_ref.ops.softmax import SoftmaxCache
from vca_ref.ops.vca_variants import vca_pair

# Tiny base layer: C=8, h=2 (d=4), a non-square 3x4 grid pooled to an uneven 2x3 grid
# (3/2 and 4/3 do not divide: the bins overlap), one prefix token, block 3.
BASE = dict(dim=8, num_heads=2, grid_size=(3, 4), pool_size=(2, 3), num_prefix_tokens=1,
            layer_index=3)

# Every option combination that changes the computation (id -> overrides of BASE).
VCA_CASES = {
    "default": {},
    "separate_softmax": dict(stage2_softmax="separate"),
    "tied": dict(tied_embeddings=True),
    "tied_separate": dict(tied_embeddings=True, stage2_softmax="separate"),
    "no_pool": dict(pool_queries=False),
    "no_dwconv": dict(use_dwconv=False),
    "diff_stage1": dict(differential="stage1"),
    "diff_stage2": dict(differential="stage2"),
    "diff_stage2_separate": dict(differential="stage2", stage2_softmax="separate"),
    "diff_none": dict(differential="none"),
    "prefix0": dict(num_prefix_tokens=0),
    "prefix0_layer0": dict(num_prefix_tokens=0, layer_index=0),
    "layer11": dict(layer_index=11),
    "one_head": dict(num_heads=1),
    "four_heads": dict(num_heads=4),
    "square_uneven": dict(grid_size=(3, 3), pool_size=(2, 2)),
    "even_pool": dict(grid_size=(4, 2), pool_size=(2, 1)),
    "pool_is_grid": dict(grid_size=(2, 3), pool_size=(2, 3)),
    "pool_1x1": dict(pool_size=(1, 1)),
    "tall_grid": dict(grid_size=(5, 2), pool_size=(3, 2)),
    "everything_off": dict(num_prefix_tokens=0, pool_queries=False, use_dwconv=False,
                           differential="stage1", tied_embeddings=True),
    "stage2_no_pool_no_conv": dict(differential="stage2", pool_queries=False, use_dwconv=False),
}


def vca_kwargs(case: str) -> dict:
    return {**BASE, **VCA_CASES[case]}


def random_state(module, seed: int) -> dict:
    """Random non-zero values for EVERY parameter (norm weights too: never the 0/1 init)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in module.state_dict().items():
        if name in ("e_pos", "e_neg"):
            v = rng.standard_normal(p.shape)                     # N(0, 1), as the specification's init
        elif name.endswith("norm.weight"):
            v = 1.0 + 0.5 * rng.standard_normal(p.shape)         # around 1, never exactly 1
        else:
            v = 0.5 * rng.standard_normal(p.shape)               # weights, biases, lambdas, conv
        out[name] = v
    return out


# Tiny model sizes: a 3x3 patch grid pooled to an uneven 2x2 contrast grid (the bins overlap).
VIT_TINY = dict(img_size=6, patch_size=2, in_chans=2, num_classes=3, dim=8, depth=2, num_heads=2,
                mlp_ratio=2.0, pool_size=(2, 2))
DIT_TINY = dict(VIT_TINY, learn_sigma=True)


def random_model_state(model, seed: int) -> dict:
    """Random non-zero float64 values for every parameter of a whole model (adaLN gates too),
    scaled so activations stay O(1).

    Matrices N(0, 1/fan_in); vectors (biases, lambdas) N(0, 0.3^2); norm weights 1 + N(0, 0.3^2);
    E+- N(0, 1) (their init); tokens and tables N(0, 0.5^2).  Buffers keep their values.
    """
    rng = np.random.default_rng(seed)
    buffers = dict(model.named_buffers())
    out = {}
    for name, p in model.state_dict().items():
        shape, leaf = p.shape, name.split(".")[-1]
        if name in buffers:
            v = np.asarray(p, dtype=np.float64)
        elif leaf in ("e_pos", "e_neg"):
            v = rng.standard_normal(shape)
        elif name in ("cls_token", "pos_embed") or "embedding_table" in name:
            v = 0.5 * rng.standard_normal(shape)
        elif name.endswith("norm.weight") or name.endswith(("norm1.weight", "norm2.weight")):
            v = 1.0 + 0.3 * rng.standard_normal(shape)
        elif len(shape) >= 2:
            v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        else:
            v = 0.3 * rng.standard_normal(shape)
        out[name] = v
    return out


def randomised(model, seed: int = 1):
    """Load :func:`random_model_state` into ``model`` and return it."""
    model.load_state_dict(random_model_state(model, seed))
    return model


def make_vca(case_or_kwargs, seed: int = 0, dtype=np.float64) -> VisualContrastAttention:
    kw = vca_kwargs(case_or_kwargs) if isinstance(case_or_kwargs, str) else dict(case_or_kwargs)
    m = VisualContrastAttention(**kw, seed=seed, dtype=np.float64)
    m.load_state_dict(random_state(m, seed + 100))
    return m.to(dtype=dtype)


def make_mhsa(dim: int = 8, num_heads: int = 2, seed: int = 0, dtype=np.float64):
    m = MultiHeadSelfAttention(dim, num_heads, seed=seed, dtype=np.float64)
    m.load_state_dict(random_state(m, seed + 100))
    return m.to(dtype=dtype)


def tokens(module, batch: int = 2, seed: int = 0, dtype=np.float64):
    """A random input (B, N, C) for a module (N = P + H*W for VCA, 7 for MHSA)."""
    N = module.config.num_tokens if hasattr(module, "config") else 7
    return np.random.default_rng(seed).standard_normal((batch, N, module.dim)).astype(dtype)


def rel_err(ours, ref, floor: float = 0.0) -> float:
    """Relative error  max_i |ours_i - ref_i| / max(max_j |ref_j|, floor, 1e-300).

    Normwise: every entry's error is measured against the tensor's scale (its largest
    magnitude), so entries that are ~0 by symmetry (the key bias, whose gradient is zero by
    softmax's shift invariance) are not divided by their own round-off.  ``floor`` lifts the
    scale of a tensor that is itself ~0 (see :func:`compare`); 1e-300 only guards 0/0.
    """
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref), initial=0.0)
                 / max(float(np.max(np.abs(ref), initial=0.0)), floor, 1e-300))


def compare(pairs: dict, tol: float, dtype=None) -> None:
    """Assert ``rel_err(ours, ref, floor) <= tol`` for every named pair ``(ours, ref)``.

    ``floor`` = 1e-2 x the largest magnitude over ALL the reference tensors of the call, so a
    tensor whose true value is ~0 through a cancellation (the lambda gradients when E+ = E-,
    which RMSNorm's scale invariance makes ~1e-4 of the other gradients) is compared on the
    scale of the quantities it was computed from, not on its own round-off.  Shapes must
    match, and every ``ours`` must have ``dtype`` when given (the reference may be float64).
    On failure the message lists every tensor's error.
    """
    scale = max(float(np.max(np.abs(np.asarray(r, dtype=np.float64)), initial=0.0))
                for _, r in pairs.values())
    floor = 1e-2 * scale
    errs = {}
    for name, (ours, ref) in pairs.items():
        ours, ref = np.asarray(ours), np.asarray(ref)
        assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
        if dtype is not None:
            assert ours.dtype == np.dtype(dtype), f"{name}: dtype {ours.dtype}, expected {np.dtype(dtype)}"
        errs[name] = rel_err(ours, ref, floor)
    bad = sorted(k for k in errs if not errs[k] <= tol)
    assert not bad, (f"relative error above {tol:g} for {bad}:\n"
                     + "\n".join(f"  {k:<22} {v:.3e}" for k, v in errs.items()))


def softmax_outputs(cache, path: str = "") -> dict:
    """Every softmax output inside a (nested NamedTuple) cache, ``{dotted path: S}``.

    The path names the fields the walk went through, e.g. ``"s2.sm"`` for the joint Stage-II
    softmax of the paper's layer or ``"s2.stage.sm.1"`` for the second of two separate ones.
    """
    if isinstance(cache, SoftmaxCache):
        return {path: cache.y}
    if not isinstance(cache, tuple):
        return {}
    names = getattr(cache, "_fields", None) or [str(i) for i in range(len(cache))]
    out = {}
    for name, value in zip(names, cache):
        out.update(softmax_outputs(value, f"{path}.{name}" if path else name))
    return out


def float32_resolvable(m) -> bool:
    """False at the degenerate points where float32 cannot resolve VCA's gradients at 1e-4.

    With E+ = E- the two streams are equal, so a differential stage computes (1 - lambda) U:
    for |1 - lambda| < 0.1 its RMSNorm input is ~0 and in the eps regime, where every
    gradient through it is round-off amplified (PyTorch's own float32 misses the float64
    answer by ~1e-3 there).  Head dim 1 makes RMSNorm ~sign(z), with the same effect.
    These points are covered in float64 (oracle and finite differences).
    """
    cfg = getattr(m, "config", None)
    if cfg is None:                                   # MHSA: no RMSNorm, nothing degenerate
        return True
    if cfg.head_dim < 2:
        return False
    if cfg.tied_embeddings:
        return all(abs(1.0 - lam) >= 0.1 for lam in m.lambdas().values())
    return True


# --------------------------------------------------------------------------- op table
# One entry per op pair (and per mode that changes the math).  ``inputs`` are the
# differentiable arrays in forward-argument order, ``consts`` the fixed arguments.

@dataclass
class OpCase:
    name: str
    inputs: dict                         # name -> float64 array (differentiable)
    forward: Callable                    # forward(inputs) -> (out, cache)
    backward: Callable                   # backward(dout, cache) -> {name: grad}
    consts: dict = field(default_factory=dict)

    def cast(self, dtype) -> "OpCase":
        return OpCase(self.name, {k: np.asarray(v).astype(dtype) for k, v in self.inputs.items()},
                      self.forward, self.backward, self.consts)


def _pair_case(name, fwd, bwd, inputs, **consts) -> OpCase:
    names = list(inputs)

    def forward(inp):
        return fwd(*(inp[n] for n in names), **consts)

    def backward(dout, cache):
        g = bwd(dout, cache)
        g = g if isinstance(g, tuple) else (g,)
        return {n: gi for n, gi in zip(names, g) if gi is not None}
    return OpCase(name, inputs, forward, backward, consts)


def _vca_case(name, case) -> OpCase:
    m = make_vca(case, seed=7)
    return _params_case(name, *vca_pair(m.config), {"x": tokens(m, seed=8), **m.state_dict()},
                        m.config)


def _params_case(name, fwd, bwd, inputs, config) -> OpCase:
    """A layer pair ``fwd(x, params, config)``, ``bwd(dout, cache) -> (dx, grads)`` (MHSA, VCA)."""
    def forward(inp):
        return fwd(inp["x"], {k: v for k, v in inp.items() if k != "x"}, config)

    def backward(dout, cache):
        dx, g = bwd(dout, cache)
        return {"x": dx, **g}
    return OpCase(name, inputs, forward, backward, {"config": config})


def op_cases() -> dict[str, OpCase]:
    """Every op pair with tiny random float64 inputs (fixed seeds)."""
    r = np.random.default_rng(1234)
    n = r.standard_normal
    ce_labels = np.array([0, 5, 2, 2])
    cases = [
        _pair_case("linear", ops.linear_forward, ops.linear_backward,
                   dict(x=n((2, 3, 5)), w=n((4, 5)), b=n(4))),
        _pair_case("linear_nobias", ops.linear_forward, ops.linear_backward,
                   dict(x=n((2, 3, 5)), w=n((4, 5)))),
        _pair_case("layernorm_affine", ops.layernorm_forward, ops.layernorm_backward,
                   dict(x=n((2, 3, 6)), w=1 + 0.5 * n(6), b=n(6)), eps=1e-5),
        _pair_case("layernorm_plain", ops.layernorm_forward, ops.layernorm_backward,
                   dict(x=n((2, 3, 6))), eps=1e-6),
        _pair_case("rmsnorm", ops.rmsnorm_forward, ops.rmsnorm_backward,
                   dict(z=n((2, 3, 5)), w=1 + 0.5 * n(5)), eps=1e-5),
        _pair_case("gelu_erf", ops.gelu_forward, ops.gelu_backward, dict(x=2 * n((3, 7))),
                   approximate="none"),
        _pair_case("gelu_tanh", ops.gelu_forward, ops.gelu_backward, dict(x=2 * n((3, 7))),
                   approximate="tanh"),
        _pair_case("silu", ops.silu_forward, ops.silu_backward, dict(x=3 * n((3, 7)))),
        _pair_case("softmax", ops.softmax_forward, ops.softmax_backward, dict(x=2 * n((2, 3, 6)))),
        _pair_case("pool_uneven", ops.adaptive_avg_pool_forward, ops.adaptive_avg_pool_backward,
                   dict(x=n((2, 2, 5 * 7, 3))), grid=(5, 7), pool=(3, 4)),
        _pair_case("pool_uneven_tall", ops.adaptive_avg_pool_forward, ops.adaptive_avg_pool_backward,
                   dict(x=n((2, 7 * 3, 2))), grid=(7, 3), pool=(4, 2)),
        _pair_case("pool_even", ops.adaptive_avg_pool_forward, ops.adaptive_avg_pool_backward,
                   dict(x=n((2, 4 * 6, 3))), grid=(4, 6), pool=(2, 3)),
        _pair_case("dwconv", ops.dwconv3x3_forward, ops.dwconv3x3_backward,
                   dict(x=n((2, 3, 4, 5)), w=n((5, 1, 3, 3)), b=n(5))),
        _pair_case("lambda", ops.lambda_forward, ops.lambda_backward,
                   dict(lq1=0.5 * n(4), lk1=0.5 * n(4), lq2=0.5 * n(4), lk2=0.5 * n(4)),
                   lambda_init=ops.lambda_init_for_layer(2)),
        _pair_case("diff_combine", ops.diff_combine_forward, ops.diff_combine_backward,
                   dict(a=n((2, 3, 4)), b=n((2, 3, 4)), lam=np.asarray(0.3 + n()))),
        _pair_case("modulate", ops.modulate_forward, ops.modulate_backward,
                   dict(x=n((2, 3, 5)), shift=n((2, 5)), scale=n((2, 5)))),
        _pair_case("patch_embed", ops.patch_embed_forward, ops.patch_embed_backward,
                   dict(img=n((2, 3, 4, 6)), w=n((5, 3, 2, 2)), b=n(5))),
        _pair_case("cross_entropy", ops.cross_entropy_forward, ops.cross_entropy_backward,
                   dict(logits=2 * n((4, 6))), labels=ce_labels, label_smoothing=0.0),
        _pair_case("cross_entropy_smooth", ops.cross_entropy_forward, ops.cross_entropy_backward,
                   dict(logits=2 * n((4, 6))), labels=ce_labels, label_smoothing=0.1),
        _pair_case("mse", ops.mse_forward, ops.mse_backward,
                   dict(pred=n((2, 3, 4)), target=n((2, 3, 4)))),
        _pair_case("attention", ops.attention_forward, ops.attention_backward,
                   dict(q=n((2, 2, 3, 4)), k=n((2, 2, 5, 4)), v=n((2, 2, 5, 4)))),
        _params_case("mhsa", mhsa_forward, mhsa_backward,
                     {"x": n((2, 5, 8)), "qkv.weight": 0.5 * n((24, 8)), "qkv.bias": 0.5 * n(24),
                      "proj.weight": 0.5 * n((8, 8)), "proj.bias": 0.5 * n(8)}, 2),
        _vca_case("vca", "default"),
        _vca_case("vca_separate_tied_noconv", dict(vca_kwargs("tied_separate"), use_dwconv=False)),
        _vca_case("vca_stage1_nopool", dict(vca_kwargs("diff_stage1"), pool_queries=False)),
    ]
    return {c.name: c for c in cases}


def stage_cases() -> dict[str, OpCase]:
    """The stage-level pairs the VCA layer is composed of, tiny random float64 inputs (fixed seeds).

    h = 2 heads of d = 4 (C = 8), a 3x4 patch grid pooled to 2x3 (n = 6) after P = 1 prefix token,
    N = 13 tokens; every lambda and norm weight random and away from its init.
    """
    r = np.random.default_rng(4321)
    n_ = r.standard_normal
    B, h, d, C, grid, pool, P = 2, 2, 4, 8, (3, 4), (2, 3), 1
    HW, n, N = 12, 6, 13
    li, eps = ops.lambda_init_for_layer(3), 1e-5
    lam = lambda: np.asarray(0.4 + 0.3 * n_())                         # a 0-d lambda
    stage_in = lambda: dict(lam=lam(), norm_w=1 + 0.5 * n_(d))
    cases = [
        _pair_case("contrast_tokens", vca_tokens.contrast_tokens_forward,
                   vca_tokens.contrast_tokens_backward,
                   dict(q_patch=n_((B, h, HW, d)), E=n_((2, n, C))), grid_size=grid, pool_size=pool),
        _pair_case("contrast_tokens_one_stream", vca_tokens.contrast_tokens_forward,
                   vca_tokens.contrast_tokens_backward,
                   dict(q_patch=n_((B, h, HW, d)), E=n_((1, n, C))), grid_size=grid, pool_size=pool),
        _pair_case("embedding_tokens", vca_tokens.embedding_tokens_forward,
                   vca_tokens.embedding_tokens_backward, dict(E=n_((2, n, C))), batch=B, num_heads=h),
        _pair_case("stage1", vca_stage1.stage1_forward, vca_stage1.stage1_backward,
                   dict(T=n_((B, h, 2 * n, d)), k=n_((B, h, N, d)), v=n_((B, h, N, d)), **stage_in()),
                   lambda_init=li, eps=eps),
        _pair_case("stage2_joint", vca_stage2.stage2_forward, vca_stage2.stage2_backward,
                   dict(q=n_((B, h, N, d)), T=n_((B, h, 2 * n, d)), Vh=n_((B, h, n, d)), **stage_in()),
                   lambda_init=li, eps=eps),
        _pair_case("stage2_separate", vca_stage2.stage2_separate_forward,
                   vca_stage2.stage2_separate_backward,
                   dict(q=n_((B, h, N, d)), T=n_((B, h, 2 * n, d)), Vh=n_((B, h, n, d)), **stage_in()),
                   lambda_init=li, eps=eps),
        _pair_case("diff_readout", vca_stage2.diff_readout_forward, vca_stage2.diff_readout_backward,
                   dict(Sp=n_((B, h, N, n)), Sn=n_((B, h, N, n)), V=n_((B, h, n, d)), **stage_in()),
                   lambda_init=li, eps=eps),
        _pair_case("dwc_residual", vca_dwc.dwc_residual_forward, vca_dwc.dwc_residual_backward,
                   dict(o=n_((B, P + HW, C)), v_patch=n_((B, h, HW, d)), w=n_((C, 1, 3, 3)), b=n_(C)),
                   grid_size=grid),
    ]
    return {c.name: c for c in cases}


# --------------------------------------------------------------------------- oracle runs

TOL = {np.float64: 1e-10, np.float32: 1e-4}      # bounds on rel_err against the oracle


def wide(a):
    """A float64 torch tensor holding exactly the values of ``a`` (any float dtype)."""
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def torch_twin(module, tdtype=torch.float64):
    """The oracle module with the same options, loaded from our state dict (the specification's names)."""
    if isinstance(module, VisualContrastAttention):
        cfg = dataclasses.asdict(module.config)
        cfg["eps"] = cfg.pop("norm_eps")
        tm = torch_oracle.TorchVCA(**cfg, dtype=tdtype)
    else:
        tm = torch_oracle.TorchMHSA(module.dim, module.num_heads, dtype=tdtype)
    # the interchange contract (docs/spec.md): torch loads our state dict as it is (strict: same names and shapes)
    tm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in module.state_dict().items()})
    return tm


def module_pairs(m, x, seed=9):
    """Our module vs its float64 oracle twin on the same values: ``{name: (ours, reference)}``."""
    y = m.forward(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = m.backward(dy)
    grads = m.named_grads()

    tm = torch_twin(m)
    xt = wide(x).requires_grad_(True)
    yt = tm(xt)
    yt.backward(wide(dy))
    tparams = dict(tm.named_parameters())
    assert set(tparams) == set(grads) == set(m.state_dict())

    pairs = {"y": (y, yt.detach().numpy()), "dx": (dx, xt.grad.numpy())}
    pairs.update({f"d[{k}]": (grads[k], p.grad.numpy()) for k, p in tparams.items()})
    return pairs
