"""The complete CUDA source of every kernel, and an NVRTC compile helper that needs no GPU.

:func:`full_source` returns the exact text CuPy hands to NVRTC for one kernel variant:

* a ``RawKernel`` compiles its ``code`` as it is (CuPy prepends nothing);
* an ``ElementwiseKernel`` is expanded by CuPy's own code generator
  (``cupy._core._kernel._get_elementwise_kernel_code``) and prefixed with the
  ``#include <cupy/...>`` lines of ``cupy._core.core`` -- private CuPy functions, used here
  so the text is CuPy's and not our imitation of it.  If a CuPy release changes them,
  :func:`full_source` raises (the NVRTC tests then fail loudly instead of testing a guess).
  The variant generated is the one for 1-D contiguous arrays with 32-bit indexing; other
  layouts differ only in the ``CArray<...>``/``CIndexer<...>`` template arguments.

:func:`compile_ptx` drives NVRTC through ``cupy.cuda.nvrtc`` (CuPy's public
``compile_using_nvrtc`` wants a device) with the options CuPy uses, ``-ftz=true`` included,
and raises :class:`KernelCompileError` with the compiler log on any error.
"""
from __future__ import annotations

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


def full_source(name: str, dtype) -> str:
    """The complete source CuPy compiles for kernel ``name`` (see ``cuda.KERNEL_NAMES``)."""
    kernel = cuda.build_kernel(name, dtype)
    if name in cuda.ROWWISE:
        return kernel.code
    cp, _carray, _kernel, _scalar, core = _cupy_internals()
    dtype = np.dtype(dtype)
    scalars = cuda.ELEMENTWISE[name].scalars
    in_types, out_types, type_map = kernel._decide_params_type((dtype.type,) * kernel.nin, ())
    arginfos = []
    for p in kernel.params:
        if p.name == "_ind":
            arginfos.append(_kernel._ArgInfo(_ARG_INDEXER, _carray.Indexer, None, 1, True, True))
        elif p.name in scalars:
            arginfos.append(_kernel._ArgInfo(_ARG_SCALAR, _scalar.CScalar, dtype.type, 0, True,
                                             True))
        else:
            arginfos.append(_kernel._ArgInfo(_ARG_NDARRAY, cp.ndarray, dtype.type, 1, True, True))
    code = _kernel._get_elementwise_kernel_code(tuple(arginfos), type_map, kernel.params,
                                                kernel.operation, kernel.name, kernel.preamble)
    header = "\n".join("#include <%s>" % h for h in core._cupy_header_list)
    return header + code


def nvrtc_options(arch: str | int) -> tuple[str, ...]:
    """CuPy's NVRTC options (include paths, ``--std=c++17``) plus ``-ftz=true`` and the arch."""
    core = _cupy_internals()[-1]
    return tuple(core.assemble_cupy_compiler_options(())) + (
        "-ftz=true", f"--gpu-architecture=compute_{int(arch)}")


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
