"""Verdicts on an experiment: from the store's runs to speed-ups, their intervals and sentences.

This is the one path every surface takes (Compare, ROI, the report, `alto compare`), so they
agree. What it follows (README, "Honesty rules"):

* Time to target is read on the raw validation series, never on a display smoothing, on the
  training clock (seconds) or in steps run (after step k, k + 1 steps).
* Finished and diverged runs count; a diverged run is a miss, never a final value, never the
  best LR. Runs that failed, crashed or were cancelled are left out and said so.
* Each optimizer's LR is chosen on the quantity the verdict is about: for a speed-up, its
  expected time per success at the target; for a quality verdict, its final validation value.
  Different numbers of LR trials and a choice at the edge of a grid are warned about. The
  seeds that chose the LR flatter it: until the choice is confirmed on fresh seeds (runs tagged
  CONFIRM_TAG) the verdict says so, and confirmed runs, once there, are what it rests on.
* Runs tagged BUDGET_TAG ran a compressed schedule to test a speed-up at its budget
  (`alto.analysis.budget`): they answer that question only and never enter a verdict here.
* A sweep is one workload per swept value: `where` picks one ({"batch_size": 256}); pooling
  runs of different values into one arm is refused.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from alto.stats.metrics import metric_mode, selection_metric
from alto.stats.speedup import DiffResult, SpeedupResult, clopper_pearson, metric_difference, speedup
from alto.stats.targets import time_to_target
from alto.stats.verdict import PLAN_SPEEDUPS, Verdict, verdict
from alto.store import BUDGET_TAG, CONFIRM_TAG, Store

from .experiment import experiment_targets, matches, point_label, sweep_keys, sweep_points
from .memory import peak_memory_mb, run_state_bytes

COUNTED = ("finished", "diverged")
AXES = ("wall_time", "step")
AXIS_UNITS = {"wall_time": "s", "step": "steps"}
ALL_POINTS = 1 << 62
UNCONFIRMED = "LRs chosen on these seeds, optimistic until confirmed on fresh seeds"  # the winner's-curse flag


# ------------------------------------------------------------------------------------ runs

@dataclass(frozen=True)
class Outcome:
    """One run at one target."""

    run_id: int
    optimizer: str
    lr: float
    seed: int
    status: str
    confirm: bool
    time: float | None      # to target on the axis; None: missed, or diverged
    spent: float            # on the axis: what the whole run cost
    final: float | None     # last validation value; None for a diverged run
    budget: int | None      # the run's planned steps
    peak_mb: float | None = None            # peak memory at its evaluations (mem_mb)
    state_bytes: float | None = None        # optimizer state bytes per parameter


def _spent(run: dict, params: dict, axis: str, clock_end: float | None) -> float:
    if axis == "step":
        if params.get("steps_run") is not None:
            return float(params["steps_run"])
        return float(run["last_step"] + 1) if run.get("last_step") is not None else 0.0
    if params.get("train_s") is not None:
        return float(params["train_s"])
    return float(clock_end or 0.0)  # runs recorded before the training clock existed


def outcomes(store: Store, runs: Sequence[dict], metric: str, threshold: float | None, *, mode: str,
             axis: str = "wall_time") -> list[Outcome]:
    """Each run's time to `threshold` on `metric` (raw series; no threshold: no time), what it
    spent, and its final value."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    ids = [int(r["id"]) for r in runs]
    series = store.series_many(ids, metric, x="wall_time", max_points=ALL_POINTS) if ids else {}
    clock = store.series_many(ids, "train/loss", x="wall_time", max_points=ALL_POINTS) if ids else {}
    peaks = peak_memory_mb(store, ids)
    out = []
    for run in runs:
        s = series[int(run["id"])]
        x = s["step"] + 1.0 if axis == "step" else s["x"]
        diverged = run["status"] == "diverged"
        hit = (None if diverged or threshold is None or len(x) == 0
               else time_to_target(x, s["value"], threshold, mode=mode))
        values = s["value"][np.isfinite(s["value"])]
        params = store.get_params(int(run["id"]))
        ends = clock[int(run["id"])]["x"]
        out.append(Outcome(
            run_id=int(run["id"]), optimizer=run["optimizer"], lr=float(run["lr"]), seed=int(run["seed"]),
            status=run["status"], confirm=CONFIRM_TAG in (run.get("tags") or []), time=hit,
            spent=max(_spent(run, params, axis, float(ends[-1]) if len(ends) else None), hit or 0.0),
            final=None if diverged or values.size == 0 else float(values[-1]),
            budget=run.get("total_steps"), peak_mb=peaks[int(run["id"])], state_bytes=run_state_bytes(run)))
    return out


# ----------------------------------------------------------------------------- LR selection

@dataclass
class Selection:
    lrs: dict[str, float]                 # optimizer -> chosen LR
    grids: dict[str, list[float]]         # optimizer -> LRs tried
    objective: str                        # "time to target" or "final value"
    warnings: list[str] = field(default_factory=list)

    @property
    def selected(self) -> bool:
        """Whether any optimizer's LR was chosen among several (then the winner's curse applies)."""
        return any(len(g) > 1 for g in self.grids.values())


def cost_per_success(arm: Sequence[Outcome]) -> float:
    """An arm's expected time per success: the time all its runs spent (a miss costs what it
    ran) over the runs that reached; inf when none did (README, "Honesty rules")."""
    reached = sum(o.time is not None for o in arm)
    return math.inf if reached == 0 else sum(o.time if o.time is not None else o.spent for o in arm) / reached


def _final_score(arm: Sequence[Outcome], mode: str) -> float:
    """Higher is better; a diverged or unevaluated run makes its LR the worst."""
    finals = [o.final for o in arm]
    if not finals or any(f is None for f in finals):
        return -math.inf
    mean = sum(finals) / len(finals)
    return mean if mode == "max" else -mean


def select_lrs(results: Sequence[Outcome], *, objective: str = "time", mode: str = "max",
               threshold: float | None = None) -> Selection:
    """Per optimizer, the LR that is best on `objective` ("time": least expected time per
    success; "final": best mean final value), over the runs that are not confirmations. With the
    target's `threshold`, a chosen LR whose runs reached it and then ended on the wrong side of it
    (fast, then unstable) is warned about."""
    if objective not in ("time", "final"):
        raise ValueError(f"objective must be 'time' or 'final', got {objective!r}")
    arms: dict[str, dict[float, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for o in results:
        if not o.confirm:
            arms[o.optimizer][o.lr].append(o)
    for o in results:  # an optimizer run only in confirmations still has its LR
        if o.optimizer not in arms:
            arms[o.optimizer][o.lr].append(o)
    lrs, grids = {}, {}
    for opt, by_lr in arms.items():
        grid = sorted(by_lr)
        grids[opt] = grid
        if objective == "time":
            lrs[opt] = min(grid, key=lambda lr: (cost_per_success(by_lr[lr]), lr))
        else:
            lrs[opt] = max(grid, key=lambda lr: (_final_score(by_lr[lr], mode), -lr))
    selection = Selection(lrs, grids, "time to target" if objective == "time" else "final value")
    sizes = {opt: len(g) for opt, g in grids.items()}
    if len(set(sizes.values())) > 1:
        selection.warnings.append("unequal tuning budgets: " + ", ".join(f"{o} tried {n} LR{'s' * (n > 1)}"
                                                                          for o, n in sorted(sizes.items())))
    for opt, grid in sorted(grids.items()):
        if len(grid) > 1 and lrs[opt] in (grid[0], grid[-1]):
            selection.warnings.append(f"{opt}'s chosen LR {lrs[opt]:g} is at the edge of its grid "
                                      f"{grid[0]:g}–{grid[-1]:g}: the best may lie outside")
        if threshold is not None:
            reached = [o for o in arms[opt][lrs[opt]] if o.time is not None and o.final is not None]
            fell = [o for o in reached if (o.final < threshold if mode == "max" else o.final > threshold)]
            if fell:
                selection.warnings.append(
                    f"{opt}'s chosen LR {lrs[opt]:g} reached the target on {len(reached)} run(s) but {len(fell)} "
                    f"ended past it again (last value {min(o.final for o in fell) if mode == 'max' else max(o.final for o in fell):.4g}): "
                    "fast, then unstable")
    return selection


# ----------------------------------------------------------------------------- comparisons

@dataclass
class Row:
    """One candidate against the baseline at one target: the numbers and the verdict."""

    candidate: str
    baseline: str
    metric: str
    mode: str
    threshold: float
    axis: str
    lrs: dict[str, float]
    result: SpeedupResult
    verdict: Verdict
    difference: DiffResult | None          # final metric, candidate - baseline (finished runs)
    confirmed: bool | None                 # None: nothing was selected, so nothing to confirm
    arms: dict[str, list[Outcome]]

    def state_bytes(self, arm: str) -> float | None:
        """Optimizer state bytes per parameter of `arm` (candidate or baseline name)."""
        return next((o.state_bytes for o in self.arms[arm] if o.state_bytes is not None), None)

    def peak_mb(self, arm: str) -> float | None:
        """The largest peak memory of `arm`'s runs, MB (None when none was logged)."""
        return max((o.peak_mb for o in self.arms[arm] if o.peak_mb is not None), default=None)

    def as_json(self) -> dict:
        r = self.result
        return {"optimizer": self.candidate, "baseline": self.baseline, "metric": self.metric,
                "threshold": self.threshold, "speedup": r.estimate, "low": r.low, "high": r.high,
                "interval": r.interval_kind,
                "reached": {"candidate": [r.reached_candidate, r.n_candidate],
                            "baseline": [r.reached_baseline, r.n_baseline]},
                "runs": {arm: [o.run_id for o in outs] for arm, outs in
                         (("candidate", self.arms[self.candidate]), ("baseline", self.arms[self.baseline]))},
                "p_improvement": r.p_improvement, "verdict": self.verdict.word,
                "sentence": self.verdict.sentence, "seeds_needed": self.verdict.seeds_needed,
                "lr": self.lrs[self.candidate], "baseline_lr": self.lrs[self.baseline],
                "seeds_needed_for": {f"{s:g}": self.result.seeds_needed(s) for s in PLAN_SPEEDUPS},
                "optimizer_state_bytes_per_param": {"candidate": self.state_bytes(self.candidate),
                                                    "baseline": self.state_bytes(self.baseline)},
                "peak_memory_mb": {"candidate": self.peak_mb(self.candidate),
                                   "baseline": self.peak_mb(self.baseline)},
                "axis": self.axis, "confirmed": self.confirmed}


@dataclass
class Comparison:
    experiment_id: int
    workload: str
    metric: str
    mode: str
    thresholds: list[float]
    axis: str
    baseline: str
    selection: Selection
    rows: list[Row]
    left_out: dict[str, int]               # status -> runs not counted (failed, crashed, ...)
    outcomes: dict[float, list[Outcome]]   # threshold -> every counted run
    where: dict = field(default_factory=dict)  # the sweep value compared ({} without a sweep)

    def row(self, candidate: str, threshold: float | None = None) -> Row | None:
        threshold = self.thresholds[0] if threshold is None else threshold
        return next((r for r in self.rows if r.candidate == candidate and r.threshold == threshold), None)


def default_pair(optimizers: Sequence[str]) -> tuple[str | None, str | None]:
    """(candidate, baseline) every surface opens with: ALTO against Lamb when both ran, else
    the first two optimizers in name order."""
    names = sorted(set(optimizers))
    baseline = "lamb" if "lamb" in names else (names[0] if names else None)
    others = [n for n in names if n != baseline]
    candidate = "alto" if "alto" in others else (others[0] if others else None)
    return candidate, baseline


def resolve_pair(experiment_id: int, optimizers: Sequence[str], baseline: str | None,
                 candidates: Sequence[str] | None) -> tuple[str, list[str]]:
    """The baseline (default_pair's unless given) and the candidates (every other optimizer,
    default_pair's first, unless given) among `optimizers`, the ones with counted runs;
    ValueError naming the argument that names none of them."""
    if not optimizers:
        raise ValueError(f"experiment {experiment_id} has no finished or diverged runs yet")
    default_candidate, default_baseline = default_pair(optimizers)
    baseline = baseline or default_baseline
    if baseline not in optimizers:
        raise ValueError(f"baseline: no finished {baseline!r} runs (have: {', '.join(optimizers)})")
    first = default_candidate if baseline == default_baseline else None
    candidates = list(candidates) if candidates else sorted((o for o in optimizers if o != baseline),
                                                             key=lambda o: (o != first, o))
    for c in candidates:
        if c not in optimizers or c == baseline:
            raise ValueError(f"candidate: {c!r} is not an optimizer with finished runs other than the baseline "
                             f"(have: {', '.join(optimizers)})")
    if not candidates:
        raise ValueError(f"candidate: give optimizers other than the baseline {baseline!r} "
                         f"(have: {', '.join(optimizers)})")
    return baseline, candidates


def primary_target(experiment: dict) -> tuple[str, str, list[float]]:
    """(metric, mode, thresholds) from the experiment's preset; a test-split target is read on
    the validation split (the test split only reports)."""
    targets = experiment_targets(experiment)
    metric = targets.get("metric") or "val/acc"
    if metric.startswith("test/"):
        metric = "val/" + metric[len("test/"):]
    thresholds = [float(t) for t in targets.get("thresholds") or [] if isinstance(t, (int, float))]
    return metric, metric_mode(metric, targets if targets.get("metric") == metric else None), thresholds


def workload_name(runs: Sequence[dict]) -> str:
    """What the runs trained, as the verdict sentence names it: "digits (mlp)", or the workload
    a run names itself (a preset's command, alto.track)."""
    names = sorted({r["config"].get("workload") or f"{r['config'].get('dataset', '?')} ({r['config'].get('model', '?')})"
                    for r in runs})
    return ", ".join(names) or "this experiment"


def _budget(arms: dict[str, list[Outcome]]) -> tuple[str | None, str | None]:
    """("150 steps per run", None) or (None, a warning when the arms' budgets differ)."""
    budgets = {o.budget for outs in arms.values() for o in outs if o.budget}
    if not budgets:
        return None, None
    if len(budgets) == 1:
        return f"{budgets.pop():,} steps per run", None
    return None, f"the runs had different budgets ({min(budgets):,} to {max(budgets):,} steps)"


def compare(store: Store, experiment_id: int, *, metric: str | None = None, thresholds: Sequence[float] | None = None,
            mode: str | None = None, baseline: str | None = None, candidates: Sequence[str] | None = None,
            axis: str = "wall_time", lrs: dict[str, float] | None = None, level: float = 0.95,
            where: dict | None = None) -> Comparison:
    """Every candidate against the baseline at every threshold, with verdicts.

    Defaults: the experiment's target (metric, thresholds), baseline `default_pair`'s, every
    other optimizer as a candidate. Each optimizer's LR is chosen on its time to the first
    threshold when `metric` is a validation metric, else on its final validation value;
    `lrs` imposes a choice made elsewhere (e.g. a test-split reading of the same comparison).
    `where` keeps the runs whose config has these values: one point of a sweep, which must be
    pinned when the experiment's runs differ in a swept setting.
    ValueError naming the argument for anything unusable.
    """
    experiment = store.get_experiment(experiment_id)
    own_metric, own_mode, own_thresholds = primary_target(experiment)
    metric = metric or own_metric
    mode = mode or (own_mode if metric == own_metric else metric_mode(metric, experiment_targets(experiment)))
    if thresholds is None:
        thresholds = own_thresholds if metric == own_metric else []
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        raise ValueError(f"threshold: experiment {experiment_id} sets no target for {metric}; give one")
    all_runs = [r for r in store.list_runs(experiment_id=experiment_id) if BUDGET_TAG not in (r.get("tags") or [])]
    _check_where(experiment, all_runs, where)
    all_runs = [r for r in all_runs if matches(r, where)]
    runs = [r for r in all_runs if r["status"] in COUNTED]
    left_out: dict[str, int] = defaultdict(int)
    for r in all_runs:
        if r["status"] not in COUNTED:
            left_out[r["status"]] += 1
    baseline, candidates = resolve_pair(experiment_id, sorted({r["optimizer"] for r in runs}), baseline, candidates)
    logged = {k for r in runs for k in store.metric_keys(int(r["id"]))}
    if metric not in logged:
        raise ValueError(f"metric: {metric!r} was not logged by these runs; logged: {', '.join(sorted(logged))}")

    per_threshold = {t: outcomes(store, runs, metric, t, mode=mode, axis=axis) for t in thresholds}
    selection = _selection(store, runs, per_threshold[thresholds[0]], metric, mode, logged, axis, lrs, thresholds[0])
    workload = ", ".join(filter(None, (workload_name(runs), point_label(where))))
    rows = []
    for t in thresholds:
        by_arm: dict[str, list[Outcome]] = defaultdict(list)
        for o in per_threshold[t]:
            if o.lr == selection.lrs.get(o.optimizer):
                by_arm[o.optimizer].append(o)
        for cand in candidates:
            rows.append(_row(cand, baseline, by_arm, selection, metric, mode, t, axis, workload, level))
    return Comparison(experiment_id, workload, metric, mode, thresholds, axis, baseline, selection, rows,
                      dict(left_out), per_threshold, dict(where or {}))


def _check_where(experiment: dict, runs: list[dict], where: dict | None) -> None:
    """ValueError when `where` names a setting the runs do not sweep, or leaves unpinned a swept
    setting in which the runs differ (their arms would mix workloads)."""
    keys = sweep_keys(experiment)
    for key in where or {}:
        if key not in keys:
            raise ValueError(f"where: experiment {experiment['id']} does not sweep {key!r}"
                             + (f"; it sweeps {', '.join(keys)}" if keys else ""))
    points = sweep_points(experiment, runs)
    loose = [k for k in keys if k not in (where or {}) and len({repr(p[k]) for p in points}) > 1]
    if loose:
        values = ", ".join(point_label(p) for p in points)
        raise ValueError(f"where: experiment {experiment['id']} sweeps {', '.join(loose)} ({values}); each value "
                         f"is its own workload: compare one at a time, e.g. where={points[0]}")


def _selection(store: Store, runs: list[dict], at_target: list[Outcome], metric: str, mode: str, logged: set[str],
               axis: str, lrs: dict[str, float] | None, threshold: float) -> Selection:
    """The LR choice of a comparison (see `compare`)."""
    if lrs is not None:
        grids = defaultdict(set)
        for o in at_target:
            grids[o.optimizer].add(o.lr)
        return Selection(dict(lrs), {k: sorted(v) for k, v in grids.items()}, "given")
    if metric.startswith("val/"):
        return select_lrs(at_target, objective="time", mode=mode, threshold=threshold)
    chosen = selection_metric(metric, logged)
    if chosen is None:
        raise ValueError(f"metric: {metric!r} is not a validation metric and no validation metric was logged "
                         "to choose learning rates on")
    finals = outcomes(store, runs, chosen[0], None, mode=chosen[1], axis=axis)
    selection = select_lrs(finals, objective="final", mode=chosen[1])
    selection.objective = f"final {chosen[0]} ({metric} is not a validation metric)"
    return selection


def _row(cand: str, base: str, by_arm: dict[str, list[Outcome]], selection: Selection, metric: str, mode: str,
         threshold: float, axis: str, workload: str, level: float) -> Row:
    arms = {name: by_arm[name] for name in (cand, base)}
    confirmed = None
    if selection.selected:
        fresh = {name: [o for o in outs if o.confirm] for name, outs in arms.items()}
        confirmed = all(fresh.values())
        if confirmed:
            arms = fresh
    result = speedup([o.time for o in arms[base]], [o.time for o in arms[cand]],
                     baseline_spent=[o.spent for o in arms[base]], candidate_spent=[o.spent for o in arms[cand]],
                     level=level)
    budget, budget_warning = _budget(arms)
    flags = [w for w in (budget_warning,) if w]
    if confirmed is False:
        flags.append(UNCONFIRMED)
    target = f"{metric} {'≥' if mode == 'max' else '≤'} {threshold:g}"
    words = verdict(result, candidate=cand, baseline=base, target=target, workload=workload, budget=budget,
                    flags=tuple(flags))
    finals = {name: [o.final for o in outs if o.final is not None] for name, outs in arms.items()}
    difference = (metric_difference(finals[cand], finals[base], level=level)
                  if finals[cand] and finals[base] else None)
    return Row(cand, base, metric, mode, threshold, axis, dict(selection.lrs), result, words, difference,
               confirmed, arms)


# ------------------------------------------------------------------------------ arm summaries

@dataclass(frozen=True)
class ArmSummary:
    """One optimizer at one LR, at one target: what its runs did."""

    optimizer: str
    lr: float
    chosen: bool                          # the LR the verdicts use
    is_baseline: bool
    runs: int
    diverged: int
    reached: int
    reach_interval: tuple[float, float]   # Clopper-Pearson
    times: tuple[float | None, ...]       # per run, in seed order (None: missed)
    cost: float | None                    # expected time per success (None: never reached)
    finals: tuple[float, ...]             # final validation values of the runs that finished


def arm_summaries(comparison: Comparison, threshold: float | None = None) -> list[ArmSummary]:
    """Every (optimizer, LR) of the comparison at `threshold` (default: the first)."""
    threshold = comparison.thresholds[0] if threshold is None else threshold
    arms: dict[tuple[str, float], list[Outcome]] = defaultdict(list)
    for o in comparison.outcomes[threshold]:
        arms[(o.optimizer, o.lr)].append(o)
    out = []
    for (opt, lr), outs in sorted(arms.items()):
        outs = sorted(outs, key=lambda o: (o.confirm, o.seed))
        reached = sum(o.time is not None for o in outs)
        cost = cost_per_success(outs)
        out.append(ArmSummary(
            optimizer=opt, lr=lr, chosen=comparison.selection.lrs.get(opt) == lr,
            is_baseline=opt == comparison.baseline, runs=len(outs),
            diverged=sum(o.status == "diverged" for o in outs), reached=reached,
            reach_interval=clopper_pearson(reached, len(outs)), times=tuple(o.time for o in outs),
            cost=None if math.isinf(cost) else cost, finals=tuple(o.final for o in outs if o.final is not None)))
    return out


def chosen_lrs(store: Store, experiment_id: int) -> dict[str, float]:
    """Each optimizer's LR as the experiment's verdicts choose it (time to its first target); when
    it sets no target, on the final value of its validation metric; {} when nothing was logged."""
    experiment = store.get_experiment(experiment_id)
    metric, _, thresholds = primary_target(experiment)
    runs = [r for r in store.list_runs(experiment_id=experiment_id, status=list(COUNTED))
            if BUDGET_TAG not in (r.get("tags") or [])]
    logged = {k for r in runs for k in store.metric_keys(int(r["id"]))}
    if thresholds and metric in logged:
        return compare(store, experiment_id).selection.lrs
    chosen = selection_metric(metric, logged)
    if chosen is None:
        return {}
    finals = outcomes(store, runs, chosen[0], None, mode=chosen[1])
    return select_lrs(finals, objective="final", mode=chosen[1]).lrs
