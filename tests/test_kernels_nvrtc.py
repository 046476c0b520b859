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

The CUDA headers are those the ``gpu`` extra installs (the ``nvidia-cuda-runtime-cu12`` wheel),
passed to NVRTC explicitly; a system toolkit CuPy may find is left out.  Every ElementwiseKernel
compiles in every launch variant of :func:`~vca_ref.fast.kernels.source.launch_variants` (1-D
contiguous, 1-, 2- and 3-D strided, 64-bit offsets, ``lam`` as scalar or array), and every
variant that tiny models really launch on the CuPy-strict stand-in compiles as launched.

Skips (with the reason) only where CuPy, the NVRTC library or the headers wheel cannot be found.
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
    try:
        source.wheel_header_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
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


def test_headers_are_the_extras(src):
    """The only CUDA include folder is the wheel's; CuPy's own include folders stay."""
    opts = src.nvrtc_options(80)
    cuda_dirs = [o[2:] for o in opts if o.startswith("-I") and "/cupy/" not in o]
    assert cuda_dirs == [src.wheel_header_dir()]
    assert cuda_dirs[0].endswith("nvidia/cuda_runtime/include")


# ----------------------------------------------------------------------------- launch variants
def compile_variants(src, name: str, dtype, variants) -> None:
    """Compile the variants of one kernel as ONE NVRTC program (one header parse): the entry of
    variant k is renamed ``<entry>_v<k>``; every renamed entry must be in the PTX."""
    entry = cuda.kernel_name(name, dtype)
    text = "\n".join(src.full_source(name, dtype, v).replace(f"void {entry}(", f"void {entry}_v{k}(")
                     for k, v in enumerate(variants))
    ptx = src.compile_ptx(text, 80)
    for k, v in enumerate(variants):
        assert re.search(rf"\.entry\s+{entry}_v{k}\s*\(", ptx), (entry, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(cuda.ELEMENTWISE))
def test_every_launch_variant_compiles(src, name, dtype):
    compile_variants(src, name, dtype, src.launch_variants(name))


def test_variants_differ(src):
    """The variants really are different sources (else the sweep above tests one text)."""
    texts = {src.full_source("diff_combine_forward", np.float32, v)
             for v in src.launch_variants("diff_combine_forward")}
    assert len(texts) == len(src.launch_variants("diff_combine_forward")) == 10


def _launches_of_tiny_models(variant_of) -> set:
    """Every ElementwiseKernel launch of a float32 VCA ViT and DiT step (forward, backward,
    AdamW) on the CuPy-strict stand-in, as (C name, Variant); float64 launches the same forms."""
    import cupy_strict
    from cupy_strict_kernels import base_name
    from helpers import DIT_TINY, VIT_TINY, randomised
    from vca_ref.backend import to_device
    from vca_ref.models import DiTConfig, TinyDiT, TinyViT, ViTConfig
    from vca_ref.train.optim import AdamW
    rng = np.random.default_rng(0)
    with cupy_strict.installed():
        vit = randomised(TinyViT(ViTConfig(**VIT_TINY, dtype="float32"), seed=0), 1)
        dit = randomised(TinyDiT(DiTConfig(**DIT_TINY, dtype="float32"), seed=0, zero_init=False), 1)
        x = to_device(rng.standard_normal((2, 2, 6, 6)).astype(np.float32), "cuda")
        t, y = to_device(np.array([3, 9]), "cuda"), to_device(np.array([0, 1]), "cuda")
        for model, call in ((vit, lambda: vit.forward(x)), (dit, lambda: dit.forward(x, t, y))):
            model.to(device="cuda")
            out = call()
            model.backward(out * 0.5 + 0.25)
            AdamW(model, lr=1e-3, weight_decay=0.05).step()
        launches = list(cupy_strict.COUNTS.launches)
    found = set()
    for c_name, *rest in launches:
        if len(rest) != 3:
            continue                                                   # a RawKernel launch
        ndim, kinds, contiguous = rest
        spec = cuda.ELEMENTWISE[base_name(c_name)]
        params = [p.split()[-1] for p in f"{spec.in_params}, {spec.out_params}".split(",")]
        scalars = frozenset(p for p, k in zip(params, kinds) if k == "scalar")
        found.add((c_name, variant_of(ndim, scalars, tuple(contiguous))))
    return found


def test_every_variant_the_models_launch_compiles(src):
    from cupy_strict_kernels import base_name
    launched = _launches_of_tiny_models(src.Variant)
    names = {base_name(c) for c, _ in launched}
    assert {"gelu_erf_forward", "gelu_tanh_forward", "silu_forward", "modulate_forward",
            "diff_combine_forward", "adamw_update"} <= names, names
    assert {v.ndim for _, v in launched} >= {1, 2, 3}
    for c_name in sorted({c for c, _ in launched}):
        name = base_name(c_name)
        variants = sorted((v for c, v in launched if c == c_name), key=str)
        allowed = {s.scalars for s in src.launch_variants(name)}
        assert all(v.ndim <= 3 and v.scalars in allowed for v in variants), variants
        compile_variants(src, name, np.float32 if c_name.endswith("f32") else np.float64, variants)
