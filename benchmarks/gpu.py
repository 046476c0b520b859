"""GPU benchmark: forward+backward of one VCA / MHSA layer, CuPy against PyTorch CUDA eager.

The layer is the one of the CPU benchmark (:mod:`.layer`): C = 192, h = 3 (DeiT-Tiny widths),
float32, no prefix token, square token grids 16x16 .. 128x128 (N = 256 .. 16,384), VCA with an
8x8 contrast grid (n = 64) and its default options.  Three contenders per layer:

* **CuPy**: the op pair of this repository (``vca_forward`` + ``vca_backward``, or
  ``mhsa_forward`` + ``mhsa_backward``) on CuPy arrays, CUDA kernels on (the default);
* **CuPy, no kernels**: the same with ``kernels.enabled(False)``: the plain CuPy reference lines,
  which shows what the hand-written kernels buy;
* **PyTorch**: the layer of :mod:`vca_ref.pytorch.attention` (autograd, eager, every softmax
  attention one ``F.scaled_dot_product_attention`` call) on CUDA, loaded with the same weights, fed the same input and
  upstream gradient.  Before timing, its output and input gradient are compared with CuPy's.

Timing: CUDA events recorded around one call on each framework's current stream, the device
synchronised before the call and the end event waited on, so every launched kernel is inside the
interval; contenders run interleaved, after warm-up runs (kernel compilation, allocator pools,
cuBLAS handles), and the figure is the **median** over rounds.  TF32 is off on both sides
(PyTorch's matmul and cuDNN flags are set to False for the run; CuPy uses TF32 only under
``CUPY_TF32=1``, recorded), so both compute in float32.  The op pairs are timed, not the modules:
a module's input check reads a finiteness flag back to the host, a synchronisation PyTorch does
not have.

Reported per point: median (and minimum) times, the ratio CuPy / PyTorch, the kernel speed-up
(no-kernels / kernels), and the achieved FLOP/s with the convention of the CPU benchmark:
forward multiply-accumulates MHSA 4NC^2 + 2N^2C and VCA 4NC^2 + 7nNC per sample (docs/spec.md;
pooling, conv and elementwise work not counted), FLOP = 2 x MAC, forward+backward = 3 x forward.
MHSA is skipped where its (B, h, N, N) float32 matrices (about four alive at once) would need more
than the memory budget.  Beside the layers, *probes* measure the ceilings in the same run: a
float32 matmul (TFLOP/s), a device copy (GB/s), and two elementwise-bound parts of the code, the
GELU forward and the AdamW step, in GB/s counting every array read or written once.

Where no CUDA device answers, or PyTorch has no CUDA (unless ``--no-torch``), :func:`main`
prints why and returns 0 without measuring or writing anything.  ``run_gpu_bench(device="cpu")``
runs the same pipeline on NumPy and PyTorch-CPU stand-ins with a wall clock; the tests use it,
and its figures are CPU figures, labelled so.  Results go to ``<out>/gpu_bench.json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from vca_ref import backend
from vca_ref.fast import kernels
from vca_ref.nn.mhsa import MultiHeadSelfAttention
from vca_ref.nn.vca import VisualContrastAttention
from vca_ref.nn.module import Module
from vca_ref.ops.activations import gelu_forward
from vca_ref.ops.mhsa import mhsa_backward, mhsa_forward
from vca_ref.ops.vca import vca_backward, vca_forward
from vca_ref.train.optim import AdamW
from benchmarks.common import fmt_bytes, save_results_json, torch, torch_step
from benchmarks.layer import C, HEADS, POOL, mhsa_macs, vca_macs

# (grid side, batch): B * N = 8,192 .. 16,384 tokens per step
FULL_POINTS = [(16, 32), (32, 8), (64, 2), (128, 1)]
QUICK_POINTS = [(16, 2), (32, 1)]
STAND_IN_POINTS = [(8, 1), (16, 1)]
# probe sizes: matmul side, elementwise elements, AdamW parameters
PROBE_SIZES = {"full": (8192, 1 << 26, 1 << 24), "quick": (2048, 1 << 22, 1 << 20),
               "cpu": (256, 1 << 16, 1 << 14)}
MHSA_LIVE_MATRICES = 4          # S, logits, dS, dL of (B, h, N, N) float32 around the peak
MEMORY_FRACTION = 0.4           # MHSA also skipped above this fraction of the device's memory


# ----------------------------------------------------------------------------- availability
def unavailable_reason(with_torch: bool = True) -> str | None:
    """Why the GPU benchmark cannot run here, or ``None`` when it can."""
    if not backend.cuda_available():
        return f"no CUDA device for CuPy: {backend.describe()}"
    if with_torch:
        if torch is None:
            return ("PyTorch is not installed; the comparison needs PyTorch with CUDA "
                    "(--no-torch times CuPy alone)")
        if not torch.cuda.is_available():
            return (f"PyTorch {torch.__version__} has no CUDA (torch.version.cuda = "
                    f"{torch.version.cuda}); install a CUDA build of PyTorch, or pass --no-torch "
                    "to time CuPy alone")
    return None


# ----------------------------------------------------------------------------- clocks
class WallClock:
    """Seconds of one call by ``time.perf_counter`` (the CPU stand-in)."""
    kind = "wall clock (time.perf_counter) around one call"

    def __call__(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


class CupyEvents:
    """Seconds of one call between two CUDA events on CuPy's current stream."""
    kind = "CUDA events around one call, device synchronised before, end event waited on"

    def __init__(self):
        self.cp = backend.cupy_module()
        self.start, self.end = self.cp.cuda.Event(), self.cp.cuda.Event()

    def __call__(self, fn) -> float:
        self.cp.cuda.Device().synchronize()          # nothing of another contender still queued
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.cp.cuda.get_elapsed_time(self.start, self.end) / 1e3


class TorchEvents:
    """Seconds of one call between two ``torch.cuda.Event`` on PyTorch's current stream."""
    kind = CupyEvents.kind

    def __init__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn) -> float:
        torch.cuda.synchronize()
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def measure(contenders: dict, rounds: int, warmup: int) -> dict:
    """``{name: (fn, clock)}`` -> ``{name: [seconds per round]}``, run interleaved after warm-up."""
    for fn, clock in contenders.values():
        for _ in range(warmup):
            clock(fn)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (fn, clock) in contenders.items():
            times[name].append(clock(fn))
    return times


def summary(ts: list[float]) -> dict:
    """Median, minimum and inter-quartile range of one contender's times (seconds)."""
    q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
    return {"median_s": statistics.median(ts), "min_s": min(ts), "iqr_s": q[2] - q[0],
            "rounds": len(ts)}


# ----------------------------------------------------------------------------- where it runs
class Target:
    """Where a run computes: ``"cuda"`` (CuPy + PyTorch CUDA, CUDA events) or ``"cpu"`` (the
    NumPy + PyTorch-CPU stand-in with a wall clock, which exercises the same pipeline)."""

    def __init__(self, device: str, with_torch: bool):
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
        self.device = device
        self.xp = backend.xp_for(device)
        self.with_torch = with_torch and torch is not None
        self.torch_device = device
        self.clock = CupyEvents() if device == "cuda" else WallClock()
        self.torch_clock = (TorchEvents() if device == "cuda" else WallClock()) \
            if self.with_torch else None

    def total_memory(self) -> int | None:
        """Bytes of device memory (None on the CPU stand-in)."""
        return self.xp.cuda.Device().mem_info[1] if self.device == "cuda" else None

    def release(self) -> None:
        """Hand cached blocks back (CuPy's pool, PyTorch's caching allocator) between points."""
        if self.device == "cuda":
            self.xp.get_default_memory_pool().free_all_blocks()
            if self.with_torch:
                torch.cuda.empty_cache()

    def info(self) -> dict:
        """Versions and the device, recorded next to every result."""
        out = {"device": self.device, "stand_in": self.device == "cpu", "python":
               platform.python_version(), "numpy": np.__version__, "backends": backend.describe(),
               "torch": getattr(torch, "__version__", None),
               "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None),
               "CUPY_TF32": os.environ.get("CUPY_TF32", "0"),
               "kernels_enabled": kernels.kernels_enabled()}
        if self.device == "cuda":
            cp = self.xp
            props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
            name = props["name"]
            out.update(gpu=name.decode() if isinstance(name, bytes) else name,
                       compute_capability=f"{props['major']}.{props['minor']}",
                       gpu_memory_bytes=int(self.total_memory()), cupy=cp.__version__,
                       cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
                       cuda_driver=cp.cuda.runtime.driverGetVersion())
        else:
            out["processor"] = platform.processor() or platform.machine()
        return out


class _NoTF32:
    """Turn PyTorch's TF32 matmul/cuDNN paths off inside the block (restored afterwards)."""

    def __enter__(self):
        self.saved = None
        if torch is not None:
            self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


# ----------------------------------------------------------------------------- one layer
def _xp_step(forward, backward, x, dy, use_kernels: bool):
    """One forward+backward of an op pair; ``use_kernels=False`` runs the plain reference lines."""
    def step():
        with kernels.enabled(use_kernels):
            _, cache = forward(x)
            backward(dy, cache)
    return step


def _rel_diff(a, b) -> float:
    """max |a - b| / max |b| (normwise, as the tests measure)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def _tflops(macs_fwd: int, seconds: float | None) -> float | None:
    return None if not seconds else 2 * 3 * macs_fwd / seconds / 1e12   # 2 FLOP/MAC, bwd = 2 fwd


def bench_layer(kind: str, grid: int, batch: int, target: Target, *, rounds: int, warmup: int,
                seed: int = 0) -> dict:
    """Time one layer (``"vca"`` or ``"mhsa"``) at one point; returns its JSON fields."""
    N = grid * grid
    rng = np.random.default_rng(seed)
    x_host = rng.standard_normal((batch, N, C)).astype(np.float32)             # (B, N, C)
    dy_host = rng.standard_normal((batch, N, C)).astype(np.float32)            # (B, N, C)
    if kind == "vca":
        layer = VisualContrastAttention(C, HEADS, (grid, grid), POOL, seed=seed)
        macs = batch * vca_macs(N)
    else:
        layer = MultiHeadSelfAttention(C, HEADS, seed=seed)
        macs = batch * mhsa_macs(N)
    layer.to(device=target.device)
    p = layer.params
    if kind == "vca":
        def forward(x):
            return vca_forward(x, p, layer.config)
        backward = vca_backward
    else:
        def forward(x):
            return mhsa_forward(x, p, HEADS)
        backward = mhsa_backward
    x, dy = backend.to_device(x_host, target.device), backend.to_device(dy_host, target.device)
    contenders = {"cupy": (_xp_step(forward, backward, x, dy, True), target.clock),
                  "cupy_nokernels": (_xp_step(forward, backward, x, dy, False), target.clock)}
    out = {"macs_fwd": macs}
    if target.with_torch:
        from vca_ref.pytorch import from_numpy
        tmod = from_numpy(layer).to(target.torch_device)
        xt = torch.from_numpy(x_host).to(target.torch_device).requires_grad_(True)
        dyt = torch.from_numpy(dy_host).to(target.torch_device)
        # the same function on both sides: output and input gradient, before any timing
        y, cache = forward(x)
        dx = backward(dy, cache)[0]
        yt = tmod(xt)
        yt.backward(dyt)
        out["max_rel_diff_y"] = _rel_diff(backend.to_numpy(y), yt.detach().cpu().numpy())
        out["max_rel_diff_dx"] = _rel_diff(backend.to_numpy(dx), xt.grad.cpu().numpy())
        del y, cache, dx, yt
        contenders["torch"] = (torch_step(tmod, xt, dyt), target.torch_clock)
    times = measure(contenders, rounds, warmup)
    out["timings"] = {name: summary(ts) for name, ts in times.items()}
    med = {name: s["median_s"] for name, s in out["timings"].items()}
    out["cupy_s"], out["cupy_nokernels_s"], out["torch_s"] = (
        med["cupy"], med["cupy_nokernels"], med.get("torch"))
    out["cupy_over_torch"] = med["cupy"] / med["torch"] if "torch" in med else None
    out["kernel_speedup"] = med["cupy_nokernels"] / med["cupy"]
    out["cupy_tflops"] = _tflops(macs, med["cupy"])
    out["cupy_nokernels_tflops"] = _tflops(macs, med["cupy_nokernels"])
    out["torch_tflops"] = _tflops(macs, med.get("torch"))
    return out


def mhsa_bytes(grid: int, batch: int) -> int:
    """Bytes of the (B, h, N, N) float32 matrices MHSA holds around its peak."""
    N = grid * grid
    return MHSA_LIVE_MATRICES * batch * HEADS * N * N * 4


def mhsa_budget(target: Target, mhsa_max_gib: float) -> int:
    """The MHSA memory budget in bytes: ``mhsa_max_gib``, and at most a fraction of the device."""
    budget = int(mhsa_max_gib * 2 ** 30)
    total = target.total_memory()
    return budget if total is None else min(budget, int(MEMORY_FRACTION * total))


def bench_point(grid: int, batch: int, target: Target, *, rounds: int, warmup: int,
                mhsa_max_gib: float, seed: int = 0) -> dict:
    """Both layers at one (grid, batch) point (MHSA skipped over its memory budget)."""
    N = grid * grid
    out = {"grid": grid, "N": N, "batch": batch}
    out["vca"] = bench_layer("vca", grid, batch, target, rounds=rounds, warmup=warmup, seed=seed)
    target.release()
    need, budget = mhsa_bytes(grid, batch), mhsa_budget(target, mhsa_max_gib)
    if need > budget:
        out["mhsa"] = {"skipped": f"its (B, h, N, N) float32 matrices need ~{fmt_bytes(need)} "
                                  f"(> {fmt_bytes(budget)} budget)",
                       "macs_fwd": batch * mhsa_macs(N)}
    else:
        out["mhsa"] = bench_layer("mhsa", grid, batch, target, rounds=rounds, warmup=warmup,
                                  seed=seed)
        target.release()
    return out


# ----------------------------------------------------------------------------- probes
def run_probes(target: Target, sizes: tuple[int, int, int], *, rounds: int, warmup: int) -> dict:
    """Ceilings and elementwise-bound parts: matmul TFLOP/s; copy, GELU, AdamW in GB/s."""
    xp, n_mm, n_el, n_opt = target.xp, *sizes
    rng = np.random.default_rng(0)
    tdev = target.torch_device
    res = {}

    def run(name, unit, amount, fns):
        contenders = {k: (fn, clock) for k, (fn, clock) in fns.items() if fn is not None}
        times = measure(contenders, rounds, warmup)
        entry = {"unit": unit, "amount": amount}
        for k, ts in times.items():
            s = summary(ts)
            entry[k] = {**s, "rate": amount / s["median_s"]}
        res[name] = entry
        target.release()

    # 1. float32 matmul: FLOP = 2 n^3 -> TFLOP/s
    a, b = (backend.to_device(rng.standard_normal((n_mm, n_mm)).astype(np.float32), target.device)
            for _ in range(2))
    c = xp.empty_like(a)
    fns = {"cupy": (lambda: xp.matmul(a, b, out=c), target.clock)}
    if target.with_torch:
        ta, tb = (torch.as_tensor(backend.to_numpy(m)).to(tdev) for m in (a, b))
        tc = torch.empty_like(ta)
        fns["torch"] = (lambda: torch.mm(ta, tb, out=tc), target.torch_clock)
    run(f"matmul {n_mm}^2 float32", "TFLOP/s", 2 * n_mm ** 3 / 1e12, fns)
    del a, b, c

    # 2. device copy: one read + one write of n float32 -> GB/s
    src = backend.to_device(rng.standard_normal(n_el).astype(np.float32), target.device)
    dst = xp.empty_like(src)
    fns = {"cupy": (lambda: xp.copyto(dst, src), target.clock)}
    if target.with_torch:
        ts_, td_ = torch.as_tensor(backend.to_numpy(src)).to(tdev), torch.empty(n_el, device=tdev)
        fns["torch"] = (lambda: td_.copy_(ts_), target.torch_clock)
    run(f"copy {n_el * 4 / 2 ** 20:.3g} MiB", "GB/s", 8 * n_el / 1e9, fns)

    # 3. GELU (erf) forward, ops.gelu_forward: one read + one write -> GB/s
    def gelu(use_kernels):
        def fn():
            with kernels.enabled(use_kernels):
                gelu_forward(src)
        return fn
    fns = {"cupy": (gelu(True), target.clock), "cupy_nokernels": (gelu(False), target.clock)}
    if target.with_torch:
        fns["torch"] = (lambda: torch.nn.functional.gelu(ts_), target.torch_clock)
    run(f"gelu forward {n_el / 2 ** 20:.3g} Mi float32", "GB/s", 8 * n_el / 1e9, fns)
    del src, dst

    # 4. AdamW step on one parameter: p, g, m, v read, p, m, v written (7 x 4 bytes) -> GB/s
    def adamw(use_kernels):
        mod = Module(np.float32)
        mod.params = {"w": backend.to_device(rng.standard_normal(n_opt).astype(np.float32),
                                             target.device)}
        mod.grads = {"w": backend.to_device(rng.standard_normal(n_opt).astype(np.float32),
                                            target.device)}
        opt = AdamW(mod, lr=1e-3, weight_decay=0.05)

        def fn():
            with kernels.enabled(use_kernels):
                opt.step()
        return fn
    fns = {"cupy": (adamw(True), target.clock), "cupy_nokernels": (adamw(False), target.clock)}
    if target.with_torch:
        for name, kw in (("torch", {}), ("torch_fused", {"fused": True})):
            tp = torch.nn.Parameter(torch.randn(n_opt, device=tdev))
            tp.grad = torch.randn(n_opt, device=tdev)
            try:
                topt = torch.optim.AdamW([tp], lr=1e-3, weight_decay=0.05, **kw)
                topt.step()
            except (RuntimeError, ValueError, TypeError):   # fused unsupported on this build
                continue
            fns[name] = (topt.step, target.torch_clock)
    run(f"adamw step {n_opt / 2 ** 20:.3g} Mi params", "GB/s", 28 * n_opt / 1e9, fns)
    return res


# ----------------------------------------------------------------------------- the run
CONVENTIONS = {
    "time": "median over interleaved rounds after warm-up; GPU: CUDA events around one call "
            "(device synchronised before, end event waited on); CPU stand-in: wall clock",
    "layer": "the op pair (forward + backward) on float32 (B, N, C) input and upstream gradient; "
             "cupy: CUDA kernels on, cupy_nokernels: plain CuPy reference lines, torch: "
             "vca_ref.pytorch.attention layer (eager autograd, scaled_dot_product_attention)",
    "macs": "forward multiply-accumulates for the whole batch: MHSA B(4NC^2+2N^2C), "
            "VCA B(4NC^2+7nNC) (docs/spec.md; pooling, conv, elementwise not counted)",
    "tflops": "2 FLOP per MAC, forward+backward = 3 x forward MACs, divided by the median time",
    "cupy_over_torch": "median CuPy time / median PyTorch time (below 1: CuPy faster)",
    "kernel_speedup": "median time without the CUDA kernels / with them",
    "max_rel_diff": "max |CuPy - PyTorch| / max |PyTorch| of the output y and the input gradient "
                    "dx, measured once before timing",
    "probes": "matmul: 2n^3 FLOP; copy and GELU: 8 bytes per element (one float32 read + one "
              "write); AdamW: 28 bytes per parameter (p, g, m, v read; p, m, v written); rate = "
              "amount / median time",
    "tf32": "off: torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = "
            "False during the run; CuPy uses TF32 only with CUPY_TF32=1 (recorded)",
    "mhsa_skip": f"MHSA runs while {MHSA_LIVE_MATRICES} (B, h, N, N) float32 matrices fit "
                 f"mhsa_max_gib and {MEMORY_FRACTION:.0%} of the device memory",
}


def run_gpu_bench(out: str | None = "benchmarks/results", *, quick: bool = False,
                  points=None, rounds: int | None = None, warmup: int | None = None,
                  mhsa_max_gib: float = 16.0, with_torch: bool = True, probes: bool = True,
                  device: str = "cuda", verbose: bool = True) -> dict:
    """Run the GPU benchmark; returns the result dict (also ``<out>/gpu_bench.json``).

    Args:
        out: folder for ``gpu_bench.json`` (None: write nothing).
        quick: two small points, fewer rounds, small probes: a smoke run.
        points: list of ``(grid_side, batch)`` overriding the sweep.
        rounds: timed rounds per contender (default 25; 5 when quick or on the stand-in).
        warmup: untimed runs per contender before the rounds (default 5; 2 when quick).
        mhsa_max_gib: skip MHSA where its N^2 matrices would need more than this.
        with_torch: also time the PyTorch twin (needs PyTorch with CUDA on the GPU).
        probes: also run the matmul / copy / GELU / AdamW probes.
        device: ``"cuda"``; ``"cpu"`` runs the same pipeline on NumPy and PyTorch-CPU stand-ins
            (for tests: its figures are CPU figures and the result says ``stand_in: true``).

    Where the GPU (or PyTorch's CUDA, when ``with_torch``) is missing, returns
    ``{"status": "skipped", "reason": ...}`` and writes nothing.
    """
    if device == "cuda":
        reason = unavailable_reason(with_torch)
        if reason is not None:
            return {"benchmark": "gpu", "status": "skipped", "reason": reason}
    target = Target(device, with_torch)
    stand_in = device == "cpu"
    pts = points or (STAND_IN_POINTS if stand_in else QUICK_POINTS if quick else FULL_POINTS)
    rounds = rounds or (5 if quick or stand_in else 25)
    warmup = warmup or (2 if quick or stand_in else 5)
    sizes = PROBE_SIZES["cpu" if stand_in else "quick" if quick else "full"]
    t0 = time.time()
    res = {"benchmark": "gpu", "status": "ok", "quick": quick, "stand_in": stand_in,
           "config": {"C": C, "heads": HEADS, "pool": list(POOL), "prefix_tokens": 0,
                      "dtype": "float32", "rounds": rounds, "warmup": warmup,
                      "mhsa_max_gib": mhsa_max_gib, "probe_sizes": list(sizes),
                      "vca_options": "defaults (joint stage-II softmax, untied E+-, pooled "
                                     "queries, dwconv on, both stages differential)"},
           "conventions": CONVENTIONS, "machine": target.info(), "points": [], "probes": {}}
    if verbose:
        print_header(res)
    with _NoTF32():
        for grid, batch in pts:
            p = bench_point(grid, batch, target, rounds=rounds, warmup=warmup,
                            mhsa_max_gib=mhsa_max_gib)
            res["points"].append(p)
            if verbose:
                for kind in ("vca", "mhsa"):
                    print(format_row(kind, p), flush=True)
        if probes:
            res["probes"] = run_probes(target, sizes, rounds=rounds, warmup=warmup)
            if verbose:
                print(format_probes(res["probes"]), flush=True)
    res["elapsed_s"] = time.time() - t0
    if out is not None:
        path = res["json_path"] = save_results_json(res, out, "gpu_bench.json")
        if verbose:
            print(f"wrote {path}")
    return res


# ----------------------------------------------------------------------------- the table
HEADER = (f"{'layer':5s} {'N':>6s} {'B':>3s} {'CuPy ms':>9s} {'no-kern ms':>10s} {'torch ms':>9s} "
          f"{'CuPy/torch':>10s} {'kern x':>6s} {'GMAC fwd':>9s} {'CuPy TF/s':>9s} "
          f"{'torch TF/s':>10s} {'rel diff y/dx':>15s}")


def print_header(res: dict) -> None:
    """The run's first lines: device, versions, conventions, the table header."""
    m, cfg = res["machine"], res["config"]
    if res["stand_in"]:
        where = "CPU STAND-IN (NumPy + PyTorch CPU, wall clock): these are NOT GPU figures"
    else:
        where = (f"{m['gpu']} (sm {m['compute_capability']}, {m['gpu_memory_bytes'] / 2 ** 30:.0f} "
                 f"GiB) | CuPy {m['cupy']}, PyTorch {m['torch']} (CUDA {m['torch_cuda']})")
    print(f"GPU layer benchmark: {where}")
    print(f"C={cfg['C']} h={cfg['heads']} n={cfg['pool'][0]}x{cfg['pool'][1]} float32, TF32 off | "
          f"median of {cfg['rounds']} rounds after {cfg['warmup']} warm-up runs | "
          f"TF/s = 2 FLOP/MAC x 3 (fwd+bwd) x forward MACs (MHSA 4NC^2+2N^2C, VCA 4NC^2+7nNC) / time")
    print(HEADER)


def format_row(kind: str, p: dict) -> str:
    """One table line for one layer at one point."""
    r = p[kind]
    head = f"{kind.upper():5s} {p['N']:6d} {p['batch']:3d} "
    if "skipped" in r:
        return head + f"skipped: {r['skipped']}"
    ms = lambda s: "-" if s is None else f"{s * 1e3:.3f}"                        # noqa: E731
    num = lambda v, f: "-" if v is None else format(v, f)                        # noqa: E731
    diff = ("-" if "max_rel_diff_y" not in r
            else f"{r['max_rel_diff_y']:.0e}/{r['max_rel_diff_dx']:.0e}")
    return (head + f"{ms(r['cupy_s']):>9s} {ms(r['cupy_nokernels_s']):>10s} {ms(r['torch_s']):>9s} "
            f"{num(r['cupy_over_torch'], '.2f'):>10s} {r['kernel_speedup']:6.2f} "
            f"{r['macs_fwd'] / 1e9:9.3g} {num(r['cupy_tflops'], '.3g'):>9s} "
            f"{num(r['torch_tflops'], '.3g'):>10s} {diff:>15s}")


def format_probes(probes: dict) -> str:
    """The probe table: one line per probe, the rate of each contender."""
    cols = ("cupy", "cupy_nokernels", "torch", "torch_fused")
    lines = ["probes (ceilings and elementwise-bound parts; bytes count each array once):",
             f"{'probe':30s} {'unit':8s} " + " ".join(f"{c:>14s}" for c in cols)]
    for name, e in probes.items():
        rates = " ".join(f"{e[c]['rate']:14.4g}" if c in e else f"{'-':>14s}" for c in cols)
        lines.append(f"{name:30s} {e['unit']:8s} {rates}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of the GPU benchmark (added to ``parser`` when given)."""
    p = parser or argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                          description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="two small points, small probes")
    p.add_argument("--grids", type=str, default=None,
                   help="comma list of grid sides, e.g. 16,64 (batches from the default table)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 25, quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs (default 5, quick 2)")
    p.add_argument("--mhsa-max-gib", type=float, default=16.0,
                   help="skip MHSA above this N^2 memory (default: %(default)s)")
    p.add_argument("--no-torch", action="store_true", help="CuPy alone (no PyTorch columns)")
    p.add_argument("--no-probes", action="store_true", help="skip the matmul/copy/GELU/AdamW probes")
    return p


def main(argv=None) -> int:
    """``python -m benchmarks.gpu [--quick] [--out DIR] ...``; returns an exit code (0 when skipped)."""
    args = build_parser().parse_args(argv)
    points = None
    if args.grids:
        table = dict(FULL_POINTS)
        points = [(int(g), table.get(int(g), 1)) for g in args.grids.split(",")]
    res = run_gpu_bench(args.out, quick=args.quick, points=points, rounds=args.rounds,
                        warmup=args.warmup, mhsa_max_gib=args.mhsa_max_gib,
                        with_torch=not args.no_torch, probes=not args.no_probes)
    if res["status"] == "skipped":
        print(f"GPU benchmark skipped: {res['reason']}. Nothing was measured or written.")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
