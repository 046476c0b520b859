"""`vca-ref ablate` (and `compare --seeds`): seed statistics, the table and files, resume, bad arguments.

Every grid here is tiny (8x8 digits, one block of width 16, one epoch) so the file runs in well
under a minute; the statistics are checked against scipy's paired t-test.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats as sps
from threadpoolctl import threadpool_limits

from vca_ref.cli import main
from vca_ref.experiments.ablate import VARIANTS, run_ablation
from vca_ref.experiments.classify import ViTTrainConfig, train_vit
from vca_ref.experiments.stats import mean_std, paired_difference
from vca_ref.experiments.tasks import ViTTask

MODEL = ["--dataset", "digits", "--model", "tiny-digits", "--set", "dim=16", "--set", "depth=1",
         "--batch-size", "128"]
TINY = [*MODEL, "--epochs", "1", "--no-progress"]


def tiny_cfg(**kw) -> ViTTrainConfig:
    return ViTTrainConfig(**{**dict(dataset="digits", model="tiny-digits", epochs=1, batch_size=128,
                                    model_overrides={"dim": 16, "depth": 1}, progress=False), **kw})


def read(path):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- statistics
def test_paired_difference_matches_scipy_paired_t_test():
    rng = np.random.default_rng(0)
    ref = {s: 0.9 + 0.02 * rng.standard_normal() for s in range(5)}
    val = {s: ref[s] + 0.01 + 0.004 * rng.standard_normal() for s in range(5)}
    d = paired_difference(val, ref)
    ci = sps.ttest_rel([val[s] for s in range(5)], [ref[s] for s in range(5)]).confidence_interval(0.95)
    assert d["n"] == 5 and d["low"] == pytest.approx(ci.low) and d["high"] == pytest.approx(ci.high)
    assert d["within_noise"] is False                         # a consistent +1 point: resolved
    noisy = paired_difference({s: ref[s] + 0.02 * rng.standard_normal() for s in range(5)}, ref)
    assert noisy["low"] < 0 < noisy["high"] and noisy["within_noise"] is True


def test_paired_difference_pairs_by_seed_and_needs_two_for_an_interval():
    d = paired_difference({0: 0.5, 1: 0.7, 7: 0.1}, {1: 0.6, 0: 0.45})
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.075)   # seeds 0 and 1 only
    one = paired_difference({3: 0.9}, {3: 0.8})
    assert one["low"] is None and one["within_noise"] is None and one["mean"] == pytest.approx(0.1)
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, 2.0, 4.0])[1] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference({0: 1.0}, {1: 1.0})


# --------------------------------------------------------------------------- the command
def test_ablate_writes_table_results_and_plot_from_ordinary_run_folders(tmp_path, capsys):
    out = tmp_path / "grid"
    rc = main(["ablate", *TINY, "--variants", "full,tied-embeddings,mhsa", "--seeds", "0,1",
               "--out-dir", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    res = read(out / "results.json")
    assert [r["label"] for r in res["rows"]] == ["full", "tied-embeddings", "mhsa"]
    assert (out / "variant.png").stat().st_size > 0 and (out / "table.md").read_text() in printed + "\n"
    for row in res["rows"]:
        accs = {s: read(out / row["label"] / f"seed{s}" / "summary.json")["test_acc"] for s in (0, 1)}
        assert row["scores"] == {str(s): a for s, a in accs.items()}           # JSON keys
        assert row["mean"] == pytest.approx(np.mean(list(accs.values())))
        assert row["std"] == pytest.approx(np.std(list(accs.values()), ddof=1))
        assert f"| {row['label']} (" in printed and f"{row['params']:,}" in printed
    full, tied, mhsa = res["rows"]
    assert full["diff"] is None and tied["diff"]["n"] == 2
    assert tied["params"] < full["params"] and mhsa["macs_per_image"] != full["macs_per_image"]
    assert "Within noise" in printed and res["provenance"]["machine"]
    # each cell is an ordinary train-vit run folder: it resumes for more epochs
    cell = tmp_path / "copy"
    shutil.copytree(out / "mhsa" / "seed1", cell)
    assert main(["train-vit", "--attention", "mhsa", *MODEL, "--augment-shift", "0", "--seed", "1",
                 "--epochs", "2", "--no-progress", "--resume", "--out-dir", str(cell)]) == 0
    assert read(cell / "summary.json")["epochs"] == 2


def test_rerun_reads_finished_cells_back_and_resumes_a_stopped_one(tmp_path):
    """A stopped cell (checkpoint, no summary) resumes to exactly the uninterrupted result."""
    task, cfg = ViTTask(), tiny_cfg(epochs=2)
    with threadpool_limits(1):
        whole = run_ablation(task, cfg, ["full", "no-dwconv"], [0], str(tmp_path / "a"), progress=False)
        stopped = tiny_cfg(epochs=2, seed=0, model_overrides={"dim": 16, "depth": 1, "use_dwconv": False},
                           out_dir=str(tmp_path / "b" / "no-dwconv" / "seed0"))
        assert train_vit(stopped, stop_after=1)["kind"] == "stopped"
        again = run_ablation(task, cfg, ["full", "no-dwconv"], [0], str(tmp_path / "b"), progress=False)
        before = os.path.getmtime(tmp_path / "b" / "full" / "seed0" / "summary.json")
        third = run_ablation(task, cfg, ["full", "no-dwconv"], [0], str(tmp_path / "b"), progress=False)
    assert [c["status"] for c in again["cells"]] == ["trained", "resumed"]
    assert [c["status"] for c in third["cells"]] == ["finished before"] * 2
    assert os.path.getmtime(tmp_path / "b" / "full" / "seed0" / "summary.json") == before
    assert [c["score"] for c in again["cells"]] == [c["score"] for c in whole["cells"]]


def test_killed_ablate_continues_where_it_stopped(tmp_path):
    out = tmp_path / "grid"
    cmd = [sys.executable, "-m", "vca_ref", "ablate", *TINY, "--epochs", "3",
           "--variants", "full,no-pooling,mhsa", "--seeds", "0", "--out-dir", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "full" / "seed0" / "summary.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first cell never finished"
    stamp = first.stat().st_mtime
    assert main(["ablate", *TINY, "--epochs", "3", "--variants", "full,no-pooling,mhsa", "--seeds", "0",
                 "--out-dir", str(out)]) == 0
    status = {c["label"]: c["status"] for c in read(out / "results.json")["cells"]}
    assert status["full"] == "finished before" and first.stat().st_mtime == stamp
    assert set(status) == {"full", "no-pooling", "mhsa"}


def test_compare_with_seeds_reports_the_paired_difference(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *TINY, "--seeds", "0,1", "--out-dir", str(out)]) == 0
    rows = read(out / "results.json")["rows"]
    assert [r["label"] for r in rows] == ["vca", "mhsa"] and rows[1]["diff"] is None
    vca = {int(s): a for s, a in rows[0]["scores"].items()}
    mhsa = {int(s): a for s, a in rows[1]["scores"].items()}
    assert rows[0]["diff"]["mean"] == pytest.approx(np.mean([vca[s] - mhsa[s] for s in (0, 1)]))
    assert "difference to mhsa" in capsys.readouterr().out


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("argv, message", [
    (["ablate", "--variants", "full,nope"], "unknown variant(s) ['nope']"),
    (["ablate", "--seeds", ""], "--seeds is empty"),
    (["ablate", "--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["ablate", "--seeds", "1,1"], "distinct"),
    (["ablate", "--set", "pool_size=[9,9]"], "larger than the patch grid"),
    (["sweep", "pool_sise", "2"], "unknown field 'pool_sise'"),
    (["sweep", "pool_size"], "no values given for pool_size"),
    (["sweep", "pool_size", "1x1", "5x5"], "5x5: config.pool_size (5, 5) is larger than the patch grid"),
    (["sweep", "depth", "2.5"], "depth takes an integer, got '2.5'"),
    (["sweep", "img_size", "8", "9"], "patch_size 2 must divide config.img_size 9"),
    (["compare", "--seeds", ""], "--seeds is empty"),
])
def test_bad_arguments_fail_with_one_line_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main([*argv, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vca-ref {argv[0]}: error: ") and message in err[0]
    assert not out.exists()                                   # nothing trained, nothing written


def test_a_folder_made_with_other_settings_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["ablate", *TINY, "--variants", "mhsa", "--seeds", "0", "--out-dir", str(out)]) == 0
    assert "difference to full (not in the grid)" in capsys.readouterr().out
    assert main(["ablate", *TINY, "--lr", "0.001", "--variants", "full,mhsa", "--seeds", "0",
                 "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a run made with other settings (fields ['lr'])" in err
    assert not (out / "full").exists()


def test_every_variant_builds_the_model_it_names():
    from vca_ref.experiments.tasks import with_fields
    for name, fields in VARIANTS.items():
        m = ViTTask().build_model(with_fields(tiny_cfg(), fields))
        assert (m.config.attention == "mhsa") == (name == "mhsa")
        for k, v in fields.items():
            assert getattr(m.config, k) == v


def test_dit_ablation_scores_every_cell_with_one_shared_judge(tmp_path):
    from vca_ref.experiments.generate import DiTTrainConfig
    from vca_ref.experiments.tasks import DiTTask
    task = DiTTask(num_per_class=2, num_steps=2, judge_overrides={"epochs": 1})
    cfg = DiTTrainConfig(epochs=1, batch_size=128, model_overrides={"dim": 16, "depth": 1},
                         progress=False)
    out = tmp_path / "dit"
    with threadpool_limits(1):
        run_ablation(task, cfg, ["full", "mhsa"], [0, 1], str(out), progress=False)
    res = read(out / "results.json")
    assert res["metric"] == "frechet_distance" and res["higher_is_better"] is False
    for row in res["rows"]:
        for s in (0, 1):
            ev = read(out / row["label"] / f"seed{s}" / "evaluation.json")
            assert row["scores"][str(s)] == ev["frechet_distance"] and ev["num_generated"] == 20
    judges = {read(out / lab / "seed0" / "evaluation.json")["metric"] for lab in ("full", "mhsa")}
    assert (out / "classifier" / "summary.json").exists() and len(judges) == 1
    assert "Fréchet distance on TinyViT features (not ImageNet FID) ↓" in res["table"]


def test_reproduction_page_carries_the_measured_blocks_and_figures():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "docs" / "figures"))
    import reproduce_ablation as rep
    text = (root / "docs" / "reproduction.md").read_text(encoding="utf-8")
    for name in ("ablation", "ablation-paper", "sweep"):
        block = text.split(f"<!-- figures:{name} -->\n")[1].split(f"<!-- /figures:{name} -->")[0]
        assert block.startswith("| "), name                       # a table, filled in
        for line in block.splitlines():
            if line.startswith("!["):
                assert (root / "docs" / line.split("](")[1].rstrip(")")).is_file(), line
    assert rep.replace_block("a\n<!-- figures:x -->\nold\n<!-- /figures:x -->\n", "x", "new") == \
        "a\n<!-- figures:x -->\nnew\n<!-- /figures:x -->\n"


def test_one_progress_bar_counts_the_epochs_of_the_whole_grid(tmp_path, capsys):
    out = tmp_path / "bar"
    assert main(["ablate", *MODEL, "--epochs", "2", "--variants", "full,mhsa", "--seeds", "0",
                 "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 cells to train" in err and "4/4" in err and "2 cells trained, 0 read back" in err
    # a folder written before a config field existed still counts as the same settings
    cfg_path = out / "full" / "seed0" / "config.json"
    saved = read(cfg_path)
    del saved["image_size"]
    cfg_path.write_text(json.dumps(saved))
    assert main(["ablate", *MODEL, "--epochs", "2", "--variants", "full,mhsa", "--seeds", "0",
                 "--out-dir", str(out)]) == 0
    assert "0 of 2 cells to train" in capsys.readouterr().err
