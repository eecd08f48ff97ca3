"""Crash: SIGKILL real run processes mid-write; the database stays whole and says `crashed`.

Runs are real `python -m alto.train` processes started by a Supervisor (their own sessions). Each
is killed with SIGKILL once it has committed at least N steps (N = 5, 40, 120), and one run with
tiny steps (a few hundred steps per transaction, a transaction every ~0.2 s) at a seeded random
moment while it writes. A second test kills a process that does nothing but write through
MetricWriter (a commit every 1..60 steps, no pause) at random moments, and lets a *fresh*
Supervisor (no Popen handle, only the pid in the database) find it dead.

After each kill: PRAGMA integrity_check is "ok"; train/loss (and the steps table) hold exactly
steps 0..runs.last_step with no gap; the summary agrees with the rows; the supervisor records
`crashed` (measured from the kill, asserted < 30 s).
"""
from __future__ import annotations

import random
import subprocess
import time

import pytest

from alto.runner import Supervisor
from alto.store import Store
from rel_support import ENV, PYTHON, committed_steps, kill_group, kill_runs_of, queue_runs, tiny, wait_until

KILL_AFTER = (5, 40, 120)  # committed steps


def assert_committed_prefix(store: Store, run_id: int) -> int:
    """train/loss, lr and the steps table hold exactly 0..last_step; returns last_step."""
    run = store.get_run(run_id)
    last = run["last_step"]
    assert last is not None and last >= 0, f"run {run_id}: nothing committed"
    for key in ("train/loss", "lr"):
        steps = committed_steps(store, run_id, key)
        assert steps == list(range(last + 1)), (
            f"run {run_id} {key}: {len(steps)} rows, first gap/extra near "
            f"{next((i for i, s in enumerate(steps) if s != i), len(steps))}, last_step={last}")
    n_steps = store.connection().execute(
        "SELECT count(*), min(step), max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()
    assert n_steps == (last + 1, 0, last)
    summary = store.summary([run_id])[run_id]["train/loss"]
    assert summary["last_step"] == last and summary["count"] == last + 1
    # every committed value is readable through the product's own query as well
    series = store.series(run_id, "train/loss", max_points=10 ** 7)
    assert list(series["step"]) == list(range(last + 1))
    return last


@pytest.mark.slow
def test_sigkill_real_runs_at_several_points(tmp_path):
    store = Store(tmp_path / "crash.db")
    # step cost chosen so that the first flushes (every 0.5 s) land near each kill point
    plain = [tiny(seed=0, max_steps=100_000, batch_size=512, data_limit=1024, model_kwargs={"hidden": [1024, 1024]}),
             tiny(seed=1, max_steps=100_000, batch_size=128, model_kwargs={"hidden": [256, 256]}),
             tiny(seed=2, max_steps=100_000)]
    # tiny steps: ~1 ms each, so every flush is a 200-step, ~2,600-row transaction
    fast = tiny(seed=9, max_steps=1_000_000, batch_size=4, data_limit=64, model_kwargs={"hidden": [4]})
    run_ids = queue_runs(store, [*plain, fast], name="crash")
    targets = dict(zip(run_ids, [*KILL_AFTER, None]))
    fast_id = run_ids[-1]
    rng = random.Random(20240601)
    sup = Supervisor(store, slots=len(run_ids), poll_s=0.1)
    killed: dict[int, float] = {}
    seconds: dict[int, float] = {}
    fast_ready_at = None
    try:
        deadline = time.monotonic() + 150
        while len(seconds) < len(run_ids):
            assert time.monotonic() < deadline, f"runs never reached their kill points: {store.list_runs()}"
            sup.tick()
            for run in store.list_runs():
                rid, status, last = run["id"], run["status"], run["last_step"]
                if rid in killed:
                    if status == "crashed" and rid not in seconds:
                        seconds[rid] = time.monotonic() - killed[rid]
                    continue
                assert status in ("queued", "running"), f"run {rid} ended on its own: {status} {run['error']}"
                n = targets[rid]
                if n is not None and last is not None and last + 1 >= n:
                    kill_group(run["pgid"])
                    killed[rid] = time.monotonic()
                elif rid == fast_id and last is not None and last >= 600:
                    # writing as fast as it can: kill at a random moment within ~2 flush periods
                    fast_ready_at = fast_ready_at or time.monotonic() + rng.uniform(0.0, 0.5)
                    if time.monotonic() >= fast_ready_at:
                        kill_group(run["pgid"])
                        killed[rid] = time.monotonic()
            time.sleep(0.02)
    finally:
        sup.stop()
        kill_runs_of(store)

    assert store.integrity_check() == "ok"
    print()
    for rid in run_ids:
        run = store.get_run(rid)
        last = assert_committed_prefix(store, rid)
        assert run["status"] == "crashed" and "SIGKILL" in run["error"] and run["finished_at"]
        assert seconds[rid] < 30
        label = f"after >= {targets[rid]} steps" if targets[rid] else "tiny steps, mid-write"
        print(f"CRASH run {rid} killed {label}: {last + 1} steps committed, contiguous; "
              f"crashed {seconds[rid]:.2f} s after SIGKILL; integrity_check=ok")


HAMMER = """
import os, random, sys, time
from alto.store import Store
db, run_id, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = Store(db)
store.update_run(run_id, status="running", started_at=time.time(), heartbeat_at=time.time(),
                 pid=os.getpid(), pgid=os.getpgid(0))
rng = random.Random(seed)
keys = [f"k{i:02d}" for i in range(19)]
with store.writer(run_id, flush_every_s=float("inf")) as w:
    step, batch = 0, rng.randint(1, 60)
    while True:
        w.log(step, {"train/loss": 1.0 / (step + 1), "lr": 0.1, **{k: step * 0.5 for k in keys}},
              samples=step * 8)
        step += 1
        if step % batch == 0:
            w.flush()
            batch = rng.randint(1, 60)
"""


@pytest.mark.slow
def test_sigkill_a_writer_that_never_pauses(tmp_path):
    """Kill a pure write loop at random moments (no torch import: ~1 s per process)."""
    script = tmp_path / "hammer.py"
    script.write_text(HAMMER)
    store = Store(tmp_path / "hammer.db")
    experiment = store.create_experiment("hammer")
    rng = random.Random(7)
    results = []
    for attempt in range(4):
        run_id = store.add_run(experiment, name=f"hammer {attempt}", optimizer="none", seed=attempt,
                               lr=0.0, config={})
        proc = subprocess.Popen([PYTHON, str(script), str(store.path), str(run_id), str(attempt)],
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=str(tmp_path))
        try:
            wait_until(lambda: (store.get_run(run_id)["last_step"] or 0) >= 200 or proc.poll() is not None,
                       timeout=60, every=0.02, what=f"hammer {attempt} to write")
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(rng.uniform(0.0, 0.4))
            kill_group(proc.pid)
            killed = time.monotonic()
            proc.wait(timeout=30)  # reaped: /proc/<pid> is gone
        finally:
            kill_group(proc.pid)
            proc.stderr.close()
        assert store.integrity_check() == "ok"
        last = assert_committed_prefix(store, run_id)
        # a fresh supervisor that never started this process: only the pid in the row tells
        with Supervisor(store, poll_s=0.1) as sup:
            wait_until(lambda: store.get_run(run_id)["status"] == "crashed", tick=sup.tick, timeout=30,
                       what="crashed")
        took = time.monotonic() - killed
        run = store.get_run(run_id)
        assert "gone without recording a result" in run["error"]
        rows = store.connection().execute("SELECT count(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
        results.append((last + 1, rows, took))
        print(f"\nCRASH hammer {attempt}: killed mid-write after {last + 1} committed steps ({rows} rows), "
              f"contiguous; crashed {took:.2f} s after SIGKILL (fresh supervisor); integrity_check=ok")
    assert all(r[2] < 30 for r in results)
