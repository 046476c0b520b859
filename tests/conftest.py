"""Fixtures shared by the test files: the CuPy-strict stand-in (tests/cupy_strict.py)."""
from __future__ import annotations

import pytest

from vca_ref.backend import DEVICES, available_devices, describe


@pytest.fixture
def strict_cupy():
    """Inside the test vca_ref's ``"cuda"`` device is the CuPy-strict stand-in; yields its
    counters (host/device crossings, two-operand einsums, kernel launches)."""
    try:
        import cupy_strict
    except ImportError as e:                      # the stand-in introspects the installed CuPy
        pytest.skip(f"the CuPy-strict stand-in needs the cupy package: {e}")
    with cupy_strict.installed():
        yield cupy_strict.COUNTS


def _device_param(device: str):
    if device == "strict" or device in available_devices():
        return pytest.param(device, id=device, marks=[pytest.mark.gpu] if device == "cuda" else [])
    return pytest.param(device, id=device, marks=[pytest.mark.gpu, pytest.mark.skip(
        reason=f"no CUDA device: {describe()}")])


def _backend(request) -> str:
    if request.param == "strict":
        request.getfixturevalue("strict_cupy")
        return "cuda"
    return request.param


@pytest.fixture(params=[_device_param(d) for d in (*DEVICES, "strict")])
def backend(request) -> str:
    """The device name a test body runs on: ``"cpu"``; ``"cuda"`` where a device answers; and
    ``"cuda"`` played by the CuPy-strict stand-in (id ``strict``, tests/cupy_strict.py)."""
    return _backend(request)


@pytest.fixture(params=[_device_param(d) for d in ("cuda", "strict")])
def device_backend(request) -> str:
    """``"cuda"``: a real device where one answers, and the CuPy-strict stand-in."""
    return _backend(request)


def stand_in_counts():
    """The stand-in's counters while it plays CuPy, else ``None`` (a real device)."""
    import cupy_strict
    from vca_ref import backend
    return cupy_strict.COUNTS if isinstance(backend.cupy_module(), cupy_strict.StrictCupy) else None


def pytest_configure(config):
    """``VCA_REF_STAND_IN=1``: the whole session sees the stand-in as its CUDA device, so every
    ``cuda`` case of the suite (kernel tests, parity, pipeline, ...) runs on it without a GPU."""
    import os
    if os.environ.get("VCA_REF_STAND_IN") == "1":
        import cupy_strict
        config._stand_in = cupy_strict.installed()
        config._stand_in.__enter__()
