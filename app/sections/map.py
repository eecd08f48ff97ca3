"""Map: from which batch size on does an optimizer pay off, if ever? Then LR sensitivity."""
from __future__ import annotations

import streamlit as st

from alto.access import actions
from alto.analysis.experiment import point_label, sweep_keys, sweep_points
from alto.analysis.sweep import sweep_map
from alto.analysis.verdicts import COUNTED, compare, default_pair, primary_target
from alto.presentation import sweeps
from alto.presentation.views import AXIS_LABELS
from common import READ_ONLY, can_edit, perform, pick_experiment, store, supervisor

s = store()
st.title("Where does it pay off?")
experiment = pick_experiment(s)
if experiment is None:
    st.stop()
counted = [r for r in s.list_runs(experiment_id=experiment["id"]) if r["status"] in COUNTED]
optimizers = sorted({r["optimizer"] for r in counted})
metric, mode, thresholds = primary_target(experiment)
if len(optimizers) < 2 or not thresholds:
    st.info("Nothing to map yet: " + ("the experiment sets no target." if not thresholds else
                                      "it needs finished runs of two optimizers."))
    st.stop()

answer_box = st.container()  # the answer opens the page; the settings come after it
c1, c2, c3 = st.columns(3)
default_baseline = default_pair(optimizers)[1]
baseline = c1.selectbox("Baseline", optimizers, index=optimizers.index(default_baseline))
threshold = c2.selectbox(f"Target: {metric} {'≥' if mode == 'max' else '≤'}", thresholds,
                         format_func=lambda t: f"{t:g}")
axis = c3.selectbox("Time in", ["wall_time", "step"], format_func=lambda a: AXIS_LABELS.get(a, a))

if sweep_keys(experiment):
    try:
        m = sweep_map(s, experiment["id"], baseline=baseline, axis=axis)
    except ValueError as err:
        answer_box.info(f"No map yet: {err}.")
    else:
        with answer_box:
            for candidate in m.candidates:
                st.markdown(sweeps.answer(m, candidate, threshold))
        st.plotly_chart(sweeps.map_figure(m, threshold), key="map")
        st.caption("Filled dot with whiskers: a calibrated 95% CI; open dot: the range over seeds (one run in an "
                   "arm, no coverage claimed); open diamond: runs missed, so the estimate prices the misses and "
                   "has no interval; ×: an arm that never reached (or diverged, below), at the panel's edge. The "
                   "word beside each point is its verdict; the grey band is the margin of no meaningful "
                   "difference. The final-metric difference uses the LRs chosen on the final value.")
        note = sweeps.varying_note(m)
        if note:
            (st.warning if m.varying else st.caption)(note)
        st.dataframe(sweeps.map_table(m), hide_index=True)
        if any(c.selection.selected for c in m.comparisons.values()):
            st.write("Each swept value chose its LRs on its own seeds, so its numbers are optimistic (the winner's "
                     "curse) and no verdict is decisive until the choice is confirmed on fresh seeds.")
            c1, c2 = st.columns([1, 3])
            fresh = c1.number_input("Fresh seeds", 1, 20, 3)
            if c2.button(f"Confirm at every {sweeps.setting_label(m.key)}", icon=":material/verified:",
                         disabled=not can_edit(), help=None if can_edit() else READ_ONLY):
                ids = perform(actions.queue_sweep_confirmation, s, experiment["id"], int(fresh))
                supervisor().tick()
                st.success(f"Queued {len(ids)} confirmation runs; watch them on Live.")
else:
    answer_box.info("This experiment sweeps no run setting, so there is no map: queue a preset with a [sweep] "
                    "(e.g. digits-batch-sweep). The LR sensitivity of its runs is below.")

st.subheader("LR sensitivity: how much tuning does each optimizer need?")
points = sweep_points(experiment, counted)
where = points[0]
if len(points) > 1:
    where = st.selectbox("At", points, format_func=point_label)
try:
    comparison = compare(s, experiment["id"], baseline=baseline, axis=axis, thresholds=[threshold],
                         where=where or None)
except ValueError as err:
    st.info(f"No LR sensitivity here: {err}.")
else:
    st.plotly_chart(sweeps.lr_figure(comparison), key="lr_sensitivity")
    st.caption("Left: final validation value per LR (line: mean over the seeds that did not diverge; band: min to "
               "max over seeds; × on the axis: diverged runs). Right: time to target per seed (dots) and the "
               "expected time per success (line; × where no run reached). Circled: the LR the verdicts use. "
               + sweeps.tuning_note(comparison))
