"""The complete CUDA source of every kernel, and an NVRTC compile helper that needs no GPU.

:func:`full_source` returns the exact text CuPy hands to NVRTC for one kernel variant:

* a ``RawKernel`` compiles its ``code`` as it is (CuPy prepends nothing);
* an ``ElementwiseKernel`` is expanded by CuPy's own code generator
  (``cupy._core._kernel._get_elementwise_kernel_code``) and prefixed with the
  ``#include <cupy/...>`` lines of ``cupy._core.core`` -- private CuPy functions, used here
  so the text is CuPy's and not our imitation of it.  If a CuPy release changes them,
  :func:`full_source` raises (the NVRTC tests then fail loudly instead of testing a guess).
  CuPy generates one source per launch :class:`Variant`: the indexer's dimensions after it
  merges the axes every array steps through contiguously, each argument an array or a host
  scalar, each array C-contiguous or strided (``CArray<T, ndim, c_contiguous, ...>``).
  :func:`launch_variants` lists the ones vca_ref's launches take.

:func:`compile_ptx` drives NVRTC through ``cupy.cuda.nvrtc`` (CuPy's public
``compile_using_nvrtc`` wants a device) with the options CuPy uses, ``-ftz=true`` included,
and raises :class:`KernelCompileError` with the compiler log on any error.
"""
from __future__ import annotations

import importlib.util
import os
from typing import NamedTuple

import numpy as np

from vca_ref.backend import cupy_module
from vca_ref.fast.kernels import cuda

# CuPy's _ArgKind enum (cupy/_core/_kernel.pxd): ARG_KIND_NDARRAY = 1, INDEXER = 2, SCALAR = 3.
_ARG_NDARRAY, _ARG_INDEXER, _ARG_SCALAR = 1, 2, 3


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries the compiler log."""


def _cupy_internals():
    """CuPy's private code generator pieces; a clear error if a CuPy release moved them."""
    cp = cupy_module()
    if cp is None:
        raise RuntimeError("CuPy is not installed: pip install 'vca_ref[gpu]'")
    try:
        from cupy._core import _carray, _kernel, _scalar, core  # noqa: PLC0415 (guarded: CuPy)
        for mod, attr in ((_kernel, "_get_elementwise_kernel_code"), (_kernel, "_ArgInfo"),
                          (_carray, "Indexer"), (_scalar, "CScalar"),
                          (core, "_cupy_header_list"), (core, "assemble_cupy_compiler_options")):
            getattr(mod, attr)
    except (ImportError, AttributeError) as e:                  # pragma: no cover - CuPy drift
        raise RuntimeError(f"CuPy {cp.__version__} no longer has the internals that reproduce "
                           f"its ElementwiseKernel source ({e}); update vca_ref/kernels/source.py"
                           ) from e
    return cp, _carray, _kernel, _scalar, core


class Variant(NamedTuple):
    """One launch form of an ElementwiseKernel; CuPy compiles a separate source for each."""
    ndim: int = 1                        # indexer dimensions after CuPy merges axes
    scalars: frozenset = frozenset()     # parameters passed as host scalars, not arrays
    contiguous: bool | tuple = True      # C-contiguity: one flag for all arrays, or one per array
    index_32_bits: bool = True           # every array addressable with 32-bit offsets


def launch_variants(name: str) -> list[Variant]:
    """The variants of ElementwiseKernel ``name`` that vca_ref launches: 1-D contiguous (same-shape
    arrays), 1-D, 2-D and 3-D strided (slices, ``[:, None, :]`` broadcasts), 1-D with 64-bit
    offsets (arrays past 2^31 bytes), each with the scalar parameters as host scalars and, where
    a parameter may also be a device array (``lam``), as an array."""
    spec = cuda.ELEMENTWISE[name]
    layouts = [(1, True, True), (1, False, True), (2, False, True), (3, False, True),
               (1, True, False)]
    scalar_sets = {frozenset(spec.scalars), frozenset(spec.scalars) | set(spec.either)}
    return [Variant(nd, s, c, i) for s in sorted(scalar_sets, key=len) for nd, c, i in layouts]


def full_source(name: str, dtype, variant: Variant | None = None) -> str:
    """The complete source CuPy compiles for kernel ``name`` (see ``cuda.KERNEL_NAMES``);
    ElementwiseKernels in ``variant`` (default: 1-D contiguous, the declared host scalars)."""
    kernel = cuda.build_kernel(name, dtype)
    if name in cuda.ROWWISE:
        return kernel.code
    cp, _carray, _kernel, _scalar, core = _cupy_internals()
    dtype = np.dtype(dtype)
    v = Variant(scalars=frozenset(cuda.ELEMENTWISE[name].scalars)) if variant is None else variant
    arrays = [p.name for p in kernel.params if p.name != "_ind" and p.name not in v.scalars]
    contiguous = dict(zip(arrays, v.contiguous if isinstance(v.contiguous, tuple)
                          else (v.contiguous,) * len(arrays)))
    in_types, out_types, type_map = kernel._decide_params_type((dtype.type,) * kernel.nin, ())
    arginfos = []
    for p in kernel.params:
        if p.name == "_ind":
            arginfos.append(_kernel._ArgInfo(_ARG_INDEXER, _carray.Indexer, None, v.ndim, True,
                                             v.index_32_bits))
        elif p.name in v.scalars:
            arginfos.append(_kernel._ArgInfo(_ARG_SCALAR, _scalar.CScalar, dtype.type, 0, True,
                                             True))
        else:
            arginfos.append(_kernel._ArgInfo(_ARG_NDARRAY, cp.ndarray, dtype.type, v.ndim,
                                             contiguous[p.name], v.index_32_bits))
    code = _kernel._get_elementwise_kernel_code(tuple(arginfos), type_map, kernel.params,
                                                kernel.operation, kernel.name, kernel.preamble)
    header = "\n".join("#include <%s>" % h for h in core._cupy_header_list)
    return header + code


def wheel_header_dir() -> str:
    """The CUDA runtime headers of the ``nvidia-cuda-runtime-cu12`` wheel (``nvidia/cuda_runtime/
    include``), which the ``gpu`` and ``test`` extras install; raises if the wheel is absent."""
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    for root in (spec.submodule_search_locations or []) if spec else []:
        if os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")):
            return os.path.join(root, "include")
    raise FileNotFoundError("the CUDA headers of the gpu extra are missing: "
                            "pip install 'nvidia-cuda-runtime-cu12==12.*'")


def nvrtc_options(arch: str | int, wheel_headers: bool = True) -> tuple[str, ...]:
    """CuPy's NVRTC options (its own include paths, ``--std=c++17``) plus ``-ftz=true`` and the
    arch.  With ``wheel_headers`` the CUDA headers are those of the extra's wheel
    (:func:`wheel_header_dir`) and no other: a system toolkit CuPy may have found is dropped."""
    cp, core = _cupy_internals()[0], _cupy_internals()[-1]
    opts = tuple(core.assemble_cupy_compiler_options(()))
    if wheel_headers:
        own = os.path.dirname(cp.__file__)
        opts = tuple(o for o in opts if not o.startswith("-I") or o[2:].startswith(own))
        opts += ("-I" + wheel_header_dir(),)
    return opts + ("-ftz=true", f"--gpu-architecture=compute_{int(arch)}")


def nvrtc_version() -> tuple[int, int]:
    """The NVRTC version, e.g. ``(12, 9)``; raises if the library cannot be loaded."""
    cp = cupy_module()
    if cp is None:
        raise RuntimeError("CuPy is not installed: pip install 'vca_ref[gpu]'")
    return tuple(cp.cuda.nvrtc.getVersion())


def compile_ptx(source: str, arch: str | int = 80, options: tuple[str, ...] | None = None,
                filename: str = "vca_kernel.cu") -> str:
    """Compile ``source`` to PTX for ``compute_<arch>``; raise :class:`KernelCompileError`."""
    cp = cupy_module()
    if cp is None:
        raise RuntimeError("CuPy is not installed: pip install 'vca_ref[gpu]'")
    nvrtc = cp.cuda.nvrtc
    opts = list(nvrtc_options(arch) if options is None else options)
    prog = nvrtc.createProgram(source, filename, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as e:
            log = nvrtc.getProgramLog(prog)
            raise KernelCompileError(f"NVRTC failed for compute_{arch}: {e}\n{log}") from None
        log = nvrtc.getProgramLog(prog)
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    if "warning" in log:
        raise KernelCompileError(f"NVRTC warned for compute_{arch} (kernels must be clean):\n{log}")
    return ptx.rstrip("\x00")


def kernel_sources(dtype) -> dict[str, str]:
    """``{C name: complete source}`` for every kernel at ``dtype``."""
    return {cuda.kernel_name(n, dtype): full_source(n, dtype) for n in cuda.KERNEL_NAMES}
