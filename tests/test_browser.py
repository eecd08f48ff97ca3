"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
server, database and training processes: the first-visit demo, Compare, a restart mid-run, and
SIGTERM to `alto app`."""
from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from alto.paths import lock_path
from alto.runner import queue_experiment
from alto.store import Store
from alto.train.presets import expand, parse_preset

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TINY_PRESET = """
name = "tiny-demo"
title = "Tiny demo"
source = "ours"
optimizers = ["alto", "lamb", "sgd", "lion"]
seeds = 1
[run]
dataset = "digits"
model = "mlp"
device = "cpu"
threads = 1
data_limit = 256
epochs = 1000
max_steps = 15
model_kwargs = { hidden = [16] }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, proc: subprocess.Popen, timeout: float = 90, poll_s: float = 0.5,
                       printed=lambda: "") -> None:
    """Wait for the Streamlit server at url to answer its health check; fail if proc exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, f"the server exited with {proc.returncode}: {printed()}"
        assert time.monotonic() < deadline, f"the server did not come up within {timeout:.0f} s"
        time.sleep(poll_s)


class Server:
    """`alto app` in its own session, what it printed in `output` when given; stop() ends the
    server but not the runs it started."""

    def __init__(self, db: Path, env: dict | None = None, host: str | None = None, output: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = output
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        argv = [sys.executable, "-m", "alto.cli", "app", "--port", str(self.port), "--db", str(db)]
        with open(output, "wb") if output else open(os.devnull, "wb") as sink:
            self.proc = subprocess.Popen(argv + (["--host", host] if host else []), env=env,
                                         start_new_session=True, stdout=sink, stderr=subprocess.STDOUT)
        wait_until_healthy(self.url, self.proc, printed=self.printed)

    def printed(self) -> str:
        return self.output.read_text(errors="replace") if self.output else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)




def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def kill_runs(store: Store) -> None:
    for run in store.list_runs():
        if run["pgid"] and run["status"] in ("running", "stalled"):
            try:
                os.killpg(run["pgid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_first_visit_demo_then_compare(tmp_path, browser):
    preset = tmp_path / "tiny-demo.toml"
    preset.write_text(TINY_PRESET)
    db = tmp_path / "alto.db"
    server = Server(db, env={"ALTO_DEMO_PRESET": str(preset), "ALTO_DEMO_SEEDS": "1"})
    store = Store(db)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        page.get_by_role("button", name="Run the demo comparison").click(timeout=60_000)
        page.wait_for_url("**/live", timeout=60_000)
        runs = wait_for(lambda: store.list_runs() if len(store.list_runs()) == 4 else None, 30, "4 queued runs")
        assert {r["optimizer"] for r in runs} == {"alto", "lamb", "sgd", "lion"}
        wait_for(lambda: all(r["status"] == "finished" for r in store.list_runs()), 240, "the demo runs")
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

        page.goto(f"{server.url}/compare")
        page.wait_for_selector(".js-plotly-plot", timeout=90_000)
        page.wait_for_timeout(1500)
        traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")
        named = {t for t in traces if t}
        assert {"alto", "lamb", "sgd", "lion"} <= {n.split(" ")[0] for n in named}, traces
        assert len(traces) >= 4
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    finally:
        server.stop()
        kill_runs(store)


def test_closing_the_browser_and_restarting_the_app_lose_nothing(tmp_path, browser):
    db = tmp_path / "alto.db"
    store = Store(db)
    run_settings = {"dataset": "digits", "model": "mlp", "device": "cpu", "threads": 1, "data_limit": 256,
                    "epochs": 100_000, "max_steps": 6000, "model_kwargs": {"hidden": [16]}, "save_final": False}
    preset = parse_preset({"name": "long", "optimizers": ["alto"], "run": run_settings})
    queue_experiment(store, preset, expand(preset))
    run_id = store.list_runs()[0]["id"]
    first = Server(db)
    try:
        page = browser.new_page()
        page.goto(f"{first.url}/live")
        wait_for(lambda: (store.get_run(run_id)["last_step"] or 0) >= 20, 120, "the run to start")
        page.close()  # closing the tab stops nothing
        before = store.get_run(run_id)["last_step"]
        time.sleep(2)
        assert store.get_run(run_id)["last_step"] > before

        first.stop()  # the app goes away; the run process lives in its own session
        pid = store.get_run(run_id)["pid"]
        time.sleep(1)
        assert os.path.exists(f"/proc/{pid}") and store.get_run(run_id)["status"] == "running"

        second = Server(db)
        try:
            run = store.get_run(run_id)
            assert run["status"] == "running" and run["pid"] == pid  # adopted, not restarted
            mark = run["last_step"]
            wait_for(lambda: store.get_run(run_id)["last_step"] > mark, 30, "progress after the restart")
            page = browser.new_page()
            page.goto(f"{second.url}/live")
            # the adopted run is on the new server's Live page, still running or (on a fast machine)
            # already finished
            page.get_by_text(re.compile(r"\b1 (running|finished)\b")).first.wait_for(timeout=60_000)
            wait_for(lambda: store.get_run(run_id)["status"] == "finished", 240, "the run to finish")
            assert store.get_run(run_id)["last_step"] == 5999
            loss = store.series(run_id, "train/loss")
            assert loss["step"][-1] == 5999 and len(loss["step"]) <= 2000  # downsampled read
            full = store.raw_metrics([run_id], ["train/loss"])
            assert list(full["step"]) == list(range(6000))  # not a step lost across the restart
        finally:
            second.stop()
    finally:
        first.stop()
        kill_runs(store)


def supervisor_lock_held(db: Path) -> bool:
    """Whether some process holds the database's supervisor lock (taking it here frees it at once)."""
    fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_sigterm_to_alto_app_stops_the_server_and_its_supervisor(tmp_path, browser):
    """`alto app` becomes the server: a SIGTERM to its pid (`docker stop` to PID 1) ends the server
    and the supervisor in it, and no process of its group stays behind. The page draws Material
    icons (no emoji font needed) and a toolbar without the Deploy button."""
    db = tmp_path / "alto.db"
    server = Server(db)
    try:
        page = browser.new_page()
        page.goto(server.url)
        demo = page.get_by_role("button", name="Run the demo comparison")
        demo.wait_for(timeout=60_000)
        assert demo.locator("[data-testid='stIconMaterial']").count() == 1
        assert page.get_by_role("button", name="Deploy").count() == 0
        wait_for(lambda: supervisor_lock_held(db), 30, "the app's supervisor to lead the database")

        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=20)
        with pytest.raises(OSError):  # refused: nothing serves the port any more
            urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=5)
        with pytest.raises(ProcessLookupError):
            os.killpg(server.proc.pid, 0)  # its session's process group is empty
        assert not supervisor_lock_held(db)
    finally:
        server.stop()
        try:  # whatever of its group a failed check left behind
            os.killpg(server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
