"""Execute the tutorial notebooks for the site, once per content.

The notebooks are stored without outputs; the site shows them executed.  Executing all of them
takes minutes, so each executed copy is kept in a cache keyed by everything that can change
its outputs:

    key = sha256( notebook bytes
                  + every vca_ref/**/*.py (path and bytes)
                  + the plotting rc below + the Python version )

An unchanged notebook is therefore not executed again on the next ``mkdocs build`` or on each
``mkdocs serve`` reload, while an edit of the notebook or of any package source re-executes it.
The copy lives at ``.cache/notebooks/<key>/<name>.ipynb`` (git-ignored); older copies of the
same notebook are removed when a new one is written.  Only a notebook that ran to the end
without an error is cached, and it is written atomically (temporary file, then rename).

The kernel runs with the notebooks folder as working directory, the repository first on
``PYTHONPATH`` and ``MATPLOTLIBRC`` pointing at the rc below: figures default to 7.5 x 4 inches
at 100 dpi, so they fit the content column (a notebook that asks for a wider figure is caught
by tests/test_notebooks.py).

Used by the mkdocs hook ``vca_docs.py`` and by tests/test_notebooks.py (which therefore
shares the cache with the docs build: CI executes each notebook once).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]          # the repository root
CELL_TIMEOUT_S = 600

# Figures at most ~8 inches wide on a ~740 px column; tables are printed within ~85 columns.
MATPLOTLIBRC = """\
figure.figsize: 7.5, 4.0
figure.dpi: 100
savefig.dpi: 100
font.size: 10
"""
MAX_FIGURE_INCHES = 8.0
FIGURE_DPI = 100


def cache_dir() -> Path:
    return Path(os.environ.get("VCA_DOCS_NB_CACHE", ROOT / ".cache/notebooks"))


def cache_key(nb: Path) -> str:
    """sha256 of the notebook, the package sources, the rc and the Python version."""
    h = hashlib.sha256()
    h.update(nb.read_bytes())
    for py in sorted((ROOT / "vca_ref").rglob("*.py")):
        h.update(py.relative_to(ROOT).as_posix().encode())
        h.update(py.read_bytes())
    h.update(MATPLOTLIBRC.encode())
    h.update(sys.version.encode())
    return h.hexdigest()[:20]


def cached_copy(nb: Path) -> Path:
    """Where the executed copy of ``nb`` lives (whether or not it exists yet)."""
    return cache_dir() / cache_key(nb) / nb.name


def _kernel_env(rc_dir: Path) -> dict:
    # the inline backend even where MPLBACKEND=Agg is set for the tests (CI), so plots show
    env = dict(os.environ, MATPLOTLIBRC=str(rc_dir),
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def execute(nb: Path, timeout: int = CELL_TIMEOUT_S):
    """Run every cell of ``nb`` in a fresh python3 kernel; returns the executed NotebookNode.

    Raises nbclient's CellExecutionError (with the failing cell's traceback) on an error.
    """
    import nbclient
    import nbformat

    node = nbformat.read(nb, as_version=4)
    with tempfile.TemporaryDirectory(prefix="vca-mplrc-") as rc_dir:
        (Path(rc_dir) / "matplotlibrc").write_text(MATPLOTLIBRC)
        client = nbclient.NotebookClient(
            node, timeout=timeout, kernel_name="python3",
            resources={"metadata": {"path": str(nb.parent)}})
        client.execute(env=_kernel_env(Path(rc_dir)))
    return node


def executed(nb: Path) -> Path:
    """The executed copy of ``nb``: from the cache, or executed now and cached."""
    target = cached_copy(nb)
    if target.is_file():
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{nb.stem}.lock", "w") as lock:   # one run per notebook at a time
        fcntl.flock(lock, fcntl.LOCK_EX)                       # (pytest -n 2: docs and notebooks)
        if target.is_file():
            return target
        node = execute(nb)
        _store(node, target)
    for old in cache_dir().glob(f"*/{nb.name}"):          # evict older copies of this notebook
        if old.parent != target.parent:
            shutil.rmtree(old.parent, ignore_errors=True)
    return target


def _store(node, target: Path) -> None:
    """Write the executed notebook atomically: a temporary file, then a rename."""
    import nbformat

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        nbformat.write(node, f)
    os.replace(tmp, target)


def executed_all(notebooks: list[Path], jobs: int | None = None) -> dict[Path, Path | Exception]:
    """Execute (or fetch from the cache) several notebooks, ``jobs`` at a time.

    Returns {notebook: executed copy} with the exception in place of the copy for a notebook
    that failed, so one broken notebook does not hide the others.
    """
    jobs = jobs or int(os.environ.get("VCA_DOCS_NB_JOBS", "2"))

    def run(nb: Path):
        try:
            return executed(nb)
        except Exception as e:              # reported by the caller, per notebook
            return e

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(zip(notebooks, pool.map(run, notebooks)))
