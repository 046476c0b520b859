"""TinyViT training runs: it learns, resume is exact, NaN stops cleanly, the CLI works."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vca_ref.io.checkpoint import load_file
from vca_ref.cli import main
from vca_ref.experiments import classify
from vca_ref.experiments.classify import ViTTrainConfig, train_vit
from vca_ref.experiments.runner import CHECKPOINT, FINAL_MODEL, TrainingDiverged

TINY = dict(dataset="digits", model="tiny-digits", batch_size=64, augment_shift=0, progress=False)


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("attention", ["vca", "mhsa"])
def test_short_run_learns(tmp_path, attention):
    s = train_vit(ViTTrainConfig(epochs=8, lr=5e-3, attention=attention, out_dir=str(tmp_path), **TINY))
    losses = [h["train_loss"] for h in s["history"]]
    assert losses[-1] < 0.7 * losses[0], losses             # the loss drops clearly
    assert s["test_acc"] > 0.5, s["test_acc"]                # chance is 0.1
    assert os.path.exists(tmp_path / FINAL_MODEL) and os.path.exists(tmp_path / CHECKPOINT)
    assert [r["kind"] for r in _metrics(tmp_path)] == ["epoch"] * 8 + ["summary"]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    cfg = dict(epochs=3, lr=3e-3, **TINY)
    full = train_vit(ViTTrainConfig(out_dir=str(tmp_path / "a"), **cfg))
    stopped = train_vit(ViTTrainConfig(out_dir=str(tmp_path / "b"), **cfg), stop_after=1)
    assert stopped == {"kind": "stopped", "epoch": 1, "step": stopped["step"]}
    assert not os.path.exists(tmp_path / "b" / FINAL_MODEL)
    resumed = train_vit(ViTTrainConfig(out_dir=str(tmp_path / "b"), **cfg), resume=True)
    strip = lambda hs: [{k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k} for h in hs]
    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["test_acc"] == full["test_acc"]
    wa, wb = load_file(str(tmp_path / "a" / FINAL_MODEL)), load_file(str(tmp_path / "b" / FINAL_MODEL))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)   # bit for bit


def test_resume_refuses_a_different_configuration(tmp_path):
    train_vit(ViTTrainConfig(epochs=2, out_dir=str(tmp_path), **TINY), stop_after=1)
    with pytest.raises(ValueError, match=r"different settings \(lr: 0.005 in the run, 0.01 now\).*--overwrite"):
        train_vit(ViTTrainConfig(epochs=2, lr=1e-2, out_dir=str(tmp_path), **TINY), resume=True)


def test_resume_of_a_run_that_predates_a_config_field(tmp_path):
    """A run saved before a field existed resumes when the field is at its default."""
    from vca_ref.io import safetensors_format
    from vca_ref.experiments.runner import CONFIG
    train_vit(ViTTrainConfig(epochs=2, out_dir=str(tmp_path), **TINY), stop_after=1)
    path = str(tmp_path / CHECKPOINT)
    tensors, meta = safetensors_format.load_file_with_metadata(path)
    old = json.loads(meta["config"])
    assert old.pop("image_size") == 0
    meta["config"] = json.dumps(old)
    safetensors_format.save_file(tensors, path, metadata=meta)
    with open(tmp_path / CONFIG, "w") as f:
        json.dump(old, f)
    resumed = train_vit(ViTTrainConfig(epochs=2, out_dir=str(tmp_path), **TINY), resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    with pytest.raises(ValueError, match=r"different settings \(image_size: 0 in the run, 16 now\)"):
        train_vit(ViTTrainConfig(epochs=2, image_size=16, out_dir=str(tmp_path), **TINY), resume=True)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_vit(ViTTrainConfig(epochs=1, out_dir=str(tmp_path), **TINY), resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = ViTTrainConfig(epochs=3, out_dir=str(tmp_path), **TINY)
    steps_per_epoch = -(-1437 // 64)                      # 80 % of the 1,797 digits train
    real = classify.cross_entropy_forward
    calls = {"n": 0}

    def poisoned(logits, labels, smoothing):
        calls["n"] += 1
        loss, cache = real(logits, labels, smoothing)
        return (loss * np.nan if calls["n"] > steps_per_epoch + 3 else loss), cache

    monkeypatch.setattr(classify, "cross_entropy_forward", poisoned)
    with pytest.raises(TrainingDiverged, match=rf"diverged at step {steps_per_epoch + 4} \(epoch 2\): the loss "
                                               r"became nan.*finite checkpoint \(epoch 1\) is kept"):
        train_vit(cfg)
    state = load_file(str(tmp_path / CHECKPOINT))            # still a valid file ...
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")
    assert [r["epoch"] for r in _metrics(tmp_path)] == [1]   # ... from the last good epoch
    assert not os.path.exists(tmp_path / FINAL_MODEL)


def test_cli_train_vit_and_compare(tmp_path, capsys):
    rc = main(["train-vit", "--dataset", "digits", "--model", "tiny-digits", "--epochs", "1",
               "--out-dir", str(tmp_path / "run"), "--no-progress", "--set", "depth=1"])
    assert rc == 0
    cfg = json.load(open(tmp_path / "run" / "config.json"))
    assert cfg["model_overrides"] == {"depth": 1} and cfg["epochs"] == 1
    rc = main(["compare", "--dataset", "digits", "--model", "tiny-digits", "--epochs", "1",
               "--out-dir", str(tmp_path / "cmp"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| VCA |" in out and "| MHSA |" in out and "test accuracy" in out
    for f in ("table.md", "results.json", "curves.png"):
        assert os.path.getsize(tmp_path / "cmp" / f) > 0
    rows = json.load(open(tmp_path / "cmp" / "results.json"))["rows"]
    assert [r["attention"] for r in rows] == ["vca", "mhsa"]
    assert rows[0]["params"] > rows[1]["params"]            # VCA adds E+-, lambdas, norms, conv


def test_cli_errors_are_clear(tmp_path, capsys):
    rc = main(["train-vit", "--device", "cuda", "--out-dir", str(tmp_path), "--no-progress",
               "--dataset", "digits", "--model", "tiny-digits"])
    err = capsys.readouterr().err
    from vca_ref.backend import cuda_available
    if not cuda_available():
        assert rc == 2 and "device 'cuda' was requested but is not available" in err
    rc = main(["train-vit", "--model", "nope", "--out-dir", str(tmp_path), "--no-progress"])
    assert rc == 2 and "argument --model: must be one of ['tiny-digits'" in capsys.readouterr().err
    rc = main(["train-vit", "--dataset", "digits", "--model", "tiny-mnist", "--out-dir", str(tmp_path),
               "--no-progress"])
    assert rc == 2 and "expects 28x28 images" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train-vit", "train-dit", "sample", "compare"])
def test_cli_help_is_complete(command):
    out = subprocess.run([sys.executable, "-m", "vca_ref", command, "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "usage: vca-ref " + command in out
    if command in ("train-vit", "train-dit", "compare"):
        for flag in ("--epochs", "--lr", "--seed", "--device", "--out-dir"):
            assert flag in out, flag


def test_cli_train_dit_then_sample(tmp_path, capsys):
    run = str(tmp_path / "dit")
    rc = main(["train-dit", "--epochs", "1", "--out-dir", run, "--no-progress", "--set", "depth=1"])
    assert rc == 0 and "validation loss" in capsys.readouterr().out
    rc = main(["sample", run, "--per-class", "1", "--steps", "2", "--out", str(tmp_path / "g.png")])
    assert rc == 0 and "10 samples" in capsys.readouterr().out
    assert os.path.getsize(tmp_path / "g.png") > 0
    rc = main(["compare", "--task", "dit", "--label-smoothing", "0.2", "--out-dir", str(tmp_path)])
    assert rc == 2 and "do not apply to DiTTrainConfig" in capsys.readouterr().err
