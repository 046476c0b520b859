"""The benchmark pipeline runs end to end in --quick mode and writes every JSON field.

No timing assertions: this machine is shared and timings are not a property of the code.
"""
import json

import pytest

from benchmarks import main
from benchmarks.layer import mhsa_macs, run_layer_bench, vca_macs


def test_macs_match_spec_and_modules():
    from vca_ref import MultiHeadSelfAttention, VisualContrastAttention
    N, C, n = 4096, 192, 64
    assert vca_macs(N) == 4 * N * C * C + 7 * n * N * C
    assert mhsa_macs(N) == 4 * N * C * C + 2 * N * N * C
    assert vca_macs(N) == VisualContrastAttention(C, 3, (64, 64), (8, 8)).macs(N)
    assert mhsa_macs(N) == MultiHeadSelfAttention(C, 3).macs(N)


def test_layer_bench_quick_writes_json(tmp_path):
    res = run_layer_bench(str(tmp_path), quick=True, verbose=False, plot=False)
    data = json.loads((tmp_path / "layer_bench.json").read_text())
    assert data["benchmark"] == "layer" and data["quick"] is True
    for key in ("config", "conventions", "machine", "points", "figures",
                "matmul_numpy_gflops_median"):
        assert key in data
    assert data["machine"]["threads"] >= 1
    assert [p["N"] for p in data["points"]] == [64, 196]
    torch_on = data["machine"]["torch"] is not None
    for p in data["points"]:
        for key in ("grid", "N", "batch", "rounds", "matmul_numpy_gflops", "mhsa_over_vca_ops",
                    "mhsa_over_vca_time"):
            assert key in p
        for layer in ("vca", "mhsa"):
            q = p[layer]
            for key in ("reference_s", "reference_over_fast", "numpy_s", "torch_s", "numpy_over_torch",
                        "numpy_cpu_s", "torch_cpu_s",
                        "numpy_over_torch_cpu", "numpy_peak_bytes", "torch_peak_bytes", "macs_fwd",
                        "numpy_gflops", "numpy_frac_of_matmul"):
                assert key in q, (layer, key)
            assert q["numpy_s"] > 0 and q["reference_s"] > 0 and q["numpy_peak_bytes"] > 0 and q["macs_fwd"] > 0
            if torch_on:
                assert q["torch_s"] > 0 and q["numpy_over_torch"] > 0
    assert "vca_reference_over_fast_N196" in data["figures"]
    if torch_on:
        assert "vca_numpy_over_torch_N196" in data["figures"]
    assert res["points"][1]["vca"]["macs_fwd"] == vca_macs(196)


def test_cli_entry_quick(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["layer", "--quick", "--out", str(tmp_path), "--no-torch"]) == 0
    assert (tmp_path / "layer_bench.json").exists() and (tmp_path / "layer_bench.png").exists()
    assert "N=   196" in capsys.readouterr().out


def test_model_bench_quick_writes_json(tmp_path):
    from benchmarks.model import run_model_bench
    from pytorch_env import stand_in_torchvision
    stand_in_torchvision()                          # timm's ViT where torchvision does not match torch
    run_model_bench(str(tmp_path), quick=True, verbose=False)
    data = json.loads((tmp_path / "model_bench.json").read_text())
    assert data["benchmark"] == "model" and len(data["cases"]) == 2
    for c in data["cases"]:
        for key in ("name", "model", "batch", "reference_s", "reference_over_fast", "numpy_s",
                    "numpy_images_per_s", "torch_s",
                    "torch_images_per_s", "numpy_over_torch_images_per_s", "numpy_cpu_s",
                    "numpy_over_torch_images_per_cpu_s", "macs_fwd_per_image"):
            assert key in c, key
        assert c["numpy_s"] > 0 and c["numpy_images_per_s"] > 0
        if data["machine"]["torch"] is not None:
            # the PyTorch twin computes the same function as the NumPy model
            assert c["max_abs_diff_first_forward"] < 1e-3
