"""Faults against a training run: a SIGKILL in every phase of an epoch, a full disk (simulated, and
a real tiny tmpfs where the machine allows private mounts), a read-only folder, divergence in the
weights, a gradient or a layer's input.  After each, ``--resume`` must give
every epoch exactly once and weights bit-identical to the uninterrupted run.

The kills are real: a child process runs ``vca-ref train-vit`` with one function wrapped so that
it sends SIGKILL to its own process at a chosen call (no hook in the product code).  The run is
a one-block ViT on the 8x8 digits with 6 steps per epoch, so each child lives a few seconds.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from vca_ref.cli import main
from vca_ref.experiments import classify
from vca_ref.experiments.runner import CHECKPOINT, FINAL_MODEL, METRICS, TrainingDiverged
from vca_ref.io import safetensors_format
from vca_ref.io.checkpoint import load_file

STEPS = 6                                                   # ceil(1437 / 256)
ARGS = ["train-vit", "--dataset", "digits", "--model", "tiny-digits", "--epochs", "3",
        "--batch-size", "256", "--no-progress", "--set", "depth=1", "--set", "dim=16"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run in the child: wrap one function so that its n-th call kills the process (phase, n, argv).
CHILD = r"""
import os, signal, sys
from vca_ref import cli
from vca_ref.experiments import classify, runner
from vca_ref.io import safetensors_format
from vca_ref.train import optim
phase, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = [0]
def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
def hit():
    calls[0] += 1
    return calls[0] == n
def wrap(owner, name, before=True):
    real = getattr(owner, name)
    def f(*a, **k):
        if before and hit():
            die()
        out = real(*a, **k)
        if not before and hit():
            die()
        return out
    setattr(owner, name, f)
if phase == "forward":                   # inside the forward pass: the loss of the n-th step
    wrap(classify, "cross_entropy_forward")
elif phase == "backward":                # backward done, before clipping and the step
    wrap(classify, "clip_gradients")
elif phase == "step":                    # right after the n-th optimiser update
    wrap(optim.AdamW, "step", before=False)
elif phase == "log":                     # half of the n-th metrics line written
    real_append = runner.MetricsLog.append
    def append(self, record):
        if hit():
            line = runner.json.dumps(record)
            with open(self.path, "a") as fh:
                fh.write(line[: len(line) // 2])
            die()
        real_append(self, record)
    runner.MetricsLog.append = append
elif phase == "checkpoint":              # half of the n-th checkpoint's bytes in its temp file
    real_write = safetensors_format.atomic_write
    def atomic_write(path, data):
        if hit():
            def half(fh):
                fh.write(data[: len(data) // 2]); fh.flush(); die()
            return real_write(path, half)
        return real_write(path, data)
    safetensors_format.atomic_write = atomic_write
sys.exit(cli.main(argv))
"""


def _env():
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _epochs(run_dir) -> list:
    with open(os.path.join(run_dir, METRICS)) as f:
        return [json.loads(line).get("epoch", "summary") for line in f]


def _same_weights(a_dir, b_dir) -> None:
    for name in (FINAL_MODEL, CHECKPOINT):
        a, b = load_file(os.path.join(a_dir, name)), load_file(os.path.join(b_dir, name))
        assert a.keys() == b.keys(), name
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")


def _history(run_dir) -> list:
    keep = ("epoch", "step", "train_loss", "test_acc", "lr")
    with open(os.path.join(run_dir, METRICS)) as f:
        return [{k: r.get(k) for k in keep} for r in map(json.loads, f) if r["kind"] == "epoch"]


def _no_temps(run_dir) -> None:
    assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp")], os.listdir(run_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    out = str(tmp_path_factory.mktemp("ref") / "run")
    assert main(ARGS + ["--out-dir", out]) == 0
    assert _epochs(out) == [1, 2, 3, "summary"]
    return out


# --------------------------------------------------------------------------- SIGKILL
@pytest.mark.parametrize("phase, n", [
    ("forward", 3),                      # epoch 1: no checkpoint yet, the run starts over
    ("forward", STEPS + 3),              # epoch 2
    ("backward", STEPS + 4),
    ("step", STEPS + 5),
    ("log", 2),                          # epoch 2's checkpoint is written, its line half
    ("checkpoint", 2),                   # epoch 2's checkpoint half-written into a temp file
    ("checkpoint", 4),                   # the final model.safetensors half-written
    ("log", 4),                          # the summary line half-written
])
def test_sigkill_in_every_phase_then_resume_is_exact(tmp_path, reference, phase, n):
    out = str(tmp_path / "run")
    child = subprocess.run([sys.executable, "-c", CHILD, phase, str(n), *ARGS, "--out-dir", out],
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr                 # killed, not finished
    assert not os.path.exists(os.path.join(out, "summary.json"))
    if phase == "checkpoint":
        assert [f for f in os.listdir(out) if f.endswith(".tmp")]   # the torn temp file is left
    assert main(ARGS + ["--out-dir", out]) == 2                 # a run is there: not replaced
    assert main(ARGS + ["--out-dir", out, "--resume"]) == 0
    assert _epochs(out) == [1, 2, 3, "summary"]                 # each epoch exactly once
    assert _history(out) == _history(reference)
    _same_weights(out, reference)
    _no_temps(out)


def test_a_checkpoint_without_history_resumes_from_metrics_cut_at_its_epoch(tmp_path, reference):
    """Checkpoints written before the history moved into them: ``metrics.jsonl`` is cut to the
    checkpoint's epoch (the old order logged an epoch before its checkpoint landed)."""
    out = str(tmp_path / "run")
    assert main(ARGS + ["--out-dir", out, "--stop-after", "1"]) == 0
    path = os.path.join(out, CHECKPOINT)
    tensors, meta = safetensors_format.load_file_with_metadata(path)
    del meta["history"]
    safetensors_format.save_file(tensors, path, metadata=meta)
    with open(os.path.join(out, METRICS), "a") as f:              # epoch 2 logged, never saved
        f.write(json.dumps({"kind": "epoch", "epoch": 2, "step": 2 * STEPS}) + "\n")
    assert main(ARGS + ["--out-dir", out, "--resume"]) == 0
    assert _epochs(out) == [1, 2, 3, "summary"]
    assert _history(out) == _history(reference)
    _same_weights(out, reference)


# --------------------------------------------------------------------------- full disk
def test_full_disk_during_a_checkpoint_is_one_error_and_resumes_exactly(tmp_path, reference,
                                                                       monkeypatch, capsys):
    out = str(tmp_path / "run")
    real_write, calls = safetensors_format.atomic_write, [0]

    def full_on_second_checkpoint(path, data):
        calls[0] += 1
        if calls[0] != 2:
            return real_write(path, data)

        def fill(f):                     # what write(2) does on a full disk, part-way through
            f.write(data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, fill)

    monkeypatch.setattr(safetensors_format, "atomic_write", full_on_second_checkpoint)
    assert main(ARGS + ["--out-dir", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vca-ref train-vit: error: {os.path.join(out, CHECKPOINT)}: No space left on "
                   "device; free some space (a stopped run continues with --resume)"]
    _no_temps(out)
    assert _epochs(out) == [1]                                  # epoch 2 never counted
    monkeypatch.undo()
    assert main(ARGS + ["--out-dir", out, "--resume"]) == 0
    assert _epochs(out) == [1, 2, 3, "summary"]
    _same_weights(out, reference)


def test_a_really_full_disk_then_resume_elsewhere_is_exact(tmp_path, reference):
    """A tmpfs that holds one checkpoint but not a second one beside it (a private mount,
    where user namespaces are allowed): epoch 2's checkpoint write meets a real ENOSPC."""
    if not _can_mount():
        pytest.skip("no user namespaces here: the simulated full disk above covers the code path")
    ckpt = os.path.getsize(os.path.join(reference, CHECKPOINT))
    size_kb = (ckpt + ckpt // 2) // 1024 + 32
    disk, saved = str(tmp_path / "disk"), str(tmp_path / "saved")
    os.mkdir(disk)
    script = ('mount -t tmpfs -o size="$1"k tmpfs "$0" && shift && "$@"; rc=$?; '
              f'cp -a "$0/run" "{saved}"; exit $rc')
    child = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script, disk,
                            str(size_kb), sys.executable, "-m", "vca_ref", *ARGS, "--out-dir",
                            os.path.join(disk, "run")],
                           env=_env(), capture_output=True, text=True, timeout=300)
    lines = child.stderr.strip().splitlines()
    assert child.returncode == 2 and len(lines) == 1, child.stderr
    assert lines[0] == (f"vca-ref train-vit: error: {os.path.join(disk, 'run', CHECKPOINT)}: No space "
                        "left on device; free some space (a stopped run continues with --resume)")
    _no_temps(saved)
    assert _epochs(saved) == [1]
    assert main(ARGS + ["--out-dir", saved, "--resume"]) == 0      # moved to a roomier disk
    assert _epochs(saved) == [1, 2, 3, "summary"]
    _same_weights(saved, reference)


# --------------------------------------------------------------------------- read-only folder
def _can_mount() -> bool:
    """Whether this machine lets a process mount a tmpfs in its own user + mount namespace."""
    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", 'mount -t tmpfs tmpfs "$0"',
         tempfile.gettempdir()], capture_output=True).returncode == 0


def _read_only_runner(folder):
    """A command prefix under which ``folder`` is really read-only, and the expected reason.

    Root ignores permission bits, so root (or anyone allowed a user namespace) gets ``folder``
    mounted as a read-only tmpfs in a private mount namespace (gone when the command ends);
    other users get ``chmod 555``.  None when neither is possible here.
    """
    if _can_mount():
        return (["unshare", "--map-root-user", "--mount", "sh", "-c",
                 'mount -t tmpfs -o ro,size=64k tmpfs "$0" && exec "$@"', folder],
                "Read-only file system")
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return [], "Permission denied"
    return None, None


def test_read_only_folder_is_named_and_left_untouched(tmp_path):
    ro = str(tmp_path / "ro")
    os.mkdir(ro)
    prefix, reason = _read_only_runner(ro)
    if prefix is None:
        pytest.skip("no way to make a folder read-only for root here (no user namespaces)")
    child = subprocess.run(prefix + [sys.executable, "-m", "vca_ref", *ARGS, "--epochs", "1",
                                     "--out-dir", ro], env=_env(), capture_output=True, text=True,
                           timeout=300)
    os.chmod(ro, 0o755)
    lines = child.stderr.strip().splitlines()
    assert child.returncode == 2 and len(lines) == 1, child.stderr
    assert lines[0] == f"vca-ref train-vit: error: {ro}: cannot create files in this folder ({reason})"
    assert os.listdir(ro) == []


# --------------------------------------------------------------------------- divergence
def _poison_after(monkeypatch, n, what):
    """Make the n-th optimiser step (counted from 1) leave a NaN in the weights, loss or grads."""
    calls = [0]
    if what == "weights":
        real = classify.AdamW.step

        def step(self):
            real(self)
            calls[0] += 1
            if calls[0] == n:
                dict(self.module.named_modules())["patch_embed."].params["proj.weight"][0] = np.nan
        monkeypatch.setattr(classify.AdamW, "step", step)
    else:
        real = classify.clip_gradients

        def clip(model, max_norm):
            calls[0] += 1
            if calls[0] == n:
                dict(model.named_modules())["head."].grads["weight"][0, 0] = np.inf
            return real(model, max_norm)
        monkeypatch.setattr(classify, "clip_gradients", clip)


@pytest.mark.parametrize("what, seen", [
    ("weights", r"a layer's input became non-finite \(x contains NaN or inf values"),
    ("grads", "the gradient norm became inf"),
])
def test_divergence_is_reported_with_step_epoch_and_the_kept_checkpoint(tmp_path, monkeypatch,
                                                                        capsys, what, seen):
    out = str(tmp_path / "run")
    _poison_after(monkeypatch, STEPS + 2, what)
    assert main(ARGS + ["--out-dir", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    step = STEPS + 3 if what == "weights" else STEPS + 2       # seen by the next forward / at once
    assert len(err) == 1 and err[0].startswith(
        f"vca-ref train-vit: error: training diverged at step {step} (epoch 2): "), err
    assert re.search(seen, err[0]) and f"(epoch 1) is kept at {os.path.join(out, CHECKPOINT)}" in err[0]
    state = load_file(os.path.join(out, CHECKPOINT))
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")
    assert _epochs(out) == [1]


def test_resume_refuses_a_checkpoint_with_nan_weights(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(ARGS + ["--out-dir", out, "--stop-after", "1"]) == 0
    path = os.path.join(out, CHECKPOINT)
    tensors, meta = safetensors_format.load_file_with_metadata(path)
    tensors["model.head.bias"][3] = np.inf
    safetensors_format.save_file(tensors, path, metadata=meta)
    capsys.readouterr()
    assert main(ARGS + ["--out-dir", out, "--resume"]) == 2
    assert ("'model.head.bias' holds NaN or inf values (1 of 10): the run that wrote it had "
            "diverged") in capsys.readouterr().err
    assert _epochs(out) == [1]                                  # nothing changed


def test_divergence_in_the_python_api_raises_training_diverged(tmp_path, monkeypatch):
    _poison_after(monkeypatch, 2, "weights")
    cfg = classify.ViTTrainConfig(dataset="digits", model="tiny-digits", epochs=1, batch_size=256,
                                  progress=False, model_overrides={"depth": 1, "dim": 16},
                                  out_dir=str(tmp_path / "run"))
    with pytest.raises(TrainingDiverged, match=r"step 3 \(epoch 1\).*no checkpoint was written yet"):
        classify.train_vit(cfg)


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    from vca_ref.experiments.runner import Run
    from vca_ref.models import create_vit
    from vca_ref.train import AdamW
    cfg = classify.ViTTrainConfig(dataset="digits", model="tiny-digits", progress=False,
                                  model_overrides={"depth": 1, "dim": 16}, out_dir=str(tmp_path / "run"))
    model = create_vit("tiny-digits", depth=1, dim=16)
    opt, rngs = AdamW(model, lr=0.1), {"data": np.random.default_rng(0)}
    run = Run(cfg.out_dir, cfg)
    run.start(model, opt, rngs)
    dict(model.named_modules())["head."].params["bias"][2] = np.inf
    with pytest.raises(TrainingDiverged, match=r"step 1 \(epoch 1\): the weights 'head.bias' became "
                                               "non-finite.*no checkpoint was written yet"):
        run.end_epoch(model, opt, rngs, train_loss=1.0)
    assert sorted(os.listdir(cfg.out_dir)) == ["config.json", METRICS]
    assert _epochs(cfg.out_dir) == []
