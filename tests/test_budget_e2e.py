"""Confirm at budget end to end on the digits demo: real training runs, `alto confirm --at-budget`
(trained in the command, then queued only for `alto worker`, the supervisor without the app), and
what `alto compare`, the ROI page and the report then say."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from alto.analysis.budget import budget_check
from alto.presentation.report import build_report
from alto.runner import queue_experiment
from alto.store import BUDGET_TAG, Store
from alto.train.presets import expand, load_preset
from alto.train.run import execute_run
from conftest import ROOT

pytestmark = pytest.mark.slow
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def alto(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alto.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)


def roi_page() -> AppTest:
    page = AppTest.from_file(str(ROOT / "app" / "sections" / "roi.py"), default_timeout=120).run()
    assert not page.exception
    return page


def test_confirm_at_budget_on_the_digits_demo_through_the_worker(tmp_path, monkeypatch):
    db = tmp_path / "demo.db"
    monkeypatch.setenv("ALTO_DB", str(db))
    store = Store(db)
    preset = load_preset("demo-digits")  # full-batch digits; LION against Lamb, 40 steps a run
    experiment = queue_experiment(store, preset, expand(preset, optimizers=["lion", "lamb"], seeds=2,
                                                        overrides={"max_steps": 40}))
    for run in store.list_runs(experiment_id=experiment):
        assert execute_run(store, run["id"]) == "finished"

    before = roi_page()
    assert "Not confirmed at budget." in [m.value.strip("*") for m in before.markdown]
    assert any("(not confirmed at budget)" in m.value for m in before.markdown)

    # one fresh seed trained by the command itself
    here = alto("confirm", "--experiment", str(experiment), "--seeds", "1", "--at-budget", "--db", str(db))
    assert here.returncode == 0, here.stdout + here.stderr
    queued = next(line for line in here.stdout.splitlines() if "queued at budget" in line)
    budget = int(queued.split("queued at budget ")[1].split(" steps")[0])
    assert 1 < budget < 40 and "lion lr=0.001" in queued and "(lamb ran 40" in queued
    assert f"confirmed at budget: 1/1 lion runs given {budget} steps" in here.stdout

    # two more queued only, trained by `alto worker`
    queue = alto("confirm", "--experiment", str(experiment), "--seeds", "2", "--at-budget", "--queue-only",
                 "--db", str(db))
    assert queue.returncode == 0 and "queued only" in queue.stdout, queue.stderr
    worker = subprocess.Popen([sys.executable, "-m", "alto.cli", "worker", "--db", str(db)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while any(r["status"] in ("queued", "running") for r in store.list_runs(experiment_id=experiment)):
            assert worker.poll() is None and time.monotonic() < deadline, "the worker did not train the runs"
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)

    shortened = [r for r in store.list_runs(experiment_id=experiment) if BUDGET_TAG in r["tags"]]
    assert len(shortened) == 3 and {r["status"] for r in shortened} == {"finished"}
    assert {r["total_steps"] for r in shortened} == {budget}  # the run, and so its schedule, was shorter
    assert sorted(r["seed"] for r in shortened) == [2, 3, 4] and sum(bool(r["log_path"]) for r in shortened) == 2
    check = budget_check(store, experiment, candidate="lion", baseline="lamb", metric="val/acc", threshold=0.9)
    assert check.confirmed and (check.reached, check.counted) == (3, 3)
    assert all(t <= budget for t in check.steps_to_target)

    text = alto("compare", "--experiment", str(experiment), "--threshold", "0.9", "--db", str(db)).stdout
    assert f"confirmed at budget: 3/3 lion runs given {budget} steps" in text
    after = roi_page()
    assert any(m.value.startswith("**Confirmed at budget: 3/3 lion runs") for m in after.markdown)
    fleet = next(m.value for m in after.markdown if m.value.startswith("On your fleet"))
    assert f"= {40 / budget:.2f}x fewer steps" in fleet and "(confirmed at budget: 3/3" in fleet
    assert f"confirmed at budget: 3/3 lion runs given {budget} steps" in build_report(store, experiment)
