"""Sanity checks of the paper's numbers and of structural facts that a wrong layer would break."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import make_mhsa, make_vca, tokens, vca_kwargs
from vca_ref import MultiHeadSelfAttention, VisualContrastAttention
from vca_ref.ops.lambdas import lambda_init_for_layer
from vca_ref.ops.pooling import adaptive_bins, pool_matrix
from vca_ref.ops.softmax import softmax_backward, softmax_forward
from vca_ref.ops.vca import vca_backward, vca_forward
from vca_ref.ops.vca_variants import (DWC_RESIDUAL, POOLED_TOKENS, STAGE1_DIFFERENTIAL, STAGE2_JOINT,
                                      TWO_STREAMS, Variant, compose, vca_variant_backward,
                                      vca_variant_forward)

# --------------------------------------------------------------------------- parameter count


def deit_tiny_vca(layer_index=0):
    return VisualContrastAttention(192, 3, (14, 14), (7, 7), num_prefix_tokens=1,
                                   layer_index=layer_index, seed=0)


def test_deit_tiny_vca_has_21376_more_parameters_than_mhsa():
    vca, mhsa = deit_tiny_vca(), MultiHeadSelfAttention(192, 3, seed=0)
    assert mhsa.num_parameters() == 4 * 192 * 192 + 4 * 192 == 148_224
    assert vca.num_parameters() - mhsa.num_parameters() == 21_376


def test_deit_tiny_extra_parameters_per_part():
    """2nC (E+-) + 8d (lambda vectors) + 2d (two gammas) + 10C (depthwise conv + bias)."""
    C, d, n = 192, 64, 49
    sizes = {k: int(np.prod(v.shape)) for k, v in deit_tiny_vca().state_dict().items()}
    parts = {
        "embeddings": sum(v for k, v in sizes.items() if k in ("e_pos", "e_neg")),
        "lambdas": sum(v for k, v in sizes.items() if ".lambda_" in k),
        "norms": sum(v for k, v in sizes.items() if k.endswith("norm.weight")),
        "dwconv": sum(v for k, v in sizes.items() if k.startswith("dwc.")),
    }
    assert parts == {"embeddings": 2 * n * C, "lambdas": 8 * d, "norms": 2 * d, "dwconv": 10 * C}
    assert parts == {"embeddings": 18_816, "lambdas": 512, "norms": 128, "dwconv": 1_920}
    mhsa_names = {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
    assert sum(v for k, v in sizes.items() if k not in mhsa_names) == sum(parts.values()) == 21_376


def test_twelve_deit_tiny_layers_add_256512_parameters():
    extra = sum(deit_tiny_vca(i).num_parameters() for i in range(12)) \
        - 12 * MultiHeadSelfAttention(192, 3).num_parameters()
    assert extra == 256_512 < 300_000                                   # "fewer than 0.3M"


# --------------------------------------------------------------------------- tied embeddings


@pytest.mark.parametrize("softmax_mode", ["joint", "separate"])
def test_tied_embeddings_make_the_two_streams_identical(softmax_mode):
    """E+ = E-: the Stage-II rows of the two streams agree (and Stage-I's U+ = U-)."""
    m = make_vca(dict(vca_kwargs("default"), tied_embeddings=True, stage2_softmax=softmax_mode))
    m.forward(tokens(m, batch=2))
    s1, s2, n = m.cache.s1.stage, m.cache.s2.stage, m.config.num_contrast_tokens
    if softmax_mode == "joint":
        s_pos, s_neg = s2.sm.y[..., :n], s2.sm.y[..., n:]                # (B, h, N, n) each
    else:
        s_pos, s_neg = s2.sm[0].y, s2.sm[1].y
    np.testing.assert_allclose(s_pos, s_neg, rtol=1e-13, atol=1e-15)
    S1 = s1.attn.sm.y                                                   # (B, h, 2n, N)
    np.testing.assert_allclose(S1[:, :, :n], S1[:, :, n:], rtol=1e-13, atol=1e-15)
    # so the differential attention is (1 - lambda_2) times the positive stream
    lam2 = m.lambdas()["lambda2"]
    np.testing.assert_allclose(s2.readout.A, (1 - lam2) * s_pos, rtol=1e-12, atol=1e-15)


def test_untied_embeddings_make_the_two_streams_differ():
    """The control for the test above: with E+ != E- the streams differ clearly."""
    m = make_vca("default")
    m.forward(tokens(m, batch=2))
    n = m.config.num_contrast_tokens
    S2 = m.cache.s2.sm.y
    assert np.max(np.abs(S2[..., :n] - S2[..., n:])) > 1e-2


# --------------------------------------------------------------------------- softmax


def test_softmax_rows_sum_to_one():
    x = 3 * np.random.default_rng(0).standard_normal((4, 5, 9))
    y, _ = softmax_forward(x)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=0, atol=1e-14)
    assert np.all(y > 0)
    # and it matches the definition
    e = np.exp(x)
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_huge_logits_are_finite(dtype):
    x = (1e4 * np.random.default_rng(1).standard_normal((3, 7, 11))).astype(dtype)
    y, cache = softmax_forward(x)
    dx = softmax_backward(np.random.default_rng(2).standard_normal(x.shape).astype(dtype), cache)
    assert y.dtype == dx.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-6 if dtype == np.float32 else 1e-14)
    # 1e4-scaled logits are one-hot to working precision: the argmax gets all the mass
    np.testing.assert_array_equal(y.argmax(-1), x.argmax(-1))
    assert np.all(y.max(-1) > 0.999)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["mhsa", "vca", "vca_separate"])
def test_attention_with_huge_inputs_is_finite(kind, dtype):
    """Inputs scaled by 1e4 make every attention logit huge: forward and backward stay finite."""
    if kind == "mhsa":
        m = make_mhsa(8, 2, dtype=dtype)
    else:
        m = make_vca("default" if kind == "vca" else "separate_softmax", dtype=dtype)
    x = (1e4 * tokens(m, batch=2)).astype(dtype)
    y = m.forward(x)
    dx = m.backward(np.random.default_rng(3).standard_normal(y.shape).astype(dtype))
    for name, a in {"y": y, "dx": dx, **m.named_grads()}.items():
        assert a.dtype == dtype, name
        assert np.all(np.isfinite(a)), f"{name} has NaN/inf"
    assert max_qk_logit(m, x) > 1e4                                     # the logits really are huge


def max_qk_logit(m, x):
    """Largest |s q.k| over heads and token pairs, recomputed from x and the qkv weights."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in m.state_dict().items()}
    B, N, C = x.shape
    h = m.num_heads
    qkv = (x.astype(np.float64) @ p["qkv.weight"].T + p["qkv.bias"]).reshape(B, N, 3, h, C // h)
    q, k = qkv[:, :, 0], qkv[:, :, 1]                                   # (B, N, h, d)
    return float(np.abs(np.einsum("bnhd,bmhd->bhnm", q, k)).max() * (C // h) ** -0.5)


# --------------------------------------------------------------------------- lambda_init


def test_lambda_init_per_layer():
    expected = [0.8 - 0.6 * math.exp(-0.3 * l) for l in range(12)]
    got = [lambda_init_for_layer(l) for l in range(12)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert got[0] == pytest.approx(0.2, abs=1e-15)
    assert got[1] == pytest.approx(0.355509, abs=1e-6)
    assert got[11] == pytest.approx(0.777870, abs=1e-6)
    assert all(a < b for a, b in zip(got, got[1:]))                    # grows with depth, < 0.8


def test_module_lambda_is_the_reparameterisation_plus_lambda_init():
    m = make_vca(dict(vca_kwargs("default"), layer_index=7))
    assert m.config.lambda_init == pytest.approx(0.8 - 0.6 * math.exp(-2.1), abs=1e-15)
    p = m.state_dict()
    for j in (1, 2):
        want = (math.exp(p[f"stage{j}.lambda_q1"] @ p[f"stage{j}.lambda_k1"])
                - math.exp(p[f"stage{j}.lambda_q2"] @ p[f"stage{j}.lambda_k2"]) + m.config.lambda_init)
        assert m.lambdas()[f"lambda{j}"] == pytest.approx(want, rel=1e-14)


# --------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("grid, pool", [((14, 14), (7, 7)), ((5, 7), (3, 4)), ((7, 5), (4, 3)),
                                        ((6, 6), (4, 4)), ((3, 4), (2, 3)), ((9, 2), (5, 2)),
                                        ((4, 4), (4, 4)), ((5, 3), (1, 1))])
def test_pool_matrix_equals_torch_adaptive_avg_pool2d(grid, pool):
    """Row i of M holds the weights torch's adaptive_avg_pool2d gives output cell i."""
    H, W = grid
    M = pool_matrix(grid, pool)                                         # (n, H*W)
    basis = torch.eye(H * W, dtype=torch.float64).reshape(H * W, 1, H, W)
    M_torch = F.adaptive_avg_pool2d(basis, pool).reshape(H * W, -1).T  # (n, H*W)
    np.testing.assert_allclose(M, M_torch.numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(M.sum(1), 1.0, atol=1e-15)              # every bin is an average


def test_adaptive_bins_follow_the_floor_ceil_rule():
    """Bin i covers floor(i H / h') .. ceil((i + 1) H / h') - 1 (docs/spec.md, step 1)."""
    for size in range(1, 12):
        for out in range(1, size + 1):
            bins = adaptive_bins(size, out)
            assert bins == [(math.floor(i * size / out), math.ceil((i + 1) * size / out))
                            for i in range(out)]
            assert bins[0][0] == 0 and bins[-1][1] == size


# --------------------------------------------------------------------------- the composed layer


def test_the_variant_walk_with_the_papers_pieces_is_the_papers_layer():
    """ops/vca_variants.py composes the paper's layer from the same pairs as ops/vca.py, bit for bit."""
    m = make_vca("default")
    x = tokens(m, batch=2)
    assert compose(m.config) == Variant(TWO_STREAMS, POOLED_TOKENS, STAGE1_DIFFERENTIAL, STAGE2_JOINT,
                                        DWC_RESIDUAL)
    y, cache = vca_forward(x, m.params, m.config)
    y_var, cache_var = vca_variant_forward(x, m.params, m.config)
    np.testing.assert_array_equal(y_var, y)
    dout = np.random.default_rng(5).standard_normal(y.shape)
    dx, grads = vca_backward(dout, cache)
    dx_var, grads_var = vca_variant_backward(dout, cache_var)
    np.testing.assert_array_equal(dx_var, dx)
    assert list(grads) == list(grads_var) == list(m.config.param_shapes())
    for name in grads:
        np.testing.assert_array_equal(grads_var[name], grads[name], err_msg=name)


@pytest.mark.parametrize("option", [dict(stage2_softmax="separate"), dict(tied_embeddings=True),
                                    dict(pool_queries=False), dict(use_dwconv=False),
                                    dict(differential="stage1")])
def test_the_papers_layer_refuses_an_ablation_config(option):
    cfg = make_vca(dict(vca_kwargs("default"), **option)).config
    x = np.zeros((1, cfg.num_tokens, cfg.dim))
    with pytest.raises(ValueError, match=f"{next(iter(option))}.*vca_variant_forward"):
        vca_forward(x, {}, cfg)


@pytest.mark.parametrize("option, swapped", [
    (dict(stage2_softmax="separate"), dict(stage2="STAGE2_SEPARATE")),
    (dict(tied_embeddings=True), dict(streams="TIED_STREAMS")),
    (dict(pool_queries=False), dict(tokens="EMBEDDING_TOKENS")),
    (dict(use_dwconv=False), dict(residual="NO_RESIDUAL")),
    (dict(differential="stage1"), dict(stage2="STAGE2_PLAIN")),
    (dict(differential="stage2"), dict(stage1="STAGE1_PLAIN")),
    (dict(differential="none"), dict(streams="ONE_STREAM", stage1="STAGE1_PLAIN", stage2="STAGE2_PLAIN")),
    (dict(differential="none", tied_embeddings=True),
     dict(streams="ONE_STREAM", stage1="STAGE1_PLAIN", stage2="STAGE2_PLAIN")),
])
def test_each_option_swaps_its_pieces_and_keeps_the_others(option, swapped):
    import vca_ref.ops.vca_variants as variants
    paper = compose(make_vca("default").config)
    parts = compose(make_vca(dict(vca_kwargs("default"), **option)).config)
    changed = {name for name in Variant._fields if getattr(parts, name) is not getattr(paper, name)}
    assert changed == set(swapped)
    for name, piece in swapped.items():
        assert getattr(parts, name) is getattr(variants, piece), name
