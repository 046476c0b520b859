#!/usr/bin/env python3
"""GPU benchmark: forward+backward of one VCA / MHSA layer, CuPy against PyTorch CUDA eager.

    python benchmarks/bench_gpu.py                   # N = 256 .. 16,384, plus the probes
    python benchmarks/bench_gpu.py --quick           # smoke run (two small points)
    python benchmarks/bench_gpu.py --grids 64,128 --rounds 50 --out benchmarks/results

Same as ``vca-ref bench gpu``.  Writes ``gpu_bench.json`` to ``--out`` (default
``benchmarks/results/``).  Without a CUDA device (or without PyTorch CUDA, unless ``--no-torch``)
it prints why and exits 0.  What is measured: the docstring of ``vca_ref/benchmarks/gpu.py``.
"""
import sys

from vca_ref.benchmarks.gpu import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
