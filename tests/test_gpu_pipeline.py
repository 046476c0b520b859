"""The GPU path end to end, on a device where one answers and on the CuPy-strict stand-in.

Each body runs on ``device_backend`` (tests/conftest.py): optimisers, a training epoch of the ViT
and the DiT, every sampler, the evaluation helpers, checkpoints written from and read onto the
device, and a host array meeting a device model.  Against the host: every result equals the
NumPy run of the same inputs (deterministic paths), or, for the ancestral samplers, the NumPy run
fed the same numbers the device drew (the stand-in's device generator is NumPy's).  On the
stand-in the crossings are counted: a training step makes ONE device->host read and copies only
its batch (images, labels) to the device; a sampling step makes none of either; no two-operand
``einsum`` runs on a device array.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import stand_in_counts
from helpers import DIT_TINY, TOL, VIT_TINY, compare, random_state, randomised
from vca_ref.backend import device_of, to_device, to_numpy
from vca_ref.diffusion import GaussianDiffusion, ddim_sample_loop, flow_sample, guided_model
from vca_ref.io.checkpoint import load_into, save_module
from vca_ref.models import DiTConfig, TinyDiT, TinyViT, ViTConfig
from vca_ref.nn.layers import Mlp
from vca_ref.train import EMA, SGD, AdamW, clip_grad_norm

OPTIMISERS = {"adamw": lambda m: AdamW(m, lr=1e-2, weight_decay=0.1),
              "sgd": lambda m: SGD(m, lr=1e-2, momentum=0.9, weight_decay=0.1),
              "sgd_nesterov": lambda m: SGD(m, lr=1e-2, momentum=0.9, nesterov=True)}


def same(ours, ref, tol=TOL[np.float64], dtype=np.float64) -> None:
    compare({k: (to_numpy(ours[k]), to_numpy(ref[k])) for k in ref}, tol, dtype)


def _mlp():
    """An MLP with random parameters: every gradient is a real signal (an attention layer's
    key bias has a zero gradient made of round-off, which Adam would blow up to lr-size steps)."""
    m = Mlp(8, 16, seed=0, dtype=np.float64)
    m.load_state_dict(random_state(m, 3))
    return m


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_optimiser_and_ema(device_backend, name):
    host, dev = _mlp(), _mlp().to(device=device_backend)
    opts, emas = [OPTIMISERS[name](m) for m in (host, dev)], [EMA(m, 0.9) for m in (host, dev)]
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((2, 7, 8)), rng.standard_normal((2, 7, 8))
    for _ in range(2):
        for m, opt, xx, dd in ((host, opts[0], x, dy),
                               (dev, opts[1], to_device(x, "cuda"), to_device(dy, "cuda"))):
            m.forward(xx)
            m.backward(dd)
            opt.step()
        for m, ema in zip((host, dev), emas):
            ema.update(m)
    assert all(device_of(p) == "cuda" for p in dev.state_dict().values())
    same(dev.state_dict(), host.state_dict())
    same(emas[1].shadow, emas[0].shadow)


def test_clip_on_the_device(device_backend):
    """Clipping without a read: the total stays on the device, the scaled gradients equal the
    host's, and a non-finite total leaves the gradients as they are."""
    rng = np.random.default_rng(6)
    host = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    dev = {k: to_device(v, "cuda") for k, v in host.items()}
    counts = stand_in_counts()
    before = counts.syncs if counts is not None else None
    total = clip_grad_norm(dev, 0.5)
    assert device_of(total) == "cuda" and (counts is None or counts.syncs == before)
    assert float(total) == pytest.approx(clip_grad_norm(host, 0.5), rel=1e-12)
    same(dev, host)
    bad = {"a": to_device(np.array([1.0, np.inf]), "cuda")}
    assert not np.isfinite(float(clip_grad_norm(bad, 0.5)))
    np.testing.assert_array_equal(to_numpy(bad["a"]), [1.0, np.inf])


def _per_step_counts(monkeypatch, counts):
    """Counter snapshots after each optimiser step (the end of a training step)."""
    snaps = []
    real = AdamW.step

    def step(self):
        real(self)
        snaps.append((counts.syncs, counts.h2d))
    monkeypatch.setattr(AdamW, "step", step)
    return snaps


@pytest.mark.parametrize("kind", ["vit", "dit"])
def test_training_epoch(device_backend, kind, tmp_path, monkeypatch):
    from vca_ref.experiments.classify import ViTTrainConfig, train_vit
    from vca_ref.experiments.generate import DiTTrainConfig, train_dit
    counts, snaps = stand_in_counts(), []
    if kind == "vit":
        cfg = dict(dataset="digits", model="tiny-digits", batch_size=256, augment_shift=0,
                   progress=False, epochs=1, model_overrides=dict(depth=1))
        host = train_vit(ViTTrainConfig(out_dir=str(tmp_path / "h"), **cfg))
        if counts is not None:
            snaps = _per_step_counts(monkeypatch, counts)
        dev = train_vit(ViTTrainConfig(device="cuda", out_dir=str(tmp_path / "d"), **cfg))
        assert (dev["history"][0]["train_loss"]
                == pytest.approx(host["history"][0]["train_loss"], rel=1e-4))
        assert dev["test_acc"] == pytest.approx(host["test_acc"], abs=0.02)
    else:
        cfg = dict(model_overrides=dict(depth=1, dim=32, num_heads=2), epochs=1, batch_size=512,
                   progress=False)
        if counts is not None:
            snaps = _per_step_counts(monkeypatch, counts)
        dev = train_dit(DiTTrainConfig(device="cuda", out_dir=str(tmp_path / "d"), **cfg))
        assert np.isfinite(dev["train_loss"]) and np.isfinite(dev["val_loss"])
    if counts is not None:
        per_step = {(b[0] - a[0], b[1] - a[1]) for a, b in zip(snaps, snaps[1:])}
        assert per_step == {(1, 2)}, per_step          # one read; the images and labels copied in
        assert counts.einsum2 == []


def _tiny_dit():
    model = randomised(TinyDiT(DiTConfig(**DIT_TINY, dtype="float64"), seed=0, zero_init=False), 1)
    return guided_model(lambda x, t, y: model.forward(x, t, y), 2.0, DIT_TINY["num_classes"]), model


SAMPLERS = {
    "ddim": lambda net, d, x, y, rng: ddim_sample_loop(d, net, None, y, rng, x, num_steps=4),
    "ddim_eta": lambda net, d, x, y, rng: ddim_sample_loop(d, net, x.shape, y, rng, None,
                                                           num_steps=4, eta=0.5,
                                                           dtype=np.float64, device=device_of(x)),
    "ddpm": lambda net, d, x, y, rng: d.p_sample_loop(net, x.shape, y, rng, None, num_steps=4,
                                                      clip_range=(-1, 1), dtype=np.float64,
                                                      device=device_of(x)),
    "euler": lambda net, d, x, y, rng: flow_sample(net, y=y, x0=x, num_steps=3, method="euler"),
    "heun": lambda net, d, x, y, rng: flow_sample(net, y=y, x0=x, num_steps=3, method="heun"),
}
STOCHASTIC = {"ddim_eta", "ddpm"}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler(device_backend, sampler):
    net, model = _tiny_dit()
    d = GaussianDiffusion(50, "linear")
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6))
    y = np.array([0, 2])
    host_rng = np.random.default_rng(7)
    if sampler in STOCHASTIC:          # the numbers the device draws: its generator's seed
        host_rng = np.random.default_rng(np.random.default_rng(7).integers(2 ** 63))
    ref = SAMPLERS[sampler](net, d, x, y, host_rng)
    model.to(device="cuda")
    xd, yd = to_device(x, "cuda"), to_device(y, "cuda")
    net(xd, to_device(np.array([1, 1]), "cuda"), yd)   # constants a layer copies once, then caches
    counts = stand_in_counts()
    before = (counts.syncs, counts.h2d) if counts is not None else None
    out = SAMPLERS[sampler](net, d, xd, yd, np.random.default_rng(7))
    if counts is not None:
        assert (counts.syncs, counts.h2d) == before, "a sampling step crossed host/device"
    assert device_of(out) == "cuda" and out.shape == x.shape
    if counts is not None or sampler not in STOCHASTIC:
        same({"x": out}, {"x": ref})
    else:                               # a real device draws other numbers than NumPy
        assert np.isfinite(to_numpy(out)).all()


def test_evaluation_takes_device_arrays(device_backend):
    from vca_ref.experiments.evaluation import (classifier_accuracy_per_class, classifier_features,
                                                frechet_distance)
    vit = randomised(TinyViT(ViTConfig(**VIT_TINY, dtype="float64"), seed=0), 2)
    images = np.random.default_rng(3).standard_normal((12, 2, 6, 6))
    labels = np.arange(12) % 3
    f_host = classifier_features(vit, images)
    acc_host = classifier_accuracy_per_class(vit, images, labels)
    vit.to(device="cuda")
    f_dev = classifier_features(vit, to_device(images, "cuda"), device="cuda")
    acc_dev = classifier_accuracy_per_class(vit, to_device(images, "cuda"), to_device(labels, "cuda"),
                                            device="cuda")
    same({"features": f_dev}, {"features": f_host})
    assert acc_dev["per_class"] == acc_host["per_class"]
    fd = frechet_distance(to_device(f_host, "cuda"), to_device(f_host[::-1] + 0.1, "cuda"))
    assert fd == pytest.approx(frechet_distance(f_host, f_host[::-1] + 0.1), rel=1e-9)


def test_checkpoint_from_and_onto_the_device(device_backend, tmp_path):
    src = randomised(TinyDiT(DiTConfig(**DIT_TINY, dtype="float32"), seed=0, zero_init=False), 3)
    ref = {k: np.array(v) for k, v in src.state_dict().items()}
    src.to(device="cuda")
    save_module(src, str(tmp_path / "m.safetensors"))
    host = TinyDiT(DiTConfig(**DIT_TINY, dtype="float32"), seed=9)
    dev = TinyDiT(DiTConfig(**DIT_TINY, dtype="float32"), seed=9).to(device="cuda")
    for m in (host, dev):
        load_into(m, str(tmp_path / "m.safetensors"))
    assert all(device_of(v) == "cuda" for v in dev.state_dict().values())
    same(host.state_dict(), ref, 0.0, np.float32)
    same(dev.state_dict(), ref, 0.0, np.float32)


def test_host_array_meeting_a_device_model_names_both_devices(device_backend):
    vit = TinyViT(ViTConfig(**VIT_TINY), seed=0).to(device="cuda")
    with pytest.raises(TypeError, match=r"images is on 'cpu' but the model is on 'cuda'"):
        vit.forward(np.zeros((1, 2, 6, 6), np.float32))
    host = TinyViT(ViTConfig(**VIT_TINY), seed=0)
    with pytest.raises(TypeError, match=r"images is on 'cuda' but the model is on 'cpu'"):
        host.forward(to_device(np.zeros((1, 2, 6, 6), np.float32), "cuda"))
    layer = vit.blocks[0].attn                                 # a layer on its own, too
    with pytest.raises(TypeError, match=r"x is on 'cpu' but the model is on 'cuda'"):
        layer.forward(np.zeros((1, layer.config.num_tokens, layer.dim), np.float32))
