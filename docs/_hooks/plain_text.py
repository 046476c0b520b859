"""Plain text for the contents panel and the search index, and anchors that match.

MathJax typesets math in the page body, but the table of contents and the search results are
plain text: a heading such as ``The $E^+ = E^-$ sanity check`` would show its TeX there.
``math_to_text`` turns each math span into readable Unicode (``E⁺ = E⁻``, ``λᵢₙᵢₜ``, ``ᾱₜ``).

Notebook pages get their contents panel from mkdocs-jupyter, which slugs headings one way for
the panel and another way for the page, so headings containing code had dead links.
``headings_toc`` instead reads the headings (id and text) from the rendered page itself, so
every contents entry points at an id that exists.
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

_LOWER = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho "
          "sigma tau upsilon phi chi psi omega")
_UPPER = "Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega"
SYMBOLS = dict(zip(_LOWER.split(), "αβγδεζηθικλμνξπρστυφχψω"))
SYMBOLS.update(zip(_UPPER.split(), "ΓΔΘΛΞΠΣΦΨΩ"))
SYMBOLS.update({
    "varepsilon": "ε", "varphi": "φ", "ell": "ℓ", "odot": "⊙", "otimes": "⊗", "cdot": "·",
    "times": "×", "to": "→", "rightarrow": "→", "leftarrow": "←", "le": "≤", "leq": "≤",
    "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "sim": "∼", "infty": "∞",
    "sum": "Σ", "prod": "Π", "partial": "∂", "nabla": "∇", "in": "∈", "top": "ᵀ",
    "ldots": "…", "dots": "…", "cdots": "⋯", "sqrt": "√", "pm": "±", "mid": "|",
    "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    ",": " ", ";": " ", ":": " ", "!": "", "quad": " ", "qquad": " ", " ": " ",
    "{": "{", "}": "}", "%": "%", "$": "$", "_": "_",
})
ACCENTS = {"bar": "\u0304", "overline": "\u0304", "hat": "\u0302", "widehat": "\u0302",
           "tilde": "\u0303", "widetilde": "\u0303", "dot": "\u0307", "vec": "\u20d7"}
DROP = {"left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr", "displaystyle",
        "mathrm", "text", "textrm", "mathbf", "mathit", "mathsf", "mathtt", "operatorname",
        "mathcal", "mathbb", "boldsymbol", "bm"}
SUP = dict(zip("0123456789+-=()nTi", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿᵀⁱ"))
SUB = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ"))

_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)


def _group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at s[i]: a {braced group}, a \\command or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1:j], j + 1
        return s[i + 1:], len(s)
    if s[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", s[i:])
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _script(text: str, table: dict, mark: str) -> str:
    text = text.strip()
    if text and all(c in table for c in text):
        return "".join(table[c] for c in text)
    if text and all(c in table.values() for c in text):        # already a script (\top)
        return text
    return f"{mark}{text}" if text.isalnum() else f"{mark}({text})"


def tex_to_text(tex: str) -> str:
    """One TeX math expression as plain Unicode text (best effort, never raises)."""
    out, i = [], 0
    while i < len(tex):
        c = tex[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", tex[i:])
            name, i = m.group(1), i + len(m.group(0))
            if name in ACCENTS:
                arg, i = _group(tex, i)
                base = tex_to_text(arg)
                out.append(base + ACCENTS[name] if len(base) == 1 else base)
            elif name in ("frac", "dfrac", "tfrac"):
                num, i = _group(tex, i)
                den, i = _group(tex, i)
                out.append(f"{tex_to_text(num)}/{tex_to_text(den)}")
            elif name in SYMBOLS:
                out.append(SYMBOLS[name])
            elif name not in DROP:
                out.append(name)
        elif c in "^_":
            arg, i = _group(tex, i + 1)
            out.append(_script(tex_to_text(arg), SUP if c == "^" else SUB, c))
        elif c in "{}":
            i += 1
        else:
            out.append(c)
            i += 1
    return re.sub(r"\s+", " ", "".join(out)).strip()


def math_to_text(s: str) -> str:
    """Every $...$, $$...$$, \\(...\\) and \\[...\\] span of ``s`` replaced by plain text."""
    return _MATH.sub(lambda m: tex_to_text(next(g for g in m.groups() if g is not None)), s)


# ------------------------------------------------------------------ contents from the page
_HEADING = re.compile(r'<h([1-6])\b[^>]*\bid="([^"]+)"[^>]*>(.*?)</h\1>', re.S)
_PERMALINK = re.compile(r'<a\b[^>]*class="(?:anchor-link|headerlink)"[^>]*>.*?</a>', re.S)
_TAG = re.compile(r"<[^>]+>")


def heading_text(inner_html: str) -> str:
    """A heading's inner HTML as the plain text a reader should see in the contents."""
    text = html.unescape(_TAG.sub("", _PERMALINK.sub("", inner_html)))
    return re.sub(r"\s+", " ", math_to_text(text)).strip()


def headings_toc(page_html: str, max_level: int = 6) -> list[dict]:
    """Nested toc tokens (mkdocs ``get_toc`` format) read from the headings of ``page_html``."""
    root: list[dict] = []
    stack: list[dict] = []
    for level, hid, inner in _HEADING.findall(page_html):
        level = int(level)
        if level > max_level:
            continue
        token = {"level": level, "id": html.unescape(hid), "name": heading_text(inner),
                 "children": []}
        while stack and stack[-1]["level"] >= level:
            stack.pop()
        (stack[-1]["children"] if stack else root).append(token)
        stack.append(token)
    return root


# ------------------------------------------------------------------ contents and search
def plain_toc_titles(items) -> None:
    """Math in the titles of a contents panel (mkdocs AnchorLinks) as plain text, in place."""
    for item in items:
        item.title = math_to_text(item.title)
        plain_toc_titles(item.children)


_CODE_SPAN = re.compile(r"(<(code|pre)\b.*?</\2>)", re.S)


def _plain_search_text(s: str) -> str:
    """Math spans outside code as plain text (a `$` inside code is left alone)."""
    parts = _CODE_SPAN.split(s)
    # split() yields [text, whole match, tag name, text, ...]: convert the text pieces only
    return "".join(math_to_text(p) if i % 3 == 0 else p for i, p in enumerate(parts)
                   if i % 3 != 2)


def plain_search_index(path: Path) -> None:
    """Rewrite the search index (search/search_index.json) with its math as plain text."""
    if not path.is_file():
        return
    index = json.loads(path.read_text(encoding="utf-8"))
    for doc in index.get("docs", []):
        for key in ("title", "text"):
            if doc.get(key):
                doc[key] = _plain_search_text(doc[key])
        if doc.get("title"):                    # a notebook heading keeps its ¶ anchor link
            doc["title"] = doc["title"].rstrip("¶ ")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
