"""ROI: turn a MEASURED speed-up (with its CI) into compute savings; the paper's claim sits beside it."""
import pandas as pd
import streamlit as st

from alto.analysis.claims import PAPER_CLAIMS, paper_scenario
from alto.analysis.experiment import experiment_targets
from alto.analysis.measured import measure
from alto.analysis.savings import DEFAULT_CARBON_KG_PER_KWH, GPU_TYPES, RoiInputs, roi, sensitivity, speedup_grid
from alto.plots import sensitivity as sensitivity_chart
from alto.presentation import fmt
from alto.presentation.report import build_report
from alto.presentation.views import default_threshold, roi_rows
from alto.stats.metrics import metric_mode
from common import pick_experiment, store

s = store()
st.title("Compute savings (ROI)")
st.caption("Fed by what your runs measured, with its uncertainty. The paper's claims are shown beside it, "
           "labelled as claims, never mixed into the measured column.")
experiment = pick_experiment(s, key="roi_experiment")
if experiment is None:
    st.stop()

runs = s.list_runs(experiment_id=experiment["id"])
optimizers = sorted({r["optimizer"] for r in runs})
targets = experiment_targets(experiment)
keys = sorted({k for r in runs[:1] for k in s.metric_keys(r["id"])} & {"val/acc", "test/acc", "val/ppl", "val/loss"})

with st.sidebar:
    st.header("Measurement")
    candidate = st.selectbox("Candidate", optimizers, index=optimizers.index("alto") if "alto" in optimizers else 0)
    others = [o for o in optimizers if o != candidate] or optimizers
    baseline = st.selectbox("Baseline", others, index=others.index("lamb") if "lamb" in others else 0)
    metric = st.selectbox("Target metric", keys or ["val/acc"],
                          index=(keys.index(targets["metric"]) if targets.get("metric") in keys else 0))
    mode = metric_mode(metric, targets)
    suggested = default_threshold(metric, targets)
    threshold = st.number_input(f"Threshold ({'reach at most' if mode == 'min' else 'reach at least'})",
                                value=0.9 if suggested is None else suggested, format="%.4f")
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
    measured = measure(s, experiment["id"], candidate=candidate, baseline=baseline, metric=metric, mode=mode,
                       threshold=float(threshold))
except ValueError as err:
    st.error(str(err))
    st.stop()

sp = measured.speedup
st.subheader(f"Measured: {candidate} vs {baseline}, time to {metric} {'≤' if mode == 'min' else '≥'} {threshold:g}")
st.write(f"Seeds: {measured.n_candidate} {candidate} (lr {measured.lrs[candidate]:g}) vs {measured.n_baseline} "
         f"{baseline} (lr {measured.lrs[baseline]:g}); each optimizer at its best LR on the validation split.")
if not measured.usable:
    st.warning(f"No measured speed-up: {sp.why_no_ci or sp.note}. Lower the threshold or run longer. "
               "Only the paper's claim can be shown below, and it is not a measurement.")
else:
    st.metric("Wall-clock speed-up (baseline time / candidate time)", fmt.speedup_result(sp))
    split = measured.split
    if split.total is not None:
        st.write(f"Split like the paper's Table 18: {split.total:.2f}× = **{split.fewer_steps:.2f}× from the number "
                 f"of steps** × **{split.cost_per_step:.2f}× from the cost of a step** ({candidate} "
                 f"{split.candidate_s_per_step * 1e3:.1f} ms vs {baseline} {split.baseline_s_per_step * 1e3:.1f} ms "
                 "per step, evaluations included). Above 1 favours the candidate.")
if measured.difference is not None:
    unit = "points" if metric.endswith("acc") else metric.split("/")[-1]
    scale = 100.0 if metric.endswith("acc") else 1.0
    d = measured.difference
    ci = f" (95% CI {d.ci[0] * scale:+.2f} to {d.ci[1] * scale:+.2f})" if d.ci else f" ({d.why_no_ci})"
    st.write(f"Final {metric}, {candidate} − {baseline}: **{d.estimate * scale:+.2f} {unit}**{ci}. "
             f"The paper claims +2.5 points over Lamb at large batch ({PAPER_CLAIMS['accuracy_gain'].how_obtained})")

costs = dict(gpu_hourly_price=price, gpus_per_job=int(gpus_per_job), baseline_hours_per_job=float(hours_per_job),
             jobs_per_year=int(jobs_per_year), energy_kwh_per_gpu_hour=kwh if with_energy else None,
             carbon_kg_per_kwh=carbon if with_energy else None)
claim = PAPER_CLAIMS["time_saved"]
columns = {}
measured_inputs = None
if measured.usable:
    s_est, s_lo, s_hi = measured.speedup_bounds()
    measured_inputs = RoiInputs(speedup=s_est, speedup_low=s_lo, speedup_high=s_hi, **costs)
    measured_result = roi(measured_inputs)
    columns["Measured (this experiment)"] = roi_rows(measured_result, measured_inputs)
    verdict = measured_result.verdict
    (st.success if s_lo > 1 else st.error if s_hi < 1 else st.warning)(verdict)
paper_inputs = paper_scenario(RoiInputs(speedup=1.0, speedup_low=1.0, speedup_high=1.0, **costs))
columns["Paper's claim (NOT measured here)"] = roi_rows(roi(paper_inputs), paper_inputs)
st.dataframe(pd.DataFrame(columns), width="stretch")
st.caption(f"Paper's claim: {claim.claim}. How it was obtained: {claim.how_obtained} Caveats: {claim.caveats}")

grid = speedup_grid(*(measured.speedup_bounds() or ()), claim.speedup)
base_inputs = measured_inputs or paper_inputs
st.plotly_chart(sensitivity_chart(grid, sensitivity(base_inputs, grid),
                                  measured=measured.speedup_bounds() if measured.usable else None,
                                  paper=claim.speedup, y_label="$ saved per year"), key="sensitivity")

st.download_button("Download the stakeholder report (HTML)",
                   data=build_report(s, experiment["id"], candidate=candidate, baseline=baseline, metric=metric,
                                     mode=mode, threshold=float(threshold), costs=costs),
                   file_name=f"alto-report-experiment-{experiment['id']}.html", mime="text/html")
