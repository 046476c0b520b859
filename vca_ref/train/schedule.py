"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

With base rate η, floor η_min, W warmup steps and S total steps, the rate used for the
update that follows step index ``step`` (0-based, i.e. before the update is taken) is

    η(step) = η · step / W                                           step < W
    η(step) = η_min + (η − η_min) · ½ (1 + cos(π · p)),               p = (step − W) / (S − W)

with p clamped to [0, 1], so η(W) = η, η(S) = η_min and the rate stays at η_min afterwards.
This is the warmup-cosine rule of Hugging Face's ``get_cosine_schedule_with_warmup``
(there η_min = 0) and of torch's ``CosineAnnealingLR`` after the warmup.  Note η(0) = 0 when
W > 0: the first update only fills the optimiser's moments.

Typical use inside a training loop::

    sched = CosineWarmupSchedule(base_lr=1e-3, total_steps=S, warmup_steps=W)
    for step in range(start, S):
        opt.lr = sched(step)
        ...; opt.step()
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def cosine_warmup_lr(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0,
                     min_lr: float = 0.0) -> float:
    """η(step) of the module docstring."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= min_lr <= base_lr:
        raise ValueError(f"min_lr must be in [0, base_lr={base_lr}], got {min_lr}")
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass(frozen=True)
class CosineWarmupSchedule:
    """Callable form of :func:`cosine_warmup_lr`: ``sched(step) -> lr``."""
    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        cosine_warmup_lr(0, self.base_lr, self.total_steps, self.warmup_steps, self.min_lr)  # validate

    def __call__(self, step: int) -> float:
        return cosine_warmup_lr(step, self.base_lr, self.total_steps, self.warmup_steps, self.min_lr)

    def set_lr(self, optimizer, step: int) -> float:
        """Set ``optimizer.lr`` for the update after ``step`` and return it."""
        optimizer.lr = self(step)
        return optimizer.lr
