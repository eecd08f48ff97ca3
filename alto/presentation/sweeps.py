"""What the Map and Scoreboard pages and the report show: the sweep map, LR sensitivity and the
scoreboard as sentences, tables and figures (pure functions; the numbers come from alto.analysis)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from alto.analysis.experiment import point_label
from alto.analysis.scoreboard import BEST, MIN_WORKLOADS, Scoreboard
from alto.analysis.sweep import MapPoint, SweepMap
from alto.analysis.verdicts import UNCONFIRMED, Comparison, arm_summaries
from alto.plots.sweep import LrArm, Mark, lr_sensitivity, performance_profile, sweep_map
from alto.stats.verdict import EQUIVALENCE

from . import fmt
from .fmt import MISSING
from .views import AXIS_UNITS

SETTING_LABELS = {"batch_size": "batch size"}


def setting_label(key: str) -> str:
    return SETTING_LABELS.get(key, key.replace("_", " "))


def target_text(sweep: SweepMap, threshold: float | None = None) -> str:
    threshold = sweep.thresholds[0] if threshold is None else threshold
    return f"{sweep.metric} {'≥' if sweep.mode == 'max' else '≤'} {threshold:g}"


def _numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def log_axis(values: Sequence) -> bool:
    """A log x axis for positive numbers spanning a factor of 4 or more (batch sizes)."""
    return _numeric(values) and min(values) > 0 and max(values) >= 4 * min(values)


# -- the map ---------------------------------------------------------------------------------

def _miss(p: MapPoint) -> tuple[str, str]:
    """(label, edge) of a point whose speed-up has no estimate."""
    r = p.row.result
    if r.reached_candidate == 0 and r.reached_baseline > 0:
        return f"{p.candidate} missed", "bottom"
    if r.reached_baseline == 0 and r.reached_candidate > 0:
        return f"{p.baseline} missed", "top"
    return "both missed", "middle"


def speedup_mark(p: MapPoint, x: float) -> Mark | None:
    """The speed-up point (None where nothing was compared)."""
    if p.row is None:
        return None
    r = p.row.result
    if r.estimate is None:
        label, edge = _miss(p)
        return Mark(x, None, miss=label, edge=edge, hover=p.row.verdict.sentence)
    return Mark(x, r.estimate, r.low, r.high, r.interval_kind, p.word or "", hover=p.row.verdict.sentence)


def difference_mark(p: MapPoint, x: float, metric: str) -> Mark | None:
    """The final-metric difference (points for an accuracy); a side without a final value (every
    run diverged) is drawn as a miss."""
    if p.row is None:
        return None
    scale = 100.0 if fmt.is_accuracy(metric) else 1.0
    d = p.difference
    hover = (f"{p.candidate} − {p.baseline}, final {metric} at LRs chosen on it "
             f"({', '.join(f'{o} {lr:g}' for o, lr in sorted(p.quality_lrs.items()))})")
    if d is None:
        finals = {name: [o.final for o in outs if o.final is not None] for name, outs in p.row.arms.items()}
        cand, base = bool(finals.get(p.candidate)), bool(finals.get(p.baseline))
        label, edge = ((f"{p.candidate} diverged", "bottom") if base and not cand else
                       (f"{p.baseline} diverged", "top") if cand and not base else ("no final values", "middle"))
        return Mark(x, None, miss=label, edge=edge, hover=hover)
    low = None if d.low is None else scale * d.low
    high = None if d.high is None else scale * d.high
    return Mark(x, scale * d.estimate, low, high, d.interval_kind, p.difference_word or "",
                hover=f"{hover}: {fmt.difference(d, metric)} — {p.difference_word}")


def map_marks(sweep: SweepMap, threshold: float | None = None) -> tuple[dict[str, list[Mark]], dict[str, list[Mark]]]:
    """Per candidate, the speed-up marks at `threshold` (default: the first target) and the
    final-metric difference marks, one per swept value that has a comparison."""
    threshold = sweep.thresholds[0] if threshold is None else threshold
    speedups, differences = {}, {}
    for cand in sweep.candidates:
        points = [p for p in sweep.points if p.candidate == cand and p.threshold == threshold]
        xs = {p.value: (float(p.value) if _numeric([p.value]) else sweep.values.index(p.value)) for p in points}
        speedups[cand] = [m for p in points if (m := speedup_mark(p, xs[p.value])) is not None]
        differences[cand] = [m for p in points if (m := difference_mark(p, xs[p.value], sweep.metric)) is not None]
    return speedups, differences


def map_figure(sweep: SweepMap, threshold: float | None = None) -> go.Figure:
    """The map at one target: speed-ups above, final-metric differences below."""
    speedups, differences = map_marks(sweep, threshold)
    numeric = _numeric(sweep.values)
    unit = " (points)" if fmt.is_accuracy(sweep.metric) else ""
    return sweep_map(
        speedups, differences, x_values=sweep.values if numeric else list(range(len(sweep.values))),
        x_label=setting_label(sweep.key), log_x=log_axis(sweep.values),
        speedup_label=f"speed-up over {sweep.baseline} to {target_text(sweep, threshold)} "
                      f"({AXIS_UNITS.get(sweep.axis, sweep.axis)} to target; > 1: faster)",
        difference_label=f"final {sweep.metric} − {sweep.baseline}'s{unit} (> 0: higher)",
        margin=EQUIVALENCE, switches=sweep.switches() if numeric else (),
        switch_label="other settings change here", title=f"Where does it pay off? Against {sweep.baseline}")


def answer(sweep: SweepMap, candidate: str, threshold: float | None = None) -> str:
    """The one-glance answer for a candidate, resting on the verdict words alone."""
    threshold = sweep.thresholds[0] if threshold is None else threshold
    name = setting_label(sweep.key)
    words = {p.value: p.word for p in sweep.points if p.candidate == candidate and p.threshold == threshold}
    faster = [v for v in sweep.values if words.get(v) == "faster"]
    slower = [v for v in sweep.values if words.get(v) == "slower"]
    start = sweep.pays_off_from(candidate, threshold)
    head = f"{candidate} vs {sweep.baseline} to {target_text(sweep, threshold)}: "
    if start is not None:
        text = f"faster from {name} {start:g} on"
    elif faster:
        text = f"faster at {name} {', '.join(map(str, faster))} only, not at every larger one"
    else:
        text = f"not shown faster at any {name} in this sweep"
    if slower:
        text += f"; slower at {', '.join(map(str, slower))}"
    undecided = [v for v in sweep.values if words.get(v) not in ("faster", "slower")]
    if undecided:
        text += f"; no decisive verdict at {', '.join(map(str, undecided))}"
        points = [p for p in sweep.points if p.candidate == candidate and p.threshold == threshold and p.row]
        if any(UNCONFIRMED in p.row.verdict.flags for p in points if p.value in undecided):
            text += " (the LRs are chosen on these seeds: confirm them on fresh seeds to decide)"
    return head + text + "."


def varying_note(sweep: SweepMap) -> str:
    """Which settings besides the swept one changed with it, from what the runs used ('' when
    none did), and what the experiment declared about batch-dependent defaults."""
    parts = []
    for opt, settings in sorted(sweep.varying.items()):
        for name, used in sorted(settings.items()):
            values = ", ".join(f"{v} at {point_label({sweep.key: k})}" for k, v in used.items())
            parts.append(f"{opt}'s {name} changes with {setting_label(sweep.key)} ({values})")
    text = ""
    if parts:
        text = ("Confounded: " + "; ".join(parts) + ". The map mixes their effect with the "
                f"{setting_label(sweep.key)}'s (the dotted line).")
    elif sweep.key == "batch_size":
        text = "Every other hyper-parameter is the same at every batch size."
    if sweep.held:
        text = (text + " " if text else "") + f"As declared: {sweep.held}."
    return text


def map_table(sweep: SweepMap) -> pd.DataFrame:
    """One row per (candidate, target, swept value): the numbers on the map and their words."""
    rows = []
    for p in sweep.points:
        r = p.row.result if p.row else None
        rows.append({
            setting_label(sweep.key): p.value,
            "candidate": p.candidate, "target": target_text(sweep, p.threshold),
            "speed-up": fmt.speedup(r) if r else p.problem,
            "reached": MISSING if r is None else f"{r.reached_candidate}/{r.n_candidate} vs "
                                                 f"{r.reached_baseline}/{r.n_baseline}",
            "verdict": p.word or MISSING,
            f"final {sweep.metric} difference": MISSING if p.difference is None else fmt.difference(
                p.difference, sweep.metric),
            "quality verdict": p.difference_word or MISSING,
            "LRs (speed-up)": MISSING if p.row is None else _lrs(p.row.lrs, p),
        })
    return pd.DataFrame(rows)


def _lrs(lrs: dict[str, float], p: MapPoint) -> str:
    return ", ".join(f"{o} {lrs[o]:g}" for o in (p.candidate, p.baseline) if o in lrs)


# -- LR sensitivity ------------------------------------------------------------------------------

def lr_arms(comparison: Comparison, threshold: float | None = None) -> list[LrArm]:
    """Every (optimizer, LR) of a comparison for the LR sensitivity figure."""
    return [LrArm(a.optimizer, a.lr, a.finals, a.diverged, a.runs, a.times, a.cost, a.chosen)
            for a in arm_summaries(comparison, threshold)]


def lr_figure(comparison: Comparison, threshold: float | None = None) -> go.Figure:
    threshold = comparison.thresholds[0] if threshold is None else threshold
    where = point_label(comparison.where)
    return lr_sensitivity(lr_arms(comparison, threshold), metric_label=comparison.metric,
                          time_label=f"{AXIS_UNITS.get(comparison.axis, comparison.axis)} to "
                                     f"{comparison.metric} {'≥' if comparison.mode == 'max' else '≤'} {threshold:g}",
                          title="How much tuning does each optimizer need?" + (f" ({where})" if where else ""))


def tuning_note(comparison: Comparison) -> str:
    """How many LRs each optimizer tried and how many diverged, in a sentence."""
    arms = arm_summaries(comparison)
    parts = []
    for opt in sorted({a.optimizer for a in arms}):
        mine = [a for a in arms if a.optimizer == opt]
        bad = sum(1 for a in mine if a.diverged)
        never = sum(1 for a in mine if a.reached == 0)
        parts.append(f"{opt}: {len(mine)} LR{'s' * (len(mine) > 1)}"
                     + (f", {bad} with diverged runs" if bad else "")
                     + (f", {never} never reaching the target" if never else ""))
    return "; ".join(parts) + "."


# -- the scoreboard ------------------------------------------------------------------------------

def ratio_text(r: float, word: str) -> str:
    """"1.00 (fastest)", "1.37 (slower)", "∞ (not run)"."""
    return f"{'∞' if math.isinf(r) else f'{r:.2f}'} ({word})" if word else ("∞" if math.isinf(r) else f"{r:.2f}")


def scoreboard_table(board: Scoreboard) -> pd.DataFrame:
    """One row per scored workload: each optimizer's ratio to the fastest with its verdict word."""
    rows = []
    for w in board.workloads:
        row = {"workload": f"#{w.experiment_id} {w.name}", "target": w.target}
        row.update({o: ratio_text(w.ratios[o], w.words.get(o, "")) for o in board.optimizers})
        rows.append(row)
    return pd.DataFrame(rows, columns=["workload", "target", *board.optimizers])


def areas_table(board: Scoreboard) -> pd.DataFrame:
    """The profile's area per optimizer, best first, with how often each was the fastest."""
    areas = board.areas() or {}
    rows = [{"optimizer": o, "area (0–1)": round(areas[o], 3),
             "fastest on": sum(w.words.get(o) == BEST for w in board.workloads),
             "within 2x of the fastest on": sum(w.ratios[o] <= 2 for w in board.workloads),
             "missed or not run on": sum(math.isinf(w.ratios[o]) for w in board.workloads)}
            for o in sorted(areas, key=lambda o: -areas[o])]
    return pd.DataFrame(rows)


def profile_figure(board: Scoreboard) -> go.Figure | None:
    """The performance profile (None below MIN_WORKLOADS scored workloads)."""
    steps, areas = board.profile(), board.areas()
    if steps is None:
        return None
    return performance_profile(steps, areas, tau_max=board.tau_max,
                               title=f"Performance profile over {len(board.workloads)} workloads")


def scoreboard_notes(board: Scoreboard) -> list[str]:
    """What was left out and why, and how to read the scores."""
    notes = [f"r = an optimizer's expected time per success on the workload / the fastest optimizer's there "
             f"({AXIS_UNITS.get(board.axis, board.axis)}); a miss is ∞. Beside each r: the verdict against the "
             "fastest (its calibrated interval decides, not r). Area = ∫ρ(τ)dτ over [1, "
             f"{board.tau_max:g}] / {board.tau_max - 1:g}: 1 means fastest everywhere."]
    if not board.enough:
        notes.append(f"{len(board.workloads)} scored workload{'s' * (len(board.workloads) != 1)}: the profile and "
                     f"its area are shown from {MIN_WORKLOADS} up (they rest on point estimates).")
    for w in board.unscored:
        notes.append(f"Not scored, every optimizer missed: #{w.experiment_id} {w.name} ({w.target}).")
    for experiment_id, why in board.skipped:
        notes.append(f"Skipped experiment #{experiment_id}: {why}.")
    return notes
