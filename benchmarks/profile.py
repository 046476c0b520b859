"""Where the NumPy time goes: exclusive per-line CPU timings of one training step, split into
BLAS matrix products and single-threaded NumPy work.

    python -m benchmarks.profile [--top 25]

Runs with ONE BLAS thread and charges the thread's CPU time between two trace events to the
line that was executing (callee time is not charged to the caller), so the figures do not
depend on other load on the machine.  A line counts as BLAS when its code contains ``@`` or
``matmul`` (einsum runs NumPy's own single-threaded loops and counts as NumPy work).  The
split explains the benchmark's ceilings: only the BLAS share can use a second core, since NumPy's
elementwise ufuncs, reductions and einsum always run on one thread, while PyTorch parallelises
those too.
"""
from __future__ import annotations

import argparse
import collections
import inspect
import linecache
import sys
import time

import numpy as np

from benchmarks import common


class LineTimer:
    """Exclusive line timings (thread CPU time) of the given functions."""

    def __init__(self, funcs):
        self.codes = {f.__code__ for f in funcs}
        self.t = collections.defaultdict(float)

    def run(self, fn, reps: int) -> None:
        stack, last = [], [time.thread_time()]

        def charge():
            now = time.thread_time()
            if stack:
                self.t[stack[-1]] += now - last[0]
            last[0] = now

        def local(frame, event, arg):
            charge()
            if event == "line":
                stack[-1] = (frame.f_code.co_filename, frame.f_lineno)
            elif event == "return":
                stack.pop()
            last[0] = time.thread_time()
            return local

        def outer(frame, event, arg):
            if frame.f_code not in self.codes:
                return None
            charge()
            stack.append((frame.f_code.co_filename, frame.f_lineno))
            last[0] = time.thread_time()
            return local

        sys.settrace(outer)
        try:
            for _ in range(reps):
                fn()
        finally:
            sys.settrace(None)

    def split(self, reps: int) -> dict:
        """Seconds per rep in the categories BLAS / scipy erf / depthwise conv / other NumPy."""
        cat = dict.fromkeys(("BLAS matmul", "scipy erf (GELU)", "depthwise conv", "other NumPy"), 0.0)
        for (fn, ln), t in self.t.items():
            code = linecache.getline(fn, ln).split("#")[0]
            if fn.endswith("backend.py"):
                cat["scipy erf (GELU)"] += t
            elif fn.endswith("dwconv.py"):
                cat["depthwise conv"] += t
            elif ("@" in code or "matmul" in code) and "einsum" not in code:
                cat["BLAS matmul"] += t
            else:
                cat["other NumPy"] += t
        return {k: v / reps for k, v in cat.items()}

    def top(self, n: int, reps: int) -> list[tuple[float, str]]:
        rows = sorted(self.t.items(), key=lambda kv: -kv[1])[:n]
        return [(t / reps, f"{fn.rsplit('/', 1)[-1]}:{ln}  {linecache.getline(fn, ln).strip()[:90]}")
                for (fn, ln), t in rows]


def _package_functions():
    """Every function and method defined in the modules a training step runs through."""
    from vca_ref import backend
    from vca_ref.models import dit, vit
    from vca_ref.nn import attention, layers
    from vca_ref.ops import (activations, dwconv, heads, lambdas, layernorm, linear, losses, modulate,
                       patch_embed, pooling, rmsnorm, softmax, vca)
    from vca_ref.ops import mhsa
    from vca_ref.train import optim
    funcs = [backend.erf]
    for mod in (activations, dwconv, heads, lambdas, layernorm, linear, losses, modulate, patch_embed,
                pooling, rmsnorm, softmax, vca, mhsa, attention, layers, vit, dit, optim):
        for obj in vars(mod).values():
            if inspect.isfunction(obj) and obj.__module__ == mod.__name__:
                funcs.append(obj)
            elif inspect.isclass(obj) and obj.__module__ == mod.__name__:
                funcs += [m for m in vars(obj).values() if inspect.isfunction(m)]
    return funcs


def run_profile(top: int = 0, reps: int = 5, verbose: bool = True) -> dict:
    """Profile the VCA layer (N = 196 batch 8, N = 4096) and the tiny-mnist ViT training step."""
    from vca_ref.models.vit import create_vit
    from vca_ref.nn.vca import VisualContrastAttention
    from benchmarks.model import _batch, _numpy_step
    limiter = common.set_threads(1)   # noqa: F841  (keeps the BLAS limit alive)
    steps = {}
    for grid, batch in ((14, 8), (64, 1)):
        layer = VisualContrastAttention(192, 3, (grid, grid), (8, 8))
        x = np.random.default_rng(0).standard_normal((batch, grid * grid, 192)).astype(np.float32)
        steps[f"VCA layer fwd+bwd N={grid * grid} B={batch}"] = (
            lambda layer=layer, x=x: layer.backward(layer.forward(x)))
    vit_model = create_vit("tiny-mnist", attention="vca")
    steps["tiny-mnist ViT training step B=128"] = _numpy_step(vit_model, "vit", _batch(vit_model, "vit", 128, 0))
    funcs, out = _package_functions(), {}
    for name, fn in steps.items():
        fn()
        timer = LineTimer(funcs)
        timer.run(fn, reps)
        split = timer.split(reps)
        total = sum(split.values())
        out[name] = {"total_cpu_s": total, **{k: v for k, v in split.items()}}
        if verbose:
            print(f"{name}: {total * 1e3:.1f} ms CPU, 1 thread | " + " | ".join(
                f"{k} {v * 1e3:.1f} ms ({v / total:.0%})" for k, v in split.items() if v > 0))
            for t, line in timer.top(top, reps):
                print(f"    {t * 1e3:7.2f} ms  {line}")
    return out


def main(argv=None) -> int:
    """``python -m benchmarks.profile [--top N]``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    p.add_argument("--top", type=int, default=0, help="also list the N most expensive lines")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    run_profile(args.top, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
