"""What every training run shares: the run folder, its history, checkpoints, the NaN guard.

A run folder holds

    config.json                 the full run configuration
    metrics.jsonl               one JSON object per line (per epoch, plus a final summary)
    checkpoint.safetensors      the latest training state (model + optimiser + EMA + step + RNG
                                states + the history of every completed epoch)
    model.safetensors           the final weights alone, PyTorch names and layouts
    summary.json                the final summary

Nothing is lost and nothing is counted twice, whenever the process stops:

1. **Before any file changes**, the configuration, dataset and model are built (each checks
   its input), the folder is checked (a folder that already holds a run needs ``resume`` to
   continue it or ``overwrite`` to start again), a resumed checkpoint is read and validated in
   full, and a probe file proves the folder writable.
2. **Each epoch** first rewrites the checkpoint (atomically: old or new, never torn) with the
   epoch's record inside it, and only then appends the record to ``metrics.jsonl``.
3. **On resume**, ``metrics.jsonl`` is rewritten from the checkpoint's history, so the line of
   an epoch whose checkpoint never landed (or a half-written line) disappears; temporary files
   of interrupted writes are removed.

Batches and noise come from generators whose states are saved in the checkpoint, and every
epoch draws its batch order from the data generator's state at the epoch start, so a resumed
run reproduces the uninterrupted one bit for bit.
"""
from __future__ import annotations

import dataclasses

import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from vca_ref.backend import get_array_module
from vca_ref.experiments.run_config import read_json
from vca_ref.io.atomic import atomic_write, check_writable_folder, remove_stale_temps
from vca_ref.io.checkpoint import load_training_state, read_metadata, save_module, save_training_state
from vca_ref.nn.checks import NonFiniteError
from vca_ref.train.clip import clip_grad_norm, grad_norm

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
CHECKPOINT, FINAL_MODEL = "checkpoint.safetensors", "model.safetensors"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, FINAL_MODEL, SUMMARY)
RESUMABLE_FIELDS = ("epochs", "progress", "out_dir")      # may change when a run is resumed


class TrainingDiverged(RuntimeError):
    """The loss, a gradient or a layer's input became NaN/inf; the last finite checkpoint is kept."""


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def clip_gradients(model, max_norm: float) -> float:
    """The total gradient norm; the gradients are clipped to ``max_norm`` when it is > 0.

    A NaN/inf norm is returned with the gradients left as they are (the caller stops the run).
    """
    if max_norm <= 0:
        return grad_norm(model)
    if model.device == "cuda":                   # no read: a non-finite norm leaves them as they are
        return clip_grad_norm(model, max_norm)
    try:
        return clip_grad_norm(model, max_norm, error_if_nonfinite=True)
    except RuntimeError:                         # raised before any gradient is scaled
        return grad_norm(model)


class MetricsLog:
    """The JSON-lines metrics file: appended once per epoch, rewritten whole on resume."""

    def __init__(self, path: str):
        self.path = path

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def rewrite(self, records: list[dict]) -> None:
        atomic_write(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())

    def read(self) -> list[dict]:
        """Every record; a torn last line (a stop mid-append) is dropped, damage elsewhere named."""
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            *complete, torn = f.read().split("\n")
        out = []
        for i, line in enumerate(complete, 1):
            try:
                if line.strip():
                    out.append(json.loads(line))
            except ValueError:
                raise ValueError(f"{self.path} line {i} is not valid JSON; the file is damaged") from None
        return out


def progress(total: int, desc: str, enabled: bool):
    """A tqdm bar (or a silent stand-in when disabled or tqdm is missing)."""
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
        except ImportError:  # pragma: no cover - tqdm is in the train extra
            pass
    return _NoBar()


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


@dataclass
class RunState:
    """Mutable bookkeeping of a run: where it is and what it has measured."""
    epoch: int = 0               # epochs completed
    step: int = 0                # optimiser steps taken
    train_seconds: float = 0.0   # wall time spent in training steps (excludes evaluation)
    images_seen: int = 0
    history: list = field(default_factory=list)


class Run:
    """A run folder: checked on creation, written by :meth:`start`, :meth:`end_epoch`, :meth:`finish`."""

    def __init__(self, out_dir: str, config, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise ValueError("--resume continues a run and --overwrite starts it again: give one")
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise NotADirectoryError(f"--out-dir {out_dir} is a file, expected a run folder")
        held = [f for f in RUN_FILES if os.path.exists(os.path.join(out_dir, f))]
        if held and not (resume or overwrite):
            raise FileExistsError(f"{out_dir} already holds a run ({', '.join(held)}); pass --resume "
                                  "to continue it, or --overwrite to delete it and start again")
        if resume and CONFIG not in held and CHECKPOINT not in held:
            raise FileNotFoundError(f"--resume: {out_dir} holds no run to continue (no {CHECKPOINT})")
        self.dir, self.config, self.resume, self.overwrite = out_dir, config, resume, overwrite
        self.metrics = MetricsLog(os.path.join(out_dir, METRICS))
        self.state = RunState()

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.dir, CHECKPOINT)

    # ------------------------------------------------------------------ start / resume
    def start(self, model, optimizer, rngs: dict, ema=None) -> None:
        """Resume (validated in full) or start afresh; only then write config and metrics."""
        history = []
        if self.resume and os.path.exists(self.checkpoint_path):
            history = self._load(model, optimizer, rngs, ema)
        elif self.resume:                        # stopped in its first epoch: nothing to restore
            self._check_same_config(read_json(os.path.join(self.dir, CONFIG)),
                                    os.path.join(self.dir, CONFIG))
        check_writable_folder(self.dir)
        # ---- from here on, the folder changes
        remove_stale_temps(self.dir, RUN_FILES)
        if self.overwrite:
            for f in RUN_FILES:
                if os.path.exists(os.path.join(self.dir, f)):
                    os.remove(os.path.join(self.dir, f))
        write_json(os.path.join(self.dir, CONFIG), asdict(self.config))
        self.metrics.rewrite(history)

    def _check_same_config(self, saved, where: str) -> None:
        mine = asdict(self.config)
        saved = saved if isinstance(saved, dict) else {}
        # a field the run predates counts at its default (the value the run really used)
        defaults = {f.name: f.default for f in dataclasses.fields(self.config)
                    if f.default is not dataclasses.MISSING}
        differs = [k for k in mine if k not in RESUMABLE_FIELDS and saved.get(k, defaults.get(k)) != mine[k]]
        if differs:
            changes = "; ".join(f"{k}: {saved.get(k, defaults.get(k))!r} in the run, {mine[k]!r} now"
                                for k in differs)
            raise ValueError(f"--resume: {self.dir} was made with different settings ({changes}); "
                             f"resume with the run's settings (see {where}), or start again with "
                             "--overwrite")

    def _load(self, model, optimizer, rngs, ema) -> list[dict]:
        """Restore everything from the checkpoint (all-or-nothing); returns the history."""
        path = self.checkpoint_path
        meta = read_metadata(path)
        self._check_same_config(_meta_json(path, meta, "config", {}), path)
        history = _meta_json(path, meta, "history", None)
        rs = _meta_json(path, meta, "run_state", {})
        ts = load_training_state(path, model, optimizer, ema=ema, rng=rngs)
        epoch = int(rs.get("epoch", 0))
        if history is None:                                    # a checkpoint from before history lived in it
            history = [r for r in self.metrics.read()
                       if r.get("kind") == "epoch" and r.get("epoch", 0) <= epoch]
        self.state = RunState(epoch=epoch, step=ts.step,
                              train_seconds=float(rs.get("train_seconds", 0.0)),
                              images_seen=int(rs.get("images_seen", 0)), history=history)
        return history

    # ------------------------------------------------------------------ divergence
    def diverged(self, what: str) -> TrainingDiverged:
        """The error for a NaN/inf seen during the current step (epochs counted from 1)."""
        s = self.state
        if os.path.exists(self.checkpoint_path):
            kept = (f"the last finite checkpoint (epoch {s.history[-1]['epoch'] if s.history else 0}) "
                    f"is kept at {self.checkpoint_path}")
        else:
            kept = "no checkpoint was written yet"
        return TrainingDiverged(
            f"training diverged at step {s.step + 1} (epoch {s.epoch + 1}): {what}; training stopped "
            f"and {kept}. Start again with --overwrite and a lower --lr or a smaller --clip-grad")

    def check_finite(self, what: str, value: float) -> None:
        """Raise :meth:`diverged` unless ``value`` (the loss, a gradient norm) is finite."""
        if not math.isfinite(value):
            raise self.diverged(f"the {what} became {value}")

    @contextmanager
    def guard(self):
        """Inside a training step or an evaluation: a layer's NaN/inf input means divergence."""
        try:
            yield
        except NonFiniteError as e:
            raise self.diverged(f"a layer's input became non-finite ({e})") from None

    # ------------------------------------------------------------------ per epoch, at the end
    def end_epoch(self, model, optimizer, rngs: dict, ema=None, **metrics) -> dict:
        """Count the epoch, write the checkpoint (the epoch's record inside), then the metrics line."""
        s = self.state
        state = model.state_dict()
        xp = get_array_module(*state.values())
        if not bool(xp.stack([xp.isfinite(v).all() for v in state.values()]).all()):   # one sync
            name = next(k for k, v in state.items() if not bool(xp.isfinite(v).all()))
            raise self.diverged(f"the weights {name!r} became non-finite")
        s.epoch += 1
        record = {"kind": "epoch", "epoch": s.epoch, "step": s.step, **metrics}
        history = s.history + [record]
        run_state = {"epoch": s.epoch, "train_seconds": s.train_seconds, "images_seen": s.images_seen}
        save_training_state(self.checkpoint_path, model, optimizer, ema=ema, step=s.step, rng=rngs,
                            config=asdict(self.config),
                            metadata={"run_state": json.dumps(run_state),
                                      "history": json.dumps(history)})
        self.metrics.append(record)
        s.history = history
        return record

    def finish(self, model, summary: dict) -> dict:
        save_module(model, os.path.join(self.dir, FINAL_MODEL), config=asdict(self.config))
        summary = {"kind": "summary", **summary}
        self.metrics.append(summary)
        write_json(os.path.join(self.dir, SUMMARY), summary)
        return summary


def _meta_json(path: str, meta: dict, key: str, default):
    """``json.loads(meta[key])`` (``default`` when absent), naming the file when it is damaged."""
    if key not in meta:
        return default
    try:
        return json.loads(meta[key])
    except ValueError:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON; the file is damaged") from None


class Timer:
    """Accumulates wall time of the ``with`` blocks into ``run.state.train_seconds``."""

    def __init__(self, state: RunState):
        self.state = state

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.state.train_seconds += time.perf_counter() - self.t0
        return False
