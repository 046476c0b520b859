"""Griffe extension for the API reference: docstrings written as plain text render as written.

The package's docstrings are plain text meant to be read in the source: labelled formula blocks
(``Forward:`` followed by indented numbered lines), aligned shape lines
(``Shapes:  x (..., D)   y (..., D)``), and products such as ``H*W``. Read as Markdown by the
Google-style parser, a label with an indented block becomes an admonition box, aligned lines are
joined into one paragraph, and a pair of ``*`` turns the text between them into emphasis.

Before the docstring is parsed, ``fence_docstring`` rewrites it:

* a label line (``Forward:``, ``Backward, in exact reverse order:``) followed by an indented
  block becomes the label in bold and the block in a ``text`` code block;
* a paragraph that starts with a label and text on the same line (``Shapes: x (..., K)``), or
  that holds aligned columns, or any other indented block, becomes a ``text`` code block;
* in the remaining prose a bare ``*`` is escaped, so ``H*W`` stays ``H*W``;
* Google sections (``Args:``, ``Returns:``, ``Raises:``, ...) and the admonitions the Google
  style defines (``Note:``, ``Warning:``, ...) are left to the parser.

mkdocs.yml loads it with ``extensions: [docs/_hooks/api_docstrings.py]`` under mkdocstrings'
python handler options.
"""
from __future__ import annotations

import re

import griffe

# Headings the Google-style parser understands: left alone.
PARSER_SECTIONS = {
    "args", "arguments", "params", "parameters", "keyword args", "keyword arguments",
    "other args", "other arguments", "other params", "other parameters", "raises", "exceptions",
    "returns", "yields", "receives", "examples", "example", "attributes", "functions",
    "methods", "classes", "modules", "warns", "warnings", "type aliases", "type parameters",
    "note", "notes", "warning", "see also", "references", "todo", "tip", "important", "danger",
}

_LABEL = re.compile(r"^(?P<label>[A-Za-z][\w ,()'/+-]*?):(?P<rest>\s.*)?$")
_ALIGNED = re.compile(r"\S {3,}\S")             # columns lined up with runs of spaces
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_FENCE = "```"


def _label(line: str) -> tuple[str, str] | None:
    """``(label, rest)`` for a non-parser label line ``Label: rest``, else None."""
    m = _LABEL.match(line)
    if not m or m.group("label").strip().lower() in PARSER_SECTIONS:
        return None
    return m.group("label"), (m.group("rest") or "").strip()


def _is_section(line: str) -> bool:
    m = _LABEL.match(line)
    return bool(m) and m.group("label").strip().lower() in PARSER_SECTIONS and not m.group("rest")


def _escape_prose(line: str) -> str:
    """Escape ``*`` outside code spans (``H*W`` must not open an emphasis)."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(line):
        out.append(line[last:m.start()].replace("*", r"\*"))
        out.append(m.group(0))
        last = m.end()
    out.append(line[last:].replace("*", r"\*"))
    return "".join(out)


def _fenced(lines: list[str]) -> list[str]:
    """The lines, dedented, in a ``text`` code block with a blank line on each side."""
    body = [ln.rstrip() for ln in lines]
    indent = min((len(ln) - len(ln.lstrip()) for ln in body if ln.strip()), default=0)
    return ["", _FENCE + "text", *(ln[indent:] for ln in body), _FENCE, ""]


def _indented(line: str) -> bool:
    return line.startswith((" ", "\t")) and bool(line.strip())


def fence_docstring(text: str) -> str:
    """Rewrite a plain-text docstring so that Markdown shows it as written (see the module)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(_FENCE):                    # an existing fence: copy it
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(_FENCE):
                j += 1
            out += lines[i:j + 1]
            i = j + 1
            continue
        if _is_section(line):                                   # Args:, Returns:, ...: the parser's
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or _indented(lines[j])):
                j += 1
            out += [line, *(_escape_prose(ln) for ln in lines[i + 1:j])]
            i = j
            continue
        if not line.strip():
            out.append(line)
            i += 1
            continue
        if _indented(line):                                     # a bare indented block
            j = i
            while j < len(lines) and (_indented(lines[j]) or
                                      (not lines[j].strip() and j + 1 < len(lines)
                                       and _indented(lines[j + 1]))):
                j += 1
            out += _fenced(lines[i:j])
            i = j
            continue
        label = _label(line) if i > 0 else None                 # line 0 is the summary
        if label and not label[1] and i + 1 < len(lines) and _indented(lines[i + 1]):
            out.append(f"**{label[0]}:**")                      # "Forward:" + indented block
            out.append("")
            i += 1
            continue
        j = i                                                   # a paragraph: up to a blank line
        while (j < len(lines) and lines[j].strip() and not _indented(lines[j])
               and not _is_section(lines[j])):
            j += 1
        j = max(j, i + 1)
        para = lines[i:j]
        if para[-1].rstrip().endswith("::"):                    # reST's literal-block marker
            para[-1] = para[-1].rstrip()[:-1]
        if label or any(_ALIGNED.search(ln) for ln in para):
            out += _fenced(para)
        else:
            out += [_escape_prose(ln) for ln in para]
        i = j
    return "\n".join(out)


class PlainTextDocstrings(griffe.Extension):
    """Apply :func:`fence_docstring` to every docstring before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_docstring(obj.docstring.value)
