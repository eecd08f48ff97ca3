"""Compare: the verdict sentence first, then the learning curves, then the controls and the tables."""
from __future__ import annotations

import streamlit as st

from alto.access import actions
from alto.analysis.experiment import grouped_series, point_label, sweep_keys, sweep_points
from alto.analysis.verdicts import compare, default_pair, primary_target
from alto.plots import curves, runs_overlay, seed_dots
from alto.presentation import views
from alto.store import X_AXES
from common import READ_ONLY, can_edit, perform, pick_experiment, store, supervisor

s = store()
supervisor()

st.title("Compare")
experiment = pick_experiment(s)
if experiment is None:
    st.stop()
all_runs = s.list_runs(experiment_id=experiment["id"])
if not all_runs:
    st.info("This experiment has no runs.")
    st.stop()

verdict_box = st.container()  # filled last: the sentence opens the page, the controls come after
chart_box = st.container()

# -- controls ---------------------------------------------------------------------------------
st.subheader("What to plot")
by_id = {r["id"]: r for r in all_runs}
chosen_ids = st.multiselect(
    "Runs", list(by_id), default=views.default_run_ids(all_runs), format_func=lambda i: views.run_label(by_id[i]),
    help="The curves only. Verdicts always count every finished and diverged run of the experiment "
         "(a diverged run is a miss).")
runs = [by_id[i] for i in chosen_ids]
summary = s.summary([r["id"] for r in runs])
logged = {k for r in runs for k in summary[r["id"]]}
keys = views.curve_keys(logged)
c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
metric = c1.selectbox("Metric", keys, index=keys.index(views.default_metric(keys))) if keys else None
x = c2.selectbox("x axis", X_AXES, format_func=lambda a: views.AXIS_LABELS.get(a, a))
log_y = c3.toggle("log y")
smoothing = c4.slider("Smoothing (display only)", 0.0, 0.99, 0.0, 0.01,
                      help="TensorBoard-style debiased EMA of the plotted curves. Times to target and "
                           "verdicts always use the raw evaluated values.")
c1, c2 = st.columns([3, 2])
mode = c1.radio("Show", [views.GROUPED, views.OVERLAY], horizontal=True)
best_lr = c2.toggle("Chosen LR per optimizer only", help="The LR each verdict uses (marked ✓ below).")
lo, hi = views.step_limits(runs)
step_range = None
if hi > lo:
    picked = st.slider("Step range", lo, hi, (lo, hi), help="Re-reads the chosen steps from the database at full detail.")
    step_range = None if picked == (lo, hi) else picked

st.subheader("Verdict settings")
target_metric, target_mode, thresholds = primary_target(experiment)
optimizers = sorted({r["optimizer"] for r in all_runs if r["status"] in ("finished", "diverged")})
default_candidate, default_baseline = default_pair(optimizers)
c1, c2, c3, c4 = st.columns(4)
threshold = c1.number_input(f"Target: {target_metric} {'≥' if target_mode == 'max' else '≤'}",
                            value=thresholds[0] if thresholds else None,
                            format="%g", step=0.01, placeholder="no target",
                            help="Default: the experiment's first target. Validation split only.")
baseline = c2.selectbox("Baseline", optimizers or ["-"],
                        index=optimizers.index(default_baseline) if default_baseline in optimizers else 0)
axis = c3.selectbox("Time in", ["wall_time", "step"], format_func=lambda a: {"wall_time": "training seconds",
                                                                             "step": "steps"}[a])
confirm_seeds = c4.number_input("Fresh seeds to confirm", 1, 20, 3)
where = None  # a sweep is one workload per swept value: its verdicts come one value at a time
if sweep_keys(experiment):
    where = st.selectbox("Swept value", sweep_points(experiment, all_runs), format_func=point_label,
                         help="Each value is its own workload; the Map page shows them side by side.")

comparison, problem = None, None
if threshold is not None and optimizers:
    try:
        comparison = compare(s, experiment["id"], metric=target_metric, thresholds=[float(threshold)],
                             baseline=baseline, axis=axis, where=where)
    except ValueError as err:
        problem = str(err)

# -- the verdict, first on the page -------------------------------------------------------------
with verdict_box:
    if comparison is None:
        st.info(f"No verdict yet: {problem or 'set a target below'}.")
    else:
        first = next((r for r in comparison.rows if r.candidate == default_candidate), comparison.rows[0])
        for row in [first, *[r for r in comparison.rows if r is not first]]:
            (st.markdown if row is first else st.caption)(row.verdict.sentence)
        for note in (views.selection_note(comparison), views.left_out_note(comparison)):
            if note:
                st.caption(note)

# -- the curves ---------------------------------------------------------------------------------
with chart_box:
    plotted = runs
    if best_lr and comparison is not None:
        plotted, _ = views.keep_best_lr(runs, comparison.selection.lrs)
    groups = grouped_series(s, [r["id"] for r in plotted], metric, x=x, smoothing=smoothing,
                            step_range=step_range) if metric and plotted else {}
    dashes = views.line_dashes(groups)  # same colour per optimizer: several LRs differ by line style
    x_label = views.AXIS_LABELS.get(x, x)
    if not groups:
        st.info("Nothing to plot: select runs that have logged a metric.")
    else:
        if mode == views.GROUPED:
            fig = curves(groups, title=metric, x_label=x_label, y_label=metric, log_y=log_y)
            caption = "Line: mean over seeds; dark band: ±1 std; light band: min–max over seeds."
        else:
            fig = runs_overlay(views.overlay_series(groups, plotted), title=metric, x_label=x_label,
                               y_label=metric, log_y=log_y)
            caption = "One line per run."
        fig.for_each_trace(lambda t: t.update(line_dash=views.dash_for(t.name, dashes)))
        st.plotly_chart(fig)
        st.caption(f"{caption} {views.seeds_sentence(groups)}. Wall time is the training clock: evaluation "
                   "and logging are not in it.")

# -- tables, per-seed values, confirmation ---------------------------------------------------------
if comparison is not None:
    st.subheader("Verdicts and the runs behind them")
    st.dataframe(views.verdict_table(comparison), hide_index=True)
    st.dataframe(views.arm_table(comparison), hide_index=True)
    row = comparison.row(default_candidate) or comparison.rows[0]
    pick = st.selectbox("Per-seed times of", [r.candidate for r in comparison.rows],
                        index=[r.candidate for r in comparison.rows].index(row.candidate))
    row = comparison.row(pick)
    arms, costs = views.seed_dot_arms(row)
    st.plotly_chart(seed_dots(arms, title=f"Time to target per seed, {row.candidate} vs {row.baseline}",
                              x_label=views.AXIS_LABELS[axis] if axis in views.AXIS_LABELS else axis,
                              estimate_lines=costs), key="seed_dots")
    st.caption("One dot per run; × a run that missed, at the time it ran; the tick is the arm's expected time "
               "per success (misses included).")
    if comparison.selection.selected:
        st.write("The LRs were chosen on these seeds, so their numbers are optimistic (the winner's curse). "
                 "Confirm them on fresh seeds: the verdict then rests on those runs.")
        if st.button(f"Confirm on {confirm_seeds} fresh seeds", icon=":material/verified:", disabled=not can_edit(),
                     help=None if can_edit() else READ_ONLY):
            try:
                ids = perform(actions.queue_confirmation, s, experiment["id"], comparison.selection.lrs,
                              int(confirm_seeds), where=where)
            except ValueError as err:  # e.g. runs recorded by alto.track: only your script can re-run them
                st.error(str(err))
            else:
                supervisor().tick()
                st.success(f"Queued {len(ids)} confirmation runs; watch them on Live.")
    st.download_button("Download the verdict table (CSV)", views.verdict_table(comparison).to_csv(index=False),
                       file_name=f"experiment{experiment['id']}_verdicts.csv", mime="text/csv",
                       icon=":material/download:")
if groups:
    shown = views.groups_frame(groups, x) if mode == views.GROUPED else views.overlay_frame(groups, x)
    st.download_button("Download plotted series (CSV)", shown.to_csv(index=False),
                       file_name=f"experiment{experiment['id']}_{metric.replace('/', '_')}_{x}.csv",
                       mime="text/csv", icon=":material/download:")
