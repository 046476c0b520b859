"""``torchrun -m vca_ref.pytorch.train``: two CPU processes (gloo) equal one process on the combined
batch, and the checkpoint they write is a run folder the NumPy package loads.

Tolerance: 1e-9 (float64).  The two runs differ only in the order of the gradient sums (DDP
averages two half-batch means, one process takes one mean), ~1e-16 relative per step; a few AdamW
steps leave that at ~1e-13.  A wrong sampler split, an unscaled gradient or a different batch
would be off by > 1e-4.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pytorch_env import stand_in_torchvision  # noqa: E402

stand_in_torchvision()
pytest.importorskip("timm")

from vca_ref.cli import main as cli_main  # noqa: E402
from vca_ref.io.checkpoint import load_file, load_into  # noqa: E402
from vca_ref.models import TinyDiT, TinyViT  # noqa: E402
from vca_ref.pytorch import load_run  # noqa: E402
from vca_ref.pytorch.checkpoint import model_config  # noqa: E402
from vca_ref.pytorch.train import main as train_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def numpy_outputs_equal(run_dir: str, kind: str) -> float:
    """Largest |NumPy model - PyTorch model| output difference, both loaded from ``run_dir``."""
    tmodel, cfg = load_run(run_dir)
    ref = (TinyViT if kind == "vit" else TinyDiT)(model_config(cfg))
    load_into(ref, os.path.join(run_dir, "model.safetensors"))
    rng = np.random.default_rng(0)
    c = ref.config
    x = rng.standard_normal((3, c.in_chans, c.img_size, c.img_size))
    args = (x,) if kind == "vit" else (x, rng.uniform(0, 999, 3), rng.integers(0, c.num_classes, 3))
    with torch.no_grad():
        y = tmodel(*(torch.from_numpy(a) for a in args)).numpy()
    return float(np.abs(ref.forward(*args) - y).max())


@pytest.mark.slow
def test_two_processes_equal_one_on_the_combined_batch(tmp_path):
    init = str(tmp_path / "numpy-run")
    assert cli_main(["train-vit", "--dataset", "digits", "--model", "tiny-digits", "--epochs", "1",
                     "--dtype", "float64", "--set", "depth=2", "--batch-size", "256", "--out-dir", init,
                     "--no-progress"]) == 0
    common = ["--init-from", init, "--max-steps", "3", "--batch-size", "32"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert train_main(common + ["--out-dir", one]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), "-m", "vca_ref.pytorch.train",
           *common, "--out-dir", two]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b, start = (load_file(os.path.join(d, "model.safetensors")) for d in (one, two, init))
    assert sorted(a) == sorted(b)
    assert max(np.abs(a[k] - b[k]).max() for k in a) < TOL
    assert max(np.abs(a[k] - start[k]).max() for k in a) > 1e-4          # the steps did train
    assert '"processes": 2' in done.stdout
    assert numpy_outputs_equal(two, "vit") < 1e-10


@pytest.mark.slow
def test_dit_from_scratch_writes_a_run_the_numpy_package_loads(tmp_path):
    out = str(tmp_path / "dit")
    assert train_main(["--task", "dit", "--dtype", "float64", "--max-steps", "2", "--batch-size", "16",
                       "--out-dir", out]) == 0
    assert numpy_outputs_equal(out, "dit") < 1e-10
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_main(["--task", "dit", "--max-steps", "1", "--out-dir", out])
