"""Faults: a diverging run, an unwritable or full database, a damaged or foreign file, missing data.

How "unwritable" and "full" are produced without root-only tricks (the tests run as root, which
ignores permission bits, so a chmod-ed folder proves nothing):

* read-only location: kernel file systems (/sys, /proc) refuse to create files for everyone,
  root included. The database path is put there.
* full disk: `PRAGMA max_page_count` is NOT stored in the file (it is a setting of the connection
  that issues it), so setting it from the test cannot limit the run process. Mounting a tiny
  tmpfs or loop device needs CAP_SYS_ADMIN. Instead the run process gets RLIMIT_FSIZE (an
  unprivileged per-process limit, with SIGXFSZ ignored so the write fails instead of killing it):
  every write past the limit fails (EFBIG) just as a full disk fails it (ENOSPC). SQLite reports
  EFBIG as SQLITE_IOERR_WRITE ("disk I/O error") and ENOSPC as SQLITE_FULL ("database or disk is
  full"); the test accepts either. The limit sits 64 KiB above the checkpointed database, so the
  run commits some steps first and the disk "fills up" mid-run. The wrapper is handed to the
  Supervisor as its `python`, so the real launch path is used.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest

from alto.runner import Supervisor
from alto.store import Store, StoreError
from alto.train.run import execute_run
from rel_support import (alto_cli, app_page, committed_steps, kill_runs_of, queue_runs, stop_app_supervisors,
                         tiny, wait_until)


# -- divergence -----------------------------------------------------------------------------------

def test_nan_loss_is_diverged_stopped_early_and_kept(tmp_path):
    store = Store(tmp_path / "nan.db")
    (run_id,) = queue_runs(store, [tiny(optimizer="sgd", lr=1e6, max_steps=300, batch_size=128)], name="nan")
    started = time.monotonic()
    status = execute_run(store, run_id)
    took = time.monotonic() - started
    run = store.get_run(run_id)
    assert status == run["status"] == "diverged"
    assert "non-finite" in run["error"] and run["finished_at"]
    last = run["last_step"]
    assert last is not None and last < 300 - 1  # stopped early
    assert committed_steps(store, run_id) == list(range(last + 1))  # data kept
    loss = store.series(run_id, "train/loss", max_points=10 ** 6)
    assert math.isnan(loss["value"][-1]) or math.isinf(loss["value"][-1])  # the bad value is stored as such
    summary = store.summary([run_id])[run_id]["train/loss"]
    assert summary["count"] == last + 1 and math.isfinite(summary["min"])
    assert store.integrity_check() == "ok"
    print(f"\nFAULT nan: status={status} after {last + 1} of 300 steps ({took:.1f} s); error={run['error']!r}; "
          f"{summary['count']} loss rows kept, last value {loss['value'][-1]}")


# -- unwritable location ----------------------------------------------------------------------------

def _unwritable_dir() -> Path:
    for candidate in (Path("/sys/alto-reliability"), Path("/proc/alto-reliability")):
        try:
            candidate.mkdir()
        except OSError:
            return candidate
        candidate.rmdir()  # pragma: no cover - a kernel that lets us write there
    pytest.skip("no location that refuses writes to root")


def test_database_in_a_read_only_location(tmp_path, monkeypatch):
    db = _unwritable_dir() / "runs.db"
    with pytest.raises(StoreError) as err:
        Store(db)
    assert str(db) in str(err.value)

    preset = tmp_path / "tiny.toml"
    preset.write_text('optimizers = ["sgd"]\n[run]\ndataset = "digits"\nmax_steps = 5\n')
    proc = alto_cli("run", "--preset", str(preset), "--db", str(db))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and str(db) in proc.stderr, proc.stderr
    assert "cannot" in proc.stderr

    monkeypatch.setenv("ALTO_DB", str(db))
    at = app_page("home").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error and "cannot be used" in at.error[0].value and str(db) in at.error[0].value
    print(f"\nFAULT read-only location: alto run rc={proc.returncode}: {proc.stderr.strip()!r}; "
          f"home page error: {at.error[0].value!r}")


# -- full disk --------------------------------------------------------------------------------------

FSIZE_MARGIN = 64 * 1024


def _limited_python(folder: Path, limit: int) -> str:
    script = folder / "python-fsize-limited"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: writes fail, no kill\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        f"os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.slow
def test_full_disk_fails_the_run_with_a_clear_message_and_the_app_renders(tmp_path, monkeypatch):
    store = Store(tmp_path / "full.db")
    (run_id,) = queue_runs(store, [tiny(max_steps=100_000)], name="full disk")
    store.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    limit = store.path.stat().st_size + FSIZE_MARGIN
    sup = Supervisor(store, slots=1, python=_limited_python(tmp_path, limit), poll_s=0.1)
    try:
        run = wait_until(lambda: (r := store.get_run(run_id))["status"] not in ("queued", "running") and r,
                         tick=sup.tick, timeout=120, every=0.2, what="the run to fail")
    finally:
        sup.stop()
        kill_runs_of(store)
    assert run["status"] == "failed", run
    error = run["error"]
    assert "disk I/O error" in error or "disk is full" in error, error
    assert store.integrity_check() == "ok"
    last = run["last_step"]
    if last is not None:  # what was committed before the disk "filled up" is intact
        assert committed_steps(store, run_id) == list(range(last + 1))

    monkeypatch.setenv("ALTO_DB", str(store.path))
    try:
        home = app_page("home").run()
        assert not home.exception, [e.value for e in home.exception]
        runs = app_page("runs").run()
        assert not runs.exception, [e.value for e in runs.exception]
        assert any("disk" in c.value for c in runs.code), "the Runs page shows the run's error"
    finally:
        stop_app_supervisors(store.path)
    first_line = error.splitlines()[0]
    print(f"\nFAULT full disk (RLIMIT_FSIZE db+64KiB): status=failed, {0 if last is None else last + 1} steps "
          f"committed and intact, error={first_line!r}; home and Runs pages render")


# -- damaged or foreign files -------------------------------------------------------------------------

def _make_file(kind: str, folder: Path) -> Path:
    import sqlite3

    path = folder / f"{kind}.db"
    if kind == "foreign-sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
        conn.commit()
        conn.close()
        return path
    if kind == "random-bytes":
        path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(16384)))
        return path
    # ALTO databases with finished runs (nothing for a supervisor to launch), then damaged
    store = Store(path)
    experiment = store.create_experiment("damaged", notes="n")
    for i in range(40):
        run_id = store.add_run(experiment, name=f"run {i} " + "x" * 300, optimizer="sgd", seed=i, lr=0.1,
                               config={"pad": "y" * 400}, status="finished")
        if i < 2:
            with store.writer(run_id, flush_every_s=float("inf")) as w:
                for step in range(2000):
                    w.log(step, {"train/loss": 1.0 / (step + 1), "lr": 0.1})
    store.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    roots = dict(store.connection().execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'"))
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096

    def scribble(number: int) -> None:  # pages are numbered from 1
        data[(number - 1) * page: number * page] = b"\xa5" * page

    if kind == "damaged-header":
        data[:16] = b"definitely-not!!"
    elif kind == "truncated":
        data = data[: len(data) // 2 + 123]
    elif kind == "damaged-schema":  # sqlite_master's page (after the 100-byte file header)
        data[100:page] = b"\xa5" * (page - 100)
    elif kind == "damaged-migrations":
        scribble(roots["migrations"])
    elif kind == "damaged-data-pages":  # schema and migrations intact, experiments and runs not
        scribble(roots["experiments"])
        scribble(roots["runs"])
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


BAD_FILES = ["foreign-sqlite", "random-bytes", "damaged-header", "truncated", "damaged-schema", "damaged-migrations",
             "damaged-data-pages"]  # opens (schema intact), fails on the first real query


@pytest.mark.parametrize("kind", BAD_FILES)
def test_damaged_or_foreign_file_is_refused_clearly(kind, tmp_path, monkeypatch):
    path = _make_file(kind, tmp_path)
    before = path.read_bytes()
    proc = alto_cli("ls", "--db", str(path))
    monkeypatch.setenv("ALTO_DB", str(path))
    try:
        at = app_page("home").run()
        exceptions = [e.value for e in at.exception]
    finally:
        stop_app_supervisors(path)
    # both surfaces first, then the verdicts (so a failure reports on both)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and not exceptions, (proc.stderr[-1500:], exceptions)
    expected = "is damaged" if kind == "damaged-data-pages" else "not an ALTO Lab database"
    assert expected in proc.stderr, proc.stderr[-2000:]
    assert at.error and expected in at.error[0].value
    if kind in ("foreign-sqlite", "random-bytes"):
        assert path.read_bytes() == before  # a foreign file is not touched
    print(f"\nFAULT {kind}: alto ls rc={proc.returncode} {proc.stderr.strip()[:160]!r}; home page error shown")


# -- missing dataset --------------------------------------------------------------------------------

def test_missing_dataset_fails_naming_download(tmp_path, monkeypatch):
    data = tmp_path / "empty-data"
    data.mkdir()
    monkeypatch.setenv("ALTO_DATA", str(data))
    store = Store(tmp_path / "data.db")
    (run_id,) = queue_runs(store, [tiny(dataset="cifar10", max_steps=5)], name="no data")
    assert execute_run(store, run_id) == "failed"
    error = store.get_run(run_id)["error"]
    assert "cifar10" in error and "--download" in error and str(data) in error, error
    assert not any(data.iterdir())  # nothing was downloaded behind the user's back
    print(f"\nFAULT missing dataset: status=failed, error={error.splitlines()[0][:200]!r}")
