"""The CuPy-strict stand-in catches what a GPU would reject (tests/cupy_strict.py).

Each test plants one mistake that NumPy forgives and CuPy does not, and requires the stand-in to
raise: ``np.asarray`` of a device array, a host operand, a keyword or name the installed CuPy
lacks, a wrong kernel argument type, an oversize block.  Without these the parity suite on the
stand-in (tests/test_gpu_parity.py, id ``strict``) would prove nothing.
"""
from __future__ import annotations

import numpy as np
import pytest

from vca_ref import backend, ops
from vca_ref.fast.kernels import cuda as kcuda


@pytest.fixture
def xp(strict_cupy):
    return backend.xp_for("cuda")


def dev(a):
    return backend.to_device(np.asarray(a, dtype=np.float32), "cuda")


def test_backend_sees_the_stand_in(xp, strict_cupy):
    assert backend.cuda_available() and "stand-in" in backend.describe()
    x = dev(np.ones((2, 3)))
    assert backend.is_cuda_array(x) and backend.device_of(x) == "cuda"
    assert backend.get_array_module(x) is xp
    assert strict_cupy.h2d == 1


def test_implicit_host_conversion_is_refused(xp):
    x = dev(np.ones((2, 3)))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(TypeError, match="only 0-d arrays"):
        float(x)
    with pytest.raises(TypeError, match="iterating a device array"):
        list(x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.concatenate([np.asarray(1.0)[None], np.asarray(x[0, :1])])


def test_host_operand_is_refused(xp):
    x, host = dev(np.ones((2, 3))), np.ones((2, 3), np.float32)
    for mistake in (lambda: x + host, lambda: host * x, lambda: xp.maximum(x, host),
                    lambda: xp.concatenate([x, host])):
        with pytest.raises(TypeError, match="host numpy.ndarray"):
            mistake()
    assert float((x + np.float32(2.0)).sum()) == 18.0          # scalars are fine


def test_cupys_names_and_keywords_only(xp):
    x = dev(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="unexpected keyword.*where"):
        xp.exp(x, where=x > 0)                                 # NumPy ufuncs take where=, CuPy's not
    with pytest.raises(TypeError, match="unexpected keyword.*initial"):
        x.max(initial=0.0)
    with pytest.raises(AttributeError, match="has no attribute 'errstate'"):
        xp.errstate(divide="ignore")                           # NumPy has it, CuPy does not
    assert float(xp.exp(x, dtype=np.float32).sum()) == pytest.approx(np.exp(np.arange(6.0)).sum(),
                                                                      rel=1e-6)


def test_syncs_and_copies_are_counted(xp, strict_cupy):
    x = dev(np.arange(4.0))                                   # 1 copy in
    s = x.sum()                                                # stays on the device
    assert strict_cupy.syncs == 0
    assert float(s) == 6.0 and backend.to_numpy(x).shape == (4,)
    assert bool(backend.all_finite(x, s))
    assert (strict_cupy.syncs, strict_cupy.h2d) == (3, 1)


def test_two_operand_einsum_is_recorded(xp, strict_cupy):
    x = dev(np.ones((2, 3)))
    xp.einsum("ij->i", x)
    assert strict_cupy.einsum2 == []
    xp.einsum("ij,ij->i", x, x)
    assert strict_cupy.einsum2 == ["ij,ij->i"]


def test_kernels_compute_their_reference(xp):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    y = kcuda.gelu_forward(dev(x))
    np.testing.assert_allclose(backend.to_numpy(y), ops.gelu_forward(x)[0], rtol=1e-6)
    z, w = dev(x), dev(np.linspace(0.5, 1.5, 5))
    out, zhat, rstd = kcuda.rmsnorm_forward(z, w, 1e-5)
    ref, cache = ops.rmsnorm_forward(x, backend.to_numpy(w), 1e-5)
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-6)
    assert rstd.shape == (3, 4, 1)


def test_wrong_kernel_argument_type_is_refused(xp):
    x32, x64 = dev(np.ones(4)), backend.to_device(np.ones(4), "cuda")
    kernel = kcuda.get_kernel("gelu_erf_forward", np.float32)
    with pytest.raises(TypeError, match="declares float32 x"):
        kernel(x64)
    with pytest.raises(TypeError, match="host array"):
        kernel(np.ones(4, np.float32))
    raw = kcuda.get_kernel("softmax_backward", np.float32)
    dx = xp.empty_like(x32)
    with pytest.raises(TypeError, match="long long rows needs a int64 scalar"):
        raw((1,), (32,), (x32, x32, dx, 1, np.int32(4)))       # a Python int for long long
    with pytest.raises(TypeError, match="C-contiguous device array of float32"):
        raw((1,), (32,), (x64, x64, dx, np.int64(1), np.int32(4)))


def test_oversize_block_and_grid_are_refused(xp):
    x = dev(np.ones((2, 4)))
    dx = xp.empty_like(x)
    raw = kcuda.get_kernel("softmax_backward", np.float32)
    args = (x, x, dx, np.int64(2), np.int32(4))
    with pytest.raises(ValueError, match="INVALID_VALUE"):
        raw((2,), (2048,), args)
    with pytest.raises(ValueError, match="INVALID_VALUE"):
        raw((2, 70000), (32,), args)
    with pytest.raises(ValueError, match="whole warps"):
        raw((2,), (48,), args)
    raw((2,), (32,), args)                                     # within the limits: runs
    np.testing.assert_array_equal(backend.to_numpy(dx), np.full((2, 4), -3.0))  # 1 * (1 - 4)


def test_unread_device_checks_leave_with_the_stand_in():
    """A device check queued on the stand-in and never read must not reach the next backend
    (it would make a later CPU run call into real CuPy)."""
    import cupy_strict
    with cupy_strict.installed():
        flag = backend.all_finite(dev(np.ones(3)))
        backend.check(~flag, lambda: ValueError("planted"))       # fails when read
        assert len(backend._pending) == 1
    assert backend._pending == []
    assert backend.read_scalars(np.float64(2.0)) == (2.0,)       # no CuPy call, no planted error
