"""Whole-model tests of TinyViT and TinyDiT: finite differences, a PyTorch oracle, names, checkpoints.

Every gradient test randomises EVERY parameter to non-zero values (adaLN gates and the final
layer included: adaLN-Zero init would hide broken branches) with a scale that keeps activations
O(1), and contracts with a random upstream gradient.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from vca_ref.gradcheck import gradcheck, gradcheck_module
from vca_ref.models import DIT_CONFIGS, VIT_CONFIGS, DiTConfig, TinyDiT, TinyViT, ViTConfig, create_dit, create_vit
from vca_ref.ops.patchify import patchify, unpatchify
from vca_ref.nn.embedders import sincos_2d

import torch_models as TM
from helpers import DIT_TINY, VIT_TINY, randomised

ATTN = ["vca", "mhsa"]


# --------------------------------------------------------------------------- helpers
def vit(attention: str, dtype="float64", seed: int = 0, **kw) -> TinyViT:
    return randomised(TinyViT(ViTConfig(**{**VIT_TINY, **kw, "attention": attention, "dtype": dtype}),
                              seed=seed), seed + 1)


def dit(attention: str, dtype="float64", seed: int = 0, **kw) -> TinyDiT:
    return randomised(TinyDiT(DiTConfig(**{**DIT_TINY, **kw, "attention": attention, "dtype": dtype}),
                              seed=seed), seed + 1)


def dit_inputs(cfg: DiTConfig, B: int = 2, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, cfg.in_chans, cfg.img_size, cfg.img_size)).astype(cfg.dtype)
    t = np.array([3.7, 611.0, 0.0, 999.0][:B])
    y = np.array([0, cfg.num_classes, 1, 2][:B])            # includes the null class
    return x, t, y


def rel_err(ours, ref) -> float:
    """Normwise relative error max|ours - ref| / max|ref| (0 when both are exactly 0)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    diff, scale = np.max(np.abs(ours - ref), initial=0.0), np.max(np.abs(ref), initial=0.0)
    return 0.0 if diff == 0.0 else float(diff / max(scale, 1e-300))


def assert_close(pairs: dict, tol: float, floor: float = 0.0) -> None:
    """Every pair within ``tol`` normwise; ``floor`` (a fraction of the largest reference magnitude
    of the call) only for degenerate cases whose true gradient is ~0 by a cancellation."""
    top = max(float(np.max(np.abs(np.asarray(r, np.float64)), initial=0.0)) for _, r in pairs.values())
    errs = {k: rel_err(a, b) * (1.0 if floor == 0.0 else
                                 min(1.0, float(np.max(np.abs(np.asarray(b, np.float64)), initial=0.0))
                                     / (floor * top)))
            for k, (a, b) in pairs.items()}
    bad = {k: e for k, e in errs.items() if not e <= tol}
    assert not bad, f"relative error above {tol:g}:\n" + "\n".join(
        f"  {k:<40} {e:.3e}{'  FAIL' if k in bad else ''}" for k, e in errs.items())


def torch_copy(model, cls, cfg):
    tm = cls(dataclasses.asdict(cfg), dtype=torch.float64)
    tm.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in model.state_dict().items()},
                       strict=True)
    return tm


# --------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize("attention", ATTN)
def test_vit_gradcheck(attention):
    m = vit(attention)
    x = np.random.default_rng(5).standard_normal((2, 2, 6, 6))
    rep = gradcheck_module(m, x, full_max=64, num_directions=3, num_coords=8)
    assert len(rep.tensors) == 1 + len(m.state_dict())          # the input and every parameter


def _dit_gradcheck(m: TinyDiT, x, t, y, **kw):
    owners = {prefix + k: (mod, k) for prefix, mod in m.named_modules() for k in mod.params}
    inputs = {"x": x, **{n: mod.params[k] for n, (mod, k) in owners.items()}}
    originals = dict(inputs)

    def set_params(inp):
        for n, (mod, k) in owners.items():
            mod.params[k] = inp[n]

    def f(inp):
        try:
            set_params(inp)
            return m.forward(inp["x"], t, y)
        finally:
            set_params(originals)

    def analytic(inp, dout):
        m.forward(inp["x"], t, y)
        return {"x": m.backward(dout), **m.named_grads()}
    return gradcheck(f, inputs, analytic, **kw)


@pytest.mark.parametrize("attention", ATTN)
def test_dit_gradcheck(attention):
    m = dit(attention)
    x, t, y = dit_inputs(m.config)
    gates = m.state_dict()["blocks.0.adaLN_modulation.1.bias"]
    assert np.all(gates != 0) and np.all(m.state_dict()["final_layer.linear.weight"] != 0)
    rep = _dit_gradcheck(m, x, t, y, full_max=64, num_directions=3, num_coords=8)
    assert len(rep.tensors) == 1 + len(dict(m.named_parameters()))      # x and every parameter


def test_dit_gradcheck_integer_timesteps_no_sigma():
    m = dit("vca", learn_sigma=False, in_chans=1, patch_size=3, pool_size=(1, 2))
    x, _, y = dit_inputs(m.config)
    _dit_gradcheck(m, x, np.array([5, 250]), y, full_max=32, num_directions=3, num_coords=6)


# --------------------------------------------------------------------------- PyTorch oracle
def _vit_oracle(attention, dtype, tol, floor=0.0, **kw):
    ref = vit(attention, "float64", **kw)
    tm = torch_copy(ref, TM.VisionTransformer, ref.config)
    m = vit(attention, dtype, **kw)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 2, 6, 6))
    dlogits = rng.standard_normal((3, 3))

    logits = m.forward(x.astype(dtype))
    dx = m.backward(dlogits.astype(dtype))
    assert logits.dtype == np.dtype(dtype) and dx.dtype == np.dtype(dtype)
    xt = torch.from_numpy(x).requires_grad_(True)
    lt = tm(xt)
    (lt * torch.from_numpy(dlogits)).sum().backward()
    pairs = {"logits": (logits, lt.detach().numpy()), "d images": (dx, xt.grad.numpy())}
    tgrads = {k: p.grad for k, p in tm.named_parameters()}
    ours = m.named_grads()
    assert set(ours) == set(tgrads)
    for k, g in ours.items():
        assert g.dtype == np.dtype(dtype), k
        pairs["d " + k] = (g, tgrads[k].numpy())
    assert_close(pairs, tol, floor)


def _dit_oracle(attention, dtype, tol, floor=0.0, **kw):
    ref = dit(attention, "float64", **kw)
    tm = torch_copy(ref, TM.DiT, ref.config)
    m = dit(attention, dtype, **kw)
    x, t, y = dit_inputs(m.config, B=4)
    x = x.astype(np.float64)
    dout = np.random.default_rng(12).standard_normal((4, m.config.out_chans, 6, 6))

    out = m.forward(x.astype(dtype), t, y)
    dx = m.backward(dout.astype(dtype))
    xt = torch.from_numpy(x).requires_grad_(True)
    ot = tm(xt, torch.from_numpy(t), torch.from_numpy(y))
    (ot * torch.from_numpy(dout)).sum().backward()
    pairs = {"out": (out, ot.detach().numpy()), "d x": (dx, xt.grad.numpy())}
    tgrads = {k: p.grad for k, p in tm.named_parameters() if p.requires_grad}
    ours = m.named_grads()
    assert set(ours) == set(tgrads)
    for k, g in ours.items():
        assert g.dtype == np.dtype(dtype), k
        pairs["d " + k] = (g, tgrads[k].numpy())
    assert_close(pairs, tol, floor)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("attention", ATTN)
def test_vit_matches_torch(attention, dtype, tol):
    _vit_oracle(attention, dtype, tol)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("attention", ATTN)
def test_dit_matches_torch(attention, dtype, tol):
    _dit_oracle(attention, dtype, tol)


VCA_VARIANTS = {
    "separate_softmax": dict(stage2_softmax="separate"),
    "stage1_only_no_conv": dict(differential="stage1", use_dwconv=False),
    "stage2_only": dict(differential="stage2"),
    "embeddings_only": dict(pool_queries=False, pool_size=(3, 3)),
    "tied": dict(tied_embeddings=True),
}


@pytest.mark.parametrize("variant", sorted(VCA_VARIANTS))
def test_vca_options_pass_through(variant):
    kw = VCA_VARIANTS[variant]
    # tied E+ = E-: the lambda gradients are ~0 by a cancellation (RMSNorm is scale invariant),
    # so they are measured against 1e-2 of the largest gradient instead of their own ~0 scale
    floor = 1e-2 if kw.get("tied_embeddings") else 0.0
    _vit_oracle("vca", "float64", 1e-10, floor, **kw)
    _dit_oracle("vca", "float64", 1e-10, floor, **kw)
    cfg = TinyViT(ViTConfig(**{**VIT_TINY, **kw})).blocks[1].attn.config
    for k, v in kw.items():
        assert tuple(getattr(cfg, k)) == v if k == "pool_size" else getattr(cfg, k) == v
    assert cfg.layer_index == 1 and cfg.num_prefix_tokens == 1


# --------------------------------------------------------------------------- names, shapes, counts
def _vca_names(prefix: str, C: int, d: int, n: int) -> dict:
    out = {prefix + "qkv.weight": (3 * C, C), prefix + "qkv.bias": (3 * C,),
           prefix + "proj.weight": (C, C), prefix + "proj.bias": (C,),
           prefix + "e_pos": (1, n, C), prefix + "e_neg": (1, n, C)}
    for j in (1, 2):
        for k in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2", "norm.weight"):
            out[f"{prefix}stage{j}.{k}"] = (d,)
    out.update({prefix + "dwc.weight": (C, 1, 3, 3), prefix + "dwc.bias": (C,)})
    return out


def test_vit_state_dict_names_and_shapes():
    m = TinyViT(ViTConfig(**VIT_TINY))                                  # C 8, h 2, grid 3x3, n 4
    C, hid = 8, 16
    want = {"cls_token": (1, 1, C), "pos_embed": (1, 10, C),
            "patch_embed.proj.weight": (C, 2, 2, 2), "patch_embed.proj.bias": (C,)}
    for i in range(2):
        b = f"blocks.{i}."
        want.update({b + "norm1.weight": (C,), b + "norm1.bias": (C,)})
        want.update(_vca_names(b + "attn.", C, 4, 4))
        want.update({b + "norm2.weight": (C,), b + "norm2.bias": (C,),
                     b + "mlp.fc1.weight": (hid, C), b + "mlp.fc1.bias": (hid,),
                     b + "mlp.fc2.weight": (C, hid), b + "mlp.fc2.bias": (C,)})
    want.update({"norm.weight": (C,), "norm.bias": (C,), "head.weight": (3, C), "head.bias": (3,)})
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == want
    assert list(m.state_dict()) == list(want)                           # timm's order too
    tm = TM.VisionTransformer(dataclasses.asdict(m.config))
    assert {k: tuple(v.shape) for k, v in tm.state_dict().items()} == want


def test_dit_state_dict_names_and_shapes():
    m = TinyDiT(DiTConfig(**DIT_TINY))                                  # Cin 2, learn_sigma: Cout 4
    C, hid, K = 8, 16, 3
    want = {"x_embedder.proj.weight": (C, 2, 2, 2), "x_embedder.proj.bias": (C,),
            "t_embedder.mlp.0.weight": (C, 256), "t_embedder.mlp.0.bias": (C,),
            "t_embedder.mlp.2.weight": (C, C), "t_embedder.mlp.2.bias": (C,),
            "y_embedder.embedding_table.weight": (K + 1, C)}
    for i in range(2):
        b = f"blocks.{i}."
        want.update(_vca_names(b + "attn.", C, 4, 4))
        want.update({b + "mlp.fc1.weight": (hid, C), b + "mlp.fc1.bias": (hid,),
                     b + "mlp.fc2.weight": (C, hid), b + "mlp.fc2.bias": (C,),
                     b + "adaLN_modulation.1.weight": (6 * C, C), b + "adaLN_modulation.1.bias": (6 * C,)})
    want.update({"final_layer.linear.weight": (2 * 2 * 4, C), "final_layer.linear.bias": (16,),
                 "final_layer.adaLN_modulation.1.weight": (2 * C, C),
                 "final_layer.adaLN_modulation.1.bias": (2 * C,)})
    assert {k: tuple(v.shape) for k, v in m.named_parameters()} == want
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {**want, "pos_embed": (1, 9, C)}
    tm = TM.DiT(dataclasses.asdict(m.config))
    assert {k: tuple(v.shape) for k, v in tm.state_dict().items()} == {**want, "pos_embed": (1, 9, C)}


def test_mhsa_models_have_only_qkv_proj_attention_params():
    for m in (TinyViT(ViTConfig(**VIT_TINY, attention="mhsa")),
              TinyDiT(DiTConfig(**DIT_TINY, attention="mhsa"))):
        attn = sorted({k.split("attn.")[1] for k in m.state_dict() if ".attn." in k})
        assert attn == ["proj.bias", "proj.weight", "qkv.bias", "qkv.weight"]


def test_deit_tiny_parameter_counts_match_timm_and_spec():
    """DeiT-Tiny/16 at 224: timm's count is 5,717,416; VCA adds 21,376 per layer (docs/spec.md)."""
    cfg = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=192, depth=12,
               num_heads=3, mlp_ratio=4.0, pool_size=(7, 7))
    mhsa = TinyViT(ViTConfig(**cfg, attention="mhsa"))
    vca = TinyViT(ViTConfig(**cfg, attention="vca"))
    assert mhsa.num_parameters() == 5_717_416
    assert vca.num_parameters() - mhsa.num_parameters() == 12 * 21_376 == 256_512


@pytest.mark.parametrize("attention", ATTN)
def test_parameter_counts_match_torch(attention):
    for m, cls in ((TinyViT(ViTConfig(**VIT_TINY, attention=attention)), TM.VisionTransformer),
                   (TinyDiT(DiTConfig(**DIT_TINY, attention=attention)), TM.DiT)):
        tm = cls(dataclasses.asdict(m.config))
        assert m.num_parameters() == sum(p.numel() for p in tm.parameters() if p.requires_grad)


def test_macs():
    m = TinyViT(ViTConfig(**VIT_TINY))
    N, C, n, hid = 10, 8, 4, 16
    attn = 4 * N * C * C + 7 * n * N * C                       # docs/spec.md: VCA 4NC^2 + 7nNC
    assert m.macs() == 9 * C * 2 * 4 + 2 * (attn + 2 * N * C * hid) + C * 3
    mh = TinyViT(ViTConfig(**VIT_TINY, attention="mhsa"))
    assert mh.macs() - m.macs() == 2 * ((4 * N * C * C + 2 * N * N * C) - attn)
    d = TinyDiT(DiTConfig(**DIT_TINY))
    N = 9
    attn = 4 * N * C * C + 7 * n * N * C
    assert d.macs() == (9 * C * 2 * 4 + 256 * C + C * C + 2 * (attn + 2 * N * C * hid + 6 * C * C)
                        + 2 * C * C + N * C * 16)


# --------------------------------------------------------------------------- DiT specifics
def test_dit_pos_embed_is_the_reference_sincos():
    m = TinyDiT(DiTConfig(**{**DIT_TINY, "dim": 16, "num_heads": 2}), seed=0)
    ref = TM.get_2d_sincos_pos_embed(16, 3)
    np.testing.assert_allclose(m.buffers["pos_embed"][0], ref.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(sincos_2d(16, 3), ref, rtol=0, atol=0)
    assert "pos_embed" not in dict(m.named_parameters()) and "pos_embed" in m.state_dict()


def test_dit_adaln_zero_init_outputs_zero_and_only_final_grads():
    m = TinyDiT(DiTConfig(**{**DIT_TINY, "dtype": "float64"}), seed=0)
    x, t, y = dit_inputs(m.config)
    out = m.forward(x, t, y)
    assert out.shape == (2, 4, 6, 6) and np.all(out == 0)
    m.backward(np.random.default_rng(0).standard_normal(out.shape))
    nonzero = {k for k, g in m.named_grads().items() if np.any(g != 0)}
    assert nonzero == {"final_layer.linear.weight", "final_layer.linear.bias"}
    z = TinyDiT(DiTConfig(**{**DIT_TINY, "dtype": "float64"}), seed=0, zero_init=False)
    assert np.any(z.forward(x, t, y) != 0)


def test_unpatchify_inverts_patchify_and_is_the_reference_dits():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3, 6, 4))
    np.testing.assert_array_equal(unpatchify(patchify(img, 2), 2, (3, 2)), img)
    tok = rng.standard_normal((2, 9, 12))
    ref = TM.DiT.unpatchify(type("U", (), {"out_channels": 3, "patch_size": 2})(), torch.from_numpy(tok))
    np.testing.assert_array_equal(unpatchify(tok, 2, (3, 3)), ref.numpy())


def test_label_dropout_is_seeded_and_off_by_default():
    cfg = DiTConfig(**{**DIT_TINY, "dtype": "float64", "class_dropout_prob": 0.5})
    m = randomised(TinyDiT(cfg, seed=0))
    table = m.state_dict()["y_embedder.embedding_table.weight"]
    y = np.arange(64) % 3
    emb = m.y_embedder.forward(y)
    np.testing.assert_array_equal(emb, table[y])                       # eval: no dropout
    a = m.y_embedder.forward(y, train=True, rng=np.random.default_rng(7))
    b = m.y_embedder.forward(y, train=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    dropped = np.all(a == table[3], axis=1)
    assert 10 < dropped.sum() < 54                                      # about half to the null row
    forced = m.y_embedder.forward(y[:4], force_drop_ids=np.array([1, 0, 1, 0]))
    np.testing.assert_array_equal(forced, table[[3, 1, 3, 0]])
    x, t, _ = dit_inputs(cfg)                                           # the model-level switch
    assert not np.array_equal(m.forward(x, t, np.array([0, 1]), force_drop_ids=np.array([1, 1])),
                              m.forward(x, t, np.array([0, 1])))


def test_label_table_gradient_accumulates_repeated_labels():
    m = dit("mhsa")
    x, t, _ = dit_inputs(m.config, B=4)
    y = np.array([1, 1, 3, 1])
    m.forward(x, t, y)
    m.backward(np.ones((4, 4, 6, 6)))
    g = m.named_grads()["y_embedder.embedding_table.weight"]
    assert np.all(g[[0, 2]] == 0) and np.all(g[1] != 0) and np.all(g[3] != 0)


# --------------------------------------------------------------------------- errors
def test_bad_inputs_give_clear_errors():
    v = TinyViT(ViTConfig(**VIT_TINY))
    with pytest.raises(ValueError, match=r"\(B, 2, 6, 6\)"):
        v.forward(np.zeros((2, 1, 6, 6), np.float32))
    with pytest.raises(TypeError, match="float64 but the parameters are float32"):
        v.forward(np.zeros((2, 2, 6, 6)))
    with pytest.raises(ValueError, match="rank 4"):
        v.forward(np.zeros((2, 6, 6), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        TinyViT(ViTConfig(**VIT_TINY)).backward(np.zeros((2, 3), np.float32))
    v.forward(np.zeros((2, 2, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        v.backward(np.zeros((2, 4), np.float32))
    d = TinyDiT(DiTConfig(**DIT_TINY))
    x = np.zeros((2, 2, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        d.forward(x, np.zeros(3), np.zeros(2, int))
    with pytest.raises(TypeError, match="integer"):
        d.forward(x, np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"labels y must be in \[0, 3\] \(3 is the null class\)"):
        d.forward(x, np.zeros(2), np.array([0, 4]))
    with pytest.raises(ValueError, match=r"\(B, 2, 6, 6\)"):
        d.forward(np.zeros((2, 2, 8, 8), np.float32), np.zeros(2), np.zeros(2, int))


@pytest.mark.parametrize("bad,match", [
    (dict(attention="linear"), "attention"), (dict(patch_size=4), "patch_size"),
    (dict(num_heads=3), "divisible"), (dict(pool_size=(4, 4)), "pool_size"),
    (dict(dtype="float16"), "float32 or float64"), (dict(depth=0), "depth")])
def test_bad_configs(bad, match):
    for cls, cfg, base in ((TinyViT, ViTConfig, VIT_TINY), (TinyDiT, DiTConfig, DIT_TINY)):
        with pytest.raises((ValueError, TypeError), match=match):
            cls(cfg(**{**base, **bad}))


# --------------------------------------------------------------------------- sizes and configs
@pytest.mark.parametrize("name", sorted(VIT_CONFIGS))
@pytest.mark.parametrize("attention", ATTN)
def test_named_vit_sizes_run(name, attention):
    m = create_vit(name, attention=attention, seed=3)
    cfg = m.config
    x = np.random.default_rng(0).standard_normal((2, 1, cfg.img_size, cfg.img_size)).astype(np.float32)
    logits = m.forward(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32 and np.all(np.isfinite(logits))
    assert m.backward(np.ones_like(logits)).shape == x.shape


@pytest.mark.parametrize("name", sorted(DIT_CONFIGS))
@pytest.mark.parametrize("attention", ATTN)
def test_named_dit_sizes_run(name, attention):
    m = create_dit(name, attention=attention, seed=3)
    cfg = m.config
    x = np.random.default_rng(0).standard_normal((2, 1, cfg.img_size, cfg.img_size)).astype(np.float32)
    out = m.forward(x, np.array([10, 500]), np.array([3, 10]))
    assert out.shape == x.shape and out.dtype == np.float32
    assert m.backward(np.ones_like(out)).shape == x.shape


def test_seeded_init_is_deterministic_and_to_dtype_works():
    a, b = create_vit("tiny-digits", seed=5), create_vit("tiny-digits", seed=5)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    assert not np.array_equal(a.state_dict()["head.weight"],
                              create_vit("tiny-digits", seed=6).state_dict()["head.weight"])
    d = create_dit("tiny-digits", seed=1).to(dtype=np.float64)
    out = d.forward(np.zeros((1, 1, 8, 8)), np.array([1.0]), np.array([2]))
    assert out.dtype == np.float64 and d.buffers["pos_embed"].dtype == np.float64


# --------------------------------------------------------------------------- checkpoints <-> PyTorch
@pytest.mark.parametrize("kind", ["vit", "dit"])
@pytest.mark.parametrize("attention", ATTN)
def test_checkpoint_loads_into_torch_with_safetensors(tmp_path, kind, attention):
    from safetensors.torch import load_file as torch_load_file

    from vca_ref.io import checkpoint as ck
    m = (vit if kind == "vit" else dit)(attention, "float32")
    path = str(tmp_path / "model.safetensors")
    ck.save_module(m, path, config=dataclasses.asdict(m.config))
    tensors = torch_load_file(path)
    assert set(tensors) == set(m.state_dict()) and all(v.dtype == torch.float32 for v in tensors.values())
    cls = TM.VisionTransformer if kind == "vit" else TM.DiT
    tm = cls(dataclasses.asdict(m.config), dtype=torch.float32)
    tm.load_state_dict(tensors, strict=True)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    if kind == "vit":
        ours, theirs = m.forward(x), tm(torch.from_numpy(x))
    else:
        t, y = np.array([1.0, 20.0, 300.0]), np.array([0, 2, 3])
        ours, theirs = m.forward(x, t, y), tm(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y))
    assert rel_err(ours, theirs.detach().numpy()) <= 1e-5
    # and back: the file loads into a fresh vca_ref model with the same outputs
    fresh = (TinyViT if kind == "vit" else TinyDiT)(type(m.config)(
        **json.loads(ck.read_metadata(path)["config"])), seed=99)
    ck.load_into(fresh, path)
    again = fresh.forward(x) if kind == "vit" else fresh.forward(x, t, y)
    np.testing.assert_array_equal(again, ours)
