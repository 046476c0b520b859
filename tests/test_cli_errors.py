"""Every user or system error of ``vca-ref`` is one line, ``vca-ref COMMAND: error: …``, exit 2,
naming the offending flag, value, file or folder and what is expected; no traceback unless
``--debug``; and nothing on disk changes.  One test per class of message."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

import numpy as np
import pytest

from vca_ref.cli import main
from vca_ref.experiments import data as data_module
from vca_ref.experiments.generate import DiTTrainConfig
from vca_ref.experiments.runner import CHECKPOINT, CONFIG, FINAL_MODEL, METRICS, MetricsLog, write_json
from vca_ref.io.checkpoint import save_module
from vca_ref.models import create_dit

VIT = ["train-vit", "--dataset", "digits", "--model", "tiny-digits", "--epochs", "1",
       "--batch-size", "256", "--no-progress", "--set", "depth=1", "--set", "dim=16"]


def one_error(capsys, argv, command=None) -> str:
    """Run the CLI, check exit 2 and one ``vca-ref CMD: error:`` line; return the message."""
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    prefix = f"vca-ref {command or argv[0]}: error: "
    assert rc == 2 and len(err) == 1 and err[0].startswith(prefix), (rc, err)
    return err[0][len(prefix):]


def snapshot(folder) -> dict:
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, f))}


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """A finished one-epoch ViT run (restored after each test that breaks it)."""
    out = str(tmp_path_factory.mktemp("cli") / "vit")
    assert main(VIT + ["--out-dir", out]) == 0
    return out


# --------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("extra, message", [
    (["--lr", "nan"], "argument --lr: must be a finite number in (0.0, inf), got nan"),
    (["--lr", "0"], "argument --lr: must be a finite number in (0.0, inf), got 0.0"),
    (["--min-lr", "-1"], "argument --min-lr: must be a finite number in [0.0, inf), got -1.0"),
    (["--warmup-epochs", "-1"], "argument --warmup-epochs: must be a finite number in [0.0, inf), got -1.0"),
    (["--label-smoothing", "2"], "argument --label-smoothing: must be a finite number in [0.0, 1.0), got 2.0"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (["--dtype", "float16"], "argument --dtype: must be one of ['float32', 'float64'], got 'float16'"),
    (["--optimizer", "adam"], "argument --optimizer: must be one of ['adamw', 'sgd'], got 'adam'"),
    (["--device", "tpu"], "argument --device: must be one of ['cpu', 'cuda'], got 'tpu'"),
    (["--model", "huge"], "argument --model: must be one of ['tiny-digits', 'tiny-mnist', 'tiny-mnist-p7'], got 'huge'"),
    (["--set", "widht=3"], "argument --set: has unknown ViTConfig field 'widht'; expected one of ['img_size',"),
    (["--set", "attention=mhsa"], "argument --set: sets 'attention': use --attention (the run's own option) instead"),
    (["--set", "depth"], "argument --set: expected KEY=VALUE, got 'depth'"),
    (["--set", "mlp_ratio=nan"], "argument --set: sets mlp_ratio='nan'; expected a finite number (the default is 2.0)"),
    (["--set", "use_dwconv=1"], "argument --set: sets use_dwconv=1; expected true or false (the default is True)"),
])
def test_bad_values_name_the_flag_and_what_is_expected(tmp_path, capsys, vit_run, extra, message):
    before = snapshot(vit_run)
    for out in (str(tmp_path / "new"), vit_run):              # a new folder, or a finished run
        assert one_error(capsys, VIT + extra + ["--out-dir", out, "--overwrite"]).startswith(message)
    assert not os.path.exists(tmp_path / "new") and snapshot(vit_run) == before


def test_bad_dit_values(tmp_path, capsys):
    msg = one_error(capsys, ["train-dit", "--ema-decay", "1.5", "--out-dir", str(tmp_path / "d")])
    assert msg == "argument --ema-decay: must be a finite number in [0.0, 1.0], got 1.5"
    msg = one_error(capsys, ["train-dit", "--objective", "score", "--out-dir", str(tmp_path / "d")])
    assert msg == "argument --objective: must be one of ['ddpm', 'flow'], got 'score'"
    assert not os.path.exists(tmp_path / "d")


@pytest.mark.parametrize("extra, message", [
    (["--cfg-scale", "nan"], "argument --cfg-scale: expected a finite number, got 'nan'"),
    (["--per-class", "0"], "argument --per-class: expected an integer >= 1, got '0'"),
    (["--seed", "-2"], "argument --seed: expected an integer >= 0, got '-2'"),
])
def test_sample_options_are_checked_by_the_parser(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        main(["sample", str(tmp_path)] + extra)
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "vca-ref sample: error: " + message


# --------------------------------------------------------------------------- the run folder
def test_an_existing_run_is_never_replaced_silently(tmp_path, capsys, vit_run):
    before = snapshot(vit_run)
    msg = one_error(capsys, VIT + ["--out-dir", vit_run])
    assert msg == (f"{vit_run} already holds a run ({CONFIG}, {METRICS}, {CHECKPOINT}, {FINAL_MODEL}, "
                   "summary.json); pass --resume to continue it, or --overwrite to delete it and start again")
    assert one_error(capsys, VIT + ["--out-dir", vit_run, "--resume", "--overwrite"]) == (
        "--resume continues a run and --overwrite starts it again: give one")
    msg = one_error(capsys, VIT + ["--out-dir", vit_run, "--resume", "--attention", "mhsa"])
    assert msg.startswith(f"--resume: {vit_run} was made with different settings (attention: 'vca' "
                          "in the run, 'mhsa' now); resume with the run's settings")
    assert snapshot(vit_run) == before
    assert one_error(capsys, VIT + ["--out-dir", str(tmp_path), "--resume"]) == (
        f"--resume: {tmp_path} holds no run to continue (no {CHECKPOINT})")


def test_paths_that_are_files_or_folders_in_the_wrong_place(tmp_path, capsys, vit_run):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert one_error(capsys, VIT + ["--out-dir", str(f)]) == f"--out-dir {f} is a file, expected a run folder"
    assert one_error(capsys, VIT + ["--out-dir", str(f / "run")]) == (
        f"{f / 'run'}: cannot create files in this folder (Not a directory)")
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).mkdir()                                 # a folder where the checkpoint goes
    assert one_error(capsys, VIT + ["--out-dir", str(run), "--resume"]) == (
        f"{run / CHECKPOINT} is a folder, expected a safetensors file")
    assert one_error(capsys, ["compare", "--out-dir", str(f)]) == f"{f} is a file, expected a folder"
    assert one_error(capsys, ["sample", vit_run, "--out", str(tmp_path)]) == (
        f"argument --out: expected the path of a .png file, got {str(tmp_path)!r}")
    assert one_error(capsys, ["sample", str(tmp_path / "none")]) == (
        f"{tmp_path / 'none'} is not a run folder (it does not exist or is a file)")
    assert one_error(capsys, ["sample", vit_run]) == (
        f"{vit_run} holds a train-vit run ({os.path.join(vit_run, CONFIG)} has ViTTrainConfig fields); "
        "expected a train-dit run")


# --------------------------------------------------------------------------- damaged files
def _dit_folder(tmp_path, nan=False) -> str:
    run = str(tmp_path / "dit")
    os.mkdir(run)
    over = {"depth": 1, "dim": 16}
    write_json(os.path.join(run, CONFIG), asdict(DiTTrainConfig(model_overrides=over, out_dir=run)))
    model = create_dit("tiny-digits", **over)
    if nan:
        next(mod for _, mod in model.named_modules() if "weight" in mod.params).params["weight"][...] = np.nan
    save_module(model, os.path.join(run, FINAL_MODEL))
    return run


def test_damaged_files_are_named(tmp_path, capsys, vit_run):
    run = _dit_folder(tmp_path)
    cfg = os.path.join(run, CONFIG)
    with open(cfg, "w") as fh:
        fh.write('{"epochs": 3,')
    assert one_error(capsys, ["sample", run]).startswith(f"{cfg} is not valid JSON (")
    write_json(cfg, {"epochs": 3, "colour": "red"})
    assert one_error(capsys, ["sample", run]).startswith(f"{cfg}: unknown DiTTrainConfig fields ['colour']")

    ckpt = os.path.join(vit_run, CHECKPOINT)
    good = open(ckpt, "rb").read()
    try:
        for raw, says in ((b"\x80\x04\x95" + bytes(64), "it looks like a Python pickle, and vca_ref never unpickles"),
                          (good[:-7], "not a valid safetensors file")):
            with open(ckpt, "wb") as fh:
                fh.write(raw)
            msg = one_error(capsys, VIT + ["--out-dir", vit_run, "--resume", "--epochs", "2"])
            assert msg.startswith(f"{ckpt}: ") and says in msg, msg
    finally:
        with open(ckpt, "wb") as fh:
            fh.write(good)

    metrics = MetricsLog(str(tmp_path / METRICS))
    with open(metrics.path, "w") as fh:
        fh.write('{"kind": "epoch", "epoch": 1}\n{"kind": ep\n{"kind": "epoch", "epoch": 2}\n{"kind"')
    with pytest.raises(ValueError, match=f"{metrics.path} line 2 is not valid JSON; the file is damaged"):
        metrics.read()


def test_non_finite_weights_are_refused_for_sampling(tmp_path, capsys):
    run = _dit_folder(tmp_path, nan=True)
    msg = one_error(capsys, ["sample", run, "--steps", "1", "--per-class", "1"])
    assert msg.startswith(f"{os.path.join(run, FINAL_MODEL)} entry ") and "holds NaN or inf values" in msg


# --------------------------------------------------------------------------- environment
def test_a_missing_optional_package_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)     # "not installed"
    data_module._raw_digits.cache_clear()
    try:
        msg = one_error(capsys, VIT + ["--out-dir", str(tmp_path / "r")])
    finally:
        data_module._raw_digits.cache_clear()
    assert msg == ("the 'digits' dataset needs scikit-learn, which is not installed; install it "
                   "with pip install 'vca_ref[train]'")
    assert not os.path.exists(tmp_path / "r")


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(VIT + ["--lr", "nan", "--out-dir", str(tmp_path), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("vca-ref train-vit: error: argument --lr:")


# --------------------------------------------------------------------------- the same checks in Python
def test_timesteps_labels_and_guidance_are_checked_by_name():
    from vca_ref.diffusion.cfg import guided_model
    m = create_dit("tiny-digits", depth=1, dim=16)
    x, y = np.zeros((2, 1, 8, 8), np.float32), np.array([1, 2])
    with pytest.raises(ValueError, match="t contains NaN or inf timesteps"):
        m.forward(x, np.array([1.0, np.nan]), y)
    with pytest.raises(TypeError, match="t must hold real timesteps .* got dtype complex128"):
        m.forward(x, np.array([1 + 1j, 2.0]), y)
    with pytest.raises(TypeError, match="y must hold integer class labels, got dtype float64"):
        m.forward(x, np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="the guidance scale must be a finite number, got nan"):
        guided_model(m.forward, float("nan"), null_class=10)
    assert json.dumps(asdict(DiTTrainConfig()))                 # the defaults are valid
