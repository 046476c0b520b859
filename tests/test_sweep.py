"""The design knobs a sweep turns (lambda_init scale, E+- init scale, image size) and `vca-ref sweep`."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import BASE, make_vca, tokens
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
