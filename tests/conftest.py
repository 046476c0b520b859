"""Fixtures shared by the test files: the CuPy-strict stand-in (tests/cupy_strict.py)."""
from __future__ import annotations

import pytest


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
