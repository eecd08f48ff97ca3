"""Store micro-benchmark: batched vs per-step ingest, and tail-read latency. Prints nothing."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from .store import Store


def _ingest(store: Store, run_id: int, steps: int, keys: list[str], batch_steps: int) -> float:
    """Rows per second through MetricWriter, flushing every `batch_steps` steps."""
    start = time.perf_counter()
    with store.writer(run_id, flush_every_s=float("inf")) as w:
        for step in range(steps):
            w.log(step, {k: 1.0 / (step + i + 1) for i, k in enumerate(keys)},
                  samples=step * 128)
            if (step + 1) % batch_steps == 0:
                w.flush()
    return steps * len(keys) / (time.perf_counter() - start)


def bench_store(
    path: str | Path, *, rows: int = 200_000, keys: int = 20, batch_steps: int = 50,
    tail_reads: int = 200,
) -> dict:
    """Measure ingest rows/s (batched executemany vs one commit per step) and tail reads.

    `path` is a database file that may not exist yet; the benchmark adds its own
    experiment and runs to it.
    """
    store = Store(path)
    names = [f"k{i:02d}" for i in range(keys)]
    steps = max(1, rows // keys)
    exp = store.create_experiment("bench_store", config={"rows": rows, "keys": keys})

    def new_run(label: str) -> int:
        return store.add_run(exp, name=label, optimizer="none", seed=0, lr=0.0, config={},
                             status="running")

    batched_run = new_run("batched")
    batched = _ingest(store, batched_run, steps, names, batch_steps)
    per_step = _ingest(store, new_run("per_step"), steps, names, 1)

    last = steps - 1
    lat = []
    for _ in range(tail_reads):
        t = time.perf_counter()
        store.series(batched_run, names[0], after_step=last - 10)
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    full = store.series(batched_run, names[0], max_points=2000)
    full_ms = (time.perf_counter() - t) * 1000
    lat.sort()
    return {
        "rows": steps * keys,
        "keys": keys,
        "batch_steps": batch_steps,
        "batched_rows_per_s": round(batched),
        "per_step_rows_per_s": round(per_step),
        "batched_speedup": round(batched / per_step, 2),
        "tail_read_ms_median": round(statistics.median(lat), 3),
        "tail_read_ms_p95": round(lat[int(0.95 * (len(lat) - 1))], 3),
        "full_series_ms": round(full_ms, 2),
        "full_series_points": int(len(full["step"])),
    }
