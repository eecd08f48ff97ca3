"""Schema migrations: numbered functions applied in order, one transaction each.

The `migrations` table records applied versions. Never edit a released migration;
append a new `mNNN_...` function to MIGRATIONS instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlite_utils

from .db import StoreError, write_tx

# Written into the SQLite header so our files are recognisable ("ALTO").
APPLICATION_ID = 0x414C544F

Migration = Callable[[sqlite_utils.Database], None]


def m001_initial(db: sqlite_utils.Database) -> None:
    db.create_table(
        "experiments",
        {"id": int, "name": str, "preset": str, "created_at": float, "config": str, "notes": str},
        pk="id",
    )
    db.create_table(
        "runs",
        {
            "id": int, "experiment_id": int, "name": str, "optimizer": str, "seed": int,
            "lr": float, "status": str, "config": str, "created_at": float,
            "started_at": float, "finished_at": float, "heartbeat_at": float,
            "last_step": int, "total_steps": int, "pid": int, "pgid": int, "device": str,
            "error": str, "log_path": str, "notes": str,
        },
        pk="id",
        foreign_keys=[("experiment_id", "experiments", "id")],
        not_null=["experiment_id", "status"],
    )
    db["runs"].create_index(["experiment_id"])
    db["runs"].create_index(["status"])
    db.create_table("metric_keys", {"id": int, "key": str}, pk="id", not_null=["key"])
    db["metric_keys"].create_index(["key"], unique=True)
    # The hot tables carry no foreign keys: the writer inserts many rows per second and
    # deletes go through Store.delete_* which clear every table in one transaction.
    db.execute(
        "CREATE TABLE metrics (run_id INTEGER NOT NULL, key_id INTEGER NOT NULL, "
        "step INTEGER NOT NULL, value REAL, PRIMARY KEY (run_id, key_id, step)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE steps (run_id INTEGER NOT NULL, step INTEGER NOT NULL, wall_time REAL, "
        "samples INTEGER, epoch REAL, PRIMARY KEY (run_id, step)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE params (run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, "
        "value TEXT, PRIMARY KEY (run_id, name))"
    )
    db.execute(
        "CREATE TABLE tags (run_id INTEGER NOT NULL REFERENCES runs(id), tag TEXT NOT NULL, "
        "PRIMARY KEY (run_id, tag))"
    )
    db.create_table(
        "artifacts",
        {
            "id": int, "experiment_id": int, "run_id": int, "kind": str, "name": str,
            "created_at": float, "payload": str,
        },
        pk="id",
        foreign_keys=[("experiment_id", "experiments", "id"), ("run_id", "runs", "id")],
        not_null=["kind", "name"],
    )
    db["artifacts"].create_index(["kind"])
    db["artifacts"].create_index(["experiment_id"])
    db["artifacts"].create_index(["run_id"])


def m002_summary(db: sqlite_utils.Database) -> None:
    """Per-run, per-key summary for fast run lists; backfilled from existing metrics."""
    db.execute(
        "CREATE TABLE summary (run_id INTEGER NOT NULL, key_id INTEGER NOT NULL, last REAL, "
        "last_step INTEGER, min REAL, max REAL, count INTEGER NOT NULL DEFAULT 0, "
        "PRIMARY KEY (run_id, key_id)) WITHOUT ROWID"
    )
    # min()/max() skip NULLs, i.e. NaN, which is what the summary wants.
    db.execute(
        """
        INSERT INTO summary (run_id, key_id, last, last_step, min, max, count)
        SELECT a.run_id, a.key_id, m.value, a.last_step, a.vmin, a.vmax, a.n
        FROM (SELECT run_id, key_id, max(step) AS last_step, min(value) AS vmin,
                     max(value) AS vmax, count(*) AS n
              FROM metrics GROUP BY run_id, key_id) AS a
        JOIN metrics AS m
          ON m.run_id = a.run_id AND m.key_id = a.key_id AND m.step = a.last_step
        """
    )


def m003_jobs(db: sqlite_utils.Database) -> None:
    """Background analysis jobs (e.g. flatness), launched by the supervisor like runs."""
    db.create_table(
        "jobs",
        {
            "id": int, "kind": str, "experiment_id": int, "payload": str, "status": str,
            "created_at": float, "started_at": float, "finished_at": float, "pid": int,
            "pgid": int, "error": str, "log_path": str,
        },
        pk="id",
        not_null=["kind", "status"],
    )
    db["jobs"].create_index(["status"])
    db["jobs"].create_index(["experiment_id"])


MIGRATIONS: list[Migration] = [m001_initial, m002_summary, m003_jobs]


def _user_tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {r[0] for r in rows}


def _applied(conn: sqlite3.Connection, path: Path) -> set[int] | None:
    """Applied versions, None for an empty database; StoreError if the file is not ours."""
    tables = _user_tables(conn)
    if not tables:
        return None
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if "migrations" not in tables or app_id not in (0, APPLICATION_ID):
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is not an ALTO Lab database (it holds other tables: {listed}); "
            "choose another file"
        )
    try:
        return {r[0] for r in conn.execute("SELECT version FROM migrations")}
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"{path} is not an ALTO Lab database (its migrations table is not ours: {exc})"
        ) from exc


def _check_not_newer(applied: set[int], known: int, path: Path) -> None:
    if applied and max(applied) > known:
        raise StoreError(
            f"{path} has schema version {max(applied)}, newer than this ALTO Lab knows "
            f"({known}); upgrade alto-lab to open it"
        )


def validate_file(conn: sqlite3.Connection, path: Path) -> set[int] | None:
    """Validate an existing file before anything writes to it; returns applied versions."""
    try:
        return _applied(conn, path)
    except sqlite3.DatabaseError as exc:  # "file is not a database"
        raise StoreError(
            f"{path} is not an ALTO Lab database (not an SQLite file: {exc})"
        ) from exc


def schema_version(conn: sqlite3.Connection) -> int:
    """Highest applied migration (0 for an empty database)."""
    if "migrations" not in _user_tables(conn):
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM migrations").fetchone()[0]


def migrate(
    conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Apply pending migrations, each in its own BEGIN IMMEDIATE transaction; returns the version.

    Safe when several processes open the same new file at once: the applied set is
    re-read under the write lock before each step.
    """
    applied = validate_file(conn, path) or set()
    _check_not_newer(applied, len(migrations), path)
    if applied >= set(range(1, len(migrations) + 1)):
        return len(migrations)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    for version, fn in enumerate(migrations, start=1):
        with write_tx(conn):
            applied = _applied(conn, path)
            if applied is None:
                conn.execute(
                    "CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                    "applied_at REAL NOT NULL)"
                )
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                applied = set()
            _check_not_newer(applied, len(migrations), path)
            if version in applied:
                continue
            fn(db)
            conn.execute(
                "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, fn.__name__, time.time()),
            )
    return len(migrations)
