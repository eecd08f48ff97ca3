"""Telemetry overhead: the same run with telemetry on and off, timed side by side."""
from __future__ import annotations

import tempfile
from pathlib import Path

from alto.store import Store

from .config import RunConfig
from .loop import train


def bench_telemetry(config: RunConfig, repeats: int = 2) -> dict:
    """Run `config` with telemetry off and on, alternating, each writing to a fresh store;
    returns elapsed ms per step outside evaluation (flushes and telemetry included; best of
    `repeats`) for both and their ratio."""
    best = {False: float("inf"), True: float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        experiment = store.create_experiment("bench telemetry")
        for i in range(repeats):
            for telemetry in (False, True):
                cfg = RunConfig.from_dict({**config.to_dict(), "telemetry": telemetry,
                                           "eval_every": 10**9})  # one evaluation, at the end
                run_id = store.add_run(experiment, name=f"{telemetry}-{i}", optimizer=cfg.optimizer,
                                       seed=cfg.seed, lr=cfg.base_lr, config=cfg.to_dict())
                with store.writer(run_id) as writer:
                    result = train(cfg, writer=writer)
                per_step = 1e3 * (result.wall_s - result.apart_s["eval_s"]) / result.steps
                best[telemetry] = min(best[telemetry], per_step)
        store.close()
    return {"bench": "train", "optimizer": config.optimizer, "dataset": config.dataset, "model": config.model,
            "ms_per_step_telemetry_off": round(best[False], 3), "ms_per_step_telemetry_on": round(best[True], 3),
            "overhead_ratio": round(best[True] / best[False], 3)}
