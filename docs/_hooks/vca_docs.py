"""MkDocs hooks for the vca_ref site (loaded by ``hooks:`` in mkdocs.yml).

Four jobs, none of them touching the network (helpers in the sibling modules
notebook_cache.py and plain_text.py):

1. **Notebooks, single source, executed.**  ``notebooks/*.ipynb`` stay where they are, stored
   without outputs.  ``on_files`` executes each one (or takes its executed copy from the cache
   in ``.cache/notebooks/``, keyed by the notebook and the package sources: see
   notebook_cache.py) and adds the executed copy to the build as ``tutorials/<name>.ipynb``
   *before* mkdocs-jupyter's own ``on_files`` runs (higher event priority), so mkdocs-jupyter
   renders it like any page; ``on_config`` appends them to the "Tutorials" section of the nav,
   so a new notebook shows up without editing mkdocs.yml; ``<!-- vca:notebooks -->`` on
   tutorials/index.md becomes a list of them.  ``VCA_DOCS_EXECUTE=0`` renders them as stored.
2. **MathJax, vendored at build time.**  MathJax 3 is installed from the npm
   registry by ``.ci/install-docs.sh`` into ``.cache/docs-js`` (git-ignored);
   ``on_files`` adds its ``es5`` files to the build under
   ``assets/vendor/mathjax/``.  If MathJax cannot be found the hook logs a
   WARNING, so ``mkdocs build --strict`` fails instead of shipping raw TeX.
3. **Notebook pages that read like the others.**  nbconvert's template emits a MathJax-2 loader
   and a mermaid ES-module import from a CDN; ``on_post_page`` strips both (the site-wide
   vendored MathJax typesets their math instead).  The contents panel is read back from the
   page's own headings, and every contents panel and the search index show math as plain text.
4. **A complete API reference.**  ``<!-- vca:api-undocumented -->`` on api.md becomes a
   ``::: module`` entry for every public module of ``vca_ref`` that no API page lists yet, so a
   newly added module is documented even before someone files it under the right page.
   Sphinx roles in docstrings (``:mod:`x```) become optional cross-references.

Environment variables (all optional):

    VCA_DOCS_MATHJAX        directory holding MathJax's es5/ build (tex-chtml.js)
    VCA_DOCS_NOTEBOOKS      directory of the notebooks to render (default notebooks/)
    VCA_DOCS_EXECUTE        0: render the notebooks as stored, without executing them
    VCA_DOCS_NB_CACHE       where executed notebooks are cached (default .cache/notebooks/)
    VCA_DOCS_NB_JOBS        notebooks executed at the same time (default 2)
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from mkdocs.plugins import CombinedEvent, event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.toc import get_toc

import notebook_cache                                 # docs/_hooks/ is on sys.path while loading
from plain_text import headings_toc, math_to_text, plain_search_index, plain_toc_titles

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
def rendered_notebooks() -> dict[Path, Path]:
    """{stored notebook: the copy to render}: the executed copy (cached, see notebook_cache.py),
    or the stored one when VCA_DOCS_EXECUTE=0 or when it fails to run (logged as an error, so
    ``mkdocs build --strict`` fails)."""
    nbs = notebook_paths()
    if os.environ.get("VCA_DOCS_EXECUTE", "1") == "0":
        log.info("VCA_DOCS_EXECUTE=0: notebooks are rendered as stored, without outputs")
        return {nb: nb for nb in nbs}
    for nb in nbs:
        if not notebook_cache.cached_copy(nb).is_file():
            log.info("executing %s (not in the cache)", nb.name)
    out = {}
    for nb, result in notebook_cache.executed_all(nbs).items():
        if isinstance(result, Exception):
            message = re.sub(r"\x1b\[[0-9;]*m", "", str(result))      # no terminal colours
            log.error("notebook %s failed to execute; rendered without outputs:\n%s",
                      nb.name, message[-3000:])
            result = nb
        out[nb] = result
    return out


@event_priority(50)          # before mkdocs-jupyter (priority 0) wraps .ipynb files
def _add_files(files: Files, config) -> Files:
    for nb, rendered in rendered_notebooks().items():
        files.append(File.generated(config, f"{TUTORIALS}/{nb.name}", abs_src_path=str(rendered)))

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
    """`mkdocs serve` also reloads when the notebooks or the package change."""
    for p in (notebooks_dir(), ROOT / "vca_ref"):
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
    """Notebook pages: the contents panel read from the page, a download link to the executed
    .ipynb (copied beside the page by mkdocs-jupyter's ``include_source``).  Other pages: the
    contents panel in plain text.  Docstrings use Sphinx roles (``:mod:`vca_ref.ops```);
    Markdown leaves the role name in front of the code span. Turn each into an optional
    cross-reference (a link when the name is documented, plain code otherwise; never a
    warning)."""
    if page.file.src_uri.endswith(".ipynb"):
        # mkdocs-jupyter's contents panel slugs headings differently from the page (dead links
        # for headings with code) and keeps their TeX: read it back from the page instead.
        tokens = headings_toc(html_out)
        page.toc = get_toc(tokens)
        if tokens and tokens[0]["level"] == 1:
            page.title = tokens[0]["name"]
        name = Path(page.file.src_uri).name
        html_out = (f'<p class="vca-nb-source"><a href="{name}" download>Download this notebook'
                    f'</a> with the outputs shown here (the repository stores '
                    f'<code>notebooks/{name}</code> without outputs)</p>\n' + html_out)
    else:
        plain_toc_titles(page.toc)
    if ":<code>" in html_out:
        html_out = _RST_ROLE.sub(
            r'<autoref identifier="\1" optional><code>\1</code></autoref>', html_out)
    return html_out


# ------------------------------------------------------------------ generated content
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
                return math_to_text(m.group(1))
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


@event_priority(-100)        # after the search plugin has written its index
def on_post_build(config) -> None:
    """The search index shows math as plain text, like the contents panel."""
    plain_search_index(Path(config["site_dir"]) / "search" / "search_index.json")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- vca:api-undocumented -->" in markdown:
        markdown = markdown.replace("<!-- vca:api-undocumented -->", _undocumented_markdown())
    if "<!-- vca:notebooks -->" in markdown:
        markdown = markdown.replace("<!-- vca:notebooks -->", _notebook_list())
    return markdown
