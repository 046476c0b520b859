"""The documentation site builds strictly offline and a reader at a 1400 px window can read it.

1. ``mkdocs build`` into a temporary directory logs no WARNING and no ERROR (what ``--strict``
   demands; no network plugin is configured; the MathJax build comes from the npm package
   installed by ``.ci/install-docs.sh``; the notebooks are executed by the build through the
   cache in docs/_hooks/notebook_cache.py).
2. The built HTML loads nothing from another host (no CDN script, stylesheet or font).
3. The site is served on 127.0.0.1 and headless Chromium (1400 x 2000 window) loads every page
   kind: each notebook page, the math page, an API page, Benchmarks, Reproduction and the other
   prose pages.  After MathJax typeset the page, a script (tests/docs_layout_check.js) measures
   every display equation, code block and image: none may be cut off without a
   scrollbar or run out of the content column.  The dumped DOM must show typeset math (no raw
   TeX, no MathJax error), a contents panel in plain text (no ``$``), in-page links whose
   targets exist, and on notebook pages every output and plot of the executed notebook.
4. The checker itself is shown to fail on the defects it looks for: the notebook page without
   the site's stylesheet (nbconvert's wrapper clips wide equations), planted clipped and
   overflowing equations, TeX in the contents panel and a dead in-page link.

Set ``VCA_DOCS_SCREENSHOTS=DIR`` to keep the screenshots for a look.  The Chromium tests are
skipped only when no Chromium is installed (``bash .ci/install-docs.sh`` installs Debian's).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import docs_browser as browser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
needs_chromium = pytest.mark.skipif(
    browser.CHROMIUM is None,
    reason="no Chromium installed (bash .ci/install-docs.sh installs Debian's chromium)")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    """Build the site once for this module: (site directory, build log).

    Built without ``--strict`` so that one failing page (say, a notebook that raises) fails
    the strict test below but still leaves every other page to be checked; the strict test
    applies the same rule as ``--strict``: no WARNING and no ERROR in the log.
    """
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(out),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"mkdocs build failed:\n{proc.stdout}\n{proc.stderr}"
    return out, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def site(build) -> Path:
    return build[0]


@pytest.fixture(scope="module")
def server(site):
    with browser.serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def dom(server):
    """dom(page) -> the page's DOM after JavaScript ran (one Chromium run per page)."""
    cache: dict[str, str] = {}

    def get(page: str) -> str:
        if page not in cache:
            cache[page] = browser.dump_dom(server + page)
        return cache[page]
    return get


def readable(page_dom: str, where: str, min_math: int = 0) -> dict:
    """Assert what every page must satisfy; returns the layout report."""
    containers = page_dom.count("<mjx-container")
    assert containers >= min_math, \
        f"{where}: only {containers} mjx-container elements (MathJax did not typeset the page)"
    for bad in ("<mjx-merror", "data-mjx-error"):
        assert bad not in page_dom, f"{where}: MathJax reports a TeX error ({bad})"
    problems = browser.page_problems(page_dom)
    assert not problems, f"{where}:\n" + "\n".join(problems)
    report = browser.layout_report(page_dom)
    assert report["window"] == browser.WINDOW[0]
    cut = browser.unreadable(report)
    assert not cut, f"{where}: not readable at {report['window']} px:\n" + "\n".join(cut)
    return report


# ------------------------------------------------------------------ the build
def test_site_builds_strict_with_every_section(build):
    site, log = build
    problems = [line for line in log.splitlines() if re.match(r"(WARNING|ERROR)\b", line)]
    assert not problems, "mkdocs build --strict would fail:\n" + log[-6000:]
    for page in ("index.html", "getting-started/index.html", "math/index.html",
                 "code-organisation/index.html", "api/index.html", "api/ops/index.html",
                 "api/nn/index.html", "tutorials/index.html", "gpu/index.html",
                 "testing/index.html", "benchmarks/index.html", "reproduction/index.html",
                 *(f"tutorials/{nb}/index.html" for nb in NOTEBOOKS)):
        assert (site / page).is_file(), f"missing page {page}"
    assert (site / "assets/vendor/mathjax/tex-chtml.js").is_file(), "MathJax was not vendored"
    assert (site / "assets/vendor/mathjax/output/chtml/fonts/woff-v2").is_dir(), \
        "MathJax fonts were not vendored"
    for page, name in (("api/ops", "vca_ref.ops.vca.vca_forward"),
                       ("api/ops", "vca_ref.ops.vca.vca_backward"),
                       ("api/nn", "vca_ref.nn.vca.VisualContrastAttention"),
                       ("api/gradcheck", "vca_ref.gradcheck.gradcheck")):
        html = (site / page / "index.html").read_text(encoding="utf-8")
        assert f'id="{name}"' in html, f"API reference ({page}) lacks {name}"


def test_site_loads_nothing_from_other_hosts(site):
    """No script, stylesheet, font or module import from a CDN (the site must work offline)."""
    remote = re.compile(
        r"""(<script[^>]+src=["']?(?:https?:)?//|<link[^>]+href=["']?(?:https?:)?//[^>]*"""
        r"""(?:stylesheet|preload|preconnect)|import\(\s*["'](?:https?:)?//|@import\s+url\(\s*["']?(?:https?:)?//)""",
        re.I)
    offenders = []
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{page.relative_to(site)}: {m.group(0)[:120]}" for m in remote.finditer(text)]
        if "cdnjs" in text:
            offenders.append(f"{page.relative_to(site)}: cdnjs")
    assert not offenders, "remote resources in the built site:\n" + "\n".join(offenders[:20])


def test_notebook_links_point_at_site_pages(site):
    """Notebooks link with repository paths (../docs/x.md, NN_name.ipynb); on the site every such
    link must have been rewritten to a page that exists."""
    pages = sorted((site / "tutorials").glob("*/index.html"))
    assert pages, "no notebook pages were built"
    for page in pages:
        body = page.read_text(encoding="utf-8").split("<article", 1)[-1]
        assert not re.search(r'href="[^"]*\.md(#[^"]*)?"', body), f"{page}: raw .md link left"
        for href in re.findall(r'href="(\.\./[^"#]*)(?:#[^"]*)?"', body):
            target = (page.parent / href).resolve()
            assert (target / "index.html").exists() or target.exists(), f"{page}: broken link {href}"


def test_search_index_is_plain_text(site):
    """Search results show headings and text as a reader sees them: no TeX, no ¶."""
    docs = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    bad = [d["title"] for d in docs if re.search(r"\$|\\[A-Za-z(\[]|¶", d["title"])]
    assert not bad, f"search titles with TeX: {bad[:5]}"
    prose = [re.sub(r"<(code|pre)\b.*?</\1>", "", d["text"], flags=re.S) for d in docs]
    bad = [t[:80] for t in prose if re.search(r"\$\$|\\\(|\\\[", t)]
    assert not bad, f"search texts with TeX: {bad[:5]}"


# ------------------------------------------------------------------ every page kind, in Chromium
@needs_chromium
@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_notebook_page(site, dom, nb):
    """Executed: every output and plot of the executed notebook is on the page, the exercise
    solutions start folded, and the page is readable."""
    page = f"tutorials/{nb}/"
    page_dom = dom(page)
    assert "jp-Notebook" in page_dom, f"{page}: not rendered by mkdocs-jupyter"
    executed = json.loads((site / page / f"{nb}.ipynb").read_text(encoding="utf-8"))
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert outputs, f"{page}: the notebook shown was not executed (no outputs)"
    source = "".join("".join(c["source"]) for c in code)
    if "matplotlib" in source:
        assert images, f"{page}: the notebook uses matplotlib but shows no plot"
    shown = len(re.findall(r'<div class="[^"]*\bjp-OutputArea-output\b[^"]*"[^>]*>\s*<img',
                           page_dom))
    assert shown == images, f"{page}: {shown} plots on the page, {images} in the notebook"
    solutions = sum("solution" in c["metadata"].get("tags", []) for c in executed["cells"])
    cells = re.finditer(r'class="jp-Cell[^"]*\bcelltag_solution\b" id=', page_dom)
    folded = [m for m in cells
              if page_dom.count("<details", 0, m.start()) > page_dom.count("</details>", 0, m.start())]
    boxes = page_dom.count('<details class="vca-solution')    # consecutive cells share one
    assert len(folded) == solutions and min(solutions, 1) <= boxes <= solutions, \
        f"{page}: {solutions} solution cells, {len(folded)} folded in {boxes} boxes"
    markdown = "".join("".join(c["source"]) for c in executed["cells"]
                       if c["cell_type"] == "markdown")
    readable(page_dom, page, min_math=1 if "$" in markdown else 0)


@needs_chromium
def test_math_page(dom):
    report = readable(dom("math/"), "math page", min_math=100)
    assert sum(it["kind"] == "math" for it in report["items"]) >= 20
    assert "Stage II" in browser.visible_text(dom("math/"))


@needs_chromium
@pytest.mark.parametrize("page", ["api/ops/", "benchmarks/", "reproduction/", "", "spec/",
                                  "references/", "getting-started/", "testing/",
                                  "code-organisation/", "gpu/"])
def test_page(dom, page):
    readable(dom(page), page or "home")


@needs_chromium
@pytest.mark.parametrize("page", ["benchmarks/", "reproduction/"])
def test_results_pages_show_figures(dom, page):
    page_dom = dom(page)
    assert "Not run yet" not in page_dom, f"{page}: shows 'Not run yet' instead of results"
    figures = re.findall(r'<img\b[^>]*src="([^"]+\.(?:png|svg))"', page_dom.split("<article", 1)[-1])
    assert figures, f"{page}: no figure"


@needs_chromium
def test_screenshots_are_pictures(server, tmp_path):
    for page, name in (("math/", "math.png"), (f"tutorials/{NOTEBOOKS[2]}/", "notebook.png")):
        shot = browser.screenshot(server + page, tmp_path / name)
        assert browser.png_pixels_vary(shot), f"{shot} looks blank"


# ------------------------------------------------------------------ the checker fails on defects
WIDE = "$$" + " + ".join(f"x_{{{i}}} W_{{q}}^\\top" for i in range(60)) + "$$"


@needs_chromium
def test_checker_flags_clipped_and_overflowing_math(site, server):
    """Without the site's stylesheet, nbconvert's cell wrapper clips wide display equations of
    the notebook pages (the state before it); planted equations get the three verdicts."""
    page = site / "tutorials" / NOTEBOOKS[2] / "index.html"
    html = page.read_text(encoding="utf-8")
    bare = re.sub(r'<link[^>]+stylesheets/extra\.css[^>]*>', "", html)
    assert bare != html, "the notebook page does not load stylesheets/extra.css"
    (page.parent / "without-site-css.html").write_text(bare, encoding="utf-8")
    report = browser.layout_report(
        browser.dump_dom(server + f"tutorials/{NOTEBOOKS[2]}/without-site-css.html"))
    assert any(it["verdict"] == "clipped" for it in report["items"] if it["kind"] == "math"), \
        "the checker saw no clipped equation on the page without the site's stylesheet"

    planted = html.replace("</article>", (
        '<div class="jupyter-wrapper"><div class="jp-RenderedMarkdown" id="p-scrolls">'
        f"<p>{WIDE}</p></div></div>"
        '<div style="overflow:hidden"><div class="jp-RenderedMarkdown" id="p-clipped">'
        f"<p>{WIDE}</p></div></div>"
        f'<div class="jp-RenderedMarkdown" id="p-overflows"><p>{WIDE}</p></div></article>'), 1)
    (page.parent / "planted.html").write_text(planted, encoding="utf-8")
    report = browser.layout_report(browser.dump_dom(server + f"tutorials/{NOTEBOOKS[2]}/planted.html"))
    last3 = [it["verdict"] for it in report["items"] if it["kind"] == "math"][-3:]
    assert last3 == ["scrolls", "clipped", "overflows"], last3
    assert len(browser.unreadable(report)) >= 2


def test_checker_flags_tex_in_contents_and_dead_anchors():
    page = ('<nav class="md-nav md-nav--secondary" aria-label="Table of contents"><ul>'
            '<li><a href="#ok" class="md-nav__link">The E⁺ = E⁻ check</a></li>'
            '<li><a href="#the-e-e-sanity-check" class="md-nav__link">The $E^+ = E^-$ check</a>'
            '</li></ul></nav></div><h2 id="ok">The E⁺ = E⁻ check</h2>')
    problems = browser.page_problems(page)
    assert any("TeX in the contents panel" in p for p in problems), problems
    assert any("#the-e-e-sanity-check" in p for p in problems), problems
    assert not browser.page_problems(page.replace("$E^+ = E^-$", "E⁺ = E⁻")
                                     .replace("#the-e-e-sanity-check", "#ok"))
