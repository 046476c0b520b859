"""The documentation site builds strictly offline and its math is really typeset.

1. ``mkdocs build --strict`` into a temporary directory (no network plugin is configured; the
   MathJax build comes from the npm package installed by ``.ci/install-docs.sh``).
2. The built HTML loads nothing from another host (no CDN script, stylesheet or font).
3. The site is served on 127.0.0.1 (http.server in a thread, a free port) and headless
   Chromium takes a screenshot of the math page and of a notebook page, and dumps their DOM
   after JavaScript ran: MathJax output elements (``mjx-container``) are present, no TeX error
   is shown, and no raw ``$$``, ``\\(`` or ``\\[`` (nor any ``\\command``) is left in the text.

If ``notebooks/`` holds no notebook yet, a tiny notebook with math is rendered from a temporary
directory instead (through ``VCA_DOCS_NOTEBOOKS``), so the notebook path is still exercised.
Set ``VCA_DOCS_SCREENSHOTS=DIR`` to keep the screenshots for a look.
The Chromium tests are skipped only when no Chromium is installed
(``bash .ci/install-docs.sh`` installs Debian's).
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(c)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed (bash .ci/install-docs.sh installs Debian's chromium)")

TINY_NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": [
            "# A tiny notebook with math\n", "\n",
            "Inline $y = \\mathrm{softmax}(x)$ and display:\n", "\n",
            "$$dx = y \\odot (dy - \\langle dy, y \\rangle)$$\n"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": ["import vca_ref\n", "print(vca_ref.__version__)"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the site once for this module; returns the site directory."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    if not list((ROOT / "notebooks").glob("*.ipynb")):
        nb_dir = tmp_path_factory.mktemp("notebooks")
        (nb_dir / "00_tiny_math.ipynb").write_text(json.dumps(TINY_NOTEBOOK))
        env["VCA_DOCS_NOTEBOOKS"] = str(nb_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def server(site):
    """Serve the built site on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


# ------------------------------------------------------------------ helpers
def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-quic", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def dump_dom(url: str) -> str:
    proc = _chromium("--dump-dom", url)
    assert proc.returncode == 0 and "<html" in proc.stdout, \
        f"chromium --dump-dom {url} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def screenshot(url: str, path: Path, size=(1280, 2400)) -> Path:
    keep = os.environ.get("VCA_DOCS_SCREENSHOTS")       # a directory to keep the PNGs in
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        path = Path(keep) / path.name
    proc = _chromium(f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", url)
    assert proc.returncode == 0 and path.is_file(), \
        f"chromium --screenshot {url} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return path


class _VisibleText(html.parser.HTMLParser):
    """Text a reader sees as prose: drops scripts, styles, code and MathJax's own output."""
    SKIP = {"script", "style", "code", "pre", "textarea", "noscript", "mjx-container", "svg",
            "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


# mkdocs-jupyter keeps each code cell's raw source in a hidden div for the copy button.
_CLIPBOARD_COPY = re.compile(r'<div class="clipboard-copy-txt"[^>]*>.*?</div>', re.S)


def visible_text(dom: str) -> str:
    p = _VisibleText()
    p.feed(_CLIPBOARD_COPY.sub("", dom))
    return "".join(p.parts)


def assert_math_typeset(dom: str, min_containers: int, where: str) -> int:
    containers = dom.count("<mjx-container")
    assert containers >= min_containers, \
        f"{where}: only {containers} mjx-container elements (MathJax did not typeset the page)"
    for bad in ("<mjx-merror", "data-mjx-error"):
        assert bad not in dom, f"{where}: MathJax reports a TeX error ({bad})"
    text = visible_text(dom)
    leftovers = [tok for tok in ("$$", "\\(", "\\)", "\\[", "\\]") if tok in text]
    assert not leftovers, f"{where}: raw math delimiters left in the rendered text: {leftovers}"
    commands = sorted(set(re.findall(r"\\[A-Za-z]{2,}", text)))
    assert not commands, f"{where}: raw TeX commands left in the rendered text: {commands[:10]}"
    return containers


def png_pixels_vary(path: Path) -> bool:
    """True if the PNG is a real picture: decodable and not one flat colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 400, f"{path}: tiny image {width}x{height}"
    try:
        from PIL import Image
    except ImportError:  # fall back to the compressed size: a flat image compresses to ~nothing
        return len(data) > 20_000
    with Image.open(path) as im:
        lo, hi = im.convert("L").getextrema()
    return hi - lo > 100


def first_notebook_url(site: Path) -> str:
    pages = sorted(p.parent for p in (site / "tutorials").glob("*/index.html"))
    assert pages, "no notebook page was rendered under tutorials/"
    return f"tutorials/{pages[0].name}/"


# ------------------------------------------------------------------ tests
def test_site_builds_strict_with_every_section(site):
    for page in ("index.html", "getting-started/index.html", "math/index.html",
                 "code-organisation/index.html", "api/index.html", "api/ops/index.html",
                 "api/nn/index.html", "tutorials/index.html", "gpu/index.html",
                 "testing/index.html", "benchmarks/index.html", "reproduction/index.html"):
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
        for m in remote.finditer(page.read_text(encoding="utf-8", errors="replace")):
            offenders.append(f"{page.relative_to(site)}: {m.group(0)[:120]}")
    assert not offenders, "remote resources in the built site:\n" + "\n".join(offenders[:20])
    for page in site.rglob("*.html"):
        assert "cdnjs" not in page.read_text(encoding="utf-8", errors="replace"), page


@needs_chromium
def test_math_page_is_typeset(site, server, tmp_path):
    dom = dump_dom(server + "math/")
    n = assert_math_typeset(dom, min_containers=100, where="math page")
    assert "Stage II" in visible_text(dom)
    shot = screenshot(server + "math/", tmp_path / "math.png")
    assert png_pixels_vary(shot), f"{shot} looks blank"
    assert n >= 100


@needs_chromium
def test_notebook_page_is_typeset(site, server, tmp_path):
    url = server + first_notebook_url(site)
    dom = dump_dom(url)
    assert "jp-Notebook" in dom, "the notebook was not rendered by mkdocs-jupyter"
    if "$" in _markdown_sources(site, url):
        assert_math_typeset(dom, min_containers=1, where=url)
    else:
        assert_math_typeset(dom, min_containers=0, where=url)
    shot = screenshot(url, tmp_path / "notebook.png")
    assert png_pixels_vary(shot), f"{shot} looks blank"


@needs_chromium
@pytest.mark.parametrize("page", ["testing/", "getting-started/", "code-organisation/",
                                  "benchmarks/", "reproduction/", ""])
def test_other_pages_have_no_raw_math(server, page):
    assert_math_typeset(dump_dom(server + page), min_containers=0, where=page or "home")


def _markdown_sources(site: Path, url: str) -> str:
    """The markdown cells of the notebook behind a rendered page (its copied .ipynb source)."""
    page_dir = site / url.split("/", 3)[-1]
    for nb in page_dir.glob("*.ipynb"):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        return "".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                       for c in cells if c["cell_type"] == "markdown")
    return ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


def test_notebook_links_point_at_site_pages(site):
    """Notebooks link with repository paths (../docs/x.md, NN_name.ipynb); on the site every such
    link must have been rewritten to a page that exists."""
    import re
    pages = sorted((site / "tutorials").glob("*/index.html"))
    assert pages, "no notebook pages were built"
    for page in pages:
        html = page.read_text(encoding="utf-8")
        body = html.split('<article', 1)[-1]
        assert not re.search(r'href="[^"]*\.md(#[^"]*)?"', body), f"{page}: raw .md link left"
        for href in re.findall(r'href="(\.\./[^"#]*)(?:#[^"]*)?"', body):
            target = (page.parent / href).resolve()
            assert (target / "index.html").exists() or target.exists(), f"{page}: broken link {href}"
