"""The tutorials in notebooks/: every one runs top to bottom, and none is committed with outputs.

Each notebook asserts its own results (gradients against the library and finite differences,
MAC counts, memory growth, ...), so executing it is a test of the math as well as of the prose.
The execution tests are ``slow`` (a notebook takes up to a couple of minutes on 2 CPU cores);
the storage test is instant and always runs.

    pytest tests/test_notebooks.py                 # everything
    pytest tests/test_notebooks.py -m "not slow"   # only the stored-without-outputs check
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))
CELL_TIMEOUT_S = 600


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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path):
    """Run every cell in a fresh python3 kernel with the notebooks folder as working directory."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()        # raises CellExecutionError (with the failing cell's traceback) on error
