"""Turn a comparison (preset + choices) into one experiment row and its queued run rows."""
from __future__ import annotations

from alto.analysis.budget import BudgetPlan, plan_budget, record_plan
from alto.analysis.measured import measure
from alto.store import BUDGET_TAG, CONFIRM_TAG, Store
from alto.train.config import RunConfig
from alto.train.presets import Preset, held_note, run_name
from alto.train.tracking import TRACK_PRESET


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
        if TRACK_PRESET in template["tags"]:
            raise ValueError(f"lrs: the {optimizer} runs of experiment {experiment_id} were recorded by alto.track "
                             "from your own script; run it again with fresh seeds to confirm")
        for seed in range(first_fresh, first_fresh + seeds):
            config = RunConfig.from_dict({**template["config"], "seed": seed})
            ids.append(store.add_run(experiment_id, name=run_name(config, sweep_keys) + " (confirm)",
                                     optimizer=optimizer, seed=seed, lr=float(template["lr"]),
                                     config=config.to_dict(), tags=[CONFIRM_TAG]))
    return ids


def queue_budget_confirmation(store: Store, experiment_id: int, seeds: int, *, candidate: str | None = None,
                              baseline: str | None = None, metric: str | None = None,
                              threshold: float | None = None) -> tuple[BudgetPlan, list[int]]:
    """Confirm at budget: queue the candidate (defaults as for `measure`) on `seeds` fresh seeds
    with its run shortened to the baseline's steps / the measured steps-to-target ratio, and
    record the plan beside them (`alto.analysis.budget`); returns the plan and the new run ids."""
    plan = plan_budget(measure(store, experiment_id, candidate=candidate, baseline=baseline, metric=metric,
                               threshold=threshold))
    ids = queue_at_budget(store, experiment_id, plan.candidate, plan.lr, seeds, max_steps=plan.budget_steps)
    record_plan(store, experiment_id, plan, ids)
    return plan, ids


def queue_at_budget(store: Store, experiment_id: int, optimizer: str, lr: float, seeds: int, *,
                    max_steps: int) -> list[int]:
    """Queue `optimizer` at `lr` on `seeds` seeds the experiment has not used yet, with its run
    shortened to `max_steps`, tagged BUDGET_TAG; returns the new run ids. The LR schedule sees
    the shorter run (its decay points are fractions of the run) and a warmup keeps its share."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 100:
        raise ValueError(f"seeds must be an integer from 1 to 100, got {seeds!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    runs = store.list_runs(experiment_id=experiment_id)
    template = next((r for r in runs if r["optimizer"] == optimizer and float(r["lr"]) == float(lr)
                     and BUDGET_TAG not in (r.get("tags") or [])), None)
    if template is None:
        raise ValueError(f"lr: experiment {experiment_id} has no {optimizer} run at lr {lr:g}")
    if TRACK_PRESET in template["tags"]:
        raise ValueError(f"lr: the {optimizer} runs of experiment {experiment_id} were recorded by alto.track "
                         "from your own script; run it again with fewer steps to confirm at budget")
    warmup = template["config"].get("warmup_steps") or 0
    if warmup and template.get("total_steps"):
        warmup = min(max_steps - 1, round(warmup * max_steps / template["total_steps"]))
    first_fresh = max((r["seed"] for r in runs), default=-1) + 1
    sweep_keys = sorted((store.get_experiment(experiment_id).get("config") or {}).get("sweep") or {})
    ids = []
    for seed in range(first_fresh, first_fresh + seeds):
        config = RunConfig.from_dict({**template["config"], "seed": seed, "max_steps": max_steps,
                                      "warmup_steps": warmup})
        ids.append(store.add_run(experiment_id, name=f"{run_name(config, sweep_keys)} ({max_steps} steps)",
                                 optimizer=optimizer, seed=seed, lr=float(template["lr"]), config=config.to_dict(),
                                 tags=[BUDGET_TAG]))
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
