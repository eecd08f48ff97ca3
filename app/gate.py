"""The token page: when the server needs a token, a session without a valid one sees this and nothing else."""
from __future__ import annotations

import time

import streamlit as st

from common import ROLE, throttle, tokens

FAILURES = "gate_failures"  # session keys: wrong tokens in a row, and what to say about the last try
VERDICT = "gate_verdict"


def require_token() -> None:
    """Return when this session may see the dashboard; otherwise show the token page and stop.

    A `?token=` in the address is taken and removed at once, right or wrong, so it stays neither in
    the address bar nor in the browser history. The session then remembers the role it earned, and
    this same script run goes on to the page that was asked for.
    """
    given = st.query_params.pop("token", None)
    if not tokens().required or st.session_state.get(ROLE) is not None:
        return
    if given is not None and _accepted(given):
        return
    with (page := st.empty()).container():
        st.title("ALTO Lab")
        st.write("This dashboard needs an access token. Open the link that `alto app` printed, "
                 "or paste the token you were given.")
        with st.form("token"):
            typed = st.text_input("Access token", type="password")
            submitted = st.form_submit_button("Open", type="primary")
        accepted = submitted and bool(typed) and _accepted(typed)
        if not accepted and (verdict := st.session_state.get(VERDICT)):
            st.error(verdict, icon=":material/lock:")
    if accepted:
        page.empty()
        return
    st.stop()


def _accepted(given: str) -> bool:
    """Check a token after the waits alto.access.throttle sets; a valid one gives the session its role."""
    failures = st.session_state.get(FAILURES, 0)
    wait = throttle().wait_before_check(failures)
    if wait is None:
        st.session_state[VERDICT] = "Too many token attempts on this server right now: try again in a minute."
        return False
    time.sleep(wait)  # this session's thread only: the server keeps serving everyone else
    role = tokens().role_of(given)
    if role is None:
        st.session_state[FAILURES] = failures + 1
        st.session_state[VERDICT] = (f"Wrong token ({failures + 1} in a row). The next try is answered after "
                                     f"{throttle().session_wait(failures + 1):g} s.")
        return False
    for key in (FAILURES, VERDICT):
        st.session_state.pop(key, None)
    st.session_state[ROLE] = role
    return True
