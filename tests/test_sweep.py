"""The design knobs a sweep turns (lambda_init scale, E+- init scale, image size) and `vca-ref sweep`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import BASE, make_vca, tokens
from vca_ref.cli import main
from vca_ref.experiments.sweep import plan_values
from vca_ref.experiments.tasks import ViTTask
from vca_ref.io.checkpoint import load_file
from vca_ref.experiments.data import area_weights, load_dataset, resize_images
from vca_ref.gradcheck import gradcheck_module
from vca_ref.models.vit import create_vit
from vca_ref.ops.lambdas import lambda_init_for_layer


# --------------------------------------------------------------------------- config knobs
def test_lambda_init_scale_multiplies_lambda_init_and_defaults_to_the_paper():
    m = create_vit("tiny-mnist-p7", seed=0, lambda_init_scale=0.5)
    for i, blk in enumerate(m.blocks):
        assert blk.attn.config.lambda_init == pytest.approx(0.5 * lambda_init_for_layer(i))
    d = create_vit("tiny-mnist-p7", seed=0)
    assert [b.attn.config.lambda_init for b in d.blocks] == [lambda_init_for_layer(i) for i in range(3)]


def test_embed_init_scale_scales_only_the_embeddings():
    a = create_vit("tiny-digits", seed=3)
    b = create_vit("tiny-digits", seed=3, embed_init_scale=0.25)
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa:
        if name.endswith(("e_pos", "e_neg")):
            np.testing.assert_allclose(sb[name], 0.25 * sa[name], rtol=1e-6)
        else:
            np.testing.assert_array_equal(sb[name], sa[name])


@pytest.mark.parametrize("kw, match", [
    (dict(lambda_init_scale=2.0, depth=12), "lambda_init_scale"),   # 2 x lambda_init(11) = 1.56
    (dict(lambda_init_scale=-0.1), "lambda_init_scale"),
    (dict(embed_init_scale=0.0), "embed_init_scale"),
    (dict(embed_init_scale=float("nan")), "embed_init_scale"),
])
def test_knobs_reject_values_the_model_cannot_take(kw, match):
    with pytest.raises(ValueError, match=match):
        create_vit("tiny-mnist-p7", **kw)
    create_vit("tiny-mnist-p7", lambda_init_scale=2.0)       # 3 blocks: 2 x lambda_init(2) = 0.94


def test_vca_gradients_with_a_scaled_lambda_init():
    m = make_vca({**BASE, "lambda_init_scale": 0.6})
    assert m.config.lambda_init == pytest.approx(0.6 * lambda_init_for_layer(BASE["layer_index"]))
    assert gradcheck_module(m, tokens(m), seed=4)


# --------------------------------------------------------------------------- image size
def test_area_resampling():
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    half = x.reshape(2, 1, 14, 2, 14, 2).mean(axis=(3, 5))                  # exact 2x2 means
    np.testing.assert_allclose(resize_images(x, 14), half, atol=1e-6)
    np.testing.assert_array_equal(resize_images(x, 28), x)
    np.testing.assert_allclose(area_weights(28, 21).sum(axis=1), 1.0)
    np.testing.assert_allclose(resize_images(x, 21).mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        resize_images(x, 0)


def test_load_dataset_resizes_before_normalising():
    d = load_dataset("digits", image_size=4)
    assert d.x_train.shape[1:] == (1, 4, 4) and d.image_size == 4
    assert abs(float(d.x_train.mean())) < 1e-5                               # standardised after


# --------------------------------------------------------------------------- vca-ref sweep
TINY = ["--dataset", "digits", "--model", "tiny-digits", "--set", "dim=16", "--set", "depth=1",
        "--batch-size", "128", "--epochs", "1", "--no-progress"]


def _results(out):
    with open(out / "results.json") as f:
        return json.load(f)


def test_sweep_pool_size_reports_cost_and_accuracy_per_value(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "pool_size", "1x1", "2x2", *TINY, "--seeds", "0,1", "--out-dir", str(out)]) == 0
    res = _results(out)
    one, two = res["rows"]
    assert (one["label"], two["label"]) == ("1x1", "2x2") and one["diff"] is None
    C, N = 16, 1 + 4 * 4
    assert two["params"] - one["params"] == 2 * (4 - 1) * C                  # E+- are (1, n, C)
    assert two["macs_per_image"] - one["macs_per_image"] == 7 * (4 - 1) * N * C
    assert two["diff"]["n"] == 2 and (out / "pool_size.png").stat().st_size > 0
    with open(out / "2x2" / "seed1" / "config.json") as f:
        assert json.load(f)["model_overrides"]["pool_size"] == [2, 2]
    printed = capsys.readouterr().out
    assert "| 1x1 |" in printed and "| 2x2 |" in printed and "difference to 1x1" in printed


def test_sweep_image_size_resizes_the_data_with_the_model(tmp_path):
    out = tmp_path / "res"
    assert main(["sweep", "img_size", "4", "8", *TINY, "--seeds", "0", "--out-dir", str(out)]) == 0
    small = load_file(str(out / "4" / "seed0" / "model.safetensors"))
    assert small["pos_embed"].shape == (1, 1 + 2 * 2, 16)                   # 4x4 images, patch 2
    assert _results(out)["rows"][0]["macs_per_image"] < _results(out)["rows"][1]["macs_per_image"]


def test_sweep_values_are_parsed_by_the_field_type():
    task = ViTTask()
    assert plan_values(task, "lambda_init_scale", ["0", "0.5", "1"]) == {
        "0.0": {"lambda_init_scale": 0.0}, "0.5": {"lambda_init_scale": 0.5},
        "1.0": {"lambda_init_scale": 1.0}}
    assert plan_values(task, "pool_size", ["3", "[1, 2]"]) == {"3": {"pool_size": 3},
                                                               "1x2": {"pool_size": [1, 2]}}
    assert plan_values(task, "stage2_softmax", ["separate"]) == {"separate": {"stage2_softmax": "separate"}}
    assert plan_values(task, "img_size", ["14"]) == {"14": {"image_size": 14}}
    with pytest.raises(ValueError, match="repeated values"):
        plan_values(task, "depth", ["2", "2"])
    with pytest.raises(ValueError, match="tied_embeddings takes true or false"):
        plan_values(task, "tied_embeddings", ["1"])
