"""timm on a machine whose torchvision does not match torch: the stand-in of ``tests/stubs``.

timm imports a few torchvision names at load.  Where the installed torchvision wheel was built for
another torch it fails at import ("operator torchvision::nms does not exist"); users install
matching builds, the tests put the stand-in package of ``tests/stubs/torchvision`` first on the
path instead (in this process and, through ``PYTHONPATH``, in the processes it starts).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

STUBS = str(Path(__file__).resolve().parent / "stubs")


def stand_in_torchvision() -> bool:
    """Use the stand-in when the real torchvision cannot be imported; True when it is in use."""
    if STUBS in sys.path:
        return True
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:               # ImportError, or RuntimeError from a mismatched build
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    sys.path.insert(0, STUBS)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (STUBS, os.environ.get("PYTHONPATH")) if p)
    return True
