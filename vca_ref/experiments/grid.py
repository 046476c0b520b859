"""A grid of training cells, (label, seed) pairs, each an ordinary run folder; resumable; one bar.

    OUT/<label>/seed<s>/      a train-vit (or train-dit) run folder: config.json, metrics.jsonl,
                              checkpoint.safetensors, model.safetensors, summary.json
                              (+ evaluation.json for a DiT), so `vca-ref train-vit --resume
                              --out-dir OUT/<label>/seed<s>` or `vca-ref sample` work on it.

Before anything trains, every cell's configuration is built and its model constructed (a value
the model cannot take fails here), and every existing cell folder is checked to hold the same
configuration.  Then the cells run one after another:

    finished (summary.json [+ evaluation.json])   read back, not trained again
    checkpoint.safetensors                        resumed from its last finished epoch
    otherwise                                     trained from scratch

so a killed grid, rerun with the same options, continues where it stopped.  One tqdm bar counts
the epochs of the whole grid (its ETA is the remaining epochs at the rate of this call).

:func:`summarise` turns the cells into one row per label: mean ± std of the score over seeds
(:mod:`vca_ref.experiments.stats`), the paired difference to a reference label with its 95 %
interval, parameters, MACs per image and the mean measured training images/s.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

from vca_ref.experiments.stats import (format_difference, format_mean_std, mean_std, noise_verdict,
                                       paired_difference)
from vca_ref.experiments.run_config import read_json
from vca_ref.experiments.runner import CONFIG, SUMMARY

IGNORED_FIELDS = ("progress",)     # config fields that may differ between a cell and its rerun


@dataclass
class Cell:
    """One training run of a grid: a label (variant or swept value), a seed and its config."""
    label: str
    seed: int
    config: object               # the task's run config, out_dir = OUT/<label>/seed<s>
    params: int = 0
    macs_per_image: int = 0


def parse_seeds(text) -> list[int]:
    """``"0,1,2"`` (or a list of ints) -> ``[0, 1, 2]``; empty, non-integer or repeated seeds fail."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if not items or items == [""]:
        raise ValueError("--seeds is empty; expected comma-separated integers, e.g. --seeds 0,1,2")
    try:
        seeds = [int(s) for s in items]
    except (TypeError, ValueError):
        raise ValueError(f"--seeds must be comma-separated integers >= 0, e.g. 0,1,2; got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def plan_cells(task, base_cfg, labelled_fields: dict, seeds: list[int], out_dir: str) -> list[Cell]:
    """Build and validate every cell; nothing is trained or written.

    Args:
        task: a :mod:`vca_ref.experiments.tasks` task.
        base_cfg: the run config every cell starts from.
        labelled_fields: ``{label: {field: value}}``; run-config fields replace the run's,
            any other key is a model-config field (``model_overrides``).
        seeds, out_dir: the seeds of every label; the grid folder.
    Raises:
        ValueError naming the label for a config or model that cannot be built, or a cell folder
        that holds a run with a different configuration.
    """
    from vca_ref.experiments.tasks import with_fields
    cells = []
    for label, fields in labelled_fields.items():
        for seed in seeds:
            try:
                cfg = with_fields(dataclasses.replace(base_cfg, seed=seed, progress=False,
                                                      out_dir=os.path.join(out_dir, label, f"seed{seed}")),
                                  fields)
                model = task.build_model(cfg)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{label}: {e}") from None
            check_cell_folder(cfg)
            cells.append(Cell(label, seed, cfg, model.num_parameters(), model.macs()))
    return cells


def check_cell_folder(cfg) -> None:
    """Refuse a cell folder whose config.json differs from ``cfg`` (other than ``progress``).

    A field the folder's config.json lacks (added to the config since) counts as its default."""
    path = os.path.join(cfg.out_dir, CONFIG)
    if not os.path.exists(path):
        return
    saved, mine = read_json(path), json.loads(json.dumps(dataclasses.asdict(cfg)))
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}   # fields newer than the folder
    differs = sorted(k for k in set(saved) | set(mine)
                     if k not in IGNORED_FIELDS and saved.get(k, defaults.get(k)) != mine.get(k))
    if differs:
        raise ValueError(f"{cfg.out_dir} holds a run made with other settings (fields {differs}); "
                         "rerun with the options it was made with, or choose another --out-dir")


def cell_epochs_done(cfg) -> int:
    """Epochs a cell folder's checkpoint holds (its metrics.jsonl records), 0 without one."""
    from vca_ref.experiments.runner import CHECKPOINT, METRICS, MetricsLog
    if not os.path.exists(os.path.join(cfg.out_dir, CHECKPOINT)):
        return 0
    return sum(r.get("kind") == "epoch" for r in MetricsLog(os.path.join(cfg.out_dir, METRICS)).read())


def run_cells(task, cells: list[Cell], out_dir: str, progress: bool = True) -> list[dict]:
    """Train every unfinished cell (see the module docstring); one record per cell, in order.

    Each record: label, seed, score (the task's metric), params, macs_per_image, images_per_s,
    train_seconds, run_dir, status ("trained" | "resumed" | "scored" | "finished before").
    """
    from vca_ref.experiments.runner import progress as make_bar
    todo = [c for c in cells if not task.finished(c.config.out_dir)]
    shared = task.shared_epochs(out_dir, cells[0].config)
    total = shared + sum(c.config.epochs for c in todo)
    bar = make_bar(total, f"{len(todo)} of {len(cells)} cells to train", progress)
    bar.update(sum(cell_epochs_done(c.config) for c in todo))
    t0, state = time.perf_counter(), {"what": "shared judge", "epochs": shared}

    def on_epoch(rec):
        bar.update()
        bar.set_postfix(cell=f"{state['what']} epoch {rec['epoch']}/{state['epochs']}")

    task.prepare(out_dir, cells[0].config, on_epoch)
    records = []
    for c in cells:
        run_dir, summary_path = c.config.out_dir, os.path.join(c.config.out_dir, SUMMARY)
        if task.finished(run_dir):
            status, summary = "finished before", read_json(summary_path)
        elif os.path.exists(summary_path):             # trained, not yet scored (a DiT's judging)
            status, summary = "scored", read_json(summary_path)
        else:
            status = "resumed" if cell_epochs_done(c.config) else "trained"
            state.update(what=f"{c.label} seed {c.seed}", epochs=c.config.epochs)
            started = os.path.exists(os.path.join(run_dir, CONFIG))             # checked above
            summary = task.train(c.config, resume=started, on_epoch=on_epoch)
        records.append({"label": c.label, "seed": c.seed, "score": task.score(c.config, summary),
                        "params": c.params, "macs_per_image": c.macs_per_image,
                        "images_per_s": summary["images_per_s"],
                        "train_seconds": summary["train_seconds"], "run_dir": run_dir, "status": status})
    bar.close()
    if progress:
        trained = sum(r["status"] != "finished before" for r in records)
        print(f"{trained} cells trained, {len(records) - trained} read back "
              f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    return records


def summarise(records: list[dict], reference: str) -> list[dict]:
    """One row per label (in first-seen order): score mean/std, paired diff to ``reference``.

    Row: label, scores {seed: score}, mean, std, diff (None for the reference itself), params,
    macs_per_image, images_per_s (mean over seeds), train_seconds (sum), run_dirs.
    """
    labels = list(dict.fromkeys(r["label"] for r in records))
    by = {lab: [r for r in records if r["label"] == lab] for lab in labels}
    ref = {r["seed"]: r["score"] for r in by.get(reference, [])}
    rows = []
    for lab in labels:
        rs = by[lab]
        scores = {r["seed"]: r["score"] for r in rs}
        mean, std = mean_std(list(scores.values()))
        rows.append({"label": lab, "scores": scores, "mean": mean, "std": std,
                     "diff": paired_difference(scores, ref) if lab != reference and ref else None,
                     "params": rs[0]["params"], "macs_per_image": rs[0]["macs_per_image"],
                     "images_per_s": mean_std([r["images_per_s"] for r in rs])[0],
                     "train_seconds": sum(r["train_seconds"] for r in rs),
                     "run_dirs": [r["run_dir"] for r in rs]})
    return rows


# --------------------------------------------------------------------------- outputs
def run_grid(task, base_cfg, labelled: dict, seeds, out_dir: str, reference: str, first: str,
             plot, progress: bool = True, descriptions: dict | None = None, **extra) -> dict:
    """Plan, run and summarise a grid ``{label: fields}`` x seeds; write table, results, plot.

    ``first`` names the label column (and the plot, ``OUT/<first>.png``); ``plot(rows, task,
    path)`` draws it; ``descriptions`` ``{label: text}`` go beside the labels; ``extra`` goes
    into ``results.json``.
    """
    cells = plan_cells(task, base_cfg, labelled, list(seeds), out_dir)
    t0, cpu0 = time.perf_counter(), time.process_time()
    records = run_cells(task, cells, out_dir, progress)
    rows = summarise(records, reference)
    for r in rows:
        r["description"] = (descriptions or {}).get(r["label"], "")
    results = grid_results(task, base_cfg, rows, records, list(seeds), time.perf_counter() - t0,
                           time.process_time() - cpu0, reference=reference, **extra)
    results["table"] = format_table(rows, task, first, reference)
    results["plot"] = plot(rows, task, os.path.join(out_dir, f"{first}.png"))
    write_outputs(out_dir, results)
    return results


def grid_results(task, base_cfg, rows, records, seeds, seconds: float, cpu_seconds: float,
                 **extra) -> dict:
    """The ``results.json`` dict every grid command writes (with provenance)."""
    import numpy
    from vca_ref import __version__
    return {"task": task.name, "metric": task.metric, "metric_title": task.metric_title,
            "higher_is_better": task.higher_is_better, "seeds": seeds, **extra, "rows": rows,
            "cells": records, "config": dataclasses.asdict(base_cfg),
            "provenance": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                           "python": platform.python_version(), "numpy": numpy.__version__,
                           "vca_ref": __version__, "seconds_this_call": round(seconds, 1),
                           "cpu_seconds_this_call": round(cpu_seconds, 1),
                           "train_seconds_all_cells": round(sum(r["train_seconds"] for r in records), 1)}}


def format_table(rows: list[dict], task, first: str, reference: str) -> str:
    """Markdown: label, mean ± std, paired diff [95 % CI], verdict, params, MACs, images/s."""
    ref = reference if any(r["label"] == reference for r in rows) else f"{reference} (not in the grid)"
    lines = [f"| {first} | {task.metric_title} mean ± std | difference to {ref} [95 % CI] | "
             "within noise? | seeds | parameters | MACs / image | train images/s |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        name = f"{r['label']} ({r['description']})" if r.get("description") else r["label"]
        lines.append(f"| {name} | {format_mean_std(r['mean'], r['std'])} | {format_difference(r['diff'])} | "
                     f"{noise_verdict(r['diff'], task.higher_is_better, r['label'] == reference)} | "
                     f"{len(r['scores'])} | "
                     f"{r['params']:,} | {r['macs_per_image']:,} | {r['images_per_s']:.0f} |")
    noisy = [r["label"] for r in rows if r["diff"] and r["diff"]["within_noise"]]
    lines += ["", f"Within noise (the 95 % interval of the paired difference covers 0): "
                  f"{', '.join(noisy) if noisy else 'none'}."]
    return "\n".join(lines)


def write_outputs(out_dir: str, results: dict) -> None:
    """``table.md`` (``results["table"]``) and ``results.json``, each written atomically."""
    from vca_ref.experiments.runner import write_json
    from vca_ref.io.atomic import atomic_write
    atomic_write(os.path.join(out_dir, "table.md"), (results["table"] + "\n").encode())
    write_json(os.path.join(out_dir, "results.json"), results)
