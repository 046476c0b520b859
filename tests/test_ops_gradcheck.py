"""Finite-difference proof of every hand-written backward (vca_ref.gradcheck), float64 only.

Every op pair, then both modules under every option combination that changes the math
(helpers.VCA_CASES), with random non-zero values for every parameter (norm weights and lambda
vectors included, never the 0/1 init) and gradcheck's random upstream gradient.  Tiny shapes
get the full Jacobian-vector product (every coordinate probed); one larger layer is checked in
sampled mode.  The last tests break a backward on purpose and prove the checker notices.
"""
import numpy as np
import pytest

import vca_ref.ops.vca as vca_op
import vca_ref.ops.vca_dwc as vca_dwc_op
from helpers import VCA_CASES, make_mhsa, make_vca, op_cases, stage_cases, tokens
from vca_ref import gradcheck, gradcheck_module
from vca_ref.ops.softmax import softmax_forward

OPS = op_cases()
STAGES = stage_cases()


def check_op(case, **kwargs):
    def f(inp):
        return case.forward(inp)[0]

    def analytic(inp, dout):
        return case.backward(dout, case.forward(inp)[1])
    return gradcheck(f, case.inputs, analytic, **kwargs)


@pytest.mark.parametrize("name", list(OPS))
def test_op_gradcheck(name):
    case = OPS[name]
    report = check_op(case, full_max=10_000)          # tiny shapes: every coordinate
    assert {t.name for t in report.tensors} == set(case.inputs)
    assert all(t.mode == "full" for t in report.tensors)
    assert report.passed


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_gradcheck(name):
    """Each stage-level pair of the VCA layer on its own (lambda and norm weight as inputs)."""
    case = STAGES[name]
    report = check_op(case, full_max=10_000)
    assert {t.name for t in report.tensors} == set(case.inputs)
    assert all(t.mode == "full" for t in report.tensors)
    assert report.passed


@pytest.mark.parametrize("case", list(VCA_CASES))
def test_vca_module_gradcheck(case):
    m = make_vca(case, seed=1)
    report = gradcheck_module(m, tokens(m, batch=2, seed=2), full_max=10_000)
    assert {t.name for t in report.tensors} == {"x", *m.state_dict()}
    assert all(t.mode == "full" for t in report.tensors)
    assert report.passed


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_mhsa_module_gradcheck(num_heads):
    m = make_mhsa(8, num_heads, seed=3)
    report = gradcheck_module(m, tokens(m, batch=2, seed=4), full_max=10_000)
    assert {t.name for t in report.tensors} == {"x", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
    assert report.passed


def test_vca_module_gradcheck_sampled_larger_layer():
    """C=24, h=3, a 5x6 grid pooled to 3x4, class token: random directions + sampled coordinates."""
    m = make_vca(dict(dim=24, num_heads=3, grid_size=(5, 6), pool_size=(3, 4),
                      num_prefix_tokens=1, layer_index=5), seed=5)
    report = gradcheck_module(m, tokens(m, batch=2, seed=6), full_max=32,
                              num_directions=3, num_coords=8)
    modes = {t.name: t.mode for t in report.tensors}
    assert modes["x"] == modes["qkv.weight"] == modes["e_pos"] == "sampled"
    assert modes["stage1.lambda_q1"] == "full"                      # 8 entries
    assert report.passed


def test_mhsa_module_gradcheck_sampled_larger_layer():
    m = make_mhsa(24, 3, seed=7)
    report = gradcheck_module(m, tokens(m, batch=3, seed=8), full_max=16,
                              num_directions=3, num_coords=8)
    assert all(t.mode == "sampled" for t in report.tensors)
    assert report.passed


# --------------------------------------------------------------------------- the checker can fail

def test_checker_rejects_softmax_backward_without_the_row_sum_term():
    """``dx = y * dy`` (the classic bug) must fail; with the correct formula it passes."""
    x = np.random.default_rng(0).standard_normal((3, 5))

    def f(inp):
        return softmax_forward(inp["x"])[0]

    def broken(inp, dout):
        return {"x": f(inp) * dout}

    def correct(inp, dout):
        y = f(inp)
        return {"x": y * (dout - (dout * y).sum(-1, keepdims=True))}

    assert gradcheck(f, {"x": x}, correct).passed
    with pytest.raises(AssertionError, match=r"gradient check failed[\s\S]*x\s+full.*FAIL"):
        gradcheck(f, {"x": x}, broken)


def test_checker_localises_a_flipped_dwconv_kernel_gradient(monkeypatch):
    """A VCA layer whose conv-weight gradient is spatially flipped: only dwc.weight fails."""
    real = vca_dwc_op.dwconv3x3_backward

    def flipped(dy, cache):
        dx, dw, db = real(dy, cache)
        return dx, dw[..., ::-1, ::-1].copy(), db
    monkeypatch.setattr(vca_dwc_op, "dwconv3x3_backward", flipped)
    m = make_vca("default", seed=1)
    report = gradcheck_module(m, tokens(m, batch=1, seed=2), full_max=10_000, raise_on_fail=False)
    assert not report.passed
    assert {t.name for t in report.tensors if not t.passed} == {"dwc.weight"}


def test_checker_sees_a_lambda_gradient_off_by_one_in_a_thousand(monkeypatch):
    """Scaling the lambda-vector gradients by 1.001 is caught in both stages, nowhere else."""
    real = vca_op.lambda_backward
    monkeypatch.setattr(vca_op, "lambda_backward",
                        lambda dlam, cache: tuple(1.001 * g for g in real(dlam, cache)))
    m = make_vca("default", seed=1)
    report = gradcheck_module(m, tokens(m, batch=1, seed=2), full_max=10_000, raise_on_fail=False)
    failed = {t.name for t in report.tensors if not t.passed}
    assert failed == {f"stage{j}.lambda_{v}{i}" for j in (1, 2) for v in "qk" for i in (1, 2)}


def test_checker_refuses_float32():
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda inp: inp["x"], {"x": x}, lambda inp, dout: {"x": dout})
