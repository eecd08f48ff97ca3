"""Runs: every run in the database; details, tags and notes, metric export, deletion."""
from __future__ import annotations

import time

import streamlit as st

from alto.access import actions
from alto.presentation import views
from alto.runner import log_tail
from common import READ_ONLY, can_edit, experiment_label, perform, store, supervisor, when

CONFIRM = "runs_confirm_delete"  # session key: ("run" | "experiment", id) awaiting confirmation
FLASH = "runs_flash"             # session key: message to show after the rerun that follows an action

s = store()
supervisor()

st.title("Runs")
if flash := st.session_state.pop(FLASH, None):
    st.success(flash)

experiments = s.list_experiments()
if not experiments:
    st.info("No experiments yet. Start one on **Launch**, or run the demo from **Home**.")
    st.stop()
by_exp = {e["id"]: e for e in experiments}
scope = st.selectbox("Experiment", [None, *by_exp],
                     format_func=lambda i: "All experiments" if i is None else experiment_label(by_exp[i]))
runs = s.list_runs(experiment_id=scope)
table = views.runs_table(runs, {i: e["name"] for i, e in by_exp.items()}, time.time(),
                         fmt_time=when)
st.dataframe(table if scope is None else table.drop(columns="experiment"), hide_index=True)
st.caption(f"{len(runs)} run{'s' if len(runs) != 1 else ''}. steps = done/total; error = its first "
           "line (select the run below for the whole message).")
if not runs and scope is None:
    st.stop()

# -- one run ---------------------------------------------------------------------------------
run = None
if runs:
    st.subheader("Run details")
    by_run = {r["id"]: r for r in runs}
    run_id = st.selectbox("Run", list(by_run), format_func=lambda i: views.run_label(by_run[i]))
    run = s.get_run(run_id)

    left, right = st.columns(2)
    with left:
        st.text(f"Name: {run['name']}\nOptimizer: {run['optimizer']}   seed: {run['seed']}   "
                f"lr: {run['lr']:g}\nStatus: {run['status']}   steps: {views.steps_text(run)}\n"
                f"Started: {when(run['started_at'])}   finished: {when(run['finished_at'])}")
        with st.expander("Parameters (as the run resolved them)"):
            st.json(run["params"] or {})
        with st.expander("Config (as queued)"):
            st.json(run["config"] or {})
        if run["error"]:
            st.markdown("**Error**")
            st.code(run["error"], language=None)
        if run.get("log_path"):
            with st.expander("Log (last lines)"):
                st.code(log_tail(run["log_path"]) or "(empty)", language=None)

    with right:
        with st.form(f"edit_run_{run_id}"):
            tags_text = st.text_input("Tags (comma-separated)", value=", ".join(run["tags"]))
            notes = st.text_area("Notes", value=run["notes"] or "")
            if st.form_submit_button("Save tags and notes", icon=":material/save:", disabled=not can_edit(),
                                     help=None if can_edit() else READ_ONLY):
                add, remove = views.tag_changes(run["tags"], views.parse_tags(tags_text))
                perform(actions.annotate_run, s, run_id, add_tags=add, remove_tags=remove, notes=notes)
                st.session_state[FLASH] = f"Saved tags and notes of run #{run_id}."
                st.rerun()
        st.download_button("Export metrics (CSV)",
                           lambda: s.raw_metrics([run_id]).to_csv(index=False),
                           file_name=f"run{run_id}_metrics.csv", mime="text/csv", icon=":material/download:",
                           help="Every logged value of this run: key, step, value, wall time, "
                                "samples, epoch.")

# -- deletion (two clicks: ask, then confirm) -------------------------------------------------
st.subheader("Delete")
experiment_id = scope if scope is not None else run["experiment_id"]
exp_runs = runs if scope is not None else s.list_runs(experiment_id=experiment_id)
targets = {("experiment", experiment_id): (
    exp_runs, f"experiment #{experiment_id} and all {len(exp_runs)} of its runs with their metrics")}
buttons = [(("experiment", experiment_id),
            f"Delete experiment #{experiment_id} ({len(exp_runs)} runs)…")]
if run is not None:
    targets[("run", run["id"])] = ([run], f"run #{run['id']} and all its metrics")
    buttons.insert(0, (("run", run["id"]), f"Delete run #{run['id']}…"))
pending = st.session_state.get(CONFIRM)
if pending is not None and pending not in targets:
    st.session_state.pop(CONFIRM)  # the selection changed: forget the old request
    pending = None

for column, (key, label) in zip(st.columns(2), buttons):
    blocker = actions.delete_blocker(targets[key][0]) or (None if can_edit() else READ_ONLY)
    if column.button(label, disabled=blocker is not None, help=blocker):
        st.session_state[CONFIRM] = key
        st.rerun()
    if blocker:
        column.caption(blocker)

if pending is not None:
    what = targets[pending][1]
    st.warning(f"Delete {what}? This cannot be undone.", icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button("Yes, delete", type="primary", disabled=not can_edit()):
        st.session_state.pop(CONFIRM)
        try:
            perform(actions.delete_run if pending[0] == "run" else actions.delete_experiment, s, pending[1])
        except ValueError as refused:  # a run started between the two clicks
            st.error(f"Not deleted: {refused}.")
        else:
            st.session_state[FLASH] = f"Deleted {what}."
            st.rerun()
    if no.button("Cancel"):
        st.session_state.pop(CONFIRM)
        st.rerun()
