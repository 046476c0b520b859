#!/usr/bin/env python3
"""Whole-model benchmark: one training step (forward + loss + backward + AdamW) of the tiny ViT
and DiT, NumPy against the same model in PyTorch CPU eager.

    python benchmarks/bench_model.py                 # tiny-mnist ViT/DiT (VCA, MHSA) + a DeiT-width ViT
    python benchmarks/bench_model.py --quick         # smoke run (seconds)
    python benchmarks/bench_model.py --threads 1 --only vit-tiny-mnist-vca

Same as ``vca-ref bench model``.  Writes ``model_bench.json`` to ``--out`` (default
``benchmarks/results/``, git-ignored).  What is measured: ``benchmarks/README.md``.
"""
import sys

from vca_ref.benchmarks.model import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
