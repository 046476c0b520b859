"""What every training run shares: the run folder, metrics, progress, checkpoints, NaN guard.

A run folder holds

    config.json                 the full run configuration (written atomically)
    metrics.jsonl               one JSON object per line (per epoch, plus a final summary)
    checkpoint.safetensors      the latest good training state (model + optimiser + EMA +
                                step + RNG states), rewritten atomically after every epoch
    model.safetensors           the final weights alone, PyTorch names and layouts

``--resume`` loads ``checkpoint.safetensors`` and continues at the next epoch.  Batches and
noise come from generators whose states are saved in the checkpoint, and every epoch draws its
batch order from the data generator's state at the epoch start, so a resumed run reproduces the
uninterrupted one exactly (same seed, same numbers).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields

from vca_ref.io.checkpoint import load_training_state, save_module, save_training_state
from vca_ref.io.safetensors_format import atomic_write

CHECKPOINT = "checkpoint.safetensors"
FINAL_MODEL = "model.safetensors"


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN or inf; the last good checkpoint is kept."""


def check_finite(loss: float, step: int, epoch: int, run_dir: str) -> None:
    """Stop with a clear message when ``loss`` is NaN/inf."""
    if not math.isfinite(loss):
        ckpt = os.path.join(run_dir, CHECKPOINT)
        kept = (f"the last good checkpoint is kept at {ckpt}" if os.path.exists(ckpt)
                else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"loss became {loss} at step {step} (epoch {epoch}); training stopped and {kept}. "
            "Try a lower --lr or a smaller --clip-grad.")


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def check_choice(value, choices, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def check_positive(cfg, names) -> None:
    """Raise ``ValueError`` for any field of ``cfg`` in ``names`` that is below 1."""
    for name in names:
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")


def config_from_dict(cls, d: dict):
    """Build a run-config dataclass from a dict, rejecting unknown keys by name."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}")
    return cls(**d)


class MetricsLog:
    """Append-only JSON-lines metrics file."""

    def __init__(self, path: str, resume: bool):
        self.path = path
        if not resume and os.path.exists(path):
            os.remove(path)

    def write(self, **record) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


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
    """A run folder: config, metrics, checkpoints and resume."""

    def __init__(self, out_dir: str, config, resume: bool = False):
        self.dir = out_dir
        os.makedirs(out_dir, exist_ok=True)
        self.config = config
        self.resume = resume
        self.metrics = MetricsLog(os.path.join(out_dir, "metrics.jsonl"), resume)
        self.state = RunState()
        if not resume:
            write_json(os.path.join(out_dir, "config.json"), asdict(config))

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.dir, CHECKPOINT)

    def save(self, model, optimizer, rngs: dict, ema=None) -> None:
        s = self.state
        save_training_state(self.checkpoint_path, model, optimizer, ema=ema, step=s.step, rng=rngs,
                            config=asdict(self.config),
                            metadata={"run_state": json.dumps(
                                {"epoch": s.epoch, "train_seconds": s.train_seconds,
                                 "images_seen": s.images_seen})})

    def load(self, model, optimizer, rngs: dict, ema=None) -> None:
        """Restore everything from the run's checkpoint (all-or-nothing)."""
        if not os.path.exists(self.checkpoint_path):
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
        ts = load_training_state(self.checkpoint_path, model, optimizer, ema=ema, rng=rngs)
        saved_cfg = ts.config or {}
        mine = asdict(self.config)
        differs = sorted(k for k in mine if k not in ("epochs", "progress", "out_dir", "resume")
                         and saved_cfg.get(k) != mine[k])
        if differs:
            raise ValueError(f"--resume: the checkpoint was made with a different configuration "
                             f"(fields {differs}); resume with the same settings")
        rs = json.loads(ts.metadata.get("run_state", "{}"))
        self.state = RunState(epoch=int(rs.get("epoch", 0)), step=ts.step,
                              train_seconds=float(rs.get("train_seconds", 0.0)),
                              images_seen=int(rs.get("images_seen", 0)),
                              history=[r for r in self.metrics.read() if r.get("kind") == "epoch"])

    def log_epoch(self, **record) -> dict:
        record = {"kind": "epoch", "epoch": self.state.epoch, "step": self.state.step, **record}
        self.metrics.write(**record)
        self.state.history.append(record)
        return record

    def finish(self, model, summary: dict) -> dict:
        save_module(model, os.path.join(self.dir, FINAL_MODEL),
                    config=asdict(self.config))
        summary = {"kind": "summary", **summary}
        self.metrics.write(**summary)
        write_json(os.path.join(self.dir, "summary.json"), summary)
        return summary


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
