"""A self-contained HTML report of one experiment: setup, curves, summary with CIs, ROI,
claims beside measurements, raw numbers. Every piece of user text is escaped."""
from __future__ import annotations

import html
import time

import pandas as pd

import alto
from alto.analysis.claims import PAPER_CLAIMS, paper_scenario
from alto.analysis.experiment import DEFAULT_STATUSES, experiment_table, experiment_targets, grouped_series
from alto.analysis.measured import Measured, measure
from alto.analysis.savings import DEFAULT_CARBON_KG_PER_KWH, GPU_TYPES, RoiInputs, roi
from alto.plots import curves
from alto.stats.metrics import metric_mode
from alto.store import Store

from . import fmt
from .views import default_threshold, roi_rows, summary_display

DEFAULT_COSTS = dict(gpu_hourly_price=GPU_TYPES["H100"]["price"], gpus_per_job=8, baseline_hours_per_job=24.0,
                     jobs_per_year=50, energy_kwh_per_gpu_hour=GPU_TYPES["H100"]["kwh"],
                     carbon_kg_per_kwh=DEFAULT_CARBON_KG_PER_KWH)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2433; }
h1 { margin-bottom: 0 } h2 { margin-top: 2.2rem; border-bottom: 1px solid #dde; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.6rem 0; }
th, td { border: 1px solid #dde; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f5fa; } .claim { background: #fff6e5; } .note { color: #566; font-size: 0.9rem; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(frame: pd.DataFrame, css: str = "") -> str:
    """An escaped HTML table (DataFrame.to_html escapes cell text; index dropped)."""
    return frame.to_html(index=False, escape=True, na_rep="-", float_format=lambda v: f"{v:.4g}",
                         classes=css or None, border=0)


def _figures(store: Store, run_ids: list[int], metric: str) -> list[str]:
    parts = []
    for key, log_y in ((metric, False), ("train/loss", True)):
        groups = grouped_series(store, run_ids, key, x="wall_time", max_points=500)
        if groups:
            fig = curves(groups, title=f"{key} (mean ± std over seeds) vs wall-clock seconds", x_label="seconds",
                         y_label=key, log_y=log_y)
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if not parts else False))
    return parts


def _raw_numbers(store: Store, runs: list[dict]) -> pd.DataFrame:
    summary = store.summary([r["id"] for r in runs])
    rows = []
    for r in runs:
        s = summary.get(r["id"], {})
        row = {"run": r["id"], "name": r["name"], "optimizer": r["optimizer"], "seed": r["seed"], "lr": r["lr"],
               "status": r["status"]}
        for key in ("train/loss", "val/acc", "test/acc", "val/ppl", "test/ppl"):
            if key in s:
                row[f"final {key}"] = s[key]["last"]
        row["training seconds"] = store.get_params(r["id"]).get("train_wall_s")
        rows.append(row)
    return pd.DataFrame(rows)


def _claims_vs_measured(measured: Measured | None) -> pd.DataFrame:
    rows = []
    for claim in PAPER_CLAIMS.values():
        here = "not measured by this experiment"
        if measured is not None and claim.key == "time_saved" and measured.usable:
            here = f"speed-up {fmt.speedup_result(measured.speedup)}"
        if measured is not None and claim.key == "accuracy_gain" and measured.difference is not None:
            here = fmt.difference(measured.difference, unit=measured.metric + " (fraction)")
        rows.append({"paper's claim": claim.claim, "how the paper obtained it": claim.how_obtained,
                     "caveats": claim.caveats, "measured here": here})
    return pd.DataFrame(rows)


def build_report(store: Store, experiment_id: int, *, candidate: str = "alto", baseline: str = "lamb",
                 metric: str | None = None, mode: str | None = None, threshold: float | None = None,
                 costs: dict | None = None) -> str:
    """The whole report as one HTML string (plotly.js inlined, no network needed to view it)."""
    experiment = store.get_experiment(experiment_id)
    runs = store.list_runs(experiment_id=experiment_id)
    config = experiment.get("config") or {}
    targets = experiment_targets(experiment)
    metric = metric or targets.get("metric") or "val/acc"
    mode = mode or metric_mode(metric, targets)
    if threshold is None:
        threshold = default_threshold(metric, targets)
    costs = {**DEFAULT_COSTS, **(costs or {})}

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

    finished = [r["id"] for r in runs if r["status"] in DEFAULT_STATUSES]
    sections = [f"<h1>ALTO Lab report: {_e(experiment['name'])}</h1>",
                f"<p class='note'>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}. Everything in the "
                "measured columns comes from the runs listed at the end; the paper's claims are shown "
                "separately and labelled.</p>",
                "<h2>Setup</h2>", _table(setup), _table(hparams), "<h2>Curves</h2>", *_figures(store, finished, metric)]

    summary = experiment_table(store, experiment_id, metric=metric, mode=mode, threshold=threshold,
                               baseline=baseline) if finished else pd.DataFrame()
    target = ("no target" if threshold is None
              else f"target {metric} {'≥' if mode == 'max' else '≤'} {threshold:g}")
    sections += [f"<h2>Summary ({_e(target)}, baseline {_e(baseline)})</h2>",
                 _table(summary_display(summary)) if len(summary) else "<p>No finished runs.</p>",
                 "<p class='note'>speed-up = baseline time to target / candidate time (wall clock), mean over "
                 f"seeds, {summary.attrs.get('level', 0.95):.0%} bootstrap CI over seeds when there are at least "
                 "two.</p>"]

    measured = None
    if threshold is not None and finished:
        try:
            measured = measure(store, experiment_id, candidate=candidate, baseline=baseline, metric=metric,
                               mode=mode, threshold=threshold)
        except ValueError as err:
            sections.append(f"<p>No measured speed-up: {_e(err)}</p>")
    columns = {}
    if measured is not None and measured.usable:
        s, lo, hi = measured.speedup_bounds()
        inputs = RoiInputs(speedup=s, speedup_low=lo, speedup_high=hi, **costs)
        columns["Measured (this experiment)"] = roi_rows(roi(inputs), inputs)
    paper = paper_scenario(RoiInputs(speedup=1.0, speedup_low=1.0, speedup_high=1.0, **costs))
    columns["Paper's claim (NOT measured here)"] = roi_rows(roi(paper), paper)
    roi_frame = pd.DataFrame(columns)
    roi_frame.insert(0, "figure", roi_frame.index)
    sections += ["<h2>Compute savings (ROI)</h2>",
                 f"<p class='note'>Assumptions: {_e(costs)}.</p>", _table(roi_frame),
                 "<h2>Claims beside measurements</h2>", _table(_claims_vs_measured(measured), "claim"),
                 "<h2>Raw numbers</h2>", _table(_raw_numbers(store, runs))]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ALTO Lab report</title>"
            f"<style>{STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>")
