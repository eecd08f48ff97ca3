"""A self-contained HTML report of one experiment: the verdict sentence first, then the verdict
tables and per-seed values, setup, curves, ROI, claims beside measurements, raw numbers. Every
piece of user text is escaped."""
from __future__ import annotations

import html
import time

import pandas as pd

import alto
from alto.analysis.claims import PAPER_CLAIMS, beside, paper_scenario
from alto.analysis.experiment import grouped_series, sweep_keys
from alto.analysis.factors import CostFactor, StepsFactor, default_cost, fleet_speedup, steps_factor
from alto.analysis.measured import Measured, measure
from alto.analysis.memory import MemoryFit
from alto.analysis.savings import DEFAULT_CARBON_KG_PER_KWH, GPU_TYPES, RoiInputs, roi
from alto.plots import curves, seed_dots
from alto.store import Store

from . import sweeps, views

DEFAULT_GPU = "H100"
DEFAULT_COSTS = dict(gpu_hourly_price=GPU_TYPES[DEFAULT_GPU]["price"], gpus_per_job=8, baseline_hours_per_job=24.0,
                     jobs_per_year=50, energy_kwh_per_gpu_hour=GPU_TYPES[DEFAULT_GPU]["kwh"],
                     carbon_kg_per_kwh=DEFAULT_CARBON_KG_PER_KWH)
FLEET_KIND = "cuda"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2433; }
h1 { margin-bottom: 0 } h2 { margin-top: 2.2rem; border-bottom: 1px solid #dde; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.6rem 0; }
th, td { border: 1px solid #dde; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f5fa; } .claim { background: #fff6e5; } .note { color: #566; font-size: 0.9rem; }
.verdict { font-size: 1.1rem; padding: 0.6rem 0.9rem; background: #f3f5fa; border-left: 4px solid #1d2433; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(frame: pd.DataFrame, css: str = "") -> str:
    """An escaped HTML table (DataFrame.to_html escapes cell text; index dropped)."""
    return frame.to_html(index=False, escape=True, na_rep="-", float_format=lambda v: f"{v:.4g}",
                         classes=css or None, border=0)


def _figures(store: Store, run_ids: list[int], metric: str, plotly_included: bool) -> list[str]:
    """The curves as HTML fragments; plotly.js is inlined once per report."""
    parts = []
    for key, log_y in ((metric, False), ("train/loss", True)):
        groups = grouped_series(store, run_ids, key, x="wall_time", max_points=500)
        if groups:
            fig = curves(groups, title=f"{key} (mean ± std over seeds) vs the training clock",
                         x_label="training seconds", y_label=key, log_y=log_y)
            inline = not (parts or plotly_included)
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if inline else False))
    return parts


def _raw_numbers(store: Store, runs: list[dict]) -> pd.DataFrame:
    summary = store.summary([r["id"] for r in runs])
    rows = []
    for r in runs:
        s = summary.get(r["id"], {})
        row = {"run": r["id"], "name": r["name"], "optimizer": r["optimizer"], "seed": r["seed"], "lr": r["lr"],
               "status": r["status"], "tags": ", ".join(r.get("tags") or [])}
        for key in ("train/loss", "val/acc", "test/acc", "val/ppl", "test/ppl"):
            if key in s:
                row[f"final {key}"] = s[key]["last"]
        params = store.get_params(r["id"])
        row["training seconds"] = params.get("train_s")
        row["evaluation seconds"] = params.get("eval_s")
        rows.append(row)
    return pd.DataFrame(rows)


def _claims_beside(store: Store, experiment_id: int, lrs: dict[str, float] | None) -> pd.DataFrame:
    rows = []
    for claim in PAPER_CLAIMS.values():
        try:
            here = beside(claim, store, experiment_id, lrs)
        except ValueError as err:
            here = f"not comparable here: {err}"
        rows.append({"paper's claim": claim.claim, "how the paper obtained it": claim.how_obtained,
                     "caveats": claim.caveats, "measured here": here})
    return pd.DataFrame(rows)


def _sweep_section(store: Store, experiment_id: int, inline: bool) -> tuple[list[str], list[str]]:
    """(the map's one-line answers, the section's HTML with the map figure and table; plotly.js
    inlined when `inline`); a sweep experiment's report opens with the answers."""
    from alto.analysis.sweep import sweep_map

    try:
        m = sweep_map(store, experiment_id)
    except ValueError as err:
        return [f"No map yet: {err}"], []
    answers = [sweeps.answer(m, c) for c in m.candidates]
    parts = ["<h2>Where does it pay off? The sweep map</h2>",
             *(f"<p class='note'>{_e(a)}</p>" for a in answers),
             sweeps.map_figure(m).to_html(full_html=False, include_plotlyjs="inline" if inline else False),
             f"<p class='note'>{_e(sweeps.varying_note(m))}</p>", _table(sweeps.map_table(m))]
    return answers, parts


def build_report(store: Store, experiment_id: int, *, candidate: str | None = None, baseline: str | None = None,
                 metric: str | None = None, threshold: float | None = None, costs: dict | None = None,
                 cost: CostFactor | None = None, fleet_gpu: str = DEFAULT_GPU, measured: Measured | None = None,
                 steps: StepsFactor | None = None, memory: MemoryFit | None = None) -> str:
    """The whole report as one HTML string (plotly.js inlined, no network needed to view it).

    It opens with the same verdict sentence as Compare, ROI and `alto compare` for the same
    candidate, baseline and target (defaults: verdicts.default_pair and the experiment's first
    target). The savings are for a fleet of `fleet_gpu`s at the cost-per-step factor `cost`
    (default: the newest measured on a GPU, else 1.00 typed in and said so), on the GPUs per job
    that `memory` leaves (default: the model fits).

    A caller that has already measured the pair (the ROI page) passes `measured` and its `steps`
    factor; the candidate, baseline, metric and threshold are then `measured`'s."""
    experiment = store.get_experiment(experiment_id)
    runs = store.list_runs(experiment_id=experiment_id)
    config = experiment.get("config") or {}
    costs = {**DEFAULT_COSTS, **(costs or {})}

    problem = None
    if measured is None:
        try:
            measured = measure(store, experiment_id, candidate=candidate, baseline=baseline, metric=metric,
                               threshold=threshold)
        except ValueError as err:
            problem = str(err)
    comparison = measured.comparison if measured else None
    metric = comparison.metric if comparison else (metric or "val/acc")
    if steps is None and measured is not None:
        steps = steps_factor(store, measured)
    fleet, refused = None, None
    if steps is not None:
        row = measured.row
        cost = cost or default_cost(store, experiment_id, row.candidate, row.baseline, fleet_kind=FLEET_KIND)
        if memory is not None and memory.factor is None:
            refused = memory.sentence()
        else:
            try:
                fleet = fleet_speedup(steps, cost, fleet_kind=FLEET_KIND, fleet_name=fleet_gpu,
                                      gpus=1.0 if memory is None else memory.factor)
            except ValueError as err:
                refused = str(err)
    answers, sweep_parts = (_sweep_section(store, experiment_id, inline=measured is None) if sweep_keys(experiment)
                            else ([], []))

    sections = [f"<h1>ALTO Lab report: {_e(experiment['name'])}</h1>"]
    if measured is None and answers:  # a sweep: one workload per value, so the map's answers open it
        sections += [f"<p class='verdict'>{_e(a)}</p>" for a in answers]
    elif measured is not None:
        sections.append(f"<p class='verdict'>{_e(measured.row.verdict.sentence)}</p>")
        if fleet is not None:
            sections.append(f"<p class='verdict'>{_e(fleet.sentence())}</p>")
        elif refused:
            sections.append(f"<p class='verdict'>Not computed for your fleet: {_e(refused)}</p>")
        for note in (views.selection_note(comparison), views.left_out_note(comparison)):
            if note:
                sections.append(f"<p class='note'>{_e(note)}</p>")
    else:
        sections.append(f"<p class='verdict'>No verdict: {_e(problem)}</p>")
    sections.append(f"<p class='note'>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}. Everything measured "
                    "comes from the runs listed at the end; the paper's claims are shown separately and labelled. "
                    "Times are on the training clock (evaluation and logging excluded).</p>")

    params = store.get_params(runs[0]["id"]) if runs else {}
    setup = pd.DataFrame([
        {"item": "experiment", "value": f"#{experiment_id} {experiment['name']}"},
        {"item": "preset", "value": f"{experiment.get('preset') or 'custom'} — source: {config.get('source', '-')}"},
        {"item": "description", "value": config.get("description", "")},
        {"item": "notes", "value": experiment.get("notes") or "-"},
        {"item": "optimizers", "value": ", ".join(sorted({r['optimizer'] for r in runs}))},
        {"item": "seeds", "value": ", ".join(str(s) for s in sorted({r['seed'] for r in runs}))},
        {"item": "runs", "value": f"{len(runs)} ({', '.join(f'{n} {k}' for k, n in experiment['run_counts'].items())})"},
        {"item": "run settings", "value": {k: v for k, v in (runs[0]["config"] if runs else {}).items()
                                           if k not in ("optimizer", "lr", "seed", "hparams")}},
        {"item": "torch / device", "value": f"{params.get('torch', '-')} / {params.get('device', '-')}"},
        {"item": "ALTO Lab", "value": alto.__version__},
    ])
    hparams = pd.DataFrame([{"optimizer": r["optimizer"], "lr": r["lr"],
                             "hyper-parameters used": store.get_params(r["id"]).get("hparams", "-")}
                            for r in {(r["optimizer"], r["lr"]): r for r in runs}.values()])

    if measured is not None:
        row = measured.row
        arms, costs_per_success = views.seed_dot_arms(row)
        dots = seed_dots(arms, title=f"Time to {metric} {'≥' if row.mode == 'max' else '≤'} {row.threshold:g} "
                                     "per seed (× = missed, at the time it ran)",
                         x_label="training seconds", estimate_lines=costs_per_success)
        split = ""
        if measured.fewer_steps is not None and measured.cost_per_step is not None:
            split = (f"<p class='note'>Split like the paper's Table 18: {row.result.estimate:.2f}x = "
                     f"{measured.fewer_steps:.2f}x from the number of steps × {measured.cost_per_step:.2f}x from "
                     "the cost of a step (above 1 favours the candidate).</p>")
        sections += ["<h2>Verdicts</h2>"]
        for t in comparison.thresholds:
            sections += [f"<h3>{_e(metric)} {'≥' if comparison.mode == 'max' else '≤'} {t:g}</h3>",
                         _table(views.verdict_table(comparison, t)), _table(views.arm_table(comparison, t))]
        sections += [dots.to_html(full_html=False, include_plotlyjs="inline"), split]
        if steps is not None:
            sections += ["<h2>The factors and where each was measured</h2>",
                         _table(views.factor_table(steps, cost, fleet, memory)),
                         *(f"<p class='note'>Note: {_e(w)}.</p>" for w in (fleet.warnings if fleet else ()))]
    sections += sweep_parts
    sections += ["<h2>Setup</h2>", _table(setup), _table(hparams), "<h2>Curves</h2>",
                 *_figures(store, views.default_run_ids(runs), metric,
                           plotly_included=measured is not None or bool(sweep_parts))]

    columns = {}
    inputs = fleet.roi_inputs(**costs) if fleet is not None else None
    if inputs is not None:
        columns[views.FLEET_COLUMN] = views.roi_rows(roi(inputs), inputs, fleet)
    paper = paper_scenario(RoiInputs(speedup=1.0, speedup_low=1.0, speedup_high=1.0, evidence="claim", **costs))
    columns["Paper's claim (NOT measured here)"] = views.roi_rows(roi(paper), paper)
    roi_frame = pd.DataFrame(columns)
    roi_frame.insert(0, "figure", roi_frame.index)
    sections += ["<h2>Compute savings (ROI)</h2>",
                 f"<p class='note'>Assumptions: {_e(costs)}.</p>", _table(roi_frame),
                 "<h2>Claims beside measurements</h2>",
                 _table(_claims_beside(store, experiment_id, comparison.selection.lrs if comparison else None),
                        "claim"),
                 "<h2>Raw numbers</h2>", _table(_raw_numbers(store, runs))]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ALTO Lab report</title>"
            f"<style>{STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>")
