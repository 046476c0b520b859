"""Headless Chromium over a built copy of the site: what tests/test_docs.py looks with.

* ``serve(site_dir)`` serves a built site on 127.0.0.1 at a free port.  Every HTML page it
  serves gets ``docs_layout_check.js`` added before ``</body>`` (the files on disk are left
  alone), so a dump of the page carries a layout report measured after MathJax typeset it.
* ``dump_dom(url)`` / ``screenshot(url, path)`` run Chromium at a 1400 px wide window.
* ``layout_report(dom)`` reads the report back; ``unreadable(report)`` lists the display
  equations, code blocks and images a reader cannot see whole (cut off without a scrollbar,
  or running out of the content column).
* ``page_problems(dom)`` lists what the text of a page gets wrong: raw TeX left in the prose,
  TeX or ``$`` in the contents panel, in-page links to ids that do not exist.
"""
from __future__ import annotations

import contextlib
import functools
import html
import html.parser
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(c)), None)
WINDOW = (1400, 2000)
CHECK_JS = Path(__file__).with_name("docs_layout_check.js")
CHECK_URL = "/__vca_layout_check.js"


# ------------------------------------------------------------------ serving
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path == CHECK_URL:
            return self._send(CHECK_JS.read_bytes(), "text/javascript")
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix == ".html" and path.is_file() and self.path.split("?")[0].endswith(
                ("/", ".html")):
            page = path.read_text(encoding="utf-8").replace(
                "</body>", f'<script src="{CHECK_URL}"></script></body>', 1)
            return self._send(page.encode("utf-8"), "text/html; charset=utf-8")
        return super().do_GET()

    def _send(self, body: bytes, ctype: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(site: Path):
    """Serve ``site`` on 127.0.0.1 at a free port; yields the base URL (ending in /)."""
    handler = functools.partial(_Handler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# ------------------------------------------------------------------ chromium
def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-quic", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=15000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def dump_dom(url: str) -> str:
    proc = _chromium("--dump-dom", url)
    assert proc.returncode == 0 and "<html" in proc.stdout, \
        f"chromium --dump-dom {url} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def screenshot(url: str, path: Path, height: int = 2400) -> Path:
    keep = os.environ.get("VCA_DOCS_SCREENSHOTS")       # a directory to keep the PNGs in
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        path = Path(keep) / path.name
    proc = _chromium(f"--screenshot={path}", f"--window-size={WINDOW[0]},{height}", url)
    assert proc.returncode == 0 and path.is_file(), \
        f"chromium --screenshot {url} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return path


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


# ------------------------------------------------------------------ layout
def layout_report(dom: str) -> dict:
    m = re.search(r'<pre id="vca-layout-report">(.*?)</pre>', dom, re.S)
    assert m, "no layout report in the page (the check script did not run to the end)"
    report = json.loads(html.unescape(m.group(1)))
    assert "error" not in report, report["error"]
    return report


def unreadable(report: dict, kinds=("math", "code", "image")) -> list[str]:
    """Items cut off without a scrollbar or running out of the content column."""
    return [f"{it['kind']} {it['verdict']} ({it['width']} px in a {report['column']} px column): "
            f"{it['text']}" for it in report["items"]
            if it["kind"] in kinds and it["verdict"] in ("clipped", "overflows")]


# ------------------------------------------------------------------ text
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


def raw_math(dom: str) -> list[str]:
    """TeX left untypeset in the prose: delimiters or \\commands."""
    text = visible_text(dom)
    found = [tok for tok in ("$$", "\\(", "\\)", "\\[", "\\]") if tok in text]
    return found + sorted(set(re.findall(r"\\[A-Za-z]{2,}", text)))


_TOC_LINK = re.compile(r'<nav class="md-nav md-nav--secondary".*?</nav>\s*</div>', re.S)
_A = re.compile(r'<a\b[^>]*href="([^"]*)"[^>]*>(.*?)</a>', re.S)


def contents_entries(dom: str) -> list[tuple[str, str]]:
    """(href, text) of every entry of the contents panel ("Table of contents")."""
    m = _TOC_LINK.search(dom)
    if not m:
        return []
    return [(html.unescape(href), re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", t))).strip())
            for href, t in _A.findall(m.group(0))]


def page_problems(dom: str) -> list[str]:
    """Raw TeX in the prose, TeX in the contents panel, in-page links without a target."""
    problems = [f"raw TeX in the text: {tok}" for tok in raw_math(dom)[:10]]
    for href, text in contents_entries(dom):
        if "$" in text or "\\" in text:
            problems.append(f"TeX in the contents panel: {text!r}")
    ids = {html.unescape(i) for i in re.findall(r'\bid="([^"]+)"', dom)}
    for href in sorted({html.unescape(h) for h in re.findall(r'href="#([^"]+)"', dom)}):
        if href not in ids:
            problems.append(f"in-page link to a missing anchor: #{href}")
    return problems
