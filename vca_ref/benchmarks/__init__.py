"""Benchmarks: NumPy against PyTorch CPU eager, and against the machine's matmul ceiling.

    vca-ref bench [layer] [--quick] [--out DIR] ...     one attention layer, N = 64 .. 16,384
    vca-ref bench model [--quick] [--out DIR] ...       tiny ViT / DiT training steps
    vca-ref bench profile [--top N]                     where the NumPy time goes (1 thread)
    vca-ref bench gpu [--quick] [--out DIR] ...         one layer, CuPy vs PyTorch CUDA (skips
                                                        with the reason where there is no GPU)

:func:`main` is the entry point the CLI hooks into; :func:`run_layer_bench` and
:func:`run_model_bench` are the functions behind it.  See ``benchmarks/README.md``.
"""
from __future__ import annotations

from .layer import run_layer_bench


def run_model_bench(*args, **kwargs):
    """Whole-model training-step benchmark (see :mod:`vca_ref.benchmarks.model`)."""
    from .model import run_model_bench as _run
    return _run(*args, **kwargs)


def main(argv=None) -> int:
    """``vca-ref bench [layer|model|gpu|profile] [options]``: dispatch to the layer (default), model
    or GPU benchmark, or the line profile of the NumPy path."""
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    which = argv.pop(0) if argv and argv[0] in ("layer", "model", "gpu", "profile") else "layer"
    if which == "profile":
        from .line_profile import main as profile_main
        return profile_main(argv)
    if which == "gpu":
        from .gpu import main as gpu_main
        return gpu_main(argv)
    if which == "model":
        from .model import main as model_main
        return model_main(argv)
    from .layer import main as layer_main
    return layer_main(argv)


__all__ = ["main", "run_layer_bench", "run_model_bench"]
