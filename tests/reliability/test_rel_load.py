"""Load: 8 real runs write at once while 3 reader threads poll the live queries.

A Supervisor with 8 slots starts 8 `python -m alto.train` processes (digits MLP, 100 steps each).
Meanwhile 3 threads poll what the Live page polls: series(..., after_step=<last seen>) for the
tail, summary() for the run table, list_runs() for statuses. Every tail read must continue exactly
where the previous one stopped (no step missing, none twice). Afterwards: no "database is locked"
(or any other error) in readers, supervisor ticks, run statuses/errors or run logs, and every run
holds steps 0..99. Prints rows/s written and reader latency p50/p99.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from alto.runner import Supervisor
from alto.store import Store
from rel_support import kill_runs_of, percentile, queue_runs, tiny

RUNS, STEPS, READERS = 8, 100, 3


@pytest.mark.slow
def test_eight_writers_three_readers_no_locks_no_gaps(tmp_path):
    store = Store(tmp_path / "load.db")
    optimizers = ["sgd", "alto", "lamb", "lion"]
    lrs = {"sgd": 0.1, "alto": 0.01, "lamb": 0.01, "lion": 0.001}
    run_ids = queue_runs(store, [tiny(optimizer=optimizers[i % 4], lr=lrs[optimizers[i % 4]], seed=i // 4,
                                      max_steps=STEPS, batch_size=128, model_kwargs={"hidden": [256, 256]})
                                 for i in range(RUNS)], name="load")
    stop = threading.Event()
    errors: list[str] = []
    latencies: dict[str, list[float]] = {"series": [], "summary": [], "list_runs": []}
    gaps: list[str] = []
    lock = threading.Lock()

    def reader(index: int) -> None:
        seen = {r: -1 for r in run_ids}
        try:
            while not stop.is_set():
                for rid in run_ids:
                    t = time.perf_counter()
                    tail = store.series(rid, "train/loss", after_step=seen[rid])
                    took = time.perf_counter() - t
                    steps = [int(s) for s in tail["step"]]
                    if steps and steps != list(range(seen[rid] + 1, steps[-1] + 1)):
                        gaps.append(f"reader {index} run {rid}: after {seen[rid]} got {steps[:5]}...")
                    if steps:
                        seen[rid] = steps[-1]
                    with lock:
                        latencies["series"].append(took)
                for name, call in (("summary", lambda: store.summary(run_ids)),
                                   ("list_runs", lambda: store.list_runs())):
                    t = time.perf_counter()
                    call()
                    with lock:
                        latencies[name].append(time.perf_counter() - t)
                stop.wait(0.1)
        except Exception as exc:  # noqa: BLE001 - every reader failure is a finding
            errors.append(f"reader {index}: {type(exc).__name__}: {exc}")
        finally:
            store.close()  # this thread's connection

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
    sup = Supervisor(store, slots=RUNS, poll_s=0.2)
    tick_errors: list[str] = []
    first_row_at = None
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 200
        while True:
            try:
                sup.tick()
            except Exception as exc:  # noqa: BLE001
                tick_errors.append(f"{type(exc).__name__}: {exc}")
            runs = store.list_runs()
            if first_row_at is None and any(r["last_step"] is not None for r in runs):
                first_row_at = time.time()
            if all(r["status"] not in ("queued", "running", "stalled") for r in runs):
                break
            assert time.monotonic() < deadline, [(r["id"], r["status"], r["last_step"]) for r in runs]
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        sup.stop()
        kill_runs_of(store)
    wall = time.monotonic() - started

    runs = store.list_runs()
    logs = {r["id"]: Path(r["log_path"]).read_text(errors="replace") for r in runs}
    locked = [f"run {rid} log" for rid, text in logs.items() if "locked" in text.lower()]
    locked += [f"run {r['id']} error" for r in runs if "locked" in (r["error"] or "").lower()]
    locked += [e for e in errors + tick_errors if "locked" in e.lower()]
    assert locked == [], locked
    assert errors == [] and tick_errors == [] and gaps == [], (errors, tick_errors, gaps[:5])
    assert [r["status"] for r in runs] == ["finished"] * RUNS, [(r["status"], r["error"]) for r in runs]
    for r in runs:
        assert r["last_step"] == STEPS - 1
        steps = store.series(r["id"], "train/loss", max_points=10 ** 6)["step"]
        assert list(steps) == list(range(STEPS)), f"run {r['id']} misses steps"
        assert store.summary([r["id"]])[r["id"]]["train/loss"]["count"] == STEPS
    assert store.integrity_check() == "ok"

    rows = store.connection().execute("SELECT count(*) FROM metrics").fetchone()[0]
    step_rows = store.connection().execute("SELECT count(*) FROM steps").fetchone()[0]
    window = max(r["finished_at"] for r in runs) - first_row_at
    train_s = sum(store.get_params(r["id"])["wall_s"] for r in runs)
    # how many runs were training at the same moment (training window = the last wall_s)
    windows = [(r["finished_at"] - store.get_params(r["id"])["wall_s"], r["finished_at"]) for r in runs]
    overlap = max(sum(a <= t < b for a, b in windows) for t, _ in windows)
    everything = [x for v in latencies.values() for x in v]
    print(f"\nLOAD {RUNS} runs x {STEPS} steps, {READERS} readers, {wall:.1f} s in all: "
          f"{rows} metric rows + {step_rows} step rows written; "
          f"{rows / window:,.0f} metric rows/s over the {window:.1f} s write window "
          f"({rows / train_s:,.0f} rows per training second per run); "
          f"up to {overlap} runs training at once; locked errors: 0; reader errors: 0; missing steps: 0")
    for name, values in [*latencies.items(), ("all", everything)]:
        print(f"LOAD reader {name}: n={len(values)} p50={percentile(values, 50) * 1e3:.2f} ms "
              f"p99={percentile(values, 99) * 1e3:.2f} ms max={max(values) * 1e3:.1f} ms")
    assert len(latencies["series"]) > RUNS * READERS  # the readers really ran during the writes
