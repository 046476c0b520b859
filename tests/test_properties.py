"""Property-based tests (hypothesis) over random VCA configurations, checked against the oracle.

Random: batch 1-3, heads 1-4, head dim 1-3, non-square grids up to 5x5, any pooling grid up to
the token grid (most of them do not divide it), 0 or 1 prefix tokens, layer index 0-11 and
every option of the specification's (docs/spec.md) table; random non-zero parameters.  Shapes stay tiny so that each
example takes milliseconds.  Each run draws 240 random VCA configurations (40 checked against the
PyTorch oracle, 100 for the float32 rule, 100 for the softmax rows) plus 40 MHSA and 100 softmax
inputs; ``VCA_HYPOTHESIS_EXAMPLES`` raises every count to at least that number for a soak run.
"""
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import TOL, compare, make_mhsa, make_vca, module_pairs, softmax_outputs, tokens
from vca_ref.ops.softmax import softmax_backward, softmax_forward

SOAK = int(os.environ.get("VCA_HYPOTHESIS_EXAMPLES", "0"))


def examples(n: int):
    """Hypothesis settings drawing ``n`` examples (or the soak count, if larger)."""
    return settings(max_examples=max(n, SOAK), deadline=None)


@st.composite
def vca_configs(draw):
    heads, d = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return dict(dim=heads * d, num_heads=heads, grid_size=(H, W),
                pool_size=(draw(st.integers(1, H)), draw(st.integers(1, W))),
                num_prefix_tokens=draw(st.sampled_from([0, 1])),
                layer_index=draw(st.integers(0, 11)),
                stage2_softmax=draw(st.sampled_from(["joint", "separate"])),
                tied_embeddings=draw(st.booleans()),
                pool_queries=draw(st.booleans()),
                use_dwconv=draw(st.booleans()),
                differential=draw(st.sampled_from(["both", "stage1", "stage2", "none"])))


@examples(40)
@given(cfg=vca_configs(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_vca_matches_torch_float64(cfg, batch, seed):
    m = make_vca(cfg, seed=seed)
    compare(module_pairs(m, tokens(m, batch=batch, seed=seed)), TOL[np.float64], np.float64)


@examples(100)
@given(cfg=vca_configs(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_vca_float32_stays_float32_and_finite(cfg, batch, seed):
    """The dtype rule at random configurations: float32 in, float32 out (y, dx, every grad).

    (The float32 VALUES are checked against the oracle at 1e-4 in test_torch_oracle.py, at
    fixed draws: at random corners -- a 2-token joint softmax, E+ = E- with lambda ~ 1, head
    dim 1 -- single gradient tensors are cancellations that float32 cannot resolve at 1e-4,
    PyTorch's own float32 included, so that bound is not a property of every configuration.)
    """
    m = make_vca(cfg, seed=seed, dtype=np.float32)
    x = tokens(m, batch=batch, seed=seed, dtype=np.float32)
    y = m.forward(x)
    dx = m.backward(np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32))
    for name, a in {"y": y, "dx": dx, **m.named_grads()}.items():
        assert a.dtype == np.float32, (name, a.dtype)
        assert np.all(np.isfinite(a)), name


@examples(40)
@given(heads=st.integers(1, 4), d=st.integers(1, 3), batch=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_mhsa_matches_torch_float64(heads, d, batch, seed):
    m = make_mhsa(heads * d, heads, seed=seed)
    compare(module_pairs(m, tokens(m, batch=batch, seed=seed)), TOL[np.float64], np.float64)


@examples(100)
@given(cfg=vca_configs(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_vca_attention_rows_sum_to_one(cfg, batch, seed):
    """Every softmax inside VCA (Stage I rows, Stage II joint or separate rows) sums to 1."""
    m = make_vca(cfg, seed=seed)
    m.forward(tokens(m, batch=batch, seed=seed))
    n = m.config.num_contrast_tokens
    separate = m.config.stage2_differential and m.config.stage2_softmax == "separate"
    maps = softmax_outputs(m.cache)
    stage2 = [S for path, S in maps.items() if path.startswith("s2.")]
    assert len(maps) == len(stage2) + 1 and len(stage2) == (2 if separate else 1)
    for S in maps.values():
        assert np.all(S >= 0)
        np.testing.assert_allclose(S.sum(-1), 1.0, rtol=0, atol=1e-12)
    if m.config.stage2_differential and m.config.stage2_softmax == "joint":
        assert stage2[0].shape[-1] == 2 * n                     # ONE softmax over the joint bank


@examples(100)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                    elements=st.floats(-1e4, 1e4, allow_nan=False)))
def test_softmax_rows_sum_to_one_and_backward_is_finite(x):
    y, cache = softmax_forward(x)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=0, atol=1e-12)
    dx = softmax_backward(np.ones_like(x), cache)                # d(sum of a row)/dx = 0
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, 0.0, atol=1e-12)
