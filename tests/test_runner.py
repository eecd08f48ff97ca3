"""Supervisor against real run processes: a real SQLite file, `python -m alto.train`, tiny runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alto.runner import JOB, RUN, Supervisor, process_alive, queue_experiment
from alto.store import Store
from alto.train.presets import expand, load_preset

SHORT, LONG = 40, 3000  # steps: a few seconds / long enough to kill or cancel


@pytest.fixture
def store(tmp_path):
    """A fresh database; afterwards every process started for it is killed, whoever started it.

    The test process keeps ONE Store for the file (see test_second_store_drops_the_locks).
    """
    store = Store(tmp_path / "runs.db")
    yield store
    path = store.path
    for run in store.list_runs():
        pgid = run["pgid"]
        # only groups whose leader is one of this test's run processes (the db path is in argv)
        if pgid and process_alive(pgid, run["id"]) and str(path) in _cmdline(pgid):
            os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def supervisors():
    made: list[Supervisor] = []
    yield made
    for sup in made:
        sup.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def queue(store: Store, steps: int, optimizers=("sgd",), **overrides) -> list[int]:
    preset = load_preset("demo-digits")
    configs = expand(preset, optimizers=list(optimizers), seeds=1,
                     overrides={"max_steps": steps, "epochs": 1000, **overrides})
    experiment_id = queue_experiment(store, preset, configs)
    return [r["id"] for r in store.list_runs(experiment_id=experiment_id)]


def wait_for(store: Store, run_id: int, check, *, sup: Supervisor | None = None,
             timeout: float = 30.0) -> dict:
    """Tick `sup` (if given) and poll the run until check(run) holds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if sup is not None:
            sup.tick()
        run = store.get_run(run_id)
        if check(run):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} timed out after {timeout} s: status={run['status']} "
                        f"last_step={run['last_step']} error={run['error']}")
        time.sleep(0.1)


def _log(run: dict) -> str:
    return Path(run["log_path"]).read_text() if run["log_path"] else ""


def status_is(*statuses):
    return lambda run: run["status"] in statuses


def training(run: dict) -> bool:
    """Running and past its first flushed steps (so its SIGTERM handler is installed)."""
    return run["status"] == "running" and (run["last_step"] or 0) >= 5


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: gets `-m alto.train ID --db PATH` as argv."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\nimport os, signal, sys, time\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.slow
def test_two_runs_one_slot_run_in_turn(store, supervisors):
    first, second = queue(store, SHORT, optimizers=("sgd", "alto"))
    sup = Supervisor(store, slots=1)
    supervisors.append(sup)
    sup.tick()
    assert [store.get_run(first)["status"], store.get_run(second)["status"]] == ["running", "queued"]
    wait_for(store, first, status_is("finished"), sup=sup)
    run = wait_for(store, second, status_is("finished"), sup=sup)
    a = store.get_run(first)
    assert a["finished_at"] <= run["started_at"]  # one after the other
    for r in (a, run):
        assert r["pid"] and r["pgid"] == r["pid"]
        assert Path(r["log_path"]) == store.path.parent / "logs" / "runs" / f"run_{r['id']}.log"
        assert f"run {r['id']}: finished" in Path(r["log_path"]).read_text()
        assert r["last_step"] == SHORT - 1
        summary = store.summary([r["id"]])[r["id"]]
        assert summary["train/loss"]["count"] == SHORT
    assert store.status_counts() == {"finished": 2}
    assert sup.active_runs() == []


def test_sigkill_marks_crashed(store, supervisors):
    (run_id,) = queue(store, LONG)
    sup = Supervisor(store)
    supervisors.append(sup)
    run = wait_for(store, run_id, training, sup=sup)
    os.killpg(run["pgid"], signal.SIGKILL)
    killed = time.monotonic()
    run = wait_for(store, run_id, status_is("crashed"), sup=sup, timeout=5)
    print(f"SIGKILL -> crashed in {time.monotonic() - killed:.2f} s")
    assert "SIGKILL" in run["error"] and run["finished_at"]
    assert store.integrity_check() == "ok"
    assert group_gone(run["pgid"])  # reaped, no zombie


def test_cancel_running_and_queued(store, supervisors):
    running, queued = queue(store, LONG, optimizers=("sgd", "alto"))
    sup = Supervisor(store, slots=1)
    supervisors.append(sup)
    run = wait_for(store, running, training, sup=sup)
    assert sup.cancel(queued) is True
    assert store.get_run(queued)["status"] == "cancelled"
    asked = time.monotonic()
    assert sup.cancel(running) is True
    run = wait_for(store, running, status_is("cancelled"), sup=sup, timeout=10)
    wait_for(store, running, lambda r: group_gone(r["pgid"]), sup=sup, timeout=5)
    print(f"cancel -> cancelled and group gone in {time.monotonic() - asked:.2f} s")
    assert "killed" not in (run["error"] or "")  # it stopped itself within the grace period
    assert store.get_run(queued)["pid"] is None  # never started
    sup.tick()
    assert sup.active_runs() == [] and sup.cancel(running) is False


def test_cancel_kills_a_run_that_ignores_sigterm(store, tmp_path, supervisors):
    (run_id,) = queue(store, SHORT)
    python = fake_python(tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                   "print('ready', flush=True)\ntime.sleep(60)")
    sup = Supervisor(store, python=python, grace_s=0.5)
    supervisors.append(sup)
    wait_for(store, run_id, lambda r: "ready" in _log(r), sup=sup, timeout=10)
    sup.cancel(run_id)
    run = wait_for(store, run_id, status_is("cancelled"), sup=sup, timeout=10)
    assert "killed" in run["error"]
    assert group_gone(run["pgid"])


def test_run_that_fails(store, tmp_path, supervisors):
    (run_id,) = queue(store, SHORT, dataset="text-file:/nonexistent/file.txt")
    sup = Supervisor(store)
    supervisors.append(sup)
    run = wait_for(store, run_id, status_is("failed"), sup=sup)
    assert "text file not found: /nonexistent/file.txt" in run["error"]  # recorded by the run itself

    # A process that dies before it can record anything: the supervisor fails it with the log tail.
    (run_id,) = queue(store, SHORT)
    sup.python = fake_python(tmp_path, "print('boom: cannot import the engine', file=sys.stderr)\n"
                                       "sys.exit(3)")
    run = wait_for(store, run_id, status_is("failed"), sup=sup, timeout=10)
    assert "exited with code 3" in run["error"] and "boom: cannot import the engine" in run["error"]


@pytest.mark.slow
def test_restart_adopts_running_runs(store, supervisors):
    (run_id,) = queue(store, LONG)
    a = Supervisor(store, poll_s=0.1)
    supervisors.append(a)
    assert a.start() is True
    run = wait_for(store, run_id, training)
    a.stop()  # the app goes away; its run must not
    assert not a.is_leader and not group_gone(run["pgid"])

    b = Supervisor(store)
    supervisors.append(b)
    step = run["last_step"]
    run = wait_for(store, run_id, lambda r: r["last_step"] > step + 20, sup=b)
    assert run["status"] == "running" and b.is_leader
    os.killpg(run["pgid"], signal.SIGKILL)
    killed = time.monotonic()
    run = wait_for(store, run_id, status_is("crashed"), sup=b, timeout=5)
    print(f"adopted run: SIGKILL -> crashed in {time.monotonic() - killed:.2f} s")
    assert "is gone" in run["error"]


def test_running_run_without_a_process_crashes_on_first_tick(store, supervisors):
    (run_id,) = queue(store, SHORT)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.update_run(run_id, status="running", pid=dead.pid, pgid=dead.pid, started_at=time.time())
    sup = Supervisor(store, slots=1)
    supervisors.append(sup)
    # Not a real restart check if the pid came back at once; vanishingly rare.
    assert not process_alive(dead.pid, run_id)
    sup.tick()
    run = store.get_run(run_id)
    assert run["status"] == "crashed" and f"pid {dead.pid}" in run["error"]


@pytest.mark.slow
def test_stopped_process_stalls_then_recovers(store, supervisors):
    (run_id,) = queue(store, LONG)
    sup = Supervisor(store, heartbeat_timeout_s=2.0)
    supervisors.append(sup)
    run = wait_for(store, run_id, training, sup=sup)
    os.killpg(run["pgid"], signal.SIGSTOP)
    stopped = time.monotonic()
    wait_for(store, run_id, status_is("stalled"), sup=sup, timeout=10)
    print(f"SIGSTOP -> stalled in {time.monotonic() - stopped:.2f} s (timeout 2 s)")
    os.killpg(run["pgid"], signal.SIGCONT)
    resumed = time.monotonic()
    wait_for(store, run_id, status_is("running"), sup=sup, timeout=10)
    print(f"SIGCONT -> running in {time.monotonic() - resumed:.2f} s")
    sup.cancel(run_id)
    wait_for(store, run_id, status_is("cancelled"), sup=sup, timeout=10)
    wait_for(store, run_id, lambda r: group_gone(r["pgid"]), sup=sup, timeout=5)


# A stand-in child that stops itself (SIGSTOP) once ready. It gets `-m MODULE ID --db PATH`.
STOPS_ITSELF = """
table = "runs" if sys.argv[2] == "alto.train" else "jobs"
row_id, db = int(sys.argv[3]), sys.argv[5]
if RECORDS_ITS_END:
    def record(*_):
        import sqlite3
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute(f"UPDATE {table} SET status = 'cancelled', error = 'recorded by the process' "
                         "WHERE id = ?", (row_id,))
        sys.exit(0)
    signal.signal(signal.SIGTERM, record)
os.kill(os.getpid(), signal.SIGSTOP)
time.sleep(60)
"""


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] == "T"


@pytest.mark.parametrize("kind", [RUN, JOB], ids=["run", "job"])
@pytest.mark.parametrize("records_its_end", [True, False], ids=["process-records", "supervisor-records"])
def test_cancel_continues_a_stopped_process_and_writes_cancelled_once(store, tmp_path, supervisors, kind,
                                                                       records_its_end):
    """SIGTERM reaches a SIGSTOPped run or job (the cancel sends SIGCONT too), and `cancelled` is
    written once: by the process when it records its end, else by the cancel thread alone, never
    by the reconcile loop (a trigger logs every status write)."""
    if kind is RUN:
        (row_id,) = queue(store, SHORT)
    else:
        row_id = store.add_job("flatness")
    with store._write() as conn:
        conn.execute("CREATE TABLE status_writes (tbl TEXT, row_id INTEGER, status TEXT)")
        for table in ("runs", "jobs"):
            conn.execute(f"CREATE TRIGGER {table}_status_writes AFTER UPDATE OF status ON {table} "
                         f"BEGIN INSERT INTO status_writes VALUES ('{table}', NEW.id, NEW.status); END")
    python = fake_python(tmp_path, f"RECORDS_ITS_END = {records_its_end}\n{STOPS_ITSELF}")
    sup = Supervisor(store, python=python, grace_s=20.0)  # a kill would take 20 s and say so
    supervisors.append(sup)
    sup.tick()
    row = kind.get(store, row_id)
    assert row["status"] == "running" and row["pgid"]
    deadline = time.monotonic() + 10
    while not _stopped(row["pid"]):
        assert time.monotonic() < deadline, "the stand-in never stopped itself"
        time.sleep(0.05)

    assert sup.cancel(row_id, kind) is True
    deadline = time.monotonic() + 15
    while kind.get(store, row_id)["status"] != "cancelled" or not group_gone(row["pgid"]):
        assert time.monotonic() < deadline, f"not cancelled: {kind.get(store, row_id)}"
        sup.tick()  # the reconcile loop sees the dead process meanwhile
        time.sleep(0.05)
    for _ in range(3):
        sup.tick()
    row = kind.get(store, row_id)
    assert row["error"] == ("recorded by the process" if records_its_end else "cancelled on request")
    writes = store.connection().execute(
        "SELECT status FROM status_writes WHERE tbl = ? AND row_id = ?", (f"{kind.noun}s", row_id)).fetchall()
    assert [w[0] for w in writes] == ["running", "cancelled"]


def test_second_supervisor_is_not_leader_but_can_cancel(store, supervisors):
    (run_id,) = queue(store, SHORT)
    first, second = Supervisor(store), Supervisor(store, poll_s=0.05)
    supervisors += [first, second]
    assert first.try_lead() and first.is_leader
    assert second.start() is False and not second.is_leader
    second.tick()  # does nothing: not the leader
    assert store.get_run(run_id)["status"] == "queued"
    assert second.cancel(run_id) is True
    assert store.get_run(run_id)["status"] == "cancelled"
    first.stop()
    deadline = time.monotonic() + 5
    while not second.is_leader and time.monotonic() < deadline:  # standby takes over
        time.sleep(0.05)
    assert second.is_leader


def test_one_gpu_per_slot_also_after_a_restart(store, tmp_path, supervisors):
    """CUDA_VISIBLE_DEVICES per slot; an adopted run keeps its GPU (read from its environment)."""
    python = fake_python(tmp_path, "print('device', os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True)\n"
                                   "time.sleep(60)")
    first, second, third = queue(store, SHORT, optimizers=("sgd", "alto", "lion"))
    a = Supervisor(store, slots=1, python=python)
    supervisors.append(a)
    a.gpus = ["0", "1"]  # as if torch had counted two
    a.tick()
    a.stop()
    b = Supervisor(store, slots=2, python=python)
    supervisors.append(b)
    b.gpus = ["0", "1"]
    b.tick()
    logs = {}
    for run_id in (first, second):
        run = wait_for(store, run_id, lambda r: "device " in _log(r), sup=b, timeout=10)
        logs[run_id] = _log(run)
    assert "device 0" in logs[first] and "device 1" in logs[second]
    assert store.get_run(third)["status"] == "queued"  # both slots busy
    for run_id in (first, second, third):
        b.cancel(run_id)
    for run_id in (first, second):
        run = wait_for(store, run_id, status_is("cancelled"), sup=b, timeout=10)
        assert group_gone(run["pgid"])


def test_worker_command(store):
    """`alto worker` leads the database, prints status changes, and leaves on SIGTERM."""
    (run_id,) = queue(store, SHORT)
    # A stand-in run process (no torch start-up): its argv names alto.train and the run id.
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "alto.train",
                             str(run_id)])
    store.update_run(run_id, status="running", pid=fake.pid, pgid=fake.pid, started_at=time.time())
    worker = subprocess.Popen([sys.executable, "-m", "alto.cli", "worker", "--db", str(store.path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        probe, deadline = Supervisor(store), time.monotonic() + 20
        while probe.try_lead():  # wait until the worker holds the lock
            probe.stop()
            assert time.monotonic() < deadline, "the worker never took the lock"
            time.sleep(0.1)
        time.sleep(1.0)  # a few ticks: the worker sees the run running
        fake.kill()
        fake.wait()
        run = wait_for(store, run_id, status_is("crashed"), timeout=10)
        assert "is gone" in run["error"]
        time.sleep(1.0)  # one more tick, to print the change
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=20)
    finally:
        for proc in (fake, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert worker.returncode == 0, out
    assert f"run {run_id} " in out and "running -> crashed" in out and "worker stopped" in out


def test_a_second_store_in_the_process_keeps_the_wal(tmp_path):
    first = Store(tmp_path / "x.db")
    first.create_experiment("e")
    Store(tmp_path / "x.db")
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('select count(*) from sqlite_master').fetchone(); c.close()")
    subprocess.run([sys.executable, "-c", code, str(first.path)], check=True)  # opens, reads, closes
    assert Path(f"{first.path}-wal").exists()  # `first` is still connected: the WAL must stay
