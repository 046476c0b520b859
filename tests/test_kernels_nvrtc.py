"""Every CUDA kernel compiled to PTX by NVRTC, on a machine without a GPU.

For each kernel of ``vca_ref.fast.kernels.cuda`` (ElementwiseKernel and RawKernel alike), dtype and
architecture (compute_80 = A100, compute_90 = H100), the COMPLETE source CuPy would compile
(:func:`vca_ref.fast.kernels.source.full_source`: CuPy's own headers + the .cuh preamble + the kernel)
goes through ``cupy.cuda.nvrtc`` with CuPy's options and ``-ftz=true``.  Checked:

* it compiles, without errors and without warnings, and defines the entry point;
* float32 PTX has no double-precision instruction, register or constant (no ``.f64`` at all:
  ``cvt.f64.f32``, ``fma.rn.f64``, ``.reg .f64``, ``.global .f64`` ...), and float64 PTX does
  (so the scan is not vacuous);
* a broken kernel makes the compile helper raise, so a compile error cannot pass silently.

Skips (with the reason) only where CuPy or the NVRTC library cannot be loaded.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from vca_ref import backend
from vca_ref.fast.kernels import cuda, cuh_text

ARCHS = [80, 90]
DTYPES = [np.float32, np.float64]
F64 = re.compile(r"\.f64\b")


@pytest.fixture(scope="module")
def src():
    """The ``vca_ref.fast.kernels.source`` module, once NVRTC is known to load."""
    if backend.cupy_module() is None:
        pytest.skip("CuPy is not installed: pip install 'vca_ref[gpu]' (brings NVRTC as well)")
    from vca_ref.fast.kernels import source
    try:
        source.nvrtc_version()
    except Exception as e:  # noqa: BLE001 - any loader failure means "no NVRTC here"
        pytest.skip(f"NVRTC cannot be loaded ({type(e).__name__}: {e}); "
                    "pip install nvidia-cuda-nvrtc-cu12")
    return source


def code_lines(ptx: str) -> list[str]:
    """PTX lines without comments (the header names the compiler, not instructions)."""
    lines = (line.split("//", 1)[0].strip() for line in ptx.splitlines())
    return [line for line in lines if line]


def double_lines(ptx: str) -> list[str]:
    return [line for line in code_lines(ptx) if F64.search(line)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", cuda.KERNEL_NAMES)
def test_kernel_compiles_to_ptx(src, name, dtype, arch):
    ptx = src.compile_ptx(src.full_source(name, dtype), arch)
    assert f".target sm_{arch}" in ptx
    entry = cuda.kernel_name(name, dtype)
    assert re.search(rf"\.entry\s+{entry}\s*\(", ptx), f"no entry point {entry} in the PTX"
    doubles = double_lines(ptx)
    if np.dtype(dtype) == np.float32:
        assert not doubles, (f"{entry}: double precision in a float32 kernel:\n"
                             + "\n".join(doubles[:12]))
    else:
        assert doubles, f"{entry}: no .f64 in a float64 kernel -- is the scan blind?"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", cuda.KERNEL_NAMES)
def test_full_source_is_preamble_plus_kernel(src, name, dtype):
    """The compiled text carries the .cuh files verbatim (they are the single source of truth)."""
    text = src.full_source(name, dtype)
    spec = cuda.ELEMENTWISE.get(name) or cuda.ROWWISE[name]
    assert cuh_text(*spec.cuh) in text
    assert f'extern "C" __global__ void {cuda.kernel_name(name, dtype)}(' in text
    if name in cuda.ELEMENTWISE:
        assert spec.operation in text
        assert text.startswith("#include <cupy/")          # CuPy's headers, as CuPy adds them


def test_options_are_cupys(src):
    opts = src.nvrtc_options(90)
    assert "-ftz=true" in opts and "--gpu-architecture=compute_90" in opts
    assert any(o.startswith("--std=") for o in opts)


# ----------------------------------------------------------------------------- failures are loud
def test_compile_error_raises(src):
    bad = 'extern "C" __global__ void k(float* x) { x[0] = no_such_function(x[0]); }'
    with pytest.raises(src.KernelCompileError, match="no_such_function"):
        src.compile_ptx(bad, 80)


def test_broken_cuh_fails_the_kernel_compile(src, monkeypatch):
    """An error inside a .cuh reaches every kernel built from it."""
    good = cuda.cuh_text

    def broken(*names):
        return good(*names).replace("return a - lam * b;", "return a - lam * ;")

    monkeypatch.setattr(cuda, "cuh_text", broken)
    with pytest.raises(src.KernelCompileError, match="expected an expression"):
        src.compile_ptx(src.full_source("diff_combine_forward", np.float32), 80)


def test_warning_raises(src):
    noisy = 'extern "C" __global__ void k(float* x) { int unused; x[0] = 1.0f; }'
    with pytest.raises(src.KernelCompileError, match="warn"):
        src.compile_ptx(noisy, 80)


def test_scan_finds_an_implicit_double(src):
    """``0.5 * x`` with a double literal promotes a float kernel to double: the scan sees it."""
    ptx = src.compile_ptx('extern "C" __global__ void k(float* x) { x[0] = 0.3 * x[0]; }', 80)
    assert double_lines(ptx)
    ptx = src.compile_ptx('extern "C" __global__ void k(float* x) { x[0] = 0.3f * x[0]; }', 80)
    assert not double_lines(ptx)
