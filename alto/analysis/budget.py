"""Confirm at budget: does the candidate reach the target when its job is only as long as its
speed-up promises?

An LR schedule depends on the run's length, so reaching the target at step T/s inside a T-step
schedule is not the same as a job given T/s steps (its decay comes s times sooner). Confirming
at budget re-runs the candidate at its chosen LR on fresh seeds with max_steps = ceil(T / s),
T the baseline's planned steps per run and s the measured steps-to-target ratio, and checks that
those runs reach the same target. The plan is stored beside its runs as an artifact of kind
BUDGET_KIND; the runs carry BUDGET_TAG and never enter the experiment's verdicts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from alto.stats.speedup import clopper_pearson
from alto.store import Store

from .measured import Measured
from .verdicts import COUNTED, outcomes

BUDGET_KIND = "budget_confirmation"
NOT_CONFIRMED = "not confirmed at budget"  # what a saving says until a confirmation reached the target
UNFINISHED = ("queued", "running", "stalled")


@dataclass(frozen=True)
class BudgetPlan:
    candidate: str
    baseline: str
    lr: float                 # the candidate's chosen LR
    metric: str
    mode: str
    threshold: float
    steps_speedup: float      # measured: baseline steps to target / candidate steps to target
    baseline_steps: int       # T: the baseline's planned steps per run
    budget_steps: int         # ceil(T / s): what the candidate's runs are given

    @property
    def factor(self) -> float:
        """The steps-to-target ratio a confirmation proves: T / budget (at most the measured one)."""
        return self.baseline_steps / self.budget_steps

    @property
    def target(self) -> str:
        return f"{self.metric} {'≥' if self.mode == 'max' else '≤'} {self.threshold:g}"


def plan_budget(measured: Measured) -> BudgetPlan:
    """The budget a measured pair is confirmed at; ValueError when there is nothing to confirm."""
    row, result = measured.steps_row, measured.steps_row.result
    if result.estimate is None:
        raise ValueError(f"{row.candidate} vs {row.baseline}: the target was not reached, so there is no "
                         "speed-up to confirm at budget")
    if result.estimate <= 1:
        raise ValueError(f"{row.candidate} needs {1 / result.estimate:.2f}x the steps of {row.baseline}: "
                         "a speed-up of at most 1 has no shorter budget to confirm")
    planned = [o.budget for o in row.arms[row.baseline] if o.budget]
    if not planned:
        raise ValueError(f"the {row.baseline} runs did not record their planned steps")
    total = max(planned)
    return BudgetPlan(row.candidate, row.baseline, row.lrs[row.candidate], row.metric, row.mode, row.threshold,
                      result.estimate, total, math.ceil(total / result.estimate))


def record_plan(store: Store, experiment_id: int, plan: BudgetPlan, run_ids: list[int]) -> int:
    """Keep the plan beside the runs queued for it (`alto.runner.queue.queue_budget_confirmation`
    queues and records); returns the artifact id."""
    return store.put_artifact(kind=BUDGET_KIND, name=f"{plan.candidate} at {plan.budget_steps} steps",
                              payload={**asdict(plan), "run_ids": list(run_ids)}, experiment_id=experiment_id)


@dataclass(frozen=True)
class BudgetCheck:
    """What the runs given the budget did."""

    plan: BudgetPlan
    run_ids: tuple[int, ...]
    status: str                          # "confirmed", "missed", "running" or "failed to run"
    reached: int                         # runs that reached the target within the budget
    counted: int                         # finished or diverged runs (a diverged run is a miss)
    reach_interval: tuple[float, float] | None
    steps_to_target: tuple[float | None, ...]
    left_out: dict[str, int]             # status -> runs neither counted nor still running

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    def label(self) -> str:
        p = self.plan
        given = (f"{p.candidate} runs given {p.budget_steps:,} steps ({p.baseline_steps:,} / "
                 f"{p.steps_speedup:.2f}x, fresh seeds)")
        if self.status == "confirmed":
            return f"confirmed at budget: {self.reached}/{self.counted} {given} reached {p.target}"
        if self.status == "missed":
            return f"{NOT_CONFIRMED}: only {self.reached}/{self.counted} {given} reached {p.target}"
        if self.status == "running":
            done = self.counted + sum(self.left_out.values())
            return f"{NOT_CONFIRMED} yet: {done}/{len(self.run_ids)} {given} have ended"
        parts = ", ".join(f"{n} {s}" for s, n in sorted(self.left_out.items()))
        return f"{NOT_CONFIRMED}: the {given} did not run to the end ({parts})"


def budget_check(store: Store, experiment_id: int, *, candidate: str, baseline: str, metric: str,
                 threshold: float) -> BudgetCheck | None:
    """The newest budget confirmation of this pair at this target, its runs pooled with those of
    earlier confirmations at the same budget; None when there is none."""
    plans = []
    for artifact in store.artifacts(kind=BUDGET_KIND, experiment_id=experiment_id):
        payload = dict(artifact["payload"])
        ids = payload.pop("run_ids", [])
        try:
            plan = BudgetPlan(**payload)
        except TypeError:  # written by another version: not ours to read
            continue
        if (plan.candidate, plan.baseline, plan.metric, float(plan.threshold)) == (candidate, baseline, metric,
                                                                                    float(threshold)):
            plans.append((plan, ids))
    if not plans:
        return None
    plan = plans[0][0]
    ids = sorted({i for p, run_ids in plans if p.budget_steps == plan.budget_steps and p.lr == plan.lr
                  for i in run_ids})
    runs = []
    for i in ids:
        try:
            runs.append(store.get_run(i))
        except KeyError:  # deleted since
            pass
    counted = [r for r in runs if r["status"] in COUNTED]
    running = [r for r in runs if r["status"] in UNFINISHED]
    left_out: dict[str, int] = {}
    for r in runs:
        if r["status"] not in COUNTED and r["status"] not in UNFINISHED:
            left_out[r["status"]] = left_out.get(r["status"], 0) + 1
    times = tuple(o.time for o in outcomes(store, counted, metric, threshold, mode=plan.mode, axis="step"))
    reached = sum(t is not None for t in times)
    if running:
        status = "running"
    elif not counted:
        status = "failed to run"
    else:
        status = "confirmed" if reached == len(counted) else "missed"
    return BudgetCheck(plan, tuple(r["id"] for r in runs), status, reached, len(counted),
                       clopper_pearson(reached, len(counted)) if counted else None, times, left_out)
