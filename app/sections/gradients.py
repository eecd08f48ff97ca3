"""Gradients: what the optimizers see and do, step by step (gradient history, norms, trust ratios)."""
from __future__ import annotations

import streamlit as st

from alto.analysis.experiment import grouped_series
from alto.plots import curves
from alto.plots.gradients import layer_heatmap
from alto.presentation import views
from alto.store import X_AXES
from common import pick_experiment, store, supervisor

s = store()
supervisor()

st.title("Gradients")
st.caption("Telemetry logged at every step of the selected runs, grouped by optimizer: the line "
           "is the mean over seeds, the band ±1 std (measured here, on these runs).")

experiment = pick_experiment(s)
if experiment is None:
    st.stop()
all_runs = [r for r in s.list_runs(experiment_id=experiment["id"]) if r["status"] != "queued"]
if not all_runs:
    st.info("No run of this experiment has started yet.")
    st.stop()

by_id = {r["id"]: r for r in all_runs}
chosen_ids = st.multiselect(
    "Runs", list(by_id), default=views.default_run_ids(all_runs),
    format_func=lambda i: views.run_label(by_id[i]))
c1, c2 = st.columns(2)
x = c1.selectbox("x axis", X_AXES, format_func=lambda a: views.AXIS_LABELS.get(a, a))
smoothing = c2.slider("Smoothing (debiased EMA)", 0.0, 0.99, 0.0, 0.01)
runs = [by_id[i] for i in chosen_ids]
if not runs:
    st.info("Select at least one run.")
    st.stop()
summary = s.summary([r["id"] for r in runs])
x_label = views.AXIS_LABELS.get(x, x)


def panel(p: views.Panel) -> None:
    """One chart with its one-line reading guide, or a note when nobody logged its keys."""
    st.markdown(f"**{p.title}**")
    st.caption(p.how_to_read)
    missing = views.missing_optimizers(runs, summary, p.keys)
    have = views.runs_with_keys(runs, summary, p.keys)
    if not have:
        st.info(f"Not logged by {', '.join(missing)}: nothing to plot here.")
        return
    trust = p.keys == views.TRUST_KEYS
    if trust:  # line: mean over layers; shaded: smallest to largest layer (each a seed-mean)
        groups = views.trust_band(*(grouped_series(s, [r["id"] for r in have], k, x=x, smoothing=smoothing)
                                    for k in p.keys))
    else:
        groups = grouped_series(s, [r["id"] for r in have], p.keys[0], x=x, smoothing=smoothing)
    fig = curves(groups, x_label=x_label, y_label=p.keys[0], log_y=p.log_y, show_envelope=trust)
    fig.update_layout(height=340, title=None)
    st.plotly_chart(fig, key=f"panel_{p.keys[0]}")
    if missing:
        st.caption(f"Not logged by {', '.join(missing)} (not computed there).")


panels = views.GRADIENT_PANELS
for i in range(0, len(panels), 2):  # one row of two panels at a time, so the rows line up
    for column, p in zip(st.columns(2), panels[i:i + 2]):
        with column:
            panel(p)

st.subheader("Per-layer trust ratios")
st.caption("Each row is a layer, each column a logged step; the colour is that layer's trust "
           "ratio ‖θ‖/‖update‖ (log scale): bright where the raw update is small next to the "
           "weights and gets scaled up, dark where it is scaled down, and a change along a row "
           "shows that balance drifting as training goes on.")
with_layers = [r for r in runs if views.layer_keys(summary[r["id"]])]
if not with_layers:
    st.info("None of the selected runs logged per-layer trust ratios (only Lamb-style "
            "optimizers such as ALTO and Lamb have them).")
else:
    rid = st.selectbox("Run", [r["id"] for r in with_layers],
                       format_func=lambda i: views.run_label(by_id[i]))
    matrix, steps, layers = views.layer_matrix(views.layer_trust_frame(s, rid))
    st.plotly_chart(layer_heatmap(matrix, steps, layers), key="layer_heatmap")
    no_layers = sorted({r["optimizer"] for r in runs} - {r["optimizer"] for r in with_layers})
    if no_layers:
        st.caption(f"Not logged by {', '.join(no_layers)} (no per-layer trust ratio).")
