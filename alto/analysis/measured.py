"""What one experiment measured, in the shape the ROI page and the report need.

The speed-up of a candidate optimizer over a baseline at a target (wall clock, CI over seeds,
split into fewer steps x cost per step) and the final-metric difference (the measured version
of the paper's "+2.5% accuracy"). Each optimizer is taken at the LR that did best on the
validation split when the experiment has several.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from alto.stats.metrics import selection_metric
from alto.stats.speedup import DiffResult, SpeedupResult, SplitResult, metric_difference, speedup, split_speedup
from alto.store import Store

from .experiment import DEFAULT_STATUSES, best_lr_per_optimizer, resolve_mode, target_results


@dataclass(frozen=True)
class Measured:
    candidate: str
    baseline: str
    metric: str
    mode: str
    threshold: float
    lrs: dict[str, float]
    speedup: SpeedupResult
    split: SplitResult
    difference: DiffResult | None   # final metric, candidate - baseline (metric units)
    n_candidate: int
    n_baseline: int

    @property
    def usable(self) -> bool:
        """A speed-up number exists (both arms reached the target at least once)."""
        return self.speedup.estimate is not None

    def speedup_bounds(self) -> tuple[float, float, float] | None:
        if not self.usable:
            return None
        s = self.speedup.estimate
        lo, hi = self.speedup.ci if self.speedup.ci else (s, s)
        return s, lo, hi


def measure(store: Store, experiment_id: int, *, candidate: str = "alto", baseline: str = "lamb",
            metric: str = "val/acc", mode: str | None = None, threshold: float, smoothing: float = 0.0,
            n_boot: int = 2000) -> Measured:
    """Speed-up of `candidate` over `baseline` to `threshold` on `metric`, with CIs over seeds.

    `mode` defaults to the metric's direction (resolve_mode); each optimizer's LR is chosen on
    selection_metric(metric, what the runs logged, mode).
    """
    if candidate == baseline:
        raise ValueError("candidate and baseline must be different optimizers")
    runs = [r for r in store.list_runs(experiment_id=experiment_id) if r["status"] in DEFAULT_STATUSES]
    names = {r["optimizer"] for r in runs}
    for role, name in (("candidate", candidate), ("baseline", baseline)):
        if name not in names:
            raise ValueError(f"{role}: no finished {name!r} runs in experiment {experiment_id} "
                             f"(finished optimizers: {sorted(names) or 'none'})")
    keys = {k for r in runs for k in store.metric_keys(r["id"])}
    if metric not in keys:
        raise ValueError(f"metric: {metric!r} was not logged by these runs; logged: {sorted(keys)}")
    mode = resolve_mode(store, experiment_id, metric, mode)
    selection = selection_metric(metric, keys, mode)
    if selection is None:
        raise ValueError("metric: no validation metric logged to choose learning rates on")
    lrs = best_lr_per_optimizer(store, experiment_id, *selection)
    arms = {name: [r for r in runs if r["optimizer"] == name and float(r["lr"]) == float(lrs[name])]
            for name in (candidate, baseline)}
    targets = target_results(store, [r["id"] for rs in arms.values() for r in rs], metric, threshold,
                             mode=mode, smoothing=smoothing)
    times = {name: [targets[r["id"]].wall_s if targets[r["id"]].reached else None for r in rs]
             for name, rs in arms.items()}
    summary = store.summary([r["id"] for rs in arms.values() for r in rs])
    finals = {name: [summary[r["id"]].get(metric, {}).get("last") for r in rs] for name, rs in arms.items()}
    finals = {name: [v for v in vs if v is not None and math.isfinite(v)] for name, vs in finals.items()}
    difference = None
    if finals[candidate] and finals[baseline]:
        difference = metric_difference(finals[candidate], finals[baseline], n_boot=n_boot)
    return Measured(
        candidate=candidate, baseline=baseline, metric=metric, mode=mode, threshold=threshold,
        lrs={candidate: lrs[candidate], baseline: lrs[baseline]},
        speedup=speedup(times[baseline], times[candidate], n_boot=n_boot),
        split=split_speedup([targets[r["id"]] for r in arms[baseline]],
                            [targets[r["id"]] for r in arms[candidate]], n_boot=n_boot),
        difference=difference, n_candidate=len(arms[candidate]), n_baseline=len(arms[baseline]))
