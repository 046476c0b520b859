"""Array backends: NumPy everywhere, CuPy where a CUDA device exists.

This is the ONLY module of vca_ref that imports CuPy, and only under a guard.
Every op is written against an array module ``xp`` obtained with
:func:`get_array_module`, so the same code runs on NumPy and on CuPy
(the Chainer idiom).

    xp = get_array_module(x)        # numpy or cupy, whichever owns x
    y  = xp.exp(x)                  # same line on both backends

The test suite can stand a CuPy look-alike in for CuPy (:func:`substitute_cupy`), so the
device code paths run, and are held to CuPy's rules, on a machine without a GPU.
"""
from __future__ import annotations

import contextlib

import numpy as np

try:  # guarded: CuPy is optional and may be installed without a GPU
    import cupy as _cupy  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None
_special = None         # cupyx.scipy.special, imported on the first erf of a device array

DEVICES = ("cpu", "cuda")


def cupy_module():
    """Return the ``cupy`` module or ``None`` when it is not importable."""
    return _cupy


@contextlib.contextmanager
def substitute_cupy(module, special):
    """Test-only: inside the block ``module`` plays CuPy and ``special`` plays
    ``cupyx.scipy.special`` for every function of this module (and so for all of vca_ref).

    ``module`` needs what vca_ref uses of CuPy: ``ndarray``, ``cuda.is_available()``,
    ``cuda.runtime``, ``asarray``, ``asnumpy`` and the array functions of the ops.
    """
    global _cupy, _special
    saved = _cupy, _special, list(_pending)
    _cupy, _special = module, special
    _pending.clear()                     # queued device checks belong to the backend they ran on
    try:
        yield module
    finally:
        _cupy, _special = saved[:2]
        _pending[:] = saved[2]           # the stand-in's unread checks leave with it


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
    """Return a NumPy copy/view of ``a`` wherever it lives (queued device checks are read first)."""
    if _pending and is_cuda_array(a):
        read_scalars()
    return to_device(a, "cpu")


def generator_for(rng: np.random.Generator, device: str):
    """The generator that draws random numbers on ``device``: ``rng`` itself on the CPU; on
    CUDA a CuPy generator seeded by one draw of ``rng``, so the host generator (the one
    checkpoints save) still decides every number and nothing is copied to the device."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    if check_device(device) == "cpu":
        return rng
    return _cupy.random.default_rng(int(rng.integers(2 ** 63)))


def device_of(a) -> str:
    """``"cuda"`` for CuPy arrays, ``"cpu"`` otherwise."""
    return "cuda" if is_cuda_array(a) else "cpu"


def require_device(a, device: str, what: str = "input") -> None:
    """One clear error when array ``a`` does not live on ``device`` (the device of a model):
    a host array meeting a CUDA model, or the reverse, names both devices and the remedy."""
    where = device_of(a)
    if where != device:
        raise TypeError(f"{what} is on {where!r} but the model is on {device!r}; move it first "
                        f"with vca_ref.backend.to_device({what}, {device!r})")


# ----------------------------------------------------------------------------- synchronisation
# A device->host read waits for the device, so a training step makes ONE (the loss, for the log
# and the NaN guard) and a sampling step none.  Checks of device data are therefore queued as
# device flags and come back with the next read_scalars() (or to_numpy()).
_pending: list = []          # (0-d device bool flag, error factory) awaiting the next read
MAX_PENDING = 256            # more than this many queued flags are read at once (one sync)


def check(ok, error) -> None:
    """Raise ``error()`` unless ``ok``, a 0-d boolean array.

    A host flag is read at once.  A device flag is queued and read with the next
    :func:`read_scalars` or :func:`to_numpy`, in the same transfer as the values asked for: a
    failed device check raises there, before any of those values is returned.  ``error`` is a
    callable returning the exception, so its message may inspect the data after the fact.
    """
    if not is_cuda_array(ok):
        if not bool(ok):
            raise error()
        return
    _pending.append((ok, error))
    if len(_pending) > MAX_PENDING:
        read_scalars()


def read_scalars(*values) -> tuple[float, ...]:
    """Python floats of 0-d (or size-1) arrays and numbers, read in ONE device->host transfer
    together with every queued device :func:`check`; raises the first failed check's error."""
    device = [v for v in values if is_cuda_array(v)] + [ok for ok, _ in _pending]
    if device:
        xp = _cupy
        packed = xp.stack([xp.asarray(v, dtype=xp.float64).reshape(()) for v in device])
        host = iter(packed.get().tolist())                       # the one synchronisation
    out = tuple(next(host) if is_cuda_array(v) else float(v) for v in values)
    flags, errors = [next(host) for _ in _pending], [e for _, e in _pending]
    _pending.clear()
    for flag, error in zip(flags, errors):
        if not flag:
            raise error()
    return out


def all_finite(*arrays):
    """``True`` where every entry of every array is finite, as a 0-d boolean array on the
    arrays' device: no device->host copy.  Combine flags with ``&`` and read the result once
    (``bool(flag)``) where a step must decide, so a step pays one synchronisation at most."""
    if not arrays:
        raise ValueError("all_finite needs at least one array")
    xp = get_array_module(*arrays)
    flag = xp.isfinite(arrays[0]).all()                                      # () bool
    for a in arrays[1:]:
        flag = flag & xp.isfinite(a).all()
    return flag


def erf(x):
    """Elementwise error function on NumPy (SciPy) or CuPy (cupyx) arrays."""
    global _special
    if is_cuda_array(x):
        if _special is None:
            import cupyx.scipy.special as _cs  # CuPy's own module: still guarded by is_cuda_array
            _special = _cs
        return _special.erf(x)
    from scipy.special import erf as _erf
    return _erf(x)
