"""Runs forked from the warm fork server behave as `python -m alto.train` processes do, and every
engine process keeps the memory it frees. Real processes, a real SQLite file, tiny digits runs.

The allocator checks look at a live process from outside: with freed memory kept, glibc grows the
heap by M_TOP_PAD (1 GiB) at a time, so its [heap] mapping is at least that large; with glibc's
defaults a tiny run's heap is a few hundred MB at most. torchrun ranks run `python -m alto.train`,
the entry point the supervised-run check covers.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alto.probes.flatness_job import queue_flatness_job
from alto.runner import JOB, Supervisor, process_alive
from alto.runner.bench import bench_memory
from alto.runner import spawn
from alto.runner.spawn import ForkServer, ForkServerSpawn, NoAnswer, is_engine_command, spawn_process
from alto.runner.supervisor import _gpu_ids
from alto.store import Store
from alto.train.config import RunConfig
from alto.train.memory import M_TOP_PAD, OFF_ENV, SETTINGS
from conftest import ROOT
from test_flatness_job import copy_db
from test_runner import _cmdline, group_gone, queue, status_is, training, wait_for
from test_runner import store, supervisors  # noqa: F401  (fixtures: a fresh database, its runs killed after)

LONG = 3000   # steps: long enough to look at, kill or cancel
MEDIUM = 800    # steps (of at most 1000: queue() asks for 1000 full-batch epochs): seconds, to look at first
TOP_PAD = dict(SETTINGS)[M_TOP_PAD]
glibc_only = pytest.mark.skipif(not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"),
                                reason="the allocator settings are glibc's")


def forking(store: Store, supervisors: list, **kwargs) -> Supervisor:
    sup = Supervisor(store, spawn=ForkServerSpawn(), **kwargs)
    supervisors.append(sup)
    return sup


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def exit_status(server: ForkServer, pid: int, timeout: float = 20.0) -> int:
    """How the server's child `pid` ended, once reported (it may still be exiting after recording its end)."""
    deadline = time.monotonic() + timeout
    while server.returncode(pid) is None:
        assert time.monotonic() < deadline, f"the fork server never reported the end of {pid}"
        time.sleep(0.05)
    return server.returncode(pid)


def heap_size(pid: int) -> int:
    """Bytes of the process's [heap] mapping (0 if it has none)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if line.endswith("[heap]"):
            low, high = (int(x, 16) for x in line.split()[0].split("-"))
            return high - low
    return 0


# --- runs through the fork server ----------------------------------------------------------------

@pytest.mark.slow
def test_a_forked_run_is_its_own_process_and_finishes_with_its_metrics(store, supervisors):
    (run_id,) = queue(store, MEDIUM)
    sup = forking(store, supervisors)
    run = wait_for(store, run_id, training, sup=sup)
    assert _ppid(run["pid"]) == sup.spawn.server.process.pid  # forked by the server
    assert run["pgid"] == run["pid"] == os.getsid(run["pid"])  # leads its own session
    assert _cmdline(run["pid"]).split() == [sys.executable, "-m", "alto.train", str(run_id), "--db", str(store.path)]
    assert process_alive(run["pid"], run_id)  # by its command line alone, as a later supervisor checks
    run = wait_for(store, run_id, status_is("finished"), sup=sup, timeout=120)
    assert run["last_step"] == MEDIUM - 1
    assert store.summary([run_id])[run_id]["train/loss"]["count"] == MEDIUM
    assert f"run {run_id}: finished" in Path(run["log_path"]).read_text()
    assert exit_status(sup.spawn.server, run["pid"]) == 0  # the server reaped it and said so
    assert store.get_params(run_id)["setup_s"] >= 0


def test_sigkill_of_a_forked_run_is_crashed_by_that_signal(store, supervisors):
    (run_id,) = queue(store, LONG)
    sup = forking(store, supervisors)
    run = wait_for(store, run_id, training, sup=sup)
    os.killpg(run["pgid"], signal.SIGKILL)
    run = wait_for(store, run_id, status_is("crashed"), sup=sup, timeout=10)
    assert "killed by SIGKILL" in run["error"]  # the exit status came back through the server
    assert group_gone(run["pgid"])  # reaped by the server: no zombie


def test_cancel_a_forked_run(store, supervisors):
    (run_id,) = queue(store, LONG)
    sup = forking(store, supervisors)
    wait_for(store, run_id, training, sup=sup)
    assert sup.cancel(run_id) is True
    run = wait_for(store, run_id, status_is("cancelled"), sup=sup, timeout=15)
    wait_for(store, run_id, lambda r: group_gone(r["pgid"]), sup=sup, timeout=5)
    assert "killed" not in (run["error"] or "")  # it stopped itself on SIGTERM


@pytest.mark.slow
def test_runs_outlive_the_fork_server_and_the_next_run_gets_a_new_one(store, supervisors):
    (first,) = queue(store, LONG)
    (second,) = queue(store, 40)
    sup = forking(store, supervisors, slots=1)
    run = wait_for(store, first, training, sup=sup)
    old = sup.spawn.server
    os.kill(old.process.pid, signal.SIGKILL)
    step = run["last_step"]
    run = wait_for(store, first, lambda r: r["last_step"] > step + 20, sup=sup)
    assert run["status"] == "running" and old.gone  # followed by its pid now, like an adopted run
    assert store.get_run(second)["status"] == "queued"  # the slot is still taken
    assert sup.cancel(first) is True
    wait_for(store, first, status_is("cancelled"), sup=sup, timeout=20)
    run = wait_for(store, second, status_is("finished"), sup=sup, timeout=60)
    new = sup.spawn.server
    assert new is not old and exit_status(new, run["pid"]) == 0  # forked by a fresh server


@pytest.mark.slow
def test_a_restarted_supervisor_adopts_a_forked_run(store, supervisors):
    (run_id,) = queue(store, LONG)
    a = forking(store, supervisors, poll_s=0.1)
    assert a.start() is True
    run = wait_for(store, run_id, training)
    assert _ppid(run["pid"]) == a.spawn.server.process.pid
    a.stop()  # the app goes away; its run must not
    assert not group_gone(run["pgid"])

    b = Supervisor(store, spawn=spawn_process)  # a new app: no handle on the fork server's children
    supervisors.append(b)
    step = run["last_step"]
    run = wait_for(store, run_id, lambda r: r["last_step"] > step + 20, sup=b)
    assert run["status"] == "running" and b.is_leader
    os.killpg(run["pgid"], signal.SIGKILL)
    run = wait_for(store, run_id, status_is("crashed"), sup=b, timeout=10)
    assert "is gone" in run["error"]


def test_the_supervisor_forks_by_default_where_it_can(store, supervisors, monkeypatch):
    sup = Supervisor(store)
    supervisors.append(sup)
    assert (sup.spawn is spawn_process) if sup.gpus else isinstance(sup.spawn, ForkServerSpawn)
    assert Supervisor(store, python="/another/python").spawn is spawn_process
    monkeypatch.setenv("ALTO_FORK_SERVER", "0")
    assert Supervisor(store).spawn is spawn_process

    python = sys.executable
    assert is_engine_command([python, "-m", "alto.train", "1", "--db", "x.db"], python)
    assert is_engine_command([python, "-m", "alto.probes.flatness_job", "1"], python)
    assert not is_engine_command([python, "-m", "torch.distributed.run", "-m", "alto.train"], python)
    assert not is_engine_command(["/fake/python", "-m", "alto.train", "1"], python)
    assert not is_engine_command([python, "-c", "pass"], python)


# --- the fork server itself ---------------------------------------------------------------------

@pytest.fixture
def server():
    """A fork server that can also run tests/fork_probe.py."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    server = ForkServer(sys.executable, env)
    assert server.wait_ready(180), "the fork server never became ready"
    yield server
    server.close()


def fork_probe(server: ForkServer, tmp_path: Path, *args: str, env: dict | None = None):
    log_path = tmp_path / f"probe_{len(list(tmp_path.glob('probe_*.log')))}.log"
    with open(log_path, "ab") as log:
        child = server.spawn([sys.executable, "-m", "fork_probe", *args], {**os.environ, **(env or {})}, log)
    return child, log_path


def wait_exit(child, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while child.poll() is None:
        assert time.monotonic() < deadline, f"child {child.pid} still running"
        time.sleep(0.05)
    return child.returncode


def wait_text(path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.05)


def test_a_forked_child_is_set_up_like_a_new_process(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    child, log = fork_probe(server, tmp_path, "one", "two", env={"PROBE_ENV": "yes", "OMP_NUM_THREADS": "2"})
    assert wait_exit(child) == 0
    seen = json.loads(log.read_text())
    assert seen == {"argv": ["one", "two"], "cwd": str(tmp_path), "probe_env": "yes", "session_leader": True,
                    "pgid": child.pid, "pid": child.pid, "threads": 2, "name": "__main__",
                    "cmdline": ["fork_probe", "one", "two"]}


@pytest.mark.parametrize(("args", "code", "says"), [
    (["exit", "3"], 3, ""),
    (["exit", "no luck"], 1, "no luck"),
    (["raise"], 1, "RuntimeError: the probe failed on purpose"),
], ids=["exit-code", "exit-message", "exception"])
def test_exit_statuses_come_back_as_the_interpreter_gives_them(server, tmp_path, args, code, says):
    child, log = fork_probe(server, tmp_path, *args)
    assert wait_exit(child) == code
    assert says in log.read_text()


def test_a_killed_child_reports_the_signal_and_closing_the_server_leaves_children_running(server, tmp_path):
    killed, log = fork_probe(server, tmp_path, "sleep")
    wait_text(log, "sleeping")
    os.killpg(killed.pid, signal.SIGKILL)
    assert wait_exit(killed) == -signal.SIGKILL

    child, log = fork_probe(server, tmp_path, "sleep")
    wait_text(log, "sleeping")
    server.close()
    assert server.gone and server.process.returncode is not None
    try:
        assert child.orphaned and child.poll() is None
        os.kill(child.pid, 0)  # still there
    finally:
        os.killpg(child.pid, signal.SIGKILL)


def test_each_answer_goes_to_the_request_it_answers(server, tmp_path):
    with open(tmp_path / "earlier.log", "ab") as log:  # a request whose answer nobody waits for
        socket.send_fds(server._sock, [json.dumps({"id": 999, "argv": [sys.executable, "-m", "fork_probe", "exit", "0"],
                                                   "env": dict(os.environ), "cwd": os.getcwd()}).encode()],
                        [log.fileno()])
    child, log = fork_probe(server, tmp_path, "mine")
    assert wait_exit(child) == 0
    assert json.loads(log.read_text())["pid"] == child.pid


def test_a_request_the_server_does_not_answer_in_time_fails_and_is_not_started_twice(tmp_path, monkeypatch):
    starts = ForkServerSpawn(server_env={**os.environ, "OMP_NUM_THREADS": "1"})
    cli = [sys.executable, "-m", "alto.cli"]  # an engine command: what the fork server runs
    try:
        assert starts.warm_up().wait_ready(180), "the fork server never became ready"
        first = starts.server
        monkeypatch.setattr(spawn, "ANSWER_TIMEOUT_S", 0.0)  # a server slower than the limit
        with open(tmp_path / "first.log", "ab") as log, pytest.raises(NoAnswer, match="did not answer"):
            starts([*cli, "--help"], dict(os.environ), log)
        assert first.gone and first.process.returncode is not None  # stopped: its late answer reaches nobody

        monkeypatch.setattr(spawn, "ANSWER_TIMEOUT_S", 30.0)
        with open(tmp_path / "second.log", "ab") as log:
            child = starts([*cli, "no-such-command"], dict(os.environ), log)
        assert isinstance(child, spawn.ForkedProcess) and starts.server is not first
        assert wait_exit(child) == 2  # argparse's exit: this request's process, not the first's
    finally:
        starts.close()


def test_a_run_whose_start_got_no_answer_is_recorded_failed_with_why(store, supervisors):
    def no_answer(argv, env, log):
        raise NoAnswer("the fork server did not answer within 30 s and was stopped; the process may have started anyway")

    sup = Supervisor(store, spawn=no_answer)
    supervisors.append(sup)
    (run_id,) = queue(store, 3)
    sup.tick()
    run = store.get_run(run_id)
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert "did not answer" in run["error"] and "may have started" in run["error"]


# --- freed memory stays with the process --------------------------------------------------------

MALLOC_PROBE = """
import ctypes, json
from alto.train.memory import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
applied = keep_freed_memory()
before = libc.mallinfo2()
block = libc.malloc(64 << 20)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({"applied": applied, "mmapped": during.hblkhd - before.hblkhd, "heap_kept": after.arena - before.arena}))
"""


@glibc_only
@pytest.mark.parametrize("off", [False, True], ids=["kept", "glibc-defaults"])
def test_keep_freed_memory_takes_effect_when_set_at_run_time(off):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if off:
        env[OFF_ENV] = "0"
    out = subprocess.run([sys.executable, "-c", MALLOC_PROBE], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    if off:
        assert seen["applied"] is False and seen["mmapped"] >= 64 << 20  # a large block is its own mapping
    else:
        assert seen["applied"] is True and seen["mmapped"] == 0
        assert seen["heap_kept"] >= 64 << 20  # served from the heap, and still there after free()


@glibc_only
@pytest.mark.parametrize("how", ["new process", "fork server", "new process, glibc defaults"])
def test_supervised_runs_keep_freed_memory(store, supervisors, monkeypatch, how):
    if how.endswith("glibc defaults"):
        monkeypatch.setenv(OFF_ENV, "0")  # the control: shows the heap check tells the two apart
    (run_id,) = queue(store, LONG)
    sup = Supervisor(store, spawn=ForkServerSpawn() if how == "fork server" else spawn_process)
    supervisors.append(sup)
    run = wait_for(store, run_id, training, sup=sup)
    heap = heap_size(run["pid"])
    sup.cancel(run_id)
    wait_for(store, run_id, status_is("cancelled"), sup=sup, timeout=15)
    assert (heap < TOP_PAD) if how.endswith("glibc defaults") else (heap >= TOP_PAD), heap


@glibc_only
def test_alto_run_keeps_freed_memory(tmp_path):
    db = tmp_path / "cli.db"
    proc = subprocess.Popen([sys.executable, "-m", "alto.cli", "run", "--preset", "demo-digits", "--optimizers", "sgd",
                             "--seeds", "1", "--max-steps", str(LONG), "--db", str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not db.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "alto run never created its database"
            time.sleep(0.1)
        store = Store(db)
        while not any((r["last_step"] or 0) >= 5 for r in store.list_runs()):
            assert time.monotonic() < deadline and proc.poll() is None, "alto run never trained"
            time.sleep(0.1)
        assert heap_size(proc.pid) >= TOP_PAD
    finally:
        proc.kill()
        proc.wait()


@glibc_only
def test_flatness_jobs_keep_freed_memory(filled_db, tmp_path):
    store = Store(copy_db(filled_db, tmp_path))
    job_id = queue_flatness_job(store, store.list_experiments()[0]["id"], iters=1000, trace_samples=1000)
    sup = Supervisor(store, spawn=spawn_process)
    try:
        deadline = time.monotonic() + 60
        while True:  # until it has measured its first run (seconds of work are left)
            sup.tick()
            job = store.get_job(job_id)
            if job["log_path"] and "[1/" in Path(job["log_path"]).read_text():
                break
            assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
            time.sleep(0.1)
        assert heap_size(job["pid"]) >= TOP_PAD
    finally:
        sup.cancel(job_id, JOB)
        deadline = time.monotonic() + 20
        while store.get_job(job_id)["status"] == "running" and time.monotonic() < deadline:
            sup.tick()
            time.sleep(0.1)
        sup.stop()


# --- the benchmarks -----------------------------------------------------------------------------

@glibc_only
@pytest.mark.slow
def test_bench_memory_shows_fewer_faults_with_memory_kept():
    # one wide layer: its 42 MB activations lie above glibc's largest dynamic mmap threshold (32 MiB)
    config = RunConfig(dataset="digits", model="mlp", model_kwargs={"hidden": [8192]}, optimizer="sgd",
                       max_steps=10, epochs=1000, device="cpu", threads=1)
    row = bench_memory(config)
    assert row["steps"] == 10
    assert 0 < row["minor_faults_per_step_kept"] < row["minor_faults_per_step_default"]
    assert row["faults_ratio"] > 1


@pytest.mark.slow
@pytest.mark.skipif(bool(_gpu_ids()), reason="the supervisor forks runs only on machines without GPUs")
def test_bench_startup_command_prints_both_modes_and_their_ratio():
    out = subprocess.run([sys.executable, "-m", "alto.cli", "bench", "startup", "--preset", "demo-digits",
                          "--optimizers", "sgd", "--seeds", "1", "--max-steps", "5"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r.get("mode") for r in rows] == ["new process", "fork server", None]
    for row in rows[:2]:
        assert row["runs"] == 1 and row["statuses"] == ["finished"] and row["start_up_s_median"] > 0
    assert rows[1]["fork_server_warm_up_s"] > 0 and rows[2]["ratio"] > 0
