"""The map of a sweep: where does a candidate beat the baseline, value by value of one run setting.

Each swept value (a batch size) is its own workload, compared with `verdicts.compare(where=...)`,
so every point carries the same calibrated interval, miss costs, LR choice and verdict word as
Compare. Two quantities per (candidate, value):

* the speed-up to each target, with the LRs chosen on time to the first target;
* the difference in the final validation metric, with the LRs chosen on the final value (the
  quantity that verdict is about; the same choice when it agrees).

Settings that change with the swept value besides it (the optimizer defaults that depend on the
batch, such as ALTO's alpha and beta1 at 1024) are read from what the runs used and reported, so
the map never hides a confounder.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from alto.stats.speedup import DiffResult
from alto.stats.verdict import difference_word
from alto.store import Store

from .experiment import point_label, sweep_keys, sweep_points
from .verdicts import COUNTED, UNCONFIRMED, Comparison, Row, compare, resolve_pair, select_lrs


@dataclass(frozen=True)
class MapPoint:
    """One candidate against the baseline at one swept value and one target."""

    value: object
    candidate: str
    baseline: str
    threshold: float
    row: Row | None                  # the speed-up and its verdict; None: see `problem`
    difference: DiffResult | None    # final metric, candidate - baseline, at `quality_lrs`
    difference_word: str | None
    quality_lrs: dict[str, float] = field(default_factory=dict)
    problem: str | None = None       # why nothing is compared here (no finished runs yet, ...)

    @property
    def word(self) -> str | None:
        return None if self.row is None else self.row.verdict.word


@dataclass
class SweepMap:
    experiment_id: int
    key: str                                  # the swept setting, e.g. "batch_size"
    values: list                              # in sweep order
    baseline: str
    candidates: list[str]
    metric: str
    mode: str
    thresholds: list[float]
    axis: str
    points: list[MapPoint]
    comparisons: dict = field(default_factory=dict)   # value -> Comparison (speed-ups)
    held: str | None = None                   # what the experiment declared about batch defaults
    varying: dict[str, dict[str, dict]] = field(default_factory=dict)  # optimizer -> setting -> {value: used}

    def point(self, candidate: str, value, threshold: float | None = None) -> MapPoint | None:
        threshold = self.thresholds[0] if threshold is None else threshold
        return next((p for p in self.points if p.candidate == candidate and p.value == value
                     and p.threshold == threshold), None)

    def pays_off_from(self, candidate: str, threshold: float | None = None) -> object | None:
        """The smallest swept value from which on the candidate is "faster" at every value
        (numeric sweeps), None if there is none."""
        values = sorted(v for v in self.values if isinstance(v, (int, float)))
        start = None
        for v in reversed(values):
            p = self.point(candidate, v, threshold)
            if p is None or p.word != "faster":
                break
            start = v
        return start

    def switches(self) -> list[tuple[object, object]]:
        """Consecutive swept values between which a setting other than the swept one changed."""
        out = []
        for a, b in zip(self.values, self.values[1:]):
            if any(repr(used.get(a)) != repr(used.get(b)) for by_key in self.varying.values()
                   for used in by_key.values() if a in used and b in used):
                out.append((a, b))
        return out


def sweep_map(store: Store, experiment_id: int, *, baseline: str | None = None,
              candidates: list[str] | None = None, metric: str | None = None,
              thresholds: list[float] | None = None, axis: str = "wall_time", level: float = 0.95) -> SweepMap:
    """Every candidate against the baseline at every swept value and target (defaults as for
    `verdicts.compare`). ValueError when the experiment sweeps no setting, or several."""
    experiment = store.get_experiment(experiment_id)
    keys = sweep_keys(experiment)
    if len(keys) != 1:
        raise ValueError(f"experiment {experiment_id} sweeps "
                         + (f"{len(keys)} settings ({', '.join(keys)}); the map draws one" if keys
                            else "no run setting: the map needs a [sweep] in its preset"))
    key = keys[0]
    runs = store.list_runs(experiment_id=experiment_id)
    counted = [r for r in runs if r["status"] in COUNTED]
    baseline, candidates = resolve_pair(experiment_id, sorted({r["optimizer"] for r in counted}), baseline,
                                        candidates)
    values = [p[key] for p in sweep_points(experiment, runs)]

    comparisons, quality, problems = {}, {}, {}
    for value in values:
        where = {key: value}
        here = {r["optimizer"] for r in counted if r["config"].get(key) == value}
        present = [c for c in candidates if c in here]
        if baseline not in here or not present:
            missing = baseline if baseline not in here else " or ".join(candidates)
            problems[value] = f"no finished {missing} runs at {point_label(where)} yet"
            continue
        try:
            comparisons[value] = compare(store, experiment_id, metric=metric, thresholds=thresholds,
                                         baseline=baseline, candidates=present, axis=axis, level=level, where=where)
        except ValueError as err:
            problems[value] = str(err)
            continue
        quality[value] = _quality_rows(store, experiment_id, comparisons[value], level)
    if not comparisons:
        raise ValueError(f"experiment {experiment_id}: nothing to compare at any {key} yet"
                         + (f" ({next(iter(problems.values()))})" if problems else ""))
    shape = next(iter(comparisons.values()))
    points = []
    for cand in candidates:
        for t in shape.thresholds:
            for value in values:
                row = comparisons[value].row(cand, t) if value in comparisons else None
                if row is None:
                    why = problems.get(value) or f"no finished {cand} runs at {point_label({key: value})} yet"
                    points.append(MapPoint(value, cand, baseline, t, None, None, None, problem=why))
                    continue
                q = quality[value][cand]
                word = None if q.difference is None else difference_word(
                    q.difference, shape.mode, (UNCONFIRMED,) if q.confirmed is False else ())
                points.append(MapPoint(value, cand, baseline, t, row, q.difference, word, dict(q.lrs)))
    return SweepMap(experiment_id, key, values, baseline, candidates, shape.metric, shape.mode,
                    list(shape.thresholds), axis, points, comparisons,
                    (experiment.get("config") or {}).get("held"), _varying(store, counted, key))


def _quality_rows(store: Store, experiment_id: int, comparison: Comparison, level: float) -> dict[str, Row]:
    """Per candidate, the row at the first target with the LRs chosen on the final value: its
    `difference` is the quality verdict's (the speed-up rows themselves when the choices agree)."""
    first = comparison.thresholds[0]
    lrs = select_lrs(comparison.outcomes[first], objective="final", mode=comparison.mode).lrs
    if lrs != comparison.selection.lrs:
        comparison = compare(store, experiment_id, metric=comparison.metric, thresholds=[first],
                             mode=comparison.mode, baseline=comparison.baseline,
                             candidates=[r.candidate for r in comparison.rows if r.threshold == first],
                             axis=comparison.axis, lrs=lrs, level=level, where=comparison.where)
    return {r.candidate: r for r in comparison.rows if r.threshold == first}


def _varying(store: Store, runs: list[dict], key: str) -> dict[str, dict[str, dict]]:
    """Per optimizer, the hyper-parameters (the LR aside) whose value its runs used differs
    between swept values: {optimizer: {setting: {swept value: value used}}}."""
    used: dict[str, dict[str, dict]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        hparams = store.get_params(int(run["id"])).get("hparams") or {}
        for name, v in hparams.items():
            if name != "lr":
                used[run["optimizer"]][name][run["config"].get(key)] = v
    return {opt: {name: by_value for name, by_value in settings.items()
                  if len({repr(v) for v in by_value.values()}) > 1}
            for opt, settings in used.items()
            if any(len({repr(v) for v in by_value.values()}) > 1 for by_value in settings.values())}
