"""Live: progress and ETA per run, live curves, log tail, cancel — refreshed every 2 s."""
import streamlit as st

from alto.access import actions
from alto.analysis.experiment import grouped_series
from alto.plots import curves
from alto.presentation.fmt import duration
from alto.runner.launch import progress
from alto.runner.supervisor import log_tail
from common import READ_ONLY, STATUS_ICONS, can_edit, perform, pick_experiment, store, supervisor

s = store()
sup = supervisor()
st.title("Live")
if not sup.is_leader:
    st.info("Another app or `alto worker` supervises this database; runs still progress and can be cancelled here.")
experiment = pick_experiment(s, key="live_experiment")


@st.fragment(run_every=2)
def live(experiment_id: int) -> None:
    runs = s.list_runs(experiment_id=experiment_id)
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    st.write("  ".join(f"{STATUS_ICONS.get(k, '')} {n} {k}" for k, n in sorted(counts.items())))

    for r in runs:
        if r["status"] not in ("queued", "running", "stalled"):
            continue
        p = progress(r)
        cols = st.columns([5, 1])
        label = f"{STATUS_ICONS[r['status']]} {r['name']} — step {p['done']}/{p['total'] or '?'} — ETA {duration(p['eta_s'])}"
        cols[0].progress(p["fraction"], text=label)
        if cols[1].button("Cancel", key=f"cancel_{r['id']}", disabled=not can_edit(),
                          help=None if can_edit() else READ_ONLY):
            perform(actions.cancel, sup, r["id"])
            st.toast(f"Cancelling run {r['id']}")

    ids = [r["id"] for r in runs if r["status"] != "queued"]
    if ids:
        left, right = st.columns(2)
        loss = grouped_series(s, ids, "train/loss", x="step", max_points=500)
        if loss:
            left.plotly_chart(curves(loss, title="Training loss (mean ± std over seeds)", x_label="step",
                                     y_label="train/loss", log_y=True), key="live_loss")
        keys = set(s.metric_keys(ids[0]))
        metric = "val/ppl" if "val/ppl" in keys else "val/acc"
        val = grouped_series(s, ids, metric, x="step", max_points=500)
        if val:
            right.plotly_chart(curves(val, title=f"{metric} (validation split)", x_label="step", y_label=metric),
                               key="live_val")

    finished_badly = [r for r in runs if r["status"] in ("failed", "crashed", "diverged", "stalled")]
    for r in finished_badly:
        st.warning(f"Run {r['id']} ({r['status']}): " + (r.get("error") or "").splitlines()[0] if r.get("error")
                   else f"Run {r['id']} is {r['status']}")

    started = [r for r in runs if r.get("log_path")]
    if started:
        chosen = st.selectbox("Log of run", started, format_func=lambda r: f"#{r['id']} {r['name']} ({r['status']})",
                              key="log_run")
        st.code(log_tail(chosen["log_path"], 30) or "(no output yet)", language=None)


if experiment is not None:
    live(experiment["id"])
