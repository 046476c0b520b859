#!/usr/bin/env python3
"""Layer benchmark: forward+backward of one VCA / MHSA layer, NumPy against PyTorch CPU eager.

    python benchmarks/bench_layer.py                 # full sweep N = 64 .. 16,384 (a few minutes)
    python benchmarks/bench_layer.py --quick         # smoke run (seconds)
    python benchmarks/bench_layer.py --grids 14,64 --rounds 11 --threads 2 --out benchmarks/results

Same as ``vca-ref bench layer``.  Writes ``layer_bench.json`` and ``layer_bench.png`` to ``--out``
(default ``benchmarks/results/``, git-ignored).  What is measured: ``benchmarks/README.md``.
"""
import sys

from vca_ref.benchmarks.layer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
