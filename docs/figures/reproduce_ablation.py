"""Measure, then put the toy-scale ablation and pool-size sweep on the Reproduction page.

    python docs/figures/reproduce_ablation.py               # run both grids, then update the page
    python docs/figures/reproduce_ablation.py --draw-only   # update the page from runs/ as it is

The grids are the project's own commands, resumable (cells already in runs/ are read back, a
stopped cell continues), so running this again after an interruption finishes the work:

    vca-ref ablate --out-dir runs/ablate-vit
    vca-ref sweep pool_size 1x1 2x2 3x3 4x4 --out-dir runs/sweep-pool_size

Their plots are copied to docs/images/ (ablation.png, sweep-pool_size.png) and their tables, with
the provenance each results.json records (date, machine, versions), replace the blocks between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` of docs/reproduction.md for NAME =
ablation, sweep and ablation-paper (the measured rows beside the paper's, whose numbers are
from a summary of the paper).  Nothing else on the page is touched.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from vca_ref.experiments.stats import format_difference, format_mean_std, noise_verdict

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reproduction.md"
GRIDS = {
    "ablation": (["ablate", "--out-dir", "runs/ablate-vit"], "runs/ablate-vit", "variant.png",
                 "ablation.png", "Test accuracy per variant over seeds, and the paired differences "
                                 "to full VCA with their 95 % intervals"),
    "sweep": (["sweep", "pool_size", "1x1", "2x2", "3x3", "4x4", "--out-dir", "runs/sweep-pool_size"],
              "runs/sweep-pool_size", "pool_size.png", "sweep-pool_size.png",
              "Test accuracy per contrast grid against MACs per image and against measured images/s"),
}


# The paper's ablation (DeiT-T ImageNet top-1 %, DiT-S/2 FID-50K) and baselines, from a summary
# of the paper (docs/spec.md, "Reported results"), not checked against the PDF.
PAPER = {"full": ("75.6", "62.3"), "stage1-only": ("75.4", "64.6"), "stage2-only": ("75.5", "64.3"),
         "no-pooling": ("75.1", "63.7"), "tied-embeddings": ("—", "—"), "no-dwconv": ("—", "—"),
         "separate-softmax": ("—", "—"), "mhsa": ("72.2", "67.2")}


def beside_paper(results: dict) -> str:
    """The paper's numbers and ours, one row per variant."""
    lines = ["| variant | paper: DeiT-T top-1 % ↑ | paper: DiT-S/2 FID ↓ | here: digits test accuracy "
             "(mean ± std) | here: difference to full VCA [95 % CI] | here: verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for r in results["rows"]:
        verdict = noise_verdict(r["diff"], True, r["label"] == "full")
        lines.append(f"| {r['label']} | {PAPER[r['label']][0]} | {PAPER[r['label']][1]} | "
                     f"{format_mean_std(r['mean'], r['std'])} | {format_difference(r['diff'])} | {verdict} |")
    return "\n".join(lines + ["", "The paper's columns: from a summary of the paper, not checked "
                                   "against the PDF; — where the summary gives no number; the MHSA row "
                                   "holds the paper's baselines (DeiT-T and DiT-S/2 without VCA). The "
                                   "paper's \"vanilla differential attention\" row is not a VCA option."])


def block(alt: str, args: list[str], results: dict, image: str) -> str:
    """The table, the figure and one provenance line for a grid's results."""
    p = results["provenance"]
    return "\n".join([
        results["table"], "",
        f"![{alt}](images/{image})", "",
        f"*Measured {p['date']} with `vca-ref {' '.join(args)}` ({p['machine']}; Python "
        f"{p['python']}, NumPy {p['numpy']}, vca_ref {p['vca_ref']}); seeds "
        f"{', '.join(map(str, results['seeds']))}. Regenerate with "
        f"`python docs/figures/reproduce_ablation.py`.*"])


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- figures:{name} -->\n).*?(<!-- /figures:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{PAGE} has no <!-- figures:{name} --> ... <!-- /figures:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draw-only", action="store_true", help="do not train; use runs/ as it is")
    opts = ap.parse_args(argv)
    text = PAGE.read_text()
    for name, (args, run_dir, plot, image, alt) in GRIDS.items():
        if not opts.draw_only:
            subprocess.run([sys.executable, "-m", "vca_ref", *args], cwd=ROOT, check=True)
        results = json.loads((ROOT / run_dir / "results.json").read_text())
        shutil.copyfile(ROOT / run_dir / plot, ROOT / "docs" / "images" / image)
        text = replace_block(text, name, block(alt, args, results, image))
        if name == "ablation":
            text = replace_block(text, "ablation-paper", beside_paper(results))
    PAGE.write_text(text)
    print(f"updated {PAGE.relative_to(ROOT)} and docs/images/{{ablation,sweep-pool_size}}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
