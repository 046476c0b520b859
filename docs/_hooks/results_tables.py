"""Results tables for the Benchmarks and Reproduction pages (used by vca_docs.py).

``results_markdown(dir, ...)`` renders the JSON, Markdown and PNG files a benchmark script or
``vca-ref compare`` wrote into one Markdown section; absent files give a short note instead.
"""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.vca_docs")

ROOT = Path(__file__).resolve().parents[2]          # the repository root


def images(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.png")) if d.is_dir() else []


def _fmt(v, key: str = "") -> str:
    if isinstance(v, bool) or v is None:
        v = "—" if v is None else ("yes" if v else "no")
    elif isinstance(v, (int, float)) and "bytes" in key:
        v = f"{v / 2**20:.2f} MiB"
    elif isinstance(v, float):
        v = f"{v:.4g}"
    elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        v = f"{len(v)} entries"            # e.g. a per-epoch history: too long for a cell
    elif isinstance(v, (list, dict)):
        v = json.dumps(v)
    return html.escape(str(v)).replace("|", "\\|").replace("\n", " ")


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"vca": {"numpy_s": 1}} -> {"vca.numpy_s": 1} (one table column per leaf)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _table(records: list[dict], key_column: str | None = None) -> str:
    rows = [_flatten(r) for r in records]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(_fmt(c) for c in cols) + " |",
             "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, ""), c) for c in cols) + " |")
    return "\n".join(lines)


def _is_records(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def render_results_json(data, name: str) -> str:
    """Markdown for one results file, whatever its exact layout.

    * a list of objects: one table, one row per object (nested objects become dotted columns);
    * an object: its ``title`` (else ``benchmark``, else the file name) and ``description``;
      every list of objects in it becomes a table (``records``/``rows``/``points`` first);
      an object of objects (e.g. per-target results) becomes a table with a ``name`` column;
      an object of plain values (machine, config, conventions) becomes a collapsed list;
      the remaining plain values are listed under the title.
    """
    out = []
    if _is_records(data):
        return "\n".join([f"### {_fmt(name)}", "", _table(data)])
    if not isinstance(data, dict):
        return "\n".join([f"### {_fmt(name)}", "", "```json", json.dumps(data, indent=2), "```"])
    out += [f"### {_fmt(data.get('title') or data.get('benchmark') or name)}", ""]
    if data.get("description"):
        out += [_fmt(data["description"]), ""]
    skip = {"title", "description"}
    scalars = [(k, v) for k, v in data.items()
               if k not in skip and not isinstance(v, (dict, list))]
    for k, v in scalars:
        out.append(f"- **{_fmt(k)}**: {_fmt(v, k)}")
    if scalars:
        out.append("")
    keys = sorted((k for k in data if k not in skip),
                  key=lambda k: (k not in ("records", "rows", "points"), list(data).index(k)))
    for k in keys:
        v = data[k]
        if _is_records(v):
            out += [f"**{_fmt(k)}**", "", _table(v), ""]
        elif isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            out += [f"**{_fmt(k)}**", "", _table([{"name": n, **x} for n, x in v.items()]), ""]
    for k in keys:
        v = data[k]
        if isinstance(v, dict) and not all(isinstance(x, dict) for x in v.values()):
            out.append(f'??? info "{_fmt(k)}"')
            for kk, vv in _flatten(v).items():
                out.append(f"    - **{_fmt(kk)}**: {_fmt(vv, kk)}")
            out.append("")
        elif isinstance(v, list) and not _is_records(v):
            out += [f"- **{_fmt(k)}**: {_fmt(v)}", ""]
    return "\n".join(out)


def results_markdown(d: Path, url_dir: str, missing: str) -> str:
    """The results in ``d`` as Markdown (images linked under ``url_dir``), else ``missing``."""
    jsons = sorted(d.glob("*.json")) if d.is_dir() else []
    tables = sorted(d.glob("*.md")) if d.is_dir() else []
    pngs = images(d)
    if not jsons and not pngs and not tables:
        return f'!!! note "Not run yet"\n    {missing}\n'
    parts = [f"*Generated from `{d.relative_to(ROOT) if d.is_relative_to(ROOT) else d}` "
             "when the site was built.*", ""]
    for t in tables:                      # Markdown a script wrote (e.g. compare's table.md)
        parts += [f"### {_fmt(t.stem)}", "", t.read_text(encoding="utf-8"), ""]
    for j in jsons:
        try:
            data = json.loads(j.read_text())
        except (OSError, ValueError) as e:
            log.warning("cannot read results file %s: %s", j, e)
            continue
        parts += [render_results_json(data, j.stem), ""]
    for img in pngs:
        parts += [f"![{img.stem}]({url_dir}/{img.name})", ""]
    return "\n".join(parts)
