"""Bad input: every case raises a clear ValueError/TypeError naming the problem and the expected
value; a failed load_state_dict leaves the module untouched; the float32/float64 dtype rule."""
import numpy as np
import pytest
import torch

from helpers import make_mhsa, make_vca, random_state, tokens
from vca_ref import MultiHeadSelfAttention, VisualContrastAttention
from vca_ref.models import DiTConfig, TinyDiT, TinyViT, ViTConfig
from vca_ref.nn import LabelEmbedder, LayerNorm, Linear, Mlp, PatchEmbed, TimestepEmbedder

# C=8, h=2, a 3x4 grid, one class token: N = 1 + 3*4 = 13
KW = dict(dim=8, num_heads=2, grid_size=(3, 4), pool_size=(2, 3), num_prefix_tokens=1)


@pytest.fixture(params=["vca", "mhsa"])
def module(request):
    return make_vca(KW) if request.param == "vca" else make_mhsa(8, 2)


def x_for(m, dtype=np.float64):
    return tokens(m, batch=2, dtype=dtype)


# --------------------------------------------------------------------------- shapes


def test_wrong_rank(module):
    x = x_for(module)
    with pytest.raises(ValueError, match=r"x must have rank 3, got shape \(13, 8\)|"
                                         r"x must have rank 3, got shape \(7, 8\)"):
        module.forward(x[0])
    with pytest.raises(ValueError, match=r"x must have rank 3, got shape \(1, 2, \d+, 8\)"):
        module.forward(x[None])


def test_wrong_channel_count(module):
    with pytest.raises(ValueError, match=r"x must have last dimension 8, got shape \(2, 13, 6\)"):
        module.forward(np.zeros((2, 13, 6)))


def test_token_count_is_not_prefix_plus_grid():
    m = make_vca(KW)
    with pytest.raises(ValueError, match=r"x has 12 tokens but the layer expects "
                                         r"P \+ H\*W = 1 \+ 3\*4 = 13"):
        m.forward(np.zeros((2, 12, 8)))
    with pytest.raises(ValueError, match=r"x has 14 tokens .* = 13"):
        m.forward(np.zeros((2, 14, 8)))


@pytest.mark.parametrize("pool", [(4, 3), (3, 5), (4, 5)])
def test_pool_grid_larger_than_token_grid(pool):
    with pytest.raises(ValueError, match=rf"pool_size \({pool[0]}, {pool[1]}\) is larger than "
                                         r"the token grid \(3, 4\)"):
        VisualContrastAttention(8, 2, (3, 4), pool)


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"dim 10 is not divisible by num_heads 4"):
        VisualContrastAttention(10, 4, (3, 4), (2, 2))
    with pytest.raises(ValueError, match=r"dim 10 is not divisible by num_heads 4"):
        MultiHeadSelfAttention(10, 4)


@pytest.mark.parametrize("kwargs, err, msg", [
    (dict(num_heads=0), ValueError, r"dim and num_heads must be positive ints, got 8, 0"),
    (dict(dim=8.0), ValueError, r"dim and num_heads must be positive ints, got 8\.0, 2"),
    (dict(grid_size=(3, 0)), ValueError, r"grid_size must be positive, got \(3, 0\)"),
    (dict(grid_size=(3.5, 4)), TypeError, r"grid_size must be an int or a pair of ints, got \(3\.5, 4\)"),
    (dict(grid_size=(3, 4, 5)), TypeError, r"grid_size must be an int or a pair of ints"),
    (dict(num_prefix_tokens=-1), ValueError, r"num_prefix_tokens must be >= 0, got -1"),
    (dict(num_prefix_tokens=1.5), TypeError, r"num_prefix_tokens must be an int >= 0, got 1\.5"),
    (dict(layer_index=-1), ValueError, r"layer_index must be >= 0, got -1"),
    (dict(layer_index=2.5), TypeError, r"layer_index must be an int >= 0, got 2\.5"),
    (dict(stage2_softmax="double"), ValueError,
     r"stage2_softmax must be one of \('joint', 'separate'\), got 'double'"),
    (dict(differential="stage3"), ValueError,
     r"differential must be one of \('both', 'stage1', 'stage2', 'none'\), got 'stage3'"),
    (dict(tied_embeddings="yes"), TypeError, r"tied_embeddings must be True or False, got 'yes'"),
    (dict(dtype=np.float16), TypeError, r"dtype must be float32 or float64, got float16"),
])
def test_bad_constructor_arguments(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        VisualContrastAttention(**{**KW, **kwargs})


# --------------------------------------------------------------------------- dtypes and values


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool, np.float16, np.complex128])
def test_non_float_input(module, dtype):
    x = x_for(module).astype(dtype)
    with pytest.raises(TypeError, match=rf"x must be float32 or float64, got dtype {np.dtype(dtype)}"):
        module.forward(x)


def test_mixed_dtypes(module):
    with pytest.raises(TypeError, match=r"x has dtype float32 but the parameters are float64"):
        module.forward(x_for(module, np.float32))
    module.to(dtype=np.float32)
    with pytest.raises(TypeError, match=r"x has dtype float64 but the parameters are float32"):
        module.forward(x_for(module, np.float64))
    module.forward(x_for(module, np.float32))
    with pytest.raises(TypeError, match=r"dout has dtype float64 but the parameters are float32"):
        module.backward(np.zeros((2, x_for(module).shape[1], 8)))


def test_not_an_array(module):
    x = x_for(module)
    with pytest.raises(TypeError, match=r"x must be a NumPy/CuPy array, got list"):
        module.forward(x.tolist())
    with pytest.raises(TypeError, match=r"x must be a NumPy/CuPy array, got torch\.Tensor "
                                        r"with dtype torch\.float64"):
        module.forward(torch.from_numpy(x))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input(module, value):
    x = x_for(module)
    x[1, 2, 3] = value
    with pytest.raises(ValueError, match=r"x contains NaN or inf values \(1 of \d+ entries\); "
                                         r"expected finite values"):
        module.forward(x)


def test_backward_before_forward_and_wrong_dout_shape(module):
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        module.backward(np.zeros((2, 13, 8)))
    x = x_for(module)
    module.forward(x)
    with pytest.raises(ValueError, match=rf"dout must have the output's shape \(2, {x.shape[1]}, 8\), "
                                         r"got \(2, 3, 8\)"):
        module.backward(np.zeros((2, 3, 8)))


# --------------------------------------------------------------------------- state dicts


def snapshot(m):
    return {k: np.array(v, copy=True) for k, v in m.state_dict().items()}


def assert_unchanged(m, before):
    after = m.state_dict()
    assert set(after) == set(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
        assert after[k].dtype == before[k].dtype, k


def fresh_state(m):
    """A complete, valid state dict whose every value differs from the module's."""
    new = random_state(m, seed=999)
    assert all(not np.array_equal(new[k], v) for k, v in m.state_dict().items())
    return new


@pytest.mark.parametrize("bad, err, msg", [
    ("missing", ValueError, r"state dict does not match the module: missing keys \['e_neg'\]"),
    ("extra", ValueError, r"state dict does not match the module: unexpected keys \['stage3\.gate'\]"),
    ("both", ValueError, r"missing keys \['dwc\.bias'\]; unexpected keys \['dwc\.bais'\]"),
    ("shape", ValueError, r"state dict entry 'e_pos' has shape \(1, 5, 8\), expected \(1, 6, 8\)"),
    ("shape_last", ValueError, r"state dict entry 'dwc\.weight' has shape \(8, 3, 3\), "
                               r"expected \(8, 1, 3, 3\)"),
    ("int", TypeError, r"state dict entry 'qkv\.bias' has dtype int64, expected a floating dtype"),
    ("list", TypeError, r"state dict entry 'proj\.bias' is a list, expected an array"),
    ("torch", TypeError, r"state dict entry 'qkv\.weight' is a torch\.Tensor with dtype "
                         r"torch\.float64, expected a NumPy/CuPy array"),
])
def test_bad_state_dict_raises_and_changes_nothing(bad, err, msg):
    m = make_vca(KW)
    before = snapshot(m)
    state = fresh_state(m)                            # everything valid and new ...
    if bad == "missing":                              # ... except one problem
        del state["e_neg"]
    elif bad == "extra":
        state["stage3.gate"] = np.zeros(4)
    elif bad == "both":
        state["dwc.bais"] = state.pop("dwc.bias")
    elif bad == "shape":
        state["e_pos"] = np.zeros((1, 5, 8))
    elif bad == "shape_last":                         # the LAST entry is the bad one
        state["dwc.weight"] = np.zeros((8, 3, 3))
    elif bad == "int":
        state["qkv.bias"] = np.zeros(24, dtype=np.int64)
    elif bad == "list":
        state["proj.bias"] = [0.0] * 8
    elif bad == "torch":
        state = {k: torch.from_numpy(v) for k, v in state.items()}
    with pytest.raises(err, match=msg):
        m.load_state_dict(state)
    assert_unchanged(m, before)
    # and a valid load afterwards does change every tensor (the comparison above can fail)
    good = fresh_state(m)
    m.load_state_dict(good)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, good[k])


def test_state_dict_must_be_a_dict():
    m = make_mhsa()
    before = snapshot(m)
    with pytest.raises(TypeError, match=r"state dict must be a dict of arrays, got list"):
        m.load_state_dict(list(m.state_dict().values()))
    assert_unchanged(m, before)


def test_load_copies_and_casts_to_the_module_dtype():
    m = make_vca(KW).to(dtype=np.float32)
    state = fresh_state(m)                            # float64 arrays
    m.load_state_dict(state)
    for k, v in m.state_dict().items():
        assert v.dtype == np.float32, k
        assert not np.shares_memory(v, state[k]), k
        np.testing.assert_array_equal(v, state[k].astype(np.float32))


# --------------------------------------------------------------------------- dtype rule


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["vca", "mhsa"])
def test_dtype_rule(kind, dtype):
    """Parameters, outputs, dx and every gradient have the module's dtype."""
    if kind == "vca":
        m = VisualContrastAttention(**KW, dtype=dtype)
    else:
        m = MultiHeadSelfAttention(8, 2, dtype=dtype)
    assert m.dtype == np.dtype(dtype)
    assert all(p.dtype == dtype for p in m.state_dict().values())
    x = x_for(m, dtype)
    y = m.forward(x)
    dx = m.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == dtype
    grads = m.named_grads()
    assert set(grads) == set(m.state_dict())
    assert {k: g.dtype for k, g in grads.items()} == {k: np.dtype(dtype) for k in grads}


def test_to_converts_and_the_default_is_float32():
    m = VisualContrastAttention(**KW)
    assert m.dtype == np.float32
    m.to(dtype=np.float64)
    assert m.dtype == np.float64 and all(p.dtype == np.float64 for p in m.state_dict().values())
    assert m.forward(x_for(m)).dtype == np.float64


# --------------------------------------------------------------------------- empty and degenerate inputs


def _empty_batch_cases():
    f = np.float64
    cases = {
        "linear": (Linear(4, 3, dtype=f), (np.zeros((0, 4)),)),
        "layernorm": (LayerNorm(4, dtype=f), (np.zeros((0, 5, 4)),)),
        "mlp": (Mlp(4, 8, dtype=f), (np.zeros((0, 3, 4)),)),
        "patch_embed": (PatchEmbed(4, 2, 1, 8, dtype=f), (np.zeros((0, 1, 4, 4)),)),
        "timestep_embedder": (TimestepEmbedder(8, dtype=f), (np.zeros((0,)),)),
        "label_embedder": (LabelEmbedder(3, 8, dtype=f), (np.zeros((0,), dtype=np.int64),)),
        "mhsa": (make_mhsa(8, 2), (np.zeros((0, 5, 8)),)),
    }
    for name, option in (("vca", {}), ("vca_no_conv", dict(use_dwconv=False)),
                         ("vca_no_pool", dict(pool_queries=False)), ("vca_plain", dict(differential="none"))):
        cases[name] = (make_vca(dict(KW, **option)), (np.zeros((0, 13, 8)),))
    for att in ("vca", "mhsa"):
        cases[f"vit_{att}"] = (TinyViT(ViTConfig(attention=att, dtype="float64")), (np.zeros((0, 1, 8, 8)),))
        cases[f"dit_{att}"] = (TinyDiT(DiTConfig(attention=att, dtype="float64")),
                               (np.zeros((0, 1, 8, 8)), np.zeros((0,)), np.zeros((0,), dtype=np.int64)))
    return cases


EMPTY = _empty_batch_cases()


@pytest.mark.parametrize("name", list(EMPTY))
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(name):
    """B = 0 runs: the output has batch 0, the input gradient is empty, every parameter gradient is 0."""
    m, inputs = EMPTY[name]
    out = m.forward(*inputs)
    assert out.shape[0] == 0 and out.dtype == np.float64
    dx = m.backward(np.zeros(out.shape))
    assert dx is None or dx.shape == inputs[0].shape
    grads = m.named_grads()
    assert set(grads) == {k for k, _ in m.named_parameters()}
    for k, g in grads.items():
        assert g.shape == dict(m.named_parameters())[k].shape, k
        assert not np.any(g), k


def test_attention_over_zero_tokens_is_refused_at_the_module():
    with pytest.raises(ValueError, match=r"x has 0 tokens \(shape \(2, 0, 8\)\); attention needs at least 1"):
        make_mhsa(8, 2).forward(np.zeros((2, 0, 8)))
    with pytest.raises(ValueError, match=r"x has 0 tokens but the layer expects P \+ H\*W = 1 \+ 3\*4 = 13"):
        make_vca(KW).forward(np.zeros((2, 0, 8)))


@pytest.mark.parametrize("kind", ["mhsa", "vca_1x1", "vca_1x1_prefix", "vca_1xW"])
def test_a_single_token_or_a_one_cell_grid_is_well_defined(kind):
    """One token attends to itself (softmax weight 1): MHSA returns proj(v); VCA's 1x1 grid pools to
    that one patch query, and its 3x3 conv sees only the centre tap."""
    if kind == "mhsa":
        m = make_mhsa(8, 2)
        x = tokens(m, batch=3)[:, :1]                                       # (3, 1, 8)
    else:
        grid, P = {"vca_1x1": ((1, 1), 0), "vca_1x1_prefix": ((1, 1), 1), "vca_1xW": ((1, 5), 0)}[kind]
        m = make_vca(dict(dim=8, num_heads=2, grid_size=grid, pool_size=(1, 1), num_prefix_tokens=P))
        x = tokens(m, batch=3)
    y = m.forward(x)
    dx = m.backward(np.random.default_rng(0).standard_normal(y.shape))
    assert y.shape == x.shape == dx.shape
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    if kind == "mhsa":                   # softmax over one key is 1: y = (x Wv^T + bv) Wproj^T + bproj
        p = m.params
        v = x @ p["qkv.weight"][16:].T + p["qkv.bias"][16:]
        np.testing.assert_allclose(y, v @ p["proj.weight"].T + p["proj.bias"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ctor, msg", [
    (lambda: Linear(0, 3), r"in_features must be a positive int, got 0"),
    (lambda: Linear(4, 2.5), r"out_features must be a positive int, got 2\.5"),
    (lambda: LayerNorm(0), r"dim must be a positive int, got 0"),
    (lambda: LayerNorm(4, eps=0.0), r"eps must be > 0, got 0\.0"),
    (lambda: Mlp(4, 0), r"hidden_features must be a positive int, got 0"),
    (lambda: PatchEmbed(4, 2, 0, 8), r"in_chans must be a positive int, got 0"),
    (lambda: PatchEmbed(4, 0, 1, 8), r"patch_size must be a positive int, got 0"),
    (lambda: TimestepEmbedder(0), r"hidden_size must be a positive int, got 0"),
    (lambda: LabelEmbedder(0, 8), r"num_classes must be a positive int, got 0"),
    (lambda: MultiHeadSelfAttention(8, 0), r"num_heads must be a positive int, got 0"),
])
def test_module_sizes_must_be_positive_ints(ctor, msg):
    with pytest.raises(ValueError, match=msg):
        ctor()


@pytest.mark.parametrize("labels, got", [([0, 4], r"\[0, 4\]"), ([-1, 2], r"\[-1, 2\]")])
def test_labels_outside_the_classes_and_the_null_class_are_refused(labels, got):
    with pytest.raises(ValueError, match=r"labels y must be in \[0, 3\] \(3 is the null class\), got range " + got):
        LabelEmbedder(3, 8, dtype=np.float64).forward(np.array(labels))
    assert LabelEmbedder(3, 8, dtype=np.float64).forward(np.array([0, 3])).shape == (2, 8)   # 3: null class
