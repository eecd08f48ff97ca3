"""The batched metric writer used by a training process (only that process writes its run)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .db import StoreError, connect, to_db, write_tx

_METRIC_SQL = "INSERT OR REPLACE INTO metrics (run_id, key_id, step, value) VALUES (?, ?, ?, ?)"
# First non-NULL wins for a step: an eval logged later at the same step must not move
# the step's wall time.
_STEP_SQL = """
    INSERT INTO steps (run_id, step, wall_time, samples, epoch) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, step) DO UPDATE SET
        wall_time = coalesce(steps.wall_time, excluded.wall_time),
        samples = coalesce(steps.samples, excluded.samples),
        epoch = coalesce(steps.epoch, excluded.epoch)"""
# SQLite's two-argument min()/max() return NULL if either side is NULL (NaN), hence coalesce.
_SUMMARY_SQL = """
    INSERT INTO summary (run_id, key_id, last, last_step, min, max, count)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (run_id, key_id) DO UPDATE SET
        last = CASE WHEN excluded.last_step >= summary.last_step
                    THEN excluded.last ELSE summary.last END,
        last_step = max(summary.last_step, excluded.last_step),
        min = min(coalesce(summary.min, excluded.min), coalesce(excluded.min, summary.min)),
        max = max(coalesce(summary.max, excluded.max), coalesce(excluded.max, summary.max)),
        count = summary.count + excluded.count"""


class MetricWriter:
    """Buffers `log()` calls and writes them in one transaction per flush.

    Use as a context manager; the connection is opened on the first flush, in the
    thread that flushes, and closed by `close()`.
    """

    def __init__(
        self, path: Path, run_id: int, *, flush_every_s: float = 0.5, t0: float | None = None
    ) -> None:
        self.path = Path(path)
        self.run_id = int(run_id)
        self.flush_every_s = flush_every_s
        self.t0 = time.time() if t0 is None else t0  # wall_time default = seconds since t0
        self._conn: sqlite3.Connection | None = None
        self._key_ids: dict[str, int] = {}
        self._rows: list[tuple[int, str, float | None]] = []
        self._steps: dict[int, list] = {}
        self._agg: dict[str, list] = {}  # key -> [last, last_step, min, max, count]
        self._last_flush = time.monotonic()
        self._closed = False

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # also on error: the steps before a crash are the interesting ones

    def log(
        self,
        step: int,
        values: dict[str, float],
        *,
        wall_time: float | None = None,
        samples: int | None = None,
        epoch: float | None = None,
    ) -> None:
        """Buffer one step's values; flushes when flush_every_s has passed since the last flush."""
        if self._closed:
            raise StoreError(f"metric writer for run {self.run_id} is closed")
        step = int(step)
        if wall_time is None:
            wall_time = time.time() - self.t0
        info = [float(wall_time), None if samples is None else int(samples),
                None if epoch is None else float(epoch)]
        old = self._steps.get(step)
        self._steps[step] = info if old is None else [a if a is not None else b
                                                      for a, b in zip(old, info)]
        for key, raw in values.items():
            v = to_db(raw)
            self._rows.append((step, key, v))
            a = self._agg.get(key)
            if a is None:
                self._agg[key] = [v, step, v, v, 1]
                continue
            if step >= a[1]:
                a[0], a[1] = v, step
            if v is not None:
                a[2] = v if a[2] is None else min(a[2], v)
                a[3] = v if a[3] is None else max(a[3], v)
            a[4] += 1
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path)
        return self._conn

    def _ensure_keys(self, conn: sqlite3.Connection) -> dict[str, int]:
        new = sorted({k for k in self._agg if k not in self._key_ids})
        ids = dict(self._key_ids)
        if new:
            conn.executemany("INSERT OR IGNORE INTO metric_keys (key) VALUES (?)",
                             [(k,) for k in new])
            marks = ",".join("?" * len(new))
            for kid, key in conn.execute(
                f"SELECT id, key FROM metric_keys WHERE key IN ({marks})", new
            ):
                ids[key] = kid
        return ids

    def flush(self) -> None:
        """Write everything buffered, plus heartbeat and last step, in ONE transaction."""
        now = time.monotonic()
        if not self._steps:
            self._last_flush = now
            return
        conn = self._connection()
        r = self.run_id
        with write_tx(conn):
            ids = self._ensure_keys(conn)
            conn.executemany(_METRIC_SQL, [(r, ids[k], s, v) for s, k, v in self._rows])
            conn.executemany(_STEP_SQL, [(r, s, *i) for s, i in self._steps.items()])
            conn.executemany(_SUMMARY_SQL, [(r, ids[k], *a) for k, a in self._agg.items()])
            cur = conn.execute(
                "UPDATE runs SET heartbeat_at = ?, last_step = max(coalesce(last_step, ?2), ?2) "
                "WHERE id = ?3",
                (time.time(), max(self._steps), r),
            )
            if cur.rowcount == 0:  # deleted under us: roll back rather than leave orphan rows
                raise StoreError(f"run {r} no longer exists; its metrics were not written")
        # Only now are the new key ids known to be committed.
        self._key_ids = ids
        self._rows, self._steps, self._agg = [], {}, {}
        self._last_flush = now

    def heartbeat(self) -> None:
        """Mark the run alive even when there is nothing to write."""
        with write_tx(self._connection()) as conn:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?",
                         (time.time(), self.run_id))

    def close(self) -> None:
        """Flush and close the connection (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
