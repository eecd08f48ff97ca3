"""Launch: pick a preset or build a comparison, see what will run, queue it."""
import streamlit as st

from alto.access import actions
from alto.analysis.planning import plan_for_preset
from alto.data import dataset_names
from alto.models import model_names
from alto.optim import OPTIMIZERS, optimizer_names
from alto.presentation.fmt import duration
from alto.runner.launch import (custom_preset, estimate_duration, estimate_steps, field_for_error, parse_lr_list,
                                plan_runs, plan_summary, run_history, tuning_warning)
from alto.train.config import DEVICES, LR_SCALINGS, PRECISIONS, SCHEDULES
from alto.train.device import resolve_device
from alto.train.presets import held_note, load_preset, preset_names
from common import READ_ONLY, can_edit, perform, store, supervisor

s = store()
st.title("Launch a comparison")
errors: dict[str, st.delta_generator.DeltaGenerator] = {}  # field -> the slot under its widget


def slot(field: str) -> None:
    errors[field] = st.empty()


mode = st.radio("Start from", ["A preset", "Build a comparison"], horizontal=True)
overrides: dict = {}
if mode == "A preset":
    name = st.selectbox("Preset", preset_names(), index=preset_names().index("demo-digits"))
    preset = load_preset(name)
    st.markdown(f"**{preset.title}**")
    st.caption(f"Source: {preset.source}")
    st.write(preset.description)
    with st.expander("Run settings of this preset"):
        st.json(preset.run)
        if preset.sweep:
            st.write("Sweep:", preset.sweep)
    if held_note(preset):
        st.caption(f"Batch-dependent defaults: {held_note(preset)}.")
    default_optimizers = preset.optimizers
    default_seeds = preset.seeds
    c1, c2, c3 = st.columns(3)
    with c1:
        epochs = st.number_input("Epochs (0 = preset's)", min_value=0.0, value=0.0, step=1.0)
        slot("epochs")
    with c2:
        max_steps = st.number_input("Max steps (0 = no cap)", min_value=0, value=0, step=10)
        slot("max_steps")
    with c3:
        batch_size = st.number_input("Batch size (0 = preset's)", min_value=0, value=0, step=128)
        slot("batch_size")
    overrides.update({k: v for k, v in (("epochs", float(epochs)), ("max_steps", int(max_steps)),
                                        ("batch_size", int(batch_size))) if v})
else:
    c1, c2, c3 = st.columns(3)
    with c1:
        dataset = st.selectbox("Dataset", dataset_names(), index=dataset_names().index("digits"))
        slot("dataset")
        model = st.selectbox("Model", model_names(), index=model_names().index("mlp"))
        slot("model")
    with c2:
        batch_size = st.number_input("Batch size (0 = full batch)", min_value=0, value=0, step=128)
        slot("batch_size")
        accumulation = st.number_input("Gradient accumulation (micro-batches per step)", min_value=1, value=1)
        slot("accumulation")
    with c3:
        epochs = st.number_input("Epochs", min_value=0.0, value=50.0, step=1.0)
        slot("epochs")
        max_steps = st.number_input("Max steps (0 = no cap)", min_value=0, value=0, step=10)
        slot("max_steps")
    c4, c5, c6 = st.columns(3)
    with c4:
        schedule = st.selectbox("LR schedule", SCHEDULES, help="step = x0.1 at each quarter (the paper's CIFAR protocol)")
        slot("schedule")
    with c5:
        warmup = st.number_input("Warmup steps", min_value=0, value=0)
        slot("warmup_steps")
    with c6:
        scaling = st.selectbox("LR scaling with batch size", LR_SCALINGS,
                               help="linear = Goyal et al. 2017 (breaks down past ~8K), relative to batch 256")
        slot("lr_scaling")
    run = {"dataset": dataset, "model": model, "batch_size": int(batch_size) or None,
           "accumulation": int(accumulation), "epochs": float(epochs), "max_steps": int(max_steps) or None,
           "schedule": schedule, "warmup_steps": int(warmup), "lr_scaling": scaling}
    default_optimizers, default_seeds = ["alto", "lamb", "sgd", "lion"], 3
    preset = None

st.subheader("Optimizers, seeds, device")
chosen = st.multiselect("Optimizers", optimizer_names(), default=default_optimizers,
                        format_func=lambda n: f"{OPTIMIZERS[n].label} — {OPTIMIZERS[n].summary}")
slot("optimizers")
lr_texts, settings = {}, {}
for name in chosen:
    with st.expander(f"{OPTIMIZERS[name].label}: learning rate and hyper-parameters"):
        base = (preset.optimizer.get(name, {}) if preset else {})
        if preset is None:
            lr = st.number_input(f"{name} lr", min_value=0.0, value=float(OPTIMIZERS[name].defaults(None)["lr"]),
                                 format="%.5f", key=f"lr_{name}")
            settings[name] = {"lr": lr}
            if name in ("alto", "e_sgd", "e_adam", "e_adamw"):
                alpha = st.number_input("alpha (α < 0 explores, > 0 exploits; 0 = paper default for the batch)",
                                        value=0.0, key=f"alpha_{name}")
                if alpha:
                    settings[name]["alpha"] = alpha
        else:
            st.write(f"Preset settings: {base or 'defaults'}")
        lr_texts[name] = st.text_input(f"LR grid for {name} (comma-separated; one run per LR)", key=f"grid_{name}",
                                       help="The Compare page can then pick each optimizer's best LR on the "
                                            "validation split.")
        slot(f"lr_grid for {name}")

c7, c8, c9, c10 = st.columns(4)
with c7:
    seeds = st.number_input("Seeds", min_value=1, max_value=100, value=int(default_seeds))
    slot("seeds")
with c8:
    device = st.selectbox("Device", DEVICES)
    slot("device")
with c9:
    precision = st.selectbox("Precision", PRECISIONS, help="bf16 autocast applies on CUDA only")
    slot("precision")
with c10:
    processes = st.number_input("Processes per run (torchrun)", min_value=1, value=1,
                                help="Data-parallel ranks on this machine. The batch size stays the effective "
                                     "batch: per-rank micro-batch x ranks x accumulation.")
    slot("nproc_per_node")
overrides.update(device=device, precision=precision, nproc_per_node=int(processes))

configs, problem = [], None
try:
    grid = {name: parse_lr_list(text, name) for name, text in lr_texts.items()}
    if preset is None:
        preset = custom_preset(run, settings)
    configs = plan_runs(preset, optimizers=chosen, seeds=int(seeds), lr_grid=grid, overrides=overrides)
except ValueError as err:
    problem = str(err)
    field = field_for_error(problem, list(errors))
    (errors[field] if field else st).error(problem)

if configs:
    steps = [estimate_steps(c) for c in configs]
    known = [x for x in steps if x]
    plan = plan_for_preset(s, preset.name if mode == "A preset" else None)
    st.info(plan.sentence(int(seeds)), icon=":material/calculate:")  # beside the run count, before queuing
    if (unfair := tuning_warning(configs)) is not None:
        st.warning(unfair, icon=":material/balance:")
    per_run = ("" if not known else f", about {max(known):,} optimizer steps each" if min(known) == max(known)
               else f", {min(known):,} to {max(known):,} optimizer steps each")
    estimate = estimate_duration(configs, run_history(s), auto_device=str(resolve_device("auto")))
    took = (f"About **{duration(estimate.seconds)}** one after the other ({estimate.basis})."
            if estimate.seconds is not None else f"No duration estimate: {estimate.basis}.")
    st.success(f"**{len(configs)} runs** ({plan_summary(configs, preset.sweep)}){per_run}. {took} "
               f"Runs execute one at a time per device slot.")
    if st.button("Queue the comparison", type="primary", icon=":material/rocket_launch:", disabled=not can_edit(),
                 help=None if can_edit() else READ_ONLY):
        experiment_id = perform(actions.queue_experiment, s, preset, configs)
        st.session_state["experiment_id"] = experiment_id
        supervisor().tick()
        st.switch_page("sections/live.py")
