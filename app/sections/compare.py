"""Compare: learning curves of an experiment's runs, grouped by optimizer, and the summary table."""
from __future__ import annotations

import streamlit as st

from alto.analysis import views
from alto.analysis.store_io import best_lr_per_optimizer, experiment_table, grouped_series
from alto.plots import curves, runs_overlay
from alto.store import X_AXES
from common import pick_experiment, store, supervisor

s = store()
supervisor()

st.title("Compare")
st.caption("Everything on this page is measured on the runs you select here, with the seeds "
           "they have; the paper's claims are kept apart, on **ROI**.")

experiment = pick_experiment(s)
if experiment is None:
    st.stop()
all_runs = s.list_runs(experiment_id=experiment["id"])
if not all_runs:
    st.info("This experiment has no runs.")
    st.stop()

by_id = {r["id"]: r for r in all_runs}
chosen_ids = st.multiselect(
    "Runs", list(by_id), default=views.default_run_ids(all_runs),
    format_func=lambda i: views.run_label(by_id[i]),
    help="By default the finished and diverged runs (a diverged run counts as one that missed "
         "the target); while there are none, every run that has started.")
runs = [by_id[i] for i in chosen_ids]
if not runs:
    st.info("Select at least one run.")
    st.stop()

summary = s.summary([r["id"] for r in runs])
logged = {k for r in runs for k in summary[r["id"]]}
keys = views.curve_keys(logged)
if not keys:
    st.info("The selected runs have not logged any metric yet.")
    st.stop()

targets = (experiment.get("config") or {}).get("targets") or {}
c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
metric = c1.selectbox("Metric", keys, index=keys.index(views.default_metric(keys)))
x = c2.selectbox("x axis", X_AXES, format_func=lambda a: views.AXIS_LABELS.get(a, a))
log_y = c3.toggle("log y")
smoothing = c4.slider("Smoothing (debiased EMA)", 0.0, 0.99, 0.0, 0.01,
                      help="TensorBoard-style smoothing, applied to the full-resolution series "
                           "before downsampling to at most 2,000 points per trace.")

c1, c2 = st.columns([3, 2])
mode = c1.radio("Show", [views.GROUPED, views.OVERLAY], horizontal=True)
best_lr = c2.toggle("Best LR per optimizer only")
lo, hi = views.step_limits(runs)
step_range = None
if hi > lo:
    picked = st.slider("Step range", lo, hi, (lo, hi),
                       help="Re-reads the chosen steps from the database at full detail.")
    step_range = None if picked == (lo, hi) else picked

if best_lr:
    selection = views.selection_metric(metric, logged)
    if selection is None:
        st.warning("No validation metric (val/acc, val/ppl, val/loss) was logged, so the best "
                   "LR cannot be chosen; showing every LR.")
    else:
        best = best_lr_per_optimizer(s, experiment["id"], *selection)
        runs, undecided = views.keep_best_lr(runs, best)
        chosen = ", ".join(f"{o} lr={lr:g}" for o, lr in sorted(best.items()))
        st.caption(f"Best LR chosen on the validation metric {selection[0]} ({selection[1]} of "
                   f"the seed-mean final value), never on test: picking on test would leak the "
                   f"test set into the comparison. Chosen: {chosen or 'none'}."
                   + (f" Not decidable (kept all LRs): {', '.join(undecided)}." if undecided else ""))

groups = grouped_series(s, [r["id"] for r in runs], metric, x=x, smoothing=smoothing, step_range=step_range)
x_label = views.AXIS_LABELS.get(x, x)
dashes = views.line_dashes(groups)  # same colour per optimizer: several LRs differ by line style
if not groups:
    st.info(f"None of the selected runs logged {metric} in this range.")
elif mode == views.GROUPED:
    fig = curves(groups, title=metric, x_label=x_label, y_label=metric, log_y=log_y)
    fig.for_each_trace(lambda t: t.update(line_dash=views.dash_for(t.name, dashes)))
    st.plotly_chart(fig)
    st.caption(f"Line: mean over seeds; dark band: ±1 std; light band: min–max over seeds. "
               f"{views.seeds_sentence(groups)}.")
else:
    fig = runs_overlay(views.overlay_series(groups, runs), title=metric, x_label=x_label,
                       y_label=metric, log_y=log_y)
    fig.for_each_trace(lambda t: t.update(line_dash=views.dash_for(t.name, dashes)))
    st.plotly_chart(fig)
    st.caption(f"One line per run. {views.seeds_sentence(groups)}.")

# -- summary table ---------------------------------------------------------------------------
st.subheader("Summary")
optimizers = sorted({r["optimizer"] for r in runs})
direction = views.metric_mode(metric, targets)
c1, c2, c3 = st.columns(3)
threshold = c1.number_input(
    f"Target: {metric} {'≥' if direction == 'max' else '≤'}",
    value=views.default_threshold(metric, targets), format="%g", step=0.01, placeholder="no target",
    help="Default: the experiment's first target for this metric, if its config sets one.")
baseline = c2.selectbox("Speed-up against", optimizers,
                        index=optimizers.index(views.default_baseline(optimizers)))
time_axis = c3.selectbox("Time to target in", ["wall_time", "step", "samples", "epoch"],
                         format_func=lambda a: views.AXIS_LABELS.get(a, a))
try:
    table = experiment_table(s, experiment["id"], metric=metric, mode=direction,
                             threshold=threshold, baseline=baseline, x=time_axis,
                             smoothing=smoothing)
except ValueError as err:
    st.warning(f"No summary table for these settings: {err}")
    table = None
if table is not None:
    table = views.restrict_table(table, runs)
if table is not None and table.empty:
    st.info("The summary counts finished and diverged runs only; the selected settings have "
            "none yet.")
elif table is not None:
    st.dataframe(views.summary_display(table), hide_index=True)
    base_lr = table.attrs.get("baseline_lr")
    st.caption(
        f"Measured on this experiment's finished and diverged runs at the settings shown "
        f"(n_seeds = runs averaged). final/best: raw {metric}; time to target uses the series "
        f"smoothed as set above, averaged over the runs that reached it. Speed-up = {baseline}"
        f"{f' (lr={base_lr:g})' if base_lr is not None else ''} time ÷ this time: above 1 is "
        f"faster than {baseline}; a CI that contains 1 means no clear difference on these seeds. "
        f"The CI is a bootstrap over seeds, given when both arms have ≥ 2 runs that reached the "
        f"target (otherwise the note says why).")

# -- download --------------------------------------------------------------------------------
c1, c2 = st.columns(2)
shown = views.groups_frame(groups, x) if mode == views.GROUPED else views.overlay_frame(groups, x)
c1.download_button("Download plotted series (CSV)", shown.to_csv(index=False),
                   file_name=f"experiment{experiment['id']}_{metric.replace('/', '_')}_{x}.csv",
                   mime="text/csv", icon=":material/download:")
if table is not None:
    c2.download_button("Download summary table (CSV)", table.to_csv(index=False),
                       file_name=f"experiment{experiment['id']}_summary.csv", mime="text/csv",
                       icon=":material/download:")
