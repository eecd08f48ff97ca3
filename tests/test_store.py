"""alto.store: schema, migrations, NaN handling, downsampling, concurrency, deletes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sqlite3
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alto.store import MIGRATIONS, STATUSES, Store, StoreError, schema_version
from alto.store.bench import bench_store
from alto.store.db import configure, open_raw
from alto.store.migrations import migrate

# fork keeps child start-up cheap on the 2-core CI; the children open their own connections.
# fork: spawn would re-run the parent's __main__, which Streamlit's AppTest replaces in the full
# suite. A fork copies every lock, so no thread that touches SQLite may be running: the
# conftest stops the supervisors that page tests start, and fork_safe() checks it.
CTX = mp.get_context("fork")


def fork_safe() -> None:
    import threading
    live = [t.name for t in threading.enumerate() if t.name.startswith("alto-")]
    assert not live, f"threads that use SQLite are running, a fork would copy their locks: {live}"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "alto.db")
    yield s
    s.close()


def new_run(store: Store, exp: int | None = None, **kw) -> int:
    exp = exp if exp is not None else store.create_experiment("e")
    args = dict(name="r", optimizer="alto", seed=0, lr=0.1, config={"batch": 32})
    args.update(kw)
    return store.add_run(exp, **args)


def write(store: Store, run: int, steps, fn=float, key: str = "loss", **log_kw) -> None:
    with store.writer(run, flush_every_s=float("inf")) as w:
        for s in steps:
            w.log(s, {key: fn(s)}, **log_kw)


def pragmas(conn: sqlite3.Connection) -> tuple:
    return tuple(
        conn.execute(f"PRAGMA {p}").fetchone()[0]
        for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    )


# -- schema, pragmas, migrations ------------------------------------------------------


EXPECTED = ("wal", 1, 30_000, 1)  # synchronous 1 == NORMAL


def test_schema_and_pragmas_on_every_connection(store):
    tables = set(store.db.table_names())
    assert {"migrations", "experiments", "runs", "metric_keys", "metrics", "steps", "summary",
            "params", "tags", "artifacts"} <= tables
    without_rowid = {t for t in tables if store.db[t].schema.rstrip().endswith("WITHOUT ROWID")}
    assert without_rowid == {"metrics", "steps", "summary"}
    assert store.db["metrics"].pks == ["run_id", "key_id", "step"]
    assert pragmas(store.connection()) == EXPECTED

    seen = {}
    t = threading.Thread(target=lambda: seen.update(p=pragmas(store.connection()),
                                                    c=store.connection()))
    t.start()
    t.join()
    assert seen["p"] == EXPECTED
    assert seen["c"] is not store.connection()  # one connection per thread

    run = new_run(store)
    w = store.writer(run)
    assert pragmas(w._connection()) == EXPECTED
    w.close()


def test_migrations_are_idempotent(tmp_path):
    path = tmp_path / "a.db"
    s1 = Store(path)
    schema = s1.connection().execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    s2 = Store(path)
    Store(path)
    conn = s2.connection()
    assert conn.execute("SELECT version, name FROM migrations ORDER BY version").fetchall() == [
        (i, fn.__name__) for i, fn in enumerate(MIGRATIONS, 1)
    ]
    assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
    assert schema_version(conn) == len(MIGRATIONS)


def test_old_version_database_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    conn = open_raw(path)
    configure(conn)
    migrate(conn, path, MIGRATIONS[:1])
    assert schema_version(conn) == 1
    conn.execute("INSERT INTO experiments (id, name, config) VALUES (1, 'e', '{}')")
    conn.execute("INSERT INTO runs (id, experiment_id, name, status, config) "
                 "VALUES (7, 1, 'r', 'finished', '{}')")
    conn.execute("INSERT INTO metric_keys (id, key) VALUES (1, 'loss')")
    conn.executemany("INSERT INTO metrics VALUES (7, 1, ?, ?)",
                     [(0, 3.0), (1, None), (2, 1.0), (3, None)])
    conn.close()

    store = Store(path)
    assert schema_version(store.connection()) == len(MIGRATIONS)
    s = store.summary([7])[7]["loss"]
    assert math.isnan(s["last"]) and s["last_step"] == 3
    assert (s["min"], s["max"], s["count"]) == (1.0, 3.0, 4)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Store(path).connection().execute(
        "INSERT INTO migrations (version, name, applied_at) VALUES (99, 'm099_future', 0)"
    )
    with pytest.raises(StoreError, match=r"schema version 99, newer than this ALTO Lab"):
        Store(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"definitely not a database\n" * 100)
    with pytest.raises(StoreError, match="is not an ALTO Lab database"):
        Store(path)
    # Header looks right but the body is garbage: sqlite's own error, still a StoreError.
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreError, match="is not an ALTO Lab database"):
        Store(path)


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"is not an ALTO Lab database .*users"):
        Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["users"]
    conn.close()


def test_empty_sqlite_file_is_initialised(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    assert schema_version(Store(path).connection()) == len(MIGRATIONS)


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store(blocker / "sub" / "alto.db")
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="not writable"):
            Store(ro / "alto.db")
    finally:
        ro.chmod(0o755)


def test_parent_folders_are_created(tmp_path):
    s = Store(tmp_path / "x" / "y" / "alto.db")
    assert s.path.exists() and s.integrity_check() == "ok"


# -- runs, experiments, artifacts ----------------------------------------------------


def test_experiments_runs_params_tags_artifacts(store):
    e1 = store.create_experiment("first", preset="cifar", config={"a": 1})
    e2 = store.create_experiment("second", notes="hi")
    r1 = new_run(store, e1, tags=["baseline", "sgd"], total_steps=100)
    r2 = new_run(store, e1, name="r2", status="running")
    new_run(store, e2)

    run = store.get_run(r1)
    assert run["config"] == {"batch": 32} and run["status"] == "queued"
    assert run["tags"] == ["baseline", "sgd"] and run["total_steps"] == 100

    exps = store.list_experiments()
    assert [e["id"] for e in exps] == [e2, e1]  # newest first
    assert exps[1]["run_counts"] == {"queued": 1, "running": 1} and exps[1]["n_runs"] == 2
    assert store.get_experiment(e1)["config"] == {"a": 1}
    with pytest.raises(KeyError):
        store.get_experiment(999)
    with pytest.raises(KeyError):
        store.get_run(999)
    with pytest.raises(KeyError):
        new_run(store, 999)

    assert [r["id"] for r in store.list_runs(experiment_id=e1)] == [r1, r2]
    assert [r["id"] for r in store.list_runs(status="running")] == [r2]
    assert len(store.list_runs(status=["queued", "running"])) == 3

    store.set_params(r1, {"lr": 0.1, "betas": [0.9, 0.99], "name": "x"})
    store.set_params(r1, {"lr": 0.2})
    assert store.get_run(r1)["params"] == {"betas": [0.9, 0.99], "lr": 0.2, "name": "x"}
    store.add_tags(r1, ["extra", "sgd"])
    store.remove_tag(r1, "baseline")
    assert store.get_run(r1)["tags"] == ["extra", "sgd"]
    store.set_notes("looks good", run_id=r1)
    store.set_notes("exp note", experiment_id=e1)
    assert store.get_run(r1)["notes"] == "looks good"
    assert store.get_experiment(e1)["notes"] == "exp note"

    a1 = store.put_artifact(kind="speedup", name="s", payload={"x": [1, 2]}, experiment_id=e1)
    a2 = store.put_artifact(kind="ttt", name="t", payload={"nan": math.nan}, run_id=r1)
    assert [a["id"] for a in store.artifacts()] == [a2, a1]
    assert store.artifacts(kind="speedup")[0]["payload"] == {"x": [1, 2]}
    assert math.isnan(store.artifacts(run_id=r1)[0]["payload"]["nan"])
    assert store.artifacts(experiment_id=e2) == []


def test_experiment_named_finds_or_makes_one_even_when_callers_race(store):
    other = store.create_experiment("job", preset="demo")  # same name, made by something else
    got: list[int] = []
    barrier = threading.Barrier(4)

    def find():
        barrier.wait()
        got.append(store.experiment_named("job", preset="alto.track", config={"source": "alto.track"}))

    threads = [threading.Thread(target=find) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and got[0] != other
    assert store.get_experiment(got[0])["config"] == {"source": "alto.track"}
    assert store.experiment_named("job", preset="alto.track") == got[0]
    assert store.experiment_named("job2", preset="alto.track") not in (got[0], other)


def test_update_run_validates_fields_and_status(store):
    run = new_run(store)
    store.update_run(run, status="finished", finished_at=5.0, error=None, config={"b": 2})
    got = store.get_run(run)
    assert (got["status"], got["finished_at"], got["config"]) == ("finished", 5.0, {"b": 2})
    with pytest.raises(ValueError, match="'colour'"):
        store.update_run(run, colour="red")
    with pytest.raises(ValueError, match="'id'"):
        store.update_run(run, id=5)
    with pytest.raises(ValueError, match="'exploded'"):
        store.update_run(run, status="exploded")
    with pytest.raises(ValueError, match="'done'"):
        new_run(store, status="done")
    with pytest.raises(ValueError, match="'nope'"):
        store.list_runs(status="nope")
    with pytest.raises(KeyError):
        store.update_run(999, status="failed")
    assert store.get_run(run)["status"] == "finished"
    assert set(STATUSES) >= {"crashed", "stalled", "diverged"}


def _claimer(path, start, out) -> None:
    store = Store(path)
    start.wait()
    got = []
    while (run := store.claim_next_queued(pid=os.getpid())) is not None:
        assert run["status"] == "running" and run["pid"] == os.getpid()
        got.append(run["id"])
        time.sleep(0.005)  # let the other claimer in, so the claims really interleave
    out.put(got)


def test_claim_next_queued_is_atomic_across_processes(store):
    exp = store.create_experiment("q")
    ids = [new_run(store, exp, seed=i) for i in range(20)]
    start, out = CTX.Event(), CTX.Queue()
    fork_safe()
    procs = [CTX.Process(target=_claimer, args=(store.path, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    claimed = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    flat = claimed[0] + claimed[1]
    assert sorted(flat) == ids and len(set(flat)) == 20
    assert claimed[0] and claimed[1]
    assert claimed[0] == sorted(claimed[0])  # oldest first
    assert all(r["status"] == "running" and r["started_at"] for r in store.list_runs())
    assert store.claim_next_queued() is None


def _fill(store: Store, run: int, exp: int) -> None:
    write(store, run, range(10), samples=1)
    store.set_params(run, {"p": 1})
    store.add_tags(run, ["t"])
    store.put_artifact(kind="k", name="n", payload={}, run_id=run)
    store.put_artifact(kind="k", name="n", payload={}, experiment_id=exp)


def _counts(store: Store, run: int) -> dict:
    conn = store.connection()
    return {
        t: conn.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", (run,)).fetchone()[0]
        for t in ("metrics", "steps", "summary", "params", "tags", "artifacts")
    }


def test_delete_run_is_one_transaction_and_complete(store):
    exp = store.create_experiment("d")
    keep, doomed = new_run(store, exp), new_run(store, exp)
    _fill(store, keep, exp)
    _fill(store, doomed, exp)

    # A failure half-way through must leave everything in place.
    conn = store.connection()
    conn.execute(
        "CREATE TRIGGER boom BEFORE DELETE ON tags BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        store.delete_run(doomed)
    assert all(_counts(store, doomed).values())
    conn.execute("DROP TRIGGER boom")

    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    store.delete_run(doomed)
    conn.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert not any(_counts(store, doomed).values())
    assert all(_counts(store, keep).values())
    with pytest.raises(KeyError):
        store.get_run(doomed)
    with pytest.raises(KeyError):
        store.delete_run(doomed)


def test_delete_experiment_removes_everything(store):
    e1, e2 = store.create_experiment("a"), store.create_experiment("b")
    runs1 = [new_run(store, e1) for _ in range(3)]
    other = new_run(store, e2)
    for r in runs1:
        _fill(store, r, e1)
    _fill(store, other, e2)
    statements: list[str] = []
    store.connection().set_trace_callback(statements.append)
    store.delete_experiment(e1)
    store.connection().set_trace_callback(None)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    for r in runs1:
        assert not any(_counts(store, r).values())
    assert store.list_runs(experiment_id=e1) == [] and store.artifacts(experiment_id=e1) == []
    assert all(_counts(store, other).values())
    assert [e["id"] for e in store.list_experiments()] == [e2]
    assert store.integrity_check() == "ok"


# -- writer, NaN, summary ----------------------------------------------------------------


def test_nan_and_inf_round_trip(store):
    run = new_run(store)
    vals = {0: 1.5, 1: math.nan, 2: math.inf, 3: -math.inf, 4: math.nan}
    write(store, run, vals, fn=vals.get)
    out = store.series(run, "loss")
    np.testing.assert_array_equal(out["step"], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(out["value"], [1.5, math.nan, math.inf, -math.inf, math.nan])
    assert out["value"].dtype == np.float64 and out["step"].dtype == np.int64
    # stored as NULL, not as some sentinel
    assert store.connection().execute(
        "SELECT count(*) FROM metrics WHERE value IS NULL").fetchone()[0] == 2
    df = store.raw_metrics([run])
    assert df["value"].tolist()[2:4] == [math.inf, -math.inf]
    assert df["value"].isna().tolist() == [False, True, False, False, True]
    s = store.summary([run])[run]["loss"]
    assert math.isnan(s["last"]) and s["last_step"] == 4 and s["count"] == 5
    assert (s["min"], s["max"]) == (-math.inf, math.inf)


def test_summary_ignores_nan_for_min_max_across_flushes(store):
    run, other = new_run(store), new_run(store)
    with store.writer(run, flush_every_s=float("inf")) as w:
        w.log(0, {"loss": math.nan, "acc": 0.1})
        w.flush()
        w.log(1, {"loss": 4.0, "acc": 0.5})
        w.log(2, {"loss": 2.0})
        w.flush()
        w.log(3, {"loss": math.nan, "acc": 0.3})
        w.log(4, {"loss": 3.0})
    summ = store.summary([run, other])
    assert summ[other] == {}
    assert summ[run]["loss"] == {"last": 3.0, "last_step": 4, "min": 2.0, "max": 4.0, "count": 5}
    assert summ[run]["acc"] == {"last": 0.3, "last_step": 3, "min": 0.1, "max": 0.5, "count": 3}
    assert store.get_run(run)["last_step"] == 4 and store.get_run(run)["heartbeat_at"]
    assert store.metric_keys(run) == ["acc", "loss"] and store.metric_keys(other) == []
    assert store.metric_keys() == ["acc", "loss"]

    only_nan = new_run(store)
    write(store, only_nan, [0, 1], fn=lambda s: math.nan)
    s = store.summary([only_nan])[only_nan]["loss"]
    assert all(math.isnan(s[k]) for k in ("last", "min", "max")) and s["count"] == 2


def test_writer_flush_is_one_transaction_and_timed(store):
    run = new_run(store)
    w = store.writer(run, flush_every_s=3600)
    w.log(0, {"a": 1.0, "b": 2.0}, samples=10, epoch=0.1)
    assert store.series(run, "a")["step"].size == 0  # buffered, not yet visible
    conn = w._connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    w.log(1, {"a": 1.0})
    w.flush()
    conn.set_trace_callback(None)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements[-1] == "COMMIT"
    assert store.series(run, "a")["step"].tolist() == [0, 1]

    before = store.get_run(run)["heartbeat_at"]
    time.sleep(0.01)
    w.heartbeat()
    assert store.get_run(run)["heartbeat_at"] > before

    w.flush_every_s = 0.0  # now every log() flushes by itself
    w.log(2, {"a": 3.0})
    assert store.series(run, "a")["last_step"] == 2
    w.close()
    w.close()
    with pytest.raises(StoreError, match="closed"):
        w.log(3, {"a": 1.0})


def test_writer_refuses_a_deleted_run(store):
    run = new_run(store)
    w = store.writer(run, flush_every_s=3600)
    w.log(0, {"a": 1.0})
    store.delete_run(run)
    with pytest.raises(StoreError, match="no longer exists"):
        w.flush()
    with pytest.raises(StoreError):
        w.close()
    assert store.connection().execute("SELECT count(*) FROM metrics").fetchone()[0] == 0
    with pytest.raises(KeyError):
        store.writer(run)


def test_same_step_logged_twice_keeps_first_step_info(store):
    run = new_run(store)
    with store.writer(run, flush_every_s=float("inf")) as w:
        w.log(5, {"loss": 1.0}, wall_time=1.0, samples=100)
        w.flush()
        w.log(5, {"eval_loss": 2.0}, wall_time=9.0, epoch=0.5)
    df = store.raw_metrics([run])
    assert df["wall_time"].tolist() == [1.0, 1.0]
    assert df["samples"].tolist() == [100, 100] and df["epoch"].tolist() == [0.5, 0.5]
    assert store.raw_metrics([run], keys=["eval_loss"])["key"].tolist() == ["eval_loss"]
    assert list(store.raw_metrics([]).columns) == [
        "run_id", "key", "step", "value", "wall_time", "samples", "epoch"]


# -- series / downsampling ---------------------------------------------------------------


def test_downsampling_known_answer(store):
    """100 steps, max_points=10 -> buckets of 10 steps; values chosen so every answer is known."""
    run = new_run(store)

    def f(s: int) -> float:
        if s == 19 or 30 <= s <= 39:  # bucket 1 ends on NaN; bucket 3 is all NaN
            return math.nan
        return float((s * 7) % 10 + s // 10 * 100)  # min/max sit inside the bucket

    write(store, run, range(100), fn=f)
    out = store.series(run, "loss", max_points=10)
    np.testing.assert_array_equal(out["step"], np.arange(9, 100, 10))
    assert out["last_step"] == 99
    base = np.arange(10) * 100.0
    exp_value = base + 3.0  # (s*7)%10 at s%10 == 9 is 3
    exp_value[[1, 3]] = math.nan
    np.testing.assert_array_equal(out["value"], exp_value)
    exp_min, exp_max = base.copy(), base + 9.0
    exp_min[3] = exp_max[3] = math.nan
    np.testing.assert_array_equal(out["min"], exp_min)
    np.testing.assert_array_equal(out["max"], exp_max)
    np.testing.assert_array_equal(out["x"], out["step"].astype(float))


def test_downsampling_bounds_and_last_point(store):
    run = new_run(store)
    write(store, run, range(1001))
    out = store.series(run, "loss", max_points=100)  # width ceil(1001/100) = 11
    assert len(out["step"]) <= 100
    assert out["step"][-1] == 1000 and out["value"][-1] == 1000.0
    assert out["step"][0] == 10 and np.all(np.diff(out["step"]) > 0)
    assert out["min"][0] == 0.0 and out["max"][0] == 10.0
    # below the limit nothing is bucketed
    full = store.series(run, "loss", max_points=5000)
    assert len(full["step"]) == 1001
    np.testing.assert_array_equal(full["min"], full["value"])
    with pytest.raises(ValueError, match="max_points"):
        store.series(run, "loss", max_points=0)


def test_shared_grid_across_runs(store):
    exp = store.create_experiment("grid")
    a, b = new_run(store, exp), new_run(store, exp)
    write(store, a, range(0, 1000), fn=lambda s: 1.0)
    write(store, b, range(0, 600), fn=lambda s: 2.0)
    many = store.series_many([a, b], "loss", max_points=100)  # union range 0..999 -> width 10
    np.testing.assert_array_equal(many[a]["step"], np.arange(9, 1000, 10))
    np.testing.assert_array_equal(many[b]["step"], many[a]["step"][:60])
    ra = store.series(a, "loss", step_range=(0, 999), max_points=100)
    rb = store.series(b, "loss", step_range=(0, 999), max_points=100)
    np.testing.assert_array_equal(rb["step"], ra["step"][:60])
    # a run whose first logged step differs still lands on the shared grid
    c = new_run(store, exp)
    write(store, c, range(37, 1000))
    rc = store.series_many([a, c], "loss", max_points=100)[c]
    np.testing.assert_array_equal(rc["step"], ra["step"][3:])
    assert rc["min"][0] == 37.0


def test_step_range_and_after_step(store):
    run = new_run(store)
    write(store, run, range(1000))
    out = store.series(run, "loss", step_range=(100, 199), max_points=1000)
    np.testing.assert_array_equal(out["step"], np.arange(100, 200))
    out = store.series(run, "loss", step_range=(100, 1099), max_points=10)  # width 100
    np.testing.assert_array_equal(out["step"], [199, 299, 399, 499, 599, 699, 799, 899, 999])
    tail = store.series(run, "loss", after_step=950)
    np.testing.assert_array_equal(tail["step"], np.arange(951, 1000))
    assert tail["last_step"] == 999
    empty = store.series(run, "loss", after_step=999)
    assert empty["step"].size == 0 and empty["last_step"] is None
    both = store.series(run, "loss", step_range=(0, 500), after_step=495)
    np.testing.assert_array_equal(both["step"], [496, 497, 498, 499, 500])


def test_every_x_axis(store):
    run = new_run(store)
    with store.writer(run, flush_every_s=float("inf")) as w:
        for s in range(0, 100):
            w.log(s, {"loss": float(s)}, wall_time=s * 0.5, samples=s * 64, epoch=s / 50)
    for x, scale in (("step", 1.0), ("wall_time", 0.5), ("samples", 64.0), ("epoch", 1 / 50)):
        full = store.series(run, "loss", x=x)
        np.testing.assert_allclose(full["x"], np.arange(100) * scale)
        down = store.series(run, "loss", x=x, max_points=10)
        np.testing.assert_allclose(down["x"], down["step"] * scale)  # x at the bucket's last step
    with pytest.raises(ValueError, match="'time'"):
        store.series(run, "loss", x="time")
    # no samples/epoch logged -> NaN x, not a crash
    r2 = new_run(store)
    write(store, r2, range(5))
    assert np.isnan(store.series(r2, "loss", x="samples")["x"]).all()


def test_unknown_key_and_missing_run(store):
    run = new_run(store)
    write(store, run, range(5))
    for key in ("never_logged", "loss"):
        other = new_run(store)
        out = store.series(other, key)
        assert out["step"].size == 0 and out["last_step"] is None
    with pytest.raises(KeyError):
        store.series(12345, "loss")
    assert store.series_many([], "loss") == {}


def test_series_never_exceeds_max_points_and_keeps_last_step(tmp_path):
    store = Store(tmp_path / "prop.db")
    exp = store.create_experiment("prop")

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(
        steps=st.lists(st.integers(0, 5000), min_size=1, max_size=200, unique=True),
        max_points=st.integers(1, 40),
        window=st.none() | st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
    )
    def check(steps, max_points, window):
        run = new_run(store, exp)
        write(store, run, sorted(steps))
        if window is not None:
            window = tuple(sorted(window))
        out = store.series(run, "loss", max_points=max_points, step_range=window)
        inside = [s for s in steps if window is None or window[0] <= s <= window[1]]
        assert len(out["step"]) <= max_points
        if inside:
            assert out["last_step"] == max(inside) == out["step"][-1]
            assert out["value"][-1] == float(max(inside))
            assert out["min"].min() == float(min(inside))
        else:
            assert out["step"].size == 0

    check()


# -- concurrency ---------------------------------------------------------------------------


def _writer_proc(path, run_id, steps, errors) -> None:
    try:
        store = Store(path)
        with store.writer(run_id, flush_every_s=0.0) as w:  # one commit per step: max contention
            for s in range(steps):
                w.log(s, {"loss": 1.0 / (s + 1), "acc": s / steps}, samples=s * 8)
    except Exception as exc:  # report instead of dying silently
        errors.put(f"run {run_id}: {exc!r}")


def test_concurrent_writers_and_tail_reader(store):
    steps = 1000
    exp = store.create_experiment("conc")
    runs = [new_run(store, exp, seed=i, status="running") for i in range(4)]
    errors = CTX.Queue()
    fork_safe()
    procs = [CTX.Process(target=_writer_proc, args=(store.path, r, steps, errors)) for r in runs]
    for p in procs:
        p.start()
    seen: dict[int, list[int]] = {r: [] for r in runs}
    after: dict[int, int | None] = {r: None for r in runs}
    polls = 0
    while any(p.is_alive() for p in procs) or polls == 0:
        for r in runs:
            out = store.series(r, "loss", after_step=after[r])
            if out["last_step"] is not None:
                seen[r] += out["step"].tolist()
                after[r] = out["last_step"]
        store.summary(runs)
        polls += 1
    for p in procs:
        p.join(30)
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    assert errs == [] and all(p.exitcode == 0 for p in procs)
    for r in runs:  # final poll catches the tail written after the last loop
        out = store.series(r, "loss", after_step=after[r])
        seen[r] += out["step"].tolist()
        assert seen[r] == list(range(steps))  # no step missing, none twice
        assert store.series(r, "acc", max_points=10_000)["step"].tolist() == list(range(steps))
        assert store.summary([r])[r]["loss"]["count"] == steps
        assert store.get_run(r)["last_step"] == steps - 1
    assert polls > 1
    assert store.integrity_check() == "ok"


# -- bench -------------------------------------------------------------------------------


def test_bench_store_smoke(tmp_path):
    out = bench_store(tmp_path / "bench.db", rows=2000, keys=5, batch_steps=20, tail_reads=5)
    assert out["rows"] == 2000
    assert out["batched_rows_per_s"] > 0 and out["per_step_rows_per_s"] > 0
    assert out["tail_read_ms_median"] >= 0 and out["full_series_points"] == 400
