"""Hand-written CUDA kernels: fast twins of NumPy lines in :mod:`vca_ref.ops`.

The NumPy/CuPy expression in each op stays the reference; a kernel is an override, registered in
:mod:`vca_ref.fast.registry` (wrapped with its reference's signature in
:mod:`vca_ref.fast.cuda_twins`), that a call takes only for CuPy arrays and only while kernels
are enabled::

    Override(activations.gelu_forward, cuda_twins.gelu_forward, _cuda_gelu_forward)
    # _cuda_gelu_forward(x, approximate): kernels.applies(x), CuPy float32/float64, kernels on

Layout of this package:

    *.cuh       the scalar (and row-wise) math, templated on T = float | double: the single
                source of truth, compiled by NVRTC as a CuPy kernel preamble and by g++ in the
                CPU tests (tests/test_kernels_cpu.py)
    cuda.py     builds the CuPy ElementwiseKernel/RawKernel objects lazily, one per
                (device id, dtype), and exposes the drop-in twin functions
    source.py   the complete source text CuPy compiles for each kernel, and an NVRTC compile
                helper (tests/test_kernels_nvrtc.py proves every kernel compiles to PTX)

Turn the kernels off (to compare kernel vs plain CuPy vs NumPy) with ``set_enabled(False)``,
the context manager ``enabled(False)``, or the environment variable ``VCA_REF_KERNELS=0`` (read at
import and by ``set_enabled(None)``); the
switch of the whole override layer (``VCA_REF_FAST=0``, :func:`vca_ref.fast.set_enabled`) turns
them off together with the CPU twins.
This module never imports CuPy (only :mod:`vca_ref.backend` does).
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from vca_ref.backend import is_cuda_array
from vca_ref.fast.switch import Switch

ENV_VAR = "VCA_REF_KERNELS"

# Every .cuh file, in the order a preamble concatenates them (dependencies first).
CUH_FILES = ("common.cuh", "reduce.cuh", "activations.cuh", "combine.cuh", "softmax.cuh",
             "rmsnorm.cuh", "adamw.cuh")

SWITCH = Switch(ENV_VAR)


def kernels_enabled() -> bool:
    """True unless switched off by :func:`set_enabled` or ``VCA_REF_KERNELS=0``."""
    return SWITCH.is_on()


def set_enabled(flag: bool | None) -> bool | None:
    """Force the kernels on/off (``None``: read the environment again and follow it); returns the
    previous value."""
    return SWITCH.set(flag)


def enabled(flag: bool):
    """``with enabled(False): ...`` runs the plain CuPy reference lines inside the block."""
    return SWITCH.scoped(flag)


def applies(*arrays) -> bool:
    """True when the kernel path should run: kernels on and every array a CuPy array of ONE
    float dtype (float32 or float64).  Anything else takes the reference lines."""
    if not kernels_enabled() or not arrays:
        return False
    dtypes = set()
    for a in arrays:
        if not is_cuda_array(a):
            return False
        dtypes.add(np.dtype(a.dtype))
    return len(dtypes) == 1 and dtypes.pop() in (np.dtype(np.float32), np.dtype(np.float64))


def cuh_path(name: str):
    """A ``Traversable`` for one packaged .cuh file (works from a wheel or a checkout)."""
    if name not in CUH_FILES:
        raise ValueError(f"unknown kernel source {name!r}; expected one of {CUH_FILES}")
    return resources.files(__name__).joinpath(name)


def cuh_text(*names: str) -> str:
    """The text of the named .cuh files (``common.cuh`` always first), as one preamble."""
    wanted = ["common.cuh"] + [n for n in names if n != "common.cuh"]
    order = sorted(set(wanted), key=CUH_FILES.index)
    return "".join(cuh_path(n).read_text(encoding="utf-8") + "\n" for n in order)


__all__ = ["CUH_FILES", "ENV_VAR", "applies", "cuh_path", "cuh_text", "enabled",
           "kernels_enabled", "set_enabled"]
