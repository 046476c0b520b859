"""docs/figures/make_figures.py draws its figures and rewrites only its page blocks."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("matplotlib")


@pytest.fixture()
def figures(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs/figures/make_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(mod, "IMAGES", tmp_path / "images")
    return mod


def _prov(mod, part):
    (mod.RUNS / f"{part}.provenance.json").write_text(json.dumps(
        {"command": mod.SHOWN[part], "started_utc": "2026-01-01 00:00", "minutes": 1.0,
         "load_average": [1.0, 1.0, 1.0], **mod.provenance()}))


def test_layer_block_from_a_measurement(figures):
    rng = iter(range(1, 100))
    points = []
    for n, b in ((64, 4), (196, 2)):
        layers = {layer: {"numpy_s": 0.01 * next(rng), "torch_s": 0.01 * next(rng),
                          "numpy_peak_bytes": 2**20 * next(rng), "macs_fwd": 10**6 * next(rng)}
                  for layer in ("vca", "mhsa")}
        points.append({"N": n, "batch": b, "mhsa_over_vca_ops": 0.5, **layers})
    (figures.RUNS / "layer").mkdir(parents=True)
    (figures.RUNS / "layer" / "layer_bench.json").write_text(json.dumps({"points": points}))
    _prov(figures, "layer")
    block = figures.draw("layer")
    assert (figures.IMAGES / "bench-layer.png").stat().st_size > 1000
    assert "| 196 | 2 |" in block and "python -m benchmarks.layer" in block
    # the VCA fast-path time of the second point, per sample in ms: 0.01 * 9 / 2 * 1e3
    assert "| 45.0 |" in block

    page = "intro\n<!-- figures:layer -->\nold\n<!-- /figures:layer -->\nrest\n"
    new = figures.replace_block(page, "layer", block)
    assert new.startswith("intro\n<!-- figures:layer -->\n![") and new.endswith("<!-- /figures:layer -->\nrest\n")
    assert "old" not in new
    with pytest.raises(SystemExit, match="figures:vit"):
        figures.replace_block(page, "vit", block)


def test_compare_block_from_a_measurement(figures):
    hist = [{"epoch": e, "train_loss": 1 / e, "test_acc": 0.5 + e / 10} for e in (1, 2, 3)]
    rows = [{"attention": a, "test_acc": acc, "train_seconds": 12.0, "params": 1234,
             "macs_per_image": 5678, "history": hist} for a, acc in (("vca", 0.93), ("mhsa", 0.91))]
    (figures.RUNS / "compare-vit").mkdir(parents=True)
    (figures.RUNS / "compare-vit" / "results.json").write_text(json.dumps({"rows": rows}))
    _prov(figures, "vit")
    block = figures.draw("vit")
    assert "| VCA | 0.9300 | 12 | 1,234 | 5,678 |" in block
    assert (figures.IMAGES / "compare-vit.png").is_file()


def test_pages_carry_every_block_and_image():
    for part, page in {"layer": "benchmarks.md", "vit": "reproduction.md", "dit": "reproduction.md"}.items():
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert f"<!-- figures:{part} -->" in text and f"<!-- /figures:{part} -->" in text
        block = text.split(f"<!-- figures:{part} -->")[1].split(f"<!-- /figures:{part} -->")[0]
        images = [ln.split("](")[1].split(")")[0] for ln in block.splitlines() if ln.startswith("![")]
        assert images, f"the {part} block of docs/{page} has no figure"
        for img in images:
            assert (ROOT / "docs" / img).is_file(), img


def test_cpu_time_is_used_when_every_column_has_it(figures):
    point = {"vca": {"numpy_s": 2.0, "numpy_cpu_s": 1.0, "torch_s": 2.0, "torch_cpu_s": 1.0}}
    assert figures.time_key({"points": [point]}) == "_cpu_s"
    del point["vca"]["torch_cpu_s"]
    assert figures.time_key({"points": [point]}) == "_s"
