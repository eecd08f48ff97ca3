"""Access control without a browser: token comparison, what `alto app` starts with, the throttle on
wrong tokens, every dashboard action refused to a viewer (called directly, and clicked in a page
past its disabled button), and no page reaching around the guarded actions.

The browser side (the token page, a viewer's and an editor's session) is in test_browser_access.py.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from alto.access import actions
from alto.access.roles import EDITOR, VIEWER, AccessDenied, require_editor
from alto.access.throttle import Throttle
from alto.access.tokens import EDITOR_ENV, VIEWER_ENV, Tokens, app_tokens, is_loopback, same_token, token_urls
from alto.paths import checkpoint_dir
from alto.runner import JOB, Supervisor
from alto.store import Store
from alto.train.presets import expand, parse_preset
from conftest import ROOT, TINY_RUN

EDITOR_TOKEN = "editor-secret-0123456789"
VIEWER_TOKEN = "viewer-secret-9876543210"


# -- tokens ---------------------------------------------------------------------------------------

def test_tokens_grant_their_role_and_nothing_else():
    tokens = Tokens(editor=EDITOR_TOKEN, viewer=VIEWER_TOKEN)
    assert tokens.required
    assert tokens.role_of(EDITOR_TOKEN) == EDITOR and tokens.role_of(VIEWER_TOKEN) == VIEWER
    for wrong in ("", "editor", EDITOR_TOKEN[:-1], EDITOR_TOKEN + "x", EDITOR_TOKEN.upper(), " " + VIEWER_TOKEN,
                  "\udcff", "ü" * 40):
        assert tokens.role_of(wrong) is None, wrong
    assert Tokens(editor=EDITOR_TOKEN).role_of(VIEWER_TOKEN) is None
    assert same_token("abc", "abc") and not same_token("abc", "abd") and not same_token("abc", "abcd")


def test_tokens_never_show_in_a_repr_and_travel_in_the_environment():
    tokens = Tokens(editor=EDITOR_TOKEN, viewer=VIEWER_TOKEN)
    assert EDITOR_TOKEN not in repr(tokens) and VIEWER_TOKEN not in repr(tokens)
    assert repr(tokens) == "Tokens(editor=set, viewer=set)"
    assert tokens.environ() == {EDITOR_ENV: EDITOR_TOKEN, VIEWER_ENV: VIEWER_TOKEN}
    assert Tokens.from_environ(tokens.environ()) == tokens
    assert Tokens.from_environ({EDITOR_ENV: "", VIEWER_ENV: ""}) == Tokens()  # empty means unset
    assert not Tokens().required and Tokens().environ() == {} and Tokens().role_of("") is None
    with pytest.raises(ValueError, match="viewer token must differ"):
        Tokens(editor=EDITOR_TOKEN, viewer=EDITOR_TOKEN)


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.4", "10.0.0.1", "gpu-server", "example.org"):
        assert not is_loopback(host), host
    assert token_urls("10.0.0.5", 8501, "t") == ["http://10.0.0.5:8501/?token=t"]
    assert token_urls("::1", 80, "t") == ["http://[::1]:80/?token=t"]
    assert token_urls("0.0.0.0", 8501, "t")[-1] == "http://127.0.0.1:8501/?token=t"


# -- what `alto app` starts with ------------------------------------------------------------------

def test_loopback_without_a_token_stays_open_as_before():
    tokens, lines = app_tokens("127.0.0.1", 8501, editor=None, viewer=None, no_auth=False)
    assert tokens == Tokens() and not tokens.required and lines == []


def test_a_public_address_without_a_token_gets_a_new_editor_token_printed_in_its_url():
    tokens, lines = app_tokens("0.0.0.0", 8501, editor=None, viewer=None, no_auth=False)
    assert tokens.viewer is None and re.fullmatch(r"[A-Za-z0-9_-]{43}", tokens.editor)
    assert f"    http://127.0.0.1:8501/?token={tokens.editor}" in lines
    again, _ = app_tokens("0.0.0.0", 8501, editor=None, viewer=None, no_auth=False)
    assert again.editor != tokens.editor  # random per start
    tokens, lines = app_tokens("10.1.2.3", 9000, editor="", viewer=None, no_auth=False, generate=lambda: "tok")
    assert tokens == Tokens(editor="tok") and "    http://10.1.2.3:9000/?token=tok" in lines


def test_tokens_the_user_set_are_used_and_never_printed():
    tokens, lines = app_tokens("0.0.0.0", 8501, editor=EDITOR_TOKEN, viewer=VIEWER_TOKEN, no_auth=False)
    assert tokens == Tokens(editor=EDITOR_TOKEN, viewer=VIEWER_TOKEN)
    text = "\n".join(lines)
    assert EDITOR_TOKEN not in text and VIEWER_TOKEN not in text and EDITOR_ENV in text and VIEWER_ENV in text
    # a viewer token alone, even on loopback: the editor needs a way in too, so one is generated
    tokens, lines = app_tokens("127.0.0.1", 8501, editor=None, viewer=VIEWER_TOKEN, no_auth=False,
                               generate=lambda: "fresh")
    assert tokens == Tokens(editor="fresh", viewer=VIEWER_TOKEN)
    assert "    http://127.0.0.1:8501/?token=fresh" in lines and VIEWER_TOKEN not in "\n".join(lines)


def test_no_auth_is_open_with_a_warning_and_refuses_tokens():
    tokens, lines = app_tokens("0.0.0.0", 8501, editor=None, viewer=None, no_auth=True)
    assert tokens == Tokens() and len(lines) == 1 and lines[0].startswith("WARNING: --no-auth")
    with pytest.raises(ValueError, match="--no-auth cannot be combined"):
        app_tokens("0.0.0.0", 8501, editor=EDITOR_TOKEN, viewer=None, no_auth=True)


def _app_output(tmp_path, *args: str, env: dict | None = None, until: str) -> str:
    """What `alto app ...` prints up to the first line containing `until`; the server is then stopped
    (those lines are printed before it becomes the Streamlit process)."""
    out = tmp_path / "app.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "alto.cli", "app", "--db", str(tmp_path / "a.db"), *args],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    try:
        deadline = time.monotonic() + 60
        while until not in out.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        return out.read_text()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def test_alto_app_on_a_public_address_prints_the_token_url(tmp_path):
    env = {EDITOR_ENV: "", VIEWER_ENV: VIEWER_TOKEN}
    text = _app_output(tmp_path, "--host", "0.0.0.0", "--port", "18771", env=env, until="127.0.0.1:18771/?token=")
    token = re.search(r"http://127\.0\.0\.1:18771/\?token=([A-Za-z0-9_-]+)", text).group(1)
    assert len(token) == 43 and VIEWER_TOKEN not in text
    assert "Read-only link" in text


def test_alto_app_no_auth_warns_and_refuses_a_token(tmp_path):
    text = _app_output(tmp_path, "--host", "0.0.0.0", "--port", "18772", "--no-auth", until="WARNING")
    assert "WARNING: --no-auth" in text and "token=" not in text
    refused = subprocess.run([sys.executable, "-m", "alto.cli", "app", "--db", str(tmp_path / "a.db"),
                              "--no-auth", "--token", EDITOR_TOKEN], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--no-auth cannot be combined" in refused.stderr
    assert EDITOR_TOKEN not in refused.stderr + refused.stdout


# -- the throttle ---------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_wrong_token_in_a_row_doubles_the_wait_up_to_a_cap():
    throttle = Throttle(first_wait_s=1.0, max_wait_s=30.0)
    assert [throttle.session_wait(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert throttle.session_wait(10_000) == 30
    with pytest.raises(ValueError, match="failures"):
        throttle.session_wait(-1)
    with pytest.raises(ValueError, match="burst"):
        Throttle(burst=0)


def test_the_server_checks_a_burst_then_one_token_per_interval_and_refuses_beyond_the_cap():
    clock = FakeClock()
    throttle = Throttle(burst=3, interval_s=2.0, max_wait_s=5.0, clock=clock)
    assert [throttle.server_turn() for _ in range(3)] == [0, 0, 0]  # new sessions each, at once
    assert [throttle.server_turn() for _ in range(2)] == [2.0, 4.0]
    assert throttle.server_turn() is None  # 6 s away: refused, and nothing reserved
    clock.now += 2.0
    assert throttle.server_turn() == 4.0
    clock.now += 60.0  # quiet for a while: the burst is back
    assert [throttle.server_turn() for _ in range(3)] == [0, 0, 0]


def test_a_check_waits_for_the_longer_of_both_limits():
    clock = FakeClock()
    throttle = Throttle(first_wait_s=1.0, burst=1, interval_s=3.0, max_wait_s=30.0, clock=clock)
    assert throttle.wait_before_check(0) == 0
    assert throttle.wait_before_check(0) == 3.0   # the server's turn
    assert throttle.wait_before_check(4) == 8.0   # the session's own wait is longer
    clock.now += 1000
    throttle = Throttle(burst=1, interval_s=20.0, max_wait_s=30.0, clock=clock)
    assert throttle.wait_before_check(0) == 0 and throttle.wait_before_check(0) == 20.0
    assert throttle.wait_before_check(0) is None


# -- the actions ----------------------------------------------------------------------------------

def _preset():
    return parse_preset({"name": "tiny", "optimizers": ["sgd"], "seeds": 1, "run": TINY_RUN})


@pytest.fixture
def copy_db(filled_db, tmp_path):
    path = tmp_path / "filled.db"
    shutil.copy(filled_db, path)
    return path


def _actions(store: Store, sup: Supervisor, experiment_id: int, run_id: int, job_id: int) -> dict:
    """Every guarded action, as (name -> call(role))."""
    return {
        "queue_experiment": lambda role: actions.queue_experiment(role, store, _preset(), expand(_preset())),
        "queue_confirmation": lambda role: actions.queue_confirmation(role, store, experiment_id, {"sgd": 0.1}, 1),
        "queue_flatness_job": lambda role: actions.queue_flatness_job(role, store, experiment_id),
        "queue_budget_confirmation": lambda role: actions.queue_budget_confirmation(
            role, store, experiment_id, 1, candidate="alto", baseline="lamb", threshold=0.5),
        "cancel run": lambda role: actions.cancel(role, sup, run_id),
        "cancel job": lambda role: actions.cancel(role, sup, job_id, JOB),
        "annotate_run": lambda role: actions.annotate_run(role, store, run_id, add_tags=["x"], remove_tags=["tiny"],
                                                          notes="changed"),
        "delete_run": lambda role: actions.delete_run(role, store, run_id),
        "delete_experiment": lambda role: actions.delete_experiment(role, store, experiment_id),
    }


def _files_of(store: Store, run_id: int) -> list:
    """Give a run a checkpoint folder and a log file, as a run that trained has."""
    weights = checkpoint_dir(store.path, run_id)
    weights.mkdir(parents=True)
    (weights / "final.pt").write_bytes(b"weights")
    log = store.path.parent / f"run_{run_id}.log"
    log.write_text("trained\n")
    store.update_run(run_id, log_path=str(log))
    return [weights, log]


def _snapshot(store: Store) -> tuple:
    return (store.list_experiments(), store.list_runs(), store.list_jobs())


def test_a_viewer_is_refused_every_action_and_nothing_changes(copy_db):
    store = Store(copy_db)
    experiment_id = store.list_experiments()[0]["id"]
    run = store.list_runs(experiment_id=experiment_id)[0]
    job_id = store.add_job("flatness", experiment_id=experiment_id, payload={})
    queued = actions.queue_experiment(EDITOR, store, _preset(), expand(_preset()))
    queued_run = store.list_runs(experiment_id=queued)[0]["id"]
    files = _files_of(store, run["id"])
    sup = Supervisor(copy_db)  # not started: cancelling a queued row needs no loop
    before = _snapshot(store)
    calls = _actions(store, sup, experiment_id, queued_run, job_id)
    calls["delete_run"] = lambda role: actions.delete_run(role, store, run["id"])
    for name, call in calls.items():
        with pytest.raises(AccessDenied, match="Read-only access: a viewer cannot") as refused:
            call(VIEWER)
        assert isinstance(refused.value, PermissionError), name
        assert _snapshot(store) == before, f"{name} changed the database for a viewer"
    assert all(f.exists() for f in files)
    with pytest.raises(ValueError, match="role must be one of"):
        actions.delete_run("admin", store, run["id"])
    with pytest.raises(ValueError, match="role must be one of"):
        require_editor(None, "anything")


def test_an_editor_may_do_each_action(copy_db):
    store = Store(copy_db)
    experiment_id = store.list_experiments()[0]["id"]
    first, second = store.list_runs(experiment_id=experiment_id)[:2]
    queued = actions.queue_experiment(EDITOR, store, _preset(), expand(_preset()))
    queued_run = store.list_runs(experiment_id=queued)[0]["id"]
    job_id = actions.queue_flatness_job(EDITOR, store, experiment_id)
    sup = Supervisor(copy_db)
    assert actions.cancel(EDITOR, sup, queued_run) and store.get_run(queued_run)["status"] == "cancelled"
    assert actions.cancel(EDITOR, sup, job_id, JOB) and store.get_job(job_id)["status"] == "cancelled"
    ids = actions.queue_confirmation(EDITOR, store, experiment_id, {first["optimizer"]: first["lr"]}, 1)
    assert [store.get_run(i)["status"] for i in ids] == ["queued"]
    actions.annotate_run(EDITOR, store, first["id"], add_tags=["checked"], remove_tags=["tiny"], notes="ok")
    assert store.get_run(first["id"])["tags"] == ["checked"] and store.get_run(first["id"])["notes"] == "ok"
    files = _files_of(store, second["id"])
    actions.delete_run(EDITOR, store, second["id"])
    assert second["id"] not in {r["id"] for r in store.list_runs()} and not any(f.exists() for f in files)
    actions.delete_experiment(EDITOR, store, queued)
    assert queued not in {e["id"] for e in store.list_experiments()}


@pytest.mark.parametrize("status", ["running", "stalled"])
def test_deleting_refuses_a_run_whose_process_still_writes_to_it(copy_db, status):
    store = Store(copy_db)
    experiment_id = store.list_experiments()[0]["id"]
    live = store.list_runs(experiment_id=experiment_id)[0]
    store.update_run(live["id"], status=status)
    files = _files_of(store, live["id"])
    before = _snapshot(store)
    with pytest.raises(ValueError, match=rf"run #{live['id']} \({status}\) still has a live process"):
        actions.delete_run(EDITOR, store, live["id"])
    with pytest.raises(ValueError, match=rf"#{live['id']} \({status}\)"):
        actions.delete_experiment(EDITOR, store, experiment_id)
    assert _snapshot(store) == before and all(f.exists() for f in files)


def _page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app" / "sections" / f"{name}.py"), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


ACTION_BUTTONS = ("Run the demo comparison", "Queue the comparison", "Save tags and notes", "Delete ", "Yes, delete",
                  "Measure flatness", "Cancel the job", "Confirm on")


def test_a_viewer_sees_every_page_with_its_action_buttons_disabled(copy_db, monkeypatch):
    """Streamlit discards a click on a disabled button server-side; the actions refuse a viewer
    besides (tested above), for a client that gets past that."""
    monkeypatch.setenv("ALTO_DB", str(copy_db))
    monkeypatch.setenv(EDITOR_ENV, EDITOR_TOKEN)
    store = Store(copy_db)
    run_id = store.list_runs()[0]["id"]
    for run in store.list_runs():  # final weights on disk: Flatness offers its measurement
        _files_of(store, run["id"])
    seen = set()
    for name, state in (("home", {}), ("launch", {}), ("runs", {"runs_confirm_delete": ("run", run_id)}),
                        ("flatness", {})):
        at = _page(name, alto_role=VIEWER, **state)
        assert not at.exception, name
        actions_here = [b for b in at.button if b.label.startswith(ACTION_BUTTONS)]
        assert actions_here and all(b.disabled for b in actions_here), (name, [(b.label, b.disabled) for b in at.button])
        assert all(not b.disabled for b in at.button if b.label in ("Watch live", "Cancel")), name  # no change
        seen |= {b.label for b in actions_here}
    assert {"Run the demo comparison again", "Queue the comparison", "Save tags and notes", "Yes, delete",
            "Measure flatness"} <= seen
    at = _page("runs", alto_role=EDITOR)
    assert all(not b.disabled for b in at.button if b.label.startswith(ACTION_BUTTONS))


def test_a_refused_action_is_shown_in_the_page_not_raised(copy_db, monkeypatch):
    """common.perform: the refusal as an error message, the script run ended there, nothing deleted."""
    monkeypatch.setenv("ALTO_DB", str(copy_db))
    monkeypatch.setenv(EDITOR_ENV, EDITOR_TOKEN)
    run_id = Store(copy_db).list_runs()[0]["id"]

    def script(run_id: int) -> None:
        import streamlit as st

        from alto.access import actions
        from common import perform, store

        perform(actions.delete_run, store(), run_id)
        st.write("after the action")

    at = AppTest.from_function(script, args=(run_id,), default_timeout=60)
    at.session_state["alto_role"] = VIEWER
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [("Read-only access: a viewer cannot delete runs. Open the dashboard "
                                            "with the editor token to do this.")]
    assert not any("after the action" in m.value for m in at.markdown)
    assert run_id in {r["id"] for r in Store(copy_db).list_runs()}


def test_a_page_reached_without_a_role_shows_nothing(copy_db, monkeypatch):
    """Pages run only behind the token page; a page script run on its own, with tokens set and no
    role earned, stops before it draws anything."""
    monkeypatch.setenv("ALTO_DB", str(copy_db))
    monkeypatch.setenv(EDITOR_ENV, EDITOR_TOKEN)
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "home.py"), default_timeout=60).run()
    assert not at.exception and not at.button and not at.dataframe


MUTATORS = {"queue_experiment", "queue_confirmation", "queue_budget_confirmation", "queue_at_budget",
            "record_plan", "queue_flatness_job", "cancel", "add_tags", "remove_tag",
            "set_notes", "delete_run", "delete_experiment", "remove_run_files", "add_job", "add_run",
            "create_experiment", "update_run", "update_job", "delete_artifact", "put_artifact", "clear_metrics"}


def test_pages_change_nothing_except_through_the_guarded_actions():
    """No page calls a mutator itself: each one is referenced only as `actions.<name>` (handed to
    common.perform with the session's role)."""
    findings = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("alto.access"):
                findings += [f"{path.name}: imports {a.name}" for a in node.names if a.name in MUTATORS]
            if isinstance(node, ast.Attribute) and node.attr in MUTATORS \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "actions"):
                findings.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert findings == []


def test_run_processes_never_inherit_the_tokens(monkeypatch):
    from alto.runner.supervisor import _child_env

    monkeypatch.setenv("ALTO_TOKEN", "editor-secret")
    monkeypatch.setenv("ALTO_VIEWER_TOKEN", "viewer-secret")
    env = _child_env(gpu=None)
    assert "ALTO_TOKEN" not in env and "ALTO_VIEWER_TOKEN" not in env
    assert env["PYTHONUNBUFFERED"] == "1" and env["PATH"] == os.environ["PATH"]


def test_delete_blocker_names_every_live_run():
    def run(i, status):
        return {"id": i, "status": status}
    assert actions.delete_blocker([run(1, "finished"), run(2, "queued")]) is None
    one = actions.delete_blocker([run(1, "running")])
    assert "#1 (running)" in one and "cancel" in one
    two = actions.delete_blocker([run(1, "running"), run(2, "stalled")])
    assert "#1 (running), #2 (stalled)" in two
