"""The GPU benchmark: it skips with the reason (exit 0) where there is no GPU, and its whole
measuring -> table -> JSON pipeline runs on the NumPy + PyTorch-CPU stand-in.

The stand-in's times are CPU wall-clock times and are labelled so; nothing here asserts a speed
(the machine is shared) and nothing pretends to be a GPU result.  The GPU run itself is
``bash .ci/gpu`` on a CUDA machine (docs/gpu.md).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vca_ref import backend
from benchmarks import gpu
from benchmarks import main as bench_main
from benchmarks.layer import mhsa_macs, vca_macs

ROOT = Path(__file__).resolve().parents[1]
HAS_GPU = gpu.unavailable_reason() is None


# ----------------------------------------------------------------------------- skipping
@pytest.mark.skipif(HAS_GPU, reason="a CUDA device and PyTorch CUDA are present: no skip here")
def test_cli_skips_with_the_reason_and_exit_0(tmp_path, capsys):
    assert bench_main(["gpu", "--out", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GPU benchmark skipped: ")
    assert "Nothing was measured or written" in out
    if not backend.cuda_available():
        assert "no CUDA device for CuPy" in out and backend.describe() in out
    assert not (tmp_path / "res").exists()                      # nothing written


@pytest.mark.skipif(HAS_GPU, reason="a CUDA device and PyTorch CUDA are present: no skip here")
def test_script_skips_with_exit_0(tmp_path):
    res = subprocess.run([sys.executable, "-m", "benchmarks.gpu",
                          "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "GPU benchmark skipped: " in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_reasons(monkeypatch):
    """Each missing piece is named: no device; PyTorch without CUDA (and --no-torch then runs)."""
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    assert gpu.unavailable_reason().startswith("no CUDA device for CuPy: ")
    assert gpu.run_gpu_bench(None, verbose=False) == {
        "benchmark": "gpu", "status": "skipped", "reason": gpu.unavailable_reason()}
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reason = gpu.unavailable_reason()
    assert reason.startswith(f"PyTorch {torch.__version__} has no CUDA") and "--no-torch" in reason
    assert gpu.unavailable_reason(with_torch=False) is None


# ----------------------------------------------------------------------------- the pipeline
@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """One small stand-in run: VCA at N = 64 and 256, MHSA at 64 and skipped at 256 (budget)."""
    out = tmp_path_factory.mktemp("gpu_bench")
    budget_gib = 1.5 * gpu.mhsa_bytes(8, 1) / 2 ** 30          # fits N = 64, not N = 256
    res = gpu.run_gpu_bench(str(out), device="cpu", points=[(8, 1), (16, 1)], rounds=2,
                            warmup=1, mhsa_max_gib=budget_gib, verbose=False)
    return res, json.loads((out / "gpu_bench.json").read_text())


def test_stand_in_json(stand_in):
    res, data = stand_in
    assert data["benchmark"] == "gpu" and data["status"] == "ok" and data["stand_in"] is True
    assert data["machine"]["device"] == "cpu" and data["machine"]["stand_in"] is True
    for key in ("config", "conventions", "machine", "points", "probes", "elapsed_s"):
        assert key in data, key
    assert "multiply-accumulates" in data["conventions"]["macs"] and "2 FLOP per MAC" in data["conventions"]["tflops"]
    assert [(p["N"], p["batch"]) for p in data["points"]] == [(64, 1), (256, 1)]
    torch_on = data["machine"]["torch"] is not None
    for p in data["points"]:
        v = p["vca"]
        assert v["macs_fwd"] == vca_macs(p["N"])
        for key in ("cupy", "cupy_nokernels") + (("torch",) if torch_on else ()):
            t = v["timings"][key]
            assert t["rounds"] == 2 and 0 < t["min_s"] <= t["median_s"] and t["iqr_s"] >= 0
        assert v["cupy_s"] > 0 and v["cupy_tflops"] > 0 and v["kernel_speedup"] > 0
        if torch_on:
            assert v["cupy_over_torch"] == pytest.approx(v["cupy_s"] / v["torch_s"])
            # the PyTorch twin computes the same layer from the same weights and input
            assert v["max_rel_diff_y"] < 1e-4 and v["max_rel_diff_dx"] < 1e-4
    m64, m256 = data["points"][0]["mhsa"], data["points"][1]["mhsa"]
    assert m64["macs_fwd"] == mhsa_macs(64) and m64["cupy_s"] > 0
    if torch_on:
        assert m64["max_rel_diff_y"] < 1e-4
    assert set(m256) == {"skipped", "macs_fwd"} and "budget" in m256["skipped"]
    assert res["json_path"].endswith("gpu_bench.json")


def test_stand_in_probes(stand_in):
    probes = stand_in[1]["probes"]
    names = list(probes)
    assert [n.split()[0] for n in names] == ["matmul", "copy", "gelu", "adamw"]
    for name, e in probes.items():
        assert e["unit"] in ("TFLOP/s", "GB/s") and e["amount"] > 0
        assert e["cupy"]["rate"] == pytest.approx(e["amount"] / e["cupy"]["median_s"])
    assert "cupy_nokernels" in probes[names[2]] and "cupy_nokernels" in probes[names[3]]


def test_table(stand_in, capsys):
    data = stand_in[1]
    gpu.print_header(data)
    for p in data["points"]:
        for kind in ("vca", "mhsa"):
            print(gpu.format_row(kind, p))
    print(gpu.format_probes(data["probes"]))
    out = capsys.readouterr().out.splitlines()
    assert "CPU STAND-IN" in out[0] and "NOT GPU figures" in out[0]
    assert "2 FLOP/MAC" in out[1] and out[2] == gpu.HEADER
    rows = [line for line in out if line.startswith(("VCA", "MHSA"))]
    assert len(rows) == 4 and rows[3].split()[:3] == ["MHSA", "256", "1"]
    assert "skipped: its (B, h, N, N) float32 matrices need" in rows[3]
    assert all(len(r.split()) == 12 for r in rows[:3])          # every column filled
    assert any(line.startswith("matmul 256^2 float32") for line in out)
