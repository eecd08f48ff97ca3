"""What every page shares: the database, the supervisor, the session's role, and small display helpers.

Pages stay thin: widgets in, alto.* query/analysis functions called, figures out.
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import streamlit as st

from alto.access.roles import EDITOR, AccessDenied
from alto.access.throttle import Throttle
from alto.access.tokens import Tokens
from alto.paths import default_db
from alto.runner import Supervisor
from alto.store import Store, StoreError

# Material icons, for Markdown (st.write, st.info, labels): they need no emoji font. Plain-text places
# (table cells, select box options) show the status word alone.
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_arrow:",
                "finished": ":material/check_circle:", "failed": ":material/error:",
                "cancelled": ":material/stop_circle:", "diverged": ":material/trending_up:",
                "crashed": ":material/dangerous:", "stalled": ":material/hourglass_disabled:"}
ROLE = "alto_role"  # session key: the role this session's token earned (see gate.py)
READ_ONLY = "Read-only access: open the dashboard with the editor token to do this."
T = TypeVar("T")


def db_path() -> str:
    return default_db()


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


@st.cache_resource(show_spinner=False)
def _supervisor(path: str) -> Supervisor:
    supervisor = Supervisor(path)
    supervisor.start()  # False when another app or `alto worker` already supervises this database
    return supervisor


def store() -> Store:
    """The database, or a clear error page (never a traceback) when it cannot be used."""
    role()  # pages run behind the token page; one run on its own without a role gets no data either
    path = db_path()
    try:
        s = _store(path)
        s.list_experiments()  # a file that opens but whose pages are damaged fails here, not mid-page
        return s
    except (StoreError, sqlite3.DatabaseError) as err:
        damaged = isinstance(err, sqlite3.DatabaseError)
        st.error(f"**The database cannot be used.** {path}: "
                 + (f"the file is damaged ({err}); `sqlite3 {path} 'PRAGMA integrity_check'` says where."
                    if damaged else str(err)))
        st.info("Start the app with another database: `ALTO_DB=/path/to/new.db make app`, "
                "or move the file aside.")
        st.stop()


def supervisor() -> Supervisor:
    store()  # surfaces a bad database first
    sup = _supervisor(db_path())
    sup.start()  # no-op while its loop runs; restarts one that was stopped
    return sup


def tokens() -> Tokens:
    """The tokens this server accepts (`alto app` puts them in its environment); none: open to all."""
    return Tokens.from_environ(os.environ)


@st.cache_resource(show_spinner=False)
def throttle() -> Throttle:
    """One for the whole server: its limit on token checks is shared by every session."""
    return Throttle()


def role() -> str:
    """This session's role: the one its token earned; the editor's when the app needs no token
    (loopback, as before). A page reached without a role where one is needed shows nothing."""
    earned = st.session_state.get(ROLE)
    if earned is not None:
        return earned
    if not tokens().required:
        return EDITOR
    st.stop()


def can_edit() -> bool:
    return role() == EDITOR


def perform(action: Callable[..., T], *args, **kwargs) -> T:
    """Run an alto.access.actions function as this session's role. A refusal (a viewer's click that
    got past a disabled button) is shown instead of a traceback, and ends the script run there."""
    try:
        return action(role(), *args, **kwargs)
    except AccessDenied as err:
        st.error(str(err), icon=":material/lock:")
        st.stop()


def when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def experiment_label(e: dict) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(e["run_counts"].items()))
    return f"#{e['id']} {e['name']} ({counts or 'no runs'})"


def pick_experiment(s: Store, key: str = "experiment") -> dict | None:
    """A select box of experiments, newest first; remembers the choice across pages."""
    experiments = s.list_experiments()
    if not experiments:
        st.info("No experiments yet. Start one on **Launch**, or run the demo from **Home**.")
        return None
    ids = [e["id"] for e in experiments]
    default = st.session_state.get("experiment_id")
    index = ids.index(default) if default in ids else 0
    chosen = st.selectbox("Experiment", experiments, index=index, format_func=experiment_label, key=key)
    st.session_state["experiment_id"] = chosen["id"]
    return chosen


def app_dir() -> Path:
    return Path(__file__).resolve().parent
