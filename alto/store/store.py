"""`Store`: experiments, runs, params, tags, artifacts and metric reads over one SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from . import queries
from .db import StoreError, configure, open_raw, write_tx
from .migrations import migrate, validate_file
from .writer import MetricWriter

if TYPE_CHECKING:
    import pandas as pd

STATUSES = (
    "queued", "running", "finished", "failed", "cancelled", "diverged", "crashed", "stalled",
)
TERMINAL_STATUSES = ("finished", "failed", "cancelled", "diverged", "crashed")
CONFIRM_TAG = "confirm"  # the tag of runs that re-test chosen learning rates on fresh seeds
BUDGET_TAG = "confirm-budget"  # runs that re-test a speed-up with the schedule compressed to its budget

# Columns update_run may change (id, experiment_id and created_at are fixed at creation).
RUN_FIELDS = (
    "name", "optimizer", "seed", "lr", "status", "config", "started_at", "finished_at",
    "heartbeat_at", "last_step", "total_steps", "pid", "pgid", "device", "error", "log_path",
    "notes",
)

JOB_STATUSES = ("queued", "running", "finished", "failed", "cancelled", "crashed")
# Columns update_job may change.
JOB_FIELDS = ("status", "payload", "started_at", "finished_at", "pid", "pgid", "error", "log_path")

# Connections inherited through fork() must not be used or closed by the child; keep
# them referenced so garbage collection does not close them either.
_inherited: list[sqlite3.Connection] = []


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"invalid run status {status!r}; expected one of {', '.join(STATUSES)}")
    return status


def _check_job_status(status: str) -> str:
    if status not in JOB_STATUSES:
        raise ValueError(f"invalid job status {status!r}; expected one of {', '.join(JOB_STATUSES)}")
    return status


def _status_filter(status: str | list[str] | None, check, where: list[str], params: list) -> None:
    """Add `status IN (...)` to a WHERE clause being built (each status validated by `check`)."""
    if status is None:
        return
    statuses = [status] if isinstance(status, str) else list(status)
    for s in statuses:
        check(s)
    where.append(f"status IN ({','.join('?' * len(statuses))})")
    params += statuses


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ids(rows: Iterable[tuple]) -> list[int]:
    return [r[0] for r in rows]


class Store:
    """One ALTO Lab database. Safe to use from many threads and processes.

    Each thread (and each process after fork) gets its own connection; no sqlite3
    connection is ever shared across threads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self._local = threading.local()
        self._check_file()
        conn = open_raw(self.path)
        try:
            validate_file(conn, self.path)  # refuse foreign files before changing anything in them
            configure(conn)
            migrate(conn, self.path)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot set up the database at {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._local.conn, self._local.pid = conn, os.getpid()

    def _check_file(self) -> None:
        p = self.path
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for the database {p}: {exc}") from exc
        if p.is_dir():
            raise StoreError(f"{p} is a folder, not an ALTO Lab database file")
        # Never open() the database file itself: closing any descriptor of it drops the POSIX
        # locks of every SQLite connection of this process, and a later checkpoint could then
        # delete the WAL under them. SQLite's own "file is not a database" is checked instead.
        if p.exists():
            if not os.access(p, os.R_OK):
                raise StoreError(f"cannot read the database {p}: permission denied")
        elif not os.access(p.parent, os.W_OK):
            raise StoreError(f"cannot create the database {p}: the folder is not writable")

    # -- connections ---------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; do not hand it to another thread)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:
            _inherited.append(conn)
        conn = open_raw(self.path)
        try:
            configure(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot use the database at {self.path}: {exc}") from exc
        local.conn, local.pid = conn, os.getpid()
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils view of this thread's connection, for ad-hoc reads."""
        return sqlite_utils.Database(self.connection(), execute_plugins=False)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_tx(self.connection())

    def _one(self, sql: str, params: tuple | list = ()) -> dict | None:
        cur = self.connection().execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row))

    def _all(self, sql: str, params: tuple | list = ()) -> list[dict]:
        cur = self.connection().execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    # -- experiments ---------------------------------------------------------------

    def create_experiment(
        self, name: str, *, preset: str | None = None, config: dict | None = None, notes: str = ""
    ) -> int:
        """Insert an experiment; returns its id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO experiments (name, preset, created_at, config, notes) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, preset, time.time(), _dumps(config or {}), notes),
            )
            return cur.lastrowid

    def experiment_named(self, name: str, *, preset: str, config: dict | None = None) -> int:
        """The newest experiment called `name` that `preset` made, else a new one with `config`;
        in one transaction, so processes that start together share one experiment."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM experiments WHERE name = ? AND preset = ? ORDER BY id DESC LIMIT 1",
                               (name, preset)).fetchone()
            if row is not None:
                return row[0]
            return conn.execute(
                "INSERT INTO experiments (name, preset, created_at, config, notes) VALUES (?, ?, ?, ?, '')",
                (name, preset, time.time(), _dumps(config or {})),
            ).lastrowid

    def _experiments(self, where: str = "", params: tuple = ()) -> list[dict]:
        exps = self._all(f"SELECT * FROM experiments {where} ORDER BY created_at DESC, id DESC",
                         params)
        if not exps:
            return []
        marks = ",".join("?" * len(exps))
        counts = self.connection().execute(
            f"SELECT experiment_id, status, count(*) FROM runs "
            f"WHERE experiment_id IN ({marks}) GROUP BY experiment_id, status",
            [e["id"] for e in exps],
        ).fetchall()
        by_id = {e["id"]: e for e in exps}
        for e in exps:
            e["config"] = _loads(e["config"])
            e["run_counts"], e["n_runs"] = {}, 0
        for exp_id, status, n in counts:
            by_id[exp_id]["run_counts"][status] = n
            by_id[exp_id]["n_runs"] += n
        return exps

    def list_experiments(self) -> list[dict]:
        """Newest first; each with `run_counts` ({status: n}) and `n_runs`."""
        return self._experiments()

    def get_experiment(self, experiment_id: int) -> dict:
        """One experiment (same shape as list_experiments); KeyError if missing."""
        found = self._experiments("WHERE id = ?", (experiment_id,))
        if not found:
            raise KeyError(f"experiment {experiment_id} not found")
        return found[0]

    # -- runs ----------------------------------------------------------------------

    def add_run(
        self,
        experiment_id: int,
        *,
        name: str,
        optimizer: str,
        seed: int,
        lr: float,
        config: dict,
        total_steps: int | None = None,
        status: str = "queued",
        tags: Iterable[str] = (),
    ) -> int:
        """Insert a run (queued by default); returns its id."""
        _check_status(status)
        with self._write() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO runs (experiment_id, name, optimizer, seed, lr, status, config, "
                    "created_at, total_steps, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
                    (experiment_id, name, optimizer, int(seed), float(lr), status,
                     _dumps(config), time.time(), total_steps),
                )
            except sqlite3.IntegrityError as exc:
                raise KeyError(f"experiment {experiment_id} not found") from exc
            run_id = cur.lastrowid
            conn.executemany("INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                             [(run_id, t) for t in tags])
            return run_id

    def _decorate(self, runs: list[dict]) -> list[dict]:
        """Parse config and attach tags."""
        if not runs:
            return runs
        by_id = {r["id"]: r for r in runs}
        for r in runs:
            r["config"] = _loads(r["config"])
            r["tags"] = []
        marks = ",".join("?" * len(by_id))
        for run_id, tag in self.connection().execute(
            f"SELECT run_id, tag FROM tags WHERE run_id IN ({marks}) ORDER BY tag", list(by_id)
        ):
            by_id[run_id]["tags"].append(tag)
        return runs

    def get_run(self, run_id: int) -> dict:
        """The run row with `config` parsed, plus `tags` and `params`; KeyError if missing."""
        row = self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise KeyError(f"run {run_id} not found")
        self._decorate([row])
        row["params"] = self.get_params(run_id)
        return row

    def list_runs(
        self, *, experiment_id: int | None = None, status: str | list[str] | None = None
    ) -> list[dict]:
        """Runs in creation order, optionally filtered; each with `config` parsed and `tags`."""
        where, params = [], []
        if experiment_id is not None:
            where.append("experiment_id = ?")
            params.append(experiment_id)
        _status_filter(status, _check_status, where, params)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        return self._decorate(self._all(sql + " ORDER BY id", params))

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a run; unknown column or invalid status -> ValueError naming it."""
        if fields and not self._update("runs", run_id, fields):
            raise KeyError(f"run {run_id} not found")

    def update_run_if(self, run_id: int, expected: Iterable[str], **fields: Any) -> bool:
        """Set columns of a run only while its status is one of `expected`; True if it did.

        The run process writes its own final status at any moment: a supervisor must not
        overwrite `finished` with `stalled` or `crashed`.
        """
        return self._update("runs", run_id, fields, tuple(expected))

    def _update(self, table: str, row_id: int, fields: dict, expected: tuple[str, ...] | None = None) -> bool:
        """One UPDATE of a run or job row (optionally only in the `expected` statuses)."""
        kind, allowed, check, json_field = (("run", RUN_FIELDS, _check_status, "config") if table == "runs"
                                            else ("job", JOB_FIELDS, _check_job_status, "payload"))
        for name in fields:
            if name not in allowed:
                raise ValueError(f"unknown {kind} field {name!r}; allowed: {', '.join(allowed)}")
        if "status" in fields:
            check(fields["status"])
        if json_field in fields:
            fields[json_field] = _dumps(fields[json_field])
        sets = ", ".join(f"{name} = ?" for name in fields)
        where, params = "id = ?", [row_id]
        if expected is not None:
            where += f" AND status IN ({','.join('?' * len(expected))})"
            params += list(expected)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE {table} SET {sets} WHERE {where}", [*fields.values(), *params])
        return cur.rowcount > 0

    def claim_next_queued(self, *, pid: int | None = None) -> dict | None:
        """Atomically move the oldest queued run to `running` and return it (None if none)."""
        run_id = self._claim("runs", None, pid)
        return None if run_id is None else self.get_run(run_id)

    def claim_run(self, run_id: int, *, pid: int | None = None) -> bool:
        """Move this queued run to `running` for process `pid`; False if it was not queued.

        One conditional UPDATE: of two processes claiming the same run, exactly one wins.
        """
        return self._claim("runs", run_id, pid) is not None

    def _claim(self, table: str, row_id: int | None, pid: int | None) -> int | None:
        """Move a queued run or job (`row_id`, else the oldest) to `running`; its id if this call won."""
        now = time.time()
        fields: dict[str, Any] = {"status": "running", "started_at": now, "pid": pid}
        if table == "runs":
            fields["heartbeat_at"] = now  # the heartbeat clock starts at the claim
        if row_id is not None:
            return row_id if self._update(table, row_id, fields, ("queued",)) else None
        while True:  # the oldest queued row; if another claimer takes it first, the next one
            row = self.connection().execute(
                f"SELECT id FROM {table} WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            if self._update(table, row[0], fields, ("queued",)):
                return row[0]

    def status_counts(self) -> dict[str, int]:
        """{status: number of runs} over the whole database."""
        return dict(self.connection().execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())

    def set_params(self, run_id: int, params: dict) -> None:
        """Upsert named parameters (values stored as JSON)."""
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO params (run_id, name, value) VALUES (?, ?, ?)",
                [(run_id, str(k), _dumps(v)) for k, v in params.items()],
            )

    def get_params(self, run_id: int) -> dict:
        rows = self.connection().execute(
            "SELECT name, value FROM params WHERE run_id = ? ORDER BY name", (run_id,)
        )
        return {name: _loads(value) for name, value in rows}

    def add_tags(self, run_id: int, tags: Iterable[str]) -> None:
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                             [(run_id, t) for t in tags])

    def remove_tag(self, run_id: int, tag: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM tags WHERE run_id = ? AND tag = ?", (run_id, tag))

    def set_notes(
        self, notes: str, *, run_id: int | None = None, experiment_id: int | None = None
    ) -> None:
        """Set the notes of exactly one run or experiment."""
        if (run_id is None) == (experiment_id is None):
            raise ValueError("pass exactly one of run_id or experiment_id")
        table, key = ("runs", run_id) if run_id is not None else ("experiments", experiment_id)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE {table} SET notes = ? WHERE id = ?", (notes, key))
            if cur.rowcount == 0:
                raise KeyError(f"{table[:-1]} {key} not found")

    # -- deletes -------------------------------------------------------------------

    @staticmethod
    def _delete_runs(conn: sqlite3.Connection, run_ids: list[int]) -> None:
        if not run_ids:
            return
        marks = ",".join("?" * len(run_ids))
        for table in ("metrics", "steps", "summary", "params", "tags", "artifacts"):
            conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", run_ids)
        conn.execute(f"DELETE FROM runs WHERE id IN ({marks})", run_ids)

    def delete_run(self, run_id: int) -> None:
        """Remove a run and every row that belongs to it, in one transaction."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"run {run_id} not found")
            self._delete_runs(conn, [run_id])

    def delete_experiment(self, experiment_id: int) -> None:
        """Remove an experiment, its runs and all their rows, in one transaction."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM experiments WHERE id = ?",
                            (experiment_id,)).fetchone() is None:
                raise KeyError(f"experiment {experiment_id} not found")
            run_ids = _ids(conn.execute("SELECT id FROM runs WHERE experiment_id = ?",
                                        (experiment_id,)))
            self._delete_runs(conn, run_ids)
            conn.execute("DELETE FROM artifacts WHERE experiment_id = ?", (experiment_id,))
            conn.execute("DELETE FROM jobs WHERE experiment_id = ?", (experiment_id,))
            conn.execute("DELETE FROM experiments WHERE id = ?", (experiment_id,))

    def clear_metrics(self, run_id: int) -> None:
        """Drop a run's metrics, steps and summary (before re-running it from scratch)."""
        with self._write() as conn:
            for table in ("metrics", "steps", "summary"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            conn.execute("UPDATE runs SET last_step = NULL WHERE id = ?", (run_id,))

    # -- metrics -------------------------------------------------------------------

    def writer(self, run_id: int, *, flush_every_s: float = 0.5) -> MetricWriter:
        """A batched writer for one run; wall_time defaults to seconds since the run started."""
        run = self._one("SELECT started_at FROM runs WHERE id = ?", (run_id,))
        if run is None:
            raise KeyError(f"run {run_id} not found")
        return MetricWriter(self.path, run_id, flush_every_s=flush_every_s, t0=run["started_at"])

    def metric_keys(self, run_id: int | None = None) -> list[str]:
        """All known metric keys, or those a run has logged, sorted."""
        if run_id is None:
            rows = self.connection().execute("SELECT key FROM metric_keys ORDER BY key")
        else:
            rows = self.connection().execute(
                "SELECT k.key FROM summary AS s JOIN metric_keys AS k ON k.id = s.key_id "
                "WHERE s.run_id = ? ORDER BY k.key",
                (run_id,),
            )
        return [r[0] for r in rows]

    def summary(self, run_ids: list[int]) -> dict[int, dict[str, dict]]:
        """run -> key -> {last, last_step, min, max, count}; min/max ignore NaN.

        `count` is the number of values logged (NaN included); every requested run is a key.
        """
        return queries.summary(self.connection(), list(run_ids))

    def _series_args(self, key: str, x: str, max_points: int) -> int | None:
        if x not in queries.X_AXES:
            raise ValueError(f"unknown x axis {x!r}; expected one of {', '.join(queries.X_AXES)}")
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        return queries.key_id(self.connection(), key)

    def _check_runs(self, run_ids: list[int]) -> None:
        marks = ",".join("?" * len(run_ids))
        found = set(_ids(self.connection().execute(
            f"SELECT id FROM runs WHERE id IN ({marks})", run_ids)))
        missing = [r for r in run_ids if r not in found]
        if missing:
            raise KeyError(f"run {missing[0]} not found")

    def series(
        self,
        run_id: int,
        key: str,
        *,
        x: str = "step",
        step_range: tuple[int, int] | None = None,
        max_points: int = 2000,
        after_step: int | None = None,
    ) -> dict:
        """One metric of one run, downsampled to at most `max_points` points.

        Returns {"step", "x", "value", "min", "max", "last_step"}. When the range
        [lo, hi] spans more than max_points steps, steps are grouped in buckets of
        ceil((hi - lo + 1) / max_points) aligned on lo, and each bucket reports its last
        step, the value there (NaN if NaN) and the min/max of its non-NaN values.
        `step_range` is inclusive and defaults to the logged range; `after_step` keeps
        only steps > after_step (tail polling: pass the previous `last_step`).
        `last_step` is the last returned step, None if nothing was returned.
        A key this run has not logged (yet) gives empty arrays; an unknown x axis is a
        ValueError; a missing run is a KeyError.
        """
        return self.series_many([run_id], key, x=x, step_range=step_range,
                                max_points=max_points, after_step=after_step)[run_id]

    def series_many(
        self,
        run_ids: list[int],
        key: str,
        *,
        x: str = "step",
        step_range: tuple[int, int] | None = None,
        max_points: int = 2000,
        after_step: int | None = None,
    ) -> dict[int, dict]:
        """`series` for several runs on ONE shared step grid (so buckets can be averaged).

        Without step_range the grid spans the union of the runs' logged ranges.
        """
        run_ids = [int(r) for r in run_ids]
        kid = self._series_args(key, x, max_points)
        if not run_ids:
            return {}
        self._check_runs(run_ids)
        if kid is None:
            return {r: queries.empty_series() for r in run_ids}
        conn = self.connection()
        if step_range is None:
            bounds = [b for r in run_ids if (b := queries.step_bounds(conn, r, kid))]
            if not bounds:
                return {r: queries.empty_series() for r in run_ids}
            lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
        else:
            lo, hi = int(step_range[0]), int(step_range[1])
        if after_step is not None:
            lo = max(lo, int(after_step) + 1)
        return {
            r: queries.series(conn, r, kid, x=x, lo=lo, hi=hi, max_points=max_points)
            for r in run_ids
        }

    def raw_metrics(self, run_ids: list[int], keys: list[str] | None = None) -> "pd.DataFrame":
        """Long format: run_id, key, step, value, wall_time, samples, epoch (for export)."""
        return queries.raw_metrics(self.connection(), list(run_ids), keys)

    # -- artifacts -----------------------------------------------------------------

    def put_artifact(
        self,
        *,
        kind: str,
        name: str,
        payload: dict,
        experiment_id: int | None = None,
        run_id: int | None = None,
    ) -> int:
        """Store an analysis result (payload as JSON); returns its id."""
        with self._write() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO artifacts (experiment_id, run_id, kind, name, created_at, "
                    "payload) VALUES (?, ?, ?, ?, ?, ?)",
                    (experiment_id, run_id, kind, name, time.time(), _dumps(payload)),
                )
            except sqlite3.IntegrityError as exc:
                raise KeyError(
                    f"experiment {experiment_id} or run {run_id} not found"
                ) from exc
            return cur.lastrowid

    def artifacts(
        self, *, kind: str | None = None, experiment_id: int | None = None,
        run_id: int | None = None,
    ) -> list[dict]:
        """Artifacts matching all given filters, newest first, payload parsed."""
        where, params = [], []
        for col, val in (("kind", kind), ("experiment_id", experiment_id), ("run_id", run_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = "SELECT * FROM artifacts" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._all(sql + " ORDER BY id DESC", params)
        for r in rows:
            r["payload"] = _loads(r["payload"])
        return rows

    def delete_artifact(self, artifact_id: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM artifacts WHERE id = ?", (artifact_id,))

    # -- jobs ------------------------------------------------------------------------

    def add_job(self, kind: str, *, experiment_id: int | None = None, payload: dict | None = None) -> int:
        """Queue a background job (the supervisor launches it); returns its id."""
        if not kind:
            raise ValueError("job kind must be a non-empty string")
        with self._write() as conn:
            if experiment_id is not None and conn.execute(
                    "SELECT 1 FROM experiments WHERE id = ?", (experiment_id,)).fetchone() is None:
                raise KeyError(f"experiment {experiment_id} not found")
            cur = conn.execute(
                "INSERT INTO jobs (kind, experiment_id, payload, status, created_at) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (kind, experiment_id, _dumps(payload or {}), time.time()),
            )
            return cur.lastrowid

    @staticmethod
    def _job(row: dict) -> dict:
        row["payload"] = _loads(row["payload"]) or {}
        return row

    def get_job(self, job_id: int) -> dict:
        """One job row with `payload` parsed; KeyError if missing."""
        row = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise KeyError(f"job {job_id} not found")
        return self._job(row)

    def list_jobs(
        self, *, kind: str | None = None, experiment_id: int | None = None,
        status: str | list[str] | None = None,
    ) -> list[dict]:
        """Jobs matching all given filters, newest first, payload parsed."""
        where, params = [], []
        for col, val in (("kind", kind), ("experiment_id", experiment_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        _status_filter(status, _check_job_status, where, params)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [self._job(r) for r in self._all(sql + " ORDER BY id DESC", params)]

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set columns of a job; unknown column or invalid status -> ValueError naming it."""
        if fields and not self._update("jobs", job_id, fields):
            raise KeyError(f"job {job_id} not found")

    def update_job_if(self, job_id: int, expected: Iterable[str], **fields: Any) -> bool:
        """Set columns of a job only while its status is one of `expected`; True if it did."""
        return self._update("jobs", job_id, fields, tuple(expected))

    def claim_next_job(self, *, pid: int | None = None) -> dict | None:
        """Atomically move the oldest queued job to `running` and return it (None if none)."""
        job_id = self._claim("jobs", None, pid)
        return None if job_id is None else self.get_job(job_id)

    # -- maintenance ---------------------------------------------------------------

    def integrity_check(self) -> str:
        """PRAGMA integrity_check ("ok" when healthy)."""
        rows = self.connection().execute("PRAGMA integrity_check").fetchall()
        return "\n".join(r[0] for r in rows)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"
