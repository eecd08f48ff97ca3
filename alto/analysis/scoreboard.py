"""The scoreboard across workloads: how often is each optimizer the fastest, or close to it?

A workload is one experiment at its primary target (its first threshold); a sweep contributes
one workload per swept value. On each, `verdicts.compare` chooses every optimizer's LR and gives
the runs its verdict rests on; an optimizer's cost there is their expected time per success
(`verdicts.cost_per_success`; inf when none reached). From the costs, `alto.stats.profile` gives
the ratios to the fastest, the performance profile and its area. Beside each ratio stands the
verdict word of that optimizer against the fastest one on the workload (`compare` with the fastest
as baseline), so a ratio of 1.1 that no interval resolves reads "not enough evidence".

Workloads where every optimizer missed are listed, not scored; experiments without a target or
with runs still to finish are listed as skipped. An optimizer that did not run on a workload
counts as a miss there (its ratio is inf) and is marked "not run": the profile compares
optimizers over the same workloads. The profile rests on point estimates and changes when
optimizers are added, so it is shown from MIN_WORKLOADS workloads up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from alto.stats.profile import TAU_MAX, profile_area, profile_steps, ratios
from alto.store import Store

from .experiment import sweep_points
from .verdicts import COUNTED, compare, cost_per_success, primary_target

MIN_WORKLOADS = 5
UNFINISHED = ("queued", "running", "stalled")
BEST = "fastest"        # the word beside the ratio of the fastest optimizer (r = 1)
NOT_RUN = "not run"


@dataclass(frozen=True)
class Workload:
    experiment_id: int
    name: str                       # what ran, and the swept value: "digits (mlp), batch_size=64"
    where: dict
    target: str                     # "val/acc ≥ 0.9"
    axis: str
    costs: dict[str, float]         # optimizer -> expected time per success (inf: missed or not run)
    ratios: dict[str, float]        # r(o, w); {} when every optimizer missed
    words: dict[str, str]           # verdict word of o against the fastest; BEST; NOT_RUN
    lrs: dict[str, float]
    fastest: str | None

    @property
    def scored(self) -> bool:
        return bool(self.ratios)


@dataclass
class Scoreboard:
    optimizers: list[str]
    workloads: list[Workload]                      # scored
    unscored: list[Workload]                       # every optimizer missed
    skipped: list[tuple[int, str]] = field(default_factory=list)   # (experiment id, why)
    axis: str = "wall_time"
    tau_max: float = TAU_MAX

    @property
    def enough(self) -> bool:
        return len(self.workloads) >= MIN_WORKLOADS

    def ratios_of(self, optimizer: str) -> list[float]:
        return [w.ratios.get(optimizer, math.inf) for w in self.workloads]

    def profile(self) -> dict[str, list[tuple[float, float]]] | None:
        """Per optimizer the profile's steps (tau, rho); None below MIN_WORKLOADS workloads."""
        if not self.enough:
            return None
        return {o: profile_steps(self.ratios_of(o), self.tau_max) for o in self.optimizers}

    def areas(self) -> dict[str, float] | None:
        """Per optimizer the profile's area in [0, 1]; None below MIN_WORKLOADS workloads."""
        if not self.enough:
            return None
        return {o: profile_area(self.ratios_of(o), self.tau_max) for o in self.optimizers}

    def as_json(self) -> dict:
        def number(v: float) -> float | str:
            return "inf" if math.isinf(v) else v

        def workload(w: Workload) -> dict:
            return {"experiment": w.experiment_id, "workload": w.name, "where": w.where, "target": w.target,
                    "fastest": w.fastest, "lrs": w.lrs,
                    "cost": {o: number(c) for o, c in w.costs.items()},
                    "r": {o: number(r) for o, r in w.ratios.items()}, "verdict": w.words}

        profile, areas = self.profile(), self.areas()
        return {"axis": self.axis, "optimizers": self.optimizers, "tau": [1.0, self.tau_max],
                "min_workloads": MIN_WORKLOADS, "scored": len(self.workloads),
                "profile": None if profile is None else {o: [list(p) for p in steps] for o, steps in profile.items()},
                "area": areas,
                "area_definition": f"integral of rho over [1, {self.tau_max:g}] / {self.tau_max - 1:g}",
                "workloads": [workload(w) for w in self.workloads],
                "every_optimizer_missed": [workload(w) for w in self.unscored],
                "skipped": [{"experiment": e, "why": why} for e, why in self.skipped]}


def scoreboard(store: Store, *, experiment_ids: Sequence[int] | None = None, optimizers: Sequence[str] | None = None,
               axis: str = "wall_time") -> Scoreboard:
    """Every workload of the chosen experiments (default: all) scored for `optimizers` (default:
    every optimizer that ran on one of them)."""
    experiments = store.list_experiments()
    if experiment_ids is not None:
        unknown = sorted(set(experiment_ids) - {e["id"] for e in experiments})
        if unknown:
            raise ValueError(f"experiments: {', '.join(map(str, unknown))} not found")
        experiments = [e for e in experiments if e["id"] in set(experiment_ids)]
    measured, skipped = [], []
    for experiment in sorted(experiments, key=lambda e: e["id"]):
        found, why = _measure(store, experiment, axis)
        measured += found
        if why:
            skipped.append((experiment["id"], why))
    ran = sorted({o for m in measured for o in m["costs"]})
    names = ran if optimizers is None else list(optimizers)
    absent = [o for o in names if o not in ran]
    if absent:
        raise ValueError(f"optimizers: {', '.join(absent)} ran on none of these workloads "
                         f"(ran: {', '.join(ran) or 'none'})")
    workloads = [_score(store, m, names, axis) for m in measured]
    return Scoreboard(names, [w for w in workloads if w.scored], [w for w in workloads if not w.scored],
                      skipped, axis)


def _measure(store: Store, experiment: dict, axis: str) -> tuple[list[dict], str | None]:
    """Each workload of the experiment with every optimizer's cost there, or why it has none."""
    runs = store.list_runs(experiment_id=experiment["id"])
    metric, _, thresholds = primary_target(experiment)
    if not thresholds:
        return [], "sets no target"
    if not runs:
        return [], "has no runs"
    unfinished = sum(r["status"] in UNFINISHED for r in runs)
    if unfinished:
        return [], f"{unfinished} of its runs have not finished"
    out = []
    for where in sweep_points(experiment, [r for r in runs if r["status"] in COUNTED]):
        try:
            c = compare(store, experiment["id"], metric=metric, thresholds=thresholds[:1], axis=axis,
                        where=where or None)
        except ValueError as err:
            return out, str(err)
        arms = {name: outs for row in c.rows for name, outs in row.arms.items() if outs}
        out.append({"experiment_id": experiment["id"], "name": c.workload, "where": where, "metric": metric,
                    "threshold": thresholds[0], "target": f"{metric} {'≥' if c.mode == 'max' else '≤'} "
                                                          f"{thresholds[0]:g}",
                    "costs": {o: cost_per_success(outs) for o, outs in arms.items()}, "lrs": c.selection.lrs})
    return out, None


def _score(store: Store, m: dict, names: list[str], axis: str) -> Workload:
    """Ratios and words on one workload for exactly `names`; one that did not run there is a miss."""
    costs = {o: m["costs"].get(o, math.inf) for o in names}
    words = {o: NOT_RUN for o in names if o not in m["costs"]}
    common = dict(experiment_id=m["experiment_id"], name=m["name"], where=m["where"], target=m["target"], axis=axis,
                  costs=costs, lrs={o: lr for o, lr in m["lrs"].items() if o in names})
    if all(math.isinf(c) for c in costs.values()):
        return Workload(ratios={}, words=words, fastest=None, **common)
    r = ratios(costs)
    fastest = min(sorted(r), key=lambda o: r[o])
    words[fastest] = BEST
    others = [o for o in names if o != fastest and o in m["costs"]]
    if others:
        against = compare(store, m["experiment_id"], metric=m["metric"], thresholds=[m["threshold"]], axis=axis,
                          where=m["where"] or None, baseline=fastest, candidates=others)
        words.update({row.candidate: row.verdict.word for row in against.rows})
    return Workload(ratios=r, words=words, fastest=fastest, **common)
