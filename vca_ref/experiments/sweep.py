"""One design field over several values, over seeds: accuracy against cost (`vca-ref sweep`).

    vca-ref sweep pool_size 1x1 2x2 3x3 4x4          the contrast grid h'×w' (n = h'·w')
    vca-ref sweep lambda_init_scale 0 0.5 1          λ_init = s (0.8 − 0.6 exp(−0.3 l))
    vca-ref sweep embed_init_scale 0.1 1             E± ~ N(0, scale²)
    vca-ref sweep img_size 14 21 28                  the image resolution (area-resampled data)

FIELD is a field of the model config (:class:`~vca_ref.models.vit.ViTConfig` or ``DiTConfig``:
``pool_size``, ``dim``, ``depth``, ``num_heads``, ``patch_size``, ``mlp_ratio``, the VCA options
and knobs) or of the run config (``lr``, ``epochs``, ``batch_size``, ``weight_decay``, …);
``img_size`` of a ViT sets the run's ``image_size``, so the data are resized with the model.
A VALUE is JSON (``2``, ``0.5``, ``[2, 3]``, ``true``), ``AxB`` for a pair, or a bare word.

Every value is a label of a grid (:mod:`vca_ref.experiments.grid`; the first value is the
reference of the paired differences).  Output: ``table.md``, ``results.json`` and ``FIELD.png``
(the score against MACs per image and against measured training images/s, one point per value
with its seed std, so the accuracy/efficiency trade-off is read off one figure).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

from vca_ref.experiments.grid import run_grid

NOT_SWEPT = ("seed", "out_dir", "progress", "device", "model_overrides", "attention", "model",
             "dataset", "dtype", "in_chans", "num_classes")


def sweepable_fields(task) -> dict:
    """``{field: default}`` of every field ``vca-ref sweep`` may vary for ``task``."""
    from vca_ref.models.dit import DiTConfig
    from vca_ref.models.vit import ViTConfig
    model_cls = ViTConfig if task.name == "vit" else DiTConfig
    out = {f.name: f.default for f in dataclasses.fields(task.config_class)}
    out.update({f.name: f.default for f in dataclasses.fields(model_cls)})
    if task.name == "vit":
        out["img_size"] = ViTConfig.img_size                    # resolution: drives image_size
        out.pop("image_size")
    return {k: v for k, v in out.items() if k not in NOT_SWEPT}


def parse_value(text: str, field: str, default):
    """One VALUE for ``field`` (whose default fixes its type); a clear ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", text)
    if m:
        value = [int(m.group(1)), int(m.group(2))]
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
    kind = type(default)
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
          else isinstance(value, str) if kind is str
          else (isinstance(value, int) and not isinstance(value, bool))
          or (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)))
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a number", str: "a word"}.get(
            kind, "an integer or a pair AxB")
        raise ValueError(f"{field} takes {want}, got {text!r}")
    return float(value) if kind is float else value


def value_label(value) -> str:
    """The folder/table name of a value: 2x2, 0.5, 14, true."""
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return json.dumps(value) if not isinstance(value, str) else value


def plan_values(task, field: str, texts: list[str]) -> dict:
    """``{label: {field: value}}`` for the grid; unknown field or bad value -> ValueError."""
    fields = sweepable_fields(task)
    if field not in fields:
        raise ValueError(f"unknown field {field!r} for --task {task.name}; expected one of "
                         f"{', '.join(sorted(fields))}")
    if not texts:
        raise ValueError(f"no values given for {field}")
    values = [parse_value(t, field, fields[field]) for t in texts]
    labels = [value_label(v) for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"repeated values for {field}: {labels}")
    key = "image_size" if (task.name == "vit" and field == "img_size") else field
    return {lab: {key: v} for lab, v in zip(labels, values)}


def run_sweep(task, base_cfg, field: str, values: list[str], seeds=(0, 1, 2),
              out_dir: str | None = None, progress: bool = True) -> dict:
    """Train (or read back) every (value, seed) cell of ``field``; write and return the results."""
    out_dir = os.path.join("runs", f"sweep-{field}") if out_dir is None else out_dir
    labelled = plan_values(task, field, list(values))
    plot = lambda rows, task_, path: plot_sweep(rows, task_, field, path)          # noqa: E731
    return run_grid(task, base_cfg, labelled, seeds, out_dir, next(iter(labelled)), field, plot,
                    progress, field=field, values=list(labelled))


def plot_sweep(rows: list[dict], task, field: str, path: str) -> str:
    """The score (mean ± std over seeds) against MACs/image and against training images/s."""
    from vca_ref.experiments.plotting import new_figure, save_figure
    fig, axes = new_figure(10, 3.8, 1, 2)
    panels = ((axes[0][0], [r["macs_per_image"] / 1e3 for r in rows], "MACs per image (thousands)", "o-"),
              (axes[0][1], [r["images_per_s"] for r in rows], "measured training images/s", "o"))
    for ax, xs, xlabel, fmt in panels:
        ax.errorbar(xs, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], fmt=fmt,
                    capsize=4, color="C0")
        for x, r in zip(xs, rows):
            ax.annotate(f"{field}={r['label']}", (x, r["mean"]), textcoords="offset points",
                        xytext=(4, 6), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(task.metric_title)
    axes[0][0].set_title(f"{field}: score against compute")
    axes[0][1].set_title(f"{field}: score against measured speed")
    return save_figure(fig, path)
