"""DiT training, sampling and evaluation: learning, NaN guard, exact resume, CFG, Fréchet distance.

Runs use a one-block DiT (C = 32) on the 8×8 digits so the whole file stays well under a minute
on 2 cores; the learning test asserts the loss falls clearly, not a sample quality.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vca_ref.io.checkpoint import load_file, load_training_state
from vca_ref.diffusion import GaussianDiffusion, ddim_sample_loop, flow_sample
from vca_ref.experiments.evaluation import (DigitClassifier, classifier_accuracy_per_class, classifier_features,
                                evaluate_dit_run, frechet_distance, frechet_distance_from_stats,
                                to_classifier_space)
from vca_ref.models import create_dit, create_vit
from vca_ref.experiments.sampling import class_labels, image_grid, sample_from_run, sample_images, save_grid
from vca_ref.experiments import generate
from vca_ref.experiments.generate import DiTTrainConfig, train_dit
from vca_ref.experiments.runner import CHECKPOINT, FINAL_MODEL, TrainingDiverged

TINY = dict(depth=1, dim=32, num_heads=2)


def tiny_cfg(out_dir, **kw) -> DiTTrainConfig:
    base = dict(model_overrides=dict(TINY), epochs=3, batch_size=128, lr=3e-3, warmup_epochs=0.5,
                ema_decay=0.9, out_dir=str(out_dir), progress=False)
    return DiTTrainConfig(**{**base, **kw})


def deterministic(history):
    """The per-epoch fields that must reproduce exactly (timings excluded)."""
    return [{k: r[k] for k in ("epoch", "step", "train_loss", "val_loss", "lr")} for r in history]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A 6-epoch VCA DDPM run on digits, shared by the learning, sampling and evaluation tests.

    DDPM, because its ε-loss starts at 1 (a zero output) and falls to ≈0.35 in 6 epochs; the
    flow loss has a high floor (the target x_0 − ε is irreducibly noisy), so its first-to-last
    ratio says less (flow training is exercised by the resume test)."""
    cfg = tiny_cfg(tmp_path_factory.mktemp("dit") / "run", epochs=6, objective="ddpm",
                   beta_schedule="cosine")
    return cfg, train_dit(cfg)


# --------------------------------------------------------------------------- training
def test_short_run_learns_and_writes_the_run_folder(short_run):
    cfg, summary = short_run
    hist = summary["history"]
    assert [r["epoch"] for r in hist] == list(range(1, 7))
    first, last = hist[0]["train_loss"], hist[-1]["train_loss"]
    assert last < 0.5 * first, f"loss did not drop clearly: {first:.3f} -> {last:.3f}"
    assert hist[-1]["val_loss"] < 0.5 * hist[0]["val_loss"]
    assert all(r["images_per_s"] > 0 for r in hist)
    for name in ("config.json", "metrics.jsonl", CHECKPOINT, FINAL_MODEL, "summary.json"):
        assert os.path.exists(os.path.join(cfg.out_dir, name)), name
    with open(os.path.join(cfg.out_dir, "metrics.jsonl")) as f:
        kinds = [json.loads(line)["kind"] for line in f]
    assert kinds == ["epoch"] * 6 + ["summary"]
    # model.safetensors holds the EMA weights, not the raw ones
    ts_model = create_dit(cfg.model, **cfg.model_overrides)
    from vca_ref.train.ema import EMA
    ema = EMA(ts_model)
    load_training_state(os.path.join(cfg.out_dir, CHECKPOINT), ts_model, ema=ema)
    final = load_file(os.path.join(cfg.out_dir, FINAL_MODEL))
    for k, v in ema.state_dict().items():
        np.testing.assert_array_equal(final[k], v)
    assert summary["params"] == ts_model.num_parameters() and summary["macs_per_image"] > 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path / "run")
    ckpt = os.path.join(cfg.out_dir, CHECKPOINT)
    real = generate.output_mse_loss

    def poisoned(out, target):                  # NaN once the epoch-1 checkpoint exists
        loss, dout = real(out, target)
        return (loss * np.nan if os.path.exists(ckpt) else loss), dout

    monkeypatch.setattr(generate, "output_mse_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 13 \(epoch 2\): the loss became nan.*"
                                               r"finite checkpoint \(epoch 1\) is kept"):
        train_dit(cfg)
    assert not os.path.exists(os.path.join(cfg.out_dir, FINAL_MODEL))
    model = create_dit(cfg.model, **cfg.model_overrides)
    state = load_training_state(ckpt, model)
    assert state.step == 12                                   # ceil(1437 / 128): one full epoch
    assert all(np.isfinite(v).all() for v in model.state_dict().values())


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, objective):
    full = train_dit(tiny_cfg(tmp_path / "full", objective=objective, epochs=2))
    stopped = train_dit(tiny_cfg(tmp_path / "split", objective=objective, epochs=2), stop_after=1)
    assert stopped == {"kind": "stopped", "epoch": 1, "step": 12}
    assert not os.path.exists(tmp_path / "split" / FINAL_MODEL)
    resumed = train_dit(tiny_cfg(tmp_path / "split", objective=objective, epochs=2), resume=True)
    assert deterministic(resumed["history"]) == deterministic(full["history"])
    for name in (FINAL_MODEL, CHECKPOINT):                  # EMA weights, and raw + optimiser + EMA
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(tmp_path / "split" / name))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")


def test_config_and_resume_errors(tmp_path):
    with pytest.raises(ValueError, match="objective must be one of"):
        DiTTrainConfig(objective="score")
    with pytest.raises(ValueError, match=r"model must be one of \['tiny-digits', 'tiny-mnist'\], got 'huge'"):
        DiTTrainConfig(model="huge")
    with pytest.raises(ValueError, match="expects 28x28 images but dataset 'digits' has 8x8"):
        train_dit(tiny_cfg(tmp_path / "a", model="tiny-mnist", model_overrides={}))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_dit(tiny_cfg(tmp_path / "b"), resume=True)


# --------------------------------------------------------------------------- sampling
def random_dit(seed=0):
    """A tiny DiT with non-zero adaLN / final layers so its output depends on x, t and y."""
    return create_dit("tiny-digits", seed=seed, zero_init=False, **TINY)


@pytest.mark.parametrize("objective,sampler", [("ddpm", "ddim"), ("ddpm", "ddpm"),
                                               ("flow", "euler"), ("flow", "heun")])
def test_sampling_shapes_range_and_seed_determinism(objective, sampler):
    model, cfg = random_dit(), DiTTrainConfig(objective=objective, num_timesteps=50)
    labels = class_labels(2, classes=[3, 7])
    np.testing.assert_array_equal(labels, [3, 3, 7, 7])
    a = sample_images(model, cfg, labels, np.random.default_rng(5), sampler, num_steps=4, cfg_scale=2.0)
    b = sample_images(model, cfg, labels, np.random.default_rng(5), sampler, num_steps=4, cfg_scale=2.0,
                      batch_size=3)                        # batching changes nothing
    c = sample_images(model, cfg, labels, np.random.default_rng(6), sampler, num_steps=4, cfg_scale=2.0)
    assert a.shape == (4, 1, 8, 8) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    if sampler != "ddpm":             # same noise; only float32 round-off of the batch size differs
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(a, sample_images(model, cfg, labels, np.random.default_rng(5),
                                                   sampler, num_steps=4, cfg_scale=2.0))
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="does not fit"):
        sample_images(model, cfg, labels, np.random.default_rng(0),
                      "heun" if objective == "ddpm" else "ddim")
    with pytest.raises(ValueError, match=r"values in \[0, 10\)"):
        sample_images(model, cfg, np.array([10]), np.random.default_rng(0), sampler)


def test_cfg_scale_one_is_the_conditional_model_and_zero_the_unconditional():
    model, cfg = random_dit(1), DiTTrainConfig(objective="ddpm", num_timesteps=50)
    diffusion, labels = GaussianDiffusion(50, cfg.beta_schedule), np.array([0, 4, 9])
    shape = (3, 1, 8, 8)

    def plain(y_fixed=None):
        return ddim_sample_loop(diffusion, lambda x, t, y: model.forward(x, t, y if y_fixed is None else y_fixed),
                                shape, y=labels, rng=np.random.default_rng(2), num_steps=5,
                                clip_range=(-1.0, 1.0))

    got1 = sample_images(model, cfg, labels, np.random.default_rng(2), "ddim", 5, cfg_scale=1.0)
    np.testing.assert_array_equal(got1, np.clip(plain(), -1, 1))
    got0 = sample_images(model, cfg, labels, np.random.default_rng(2), "ddim", 5, cfg_scale=0.0)
    np.testing.assert_allclose(got0, np.clip(plain(np.full(3, 10)), -1, 1), atol=1e-5)
    got3 = sample_images(model, cfg, labels, np.random.default_rng(2), "ddim", 5, cfg_scale=3.0)
    assert not np.allclose(got3, got1)
    # flow: guidance is applied to the velocity the same way
    fcfg = DiTTrainConfig(objective="flow")
    f1 = sample_images(model, fcfg, labels, np.random.default_rng(3), "euler", 3, cfg_scale=1.0)
    ref = flow_sample(lambda x, t, y: model.forward(x, t, y), shape, y=labels,
                      rng=np.random.default_rng(3), num_steps=3, method="euler")
    np.testing.assert_array_equal(f1, np.clip(ref, -1, 1))


def test_sample_from_run_and_ema_weights(short_run, tmp_path):
    cfg, _ = short_run
    grid = tmp_path / "g.png"
    out = sample_from_run(cfg.out_dir, num_per_class=2, classes=[1, 2, 3], seed=4, num_steps=5,
                          grid_path=str(grid))
    assert out["images"].shape == (6, 1, 8, 8) and out["labels"].tolist() == [1, 1, 2, 2, 3, 3]
    assert out["sampler"] == "ddim" and grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = sample_from_run(cfg.out_dir, num_per_class=2, classes=[1, 2, 3], seed=4, num_steps=5,
                            grid_path="")
    np.testing.assert_array_equal(out["images"], again["images"])
    assert again["grid_path"] is None
    with pytest.raises(FileNotFoundError, match="nothing is not a run folder"):
        sample_from_run(str(tmp_path / "nothing"))


# --------------------------------------------------------------------------- evaluation
def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))           # correlated features
    assert abs(frechet_distance(f, f)) < 1e-8
    shift = rng.standard_normal(6)
    assert frechet_distance(f, f + shift) == pytest.approx(float(shift @ shift), rel=1e-7)
    # diagonal covariances: d² = ‖Δμ‖² + Σ_i (sqrt a_i − sqrt b_i)²
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    want = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    # a rotation of the covariance: Σ₂ = R Σ₁ Rᵀ; with commuting Σ (R = I) -> 0, else > 0
    assert frechet_distance_from_stats(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="M >= 2"):
        frechet_distance(f[:1], f)
    with pytest.raises(ValueError, match="feature widths differ"):
        frechet_distance(f, f[:, :5])


class OneHotClassifier:
    """Predicts the class written in pixel (0, 0, 0) of each image."""

    class config:
        num_classes = 4

    dtype = np.float64

    def forward(self, x):
        return np.eye(4)[x[:, 0, 0, 0].astype(int)] * 5.0                       # (B, 4)


def test_accuracy_per_class_on_known_inputs():
    labels = np.array([0, 0, 1, 1, 1, 3, 3, 3, 3])
    preds = np.array([0, 2, 1, 1, 1, 3, 0, 3, 3])
    images = np.zeros((9, 1, 2, 2))
    images[:, 0, 0, 0] = preds
    r = classifier_accuracy_per_class(OneHotClassifier(), images, labels, batch_size=4)
    assert r["per_class"][:2] == [0.5, 1.0] and np.isnan(r["per_class"][2]) and r["per_class"][3] == 0.75
    assert r["counts"] == [2, 3, 0, 4]
    assert r["mean_accuracy"] == pytest.approx((0.5 + 1.0 + 0.75) / 3)
    assert r["accuracy"] == pytest.approx(7 / 9)
    np.testing.assert_array_equal(r["predictions"], preds)
    with pytest.raises(ValueError, match="9 images but 8 labels"):
        classifier_accuracy_per_class(OneHotClassifier(), images, labels[:8])


def test_normalisation_bridge_and_features():
    x = np.array([-1.5, -1.0, 0.0, 1.0, 2.0]).reshape(5, 1, 1, 1)
    z = to_classifier_space(x, mean=0.2, std=0.4)
    np.testing.assert_allclose(z.ravel(), [(0 - 0.2) / 0.4, (0 - 0.2) / 0.4, (0.5 - 0.2) / 0.4,
                                           (1 - 0.2) / 0.4, (1 - 0.2) / 0.4], rtol=1e-6)
    vit = create_vit("tiny-digits", seed=0)
    imgs = np.random.default_rng(0).standard_normal((7, 1, 8, 8)).astype(np.float32)
    feats = classifier_features(vit, imgs, batch_size=3)
    assert feats.shape == (7, 32) and feats.dtype == np.float64
    # the head sees exactly these features
    np.testing.assert_allclose(vit.forward(imgs), feats @ vit.head.params["weight"].T
                               + vit.head.params["bias"], rtol=1e-5, atol=1e-5)


def test_evaluate_dit_run_end_to_end(short_run, tmp_path):
    cfg, _ = short_run
    judge = DigitClassifier(create_vit("tiny-digits", seed=0), mean=0.3, std=0.4)
    grid = tmp_path / "eval.png"
    r = evaluate_dit_run(cfg.out_dir, judge, num_per_class=3, num_steps=4, grid_path=str(grid),
                         grid_per_class=2)
    assert len(r["per_class_accuracy"]) == 10 and 0.0 <= r["mean_accuracy"] <= 1.0
    assert r["frechet_distance"] > 0 and r["frechet_real_baseline"] > 0
    assert r["num_generated"] == 30 and r["num_real_baseline"] == 30
    assert "not ImageNet FID" in r["metric"] and grid.exists()
    with open(os.path.join(cfg.out_dir, "evaluation.json")) as f:
        assert json.load(f)["frechet_distance"] == r["frechet_distance"]


def test_grid_layout_and_png(tmp_path):
    imgs = np.stack([np.full((1, 2, 3), v) for v in np.linspace(-1, 1, 6)])     # (6, 1, 2, 3)
    g = image_grid(imgs, nrow=2, pad=1)
    assert g.shape == (2 * 3 + 1, 3 * 4 + 1)
    np.testing.assert_allclose(g[1:3, 1:4], 0.0)                                # image 0, black
    np.testing.assert_allclose(g[4:6, 9:12], 1.0)                               # image 5, white
    np.testing.assert_allclose(g[4:6, 1:4], 0.6)                                # image 3: row 1, col 0
    path = save_grid(imgs, str(tmp_path / "sub" / "grid.png"), nrow=2, row_labels=["a", "b"], title="t")
    import matplotlib.pyplot as plt
    png = plt.imread(path)
    assert png.ndim == 3 and png.shape[0] > 50
    with pytest.raises(ValueError, match="row_labels has 1 entries for 2 rows"):
        save_grid(imgs, str(tmp_path / "x.png"), nrow=2, row_labels=["a"])


def test_compare_dit_smoke(tmp_path):
    """Both attentions, one shared classifier, rows, table, results.json and both plots (tiny budget)."""
    from vca_ref.experiments.compare_dit import compare_dit
    cfg = tiny_cfg(tmp_path / "ignored", epochs=1, batch_size=256)
    rows = compare_dit(cfg, str(tmp_path / "cmp"), num_per_class=2, num_steps=2,
                       classifier_overrides={"epochs": 1, "batch_size": 256})
    assert [r["attention"] for r in rows] == ["vca", "mhsa"]
    for r in rows:
        for k in ("frechet_distance", "classifier_accuracy", "params", "macs_per_image",
                  "train_seconds", "images_per_s"):
            assert np.isfinite(r[k]) and r[k] >= 0, k
        assert r["run_dir"].endswith(f"dit-{r['attention']}")
    assert rows[0]["params"] > rows[1]["params"]                 # the VCA extras
    with open(tmp_path / "cmp" / "results.json") as f:
        res = json.load(f)
    assert res["task"] == "dit" and 0.0 <= res["classifier"]["test_acc"] <= 1.0
    for p in res["plots"].values():
        assert os.path.getsize(p) > 1000
    assert "VCA" in (tmp_path / "cmp" / "table.md").read_text()
