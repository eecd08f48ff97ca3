"""Learning-rate scaling, warmup and schedules as pure functions of the step."""
from __future__ import annotations

import math


def scaled_lr(base_lr: float, batch_size: int, base_batch: int, rule: str) -> float:
    """Linear (Goyal et al. 2017) or square-root scaling of the LR with the batch size."""
    if rule == "none":
        return base_lr
    ratio = batch_size / base_batch
    if rule == "linear":
        return base_lr * ratio
    if rule == "sqrt":
        return base_lr * math.sqrt(ratio)
    raise ValueError(f"lr_scaling must be one of ['none', 'linear', 'sqrt'], got {rule!r}")


def lr_at(step: int, total_steps: int, peak_lr: float, *, schedule: str = "constant",
          warmup_steps: int = 0, milestones: list[float] = (0.5, 0.75), gamma: float = 0.1) -> float:
    """LR for optimizer step `step` (0-based) of `total_steps`.

    Linear warmup from peak/warmup to peak over `warmup_steps`, then: constant; step = x0.1 at
    each quarter of the run (the paper's CIFAR protocol); multistep = x`gamma` at each milestone
    fraction; cosine = half-cosine decay to 0 over the steps after warmup.
    """
    if warmup_steps and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = step / max(1, total_steps)
    if schedule == "constant":
        return peak_lr
    if schedule == "step":
        return peak_lr * 0.1 ** sum(progress >= q for q in (0.25, 0.5, 0.75))
    if schedule == "multistep":
        return peak_lr * gamma ** sum(progress >= m for m in milestones)
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        return peak_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))
    raise ValueError(f"schedule must be one of ['constant', 'step', 'multistep', 'cosine'], got {schedule!r}")
