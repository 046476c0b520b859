"""Measure, then draw the figures and tables of the Benchmarks and Reproduction pages.

    python docs/figures/make_figures.py                  # measure everything, then draw (~30 min on 2 cores)
    python docs/figures/make_figures.py --only layer     # one part: layer, vit or dit (repeatable)
    python docs/figures/make_figures.py --draw-only      # redraw from the last measurements

Measurements go to ``runs/figures/`` (git-ignored), through the project's own commands:

    layer   python -m benchmarks.layer --threads 1 --grids 8,14,32,64 --rounds 3 --no-plot
    vit     vca-ref compare --no-progress                      (TinyViT, MHSA against VCA)
    dit     vca-ref compare --task dit --no-progress           (TinyDiT, MHSA against VCA)

The figures land in ``docs/images/`` (PNG, 8 inches wide at most) and the tables, with their
provenance (command, date, machine, versions, commit), replace the blocks between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` in docs/benchmarks.md and
docs/reproduction.md. Nothing else on the pages is touched.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "figures"
IMAGES = ROOT / "docs" / "images"
PAGES = {"layer": ROOT / "docs" / "benchmarks.md",
         "vit": ROOT / "docs" / "reproduction.md", "dit": ROOT / "docs" / "reproduction.md"}

# The layer benchmark's grid sides: N = 64, 196, 1024, 4096 (batches from its own table).
LAYER_CMD = [sys.executable, "-m", "benchmarks.layer", "--threads", "1", "--grids", "8,14,32,64",
             "--rounds", "3", "--no-plot", "--out", str(RUNS / "layer")]
VIT_CMD = [sys.executable, "-m", "vca_ref", "compare", "--no-progress",
           "--out-dir", str(RUNS / "compare-vit")]
DIT_CMD = [sys.executable, "-m", "vca_ref", "compare", "--task", "dit", "--no-progress",
           "--out-dir", str(RUNS / "compare-dit")]
COMMANDS = {"layer": LAYER_CMD, "vit": VIT_CMD, "dit": DIT_CMD}
FOLDERS = {"layer": "layer", "vit": "compare-vit", "dit": "compare-dit"}
SHOWN = {"layer": "python -m benchmarks.layer --threads 1 --grids 8,14,32,64 --rounds 3",
         "vit": "vca-ref compare", "dit": "vca-ref compare --task dit"}
COLOURS = {"vca": "#c62828", "mhsa": "#3f51b5"}
STYLES = ["-", "--", ":", "-."]


# ----------------------------------------------------------------------------- measuring
def measure(part: str) -> None:
    """Run one part's command; its outputs and a provenance record go to runs/figures/."""
    RUNS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = RUNS / FOLDERS[part]
    if out.exists():                    # a fresh measurement: the commands refuse to overwrite
        shutil.rmtree(out)
    started = datetime.datetime.now(datetime.timezone.utc)
    record = {"command": SHOWN[part], "started_utc": started.strftime("%Y-%m-%d %H:%M"),
              **provenance()}           # the code as it is when the command starts
    print("running:", " ".join(COMMANDS[part]), flush=True)
    subprocess.run(COMMANDS[part], cwd=ROOT, env=env, check=True)
    record["minutes"] = round((datetime.datetime.now(datetime.timezone.utc) - started)
                              .total_seconds() / 60, 1)
    record["load_average"] = [round(x, 1) for x in os.getloadavg()]   # at the end
    (RUNS / f"{part}.provenance.json").write_text(json.dumps(record, indent=1))


def provenance() -> dict:
    """Machine, versions and commit, recorded beside every measurement."""
    import numpy
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or None
    return {"commit": commit, "python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch_version, "cpu": _cpu_model(), "cores": os.cpu_count(),
            "commit_clean": subprocess.run(["git", "status", "--porcelain", "--", "vca_ref", "benchmarks"],
                                           cwd=ROOT, capture_output=True, text=True).stdout == ""}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load(part: str, name: str) -> tuple[dict, dict]:
    """(results, provenance) of one part's last measurement."""
    res = json.loads((RUNS / FOLDERS[part] / name).read_text())
    prov = json.loads((RUNS / f"{part}.provenance.json").read_text())
    return res, prov


# ----------------------------------------------------------------------------- drawing
def new_figure(width: float, height: float, ncols: int):
    from vca_ref.experiments.plotting import new_figure as nf
    assert width <= 8, "figures fit the content column (8 inches)"
    fig, axes = nf(width, height, 1, ncols)
    return fig, list(axes[0])


def save(fig, name: str) -> str:
    IMAGES.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(IMAGES / name, dpi=110)
    return name


# The layer benchmark's columns: the reference alone (every override off), the default path with
# the overrides of vca_ref.fast on (``numpy`` in its JSON), and PyTorch CPU eager.
LABELS = {"reference": "reference", "numpy": "fast", "torch": "PyTorch"}


def implementations(point: dict, layer: str) -> list[str]:
    """The timed columns of one layer at one point (JSON key stems), in the order of LABELS."""
    timed = point.get(layer, {})
    return [k for k in LABELS if timed.get(f"{k}_s") is not None]


def time_key(res: dict) -> str:
    """``_cpu_s`` (process CPU time: what one thread spent, robust to a busy machine) when every
    column of every point carries it, else ``_s`` (wall-clock time)."""
    cols = [(p[layer], i) for p in res["points"] for layer in ("vca", "mhsa") if p.get(layer)
            for i in implementations(p, layer)]
    return "_cpu_s" if all(c.get(f"{i}_cpu_s") is not None for c, i in cols) else "_s"


def draw_layer(res: dict) -> str:
    """Counted MACs, measured CPU time and peak memory per sample, against N."""
    pts = res["points"]
    tk = time_key(res)
    fig, (ax_mac, ax_t, ax_m) = new_figure(8, 2.9, 3)
    for layer in ("vca", "mhsa"):
        got = [p for p in pts if p.get(layer)]
        ns = [p["N"] for p in got]
        ax_mac.plot(ns, [p[layer]["macs_fwd"] / p["batch"] / 1e6 for p in got],
                    color=COLOURS[layer], marker="o", ms=3, label=layer.upper())
        for style, impl in zip(STYLES, implementations(got[0], layer)):
            label = f"{layer.upper()} {LABELS[impl]}"
            ax_t.plot(ns, [p[layer][f"{impl}{tk}"] / p["batch"] * 1e3 for p in got], style,
                      color=COLOURS[layer], marker="o", ms=3, label=label)
            key = f"{impl}_peak_bytes"
            if got[0][layer].get(key) is not None:
                ax_m.plot(ns, [p[layer][key] / p["batch"] / 2**20 for p in got], style,
                          color=COLOURS[layer], marker="o", ms=3, label=label)
    for ax, title in ((ax_mac, "counted forward MACs (M)"), (ax_t, ("CPU " if tk == "_cpu_s" else "") + "ms per sample"),
                      (ax_m, "peak MiB per sample")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens N")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=8)
    ax_mac.legend(fontsize=7)
    ax_t.legend(fontsize=6)
    return save(fig, "bench-layer.png")


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def layer_table(res: dict) -> str:
    pts = res["points"]
    impls = implementations(pts[0], "vca")
    tk = time_key(res)
    head = ["N", "B"] + [f"{layer.upper()} {LABELS[i]}" for layer in ("vca", "mhsa") for i in impls]
    rows = ["| " + " | ".join(head) + " | MHSA / VCA counted MACs |",
            "|" + "---:|" * (len(head) + 1)]
    for p in pts:
        cells = [f"{p['N']:,}", str(p["batch"])]
        for layer in ("vca", "mhsa"):
            for i in impls:
                v = p.get(layer, {}).get(f"{i}{tk}")
                cells.append("—" if v is None else _ms(v / p["batch"]))
        ratio = p.get("mhsa_over_vca_ops")
        cells.append("—" if ratio is None else f"{ratio:.2f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def draw_curves(res: dict, panels: list[tuple[str, str]], name: str) -> str:
    fig, axes = new_figure(8, 2.8, len(panels))
    for ax, (key, title) in zip(axes, panels):
        for row in res["rows"]:
            hist = [h for h in row["history"] if h.get(key) is not None]
            ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], marker="o", ms=2,
                    color=COLOURS[row["attention"]], label=row["attention"].upper())
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
    return save(fig, name)


def compare_table(res: dict, metrics: list[tuple[str, str, str]]) -> str:
    head = ["attention"] + [t for _, t, _ in metrics] + ["parameters", "MACs / image"]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in res["rows"]:
        cells = [r["attention"].upper()] + [format(r[k], f) for k, _, f in metrics]
        cells += [f"{r['params']:,}", f"{r['macs_per_image']:,}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def provenance_note(prov: dict, extra: str = "") -> str:
    torch = f", PyTorch {prov['torch']}" if prov.get("torch") else ""
    load_avg = ", ".join(str(x) for x in prov["load_average"])
    return (f"*Measured {prov['started_utc']} UTC with `{prov['command']}` "
            f"({prov['minutes']} min) at commit `{prov['commit']}`"
            f"{'' if prov.get('commit_clean', True) else ' with local changes'}: {prov['cpu']}, "
            f"{prov['cores']} cores (load average {load_avg} at the end), Python {prov['python']}, "
            f"NumPy {prov['numpy']}{torch}.{extra} Regenerate with "
            f"`python docs/figures/make_figures.py`.*")


def draw(part: str) -> str:
    """Draw one part's figure; return its Markdown block."""
    if part == "layer":
        res, prov = load("layer", "layer_bench.json")
        img = draw_layer(res)
        return (f"![Counted MACs, time and peak memory per sample of one VCA and one MHSA "
                f"layer against the number of tokens](images/{img})\n\n{layer_table(res)}\n\n"
                + provenance_note(prov, " One BLAS thread; times are the median "
                                        + ("process CPU" if time_key(res) == "_cpu_s" else
                                           "wall-clock")
                                        + " milliseconds per sample of one forward+backward, "
                                          "over interleaved rounds."))
    if part == "vit":
        res, prov = load("vit", "results.json")
        img = draw_curves(res, [("train_loss", "training loss"), ("test_acc", "test accuracy")],
                          "compare-vit.png")
        table = compare_table(res, [("test_acc", "test accuracy ↑", ".4f"),
                                    ("train_seconds", "train time (s)", ".0f")])
        return (f"![Training loss and test accuracy per epoch of the tiny ViT with VCA and with "
                f"MHSA](images/{img})\n\n{table}\n\n{provenance_note(prov)}")
    res, prov = load("dit", "results.json")
    img = draw_curves(res, [("train_loss", "training loss"), ("val_loss", "validation loss (EMA)")],
                      "compare-dit.png")
    samples = copy_image(RUNS / "compare-dit" / "samples.png", "compare-dit-samples.png")
    table = compare_table(res, [("frechet_distance", "Fréchet distance on the judge's features ↓", ".3f"),
                                ("classifier_accuracy", "classifier accuracy on samples ↑", ".3f")])
    floor = res["rows"][0].get("frechet_real_baseline")
    judge = res.get("classifier", {}).get("test_acc")
    note = (f" The judge classifier reaches {judge:.1%} on the real test digits;" if judge else "")
    note += (f" the Fréchet distance between the real training and test digits, the floor of "
             f"this measure, is {floor:.3f}."
             if floor is not None else "")
    return (f"![Training loss and EMA validation loss per epoch of the tiny DiT with VCA and with "
            f"MHSA](images/{img})\n\n![Samples of the two tiny DiTs, one row per class, the same "
            f"sampling noise for both](images/{samples})\n\n{table}\n\n{provenance_note(prov, note)}")


def copy_image(src: Path, name: str) -> str:
    """A PNG the run drew itself, copied beside the figures drawn here."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    (IMAGES / name).write_bytes(src.read_bytes())
    return name


def replace_block(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- figures:name -->`` and ``<!-- /figures:name -->``."""
    pattern = re.compile(rf"(<!-- figures:{name} -->\n)(?:.*?\n)?(<!-- /figures:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- figures:{name} --> ... <!-- /figures:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", choices=sorted(COMMANDS),
                    help="one part (repeatable; default: all)")
    ap.add_argument("--draw-only", action="store_true", help="redraw from runs/figures/")
    args = ap.parse_args(argv)
    parts = args.only or ["layer", "vit", "dit"]
    if not args.draw_only:
        for part in parts:
            measure(part)
    for part in parts:
        page = PAGES[part]
        page.write_text(replace_block(page.read_text(encoding="utf-8"), part, draw(part)),
                        encoding="utf-8")
        print(f"drew {part} into {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
