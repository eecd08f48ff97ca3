"""Home: what ALTO is, recent experiments, and the one-click demo on an empty database."""
import os

import pandas as pd
import streamlit as st

from alto.access import actions
from alto.train.presets import expand, load_preset
from common import READ_ONLY, can_edit, experiment_label, perform, store, supervisor, when

DEMO_PRESET = os.environ.get("ALTO_DEMO_PRESET", "demo-digits")  # tests point this at a tiny preset
DEMO_SEEDS = int(os.environ.get("ALTO_DEMO_SEEDS", "3"))

s = store()
supervisor()

st.title("ALTO Lab")
st.markdown(
    "**ALTO** (NeurIPS 2025, *Exploring Landscapes for Better Minima along Valleys*) adds an "
    "exponential moving average of gradient *differences* back into the gradient, so that with "
    "α < 0 the optimizer keeps moving along low-loss valleys instead of stopping in the first "
    "sharp dip. ALTO is that adaptor fused into Lamb and aims at large-batch training. "
    "Here you measure whether it helps **your** runs: several seeds, uncertainty shown, and the "
    "paper's claims kept apart from what you measured."
)


def run_demo() -> None:
    preset = load_preset(DEMO_PRESET)
    configs = expand(preset, seeds=DEMO_SEEDS)
    experiment_id = perform(actions.queue_experiment, s, preset, configs, name="Demo comparison")
    st.session_state["experiment_id"] = experiment_id
    supervisor().tick()  # start the first run now rather than at the next poll


locked = {} if can_edit() else {"disabled": True, "help": READ_ONLY}
experiments = s.list_experiments()
if not experiments:
    st.subheader("Start here")
    st.write(f"The demo trains a small network on scikit-learn's digits with ALTO, Lamb, SGD and LION, "
             f"{DEMO_SEEDS} seeds each, on the CPU (about 8 seconds per seed on a quiet machine). You can watch it live.")
    if st.button("Run the demo comparison", type="primary", icon=":material/play_arrow:", **locked):
        run_demo()
        st.switch_page("sections/live.py")
else:
    st.subheader("Recent experiments")
    rows = [{"experiment": experiment_label(e), "preset": e["preset"] or "custom", "created": when(e["created_at"]),
             "runs": e["n_runs"]} for e in experiments[:10]]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    left, right = st.columns(2)
    if left.button("Watch live", icon=":material/monitoring:"):
        st.switch_page("sections/live.py")
    if right.button("Run the demo comparison again", icon=":material/play_arrow:", **locked):
        run_demo()
        st.switch_page("sections/live.py")

st.caption(f"Database: `{s.path}`")
