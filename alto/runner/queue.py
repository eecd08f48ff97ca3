"""Turn a comparison (preset + choices) into one experiment row and its queued run rows."""
from __future__ import annotations

from alto.store import CONFIRM_TAG, Store
from alto.train.config import RunConfig
from alto.train.presets import Preset, held_note, run_name


def queue_experiment(store: Store, preset: Preset, configs: list[RunConfig], *, name: str | None = None,
                     notes: str = "") -> int:
    """Insert the experiment and one `queued` run per config; returns the experiment id."""
    if not configs:
        raise ValueError("configs must contain at least one run")
    sweep_keys = sorted(preset.sweep)
    experiment_id = store.create_experiment(
        name or preset.title, preset=preset.name, notes=notes,
        config={"preset": preset.name, "source": preset.source, "description": preset.description,
                "targets": preset.targets, "optimizers": sorted({c.optimizer for c in configs}),
                "seeds": sorted({c.seed for c in configs}), "sweep": preset.sweep,
                "batch_defaults": preset.batch_defaults if "batch_size" in preset.sweep else None,
                "held": held_note(preset, sorted({c.optimizer for c in configs}))})
    for config in configs:
        store.add_run(experiment_id, name=run_name(config, sweep_keys), optimizer=config.optimizer,
                      seed=config.seed, lr=config.optimizer_hparams()["lr"], config=config.to_dict(),
                      tags=[preset.name])
    return experiment_id


def queue_confirmation(store: Store, experiment_id: int, lrs: dict[str, float], seeds: int, *,
                       where: dict | None = None) -> list[int]:
    """Queue each optimizer at its chosen LR on `seeds` seeds the experiment has not used yet,
    tagged CONFIRM_TAG; returns the new run ids. The numbers of the seeds that chose an LR are
    optimistic (the winner's curse); these fresh runs are what a confirmed verdict rests on.
    In a sweep, `where` names the swept value whose choice is confirmed ({"batch_size": 256})."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 100:
        raise ValueError(f"seeds must be an integer from 1 to 100, got {seeds!r}")
    runs = store.list_runs(experiment_id=experiment_id)
    if not lrs:
        raise ValueError(f"experiment {experiment_id} has no chosen learning rates to confirm")
    first_fresh = max((r["seed"] for r in runs), default=-1) + 1
    experiment = store.get_experiment(experiment_id)
    sweep_keys = sorted((experiment.get("config") or {}).get("sweep") or {})
    loose = [k for k in sweep_keys if k not in (where or {})]
    if loose:
        raise ValueError(f"where: experiment {experiment_id} sweeps {', '.join(loose)}; confirm one value at a time")
    ids = []
    for optimizer, lr in sorted(lrs.items()):
        template = next((r for r in runs if r["optimizer"] == optimizer and float(r["lr"]) == float(lr)
                         and all(r["config"].get(k) == v for k, v in (where or {}).items())), None)
        if template is None:
            raise ValueError(f"lrs: experiment {experiment_id} has no {optimizer} run at lr {lr:g}")
        for seed in range(first_fresh, first_fresh + seeds):
            config = RunConfig.from_dict({**template["config"], "seed": seed})
            ids.append(store.add_run(experiment_id, name=run_name(config, sweep_keys) + " (confirm)",
                                     optimizer=optimizer, seed=seed, lr=float(template["lr"]),
                                     config=config.to_dict(), tags=[CONFIRM_TAG]))
    return ids


def queue_sweep_confirmation(store: Store, experiment_id: int, seeds: int, *, metric: str | None = None,
                             threshold: float | None = None) -> list[int]:
    """Confirm a sweep: at every swept value, each optimizer's LR chosen there (`compare` with
    that value) on `seeds` fresh seeds; returns the new run ids."""
    from alto.analysis.experiment import sweep_points
    from alto.analysis.verdicts import COUNTED, compare

    experiment = store.get_experiment(experiment_id)
    counted = store.list_runs(experiment_id=experiment_id, status=list(COUNTED))
    ids = []
    for where in sweep_points(experiment, counted):
        lrs = compare(store, experiment_id, metric=metric, thresholds=None if threshold is None else [threshold],
                      where=where or None).selection.lrs
        ids += queue_confirmation(store, experiment_id, lrs, seeds, where=where or None)
    return ids
