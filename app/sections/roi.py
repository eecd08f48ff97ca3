"""ROI: turn a MEASURED speed-up (with its verdict) into compute savings; the paper's claim sits beside it."""
import pandas as pd
import streamlit as st

from alto.analysis.claims import PAPER_CLAIMS, paper_scenario
from alto.analysis.measured import measure
from alto.analysis.savings import DEFAULT_CARBON_KG_PER_KWH, GPU_TYPES, RoiInputs, roi, sensitivity, speedup_grid
from alto.analysis.verdicts import default_pair, primary_target
from alto.plots import seed_dots
from alto.plots import sensitivity as sensitivity_chart
from alto.presentation import fmt, views
from alto.presentation.report import build_report
from common import pick_experiment, store

s = store()
st.title("Compute savings (ROI)")
experiment = pick_experiment(s, key="roi_experiment")
if experiment is None:
    st.stop()
verdict_box = st.container()  # the verdict sentence opens the page; it needs the sidebar's choices

runs = s.list_runs(experiment_id=experiment["id"])
optimizers = sorted({r["optimizer"] for r in runs if r["status"] in ("finished", "diverged")})
target_metric, mode, thresholds = primary_target(experiment)
default_candidate, default_baseline = default_pair(optimizers)

with st.sidebar:
    st.header("Measurement")
    if len(optimizers) < 2:
        st.warning("This experiment needs finished runs of two optimizers.")
        st.stop()
    candidate = st.selectbox("Candidate", optimizers, index=optimizers.index(default_candidate))
    others = [o for o in optimizers if o != candidate]
    baseline = st.selectbox("Baseline", others,
                            index=others.index(default_baseline) if default_baseline in others else 0)
    threshold = st.number_input(f"Target: {target_metric} {'≤' if mode == 'min' else '≥'}",
                                value=thresholds[0] if thresholds else 0.9, format="%.4f")
    st.header("Your jobs")
    gpu = st.selectbox("GPU type", list(GPU_TYPES), help="Prices are typical on-demand list prices: edit them.")
    price = st.number_input("Price per GPU-hour ($)", min_value=0.0, value=GPU_TYPES[gpu]["price"], step=0.1,
                            key=f"price_{gpu}")
    gpus_per_job = st.number_input("GPUs per job", min_value=1, value=8)
    hours_per_job = st.number_input("Hours per job with the baseline", min_value=0.1, value=24.0)
    jobs_per_year = st.number_input("Jobs per year", min_value=1, value=50)
    with_energy = st.checkbox("Estimate energy and CO2e", value=True)
    kwh = st.number_input("kWh per GPU-hour", min_value=0.0, value=GPU_TYPES[gpu]["kwh"], key=f"kwh_{gpu}",
                          disabled=not with_energy)
    carbon = st.number_input("kg CO2e per kWh", min_value=0.0, value=DEFAULT_CARBON_KG_PER_KWH,
                             disabled=not with_energy)

try:
    measured = measure(s, experiment["id"], candidate=candidate, baseline=baseline, metric=target_metric,
                       threshold=float(threshold))
except ValueError as err:
    verdict_box.error(str(err))
    st.stop()
row = measured.row
costs = dict(gpu_hourly_price=price, gpus_per_job=int(gpus_per_job), baseline_hours_per_job=float(hours_per_job),
             jobs_per_year=int(jobs_per_year), energy_kwh_per_gpu_hour=kwh if with_energy else None,
             carbon_kg_per_kwh=carbon if with_energy else None)
measured_inputs = measured.roi_inputs(**costs)

with verdict_box:
    st.markdown(row.verdict.sentence)
    if measured_inputs is not None:
        result = roi(measured_inputs)
        # "Saves" only for a verdict of faster; everything else in neutral colours (README, Honesty rules)
        {"faster": st.success, "slower": st.warning}.get(row.verdict.word, st.info)(result.verdict)
    st.caption("Measured on this experiment's runs, on the training clock; the paper's claim is the separate, "
               "labelled column below, never mixed into the measured one.")

arms, per_success = views.seed_dot_arms(row)
st.plotly_chart(seed_dots(arms, title="Time to target per seed (× = missed, at the time it ran)",
                          x_label="training seconds", estimate_lines=per_success), key="roi_seeds")
if measured.fewer_steps is not None and measured.cost_per_step is not None:
    st.write(f"Split like the paper's Table 18: {row.result.estimate:.2f}× = **{measured.fewer_steps:.2f}× from "
             f"the number of steps** × **{measured.cost_per_step:.2f}× from the cost of a step** "
             "(above 1 favours the candidate).")
if row.difference is not None:
    st.write(f"Final {row.metric}, {candidate} − {baseline}: **{fmt.difference(row.difference, row.metric)}**.")

claim = PAPER_CLAIMS["time_saved"]
columns = {}
if measured_inputs is not None:
    columns["Measured (this experiment)"] = views.roi_rows(roi(measured_inputs), measured_inputs)
paper_inputs = paper_scenario(RoiInputs(speedup=1.0, speedup_low=1.0, speedup_high=1.0, evidence="claim", **costs))
columns["Paper's claim (NOT measured here)"] = views.roi_rows(roi(paper_inputs), paper_inputs)
st.dataframe(pd.DataFrame(columns), width="stretch")
st.caption(f"Paper's claim: {claim.claim}, measured at time to 60% test accuracy (not comparable with "
           f"{row.metric} ≥ {row.threshold:g} unless the experiment measures that). How it was obtained: "
           f"{claim.how_obtained} Caveats: {claim.caveats}")

bounds = () if measured_inputs is None else (measured_inputs.speedup, measured_inputs.speedup_low,
                                              measured_inputs.speedup_high)
grid = speedup_grid(*bounds, claim.speedup)
st.plotly_chart(sensitivity_chart(grid, sensitivity(measured_inputs or paper_inputs, grid),
                                  measured=bounds or None, paper=claim.speedup, y_label="$ saved per year"),
                key="sensitivity")

st.download_button("Download the stakeholder report (HTML)",
                   data=build_report(s, experiment["id"], candidate=candidate, baseline=baseline,
                                     metric=target_metric, threshold=float(threshold), costs=costs),
                   file_name=f"alto-report-experiment-{experiment['id']}.html", mime="text/html")
