"""The API reference shows plain-text docstrings as written (docs/_hooks/api_docstrings.py)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_hooks"))
api_docstrings = pytest.importorskip("api_docstrings")   # needs griffe (the docs extra)
fence_docstring = api_docstrings.fence_docstring

import vca_ref  # noqa: E402


def test_label_with_indented_block_becomes_bold_label_and_code_block():
    out = fence_docstring("Summary.\n\nForward:\n    1. y = a * b      (B, N)\n    2. z = y\n")
    assert "**Forward:**" in out
    assert "```text\n1. y = a * b      (B, N)\n2. z = y\n```" in out
    assert "Forward:\n" not in out.replace("**Forward:**", "")


def test_label_line_and_aligned_columns_are_fenced():
    out = fence_docstring("Summary.\n\nShapes: x (B, H*W, C) -> y\n\nmu = mean(x)     xc = x - mu\n")
    assert "```text\nShapes: x (B, H*W, C) -> y\n```" in out
    assert "```text\nmu = mean(x)     xc = x - mu\n```" in out


def test_star_in_prose_is_escaped_outside_code_spans():
    out = fence_docstring("Pools (..., H*W, d) to (..., h'*w', d), see ``a*b``.")
    assert r"H\*W" in out and r"h'\*w'" in out and "``a*b``" in out


def test_google_sections_are_left_to_the_parser():
    text = "Summary.\n\nArgs:\n    x: input (B, N, C).\n\nReturns:\n    y (B, N, C).\n\nNote:\n    A note."
    assert fence_docstring(text) == text


def test_summary_line_is_never_fenced():
    out = fence_docstring("VisualContrastAttention: the module around the op pair.")
    assert "```" not in out


def test_every_package_docstring_fences_balance():
    """Every docstring of the package, rewritten, opens as many fences as it closes."""
    names = ["vca_ref"] + [m.name for m in pkgutil.walk_packages(vca_ref.__path__, "vca_ref.")
                           if not m.name.startswith(("vca_ref.pytorch", "vca_ref.__main__"))]
    seen = 0
    for name in names:
        mod = importlib.import_module(name)
        objs = [mod] + [o for _, o in inspect.getmembers(mod, callable)
                        if getattr(o, "__module__", None) == name]
        for obj in objs:
            doc = inspect.getdoc(obj)
            if doc:
                seen += 1
                out = fence_docstring(doc)
                assert out.count("```") % 2 == 0, name
    assert seen > 50
