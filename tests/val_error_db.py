"""A small database whose metric is val/error: lower is better, and nothing but its name says so.

The experiment's targets name the metric and a threshold but no direction. Per seed (0, 1),
over steps 0..100 logged every 10 at 0.1 s a step:
    lamb: val/error = 0.9 - 0.006 * step + 0.01 * seed   (0.3 at the end)
    alto: val/error = max(0.9 - 0.012 * step, 0.2) + 0.01 * seed
so alto reaches val/error <= 0.5 in half lamb's time (speed-up 2), and the best (lowest) values
are 0.3 (lamb) and 0.2 (alto). Ranked the wrong way round, the best would be 0.9 and the target
would be "reached" at step 0.
"""
from __future__ import annotations

import math
from pathlib import Path

from alto.store import Store

THRESHOLD = 0.5
TARGETS = {"metric": "val/error", "thresholds": [THRESHOLD]}


def error_rate(optimizer: str, step: int, seed: int) -> float:
    fall = 0.006 if optimizer == "lamb" else 0.012
    return max(0.9 - fall * step, 0.2) + 0.01 * seed


def make_val_error_db(path: Path) -> Path:
    store = Store(path)
    experiment = store.create_experiment("error rates", config={"targets": TARGETS})
    for optimizer in ("alto", "lamb"):
        for seed in (0, 1):
            run = store.add_run(experiment, name=f"{optimizer} seed {seed}", optimizer=optimizer,
                                seed=seed, lr=0.01, config={}, status="finished")
            with store.writer(run, flush_every_s=math.inf) as w:
                for step in range(0, 101, 10):
                    w.log(step, {"train/loss": 2.0 - step / 100, "val/error": error_rate(optimizer, step, seed)},
                          wall_time=step * 0.1)
            store.update_run(run, started_at=1.0, finished_at=11.0)
    store.close()
    return path
