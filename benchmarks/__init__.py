"""Benchmarks: NumPy against PyTorch CPU eager, and against the machine's matmul ceiling.

    python -m benchmarks [layer] [--quick] [--out DIR] ...   one attention layer, N = 64 .. 16,384
    python -m benchmarks model [--quick] [--out DIR] ...     tiny ViT / DiT training steps
    python -m benchmarks profile [--top N]                   where the NumPy time goes (1 thread)
    python -m benchmarks gpu [--quick] [--out DIR] ...       one layer, CuPy vs PyTorch CUDA (skips
                                                             with the reason where there is no GPU)

Run from the repository root (the benchmarks are not part of the installed package; the PyTorch
side needs ``pip install -e ".[torch]"``).  :func:`main` dispatches; :func:`run_layer_bench` and
:func:`run_model_bench` are the functions behind it.  See ``benchmarks/README.md``.
"""
from __future__ import annotations

from benchmarks.layer import run_layer_bench


def run_model_bench(*args, **kwargs):
    """Whole-model training-step benchmark (see :mod:`benchmarks.model`)."""
    from benchmarks.model import run_model_bench as _run
    return _run(*args, **kwargs)


def main(argv=None) -> int:
    """``python -m benchmarks [layer|model|gpu|profile] [options]``: dispatch to the layer (default), model
    or GPU benchmark, or the line profile of the NumPy path."""
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    which = argv.pop(0) if argv and argv[0] in ("layer", "model", "gpu", "profile") else "layer"
    if which == "profile":
        from benchmarks.profile import main as profile_main
        return profile_main(argv)
    if which == "gpu":
        from benchmarks.gpu import main as gpu_main
        return gpu_main(argv)
    if which == "model":
        from benchmarks.model import main as model_main
        return model_main(argv)
    from benchmarks.layer import main as layer_main
    return layer_main(argv)


__all__ = ["main", "run_layer_bench", "run_model_bench"]
