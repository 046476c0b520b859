"""The tutorials in notebooks/: every one runs top to bottom, and none is committed with outputs.

Each notebook asserts its own results (gradients against the library and finite differences,
MAC counts, memory growth, ...), so executing it is a test of the math as well as of the prose.
What it prints and draws is what the site shows, so its outputs must also fit the page:
figures at most 8 inches wide, printed lines at most 85 characters.

The execution goes through the docs build's cache (docs/_hooks/notebook_cache.py): a notebook
whose content and package sources were already executed successfully by ``mkdocs build`` (or
by an earlier run of this test) is read back instead of run again, so CI runs each notebook
once.  ``VCA_DOCS_NB_CACHE=$(mktemp -d) pytest tests/test_notebooks.py`` forces a fresh run.
The execution tests are ``slow``; the storage test is instant and always runs.

    pytest tests/test_notebooks.py                 # everything
    pytest tests/test_notebooks.py -m "not slow"   # only the stored-without-outputs check
"""
from __future__ import annotations

import base64
import json
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))
MAX_LINE = 85

sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
import notebook_cache  # noqa: E402  (the docs build's executor, not an installed module)


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    """Generated files stay out of git: no outputs, no execution counts, the python3 kernel."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} have outputs or execution counts; clear them "
                       f"(jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)})")
    assert nb.get("metadata", {}).get("kernelspec", {}).get("name") == "python3", \
        f"{path.name}: metadata.kernelspec.name must be 'python3'"


def png_width(b64: str) -> int:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">I", data[16:20])[0]


def output_problems(cells: list[dict]) -> list[str]:
    """Figures wider than the content column and printed lines wider than ~85 columns.

    A cell that prints library source (``inspect.getsource``) shows code, whose lines are the
    package's own; that listing is exempt from the line limit (not from the figure limit).
    """
    max_px = notebook_cache.MAX_FIGURE_INCHES * notebook_cache.FIGURE_DPI
    problems = []
    for i, cell in enumerate(cells):
        source = "".join(cell.get("source", ""))
        listing = "getsource(" in source
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data and png_width(data["image/png"]) > max_px:
                problems.append(f"cell {i}: a figure {png_width(data['image/png'])} px wide "
                                f"(> {notebook_cache.MAX_FIGURE_INCHES:g} in at "
                                f"{notebook_cache.FIGURE_DPI} dpi)")
            text = out.get("text") if out.get("output_type") == "stream" else data.get("text/plain")
            text = "".join(text) if isinstance(text, list) else (text or "")
            wide = [line for line in text.splitlines() if len(line) > MAX_LINE]
            if wide and "image/png" not in data and not listing:
                problems.append(f"cell {i}: printed line of {len(wide[0])} > {MAX_LINE} "
                                f"characters: {wide[0][:60]}...")
    return problems


def test_output_problems_are_found():
    """The width checks flag a too-wide figure and a too-long line, and pass fitting ones."""
    def png(width):
        return base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" +
                                struct.pack(">II", width, 10)).decode()
    ok = [{"outputs": [{"output_type": "display_data", "data": {"image/png": png(800)}},
                       {"output_type": "stream", "text": "x" * MAX_LINE + "\n"}]}]
    bad = [{"outputs": [{"output_type": "display_data", "data": {"image/png": png(1500)}},
                        {"output_type": "stream", "text": ["short\n", "y" * 120 + "\n"]},
                        {"output_type": "execute_result", "data": {"text/plain": "z" * 90}}]}]
    assert output_problems(ok) == []
    assert len(output_problems(bad)) == 3
    listing = [{"source": "print(inspect.getsource(f))",
                "outputs": [{"output_type": "stream", "text": "    " + "w" * 95 + "\n"}]}]
    assert output_problems(listing) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_fits_the_page(path: Path):
    """Run every cell in a fresh python3 kernel (or read the cached run); the outputs fit."""
    pytest.importorskip("nbclient")
    executed = notebook_cache.executed(path)   # raises CellExecutionError on a failing cell
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    errors = [i for i, c in enumerate(cells)
              if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert not errors, f"{path.name}: cells {errors} raised"
    problems = output_problems(cells)
    assert not problems, f"{path.name}: outputs wider than the page:\n" + "\n".join(problems)
