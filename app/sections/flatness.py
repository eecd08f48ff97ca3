"""Flatness: sharpness of your runs' final weights, measured by a background job, read with care."""
import math

import pandas as pd
import plotly.colors
import streamlit as st

from alto.access import actions
from alto.plots import bar_with_ci, runs_overlay
from alto.presentation.fmt import mean_pm_std
from alto.probes.flatness_job import DEFAULTS, KIND, measurable_runs, summarize
from alto.runner import JOB, log_tail
from common import READ_ONLY, STATUS_ICONS, can_edit, perform, pick_experiment, store, supervisor, when

ACTIVE = ("queued", "running")

s = store()
sup = supervisor()
st.title("Flatness")
st.caption("How sharp are the minima your runs ended in? A background job loads each finished run's final "
           "weights and measures the loss surface around them on one fixed batch of training data.")
experiment = pick_experiment(s, key="flatness_experiment")
if experiment is None:
    st.stop()
experiment_id = experiment["id"]
runs = measurable_runs(s, experiment_id)
optimizers = sorted({r["optimizer"] for r in runs})


# -- queue a measurement ------------------------------------------------------------------------
if not runs:
    st.warning("No finished run of this experiment has final weights (`final.pt`), so there is nothing to "
               "measure. Runs keep them when `save_final` is on (the default) and they finish.")
else:
    st.write(f"{len(runs)} finished runs with final weights: "
             + ", ".join(f"{sum(r['optimizer'] == o for r in runs)} {o}" for o in optimizers) + ".")
    choices = optimizers if len(optimizers) >= 2 else sorted({*optimizers, "alto", "lamb"})
    a_col, b_col, batch_col, iters_col = st.columns(4)
    first = a_col.selectbox("Interpolate from", choices, index=choices.index("alto") if "alto" in choices else 0)
    rest = [o for o in choices if o != first]
    second = b_col.selectbox("to", rest, index=rest.index("lamb") if "lamb" in rest else 0)
    batch_size = batch_col.number_input("Fixed batch (samples)", 16, 8192, DEFAULTS["batch_size"], step=64,
                                        help="Drawn once from the training split; every run is measured on it.")
    iters = iters_col.number_input("Power iterations", 2, 200, DEFAULTS["iters"],
                                   help="Hessian-vector products for the top eigenvalue (stops early when it "
                                        "has converged).")
    if st.button("Measure flatness", type="primary", icon=":material/straighten:", disabled=not can_edit(),
                 help=None if can_edit() else READ_ONLY):
        perform(actions.queue_flatness_job, s, experiment_id, pair=[first, second], batch_size=int(batch_size),
                iters=int(iters))
        sup.tick()  # start it now rather than at the next poll

# -- the latest job -----------------------------------------------------------------------------
jobs = s.list_jobs(kind=KIND, experiment_id=experiment_id)
job = jobs[0] if jobs else None


@st.fragment(run_every=2)
def job_status(job_id: int) -> None:
    """Polls the job while it is queued or running; reruns the page once it has ended."""
    current = s.get_job(job_id)
    if current["status"] not in ACTIVE:
        st.rerun()
    st.info(f"{STATUS_ICONS.get(current['status'], '')} Flatness job #{job_id} is **{current['status']}** "
            f"(queued {when(current['created_at'])}). This page updates by itself.")
    tail = log_tail(current["log_path"], 6)
    if tail:
        st.code(tail, language=None)
    if st.button("Cancel the job", key=f"cancel_job_{job_id}", disabled=not can_edit(),
                 help=None if can_edit() else READ_ONLY):
        perform(actions.cancel, sup, job_id, JOB)


if job is not None and job["status"] in ACTIVE:
    job_status(job["id"])
elif job is not None and job["status"] != "finished":
    st.error(f"{STATUS_ICONS.get(job['status'], '')} Flatness job #{job['id']} {job['status']}:")
    st.code(job["error"] or "(no message)", language=None)

# -- results ------------------------------------------------------------------------------------
artifacts = s.artifacts(kind=KIND, experiment_id=experiment_id)
if not artifacts:
    if job is None and runs:
        st.info("No measurement yet: press **Measure flatness** (a few seconds for the digits demo).")
    st.stop()
artifact = artifacts[0]
result = artifact["payload"]
settings = result["settings"]
a, b = result["pair"]
st.subheader("Results")
st.caption(f"Measured {when(artifact['created_at'])} on {result['runs'][0]['samples']} fixed training samples, "
           f"model in eval mode, on {result['device']}; {settings['iters']} power iterations at most, "
           f"{settings['trace_samples']} Hutchinson samples, directions from seed {settings['seed']}.")

summary = summarize(result)
st.dataframe(pd.DataFrame([{
    "optimizer": r["optimizer"], "seeds (n)": r["n"],
    "top Hessian eigenvalue": mean_pm_std(r["top_eigenvalue_mean"], r["top_eigenvalue_std"]),
    "Hessian trace": mean_pm_std(r["trace_mean"], r["trace_std"]),
    "loss on the batch": mean_pm_std(r["loss_mean"], r["loss_std"]),
} for r in summary]), hide_index=True)
st.caption("mean ± standard deviation over seeds (no ± when n = 1). Lower means flatter.")

labels = [r["optimizer"] for r in summary]
left, right = st.columns(2)
for col, key, title in ((left, "top_eigenvalue", "Top Hessian eigenvalue"), (right, "trace", "Hessian trace")):
    means = [r[f"{key}_mean"] for r in summary]
    spread = [r[f"{key}_std"] if math.isfinite(r[f"{key}_std"]) else None for r in summary]
    with col:
        st.plotly_chart(bar_with_ci(labels, means, [None if d is None else m - d for m, d in zip(means, spread)],
                                    [None if d is None else m + d for m, d in zip(means, spread)],
                                    title=title, y_label=title),
                        key=f"bar_{key}")
st.caption("Bars: mean over seeds; whiskers: ±1 standard deviation (none when n = 1).")

centred = st.toggle("Profiles: show the rise above each run's own loss", value=True)
left, right = st.columns(2)
with left:
    lines = result["interpolations"]
    if lines:
        fig = runs_overlay({f"seed {i['seed']}": (i["t"], i["loss"]) for i in lines},
                           title=f"Straight line from {a} (t = 0) to {b} (t = 1)", x_label="t", y_label="loss")
        for trace, color in zip(fig.data, plotly.colors.qualitative.Dark2 * 10):
            trace.line.color = color
        st.plotly_chart(fig, key="interpolation")
        st.caption("One line per seed, between the two optimizers' final weights. A bump in the middle is a "
                   "barrier between two different minima; a flat or monotone line means they sit in one "
                   "basin. Runs with the same seed start from the same weights.")
    else:
        st.info(f"No seed has finished runs of both {a} and {b}, so there is no interpolation.")
with right:
    fig = runs_overlay({f"{r['optimizer']} seed {r['seed']}": (
        r["profile"]["t"], [v - r["loss"] if centred else v for v in r["profile"]["loss"]])
        for r in result["runs"]}, title="1-D loss profiles, one shared direction",
        x_label="step along the filter-normalised direction", y_label="loss rise" if centred else "loss")
    seen = set()
    for trace in fig.data:  # one legend entry per optimizer
        optimizer = trace.name.split(" seed ")[0]
        trace.update(legendgroup=optimizer, name=optimizer, showlegend=optimizer not in seen)
        seen.add(optimizer)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, x=0), margin=dict(b=90))
    st.plotly_chart(fig, key="profiles")
    st.caption("Same random direction (same seed) for every run, rescaled filter by filter to each run's "
               "weights. A narrower, steeper curve is a sharper minimum.")

with st.expander("Numbers per run"):
    st.dataframe(pd.DataFrame([{
        "run": r["name"], "optimizer": r["optimizer"], "seed": r["seed"], "lr": r["lr"], "loss": r["loss"],
        "top eigenvalue": r["top_eigenvalue"], "power iterations": r["eig_iters"], "trace": r["trace"],
        "trace std. error": r["trace_se"]} for r in result["runs"]]), hide_index=True)

st.subheader("What these numbers mean, and what they do not")
st.markdown(
    "- **Top Hessian eigenvalue**: the curvature of the loss in its steepest direction at the final weights. "
    "**Trace**: the sum of all curvatures (a Hutchinson estimate; each run's standard error is in the "
    "per-run table). Both are measured on one fixed batch, so they are comparable between these runs.\n"
    "- **Not invariant to reparametrisation.** Sharpness changes when the same function is written with "
    "different weights: in a network with BatchNorm, scaling a layer's weights leaves the function unchanged "
    "but changes the Hessian. A sharper number does not by itself mean worse generalisation.\n"
    "- **Compare only like with like**: same architecture, same data, same batch, and runs that reached a "
    "similar loss (sharpness changes along training; a run that has barely moved sits elsewhere).\n"
    "- **The paper's claim** that ALTO finds flatter minima came with little direct evidence (a reviewer's "
    "main criticism). This page measures it on **your** runs; with few seeds, treat a difference smaller "
    "than the spread as no difference."
)
