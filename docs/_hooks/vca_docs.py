"""MkDocs hooks for the vca_ref site (loaded by ``hooks:`` in mkdocs.yml).

Five jobs, each small, none of them touching the network:

1. **Notebooks, single source.**  ``notebooks/*.ipynb`` stay where they are (the
   test suite executes them there).  ``on_files`` adds each one to the build as
   ``tutorials/<name>.ipynb`` *before* mkdocs-jupyter's own ``on_files`` runs
   (higher event priority), so mkdocs-jupyter renders them like any page;
   ``on_config`` appends them to the "Tutorials" section of the nav, so a new
   notebook shows up without editing mkdocs.yml; ``<!-- vca:notebooks -->`` on
   tutorials/index.md becomes a list of them.  No symlink, no copy in git.
2. **MathJax, vendored at build time.**  MathJax 3 is installed from the npm
   registry by ``.ci/install-docs.sh`` into ``.cache/docs-js`` (git-ignored);
   ``on_files`` adds its ``es5`` files to the build under
   ``assets/vendor/mathjax/``.  If MathJax cannot be found the hook logs a
   WARNING, so ``mkdocs build --strict`` fails instead of shipping raw TeX.
3. **Notebook pages without CDN loaders.**  nbconvert's template emits a
   MathJax-2 loader and a mermaid ES-module import from a CDN; ``on_post_page``
   strips both from notebook pages (the site-wide vendored MathJax typesets
   their math instead).
4. **A complete API reference.**  ``<!-- vca:api-undocumented -->`` on api.md becomes a
   ``::: module`` entry for every public module of ``vca_ref`` that no API page lists yet, so a
   newly added module is documented even before someone files it under the right page.
   Sphinx roles in docstrings (``:mod:`x```) become optional cross-references.
5. **Generated tables.**  ``on_page_markdown`` replaces the markers
   ``<!-- vca:benchmarks -->`` and ``<!-- vca:toy-results -->`` with tables
   rendered from JSON files written by ``benchmarks/`` and ``vca-ref compare``
   (git-ignored outputs).  Absent files give a short "not run yet" note, so the
   strict build passes on a fresh clone.

Environment variables (all optional):

    VCA_DOCS_MATHJAX        directory holding MathJax's es5/ build (tex-chtml.js)
    VCA_DOCS_NOTEBOOKS      directory of the notebooks to render (default notebooks/)
    VCA_DOCS_BENCH_RESULTS  directory of benchmark JSON/PNG (default benchmarks/results/)
    VCA_DOCS_TOY_RESULTS    directory of toy-scale result JSON/PNG (default runs/compare/, where `vca-ref compare` writes)
"""
from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path

from mkdocs.plugins import CombinedEvent, event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.vca_docs")

ROOT = Path(__file__).resolve().parents[2]          # the repository root
MATHJAX_DEST = "assets/vendor/mathjax"               # where MathJax lands in the site
TUTORIALS = "tutorials"                              # where notebooks land in the site
NAV_TUTORIALS_TITLE = "Tutorials"


# ------------------------------------------------------------------ locations
def notebooks_dir() -> Path:
    return Path(os.environ.get("VCA_DOCS_NOTEBOOKS", ROOT / "notebooks"))


def notebook_paths() -> list[Path]:
    """The notebooks to render, sorted by file name (01_..., 02_..., ...)."""
    d = notebooks_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.ipynb") if not p.name.startswith("."))


def mathjax_dir() -> Path | None:
    """MathJax 3's es5/ directory, or None: env var, then the install script's prefix."""
    candidates = []
    if os.environ.get("VCA_DOCS_MATHJAX"):
        candidates.append(Path(os.environ["VCA_DOCS_MATHJAX"]))
    candidates += [
        ROOT / ".cache/docs-js/node_modules/mathjax/es5",   # .ci/install-docs.sh
        ROOT / "node_modules/mathjax/es5",                  # a plain `npm install mathjax@3`
    ]
    for c in candidates:
        if (c / "tex-chtml.js").is_file():
            return c
    return None


def results_dir(var: str, default: str) -> Path:
    return Path(os.environ.get(var, ROOT / default))


# ------------------------------------------------------------------ 1. nav
def on_config(config):
    """Append every notebook to the "Tutorials" nav section (if not listed already)."""
    nav = config.get("nav") or []
    for item in nav:
        if isinstance(item, dict) and NAV_TUTORIALS_TITLE in item:
            section = item[NAV_TUTORIALS_TITLE]
            if not isinstance(section, list):
                section = item[NAV_TUTORIALS_TITLE] = [section]
            listed = json.dumps(section)
            for nb in notebook_paths():
                uri = f"{TUTORIALS}/{nb.name}"
                if uri not in listed:
                    section.append(uri)
    return config


# ------------------------------------------------------------------ 1 + 2. files
@event_priority(50)          # before mkdocs-jupyter (priority 0) wraps .ipynb files
def _add_files(files: Files, config) -> Files:
    for nb in notebook_paths():
        files.append(File.generated(config, f"{TUTORIALS}/{nb.name}", abs_src_path=str(nb)))

    mj = mathjax_dir()
    if mj is None:
        log.warning(
            "MathJax 3 not found: math will not be typeset. Run `bash .ci/install-docs.sh` "
            "(npm install of mathjax@3 into .cache/docs-js) or set VCA_DOCS_MATHJAX to its es5/ "
            "directory.")
        return files
    for path in sorted(mj.rglob("*")):
        rel = path.relative_to(mj).as_posix()
        # the top-level combined builds other than tex-chtml.js are not needed (~15 MB)
        if path.is_dir() or ("/" not in rel and rel.endswith(".js") and rel != "tex-chtml.js"):
            continue
        files.append(File.generated(config, f"{MATHJAX_DEST}/{rel}", abs_src_path=str(path)))

    for var, default, dest in (("VCA_DOCS_BENCH_RESULTS", "benchmarks/results", "benchmarks"),
                               ("VCA_DOCS_TOY_RESULTS", "runs/compare", "reproduction")):
        for img in _images(results_dir(var, default)):
            files.append(File.generated(config, f"{dest}/results/{img.name}",
                                        abs_src_path=str(img)))
    return files


@event_priority(-50)         # after mkdocs-jupyter has wrapped the notebooks
def _fix_notebook_files(files: Files, config) -> Files:
    """Give mkdocs-jupyter's NotebookFile wrappers the real path of our generated notebooks.

    NotebookFile wraps a File without calling File.__init__, so its ``abs_src_path`` is
    recomputed from ``src_dir``, which is None for a generated file. Copy it from the wrapped file.
    """
    for f in files:
        inner = getattr(f, "__dict__", {}).get("file")
        if inner is not None and f.src_uri.startswith(f"{TUTORIALS}/") and f.abs_src_path is None:
            f.abs_src_path = inner.abs_src_path
    return files


on_files = CombinedEvent(_add_files, _fix_notebook_files)


def on_serve(server, config, builder):
    """`mkdocs serve` also reloads when the notebooks, the package or results change."""
    for p in (notebooks_dir(), ROOT / "vca_ref",
              results_dir("VCA_DOCS_BENCH_RESULTS", "benchmarks/results"),
              results_dir("VCA_DOCS_TOY_RESULTS", "runs/compare")):
        if p.is_dir():
            server.watch(str(p))
    return server


# ------------------------------------------------------------------ 3. notebook pages
_NB_MATHJAX2 = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_NB_MERMAID = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid.*?</script>', re.S)


# Notebooks link the way that works in Jupyter and on GitHub (repository paths:
# ``../docs/math.md#x``, ``02_name.ipynb``); nbconvert leaves links alone, so on the site
# (a notebook page lives at tutorials/<name>/) they are rewritten to the page URLs.
_NB_DOC_LINK = re.compile(r'href="\.\./docs/([\w\-/]+?)(?:/index)?\.md(#[^"]*)?"')
_NB_NB_LINK = re.compile(r'href="(\d\d_[\w\-]+)\.ipynb(#[^"]*)?"')


def rewrite_notebook_links(html: str) -> str:
    """Repository-relative links in a rendered notebook -> site URLs."""
    html = _NB_DOC_LINK.sub(lambda m: f'href="../../{m.group(1)}/{m.group(2) or ""}"', html)
    return _NB_NB_LINK.sub(lambda m: f'href="../{m.group(1)}/{m.group(2) or ""}"', html)


def on_post_page(output: str, page, config) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        output = _NB_MATHJAX2.sub("", output)
        output = _NB_MERMAID.sub("", output)
        output = rewrite_notebook_links(output)
    return output


# ------------------------------------------------------------------ 4. API pages
_RST_ROLE = re.compile(
    r":(?:mod|func|class|meth|attr|data|obj|exc):<code>~?([A-Za-z_][\w.]*)</code>")


def on_page_content(html_out: str, page, config, files) -> str:
    """Notebook pages get a download link to their .ipynb (copied beside the page by
    mkdocs-jupyter's ``include_source``).  Docstrings use Sphinx roles (``:mod:`vca_ref.ops```); Markdown leaves the role name in
    front of the code span. Turn each into an optional cross-reference (a link when the name is
    documented, plain code otherwise; never a warning)."""
    if page.file.src_uri.endswith(".ipynb"):
        name = Path(page.file.src_uri).name
        html_out = (f'<p class="vca-nb-source"><a href="{name}" download>Download this notebook'
                    f'</a> (source: <code>notebooks/{name}</code>, stored without outputs; run it '
                    f'with Jupyter to see them)</p>\n' + html_out)
    if ":<code>" in html_out:
        html_out = _RST_ROLE.sub(
            r'<autoref identifier="\1" optional><code>\1</code></autoref>', html_out)
    return html_out


# ------------------------------------------------------------------ 5. generated content
def notebook_title(nb: Path) -> str:
    """The first markdown heading of a notebook, else its file name."""
    try:
        cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return nb.stem
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            m = re.search(r"^#{1,6}\s+(.+?)\s*$", src, re.M)
            if m:
                return m.group(1)
    return nb.stem


def _notebook_list() -> str:
    nbs = notebook_paths()
    if not nbs:
        return ('!!! note "No notebooks yet"\n    The notebooks are being written; each one '
                "added to `notebooks/` appears here and in the navigation.\n")
    # a bullet list: the titles carry their own numbers ("1. Attention refresher")
    return "\n".join(f"* [{notebook_title(nb)}]({nb.name}) — `notebooks/{nb.name}`"
                     for nb in nbs) + "\n"


def undocumented_modules() -> list[str]:
    """Public leaf modules of vca_ref that no ``::: name`` line of the API pages documents."""
    documented = set()
    for md in [ROOT / "docs/api.md", *sorted((ROOT / "docs/api").glob("*.md"))]:
        if md.is_file():
            documented |= set(re.findall(r"^:::\s+(vca_ref[\w.]*)", md.read_text(), re.M))
    found = []
    for py in sorted((ROOT / "vca_ref").rglob("*.py")):
        rel = py.relative_to(ROOT).with_suffix("")
        if py.name == "__init__.py" or any(part.startswith("_") for part in rel.parts):
            continue
        name = ".".join(rel.parts)
        if name not in documented:
            found.append(name)
    return found


def _undocumented_markdown() -> str:
    mods = undocumented_modules()
    if not mods:
        return ""
    return ("## Other modules\n\nModules added since the pages above were organised "
            "(listed automatically by the docs build):\n\n"
            + "\n\n".join(f"::: {m}" for m in mods) + "\n")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- vca:api-undocumented -->" in markdown:
        markdown = markdown.replace("<!-- vca:api-undocumented -->", _undocumented_markdown())
    if "<!-- vca:notebooks -->" in markdown:
        markdown = markdown.replace("<!-- vca:notebooks -->", _notebook_list())
    if "<!-- vca:benchmarks -->" in markdown:
        markdown = markdown.replace("<!-- vca:benchmarks -->", _results_markdown(
            results_dir("VCA_DOCS_BENCH_RESULTS", "benchmarks/results"), "benchmarks/results",
            "No benchmark results in `benchmarks/results/` yet: run the scripts in "
            "`benchmarks/` (see above), then rebuild the site."))
    if "<!-- vca:toy-results -->" in markdown:
        markdown = markdown.replace("<!-- vca:toy-results -->", _results_markdown(
            results_dir("VCA_DOCS_TOY_RESULTS", "runs/compare"), "reproduction/results",
            "No toy-scale results in `runs/compare/` yet: run `vca-ref compare` (see "
            "[Getting started](getting-started.md)), then rebuild the site."))
    return markdown


def _images(d: Path) -> list[Path]:
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


def _results_markdown(d: Path, url_dir: str, missing: str) -> str:
    jsons = sorted(d.glob("*.json")) if d.is_dir() else []
    tables = sorted(d.glob("*.md")) if d.is_dir() else []
    images = _images(d)
    if not jsons and not images and not tables:
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
    for img in images:
        parts += [f"![{img.stem}]({url_dir}/{img.name})", ""]
    return "\n".join(parts)
