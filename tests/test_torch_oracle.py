"""Every op and both modules against the independent PyTorch autograd oracle (tests/torch_oracle.py).

Outputs and ALL gradients (every input and every parameter) are compared after one forward
and one backward with the same random upstream gradient.  Error measure (helpers.rel_err):

    rel = max_i |ours_i - torch_i| / max(max_j |torch_j|, 1e-2 * S)

i.e. normwise relative to the tensor's own scale, with a floor of 1e-2 x S, S the largest
magnitude among all tensors of that comparison (so a gradient that is ~0 by a cancellation is
judged on the scale it was computed from).  Bounds: 1e-10 in float64, 1e-4 in float32.

The reference is always the oracle run in float64.  For a float32 check, our float32 op or
module runs on float32 values and the oracle runs in float64 on exactly those values (the
same float32 inputs, parameters and upstream gradient, widened), so the error measured is
our float32 round-off alone -- not the sum of ours and torch's float32 round-off, which on
ill-conditioned corners (head dim 1, where RMSNorm is nearly a sign function) is mostly
torch's.  Our float32 results must also BE float32 (outputs and every gradient).
Float32 module checks run at points float32 can resolve (helpers.float32_resolvable: not at
E+ = E- with lambda ~ 1, not head dim 1); those degenerate points are checked in float64.
"""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_oracle as T
from helpers import (TOL, VCA_CASES, compare, float32_resolvable, make_mhsa, make_vca, module_pairs,
                     op_cases, tokens, vca_kwargs, wide)
from vca_ref import MultiHeadSelfAttention, VisualContrastAttention

OPS = op_cases()


def _vca_op(t, c):
    cfg = dataclasses.asdict(c["config"])
    cfg["eps"] = cfg.pop("norm_eps")
    mod = T.TorchVCA(**cfg, dtype=t["x"].dtype)
    return torch.func.functional_call(mod, {k: v for k, v in t.items() if k != "x"}, (t["x"],))


TORCH_OPS = {
    "linear": lambda t, c: T.linear(t["x"], t["w"], t["b"]),
    "linear_nobias": lambda t, c: T.linear(t["x"], t["w"]),
    "layernorm_affine": lambda t, c: T.layernorm(t["x"], t["w"], t["b"], c["eps"]),
    "layernorm_plain": lambda t, c: T.layernorm(t["x"], eps=c["eps"]),
    "rmsnorm": lambda t, c: T.rmsnorm(t["z"], t["w"], c["eps"]),
    "gelu_erf": lambda t, c: T.gelu(t["x"], "none"),
    "gelu_tanh": lambda t, c: T.gelu(t["x"], "tanh"),
    "silu": lambda t, c: T.silu(t["x"]),
    "softmax": lambda t, c: T.softmax(t["x"]),
    "pool_uneven": lambda t, c: T.adaptive_avg_pool_tokens(t["x"], c["grid"], c["pool"]),
    "pool_uneven_tall": lambda t, c: T.adaptive_avg_pool_tokens(t["x"], c["grid"], c["pool"]),
    "pool_even": lambda t, c: T.adaptive_avg_pool_tokens(t["x"], c["grid"], c["pool"]),
    "dwconv": lambda t, c: T.dwconv3x3(t["x"], t["w"], t["b"]),
    "lambda": lambda t, c: T.lambda_(t["lq1"], t["lk1"], t["lq2"], t["lk2"], c["lambda_init"]),
    "diff_combine": lambda t, c: T.diff_combine(t["a"], t["b"], t["lam"]),
    "modulate": lambda t, c: T.modulate(t["x"], t["shift"], t["scale"]),
    "patch_embed": lambda t, c: T.patch_embed(t["img"], t["w"], t["b"]),
    "cross_entropy": lambda t, c: T.cross_entropy(t["logits"], torch.from_numpy(c["labels"]),
                                                  c["label_smoothing"]),
    "cross_entropy_smooth": lambda t, c: T.cross_entropy(t["logits"], torch.from_numpy(c["labels"]),
                                                         c["label_smoothing"]),
    "mse": lambda t, c: T.mse(t["pred"], t["target"]),
    "attention": lambda t, c: F.scaled_dot_product_attention(t["q"], t["k"], t["v"]),
    "mhsa": lambda t, c: torch.func.functional_call(
        T.TorchMHSA(t["x"].shape[-1], c["config"], dtype=t["x"].dtype),
        {k: v for k, v in t.items() if k != "x"}, (t["x"],)),
    "vca": _vca_op,
    "vca_separate_tied_noconv": _vca_op,
    "vca_stage1_nopool": _vca_op,
}


def test_every_op_has_an_oracle():
    assert set(TORCH_OPS) == set(OPS)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(OPS))
def test_op_matches_torch(name, dtype):
    case = OPS[name].cast(dtype)
    out, cache = case.forward(case.inputs)
    out = np.asarray(out)
    dout = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
    grads = case.backward(dout, cache)

    tin = {k: wide(v).requires_grad_(True) for k, v in case.inputs.items()}
    tout = TORCH_OPS[name](tin, case.consts)
    tgrads = torch.autograd.grad(tout, list(tin.values()), wide(dout))

    assert set(grads) == set(case.inputs)
    pairs = {"out": (out, tout.detach().numpy())}
    pairs.update({f"d{k}": (grads[k], g.numpy()) for k, g in zip(tin, tgrads)})
    compare(pairs, TOL[dtype], dtype)


# --------------------------------------------------------------------------- modules

def check_module(m, x, dtype):
    if dtype == np.float32:
        assert float32_resolvable(m), "pick a seed away from the degenerate points (see helpers)"
    compare(module_pairs(m, x), TOL[dtype], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(VCA_CASES))
def test_vca_module_matches_torch(case, dtype):
    seed = 11
    if dtype == np.float32:             # the first draw from 11 on that float32 can resolve
        while not float32_resolvable(make_vca(case, seed=seed)):
            seed += 1
    m = make_vca(case, seed=seed, dtype=dtype)
    check_module(m, tokens(m, batch=2, seed=12, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_mhsa_module_matches_torch(num_heads, dtype):
    m = make_mhsa(8, num_heads, seed=13, dtype=dtype)
    check_module(m, tokens(m, batch=3, seed=14, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_vca_module_matches_torch_larger_layer(dtype):
    """C=48, h=3, 7x6 grid pooled unevenly to 4x4, class token, block 9, the specification's default init."""
    m = VisualContrastAttention(48, 3, (7, 6), (4, 4), 1, 9, seed=15, dtype=dtype)
    check_module(m, tokens(m, batch=2, seed=16, dtype=dtype), dtype)


@pytest.mark.parametrize("case", ["default", "tied", "diff_none"])
def test_state_dict_round_trip_from_torch(case):
    """Parameters created by torch load into our module and give torch's output."""
    kw = vca_kwargs(case)
    torch.manual_seed(0)
    tm = T.TorchVCA(**kw, dtype=torch.float64)
    m = VisualContrastAttention(**kw, seed=1, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = tokens(m, seed=3)
    compare({"y": (m.forward(x), tm(torch.from_numpy(x)).detach().numpy())}, 1e-10)


def test_mhsa_state_dict_round_trip_from_torch():
    torch.manual_seed(0)
    tm = T.TorchMHSA(8, 2)
    m = MultiHeadSelfAttention(8, 2, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = tokens(m, seed=3)
    compare({"y": (m.forward(x), tm(torch.from_numpy(x)).detach().numpy())}, 1e-10)
