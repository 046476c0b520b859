"""Layer benchmark: forward+backward of one attention layer, NumPy against PyTorch CPU eager.

Three columns for every layer: the NumPy reference alone (every override of :mod:`vca_ref.fast`
off), the NumPy code with its overrides on (the default, called "fast" or "numpy" below), and
PyTorch.

One layer with C = 192, h = 3 (DeiT-Tiny widths), float32, P = 0 prefix tokens, on square token
grids from 8x8 (N = 64) to 128x128 (N = 16,384); VCA uses an 8x8 contrast grid (n = 64) and its
default options.  For every point it reports

* the median time of one forward+backward (interleaved rounds, see :mod:`.common`) of the
  reference, the fast NumPy path and PyTorch,
* the peak memory of that step (NumPy: tracemalloc; PyTorch: profiler allocation events),
* the multiply-accumulates of one forward (docs/spec.md: MHSA 4NC^2 + 2N^2C, VCA 4NC^2 + 7nNC per
  sample; pooling, conv and elementwise work are not counted) and the achieved GFLOP/s with the
  convention FLOP = 2 x MAC and forward+backward = 3 x forward,
* the ratios reference / fast and NumPy / PyTorch for VCA and for MHSA, MHSA-NumPy / VCA-NumPy
  beside the ratio of
  their operation counts, and the VCA GFLOP/s as a fraction of a float32 2048x2048 matmul measured
  in the same rounds (the machine's large-matmul ceiling through NumPy's BLAS).

MHSA is skipped where its (B, h, N, N) matrices would not fit the memory budget (``mhsa_max_gib``).
Results go to ``<out>/layer_bench.json`` and ``<out>/layer_bench.png``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from vca_ref import fast
from vca_ref.nn.mhsa import MultiHeadSelfAttention
from vca_ref.nn.vca import VisualContrastAttention
from benchmarks import common
from benchmarks.common import fmt_bytes, save_results_json, torch, torch_step

C, HEADS, POOL = 192, 3, (8, 8)
# (grid side, batch, rounds): batch sized so one step takes a measurable time (>~10 ms)
FULL_POINTS = [(8, 32, 9), (14, 8, 9), (16, 8, 9), (32, 2, 7), (64, 1, 7), (128, 1, 3)]
QUICK_POINTS = [(8, 2, 2), (14, 1, 2)]
FIGURE_NS = (196, 4096)          # the summary figures are read at these N


def vca_macs(N: int, C: int = C, n: int = POOL[0] * POOL[1]) -> int:
    """Forward multiply-accumulates of one VCA layer per sample (docs/spec.md): 4NC^2 + 7nNC."""
    return 4 * N * C * C + 7 * n * N * C


def mhsa_macs(N: int, C: int = C) -> int:
    """Forward multiply-accumulates of one MHSA layer per sample (docs/spec.md): 4NC^2 + 2N^2C."""
    return 4 * N * C * C + 2 * N * N * C


def _numpy_step(module, x, dy, overrides: bool = True):
    """One forward+backward with every override of vca_ref.fast on (fast) or off (reference)."""
    def step():
        with fast.enabled(overrides):
            module.forward(x)
            module.backward(dy)
    return step


def _numpy_peak(module, x, dy) -> int:
    module.cache, module.grads = None, {}      # the previous step's cache must not count
    return common.numpy_peak_bytes(_numpy_step(module, x, dy))


def _gflops(macs_fwd: int, seconds: float) -> float:
    return 2 * 3 * macs_fwd / seconds / 1e9      # FLOP = 2 MAC; fwd+bwd = 3 x fwd


def bench_point(grid: int, batch: int, rounds: int, *, mhsa_max_gib: float, matmul_n: int,
                with_torch: bool = True, seed: int = 0, settle: float = common.SETTLE_S) -> dict:
    """Measure one (grid, batch) point; returns a dict of the JSON fields (times in seconds)."""
    N = grid * grid
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, N, C)).astype(np.float32)            # (B, N, C)
    dy = rng.standard_normal((batch, N, C)).astype(np.float32)           # (B, N, C)
    vca = VisualContrastAttention(C, HEADS, (grid, grid), POOL, seed=seed)
    mhsa_bytes = 4 * batch * HEADS * N * N * 4      # S, logits, dS, dL of (B, h, N, N) float32
    run_mhsa = mhsa_bytes <= mhsa_max_gib * 2 ** 30
    mhsa = MultiHeadSelfAttention(C, HEADS, seed=seed) if run_mhsa else None

    fns = {"vca_numpy": _numpy_step(vca, x, dy), "vca_reference": _numpy_step(vca, x, dy, False)}
    tv = tm = None
    if with_torch and torch is not None:
        from vca_ref.pytorch import from_numpy
        xt = torch.from_numpy(x).requires_grad_(True)
        dyt = torch.from_numpy(dy)
        tv = from_numpy(vca)
        fns["vca_torch"] = torch_step(tv, xt, dyt)
    if run_mhsa:
        fns["mhsa_numpy"] = _numpy_step(mhsa, x, dy)
        fns["mhsa_reference"] = _numpy_step(mhsa, x, dy, False)
        if tv is not None:
            tm = from_numpy(mhsa)
            fns["mhsa_torch"] = torch_step(tm, xt, dyt)
    fns.update(common.matmul_probes(matmul_n))
    t, cpu = common.interleaved_medians(fns, rounds, settle=settle)

    peak = {"vca_numpy": _numpy_peak(vca, x, dy)}
    if tv is not None:
        peak["vca_torch"] = common.torch_peak_bytes(fns["vca_torch"])
    if run_mhsa:
        peak["mhsa_numpy"] = _numpy_peak(mhsa, x, dy)
        if tm is not None:
            peak["mhsa_torch"] = common.torch_peak_bytes(fns["mhsa_torch"])

    mm_gflops = 2 * matmul_n ** 3 / t["matmul_numpy"] / 1e9
    ratio = lambda a, b, t=t: (t[a] / t[b]) if a in t and b in t else None   # noqa: E731
    out = {"grid": grid, "N": N, "batch": batch, "rounds": rounds,
           "matmul_numpy_gflops": mm_gflops,
           "matmul_torch_gflops": (2 * matmul_n ** 3 / t["matmul_torch"] / 1e9
                                   if "matmul_torch" in t else None)}
    def figures(name: str, macs: float) -> dict:
        """The record of one layer ('vca' or 'mhsa'): times, ratios, peak memory, GFLOP/s."""
        ref, fast, pt = f"{name}_reference", f"{name}_numpy", f"{name}_torch"
        return {"reference_s": t[ref], "numpy_s": t[fast], "torch_s": t.get(pt),
                "reference_over_fast": ratio(ref, fast),
                "reference_cpu_s": cpu[ref],
                "reference_over_fast_cpu": ratio(ref, fast, cpu),
                "numpy_over_torch": ratio(fast, pt),
                "numpy_cpu_s": cpu[fast], "torch_cpu_s": cpu.get(pt),
                "numpy_over_torch_cpu": ratio(fast, pt, cpu),
                "numpy_peak_bytes": peak[fast], "torch_peak_bytes": peak.get(pt),
                "macs_fwd": macs, "numpy_gflops": _gflops(macs, t[fast]),
                "torch_gflops": _gflops(macs, t[pt]) if pt in t else None,
                "numpy_frac_of_matmul": _gflops(macs, t[fast]) / mm_gflops}

    macs_v = batch * vca_macs(N)
    out["vca"] = figures("vca", macs_v)
    macs_m = batch * mhsa_macs(N)
    if run_mhsa:
        out["mhsa"] = figures("mhsa", macs_m)
        out["mhsa_over_vca_time"] = t["mhsa_numpy"] / t["vca_numpy"]
        out["mhsa_over_vca_cpu"] = cpu["mhsa_numpy"] / cpu["vca_numpy"]
    else:
        out["mhsa"] = {"skipped": f"its (B, h, N, N) float32 matrices need ~{mhsa_bytes / 2 ** 30:.1f} GiB "
                                  f"(> {mhsa_max_gib:g} GiB budget)", "macs_fwd": macs_m}
        out["mhsa_over_vca_time"] = out["mhsa_over_vca_cpu"] = None
    out["mhsa_over_vca_ops"] = macs_m / macs_v
    return out


def _figures(points: list[dict]) -> dict:
    """The summary figures, read off the measured points (absent where not measured)."""
    by_n = {p["N"]: p for p in points}
    fg = {}
    for N in FIGURE_NS:
        v = by_n.get(N, {}).get("vca", {})
        if v.get("numpy_over_torch") is not None:
            fg[f"vca_numpy_over_torch_N{N}"] = {"value": v["numpy_over_torch"],
                                                "cpu_time_value": v["numpy_over_torch_cpu"]}
        if v.get("reference_over_fast") is not None:
            fg[f"vca_reference_over_fast_N{N}"] = {"value": v["reference_over_fast"],
                                                   "cpu_time_value": v["reference_over_fast_cpu"]}
    p = by_n.get(4096)
    if p and p["mhsa_over_vca_time"] is not None:
        fg["mhsa_vca_time_ratio_over_ops_ratio_N4096"] = {
            "value": p["mhsa_over_vca_time"] / p["mhsa_over_vca_ops"],
            "cpu_time_value": p["mhsa_over_vca_cpu"] / p["mhsa_over_vca_ops"]}
    if p:
        fg["vca_frac_of_matmul_N4096"] = {"value": p["vca"]["numpy_frac_of_matmul"]}
    big = by_n.get(16384)
    if big and p:
        per_tok = lambda q: q["vca"]["numpy_peak_bytes"] / (q["N"] * q["batch"])   # noqa: E731
        fg["vca_peak_bytes_N16384_B1"] = {"value": big["vca"]["numpy_peak_bytes"]}
        fg["vca_peak_per_token_16384_over_4096"] = {"value": per_tok(big) / per_tok(p)}
    return fg


def _print_row(p: dict) -> None:
    v, m = p["vca"], p["mhsa"]
    ms = lambda s: "-" if s is None else f"{s * 1e3:8.1f}"                       # noqa: E731
    rt = lambda r: "-" if r is None else f"{r:5.2f}"                              # noqa: E731
    line = (f"N={p['N']:6d} B={p['batch']:2d} | VCA ref {ms(v['reference_s'])} ms  fast {ms(v['numpy_s'])} ms"
            f"  torch {ms(v['torch_s'])} ms  ref/fast {rt(v['reference_over_fast'])} (cpu {rt(v['reference_over_fast_cpu'])})  np/torch {rt(v['numpy_over_torch'])} (cpu {rt(v['numpy_over_torch_cpu'])})  peak np {fmt_bytes(v['numpy_peak_bytes'])}"
            f" torch {fmt_bytes(v['torch_peak_bytes'])}  {v['macs_fwd'] / 1e9:.2f} GMAC"
            f"  {v['numpy_gflops']:.0f} GFLOP/s = {v['numpy_frac_of_matmul']:.0%} of matmul"
            f" ({p['matmul_numpy_gflops']:.0f})")
    if "skipped" in m:
        line += f" | MHSA skipped: {m['skipped']}"
    else:
        line += (f" | MHSA ref {ms(m['reference_s'])} ms  fast {ms(m['numpy_s'])} ms  torch {ms(m['torch_s'])} ms"
                 f"  ref/fast {rt(m['reference_over_fast'])} (cpu {rt(m['reference_over_fast_cpu'])})  np/torch"
                 f" {rt(m['numpy_over_torch'])} (cpu {rt(m['numpy_over_torch_cpu'])})  peak np {fmt_bytes(m['numpy_peak_bytes'])}"
                 f" torch {fmt_bytes(m['torch_peak_bytes'])}"
                 f" | MHSA/VCA time {p['mhsa_over_vca_time']:.2f} vs ops {p['mhsa_over_vca_ops']:.2f}")
    print(line, flush=True)


def run_layer_bench(out: str | None = "benchmarks/results", *, quick: bool = False,
                    threads: int | None = None, points=None, rounds: int | None = None,
                    mhsa_max_gib: float = 4.0, matmul_n: int | None = None, with_torch: bool = True,
                    plot: bool = True, verbose: bool = True) -> dict:
    """Run the layer benchmark; returns the result dict (also written to ``out`` unless None).

    Args:
        out: folder for ``layer_bench.json`` / ``layer_bench.png`` (None: write nothing).
        quick: two tiny points and a small matmul probe: a smoke test of the whole pipeline.
        threads: BLAS and PyTorch threads (default: NumPy's BLAS thread count).
        points: list of ``(grid_side, batch, rounds)`` overriding the default sweep.
        rounds: override every point's number of rounds.
        mhsa_max_gib: skip MHSA where its N^2 matrices would need more than this.
        matmul_n: size of the square float32 matmul probe (default 2048, 512 when quick).
    """
    threads = threads or common.blas_threads()
    limiter = common.set_threads(threads)   # noqa: F841  (keeps the BLAS limit alive)
    pts = points or (QUICK_POINTS if quick else FULL_POINTS)
    matmul_n = matmul_n or (512 if quick else 2048)
    t0 = time.time()
    res = {"benchmark": "layer", "quick": quick,
           "config": {"C": C, "heads": HEADS, "pool": list(POOL), "prefix_tokens": 0, "dtype": "float32",
                      "vca_options": "defaults (joint stage-II softmax, untied E+-, pooled queries, "
                                     "dwconv on, both stages differential)",
                      "mhsa_max_gib": mhsa_max_gib, "matmul_probe_n": matmul_n},
           "conventions": {
               "time": "median wall-clock seconds of one forward+backward over interleaved rounds "
                       "(*_cpu_s: median process CPU seconds of the same runs)",
               "columns": "reference_s: the NumPy reference with every override of vca_ref.fast off; "
                          "numpy_s: the same code with the overrides on (fast); torch_s: PyTorch eager",
               "macs": "forward multiply-accumulates for the whole batch: MHSA B(4NC^2+2N^2C), "
                       "VCA B(4NC^2+7nNC) (docs/spec.md; pooling, conv, elementwise not counted)",
               "gflops": "2 FLOP per MAC, forward+backward = 3 x forward MACs, divided by the median time",
               "frac_of_matmul": "achieved GFLOP/s / GFLOP/s of a float32 matmul_probe_n^2 NumPy matmul "
                                 "timed in the same rounds",
               "numpy_peak_bytes": "tracemalloc peak during one step above the bytes live before it "
                                   "(NumPy buffers; BLAS work buffers not seen)",
               "torch_peak_bytes": "peak of the running sum of torch.profiler CPU allocation events "
                                   "during one step",
               "ops_ratio": "MHSA MACs / VCA MACs"},
           "machine": common.machine_info(threads), "points": []}
    if verbose:
        print(f"layer benchmark: C={C} h={HEADS} pool={POOL} float32, {threads} thread(s), "
              f"torch {'on' if with_torch and torch is not None else 'off'}", flush=True)
    for grid, batch, r in pts:
        p = bench_point(grid, batch, rounds or r, mhsa_max_gib=mhsa_max_gib, matmul_n=matmul_n,
                        with_torch=with_torch, settle=0.005 if quick else common.SETTLE_S)
        res["points"].append(p)
        if verbose:
            _print_row(p)
    mm = [p["matmul_numpy_gflops"] for p in res["points"]]
    mt = [p["matmul_torch_gflops"] for p in res["points"] if p["matmul_torch_gflops"]]
    res["matmul_numpy_gflops_median"] = statistics.median(mm)
    res["matmul_torch_gflops_median"] = statistics.median(mt) if mt else None
    res["figures"] = _figures(res["points"])
    res["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["elapsed_s"] = time.time() - t0
    if verbose:
        for name, fig in res["figures"].items():
            val = fmt_bytes(fig["value"]) if "bytes" in name else f"{fig['value']:.3f}"
            extra = f" [CPU-time value {fig['cpu_time_value']:.3f}]" if fig.get("cpu_time_value") else ""
            print(f"{name}: {val}{extra}")
    if out is not None:
        path = res["json_path"] = save_results_json(res, out, "layer_bench.json")
        if plot:
            res["plot_path"] = plot_layer_bench(res, os.path.join(out, "layer_bench.png"))
        if verbose:
            print(f"wrote {path}" + (f" and {res.get('plot_path')}" if res.get("plot_path") else ""))
    return res


def plot_layer_bench(res: dict, path: str) -> str | None:
    """Three panels: time per sample, peak memory, fraction of the matmul ceiling (log N axis)."""
    try:
        from vca_ref.experiments.plotting import new_figure, save_figure     # a bare Figure: no pyplot state
        fig, axes = new_figure(15, 4.2, 1, 3)
    except ImportError:  # matplotlib is an optional (train) extra
        return None
    ax = axes[0]
    pts = res["points"]
    for layer, style in (("vca", "-"), ("mhsa", "--")):
        for impl, marker in (("numpy", "o"), ("torch", "s")):
            xs = [p["N"] for p in pts if p[layer].get(f"{impl}_s")]
            if not xs:
                continue
            sel = [p for p in pts if p[layer].get(f"{impl}_s")]
            label = f"{layer.upper()} {'NumPy' if impl == 'numpy' else 'PyTorch'}"
            ax[0].plot(xs, [p[layer][f"{impl}_s"] / p["batch"] * 1e3 for p in sel], style,
                       marker=marker, label=label)
            ax[1].plot(xs, [p[layer][f"{impl}_peak_bytes"] / p["batch"] / 2 ** 20 for p in sel], style,
                       marker=marker, label=label)
            ax[2].plot(xs, [p[layer][f"{impl}_gflops"] / p["matmul_numpy_gflops"] for p in sel], style,
                       marker=marker, label=label)
    ax[0].set(xscale="log", yscale="log", xlabel="tokens N", ylabel="ms per sample (fwd+bwd)",
              title="time")
    ax[1].set(xscale="log", yscale="log", xlabel="tokens N", ylabel="MiB per sample", title="peak memory")
    ax[2].set(xscale="log", xlabel="tokens N", ylabel="fraction of float32 matmul GFLOP/s",
              title="achieved FLOP rate (2 FLOP/MAC, bwd = 2 x fwd)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    m = res["machine"]
    fig.suptitle(f"one attention layer, C={C}, h={HEADS}, n=64, float32; {m['threads']} thread(s), "
                 f"{m.get('processor', '')}", fontsize=10)
    return save_figure(fig, path, dpi=110)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of the layer benchmark (added to ``parser`` when given)."""
    p = parser or argparse.ArgumentParser(prog="python -m benchmarks.layer", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="two tiny points: a fast smoke run")
    p.add_argument("--threads", type=int, default=None, help="BLAS and PyTorch threads (default: BLAS's)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per point (default: per-point table)")
    p.add_argument("--grids", type=str, default=None,
                   help="comma list of grid sides to run, e.g. 14,64 (batches from the default table)")
    p.add_argument("--mhsa-max-gib", type=float, default=4.0, help="skip MHSA above this N^2 memory")
    p.add_argument("--no-torch", action="store_true", help="NumPy only")
    p.add_argument("--no-plot", action="store_true")
    return p


def main(argv=None) -> int:
    """``python -m benchmarks.layer [--quick] [--out DIR] ...``; returns an exit code."""
    args = build_parser().parse_args(argv)
    points = None
    if args.grids:
        table = {g: (g, b, r) for g, b, r in FULL_POINTS}
        points = [table.get(int(g), (int(g), 1, 5)) for g in args.grids.split(",")]
    run_layer_bench(args.out, quick=args.quick, threads=args.threads, points=points, rounds=args.rounds,
                    mhsa_max_gib=args.mhsa_max_gib, with_torch=not args.no_torch, plot=not args.no_plot)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
