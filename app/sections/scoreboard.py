"""Scoreboard: every workload in the database, each optimizer's cost against the fastest, and the
performance profile from five workloads up."""
from __future__ import annotations

import streamlit as st

from alto.analysis.scoreboard import scoreboard
from alto.presentation import sweeps
from alto.presentation.views import AXIS_LABELS
from common import store

s = store()
st.title("Scoreboard across workloads")
experiments = s.list_experiments()
if not experiments:
    st.info("No experiments yet. Start one on **Launch**.")
    st.stop()
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Experiments", [e["id"] for e in experiments], default=[e["id"] for e in experiments],
                        format_func=lambda i: next(f"#{e['id']} {e['name']}" for e in experiments if e["id"] == i))
axis = c2.selectbox("Time in", ["wall_time", "step"], format_func=lambda a: AXIS_LABELS.get(a, a))
try:
    board = scoreboard(s, experiment_ids=chosen, axis=axis)
except ValueError as err:
    st.info(f"No scoreboard: {err}.")
    st.stop()

figure = sweeps.profile_figure(board)
if figure is not None:
    st.dataframe(sweeps.areas_table(board), hide_index=True)
    st.plotly_chart(figure, key="profile")
st.subheader("Each workload: cost relative to the fastest, with the verdict against it")
if board.workloads:
    st.dataframe(sweeps.scoreboard_table(board), hide_index=True)
for note in sweeps.scoreboard_notes(board):
    st.caption(note)
