"""Figures for run folders, drawn without pyplot.

The library never calls ``matplotlib.use`` or ``pyplot``: that would switch the backend of a
notebook that calls it (silently turning its inline plots off).  A bare
``matplotlib.figure.Figure`` renders to a file with no backend state at all.
"""
from __future__ import annotations

import os


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1):
    """``(fig, axes)`` of a stand-alone Figure; ``axes`` is a 2-D array (nrows, ncols)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Lay out and write ``fig`` as PNG (the folder is created); returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def read_png(path: str):
    """A PNG as an array (H, W, 3|4), for composing saved figures."""
    from matplotlib.image import imread
    return imread(path)
