"""The thin module base class: parameters, gradients and state dicts.

A :class:`Module` holds parameters (``self.params``, a dict name -> array),
the gradients of the last ``backward`` (``self.grads``, same names), child
modules (``self.children``) and the cache of its last ``forward``.  All the
math lives in the pure ``*_forward`` / ``*_backward`` op pairs of
:mod:`vca_ref.ops`; a module only chains them.

Names and layouts follow PyTorch exactly, so ``state_dict()`` of a module here
and ``state_dict()`` of the equivalent ``torch.nn.Module`` have the same keys,
shapes and (up to the array type) values.

dtype rule
----------
Parameters are created in the module's ``dtype`` (constructor argument,
default ``float32``).  ``forward`` requires its floating-point input to have
exactly that dtype and raises ``TypeError`` otherwise; convert the module with
``module.to(dtype=...)``.  Gradients have the dtype of the parameters.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from vca_ref.backend import device_of, get_array_module, to_device

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32/float64, else raise TypeError."""
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


class Module:
    """Base class: a bag of named parameters plus child modules.

    Subclasses fill ``self.params`` (own parameters, dotted names allowed, e.g.
    ``"stage1.norm.weight"``) and ``self.children`` (name -> Module), and
    implement ``forward`` / ``backward``.  ``backward`` must fill
    ``self.grads`` with one array per own parameter.
    """

    def __init__(self, dtype=np.float32):
        self.dtype = check_float_dtype(dtype)
        self.params: dict[str, object] = {}
        self.grads: dict[str, object] = {}
        self.children: dict[str, "Module"] = {}
        self.buffers: dict[str, object] = {}   # fixed tensors saved in state dicts (no grads)
        self.cache = None

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """Yield ``(dotted_prefix, module)`` for self and every descendant."""
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_modules(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, object]]:
        """Yield ``(full_name, array)`` in a deterministic order (PyTorch-style names)."""
        for prefix, mod in self.named_modules():
            for name, p in mod.params.items():
                yield prefix + name, p

    def named_grads(self) -> dict[str, object]:
        """Gradients of the last backward under the full parameter names."""
        out = {}
        for prefix, mod in self.named_modules():
            for name in mod.params:
                if name not in mod.grads:
                    raise RuntimeError(f"no gradient for {prefix + name}: call backward() first")
                out[prefix + name] = mod.grads[name]
        return out

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(int(np.prod(p.shape)) for _, p in self.named_parameters()))

    def zero_grad(self) -> None:
        for _, mod in self.named_modules():
            mod.grads = {}

    # ------------------------------------------------------------------ state dicts
    def named_buffers(self) -> Iterator[tuple[str, object]]:
        """Yield ``(full_name, array)`` of the fixed (non-trainable) tensors."""
        for prefix, mod in self.named_modules():
            for name, b in mod.buffers.items():
                yield prefix + name, b

    def state_dict(self) -> dict[str, object]:
        """Parameters and buffers under PyTorch names and layouts (the arrays, not copies)."""
        out = dict(self.named_parameters())
        out.update(self.named_buffers())
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Load parameters by name; all-or-nothing.

        Every key, shape and dtype kind is checked BEFORE anything is assigned;
        on any problem a ``ValueError``/``TypeError`` names it and the module is
        left unchanged.  Values are copied and cast to the module's dtype and
        device.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state dict must be a dict of arrays, got {type(state).__name__}")
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        if strict and (missing or extra):
            raise ValueError(
                "state dict does not match the module: "
                + (f"missing keys {missing}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unexpected keys {extra}" if extra else ""))
        new = {}
        for k, p in own.items():
            if k not in state:
                continue
            v = state[k]
            v_np_dtype = getattr(v, "dtype", None)
            if v_np_dtype is None:
                raise TypeError(f"state dict entry {k!r} is a {type(v).__name__}, expected an array")
            try:
                np.dtype(v_np_dtype)
            except TypeError:   # e.g. a torch.Tensor
                raise TypeError(f"state dict entry {k!r} is a {type(v).__module__}.{type(v).__name__} "
                                f"with dtype {v_np_dtype}, expected a NumPy/CuPy array "
                                f"(convert torch tensors with .numpy())") from None
            if np.dtype(v_np_dtype).kind != "f":
                raise TypeError(f"state dict entry {k!r} has dtype {v_np_dtype}, expected a floating dtype")
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(
                    f"state dict entry {k!r} has shape {tuple(v.shape)}, expected {tuple(p.shape)}")
            new[k] = v
        # every check passed: now assign (copy + cast to our dtype/device)
        device = self.device
        for prefix, mod in self.named_modules():
            for table in (mod.params, mod.buffers):
                for name in list(table):
                    full = prefix + name
                    if full in new:
                        arr = to_device(new[full], device)
                        xp = get_array_module(arr)
                        table[name] = xp.array(arr, dtype=self.dtype, copy=True)
            mod.grads = {}

    # ------------------------------------------------------------------ dtype / device
    @property
    def device(self) -> str:
        for _, p in self.named_parameters():
            return device_of(p)
        return "cpu"

    def to(self, device: str | None = None, dtype=None) -> "Module":
        """Move/convert all parameters in place (returns self)."""
        dt = check_float_dtype(dtype) if dtype is not None else None
        for _, mod in self.named_modules():
            if dt is not None:
                mod.dtype = dt
            for table in (mod.params, mod.buffers):
                for name, p in table.items():
                    if device is not None:
                        p = to_device(p, device)
                    if dt is not None:
                        p = p.astype(dt)
                    table[name] = p
            mod.grads = {}
            mod.cache = None
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError
