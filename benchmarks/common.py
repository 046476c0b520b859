"""Shared measuring tools of the benchmarks: threads, interleaved timing, peak memory, matmul ceiling.

Conventions (stated once, used by every benchmark here):

* **Time** is wall-clock ``time.perf_counter`` (CPU time ``process_time`` is recorded beside it,
  see :func:`interleaved_medians`); every implementation is run once per *round*,
  rounds are repeated, and the figure reported is the **median over rounds**.  Running the
  contenders interleaved (NumPy, PyTorch, NumPy, PyTorch, ...) means a burst of load from other
  processes on a shared machine hits all of them alike, so the *ratios* stay meaningful even when
  absolute times wander.  A short pause between runs lets the other library's idle worker threads
  stop spinning (OpenBLAS and OpenMP both busy-wait for a while after a parallel region).
* **Peak memory** is measured in a separate, untimed run.  NumPy: ``tracemalloc`` (NumPy reports
  its data buffers to it) - the peak of bytes allocated during one forward+backward on top of what
  already existed (input, upstream gradient, parameters); BLAS-internal work buffers are not seen.
  PyTorch: the allocation events of ``torch.profiler(profile_memory=True)`` summed in time order -
  the peak of bytes allocated by PyTorch's CPU allocator during one step, on the same footing.
* **Threads**: NumPy's BLAS and PyTorch get the same thread count (``--threads``, default: what
  NumPy's BLAS uses).  NumPy's elementwise ufuncs always run on one thread; PyTorch's run on all.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import os
import platform
import statistics
import time
import tracemalloc

import numpy as np

try:  # optional: lets us read and set NumPy's BLAS thread count
    import threadpoolctl
except Exception:  # pragma: no cover - depends on the environment
    threadpoolctl = None

try:  # optional: every PyTorch column is skipped without it
    import torch
except Exception:  # pragma: no cover - depends on the environment
    torch = None

SETTLE_S = 0.15     # pause between two timed runs: OpenBLAS worker threads keep spinning ~0.1 s
                    # after a call (2^28 cycles), which would slow the PyTorch run that follows


# ----------------------------------------------------------------------------- threads, machine
def blas_threads() -> int:
    """Threads NumPy's BLAS uses now (``os.cpu_count()`` when it cannot be read)."""
    if threadpoolctl is not None:
        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas":
                return int(info["num_threads"])
    return os.cpu_count() or 1


def set_threads(n: int):
    """Give NumPy's BLAS and PyTorch ``n`` threads; returns the threadpoolctl limiter (keep it)."""
    limiter = threadpoolctl.threadpool_limits(n, user_api="blas") if threadpoolctl is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    return limiter


def machine_info(threads: int) -> dict:
    """Versions, BLAS and CPU facts recorded next to every result."""
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "torch": getattr(torch, "__version__", None), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "processor": _cpu_model(), "threads": threads,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if threadpoolctl is not None:
        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ----------------------------------------------------------------------------- timing
def interleaved_medians(fns: dict, rounds: int, warmup: int = 1, settle: float = SETTLE_S):
    """Run every callable of ``fns`` once per round, ``rounds`` times.

    Returns ``(wall, cpu)``: two dicts name -> median seconds, wall-clock (``perf_counter``) and
    CPU time of the whole process (``process_time``, every thread).  Each callable is run
    ``warmup`` times first (allocator, BLAS buffers, autograd graph caches).  On a loaded machine
    wall time also measures how long the scheduler kept the process waiting; with one thread,
    CPU time measures only the work (with more, it also counts threads spinning at barriers).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle)
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = lambda d: {name: statistics.median(ts) for name, ts in d.items()}   # noqa: E731
    return med(wall), med(cpu)


def matmul_probes(n: int) -> dict:
    """Callables multiplying two float32 (n, n) matrices with NumPy (and PyTorch): the ceiling."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    probes = {"matmul_numpy": lambda: np.matmul(a, b, out=out)}
    if torch is not None:
        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)
        probes["matmul_torch"] = lambda: torch.mm(ta, tb, out=tout)
    return probes


# ----------------------------------------------------------------------------- memory
def numpy_peak_bytes(fn) -> int:
    """Peak bytes NumPy allocates while ``fn()`` runs, above what was allocated before."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return int(peak - base)


def torch_peak_bytes(fn) -> int | None:
    """Peak bytes PyTorch's CPU allocator hands out while ``fn()`` runs (None if unmeasurable).

    Sums the profiler's allocation (+) and free (-) events in time order and takes the maximum.
    """
    if torch is None:
        return None
    from torch.profiler import ProfilerActivity, profile
    gc.collect()
    try:
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        deltas = []

        def walk(node):
            ef = node.extra_fields
            if type(ef).__name__ == "_ExtraFields_Allocation":
                deltas.append((node.start_time_ns, int(ef.alloc_size)))
            for child in node.children:
                walk(child)

        for root in prof.profiler.kineto_results.experimental_event_tree():
            walk(root)
    except Exception:  # pragma: no cover - private profiler API moved
        return None
    deltas.sort()
    return int(max(itertools.accumulate(d for _, d in deltas), default=0))


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines (they go to file descriptor 2)."""
    import sys
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def torch_step(tmod, xt, dyt):
    """A closure running one PyTorch forward+backward of ``tmod`` on ``xt`` with upstream ``dyt``,
    clearing gradients first (``zero_grad(set_to_none=True)``, as in training)."""
    params = list(tmod.parameters())

    def step():
        for p in params:
            p.grad = None
        xt.grad = None
        tmod(xt).backward(dyt)
    return step


def save_results_json(res: dict, out: str, name: str) -> str:
    """Write a benchmark's result dict as ``out/name`` (JSON, atomically); returns the path."""
    import json
    import os

    from vca_ref.io.safetensors_format import atomic_write
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    data = json.dumps(res, indent=1).encode()
    atomic_write(path, lambda f: f.write(data))
    return path
