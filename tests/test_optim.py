"""Optimisers, LR schedule, gradient clipping and EMA against PyTorch and closed forms (float64)."""
import math

import numpy as np
import pytest
import torch

from vca_ref.backend import available_devices, to_device, to_numpy
from vca_ref.experiments.data import iterate_batches, load_digits_dataset, num_batches
from vca_ref.nn.module import Module
from vca_ref.ops import cross_entropy_backward, cross_entropy_forward, linear_backward, linear_forward
from vca_ref.train import (EMA, SGD, AdamW, CosineWarmupSchedule, clip_grad_norm, cosine_warmup_lr,
                           default_no_decay, grad_norm)


class Leaf(Module):
    def __init__(self, rng, dtype=np.float64):
        super().__init__(dtype)
        self.params = {"e_pos": rng.normal(size=(1, 2, 3)).astype(dtype),
                       "norm.weight": rng.normal(size=(3,)).astype(dtype)}


class Tiny(Module):
    """Two own parameters and a child: enough to exercise names, groups and shapes."""

    def __init__(self, seed=0, dtype=np.float64):
        super().__init__(dtype)
        rng = np.random.default_rng(seed)
        self.params = {"weight": rng.normal(size=(4, 3)).astype(dtype),
                       "bias": rng.normal(size=(4,)).astype(dtype)}
        self.children = {"sub": Leaf(rng, dtype)}


def random_grads(module, rng):
    for prefix, mod in module.named_modules():
        mod.grads = {k: rng.normal(size=p.shape) for k, p in mod.params.items()}


def torch_params(module):
    return {n: torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True)
            for n, p in module.named_parameters()}


def run_against_torch(make_ours, make_theirs, steps=6, no_decay=None, seed=1):
    model = Tiny()
    tp = torch_params(model)
    if no_decay is None:
        groups = [{"params": list(tp.values())}]
    else:
        groups = [{"params": [p for n, p in tp.items() if not no_decay(n, p)]},
                  {"params": [p for n, p in tp.items() if no_decay(n, p)], "weight_decay": 0.0}]
    ours, theirs = make_ours(model), make_theirs(groups)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        lr = 0.05 * (1.0 + 0.3 * math.sin(step))                   # a changing LR, like a schedule
        ours.lr = lr
        for g in theirs.param_groups:
            g["lr"] = lr
        random_grads(model, rng)
        for n, g in model.named_grads().items():
            tp[n].grad = torch.tensor(g)
        ours.step()
        theirs.step()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p, tp[n].detach().numpy(), rtol=1e-12, atol=1e-13, err_msg=n)
    return model, ours


@pytest.mark.parametrize("wd, betas, eps, no_decay", [
    (0.0, (0.9, 0.999), 1e-8, None),
    (0.1, (0.9, 0.999), 1e-8, None),
    (0.05, (0.8, 0.95), 1e-6, default_no_decay),
])
def test_adamw_matches_torch(wd, betas, eps, no_decay):
    run_against_torch(lambda m: AdamW(m, lr=0.05, betas=betas, eps=eps, weight_decay=wd, no_decay=no_decay),
                      lambda g: torch.optim.AdamW(g, lr=0.05, betas=betas, eps=eps, weight_decay=wd),
                      no_decay=no_decay)


@pytest.mark.parametrize("momentum, dampening, wd, nesterov, no_decay", [
    (0.0, 0.0, 0.0, False, None),
    (0.9, 0.0, 0.0, False, None),
    (0.9, 0.1, 1e-2, False, None),
    (0.9, 0.0, 1e-2, True, None),
    (0.5, 0.0, 1e-1, True, default_no_decay),
])
def test_sgd_matches_torch(momentum, dampening, wd, nesterov, no_decay):
    run_against_torch(
        lambda m: SGD(m, lr=0.05, momentum=momentum, dampening=dampening, weight_decay=wd,
                      nesterov=nesterov, no_decay=no_decay),
        lambda g: torch.optim.SGD(g, lr=0.05, momentum=momentum, dampening=dampening, weight_decay=wd,
                                  nesterov=nesterov),
        no_decay=no_decay)


def test_updates_are_in_place_and_float32_stays_float32():
    model = Tiny(dtype=np.float32)
    before = {n: id(p) for n, p in model.named_parameters()}
    opt = AdamW(model, lr=1e-2)
    random_grads(model, np.random.default_rng(0))
    old = {n: p.copy() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        assert id(p) == before[n], n
        assert p.dtype == np.float32, n
        assert not np.array_equal(p, old[n]), n


@pytest.mark.parametrize("make", [
    lambda m: AdamW(m, lr=0.03, weight_decay=0.1),
    lambda m: SGD(m, lr=0.03, momentum=0.9, nesterov=True, weight_decay=0.01),
])
def test_state_dict_resume_is_exact(make):
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    a = Tiny()
    opt_a = make(a)
    for _ in range(3):
        random_grads(a, rng_a); opt_a.step()
    saved_model = {n: p.copy() for n, p in a.state_dict().items()}
    saved_opt = opt_a.state_dict()
    for _ in range(3):
        random_grads(a, rng_a); opt_a.step()
    # the snapshot must not have moved with the live state
    assert int(saved_opt["step"]) == 3 and opt_a.step_count == 6

    b = Tiny(seed=99)                                            # different init, then overwritten
    b.load_state_dict(saved_model)
    opt_b = make(b)
    opt_b.load_state_dict(saved_opt)
    for _ in range(3):
        random_grads(b, rng_b)
    for _ in range(3):
        random_grads(b, rng_b); opt_b.step()
    for n, p in a.named_parameters():
        np.testing.assert_array_equal(p, dict(b.named_parameters())[n], err_msg=n)


def test_load_bad_state_leaves_optimizer_unchanged():
    m = Tiny()
    opt = AdamW(m, lr=0.1)
    random_grads(m, np.random.default_rng(0)); opt.step()
    good = opt.state_dict()
    bad = dict(good)
    bad["exp_avg.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"exp_avg.weight.*shape \(3, 4\).*expected \(4, 3\)"):
        opt.load_state_dict(bad)
    partial = {k: v for k, v in good.items() if k != "exp_avg_sq.bias"}
    with pytest.raises(ValueError, match="missing for parameters"):
        opt.load_state_dict(partial)
    with pytest.raises(ValueError, match="unexpected optimiser state entry 'momentum_buffer.bias'"):
        opt.load_state_dict({**good, "momentum_buffer.bias": np.zeros(4)})
    assert opt.step_count == 1
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, good[k])


def test_errors_are_clear():
    m = Tiny()
    with pytest.raises(RuntimeError, match="call backward"):
        AdamW(m).step()
    with pytest.raises(ValueError, match="nesterov"):
        SGD(m, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        AdamW(m, betas=(1.0, 0.9))
    m.params["weight"].flags.writeable = False
    random_grads(m, np.random.default_rng(0))
    with pytest.raises(ValueError, match="read-only"):
        SGD(m, lr=0.1).step()


# --------------------------------------------------------------------------- schedule
def test_cosine_warmup_closed_form():
    s = CosineWarmupSchedule(base_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)                          # half way: (1 + 0.1) / 2
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    lrs = [s(k) for k in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))             # non-increasing after warmup
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_warmup_lr(0, 1.0, total_steps=5, warmup_steps=6)


def test_cosine_part_matches_torch_cosine_annealing():
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.3)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=40, eta_min=0.01)
    for k in range(41):
        assert cosine_warmup_lr(k, 0.3, total_steps=40, min_lr=0.01) == pytest.approx(
            topt.param_groups[0]["lr"], rel=1e-10, abs=1e-12), k
        topt.step(); tsched.step()


# --------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_matches_torch(norm_type, max_norm):
    m = Tiny()
    random_grads(m, np.random.default_rng(3))
    grads = m.named_grads()
    tp = torch_params(m)
    for n, g in grads.items():
        tp[n].grad = torch.tensor(g)
    theirs = torch.nn.utils.clip_grad_norm_(list(tp.values()), max_norm, norm_type=norm_type)
    ours = clip_grad_norm(m, max_norm, norm_type=norm_type)
    assert ours == pytest.approx(float(theirs), rel=1e-12)
    for n, g in m.named_grads().items():
        np.testing.assert_allclose(g, tp[n].grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=n)
    if max_norm < ours:
        assert grad_norm(m, norm_type) == pytest.approx(max_norm, rel=1e-5)


def test_clip_does_not_write_into_shared_arrays():
    shared = np.ones(4)
    grads = {"a": shared, "b": shared}
    total = clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(math.sqrt(8))
    np.testing.assert_array_equal(shared, np.ones(4))              # caller's array untouched
    np.testing.assert_allclose(grads["a"], np.ones(4) / (math.sqrt(8) + 1e-6))


def test_clip_nonfinite():
    grads = {"a": np.array([1.0, np.nan])}
    with pytest.raises(RuntimeError, match="nan"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite=True)


# --------------------------------------------------------------------------- EMA
def test_ema_closed_form_and_apply():
    m = Tiny()
    ema = EMA(m, decay=0.9)
    theta0 = {n: p.copy() for n, p in m.named_parameters()}
    delta = {n: np.random.default_rng(1).normal(size=p.shape) for n, p in m.named_parameters()}
    for n, p in m.named_parameters():
        p += delta[n]                                               # θ jumps once, then stays
    k = 5
    for _ in range(k):
        ema.update(m)
    for n, p in m.named_parameters():                               # ema = θ1 - 0.9^k (θ1 - θ0)
        np.testing.assert_allclose(ema.shadow[n], p - 0.9 ** k * delta[n], rtol=1e-12, err_msg=n)
        np.testing.assert_allclose(ema.shadow[n], theta0[n] + (1 - 0.9 ** k) * delta[n], rtol=1e-12)
    live = {n: p.copy() for n, p in m.named_parameters()}
    with ema.applied_to(m):
        for n, p in m.named_parameters():
            np.testing.assert_array_equal(p, ema.shadow[n])
    for n, p in m.named_parameters():
        np.testing.assert_array_equal(p, live[n])
    other = EMA(Tiny(seed=5), decay=0.9)
    other.load_state_dict(ema.state_dict())
    for n in ema.shadow:
        np.testing.assert_array_equal(other.shadow[n], ema.shadow[n])


def test_ema_rejects_wrong_state():
    ema = EMA(Tiny())
    bad = ema.state_dict()
    bad["bias"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"'bias' has shape \(5,\), expected \(4,\)"):
        ema.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing"):
        ema.load_state_dict({})


# --------------------------------------------------------------------------- every backend
@pytest.mark.parametrize("device", available_devices())
def test_same_numbers_on_every_backend(device):
    """One body for NumPy and (when a GPU exists) CuPy: optimiser + clipping + EMA agree with CPU."""
    results = {}
    for dev in ("cpu", device):
        m = Tiny(dtype=np.float64).to(device=dev)
        opt, ema = AdamW(m, lr=0.05, weight_decay=0.1), EMA(m, decay=0.5)
        rng = np.random.default_rng(0)
        for _ in range(3):
            for _, mod in m.named_modules():
                mod.grads = {k: to_device(rng.normal(size=p.shape), dev) for k, p in mod.params.items()}
            clip_grad_norm(m, 1.0)
            opt.step()
            ema.update(m)
        results[dev] = ({n: to_numpy(p) for n, p in m.named_parameters()},
                        {n: to_numpy(s) for n, s in ema.shadow.items()})
    for a, b in zip(results["cpu"], results[device]):
        for n in a:
            np.testing.assert_allclose(b[n], a[n], rtol=1e-12, atol=1e-14, err_msg=n)


# --------------------------------------------------------------------------- it learns
class LinearClassifier(Module):
    """logits = flatten(x) W^T + b, built from the repo's linear op pair."""

    def __init__(self, din, k, seed=0):
        super().__init__(np.float32)
        rng = np.random.default_rng(seed)
        self.params = {"weight": (0.01 * rng.standard_normal((k, din))).astype(np.float32),
                       "bias": np.zeros(k, np.float32)}

    def forward(self, x):
        y, self.cache = linear_forward(x.reshape(x.shape[0], -1), self.params["weight"], self.params["bias"])
        return y

    def backward(self, dy):
        _, dw, db = linear_backward(dy, self.cache)
        self.grads = {"weight": dw, "bias": db}


@pytest.mark.parametrize("opt_name", ["adamw", "sgd"])
def test_optimisers_train_a_classifier_on_digits(opt_name):
    data = load_digits_dataset(seed=0)
    m = LinearClassifier(64, 10)
    opt = AdamW(m, lr=1e-2, weight_decay=1e-4, no_decay=default_no_decay) if opt_name == "adamw" \
        else SGD(m, lr=0.1, momentum=0.9, nesterov=True)
    epochs, bs = 5, 64
    sched = CosineWarmupSchedule(opt.lr, total_steps=epochs * num_batches(len(data.x_train), bs), warmup_steps=10)
    rng, step, losses = np.random.default_rng(0), 0, []
    for _ in range(epochs):
        for xb, yb in iterate_batches(data.x_train, data.y_train, bs, rng):
            loss, cache = cross_entropy_forward(m(xb), yb)
            m.backward(cross_entropy_backward(1.0, cache))
            clip_grad_norm(m, 5.0)
            sched.set_lr(opt, step)
            opt.step()
            losses.append(float(loss)); step += 1
    acc = float((m(data.x_test).argmax(axis=1) == data.y_test).mean())
    assert np.mean(losses[:5]) > 2.0 and np.mean(losses[-10:]) < 0.4, (losses[:5], losses[-10:])
    assert acc > 0.9, acc                                               # chance is 0.1
