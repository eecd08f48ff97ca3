"""ROI: turn the MEASURED factors (steps to target from the lab, cost per step from the fleet's own
hardware) into compute savings; the paper's claim sits beside them."""
import pandas as pd
import streamlit as st

from alto.analysis.claims import PAPER_CLAIMS, paper_scenario
from alto.analysis.factors import TYPED, cost_options, fleet_speedup, steps_factor, typed_cost
from alto.analysis.measured import measure
from alto.analysis.memory import memory_fit
from alto.analysis.savings import DEFAULT_CARBON_KG_PER_KWH, GPU_TYPES, RoiInputs, roi, sensitivity, speedup_grid
from alto.analysis.verdicts import default_pair, primary_target
from alto.plots import seed_dots
from alto.plots import sensitivity as sensitivity_chart
from alto.presentation import fmt, views
from alto.presentation.report import build_report
from alto.access import actions
from common import READ_ONLY, can_edit, perform, pick_experiment, store, supervisor

FLEET_KIND = "cuda"  # every fleet the page prices is a GPU fleet

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
    st.header("Your fleet")
    gpu = st.selectbox("Your fleet's GPU", list(GPU_TYPES),
                       help="The fleet the savings are for. Prices are typical on-demand list prices: edit them.")
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

    st.header("Cost per step on your fleet")
    options = {c.key: c for c in cost_options(s, experiment["id"], candidate, baseline, fleet_kind=FLEET_KIND)}
    keys = [k for k, c in options.items() if c.device_kind == FLEET_KIND] + [TYPED]
    keys += [k for k in options if k not in keys]
    source = st.selectbox("Measured on", keys, index=0, format_func=lambda k: views.cost_choice(options.get(k)),
                          help="A cost per step belongs to the hardware and model shapes it was measured on: "
                               "`alto bench optim --shapes MODEL --device cuda --save` on a fleet machine, or "
                               "timed runs of your own job. Measurements from another kind of device are refused.")
    typed = st.number_input("Cost-per-step ratio, typed in (baseline / candidate)", min_value=0.01, value=1.0,
                            step=0.05, format="%.2f", disabled=source != TYPED)
    rest_ms = st.number_input("Forward + backward ms per step of your model (benchmarks only; 0: the optimizer "
                              "step alone)", min_value=0.0, value=0.0, step=10.0,
                              disabled=not source.startswith("bench:"))

    st.header("Memory")
    check_memory = st.checkbox("Check that the model still fits per GPU")
    params_m = st.number_input("Model parameters (millions)", min_value=0.001, value=355.0,
                               disabled=not check_memory)
    used_gib = st.number_input("GiB per GPU with the baseline", min_value=0.1,
                               value=min(60.0, float(GPU_TYPES[gpu]["mem_gib"])), disabled=not check_memory)
    sharded = st.checkbox("Optimizer state sharded over the GPUs (ZeRO-1 / FSDP)", disabled=not check_memory)

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
if source == TYPED:
    cost = typed_cost(float(typed))
elif source.startswith("bench:") and rest_ms:
    cost = {c.key: c for c in cost_options(s, experiment["id"], candidate, baseline, rest_ms=float(rest_ms))}[source]
else:
    cost = options[source]

memory = None
if check_memory:
    try:
        memory = memory_fit(n_params=params_m * 1e6, baseline_gib_per_gpu=used_gib,
                            gpu_gib=GPU_TYPES[gpu]["mem_gib"], candidate_bytes_per_param=row.state_bytes(candidate),
                            baseline_bytes_per_param=row.state_bytes(baseline), gpus_per_job=int(gpus_per_job),
                            sharded=sharded)
    except (ValueError, TypeError) as err:
        st.sidebar.error(f"Memory check: {err}")

steps = steps_factor(s, measured)
fleet, refused = None, None
if steps is not None and (memory is None or memory.factor is not None):
    try:
        fleet = fleet_speedup(steps, cost, fleet_kind=FLEET_KIND, fleet_name=gpu,
                              gpus=1.0 if memory is None else memory.factor)
    except ValueError as err:
        refused = str(err)
fleet_inputs = fleet.roi_inputs(**costs) if fleet is not None else None

with verdict_box:
    st.markdown(row.verdict.sentence)
    if fleet is not None:
        st.markdown(fleet.sentence())
        result = roi(fleet_inputs)
        # "Saves" only for a verdict of faster; everything else in neutral colours (README, Honesty rules)
        {"faster": st.success, "slower": st.warning}.get(fleet.word, st.info)(views.roi_headline(result, fleet))
        for warning in fleet.warnings:
            st.caption(f"Note: {warning}.")
    elif refused:
        st.error(f"Not computed for your fleet: {refused}")
    elif memory is not None and memory.factor is None:
        st.error(memory.sentence())
    st.caption("The lab's steps to target times the cost per step on your fleet; the paper's claim is the "
               "separate, labelled column below, never mixed into the measured one.")

st.subheader("The factors and where each was measured")
if steps is None:
    st.info("No steps-to-target factor: the target was not reached by both optimizers.")
else:
    st.table(views.factor_table(steps, cost, fleet, memory).set_index("factor"))  # a static table: long cells wrap

st.subheader("Confirm at budget")
if steps is not None:
    st.markdown(f"**{steps.budget_label()[0].upper() + steps.budget_label()[1:]}.**")
    st.caption(f"Reaching the target at step T/s inside a T-step schedule is not the same as a job given T/s "
               f"steps: the schedule decays sooner. This re-runs {candidate} on fresh seeds with its run shortened "
               f"to {baseline}'s steps / {steps.measured:.2f}x and checks it still reaches {steps.target}.")
    budget_seeds = st.number_input("Fresh seeds at budget", 1, 20, 3)
    if st.button(f"Confirm at budget on {budget_seeds} fresh seeds", icon=":material/timer:",
                 disabled=not can_edit(), help=None if can_edit() else READ_ONLY):
        try:
            plan, ids = perform(actions.queue_budget_confirmation, s, experiment["id"], int(budget_seeds),
                                candidate=candidate, baseline=baseline, metric=target_metric,
                                threshold=float(threshold))
        except ValueError as err:
            st.error(str(err))
        else:
            supervisor().tick()
            st.success(f"Queued {len(ids)} runs of {plan.candidate} at {plan.budget_steps:,} steps; watch them on "
                       "Live, then come back here.")

arms, per_success = views.seed_dot_arms(row)
st.plotly_chart(seed_dots(arms, title="Time to target per seed (× = missed, at the time it ran)",
                          x_label="training seconds", estimate_lines=per_success), key="roi_seeds")
if measured.fewer_steps is not None and measured.cost_per_step is not None:
    st.write(f"On the lab's own clock, split like the paper's Table 18: {row.result.estimate:.2f}× = "
             f"**{measured.fewer_steps:.2f}× from the number of steps** × **{measured.cost_per_step:.2f}× from the "
             "cost of a step** (above 1 favours the candidate).")
if row.difference is not None:
    st.write(f"Final {row.metric}, {candidate} − {baseline}: **{fmt.difference(row.difference, row.metric)}**.")
st.dataframe(views.memory_table(row), hide_index=True)
st.caption("Optimizer state measured on the optimizers' own state tensors after a step. Peak memory: CUDA max "
           "allocated on a GPU; on a CPU the resident size of the whole training process."
           + (f" {memory.sentence()}" if memory is not None else ""))

claim = PAPER_CLAIMS["time_saved"]
columns = {}
if fleet_inputs is not None:
    columns[views.FLEET_COLUMN] = views.roi_rows(roi(fleet_inputs), fleet_inputs, fleet)
paper_inputs = paper_scenario(RoiInputs(speedup=1.0, speedup_low=1.0, speedup_high=1.0, evidence="claim", **costs))
columns["Paper's claim (NOT measured here)"] = views.roi_rows(roi(paper_inputs), paper_inputs)
st.dataframe(pd.DataFrame(columns), width="stretch")
st.caption(f"Paper's claim: {claim.claim}, measured at time to 60% test accuracy (not comparable with "
           f"{row.metric} ≥ {row.threshold:g} unless the experiment measures that). How it was obtained: "
           f"{claim.how_obtained} Caveats: {claim.caveats}")

bounds = () if fleet_inputs is None else (fleet_inputs.speedup, fleet_inputs.speedup_low, fleet_inputs.speedup_high)
grid = speedup_grid(*bounds, claim.speedup)
st.plotly_chart(sensitivity_chart(grid, sensitivity(fleet_inputs or paper_inputs, grid),
                                  measured=bounds or None, paper=claim.speedup, y_label="$ saved per year"),
                key="sensitivity")

st.download_button("Download the stakeholder report (HTML)",
                   data=lambda: build_report(s, experiment["id"], costs=costs, cost=cost, fleet_gpu=gpu,
                                             measured=measured, steps=steps, memory=memory),
                   file_name=f"alto-report-experiment-{experiment['id']}.html", mime="text/html")
