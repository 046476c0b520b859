"""An on/off switch read from an environment variable, overridable from code.

``Switch("VCA_REF_FAST")`` is on unless the variable says ``0``/``false``/``off``/``no`` or
:meth:`Switch.set` forced a value; ``with switch.scoped(False): ...`` forces it inside a block
only.  The variable is read when the switch is made and again by ``set(None)``: a query is one
attribute read, cheap enough for a dispatch on every op call.
"""
from __future__ import annotations

import contextlib
import os

OFF_WORDS = ("0", "false", "off", "no")


class Switch:
    """One named switch: the environment's value, unless forced by :meth:`set`."""

    def __init__(self, env_var: str):
        self.env_var = env_var
        self.forced: bool | None = None      # None: follow the environment
        self.on = self._from_environment()   # what is_on() answers

    def _from_environment(self) -> bool:
        return os.environ.get(self.env_var, "1").strip().lower() not in OFF_WORDS

    def is_on(self) -> bool:
        return self.on

    def set(self, flag: bool | None) -> bool | None:
        """Force on/off (``None``: read the environment again and follow it); returns the previous
        forced value."""
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"set_enabled expects True, False or None, got {flag!r}")
        previous, self.forced = self.forced, flag
        self.on = self._from_environment() if flag is None else flag
        return previous

    @contextlib.contextmanager
    def scoped(self, flag: bool):
        """Force ``flag`` inside the ``with`` block, then restore the previous setting."""
        previous = self.set(flag)
        try:
            yield
        finally:
            self.set(previous)
