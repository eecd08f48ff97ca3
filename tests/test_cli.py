"""The `alto` command as a user runs it (real subprocesses, a real database file)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from alto.runner import queue_experiment
from alto.store import Store
from alto.train.presets import expand, load_preset

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def alto(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "alto.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"alto {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_run_ls_export_end_to_end(tmp_path):
    db = str(tmp_path / "runs.db")
    out = alto("run", "--preset", "demo-digits", "--optimizers", "alto,sgd", "--seeds", "2", "--max-steps", "8",
               "--db", db).stdout
    assert "experiment 1: 4 runs" in out
    table = [line for line in out.splitlines() if line.strip().startswith(("1 ", "2 ", "3 ", "4 "))]
    assert len(table) == 4 and all("finished" in line for line in table)

    listed = json.loads(alto("ls", "--db", db, "--json").stdout)
    assert listed[0]["run_counts"] == {"finished": 4}
    assert sorted((r["optimizer"], r["seed"]) for r in listed[0]["runs"]) == [
        ("alto", 0), ("alto", 1), ("sgd", 0), ("sgd", 1)]
    listing = alto("ls", "--db", db).stdout
    assert listing.count("  finished  ") == 4 and listing.count("steps 8/8") == 4  # steps done, not the last index

    csv_path = tmp_path / "exp.csv"
    alto("export", "--experiment", "1", "--format", "csv", "--out", str(csv_path), "--db", db)
    rows = list(csv.DictReader(csv_path.open()))
    keys = {r["key"] for r in rows}
    assert {"train/loss", "train/acc", "val/acc", "test/acc", "a_norm", "cos_grad_prev"} <= keys
    assert {"run_id", "optimizer", "seed", "lr", "step", "value", "wall_time", "samples", "epoch"} <= set(rows[0])
    parquet = tmp_path / "exp.parquet"
    alto("export", "--experiment", "1", "--format", "parquet", "--out", str(parquet), "--db", db)
    assert len(pd.read_parquet(parquet)) == len(rows)


@pytest.mark.slow
def test_run_beside_a_worker_trains_each_run_once(tmp_path):
    """`alto run` claims each run before training it: the runs a live `alto worker` on the same
    database took first are followed, not trained a second time."""
    from alto.runner import Supervisor

    store = Store(tmp_path / "runs.db")
    with store._write() as conn:  # a trigger logs which process recorded each run's end
        conn.execute("CREATE TABLE endings (run_id INTEGER, pid INTEGER)")
        conn.execute("CREATE TRIGGER log_endings AFTER UPDATE OF status ON runs WHEN NEW.status = 'finished' "
                     "BEGIN INSERT INTO endings VALUES (NEW.id, NEW.pid); END")
    # Two slots: the run `alto run` trains holds one of them in the worker's count too.
    worker = subprocess.Popen([sys.executable, "-m", "alto.cli", "worker", "--db", str(store.path), "--slots", "2"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        probe, deadline = Supervisor(store), time.monotonic() + 60
        while probe.try_lead():  # until the worker holds the database's supervisor lock
            probe.stop()
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never took the lock"
            time.sleep(0.1)
        cli = subprocess.Popen([sys.executable, "-m", "alto.cli", "run", "--preset", "demo-digits", "--optimizers",
                                "alto,lamb,sgd,lion", "--seeds", "1", "--max-steps", "100", "--db", str(store.path)],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = cli.communicate(timeout=600)
        assert cli.returncode == 0, out
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    runs = store.list_runs()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}, out
    endings = store.connection().execute("SELECT run_id, pid FROM endings ORDER BY run_id").fetchall()
    assert [run_id for run_id, _ in endings] == [r["id"] for r in runs], "a run was trained twice (or never)"
    by_cli = {run_id for run_id, pid in endings if pid == cli.pid}
    by_worker = {r["id"] for r in runs if r["log_path"]}  # the worker's children log to a file
    assert by_cli and by_worker and by_cli.isdisjoint(by_worker) and len(by_cli | by_worker) == 4
    for run_id in by_worker:  # the CLI said it left these to the worker
        line = next(line for line in out.splitlines() if line.startswith(f"run {run_id} "))
        assert "following it" in line or "by another process" in line


def test_a_dashboard_cancel_stops_a_command_run_of_alto_run_before_it_tracks(tmp_path):
    """`alto run` records its child's process group at once: a cancel from another process (the
    dashboard's supervisor) stops a command that has not reached alto.track() yet."""
    from alto.runner import Supervisor
    from alto.runner.spawn import spawn_process

    preset = tmp_path / "sleeper.toml"
    preset.write_text('name = "sleeper"\noptimizers = ["sgd"]\nseeds = 1\n'
                      'command = ["python", "-c", "import time; time.sleep(60)"]\n')
    store = Store(tmp_path / "runs.db")
    cli = subprocess.Popen([sys.executable, "-m", "alto.cli", "run", "--preset", str(preset), "--db", str(store.path)],
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pgid = None
    try:
        deadline = time.monotonic() + 60
        while not (runs := store.list_runs()) or not runs[0]["pgid"]:
            assert cli.poll() is None and time.monotonic() < deadline, "alto run never recorded its child's group"
            time.sleep(0.1)
        [run] = runs
        pgid = run["pgid"]
        assert pgid != cli.pid and run["pid"] == pgid
        assert Supervisor(store, spawn=spawn_process).cancel(run["id"])
        out, _ = cli.communicate(timeout=60)
        assert store.get_run(run["id"])["status"] == "cancelled", out
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    finally:
        for group in (pgid, cli.pid):
            try:
                os.killpg(group, signal.SIGKILL) if group else None
            except ProcessLookupError:
                pass


def test_clear_errors_for_bad_input(tmp_path):
    db = str(tmp_path / "runs.db")
    bad = alto("run", "--preset", "no-such-preset", "--db", db, check=False)
    assert bad.returncode != 0 and "preset must be one of" in bad.stderr
    bad = alto("run", "--preset", "demo-digits", "--optimizers", "alto,adam", "--db", db, check=False)
    assert bad.returncode != 0 and "optimizer" in bad.stderr and "adam" in bad.stderr
    bad = alto("run", "--preset", "demo-digits", "--lr-grid", "alto=fast", "--db", db, check=False)
    assert bad.returncode != 0 and "--lr-grid" in bad.stderr
    bad = alto("export", "--experiment", "7", "--out", str(tmp_path / "x.csv"), "--db", db, check=False)
    assert bad.returncode != 0 and "not found" in bad.stderr
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    bad = alto("ls", "--db", str(tmp_path / "junk.db"), check=False)
    assert bad.returncode != 0 and "not an ALTO Lab database" in bad.stderr


def test_bench_optim_prints_ratios():
    lines = [json.loads(line) for line in alto("bench", "optim", "--params", "20000", "--device", "cpu",
                                                "--threads", "1", "--repeats", "1").stdout.splitlines()]
    by_name = {r.get("optimizer", r.get("what")): r for r in lines}
    assert by_name["copy_bandwidth"]["bytes_per_s"] > 0
    for name in ("alto", "alto_per_tensor", "lamb", "lion", "sgd", "adamw"):
        assert by_name[name]["ratio_to_bound"] > 0 and by_name[name]["bytes_per_param"] > 0
    assert by_name["speedup_multi_tensor_over_per_tensor_alto"]["ratio"] > 0


@pytest.mark.slow
def test_sigkill_mid_training_keeps_every_committed_step(tmp_path):
    store = Store(tmp_path / "runs.db")
    preset = load_preset("demo-digits")
    configs = expand(preset, optimizers=["alto"], seeds=1, overrides={"max_steps": 100_000, "epochs": 100_000})
    exp = queue_experiment(store, preset, configs)
    run_id = store.list_runs(experiment_id=exp)[0]["id"]
    proc = subprocess.Popen([sys.executable, "-m", "alto.train", str(run_id), "--db", str(store.path)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while (store.get_run(run_id)["last_step"] or 0) < 40:
            assert proc.poll() is None, "the run ended early"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert store.integrity_check() == "ok"
    run = store.get_run(run_id)
    assert run["status"] == "running"  # nobody recorded an end: the supervisor will call it crashed
    last = run["last_step"]
    loss = store.series(run_id, "train/loss")
    steps = list(loss["step"])
    assert steps[: last + 1] == list(range(last + 1))  # every committed step readable, no gaps
    assert len(store.series(run_id, "a_norm")["step"]) >= last + 1
