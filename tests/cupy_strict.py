"""A CuPy-strict stand-in: CuPy's rules on the CPU, so the device code paths run without a GPU.

The stand-in plays ``cupy`` for :mod:`vca_ref.backend` (through ``backend.substitute_cupy``),
computes everything with NumPy, and refuses what real CuPy refuses, or what would cost a GPU:

* :class:`DeviceArray` wraps a NumPy array and is the stand-in's ``ndarray``.  It refuses an
  implicit host conversion (``np.asarray``/``__array__``), ``float()``/``int()``/``bool()`` of
  anything but a 0-d array, and iteration; an operand that is a host ``numpy.ndarray`` is a
  ``TypeError``, as in CuPy.
* :class:`StrictCupy` is the ``xp`` namespace: only the names the installed ``cupy`` module has,
  and only the keywords its signatures (or its Cython docstrings) list.
* every device->host read (``.get()``, ``asnumpy``, ``float()``, ``bool()``, ``.item()``, ...)
  and every host->device copy (``asarray`` of host data) is counted in :class:`Counts`; every
  two-operand ``einsum`` on device arrays is recorded (CuPy runs it as batched tiny matmuls).

Kernel launches (``ElementwiseKernel``, ``RawKernel``) are checked and computed in
tests/cupy_strict_kernels.py.  Needs the ``cupy`` package to introspect (it imports without a GPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import types

import numpy as np

import cupy as _real        # introspected only: never asked to run anything
import cupyx.scipy.special as _real_special

from vca_ref import backend

HOST_TO_DEVICE = ("asarray", "array", "asanyarray")       # the functions that may take host data
NAME = "CuPy-strict stand-in (NumPy on the CPU)"


@dataclasses.dataclass
class Counts:
    """What crossed the host/device boundary, and the slow paths taken."""
    syncs: int = 0              # device -> host reads: each one waits for the device
    h2d: int = 0                # host -> device copies
    einsum2: list = dataclasses.field(default_factory=list)   # two-operand einsum subscripts
    launches: list = dataclasses.field(default_factory=list)  # (kernel name, variant) per launch


COUNTS = Counts()


def reset_counts() -> Counts:
    """Zero the counters (in place); returns the counter object."""
    COUNTS.__init__()
    return COUNTS


def _host_operand(a) -> TypeError:
    return TypeError(f"Unsupported type {type(a)} (a host numpy.ndarray of shape {a.shape}) as an "
                     "operand of a device computation: move it with to_device or use a Python scalar")


def unwrap(obj, allow_host: bool = False):
    """DeviceArray -> its NumPy buffer (same memory); host arrays refused unless ``allow_host``."""
    if isinstance(obj, DeviceArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        if not allow_host:
            raise _host_operand(obj)
        COUNTS.h2d += 1
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(unwrap(o, allow_host) for o in obj)
    if isinstance(obj, dict):
        return {k: unwrap(v, allow_host) for k, v in obj.items()}
    return obj


def wrap(obj):
    """NumPy results -> DeviceArray (scalars become 0-d arrays, as CuPy's reductions return)."""
    if isinstance(obj, np.ndarray):
        return DeviceArray(obj)
    if isinstance(obj, np.generic):
        return DeviceArray(np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(wrap(o) for o in obj)
    if isinstance(obj, list):
        return [wrap(o) for o in obj]
    return obj


# ----------------------------------------------------------------------------- signatures
def _doc_params(obj) -> set | None:
    """Parameter names from a Cython docstring's first line, ``f(a, axis=None, *, dtype=None)``."""
    line = (obj.__doc__ or "").strip().splitlines()[:1]
    m = re.match(r"^[\w.]+\((.*)\)", line[0]) if line else None
    if not m:
        return None
    names = set()
    for part in m.group(1).replace("\\", "").split(","):
        name = part.split("=")[0].strip()
        if name.startswith("**"):
            return None                                     # takes any keyword
        if name and not name.startswith("*") and name not in ("/", "self"):
            names.add(name)
    return names


def keywords_of(obj) -> set | None:
    """The keywords a CuPy callable accepts (``None``: any, or not knowable)."""
    try:
        params = inspect.signature(obj).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    except (TypeError, ValueError):
        pass
    return _doc_params(obj)


def check_keywords(what: str, real, kw: dict) -> None:
    allowed = keywords_of(real)
    bad = sorted(set(kw) - allowed) if allowed is not None else []
    if bad:
        raise TypeError(f"{what}() got unexpected keyword argument(s) {bad}: the installed CuPy "
                        f"{_real.__version__} accepts {sorted(allowed)}")


class StrictFunction:
    """One CuPy function played by its NumPy namesake, with CuPy's keywords and operand rules."""

    def __init__(self, qualname: str, real, twin):
        self.qualname, self.real, self.twin = qualname, real, twin

    def __call__(self, *args, **kw):
        check_keywords(self.qualname, self.real, kw)
        allow_host = self.qualname.split(".")[-1] in HOST_TO_DEVICE
        if self.qualname == "cupy.einsum":
            operands = [a for a in args[1:] if isinstance(a, DeviceArray)]
            if len(operands) >= 2:
                COUNTS.einsum2.append(args[0])
        out = self.twin(*unwrap(args, allow_host), **unwrap(kw))
        if isinstance(out, np.random.Generator):           # cupy.random.default_rng(seed)
            return StrictNamespace("cupy.random.Generator", _real.random.Generator, out)
        return wrap(out)

    def __getattr__(self, name):                           # ufunc methods: add.at, maximum.reduce
        if not hasattr(self.real, name):
            raise AttributeError(f"{self.qualname} has no attribute {name!r} in CuPy")
        return StrictFunction(f"{self.qualname}.{name}", getattr(self.real, name),
                              getattr(self.twin, name))


class StrictNamespace:
    """A CuPy (sub)module: its names only, each played by the NumPy namesake."""

    def __init__(self, qualname: str, real, twin):
        self._qualname, self._real, self._twin = qualname, real, twin

    def __getattr__(self, name):
        if name.startswith("__") or not hasattr(self._real, name):
            raise AttributeError(f"module {self._qualname!r} has no attribute {name!r} "
                                 f"(the installed CuPy is {_real.__version__})")
        real = getattr(self._real, name)
        if isinstance(real, types.ModuleType):
            return StrictNamespace(f"{self._qualname}.{name}", real, getattr(self._twin, name))
        if isinstance(real, type) or not callable(real):
            return getattr(self._twin, name, real)                       # dtypes, constants
        if not hasattr(self._twin, name):
            raise NotImplementedError(f"{self._qualname}.{name} has no NumPy twin in the stand-in")
        return StrictFunction(f"{self._qualname}.{name}", real, getattr(self._twin, name))


class _Runtime:
    @staticmethod
    def getDevice() -> int:
        return 0

    @staticmethod
    def getDeviceProperties(device: int) -> dict:
        return {"name": NAME.encode(), "maxThreadsPerBlock": 1024}


class _Device:
    id = 0

    def __init__(self, device=None):
        if device not in (None, 0):
            raise ValueError(f"the stand-in has one device (0), not {device!r}")


class _Cuda:
    runtime = _Runtime()
    Device = _Device

    @staticmethod
    def is_available() -> bool:
        return True


class StrictCupy(StrictNamespace):
    """The ``cupy`` module as the stand-in plays it."""
    __name__ = "cupy_strict"             # a key apart from real CuPy's in per-module caches
    __version__ = _real.__version__
    cuda = _Cuda()

    def __init__(self):
        super().__init__("cupy", _real, np)
        from cupy_strict_kernels import ElementwiseKernel, RawKernel
        self.ndarray, self.ElementwiseKernel, self.RawKernel = DeviceArray, ElementwiseKernel, RawKernel

    @staticmethod
    def asnumpy(a, stream=None, order="C", out=None, blocking=True):
        if isinstance(a, DeviceArray):
            return a.get()
        return np.asarray(a, order=order)


SPECIAL = StrictNamespace("cupyx.scipy.special", _real_special, __import__("scipy.special").special)


@contextlib.contextmanager
def installed():
    """Inside the block vca_ref runs its device paths on the stand-in; counters start at zero."""
    from vca_ref.fast.kernels import cuda as kcuda
    kcuda._memo.cache_clear()                      # kernel objects are memoised per device
    reset_counts()
    try:
        with backend.substitute_cupy(StrictCupy(), SPECIAL) as xp:
            yield xp
    finally:
        kcuda._memo.cache_clear()


from cupy_strict_array import DeviceArray  # noqa: E402  (the array class needs the helpers above)
