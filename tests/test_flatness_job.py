"""Flatness jobs: the jobs table, the job process launched by the supervisor, and its artifact."""
from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from alto.probes.flatness_job import (
    chosen_lrs, execute_job, flatness_settings, make_probe, measurable_runs, queue_flatness_job, summarize,
)
from alto.runner import JOB, Supervisor
from alto.store import Store
from alto.train.checkpoint import load_weights
from alto.train.config import RunConfig
from alto.paths import checkpoint_dir


def copy_db(src: Path, dest_dir: Path) -> Path:
    """Copy a database file with its final weights (checkpoints/<stem>/ next to it)."""
    dest = dest_dir / src.name
    shutil.copy(src, dest)
    ckpts = src.parent / "checkpoints" / src.stem
    if ckpts.exists():
        shutil.copytree(ckpts, dest_dir / "checkpoints" / src.stem)
    return dest


@pytest.fixture
def copied(filled_db, tmp_path) -> Store:
    store = Store(copy_db(filled_db, tmp_path))
    yield store
    for job in store.list_jobs(status="running"):  # never leave a job process behind
        if job["pgid"]:
            try:
                os.killpg(job["pgid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def experiment_id(store: Store) -> int:
    return store.list_experiments()[0]["id"]


def wait_job(store: Store, job_id: int, sup: Supervisor, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        sup.tick()
        job = store.get_job(job_id)
        if job["status"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.1)


# --- the jobs table ----------------------------------------------------------------------------

def test_jobs_table_api(tmp_path):
    store = Store(tmp_path / "jobs.db")
    exp = store.create_experiment("e")
    first = store.add_job("flatness", experiment_id=exp, payload={"batch_size": 64})
    second = store.add_job("flatness", experiment_id=exp)
    job = store.get_job(first)
    assert job["status"] == "queued" and job["payload"] == {"batch_size": 64} and job["created_at"] > 0
    assert [j["id"] for j in store.list_jobs()] == [second, first]  # newest first
    assert [j["id"] for j in store.list_jobs(status="queued", kind="flatness", experiment_id=exp)] == [second, first]
    claimed = store.claim_next_job(pid=123)
    assert claimed["id"] == first and claimed["status"] == "running" and claimed["pid"] == 123
    store.update_job(first, status="finished", finished_at=time.time())
    assert [j["id"] for j in store.list_jobs(status="finished")] == [first]
    with pytest.raises(ValueError, match="invalid job status 'stalled'"):
        store.update_job(first, status="stalled")
    with pytest.raises(ValueError, match="unknown job field 'kind'"):
        store.update_job(first, kind="x")
    with pytest.raises(KeyError, match="job 999"):
        store.get_job(999)
    with pytest.raises(KeyError, match="experiment 77"):
        store.add_job("flatness", experiment_id=77)
    store.delete_experiment(exp)
    assert store.list_jobs() == []


def test_settings_are_validated():
    assert flatness_settings({})["pair"] == ["alto", "lamb"]
    with pytest.raises(ValueError, match="pair must be two different"):
        flatness_settings({"pair": ["alto", "alto"]})
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        flatness_settings({"batch_size": 0})
    with pytest.raises(ValueError, match="unknown flatness setting"):
        flatness_settings({"batch": 5})


def test_summarize_groups_by_optimizer_and_lr():
    runs = [dict(optimizer="alto", lr=0.01, top_eigenvalue=2.0, trace=10.0, loss=1.0),
            dict(optimizer="alto", lr=0.01, top_eigenvalue=4.0, trace=14.0, loss=1.2),
            dict(optimizer="lamb", lr=0.01, top_eigenvalue=3.0, trace=12.0, loss=1.1),
            dict(optimizer="sgd", lr=0.1, top_eigenvalue=5.0, trace=20.0, loss=0.5),
            dict(optimizer="sgd", lr=0.3, top_eigenvalue=6.0, trace=21.0, loss=0.4)]
    rows = {r["optimizer"]: r for r in summarize({"runs": runs})}
    assert set(rows) == {"alto", "lamb", "sgd lr=0.1", "sgd lr=0.3"}
    assert rows["alto"]["n"] == 2 and rows["alto"]["top_eigenvalue_mean"] == 3.0
    assert rows["alto"]["top_eigenvalue_std"] == pytest.approx(math.sqrt(2))
    assert rows["lamb"]["n"] == 1 and math.isnan(rows["lamb"]["trace_std"])


def test_the_pair_is_taken_at_the_learning_rates_compare_chooses(tmp_path):
    """The LR with the best validation metric, by the experiment's own target metric and its
    direction; never the lowest loss on the probe's batch."""
    store = Store(tmp_path / "lrs.db")
    exp = store.create_experiment("lrs", config={"targets": {"metric": "val/error"}})
    # val/error (lower is better) favours lr 0.1 for alto; val/acc would favour 0.01
    for lr, error, acc in ((0.01, 0.30, 0.9), (0.1, 0.20, 0.5)):
        for seed in (0, 1):
            run = store.add_run(exp, name="r", optimizer="alto", seed=seed, lr=lr, config={}, status="finished")
            with store.writer(run, flush_every_s=math.inf) as w:
                w.log(0, {"val/error": 0.9, "val/acc": 0.1}, wall_time=0.0)
                w.log(10, {"val/error": error, "val/acc": acc}, wall_time=1.0)
    assert chosen_lrs(store, exp) == {"alto": 0.1}  # no threshold: the best final val/error
    other = store.create_experiment("no targets")
    run = store.add_run(other, name="r", optimizer="lamb", seed=0, lr=0.01, config={}, status="finished")
    with store.writer(run, flush_every_s=math.inf) as w:
        w.log(0, {"train/loss": 1.0}, wall_time=0.0)
    assert chosen_lrs(store, other) == {}  # no validation metric: nothing to choose on
    store.close()


# --- a real job ----------------------------------------------------------------------------------

def test_supervisor_runs_a_real_flatness_job(copied):
    store = copied
    exp = experiment_id(store)
    runs = measurable_runs(store, exp)
    assert len(runs) == 8
    job_id = queue_flatness_job(store, exp, batch_size=256, iters=15)
    sup = Supervisor(store)
    try:
        sup.tick()
        assert store.get_job(job_id)["status"] == "running"
        job = wait_job(store, job_id, sup)
    finally:
        sup.stop()
    log = Path(job["log_path"]).read_text()
    assert job["status"] == "finished", f"{job['error']}\n{log}"
    assert job["pid"] and job["pgid"] == job["pid"] and job["finished_at"] >= job["started_at"]
    assert "alto.probes.flatness_job" in log and f"job {job_id}: finished" in log

    (artifact,) = store.artifacts(kind="flatness", experiment_id=exp)
    payload = artifact["payload"]
    assert payload["job_id"] == job_id and payload["settings"]["batch_size"] == 256
    assert sorted(r["run_id"] for r in payload["runs"]) == sorted(r["id"] for r in runs)
    for r in payload["runs"]:
        assert r["samples"] == 256
        for key in ("loss", "top_eigenvalue", "trace", "trace_se"):
            assert math.isfinite(r[key]), (r["name"], key)
        assert r["top_eigenvalue"] > 0 and r["trace_se"] >= 0 and 1 <= r["eig_iters"] <= 15
        profile = r["profile"]
        assert len(profile["t"]) == 21 and profile["t"][10] == 0.0
        assert profile["loss"][10] == pytest.approx(r["loss"], rel=1e-6)  # the middle is the run itself

    # one interpolation per seed, ALTO (t = 0) to Lamb (t = 1); endpoints = each run's own loss on the
    # fixed batch, recomputed here from the weights file
    by_id = {r["id"]: r for r in runs}
    lines = payload["interpolations"]
    assert payload["pair"] == ["alto", "lamb"] and [i["seed"] for i in lines] == [0, 1]
    probe = None
    for line in lines:
        ra, rb = by_id[line["run_a"]], by_id[line["run_b"]]
        assert (ra["optimizer"], rb["optimizer"]) == ("alto", "lamb") and ra["seed"] == rb["seed"] == line["seed"]
        assert line["t"][0] == 0.0 and line["t"][-1] == 1.0
        for run, end in ((ra, line["loss"][0]), (rb, line["loss"][-1])):
            config = RunConfig.from_dict(run["config"])
            probe = probe or make_probe(config, 256, torch.device("cpu"))
            model = probe.build()
            load_weights(checkpoint_dir(store.path, run["id"]) / "final.pt", model)
            model.eval()
            with torch.no_grad():
                assert end == pytest.approx(float(probe.loss(model)), rel=1e-6)


def test_experiment_without_final_weights_fails_clearly(copied):
    store = copied
    exp = experiment_id(store)
    shutil.rmtree(checkpoint_dir(store.path, 1).parent)  # as if trained with save_final = false
    job_id = queue_flatness_job(store, exp)
    assert execute_job(store, job_id, log=lambda line: None) == "failed"
    job = store.get_job(job_id)
    assert job["status"] == "failed" and job["finished_at"]
    assert f"experiment {exp} has no finished run with final weights (final.pt)" in job["error"]
    assert store.artifacts(kind="flatness") == []


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter (gets `-m MODULE JOB_ID --db PATH`)."""
    fake = tmp_path / "fake_python"
    fake.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    fake.chmod(0o755)
    return str(fake)


def test_job_process_that_dies_is_failed_with_its_log(copied, tmp_path):
    store = copied
    python = fake_python(tmp_path, "print('boom before recording', flush=True)\nsys.exit(3)")
    job_id = queue_flatness_job(store, experiment_id(store))
    sup = Supervisor(store, python=python)
    try:
        job = wait_job(store, job_id, sup, timeout=20)
    finally:
        sup.stop()
    assert job["status"] == "failed"
    assert "exited with code 3" in job["error"] and "boom before recording" in job["error"]


def test_unknown_kind_fails_and_queued_job_cancels(copied):
    store = copied
    sup = Supervisor(store)
    try:
        odd = store.add_job("mystery")
        sup.tick()
        assert store.get_job(odd)["status"] == "failed"
        assert "unknown job kind 'mystery'" in store.get_job(odd)["error"]
        queued = queue_flatness_job(store, experiment_id(store))
        assert sup.cancel(queued, JOB) is True
        assert store.get_job(queued)["status"] == "cancelled"
        assert sup.cancel(queued, JOB) is False
    finally:
        sup.stop()


def test_cancel_a_running_job(copied, tmp_path):
    store = copied
    job_id = queue_flatness_job(store, experiment_id(store))
    sup = Supervisor(store, python=fake_python(tmp_path, "time.sleep(60)"), grace_s=2.0)
    try:
        sup.tick()
        job = store.get_job(job_id)
        assert job["status"] == "running" and job["pgid"]
        assert sup.cancel(job_id, JOB) is True
        job = wait_job(store, job_id, sup, timeout=20)
    finally:
        sup.stop()
    assert job["status"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.killpg(job["pgid"], 0)
