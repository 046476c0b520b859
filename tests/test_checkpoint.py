"""safetensors files (through the library), model files, training-state files, bad files, atomic writes."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as st_np_save
from safetensors.torch import load_file as st_torch_load
from safetensors.torch import save_file as st_torch_save

from vca_ref.io import checkpoint as ck
from vca_ref.io import safetensors_format as sf
from vca_ref.nn.module import Module
from vca_ref.train import EMA, SGD, AdamW


class Leaf(Module):
    def __init__(self, rng, dtype):
        super().__init__(dtype)
        self.params = {"weight": rng.normal(size=(3, 2)).astype(dtype)}
        self.buffers = {"pos_embed": rng.normal(size=(1, 4, 3)).astype(dtype)}


class Tiny(Module):
    def __init__(self, seed=0, dtype=np.float32, width=3):
        super().__init__(dtype)
        rng = np.random.default_rng(seed)
        self.params = {"head.weight": rng.normal(size=(width, 4)).astype(dtype),
                       "head.bias": rng.normal(size=(width,)).astype(dtype)}
        self.children = {"blocks": Leaf(rng, dtype)}


def snapshot(m):
    return {k: v.copy() for k, v in m.state_dict().items()}


def assert_state_equal(m, snap):
    st = m.state_dict()
    assert st.keys() == snap.keys()
    for k in snap:
        np.testing.assert_array_equal(st[k], snap[k], err_msg=k)


def all_dtypes():
    rng = np.random.default_rng(0)
    out = {f"f{b}": rng.normal(size=(2, 3)).astype(f"float{b}") for b in (16, 32, 64)}
    out.update({f"i{b}": rng.integers(-100, 100, size=(5,)).astype(f"int{b}") for b in (8, 16, 32, 64)})
    out.update({f"u{b}": rng.integers(0, 200, size=(2, 2)).astype(f"uint{b}") for b in (8, 16, 32, 64)})
    out["flag"] = np.array([True, False, True])
    out["scalar"] = np.array(7, dtype=np.int64)                       # 0-d
    out["empty"] = np.zeros((0, 4), dtype=np.float32)                 # zero-size
    out["strided"] = rng.normal(size=(4, 6))[:, ::2]                  # non-contiguous view
    out["big_endian"] = np.arange(4, dtype=">f4")
    return out


# --------------------------------------------------------------------------- format
def test_round_trip_all_dtypes(tmp_path):
    p = str(tmp_path / "a.safetensors")
    t = all_dtypes()
    sf.save_file(t, p, metadata={"config": json.dumps({"a": 1}), "step": "5"})
    back, meta = sf.load_file_with_metadata(p)
    assert meta == {"config": '{"a": 1}', "step": "5"} and sf.read_metadata(p) == meta
    assert back.keys() == t.keys()
    for k, v in t.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype.newbyteorder("="), k
        assert back[k].flags.writeable and back[k].dtype.isnative
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    raw = open(p, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0                                                  # header padded for alignment


def test_torch_reads_ours_and_we_read_torch(tmp_path):
    t = all_dtypes()
    del t["u16"], t["u32"], t["u64"]                                   # old torch lacks some uints
    p = str(tmp_path / "ours.safetensors")
    sf.save_file(t, p, metadata={"k": "v"})
    theirs = st_torch_load(p)
    for k, v in t.items():
        np.testing.assert_array_equal(theirs[k].numpy(), v, err_msg=k)
    q = str(tmp_path / "theirs.safetensors")
    st_torch_save({k: torch.from_numpy(np.ascontiguousarray(v).astype(v.dtype.newbyteorder("=")))
                   for k, v in t.items()}, q, metadata={"x": "y"})
    back, meta = sf.load_file_with_metadata(q)
    assert meta == {"x": "y"}
    for k, v in t.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    r = str(tmp_path / "np.safetensors")                               # safetensors.numpy writer too
    st_np_save({"a": np.arange(6.0).reshape(2, 3)}, r)
    np.testing.assert_array_equal(sf.load_file(r)["a"], np.arange(6.0).reshape(2, 3))


def test_model_file_loads_into_torch_module(tmp_path):
    m = Tiny(dtype=np.float64)
    p = str(tmp_path / "m.safetensors")
    ck.save_module(m, p, config={"width": 3})
    ref = torch.nn.Linear(4, 3, dtype=torch.float64)
    state = st_torch_load(p)
    ref.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    x = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_allclose(ref(torch.from_numpy(x)).detach().numpy(),
                               x @ m.params["head.weight"].T + m.params["head.bias"], rtol=1e-14)
    assert json.loads(sf.read_metadata(p)["config"]) == {"width": 3}


def test_load_into_round_trip_and_torch_written(tmp_path):
    src, dst = Tiny(seed=1), Tiny(seed=2)
    p = str(tmp_path / "m.safetensors")
    ck.save_module(src, p)
    ck.load_into(dst, p)
    assert_state_equal(dst, snapshot(src))
    q = str(tmp_path / "t.safetensors")                                # written by torch, float64
    st_torch_save({k: torch.from_numpy(v.astype(np.float64)) for k, v in src.state_dict().items()}, q)
    dst2 = Tiny(seed=3)
    ck.load_into(dst2, q)                                              # cast to the model's float32
    assert_state_equal(dst2, snapshot(src))
    with pytest.raises(TypeError, match="expected float32"):
        ck.load_into(Tiny(seed=3), q, exact_dtype=True)


@pytest.mark.parametrize("mutate, err, match", [
    (lambda s: s.pop("head.bias"), ValueError, r"missing keys \['head.bias'\]"),
    (lambda s: s.update(extra=np.zeros(2, np.float32)), ValueError, r"unexpected keys \['extra'\]"),
    (lambda s: s.update({"head.weight": np.zeros((4, 3), np.float32)}), ValueError,
     r"'head.weight' has shape \(4, 3\), expected \(3, 4\)"),
    (lambda s: s.update({"blocks.weight": np.zeros((3, 2), np.int64)}), TypeError,
     r"'blocks.weight' has dtype int64, expected a floating dtype"),
])
def test_wrong_names_shapes_dtypes_leave_module_unchanged(tmp_path, mutate, err, match):
    state = snapshot(Tiny(seed=1))
    mutate(state)
    p = str(tmp_path / "bad.safetensors")
    sf.save_file(state, p)
    m = Tiny(seed=2)
    before = snapshot(m)
    with pytest.raises(err, match=match):
        ck.load_into(m, p)
    assert_state_equal(m, before)


def _good_file(tmp_path):
    p = str(tmp_path / "good.safetensors")
    sf.save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=np.int64)},
                 p, metadata={"m": "x"})
    return p, open(p, "rb").read()


def _with_header(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


@pytest.mark.parametrize("case, match", [
    ("empty", r"header too small\) \(the file is 0 bytes"),
    ("truncated_data", r"not fully covered\) \(the file is 199 bytes; truncated"),
    ("truncated_header", "invalid header length"),
    ("trailing", "not fully covered"),
    ("huge_header_len", "header too large"),
    ("not_json", "invalid JSON in header"),
    ("bad_dtype", "unknown variant `F13`"),
    ("bf16", "tensor 'a' has a dtype NumPy cannot represent"),
    ("bad_shape", "integer `-3`, expected usize"),
    ("size_mismatch", "invalid shape, data type, or offset"),
    ("gap", "invalid offset for tensor `a`"),
    ("overlap", "invalid offset for tensor `a`"),
    ("bad_metadata", "integer `5`, expected a string"),
    ("list_metadata", "sequence, expected a map"),
    ("nested", "recursion limit exceeded"),
    ("zip", "ZIP archive"),
    ("pickle", "Python pickle"),
    ("npy", "NumPy .npy"),
])
def test_corrupt_truncated_foreign_files(tmp_path, case, match):
    p, raw = _good_file(tmp_path)
    n = int.from_bytes(raw[:8], "little")
    f4 = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    data24 = bytes(24)
    deep = b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    bad = {
        "empty": b"",
        "truncated_data": raw[:-1],
        "truncated_header": raw[:8 + n // 2],
        "trailing": raw + b"\0",
        "huge_header_len": (2**40).to_bytes(8, "little") + raw[8:],
        "not_json": (8).to_bytes(8, "little") + b"{abcdefg" + data24,
        "bad_dtype": _with_header({"a": {**f4, "dtype": "F13"}}, data24),
        "bf16": _with_header({"a": {**f4, "dtype": "BF16", "data_offsets": [0, 12]}}, bytes(12)),
        "bad_shape": _with_header({"a": {**f4, "shape": [2, -3]}}, data24),
        "size_mismatch": _with_header({"a": {**f4, "data_offsets": [0, 20]}}, bytes(20)),
        "gap": _with_header({"a": {**f4, "data_offsets": [4, 28]}}, bytes(28)),
        "overlap": _with_header({"a": {**f4, "data_offsets": [0, 24]},
                                 "b": {**f4, "shape": [3], "data_offsets": [0, 12]}}, data24),
        "bad_metadata": _with_header({"__metadata__": {"step": 5}, "a": f4}, data24),
        "list_metadata": _with_header({"__metadata__": ["step"], "a": f4}, data24),
        "nested": len(deep).to_bytes(8, "little") + deep,
        "zip": b"PK\x03\x04" + os.urandom(100),
        "pickle": b"\x80\x04\x95" + os.urandom(100),
        "npy": b"\x93NUMPY\x01\x00" + os.urandom(100),
    }[case]
    with open(p, "wb") as f:
        f.write(bad)
    with pytest.raises(ValueError, match=match) as err:
        sf.load_file(p)
    assert str(err.value).startswith(p + ": ")                          # names the file
    m = Tiny()
    before = snapshot(m)
    with pytest.raises(ValueError):
        ck.load_into(m, p)
    assert_state_equal(m, before)


def test_a_valid_file_is_never_taken_for_a_foreign_one(tmp_path):
    """A header length whose first byte is 0x80 (the pickle magic) is still a safetensors file."""
    p = str(tmp_path / "a.safetensors")
    for width in range(1, 200):                                       # some header is 0x80 long
        sf.save_file({"w" * width: np.ones(2, np.float32)}, p, metadata={"k": "v"})
        if open(p, "rb").read(1) == b"\x80":
            break
    assert open(p, "rb").read(1) == b"\x80"
    assert sf.load_file(p)["w" * width].tolist() == [1.0, 1.0] and sf.read_metadata(p) == {"k": "v"}


def test_a_huge_declared_header_is_refused_without_reading_it(tmp_path):
    p = str(tmp_path / "liar.safetensors")
    with open(p, "wb") as f:                                          # 168 bytes claiming 95 MB
        f.write((95_000_000).to_bytes(8, "little") + b"{" + bytes(159))
    with pytest.raises(ValueError, match="invalid header length.*168 bytes"):
        sf.read_metadata(p)


def test_a_folder_or_a_missing_path_is_named(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a folder, expected a safetensors file"):
        sf.load_file(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.safetensors does not exist"):
        sf.load_file(str(tmp_path / "nope.safetensors"))


def test_real_torch_pickle_is_refused_clearly(tmp_path):
    p = str(tmp_path / "model.pt")
    torch.save({"w": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="never unpickles"):
        sf.load_file(p)


def test_bad_inputs_to_save(tmp_path):
    p = str(tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="str -> str"):
        sf.save_file({"a": np.zeros(2)}, p, metadata={"step": 3})
    with pytest.raises(TypeError, match="complex128"):
        sf.save_file({"a": np.zeros(2, complex)}, p)
    with pytest.raises(ValueError, match="__metadata__"):
        sf.save_file({"__metadata__": np.zeros(2)}, p)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- atomic write
def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    p = str(tmp_path / "ck.safetensors")
    sf.save_file({"a": np.ones(3)}, p)
    old = open(p, "rb").read()

    def boom(fd):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        sf.save_file({"a": np.zeros(1000)}, p)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.safetensors"]
    assert open(p, "rb").read() == old

    def fail_midway(f):
        f.write(b"partial")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sf.atomic_write(p, fail_midway)
    assert os.listdir(tmp_path) == ["ck.safetensors"] and open(p, "rb").read() == old


def test_atomic_write_success_leaves_only_target(tmp_path):
    p = str(tmp_path / "ck.safetensors")
    for k in range(3):
        sf.save_file({"a": np.full(3, k, np.float32)}, p)
    assert os.listdir(tmp_path) == ["ck.safetensors"]
    np.testing.assert_array_equal(sf.load_file(p)["a"], np.full(3, 2, np.float32))
    assert oct(os.stat(p).st_mode & 0o777) == oct(0o644)


# --------------------------------------------------------------------------- training state
def _grads(m, rng):
    for _, mod in m.named_modules():
        mod.grads = {k: rng.normal(size=v.shape).astype(v.dtype) for k, v in mod.params.items()}


@pytest.mark.parametrize("opt_cls", [AdamW, SGD])
def test_training_state_resume_is_exact(tmp_path, opt_cls):
    kw = dict(lr=0.05, weight_decay=0.01) | ({"momentum": 0.9} if opt_cls is SGD else {})
    m = Tiny()
    opt, ema = opt_cls(m, **kw), EMA(m, decay=0.9)
    rngs = {"data": np.random.default_rng(1), "noise": np.random.default_rng(2)}
    for _ in range(3):
        _grads(m, rngs["noise"]); opt.step(); ema.update(m)
    p = str(tmp_path / "state.safetensors")
    ck.save_training_state(p, m, opt, ema, step=3, rng=rngs, config={"depth": 2}, metadata={"note": "x"})
    for _ in range(4):                                                    # the uninterrupted run
        _grads(m, rngs["noise"]); opt.step(); ema.update(m)
    want_model, want_ema, want_draw = snapshot(m), ema.state_dict(), rngs["data"].random(3)

    m2 = Tiny(seed=9)
    opt2, ema2 = opt_cls(m2, **kw), EMA(m2, decay=0.9)
    rngs2 = {"data": np.random.default_rng(100), "noise": np.random.default_rng(200)}
    st = ck.load_training_state(p, m2, opt2, ema2, rng=rngs2)
    assert st.step == 3 and st.config == {"depth": 2} and st.metadata["note"] == "x"
    for _ in range(4):
        _grads(m2, rngs2["noise"]); opt2.step(); ema2.update(m2)
    assert_state_equal(m2, want_model)
    for k, v in want_ema.items():
        np.testing.assert_array_equal(ema2.shadow[k], v, err_msg=k)
    np.testing.assert_array_equal(rngs2["data"].random(3), want_draw)
    keys = st_torch_load(p).keys()                                        # still a plain safetensors file
    assert "model.head.weight" in keys and "optim.step" in keys and "ema.head.bias" in keys


def test_training_state_mismatch_touches_nothing(tmp_path):
    m = Tiny()
    opt = AdamW(m, lr=0.1)
    _grads(m, np.random.default_rng(0)); opt.step()
    p = str(tmp_path / "s.safetensors")
    ck.save_training_state(p, m, opt, EMA(m), step=1, rng=np.random.default_rng(0))

    wide = Tiny(seed=5, width=5)                                          # different shapes
    o2, e2, g2 = AdamW(wide, lr=0.1), EMA(wide), np.random.default_rng(42)
    before, g_before = snapshot(wide), g2.bit_generator.state
    with pytest.raises(ValueError, match=r"\[model\] entry .head.bias. has shape \(3,\), expected \(5,\)"):
        ck.load_training_state(p, wide, o2, e2, rng=g2)
    assert_state_equal(wide, before)
    assert o2.step_count == 0 and o2.state["exp_avg"] == {} and g2.bit_generator.state == g_before

    same = Tiny(seed=6)
    before = snapshot(same)
    with pytest.raises(ValueError, match="optimiser state of 'AdamW', expected 'SGD'"):
        ck.load_training_state(p, same, SGD(same, lr=0.1))
    with pytest.raises(ValueError, match="no RNG state named 'data'"):
        ck.load_training_state(p, same, rng={"data": np.random.default_rng(0)})
    with pytest.raises(ValueError, match="'MT19937', expected|was a 'PCG64', expected 'MT19937'"):
        ck.load_training_state(p, same, rng=np.random.Generator(np.random.MT19937(0)))
    assert_state_equal(same, before)

    q = str(tmp_path / "model_only.safetensors")
    ck.save_module(m, q)
    with pytest.raises(ValueError, match="not a training-state checkpoint"):
        ck.load_training_state(q, same)


def test_bad_optimizer_section_leaves_model_untouched(tmp_path):
    m = Tiny()
    opt = AdamW(m, lr=0.1)
    _grads(m, np.random.default_rng(0)); opt.step()
    p = str(tmp_path / "s.safetensors")
    ck.save_training_state(p, m, opt, EMA(m), step=1)
    tensors, meta = sf.load_file_with_metadata(p)
    tensors["optim.exp_avg.head.weight"] = np.zeros((4, 3), np.float32)   # model section is fine
    sf.save_file(tensors, p, metadata=meta)
    other = Tiny(seed=4)
    o2, e2 = AdamW(other, lr=0.1), EMA(other)
    before, ema_before = snapshot(other), e2.state_dict()
    with pytest.raises(ValueError, match=r"optim.*exp_avg.head.weight' has shape \(4, 3\), expected \(3, 4\)"):
        ck.load_training_state(p, other, o2, e2)
    assert_state_equal(other, before)
    for k, v in ema_before.items():
        np.testing.assert_array_equal(e2.shadow[k], v)


# --------------------------------------------------------------------------- files from before
DATA = os.path.join(os.path.dirname(__file__), "data")


def _parse_by_hand(path):
    """The format read with json + np.frombuffer alone (independent of the library)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dt = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    return {k: np.frombuffer(raw[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]],
                             dtype=dt[e["dtype"]]).reshape(e["shape"]) for k, e in header.items()}, meta


def test_files_written_by_the_earlier_numpy_writer_still_load():
    from vca_ref.models import create_vit
    fresh = lambda: create_vit("tiny-digits", seed=0, depth=1, dim=8, num_heads=2, mlp_ratio=1.0)
    model_path = os.path.join(DATA, "legacy_vit_model.safetensors")
    want, want_meta = _parse_by_hand(model_path)
    m = fresh()
    assert ck.load_into(m, model_path) == want_meta == {"config": '{"fixture": "legacy"}'}
    assert_state_equal(m, want)

    state_path = os.path.join(DATA, "legacy_vit_state.safetensors")
    want, _ = _parse_by_hand(state_path)
    m2 = fresh()
    opt, ema, rng = AdamW(m2, lr=0.01), EMA(m2, decay=0.9), {"data": np.random.default_rng(0)}
    st = ck.load_training_state(state_path, m2, opt, ema, rng=rng)
    assert st.step == 2 and st.config == {"fixture": "legacy"}
    assert json.loads(st.metadata["run_state"]) == {"epoch": 1}
    assert_state_equal(m2, {k[len("model."):]: v for k, v in want.items() if k.startswith("model.")})
    for k, v in ema.state_dict().items():
        np.testing.assert_array_equal(v, want["ema." + k], err_msg=k)
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, want["optim." + k], err_msg=k)
    assert rng["data"].random() == np.random.default_rng([7, 1]).random()


def test_non_finite_tensors_are_refused_and_nothing_is_filled(tmp_path):
    src = Tiny(seed=1)
    src.params["head.bias"][1] = np.nan
    p = str(tmp_path / "m.safetensors")
    ck.save_module(src, p)
    dst = Tiny(seed=2)
    before = snapshot(dst)
    with pytest.raises(ValueError, match=r"m.safetensors entry 'head.bias' holds NaN or inf values \(1 of 3\)"):
        ck.load_into(dst, p)
    assert_state_equal(dst, before)
    opt = AdamW(src, lr=0.1)
    _grads(src, np.random.default_rng(0)); opt.step()
    q = str(tmp_path / "s.safetensors")
    ck.save_training_state(q, src, opt, step=1)
    with pytest.raises(ValueError, match="'model.head.bias' holds NaN or inf"):
        ck.load_training_state(q, dst, AdamW(dst, lr=0.1))
    assert_state_equal(dst, before)
