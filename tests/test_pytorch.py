"""vca_ref.pytorch against the NumPy reference: the layer (every option, every gradient, float64),
the models (timm ViT, DiT) and the files of ``vca-ref train-vit`` / ``train-dit`` both ways."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pytorch_env import stand_in_torchvision  # noqa: E402

stand_in_torchvision()
pytest.importorskip("timm")

from vca_ref.cli import main as cli_main  # noqa: E402
from vca_ref.io.checkpoint import load_into, read_metadata  # noqa: E402
from vca_ref.models import VIT_CONFIGS, TinyDiT, TinyViT  # noqa: E402
from vca_ref.nn import MultiHeadSelfAttention as NpMHSA  # noqa: E402
from vca_ref.nn import VisualContrastAttention as NpVCA  # noqa: E402
from vca_ref.pytorch import (MultiHeadSelfAttention, VisualContrastAttention, from_config,  # noqa: E402
                             load_run, save_model)
from vca_ref.pytorch.checkpoint import load_model, model_config  # noqa: E402

TOL = 1e-10
OPTIONS = [{}, {"stage2_softmax": "separate"}, {"tied_embeddings": True}, {"pool_queries": False},
           {"use_dwconv": False}, {"differential": "stage1"}, {"differential": "stage2"},
           {"differential": "none"}, {"lambda_init_scale": 0.5},
           {"stage2_softmax": "separate", "tied_embeddings": True, "use_dwconv": False}]


def to_torch(state: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def compare(np_layer, torch_layer, x, dout):
    """Largest |difference| of y, dx and each parameter gradient (the names must agree)."""
    y = np_layer.forward(x)
    dx = np_layer.backward(dout)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch_layer(xt)
    yt.backward(torch.from_numpy(dout))
    tgrads = {k: p.grad.numpy() for k, p in torch_layer.named_parameters()}
    assert sorted(tgrads) == sorted(np_layer.grads)
    diffs = {"y": np.abs(y - yt.detach().numpy()).max(), "dx": np.abs(dx - xt.grad.numpy()).max()}
    diffs.update({k: np.abs(np_layer.grads[k] - g).max() for k, g in tgrads.items()})
    return diffs


@pytest.mark.parametrize("P", [0, 1])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "paper")
def test_vca_layer_equals_reference(options, P):
    """Output, input gradient and every parameter gradient to 1e-10 in float64, random parameters."""
    rng = np.random.default_rng(3)
    args = (12, 3, (3, 4), (2, 3), P, 2)                 # C, h, (H, W) uneven pooling bins, (h', w'), P, l
    ref = NpVCA(*args, dtype=np.float64, seed=1, **options)
    ref.params = {k: rng.standard_normal(v.shape) for k, v in ref.params.items()}
    layer = VisualContrastAttention(*args, dtype=torch.float64, **options)
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    layer.load_state_dict(to_torch(ref.params))
    x, dout = rng.standard_normal((2, P + 12, 12)), rng.standard_normal((2, P + 12, 12))
    diffs = compare(ref, layer, x, dout)
    assert max(diffs.values()) < TOL, diffs
    assert layer.lambdas() == pytest.approx(ref.lambdas(), abs=TOL)


def test_mhsa_layer_equals_reference():
    rng = np.random.default_rng(4)
    ref = NpMHSA(12, 3, dtype=np.float64, seed=2)
    ref.params = {k: rng.standard_normal(v.shape) for k, v in ref.params.items()}
    layer = MultiHeadSelfAttention(12, 3, dtype=torch.float64)
    layer.load_state_dict(to_torch(ref.params))
    diffs = compare(ref, layer, rng.standard_normal((2, 7, 12)), rng.standard_normal((2, 7, 12)))
    assert max(diffs.values()) < TOL, diffs


def test_layer_refuses_wrong_input():
    layer = VisualContrastAttention(8, 2, 2, 1, num_prefix_tokens=1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"N = P \+ H\*W = 5"):
        layer(torch.zeros(1, 4, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        layer(torch.zeros(1, 5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="pool_size"):
        VisualContrastAttention(8, 2, 2, 3)


def test_vit_blocks_have_their_layer_index():
    cfg = VIT_CONFIGS["tiny-digits"](depth=3, dtype="float64")
    model = from_config(cfg)
    assert [blk.attn.config.layer_index for blk in model.blocks] == [0, 1, 2]
    assert type(model).__name__ == "VisionTransformer"


# --------------------------------------------------------------------------- run folders
def train(kind: str, out: str, attention: str) -> str:
    rc = cli_main([f"train-{kind}", "--dataset", "digits", "--model", "tiny-digits", "--epochs", "1",
                   "--attention", attention, "--dtype", "float64", "--set", "depth=2",
                   "--batch-size", "256", "--out-dir", out, "--no-progress"])
    assert rc == 0
    return out


def numpy_model(run_cfg):
    cfg = model_config(run_cfg)
    return TinyViT(cfg) if run_cfg.__class__.__name__ == "ViTTrainConfig" else TinyDiT(cfg)


def outputs(np_model, torch_model, rng):
    """The two models' outputs on one random batch (ViT: images; DiT: images, timesteps, labels)."""
    cfg = np_model.config
    x = rng.standard_normal((4, cfg.in_chans, cfg.img_size, cfg.img_size))
    if isinstance(np_model, TinyViT):
        args = (x,)
    else:
        args = (x, rng.uniform(0, 999, 4), rng.integers(0, cfg.num_classes + 1, 4))
    with torch.no_grad():
        y = torch_model(*(torch.from_numpy(a) for a in args)).numpy()
    return np_model.forward(*args), y


@pytest.mark.slow
@pytest.mark.parametrize("kind,attention", [("vit", "vca"), ("dit", "vca"), ("vit", "mhsa")])
def test_run_folder_moves_both_ways(tmp_path, kind, attention):
    """A trained NumPy run loads into PyTorch with equal outputs; PyTorch's file loads back into NumPy."""
    run = train(kind, str(tmp_path / "run"), attention)
    tmodel, run_cfg = load_run(run)
    ref = numpy_model(run_cfg)
    load_into(ref, os.path.join(run, "model.safetensors"))
    rng = np.random.default_rng(0)
    y_np, y_t = outputs(ref, tmodel, rng)
    assert np.abs(y_np - y_t).max() < TOL
    # change the PyTorch weights, save, load into a fresh NumPy model
    params = [p for p in tmodel.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    path = str(tmp_path / "from_torch.safetensors")
    save_model(tmodel, path, metadata={"source": "torch"}, config={"attention": attention})
    assert read_metadata(path)["source"] == "torch"
    back = numpy_model(run_cfg)
    load_into(back, path)
    y_np, y_t = outputs(back, tmodel, rng)
    assert np.abs(y_np - y_t).max() < TOL


def test_load_model_refuses_a_wrong_file_and_leaves_the_model(tmp_path):
    cfg = VIT_CONFIGS["tiny-digits"](dtype="float64")
    model = from_config(cfg)
    other = from_config(VIT_CONFIGS["tiny-digits"](dtype="float64", attention="mhsa"))
    path = str(tmp_path / "mhsa.safetensors")
    save_model(other, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="missing keys"):
        load_model(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_core_never_imports_torch():
    code = ("import sys, vca_ref, vca_ref.ops, vca_ref.nn, vca_ref.models, vca_ref.train, "
            "vca_ref.diffusion; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
