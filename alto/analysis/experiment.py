"""An experiment's runs read from the Store: best LR per optimizer, time to target per run,
the summary table (one row per optimizer and LR) and series grouped by optimizer.

Arrays are pulled from the Store and handed to the pure functions of `alto.stats`; what comes
back are tables and dicts ready for the pages and the report."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from alto.stats._checks import check_choice
from alto.stats.aggregate import group_runs, mean_std
from alto.stats.downsample import MAX_POINTS
from alto.stats.metrics import MODES, metric_mode, selection_metric
from alto.stats.speedup import speedup
from alto.stats.targets import TargetResult, target_result
from alto.store import X_AXES, Store

FULL_RESOLUTION = 1 << 62  # max_points that makes the store return every logged point
DEFAULT_STATUSES = ("finished", "diverged")  # a diverged run is a run that missed the target
N_DEVICES_KEY = "n_devices"  # run config key read for device-hours (default 1)


def experiment_targets(experiment: Mapping) -> dict:
    """The targets an experiment's config sets ({"metric", "mode", "thresholds"}), or {}."""
    return dict((experiment.get("config") or {}).get("targets") or {})


def resolve_mode(store: Store, experiment_id: int, metric: str, mode: str | None = None) -> str:
    """`mode` when given, else metric_mode(metric) under the experiment's own targets."""
    if mode is not None:
        return check_choice(mode, "mode", MODES)
    return metric_mode(metric, experiment_targets(store.get_experiment(experiment_id)))


def _runs(store: Store, experiment_id: int, statuses: Sequence[str]) -> list[dict]:
    return store.list_runs(experiment_id=experiment_id, status=list(statuses))


def _per_run(summary: dict, metric: str, mode: str, which: str) -> float | None:
    s = summary.get(metric)
    if s is None:
        return None
    return s["last"] if which == "final" else s["max" if mode == "max" else "min"]


def best_lr_per_optimizer(
    store: Store,
    experiment_id: int,
    metric: str = "val/acc",
    mode: str | None = None,
    *,
    by: str = "final",
    statuses: Sequence[str] = DEFAULT_STATUSES,
) -> dict[str, float]:
    """Per optimizer, the LR whose seeds have the best mean `by` value ("final" or "best").

    Chosen on a validation metric only (the metric must start with "val/": choosing on a
    test metric would leak the test set into the comparison). An LR with any run whose
    value is NaN (diverged) loses to every LR without. Ties go to the smaller LR.
    Optimizers with no run that logged the metric are left out. `mode` defaults to the
    metric's direction (resolve_mode).
    """
    if not metric.startswith("val/"):
        raise ValueError(f"metric must be a validation metric ('val/...'), got {metric!r}: "
                         "choosing the LR on a test or train metric is not allowed")
    mode = resolve_mode(store, experiment_id, metric, mode)
    check_choice(by, "by", ("final", "best"))
    runs = _runs(store, experiment_id, statuses)
    summ = store.summary([r["id"] for r in runs])
    scores: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        v = _per_run(summ[r["id"]], metric, mode, by)
        if v is not None:
            scores[r["optimizer"]][float(r["lr"])].append(v)
    out = {}
    for opt, by_lr in scores.items():
        out[opt] = max(sorted(by_lr), key=lambda lr, v=by_lr: (_lr_score(v[lr], mode), -lr))
    return out


def _lr_score(values: list[float], mode: str) -> float:
    """Higher is better: the mean (negated for mode min); any NaN makes it the worst."""
    if any(math.isnan(v) for v in values):
        return -math.inf
    mean = sum(values) / len(values)
    return mean if mode == "max" else -mean


def target_results(
    store: Store,
    run_ids: Sequence[int],
    metric: str,
    threshold: float,
    *,
    mode: str = "max",
    smoothing: float = 0.0,
) -> dict[int, TargetResult]:
    """Time to target of each run on every x axis, from the full-resolution series.

    Device-hours use the run config's "n_devices" (1 when absent).
    """
    ids = [int(r) for r in run_ids]
    df = store.raw_metrics(ids, [metric])
    out = {}
    for rid in ids:
        d = df[df["run_id"] == rid]
        n_dev = store.get_run(rid)["config"].get(N_DEVICES_KEY, 1) or 1
        out[rid] = target_result(
            d["step"].to_numpy(dtype=np.float64), d["value"].to_numpy(dtype=np.float64),
            threshold, mode=mode, smoothing=smoothing, n_devices=n_dev,
            wall_time=d["wall_time"].to_numpy(dtype=np.float64),
            samples=d["samples"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan),
            epochs=d["epoch"].to_numpy(dtype=np.float64),
        )
    return out


TABLE_COLUMNS = (
    "optimizer", "lr", "is_baseline", "n_runs", "n_diverged", "final_mean", "final_std",
    "best_mean", "best_std", "n_reached", "target_mean", "target_std", "steps_to_target_mean",
    "speedup", "speedup_low", "speedup_high", "speedup_note",
)


def experiment_table(
    store: Store,
    experiment_id: int,
    *,
    metric: str = "val/acc",
    mode: str | None = None,
    threshold: float | None = None,
    baseline: str = "lamb",
    x: str = "wall_time",
    smoothing: float = 0.0,
    select_on: tuple[str, str] | None = None,
    statuses: Sequence[str] = DEFAULT_STATUSES,
    n_boot: int = 2000,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per (optimizer, lr): seeds, final/best metric mean±std, time to target on
    `x` (mean±std over reached runs), steps to target, speed-up vs the baseline with CI.

    `mode` defaults to the metric's direction (resolve_mode). final/best are raw (unsmoothed)
    values; the target search uses `smoothing`. The baseline arm is the baseline optimizer at
    one LR: its only LR, or the best by `select_on` = (validation metric, mode), by default
    selection_metric(metric, what the baseline runs logged, mode). Without a threshold the
    target and speed-up columns are empty (speedup_note "no threshold"). df.attrs holds the
    settings and baseline_lr.
    """
    mode = resolve_mode(store, experiment_id, metric, mode)
    check_choice(x, "x", X_AXES)
    runs = _runs(store, experiment_id, statuses)
    summ = store.summary([r["id"] for r in runs])
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["optimizer"], float(r["lr"]))].append(r)

    base_lrs = sorted(lr for opt, lr in groups if opt == baseline)
    baseline_lr = base_lrs[0] if len(base_lrs) == 1 else None
    if select_on is None:
        logged = {k for r in runs if r["optimizer"] == baseline for k in summ[r["id"]]}
        select_on = selection_metric(metric, logged, mode)
    if len(base_lrs) > 1:
        if select_on is None:
            raise ValueError(f"select_on: the {baseline!r} runs logged no validation metric, so "
                             "its LR cannot be chosen; pass select_on=(val metric, mode)")
        chosen = best_lr_per_optimizer(store, experiment_id, *select_on, statuses=statuses)
        if baseline not in chosen:
            raise ValueError(f"select_on: the {baseline!r} runs did not log {select_on[0]!r}, "
                             "so its LR cannot be chosen; pass select_on=(val metric, mode)")
        baseline_lr = chosen[baseline]

    targets = {} if threshold is None else target_results(
        store, [r["id"] for r in runs], metric, threshold, mode=mode, smoothing=smoothing)

    def times(rs: list[dict]) -> list[float | None]:
        return [targets[r["id"]].on_axis(x) for r in rs]

    base_times = None
    if threshold is not None and baseline_lr is not None:
        base_times = times(groups[(baseline, baseline_lr)])
    rows = []
    for (opt, lr), rs in sorted(groups.items()):
        s = [summ[r["id"]] for r in rs]
        finals = [_per_run(v, metric, mode, "final") for v in s]
        bests = [_per_run(v, metric, mode, "best") for v in s]
        row = dict(optimizer=opt, lr=lr, is_baseline=(opt == baseline and lr == baseline_lr),
                   n_runs=len(rs),
                   n_diverged=sum(r["status"] == "diverged" or (f is not None and math.isnan(f))
                                  for r, f in zip(rs, finals)))
        row["final_mean"], row["final_std"] = mean_std(finals)
        row["best_mean"], row["best_std"] = mean_std(bests)
        row.update(n_reached=0, target_mean=math.nan, target_std=math.nan,
                   steps_to_target_mean=math.nan, speedup=math.nan, speedup_low=math.nan,
                   speedup_high=math.nan, speedup_note="no threshold")
        if threshold is not None:
            t = times(rs)
            row["n_reached"] = sum(v is not None for v in t)
            row["target_mean"], row["target_std"] = mean_std(t)
            row["steps_to_target_mean"] = mean_std([targets[r["id"]].steps for r in rs])[0]
            row.update(_speedup_cells(base_times, t, baseline, row["is_baseline"], n_boot, level))
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    df.attrs.update(metric=metric, mode=mode, threshold=threshold, x=x, baseline=baseline,
                    baseline_lr=baseline_lr, smoothing=smoothing,
                    select_on=None if select_on is None else tuple(select_on),
                    statuses=tuple(statuses), level=level)
    return df


def _speedup_cells(base_times: list | None, times: list, baseline: str, is_baseline: bool,
                   n_boot: int, level: float) -> dict:
    if is_baseline:
        if not any(t is not None for t in times):
            return dict(speedup_note="baseline: not reached by any run")
        return dict(speedup=1.0, speedup_note="baseline")
    if not base_times:
        return dict(speedup_note=f"no {baseline!r} runs to compare with")
    try:
        res = speedup(base_times, times, n_boot=n_boot, level=level)
    except ValueError as exc:
        return dict(speedup_note=str(exc))
    lo, hi = res.ci if res.ci is not None else (math.nan, math.nan)
    note = "; ".join(p for p in (res.why_no_ci, res.note) if p)
    return dict(speedup=res.estimate if res.estimate is not None else math.nan,
                speedup_low=lo, speedup_high=hi, speedup_note=note)


def save_experiment_table(store: Store, experiment_id: int, table: pd.DataFrame,
                          *, name: str = "experiment_table") -> int:
    """Store a table from experiment_table (rows and settings) as an artifact; returns its id."""
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in table.attrs.items()}
    payload = {"settings": attrs, "rows": table.to_dict(orient="records")}
    return store.put_artifact(kind="experiment_table", name=name, payload=payload,
                              experiment_id=experiment_id)


def grouped_series(
    store: Store,
    run_ids: Sequence[int],
    key: str,
    *,
    x: str = "step",
    smoothing: float = 0.0,
    step_range: tuple[int, int] | None = None,
    max_points: int = MAX_POINTS,
) -> dict[str, dict]:
    """Runs grouped by optimizer, aligned on one grid, summarised per grid point.

    Returns {label: {"grid", "mean", "std", "min", "max", "n", "runs"}} with every array
    at most max_points long; "runs" is {run_id: {"x", "y", "seed", "lr"}}. The label is
    the optimizer name, or "name (lr=...)" when the selection holds several LRs of it.
    `step_range` (inclusive) limits the steps read. Without smoothing the store downsamples
    onto a step grid shared by the runs; with smoothing every point from step 0 to the end of
    the range is read and smoothed before cutting and downsampling, so the smoothed value at
    a step does not depend on where the range starts. Runs that have not logged `key` are
    left out; so is a group with no data.
    """
    check_choice(x, "x", X_AXES)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    ids = [int(r) for r in run_ids]
    if not ids:
        return {}
    runs = [store.get_run(rid) for rid in ids]
    if smoothing:
        upto = None if step_range is None else (0, int(step_range[1]))
        data = store.series_many(ids, key, x=x, step_range=upto, max_points=FULL_RESOLUTION)
        first = None if step_range is None else int(step_range[0])
        return group_runs(runs, data, smoothing=smoothing, first_step=first, max_points=max_points)
    data = store.series_many(ids, key, x=x, step_range=step_range, max_points=max_points)
    return group_runs(runs, data, max_points=max_points)
