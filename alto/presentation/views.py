"""What the Compare, Gradients, Runs and ROI pages show (the report shares the summary and ROI
tables), as pure functions.

The pages pass widgets' values in and get tables, series and labels out; nothing here imports
Streamlit. `layer_trust_frame` is the only function that reads a Store; everything else works
on plain dicts, arrays and DataFrames.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alto.analysis.experiment import DEFAULT_STATUSES
from alto.analysis.factors import CostFactor, FleetSpeedup, StepsFactor
from alto.analysis.memory import MemoryFit
from alto.analysis.savings import RoiInputs, RoiResult
from alto.analysis.verdicts import Comparison, Row, arm_summaries
from alto.store import BUDGET_TAG, Store

from . import fmt
from .fmt import MISSING

AXIS_LABELS = {"step": "step", "samples": "samples seen", "wall_time": "training time (s)",
               "epoch": "epoch"}
AXIS_UNITS = {"step": "steps", "samples": "samples", "wall_time": "s", "epoch": "epochs"}

GROUPED = "mean ± std over seeds (grouped by optimizer)"
OVERLAY = "overlay runs"

# Keys that are not curves over steps: logged once, or shown on the Gradients page.
_NOT_CURVES = ("params/", "layer_trust/")
_PREFERRED = ("val/acc", "val/ppl", "val/loss", "train/loss")


# -- Compare: choosing what to plot ------------------------------------------------------

def curve_keys(keys: Iterable[str]) -> list[str]:
    """The metric keys worth a curve: evaluation metrics first, then the rest, sorted."""
    usable = sorted({k for k in keys if not k.startswith(_NOT_CURVES)})
    first = [k for k in ("val/acc", "val/ppl", "val/loss", "test/acc", "test/ppl", "test/loss",
                         "train/loss", "train/acc") if k in usable]
    return first + [k for k in usable if k not in first]


def default_metric(keys: Sequence[str]) -> str | None:
    """val/acc, else val/ppl, val/loss, train/loss, else the first key (None if no keys)."""
    for key in _PREFERRED:
        if key in keys:
            return key
    return keys[0] if keys else None


def default_threshold(metric: str, targets: Mapping | None) -> float | None:
    """The first threshold the experiment's config sets for this metric, else None."""
    if not targets or targets.get("metric") != metric:
        return None
    thresholds = [t for t in targets.get("thresholds") or [] if isinstance(t, (int, float))]
    return float(thresholds[0]) if thresholds else None


def default_run_ids(runs: Sequence[dict]) -> list[int]:
    """The runs a comparison shows by default: finished or diverged, or while there is none
    of those, every run that has started (so a live experiment is not an empty page). Runs
    shortened to confirm a speed-up at its budget are left out: their schedule differs."""
    full = [r for r in runs if BUDGET_TAG not in (r.get("tags") or [])]
    done = [r["id"] for r in full if r["status"] in DEFAULT_STATUSES]
    return done or [r["id"] for r in full if r["status"] != "queued"]


def keep_best_lr(runs: Sequence[dict], best: Mapping[str, float]) -> tuple[list[dict], list[str]]:
    """Per optimizer, only the runs at its best LR. Optimizers missing from `best` (no run
    logged the selection metric) keep all their runs; they are returned second, sorted."""
    kept, undecided = [], set()
    for r in runs:
        opt = r["optimizer"]
        if opt not in best:
            undecided.add(opt)
            kept.append(r)
        elif float(r["lr"]) == float(best[opt]):
            kept.append(r)
    return kept, sorted(undecided)


def step_limits(runs: Sequence[dict]) -> tuple[int, int]:
    """(0, the last step any of the runs reached); (0, 0) when none has logged a step."""
    last = [int(r["last_step"]) for r in runs if r.get("last_step") is not None]
    return 0, max(last, default=0)


# -- Compare / Gradients: series grouped by optimizer ------------------------------------

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def line_dashes(labels: Iterable[str]) -> dict[str, str]:
    """A line style per group label, so the LRs of one optimizer (same colour) stay apart:
    each optimizer's groups get solid, dash, dot, ... in the order given."""
    seen: dict[str, int] = defaultdict(int)
    out = {}
    for label in labels:
        opt = label.split(" (lr=", 1)[0]
        out[label] = DASHES[seen[opt] % len(DASHES)]
        seen[opt] += 1
    return out


def dash_for(trace_name: str, dashes: Mapping[str, str]) -> str:
    """The style of the group a trace belongs to: its name is the label or starts with
    "label " (band, envelope and per-run traces); "solid" when none matches."""
    for label, dash in dashes.items():
        if trace_name == label or trace_name.startswith(label + " "):
            return dash
    return "solid"


def run_trace_name(label: str, run: Mapping) -> str:
    """"alto seed 0 (run 3)": starts with the optimizer so the overlay keeps its colour."""
    return f"{label} seed {run['seed']} (run {run['id']})"


def overlay_series(groups: Mapping[str, dict], runs: Sequence[dict]) -> dict[str, tuple]:
    """One (x, y) per run for plots.runs_overlay, named by run_trace_name."""
    by_id = {int(r["id"]): r for r in runs}
    return {run_trace_name(label, by_id[rid]): (v["x"], v["y"])
            for label, g in groups.items() for rid, v in g["runs"].items()}


def seed_counts(groups: Mapping[str, dict]) -> dict[str, int]:
    """Group label -> how many runs (seeds) it averages."""
    return {label: len(g["runs"]) for label, g in groups.items()}


def seeds_sentence(groups: Mapping[str, dict]) -> str:
    """"n seeds: alto 2, lamb 2" (plain text for a caption)."""
    counts = seed_counts(groups)
    if not counts:
        return "no runs with data"
    return "n seeds: " + ", ".join(f"{k} {v}" for k, v in counts.items())


def groups_frame(groups: Mapping[str, dict], x: str) -> pd.DataFrame:
    """The plotted mean/std/min/max/n per group in long format (for CSV)."""
    cols = ["group", x, "mean", "std", "min", "max", "n_seeds"]
    frames = [pd.DataFrame({"group": label, x: g["grid"], "mean": g["mean"], "std": g["std"],
                            "min": g["min"], "max": g["max"], "n_seeds": g["n"]})
              for label, g in groups.items()]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def overlay_frame(groups: Mapping[str, dict], x: str) -> pd.DataFrame:
    """The plotted per-run series in long format (for CSV)."""
    cols = ["group", "run_id", "seed", "lr", x, "value"]
    frames = [pd.DataFrame({"group": label, "run_id": rid, "seed": v["seed"], "lr": v["lr"],
                            x: v["x"], "value": v["y"]})
              for label, g in groups.items() for rid, v in g["runs"].items()]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


# -- Compare, ROI, report: the verdict tables -------------------------------------------------

def verdict_table(comparison: Comparison, threshold: float | None = None) -> pd.DataFrame:
    """One row per candidate against the baseline at `threshold` (default: the first)."""
    threshold = comparison.thresholds[0] if threshold is None else threshold
    rows = []
    for row in comparison.rows:
        if row.threshold != threshold:
            continue
        r = row.result
        p = (MISSING if r.p_improvement is None else
             f"{r.p_improvement:.2f} ({r.p_improvement_interval[0]:.2f}–{r.p_improvement_interval[1]:.2f})")
        rows.append({
            "candidate": f"{row.candidate} (lr {row.lrs[row.candidate]:g})",
            "baseline": f"{row.baseline} (lr {row.lrs[row.baseline]:g})",
            "speed-up": fmt.speedup(r),
            "reached": f"{r.reached_candidate}/{r.n_candidate} vs {r.reached_baseline}/{r.n_baseline}",
            "P(candidate run beats baseline run)": p,
            f"final {row.metric} difference": MISSING if row.difference is None else fmt.difference(
                row.difference, row.metric),
            "verdict": row.verdict.word,
            "seeds per arm to resolve 1.2x": MISSING if row.verdict.seeds_needed is None else row.verdict.seeds_needed,
            "optimizer state (bytes/param)": _versus(row.state_bytes(row.candidate), row.state_bytes(row.baseline),
                                                     ".0f"),
            "peak memory per run (MB)": _versus(row.peak_mb(row.candidate), row.peak_mb(row.baseline), ",.0f"),
        })
    return pd.DataFrame(rows)


def _versus(candidate: float | None, baseline: float | None, spec: str) -> str:
    """"16 vs 8" (candidate vs baseline), "–" for an unknown side."""
    def one(v: float | None) -> str:
        return MISSING if v is None else format(v, spec)
    return f"{one(candidate)} vs {one(baseline)}"


def arm_table(comparison: Comparison, threshold: float | None = None) -> pd.DataFrame:
    """One row per optimizer and LR: runs, divergences, reach, per-seed times, cost per success
    and final values, the LR each verdict uses marked."""
    unit = AXIS_UNITS.get(comparison.axis, comparison.axis)
    rows = []
    for arm in arm_summaries(comparison, threshold):
        finals = np.array(arm.finals, dtype=np.float64)
        mean = float(finals.mean()) if finals.size else None
        std = float(finals.std(ddof=1)) if finals.size >= 2 else None
        rows.append({
            "optimizer": arm.optimizer + (" (baseline)" if arm.is_baseline else ""),
            "lr": f"{arm.lr:g}" + (" ✓" if arm.chosen else ""),
            "runs": arm.runs, "diverged": arm.diverged,
            "reached": fmt.reach(arm.reached, arm.runs, arm.reach_interval),
            f"time to target per seed ({unit})": fmt.times(arm.times, unit),
            f"{unit} per success": fmt.number(arm.cost),
            f"final {comparison.metric} (mean ± std)": fmt.mean_pm_std(mean, std),
        })
    return pd.DataFrame(rows)


def selection_note(comparison: Comparison) -> str:
    """How the LRs were chosen, with the warnings the protocol asks for ('' with one LR each)."""
    sel = comparison.selection
    if not sel.selected:
        return ""
    chosen = ", ".join(f"{opt} {lr:g}" for opt, lr in sorted(sel.lrs.items()))
    text = f"LRs chosen on {sel.objective} at the first target: {chosen} (✓)."
    if sel.warnings:
        text += " " + " ".join(w[0].upper() + w[1:] + "." for w in sel.warnings)
    return text


def left_out_note(comparison: Comparison) -> str:
    """Runs a comparison does not count, by status ('' when none)."""
    if not comparison.left_out:
        return ""
    parts = ", ".join(f"{n} {status}" for status, n in sorted(comparison.left_out.items()))
    return f"Not counted: {parts} (only finished and diverged runs are; a diverged run is a miss)."


# -- ROI -----------------------------------------------------------------------------------

def factor_table(steps: StepsFactor, cost: CostFactor | None, fleet: FleetSpeedup | None = None,
                 memory: MemoryFit | None = None) -> pd.DataFrame:
    """The factors of a fleet saving, one row each, every one with where it was measured."""
    def row(*cells: str) -> dict:
        names = ("factor", "value", "status", "source", "workload", "device", "date")
        return {name: MISSING if cell in ("", "-") else cell for name, cell in zip(names, cells)}

    p = steps.provenance
    interval = (f"{steps.low:.2f}–{steps.high:.2f}" + (" CI" if steps.calibrated else " range")
                if steps.low < steps.high else "no interval")
    used = f"{steps.estimate:.2f}x" + ("" if steps.estimate == steps.measured else
                                       f" (measured {steps.measured:.2f}x)")
    rows = [row("steps to target (baseline / candidate)", f"{used}, {interval}",
                f"{steps.word}; {steps.budget_label()}", p.source, p.workload, p.device, p.date)]
    if cost is not None:
        c = cost.provenance
        rows.append(row("cost per step (baseline / candidate)", f"{cost.ratio:.2f}x", cost.note, c.source,
                        c.workload, c.device, c.date))
    if memory is not None and fleet is not None and fleet.gpus != 1:
        rows.append(row("GPUs per job (baseline / candidate)", f"{fleet.gpus:.2f}x", memory.sentence(),
                        "memory check", "your model, typed in", "your fleet", "-"))
    if fleet is not None:
        spread = f"{fleet.low:.2f}–{fleet.high:.2f}" if fleet.low < fleet.high else "no interval"
        rows.append(row("your fleet: the product", f"{fleet.estimate:.2f}x, {spread}", fleet.word,
                        "steps × cost per step" + (" × GPUs" if fleet.gpus != 1 else ""), "-", fleet.fleet, "-"))
    return pd.DataFrame(rows)


def cost_choice(cost: CostFactor | None) -> str:
    """A cost-per-step source as a select box shows it (None: a figure typed in)."""
    if cost is None:
        return "Type a figure in"
    p = cost.provenance
    return f"{p.source}: {p.workload.split(', optimizer step')[0]} — {p.device}, {p.date}"


def roi_headline(result: RoiResult, fleet: FleetSpeedup) -> str:
    """The fleet's ROI sentence with how the steps factor stands at budget."""
    return f"{result.verdict} Steps to target: {fleet.steps.budget_label()}."


def factors_json(steps: StepsFactor | None, cost: CostFactor | None) -> dict:
    """Both factors with their provenance, for `alto compare --json`."""
    out: dict = {"steps_to_target": None, "cost_per_step": None}
    if steps is not None:
        out["steps_to_target"] = {"ratio": steps.estimate, "measured": steps.measured, "low": steps.low,
                                  "high": steps.high, "calibrated": steps.calibrated, "verdict": steps.word,
                                  "budget": steps.budget_label(), "confirmed_at_budget": steps.confirmed_at_budget,
                                  **vars(steps.provenance)}
    if cost is not None:
        out["cost_per_step"] = {"ratio": cost.ratio, "measured": cost.measured, "note": cost.note,
                                **vars(cost.provenance)}
    return out


def factor_lines(steps: StepsFactor | None, cost: CostFactor | None) -> list[str]:
    """The factors as lines of text (`alto compare`)."""
    lines = []
    if steps is not None:
        lines.append(f"  steps to target: {steps.estimate:.2f}x ({steps.word}; {steps.budget_label()}) — "
                     f"{steps.provenance.label()}")
    if cost is not None:
        lines.append(f"  cost per step:   {cost.ratio:.2f}x ({cost.note}) — {cost.provenance.label()}")
    return lines


def memory_table(row: Row) -> pd.DataFrame:
    """Per arm: the optimizer's state bytes per parameter and the peak memory of its runs."""
    return pd.DataFrame([{"optimizer": name + (" (baseline)" if name == row.baseline else ""),
                          "optimizer state (bytes/param)": fmt.number(row.state_bytes(name)),
                          "peak memory per run (MB)": fmt.number(row.peak_mb(name)),
                          "runs": len(row.arms[name])}
                         for name in (row.candidate, row.baseline)])


FLEET_COLUMN = "Your fleet (steps × cost per step)"


def roi_rows(result: RoiResult, inputs: RoiInputs, fleet: FleetSpeedup | None = None) -> dict[str, str]:
    """One column of the ROI table: each figure as 'estimate (low to high)'; for a fleet's
    saving the verdict says how its steps factor stands at budget."""
    interval = (f"{inputs.speedup:.2f}x ({inputs.speedup_low:.2f}x to {inputs.speedup_high:.2f}x)"
                if inputs.has_ci else f"{inputs.speedup:.2f}x (no interval)")
    return {
        "speed-up": interval,
        "evidence": inputs.evidence,
        "baseline GPU-hours / year": f"{result.baseline_gpu_hours:,.0f}",
        "GPU-hours / year with the candidate": fmt.span(result.new_gpu_hours, ",.0f"),
        "GPU-hours reclaimed / year": fmt.span(result.gpu_hours_saved, ",.0f"),
        "cost saved / year ($)": fmt.span(result.cost_saved, ",.0f"),
        "energy saved / year (kWh)": fmt.span(result.energy_kwh_saved, ",.0f"),
        "CO2e saved / year (kg)": fmt.span(result.co2e_kg_saved, ",.0f"),
        "verdict": result.verdict if fleet is None else roi_headline(result, fleet),
    }


# -- Gradients ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Panel:
    """One chart on the Gradients page: which keys, its title and how to read it."""

    keys: tuple[str, ...]
    title: str
    how_to_read: str
    log_y: bool = False


TRUST_KEYS = ("trust_ratio_mean", "trust_ratio_min", "trust_ratio_max")

GRADIENT_PANELS: tuple[Panel, ...] = (
    Panel(("a_norm",), "‖a‖: the running average of gradient differences (a_norm)",
          "‖a‖ grows when successive gradients disagree (the path bends); with α < 0 ALTO "
          "steps along −g + |α|·a, so the larger ‖a‖ the more the gradient history, not only "
          "the current gradient, steers the step (the paper's push along valleys).", log_y=True),
    Panel(("cos_grad_prev",), "cos(g_t, g_t−1): agreement of successive gradients",
          "Near +1 the gradient keeps its direction (a straight slope); near 0 or below it "
          "flips from step to step, as when bouncing between the walls of a valley."),
    Panel(("alpha_a_share",), "‖α·a‖ / ‖g‖: how much of the step the adaptor adds",
          "The size of ALTO's extra term relative to the raw gradient: near 0 ALTO behaves "
          "like its base optimizer, around 1 or more the gradient history drives the step."),
    Panel(("grad_norm",), "‖g‖: gradient norm before clipping (grad_norm)",
          "Large or spiky values mean steep or unstable regions; a steady fall means the run "
          "is settling into a minimum.", log_y=True),
    Panel(("update_norm",), "‖Δθ‖: size of the parameter update (update_norm)",
          "How far the weights actually move per step after LR, trust ratio and clipping; "
          "compare optimizers at the same point of training.", log_y=True),
    Panel(TRUST_KEYS, "Trust ratio over layers: mean (line), min to max (shaded)",
          "Lamb-style optimizers scale each layer's update by ‖θ‖/‖update‖ so that every "
          "layer moves by the same fraction of its weights; a wide min–max band means the raw "
          "updates of the layers differ a lot in size and the trust ratio is evening them out.",
          log_y=True),
    Panel(("step_curvature",), "Curvature along the step ⟨Δθ, Δg⟩ / ‖Δθ‖²",
          "Positive means the loss curves upwards along the last step (a bowl), negative that "
          "it curves downwards; its sign is the sign of ⟨Δθ, Δg⟩, the paper's \"acceleration\" "
          "sign."),
)


def missing_optimizers(runs: Sequence[dict], summary: Mapping[int, Mapping],
                       keys: Sequence[str]) -> list[str]:
    """Optimizers none of whose runs logged all of `keys` (e.g. sgd for a_norm), sorted."""
    have: dict[str, bool] = {}
    for r in runs:
        logged = summary.get(int(r["id"]), {})
        have[r["optimizer"]] = have.get(r["optimizer"], False) or all(k in logged for k in keys)
    return sorted(opt for opt, ok in have.items() if not ok)


def runs_with_keys(runs: Sequence[dict], summary: Mapping[int, Mapping],
                   keys: Sequence[str]) -> list[dict]:
    """The runs that logged every one of `keys`."""
    return [r for r in runs if all(k in summary.get(int(r["id"]), {}) for k in keys)]


def trust_band(mean: Mapping[str, dict], low: Mapping[str, dict],
               high: Mapping[str, dict]) -> dict[str, dict]:
    """Groups for plots.curves: per optimizer the seed-mean of trust_ratio_mean as the line
    and the seed-means of trust_ratio_min/max (interpolated onto its grid) as the envelope."""
    out = {}
    for label, g in mean.items():
        grid = np.asarray(g["grid"], dtype=np.float64)
        item = {"grid": grid, "mean": np.asarray(g["mean"], dtype=np.float64), "n": g["n"]}
        for name, source in (("min", low), ("max", high)):
            other = source.get(label)
            if other is not None and len(other["grid"]):
                ox = np.asarray(other["grid"], dtype=np.float64)
                oy = np.asarray(other["mean"], dtype=np.float64)
                ok = np.isfinite(ox) & np.isfinite(oy)
                inside = (grid >= ox[ok].min()) & (grid <= ox[ok].max()) if ok.any() else \
                    np.zeros(grid.shape, bool)
                vals = np.full(grid.shape, np.nan)
                vals[inside] = np.interp(grid[inside], ox[ok], oy[ok])
                item[name] = vals
        out[label] = item
    return out


LAYER_PREFIX = "layer_trust/"


def layer_keys(keys: Iterable[str]) -> list[str]:
    """The per-layer trust-ratio keys, in the order given (the store sorts by name)."""
    return [k for k in keys if k.startswith(LAYER_PREFIX)]


def layer_matrix(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Long raw metrics of layer_trust/* keys -> (matrix layers x steps, steps, layer names).

    Layers keep their first-seen order; a layer missing at a step is NaN there.
    """
    d = df[df["key"].astype(str).str.startswith(LAYER_PREFIX)]
    if d.empty:
        return np.empty((0, 0)), np.empty(0), []
    layers = list(dict.fromkeys(d["key"]))
    wide = d.pivot_table(index="key", columns="step", values="value", aggfunc="last",
                         dropna=False).reindex(layers)
    names = [k[len(LAYER_PREFIX):] for k in layers]
    return wide.to_numpy(dtype=np.float64), wide.columns.to_numpy(dtype=np.float64), names


def layer_trust_frame(store: Store, run_id: int) -> pd.DataFrame:
    """Every logged layer_trust/* value of one run (long format, from the store)."""
    keys = layer_keys(store.metric_keys(run_id))
    if not keys:
        return pd.DataFrame(columns=["run_id", "key", "step", "value"])
    return store.raw_metrics([run_id], keys)


# -- Runs --------------------------------------------------------------------------------

UNDELETABLE = ("running", "stalled")  # a live process still writes to these


def first_line(text: str | None, limit: int = 120) -> str:
    """The first non-empty line of a (multi-line) message, cut to `limit` characters."""
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def run_duration(run: Mapping, now: float) -> float | None:
    """Seconds from start to finish (or to `now` while it has no finish time)."""
    start = run.get("started_at")
    if not start:
        return None
    end = run.get("finished_at") or (now if run.get("status") in UNDELETABLE else None)
    return None if end is None else max(0.0, end - start)


def steps_text(run: Mapping) -> str:
    """"40/40" steps done of total ("-" for unknown parts)."""
    done = "0" if run.get("last_step") is None else str(int(run["last_step"]) + 1)
    total = "?" if run.get("total_steps") is None else str(int(run["total_steps"]))
    return f"{done}/{total}"


def runs_table(runs: Sequence[dict], experiment_names: Mapping[int, str], now: float, *,
               fmt_time: Callable[[float | None], str]) -> pd.DataFrame:
    """One row per run for the Runs page (all values plain text or numbers: icons do not render
    in table cells)."""
    cols = ["id", "name", "optimizer", "seed", "lr", "status", "steps", "started", "duration",
            "tags", "notes", "error", "experiment"]
    rows = [{
        "id": int(r["id"]),
        "experiment": f"#{r['experiment_id']} {experiment_names.get(r['experiment_id'], '')}".strip(),
        "name": r["name"], "optimizer": r["optimizer"], "seed": r["seed"],
        "lr": f"{float(r['lr']):g}",
        "status": r["status"],
        "steps": steps_text(r), "started": fmt_time(r.get("started_at")),
        "duration": fmt.duration(run_duration(r, now)),
        "tags": ", ".join(r.get("tags") or []), "notes": r.get("notes") or "",
        "error": first_line(r.get("error")),
    } for r in runs]
    return pd.DataFrame(rows, columns=cols)


def run_label(run: Mapping) -> str:
    """"#3 alto lr=0.01 seed=0 (finished)" for a select box (shown as plain text)."""
    return f"#{run['id']} {run['name']} ({run['status']})"


def parse_tags(text: str) -> list[str]:
    """Comma-separated tags -> sorted unique, whitespace trimmed, empty ones dropped."""
    return sorted({t.strip() for t in (text or "").split(",") if t.strip()})


def tag_changes(old: Iterable[str], new: Iterable[str]) -> tuple[list[str], list[str]]:
    """(tags to add, tags to remove), each sorted."""
    o, n = set(old), set(new)
    return sorted(n - o), sorted(o - n)


def seed_dot_arms(row: Row) -> tuple[dict[str, list[tuple[float | None, float]]], dict[str, float]]:
    """The runs behind one verdict for plots.seed_dots: per arm (time or None, spent), and each
    arm's cost per success."""
    arms, costs = {}, {}
    for name in (row.candidate, row.baseline):
        arms[name] = [(o.time, o.spent) for o in row.arms[name]]
    r = row.result
    for name, cost in ((row.candidate, r.candidate_cost), (row.baseline, r.baseline_cost)):
        if cost is not None:
            costs[name] = cost
    return arms, costs
