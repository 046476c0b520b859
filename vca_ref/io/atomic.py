"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

    1. write the bytes to a temporary file ``.NAME.<random>.tmp`` in the SAME folder
    2. flush + fsync it
    3. ``os.replace`` it over NAME (atomic on POSIX), then fsync the folder

A process killed between 1 and 3 leaves its temporary file behind; :func:`remove_stale_temps`
deletes such leftovers (a run calls it when it starts).  Errors name the file being written
(never the temporary name), so "read-only folder" or "disk full" messages point at the
right place.
"""
from __future__ import annotations

import errno
import os
import tempfile
from typing import Callable

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: str) -> str:
    """``.NAME.``: the start of every temporary file :func:`atomic_write` makes for ``path``."""
    return "." + os.path.basename(path) + "."


def atomic_write(path: str, write: Callable | bytes) -> None:
    """Write ``path`` atomically; ``write`` is the bytes, or a function ``write(f)`` filling ``f``.

    On any error the temporary file is removed, the old file (if any) is left untouched, and the
    error propagates; an ``OSError`` is re-raised with ``path`` as its file name.
    """
    fill = (lambda f: f.write(write)) if isinstance(write, (bytes, bytearray, memoryview)) else write
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=directory)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)          # mkstemp creates 0600
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, os.strerror(e.errno), path) from None
        raise
    try:                                          # persist the rename itself
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some file systems refuse directory fsync
        pass


def remove_stale_temps(directory: str, names) -> list[str]:
    """Delete the leftover temporary files of interrupted writes of ``names`` in ``directory``."""
    prefixes = tuple(temp_prefix(n) for n in names)
    stale = [os.path.join(directory, f) for f in sorted(os.listdir(directory))
             if f.startswith(prefixes) and f.endswith(TEMP_SUFFIX)]
    for p in stale:
        os.unlink(p)
    return stale


def check_writable_folder(directory: str) -> None:
    """Raise ``OSError`` naming ``directory`` unless a file can be created in it (creates it if absent).

    Errors: the path is a file (``ENOTDIR``), the folder is read-only (``EROFS``/``EACCES``) or
    the disk is full (``ENOSPC``); the probe file is removed again.
    """
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", directory)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=TEMP_SUFFIX, dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise OSError(e.errno, f"cannot create files in this folder ({reason})", directory) from None

