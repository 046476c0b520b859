"""Array backends: NumPy everywhere, CuPy where a CUDA device exists.

This is the ONLY module of vca_ref that imports CuPy, and only under a guard.
Every op is written against an array module ``xp`` obtained with
:func:`get_array_module`, so the same code runs on NumPy and on CuPy
(the Chainer idiom).

    xp = get_array_module(x)        # numpy or cupy, whichever owns x
    y  = xp.exp(x)                  # same line on both backends
"""
from __future__ import annotations

import numpy as np

try:  # guarded: CuPy is optional and may be installed without a GPU
    import cupy as _cupy  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None

DEVICES = ("cpu", "cuda")


def cupy_module():
    """Return the ``cupy`` module or ``None`` when it is not importable."""
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports AND at least one CUDA device answers."""
    if _cupy is None:
        return False
    try:
        return bool(_cupy.cuda.is_available())
    except Exception:  # pragma: no cover - driver errors
        return False


def available_devices() -> list[str]:
    """Devices usable here: always ``"cpu"``, plus ``"cuda"`` when available."""
    return ["cpu", "cuda"] if cuda_available() else ["cpu"]


def describe() -> str:
    """One line saying which backends exist on this machine and why not."""
    if _cupy is None:
        return "cpu (NumPy %s); cuda: CuPy is not installed" % np.__version__
    if not cuda_available():
        return "cpu (NumPy %s); cuda: CuPy %s is installed but no CUDA device answers" % (
            np.__version__, _cupy.__version__)
    name = _cupy.cuda.runtime.getDeviceProperties(0)["name"]
    if isinstance(name, bytes):
        name = name.decode()
    return "cpu (NumPy %s); cuda: CuPy %s on %s" % (np.__version__, _cupy.__version__, name)


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def is_cuda_array(a) -> bool:
    """True when ``a`` is a CuPy array."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def check_device(device: str) -> str:
    """Validate a device name; raise a clear error if CUDA is asked for but absent."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError(
            "device 'cuda' was requested but is not available: " + describe()
            + ". Install the GPU extra (pip install 'vca_ref[gpu]') on a machine with an NVIDIA GPU.")
    return device


def xp_for(device: str):
    """The array module for a device name (``numpy`` for cpu, ``cupy`` for cuda)."""
    return _cupy if check_device(device) == "cuda" else np


def to_device(a, device: str):
    """Move one array (or None) to ``device``; a no-op when it is already there."""
    if a is None:
        return None
    check_device(device)
    if device == "cuda":
        return a if is_cuda_array(a) else _cupy.asarray(a)
    return _cupy.asnumpy(a) if is_cuda_array(a) else np.asarray(a)


def to_numpy(a):
    """Return a NumPy copy/view of ``a`` wherever it lives."""
    return to_device(a, "cpu")


def device_of(a) -> str:
    """``"cuda"`` for CuPy arrays, ``"cpu"`` otherwise."""
    return "cuda" if is_cuda_array(a) else "cpu"


def erf(x):
    """Elementwise error function on NumPy (SciPy) or CuPy (cupyx) arrays."""
    if is_cuda_array(x):
        import cupyx.scipy.special as _cs  # CuPy's own module: still guarded by is_cuda_array
        return _cs.erf(x)
    from scipy.special import erf as _erf
    return _erf(x)
