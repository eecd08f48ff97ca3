"""Connections and transactions: same pragmas everywhere; writers BEGIN IMMEDIATE."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """The database cannot be used: not ours, too new, unwritable, or gone."""


def open_raw(path: Path) -> sqlite3.Connection:
    """Open without touching the file's settings (so a foreign file can be inspected first)."""
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, never Python's implicit BEGIN.
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open or create the database at {path}: {exc} "
            "(check that the folder exists and is writable)"
        ) from exc
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def configure(conn: sqlite3.Connection) -> None:
    """WAL, synchronous=NORMAL, foreign keys (journal_mode persists, so only switch when needed)."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def connect(path: Path) -> sqlite3.Connection:
    """A new, fully configured connection; use it from one thread only."""
    conn = open_raw(path)
    try:
        configure(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot use the database at {path}: {exc}") from exc
    return conn


@contextmanager
def write_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction taking the write lock up front (no deadlock-prone lock upgrade)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # some errors (disk full, ...) already rolled back
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def to_db(value: float | None) -> float | None:
    """NaN is stored as NULL (SQLite would do that anyway); ±inf are stored as is."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def from_db(value: float | None) -> float:
    """NULL read back as NaN."""
    return math.nan if value is None else float(value)
