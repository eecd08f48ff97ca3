"""An experiment's settings and curves read from the Store: its targets, and runs' series grouped
by optimizer for the charts. (Verdicts are `alto.analysis.verdicts`.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alto.stats._checks import check_choice
from alto.stats.aggregate import group_runs
from alto.stats.downsample import MAX_POINTS
from alto.store import X_AXES, Store

FULL_RESOLUTION = 1 << 62  # max_points that makes the store return every logged point
DEFAULT_STATUSES = ("finished", "diverged")  # the runs a comparison shows (a diverged run missed)


def experiment_targets(experiment: Mapping) -> dict:
    """The targets an experiment's config sets ({"metric", "mode", "thresholds"}), or {}."""
    return dict((experiment.get("config") or {}).get("targets") or {})


def sweep_keys(experiment: Mapping) -> list[str]:
    """The run settings the experiment sweeps (its preset's [sweep] keys), sorted."""
    return sorted((experiment.get("config") or {}).get("sweep") or {})


def matches(run: Mapping, where: Mapping | None) -> bool:
    """Whether the run's config has every value `where` names ({"batch_size": 256}); True for
    no `where`."""
    return not where or all(run["config"].get(k) == v for k, v in where.items())


def point_label(where: Mapping | None) -> str:
    """"batch_size=256" for {"batch_size": 256}; "" for none."""
    return ", ".join(f"{k}={v}" for k, v in sorted((where or {}).items()))


def sweep_points(experiment: Mapping, runs: Sequence[Mapping]) -> list[dict]:
    """One `where` per combination of swept values that the runs hold, in sweep order ([{}]
    when nothing is swept)."""
    keys = sweep_keys(experiment)
    if not keys:
        return [{}]
    declared = (experiment.get("config") or {}).get("sweep") or {}
    seen = {tuple(r["config"].get(k) for k in keys) for r in runs}

    def order(values: tuple) -> tuple:
        return tuple(declared[k].index(v) if v in declared.get(k, []) else len(declared.get(k, []))
                     for k, v in zip(keys, values))
    return [dict(zip(keys, values)) for values in sorted(seen, key=lambda v: (order(v), repr(v)))]


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
