"""The stand-in's device array: a NumPy buffer that behaves like a ``cupy.ndarray`` it cannot leave.

What CuPy refuses is refused here with CuPy's exception type (``TypeError``): ``np.asarray(a)``,
NumPy functions fed a host array beside a device one, a host ``numpy.ndarray`` as an operand.
What costs a GPU a synchronisation is counted (``COUNTS.syncs``): ``.get()``, ``.item()``,
``.tolist()``, ``float()``/``int()``/``bool()`` of a 0-d array, printing.  Stricter than CuPy:
``float()``/``int()``/``bool()`` of an array with dimensions, and iteration (one launch, and later
one read, per element), are refused.

Methods are those of ``cupy.ndarray`` that NumPy also has, with CuPy's keywords.
"""
from __future__ import annotations

import operator

import numpy as np

from cupy_strict import COUNTS, StrictFunction, _real, check_keywords, unwrap, wrap


def _binary(op, reflected: bool = False):
    def method(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented if reflected else self._refuse_host(other)
        if not isinstance(other, (DeviceArray, int, float, bool, complex, np.generic)):
            return NotImplemented
        a, b = self._a, unwrap(other)
        return wrap(op(b, a) if reflected else op(a, b))
    return method


def _inplace(op):
    def method(self, other):
        if isinstance(other, np.ndarray):
            self._refuse_host(other)
        op(self._a, unwrap(other))
        return self
    return method


class DeviceArray:
    """A "device" array: the stand-in's ``cupy.ndarray``."""
    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a: np.ndarray):
        self._a = a

    # -- what stays on the device
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))
    real = property(lambda self: DeviceArray(self._a.real))
    device = property(lambda self: "cuda:0 (stand-in)")

    def __len__(self):
        return len(self._a)

    def __getitem__(self, index):
        return wrap(self._a[self._index(index)])

    def __setitem__(self, index, value):
        self._a[self._index(index)] = unwrap(value, allow_host=True)

    @staticmethod
    def _index(index):
        items = index if isinstance(index, tuple) else (index,)
        out = tuple(unwrap(i, allow_host=True) for i in items)   # host index arrays are copied
        return out if isinstance(index, tuple) else out[0]

    def __getattr__(self, name):
        real = getattr(_real.ndarray, name, None)
        if real is None or not hasattr(self._a, name):
            raise AttributeError(f"cupy.ndarray has no attribute {name!r}")
        return StrictFunction(f"cupy.ndarray.{name}", real, getattr(self._a, name))

    # -- reads that wait for the device
    def get(self, stream=None, order="C", out=None, blocking=True):
        COUNTS.syncs += 1
        return np.array(self._a, order=order)

    def item(self):
        COUNTS.syncs += 1
        return self._a.item()

    def tolist(self):
        COUNTS.syncs += 1
        return self._a.tolist()

    def _scalar(self, kind):
        if self._a.ndim != 0:
            raise TypeError(f"{kind.__name__}() of a device array of shape {self.shape}: only 0-d "
                            "arrays convert to Python scalars (and each conversion waits for the "
                            "device); reduce on the device, then convert once")
        COUNTS.syncs += 1
        return kind(self._a)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def __index__(self):
        return self._scalar(operator.index)

    def __repr__(self):
        COUNTS.syncs += 1
        return f"DeviceArray({self._a!r})"

    __str__ = __repr__

    def __format__(self, spec):
        return format(self._scalar(float), spec)

    # -- what CuPy refuses
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` "
                        "to construct a NumPy array explicitly.")

    def __iter__(self):
        raise TypeError(f"iterating a device array of shape {self.shape} runs one kernel per "
                        "element; index it or reduce on the device instead")

    def _refuse_host(self, other):
        raise TypeError(f"Unsupported type {type(other)}: a host numpy.ndarray of shape "
                        f"{other.shape} met a device array of shape {self.shape}; move it with "
                        "to_device or use a Python scalar")

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        """``np.exp(a)``, ``np.float32(2) * a``: CuPy's ufunc of the same name, on the device."""
        for x in inputs:
            if isinstance(x, np.ndarray):
                self._refuse_host(x)
        fn = getattr(_real, ufunc.__name__, None)
        if fn is None:
            return NotImplemented
        check_keywords(f"cupy.{ufunc.__name__}", fn, kw)
        return wrap(getattr(ufunc, method)(*unwrap(inputs), **unwrap(kw)))

    def __array_function__(self, func, types, args, kw):
        """``np.concatenate([a, b])``: CuPy's function of the same name, if CuPy has one."""
        real = getattr(_real, func.__name__, None)
        if real is None:
            return NotImplemented
        return StrictFunction(f"cupy.{func.__name__}", real, func)(*args, **kw)

    # -- arithmetic (CuPy kernels, computed by NumPy)
    __add__, __radd__ = _binary(operator.add), _binary(operator.add, True)
    __sub__, __rsub__ = _binary(operator.sub), _binary(operator.sub, True)
    __mul__, __rmul__ = _binary(operator.mul), _binary(operator.mul, True)
    __truediv__, __rtruediv__ = _binary(operator.truediv), _binary(operator.truediv, True)
    __floordiv__, __rfloordiv__ = _binary(operator.floordiv), _binary(operator.floordiv, True)
    __mod__, __rmod__ = _binary(operator.mod), _binary(operator.mod, True)
    __pow__, __rpow__ = _binary(operator.pow), _binary(operator.pow, True)
    __matmul__, __rmatmul__ = _binary(operator.matmul), _binary(operator.matmul, True)
    __and__, __rand__ = _binary(operator.and_), _binary(operator.and_, True)
    __or__, __ror__ = _binary(operator.or_), _binary(operator.or_, True)
    __xor__, __rxor__ = _binary(operator.xor), _binary(operator.xor, True)
    __lt__, __le__ = _binary(operator.lt), _binary(operator.le)
    __gt__, __ge__ = _binary(operator.gt), _binary(operator.ge)
    __eq__, __ne__ = _binary(operator.eq), _binary(operator.ne)
    __iadd__, __isub__ = _inplace(operator.iadd), _inplace(operator.isub)
    __imul__, __itruediv__ = _inplace(operator.imul), _inplace(operator.itruediv)
    __ipow__, __iand__, __ior__ = _inplace(operator.ipow), _inplace(operator.iand), _inplace(operator.ior)
    __hash__ = None

    def __neg__(self):
        return DeviceArray(-self._a)

    def __pos__(self):
        return DeviceArray(+self._a)

    def __abs__(self):
        return DeviceArray(abs(self._a))

    def __invert__(self):
        return DeviceArray(~self._a)
