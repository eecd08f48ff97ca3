"""What the engine's processes cost around the training itself, old and new side by side in one run.

bench_memory: page faults and system time of a run process with glibc's defaults and with freed
memory kept (alto.train.memory). bench_startup: a whole comparison through a real Supervisor,
each run a new process and each run forked from the warm fork server.
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alto.store import Store
from alto.train.config import RunConfig
from alto.train.memory import OFF_ENV as KEEP_MEMORY_ENV
from alto.train.presets import Preset

from .queue import queue_experiment
from .spawn import ForkServerSpawn, spawn_process
from .supervisor import Supervisor


def bench_memory(config: RunConfig) -> dict:
    """Run `config` as `python -m alto.train` twice, glibc's defaults first, then with freed memory
    kept; minor page faults, system and user seconds of each whole process (start-up and
    evaluation included) per optimizer step, and the ratios old / new."""
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        experiment = store.create_experiment("bench memory")
        for name, keep in (("default", "0"), ("kept", "1")):
            run_id = store.add_run(experiment, name=name, optimizer=config.optimizer, seed=config.seed,
                                   lr=config.base_lr, config=config.to_dict())
            before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
            subprocess.run([sys.executable, "-m", "alto.train", str(run_id), "--db", str(store.path)],
                           env={**os.environ, KEEP_MEMORY_ENV: keep}, stdout=subprocess.DEVNULL, check=True)
            elapsed, after = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
            steps = store.get_params(run_id)["steps_run"]
            rows[name] = {"steps": steps, "elapsed_s": elapsed, "train_s": store.get_params(run_id)["train_s"],
                          "minor_faults": after.ru_minflt - before.ru_minflt,
                          "sys_s": after.ru_stime - before.ru_stime, "user_s": after.ru_utime - before.ru_utime}
        store.close()
    record = {"bench": "memory", "dataset": config.dataset, "model": config.model, "optimizer": config.optimizer,
              "batch_size": config.batch_size, "steps": rows["kept"]["steps"]}
    for name, row in rows.items():
        record.update({f"minor_faults_per_step_{name}": round(row["minor_faults"] / row["steps"]),
                       f"sys_s_per_step_{name}": round(row["sys_s"] / row["steps"], 4),
                       f"user_s_per_step_{name}": round(row["user_s"] / row["steps"], 4),
                       f"elapsed_s_{name}": round(row["elapsed_s"], 2), f"train_s_{name}": row["train_s"]})
    record["faults_ratio"] = round(rows["default"]["minor_faults"] / max(1, rows["kept"]["minor_faults"]), 2)
    record["sys_ratio"] = round(rows["default"]["sys_s"] / max(1e-9, rows["kept"]["sys_s"]), 2)
    return record


def bench_startup(preset: Preset, configs: list[RunConfig]) -> list[dict]:
    """Queue `configs` and let a real Supervisor run them to the end, first starting each run as a
    new process, then with the supervisor's default: forking each from the fork server (started,
    and warm, with the supervisor, as in the app). Per mode: seconds from queueing to the last
    finish, and each run's start-up (from its process's start to its first step) and setup (data
    and model, inside the run). ValueError where the default does not fork (a GPU, ALTO_FORK_SERVER=0)."""
    records = []
    for mode in ("new process", "fork server"):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.db")
            supervisor = Supervisor(store, spawn=spawn_process if mode == "new process" else None)
            record = {"bench": "startup", "preset": preset.name, "runs": len(configs), "mode": mode,
                      "slots": supervisor.slots}
            if mode == "fork server":
                if not isinstance(supervisor.spawn, ForkServerSpawn):
                    raise ValueError("the supervisor does not fork runs here (a GPU is used or ALTO_FORK_SERVER=0)")
                t0 = time.monotonic()
                supervisor.spawn.warm_up().wait_ready()
                record["fork_server_warm_up_s"] = round(time.monotonic() - t0, 2)
            queued = time.time()
            experiment = queue_experiment(store, preset, configs)
            supervisor.start()
            while any(r["status"] in ("queued", "running", "stalled") for r in store.list_runs(experiment_id=experiment)):
                time.sleep(0.2)
            supervisor.stop()
            if isinstance(supervisor.spawn, ForkServerSpawn):
                supervisor.spawn.close()
            runs = store.list_runs(experiment_id=experiment)
            params = {r["id"]: store.get_params(r["id"]) for r in runs}
            # the first step began wall_s before the run recorded its end
            start_up = [r["finished_at"] - params[r["id"]]["wall_s"] - r["started_at"] for r in runs]
            setup = [params[r["id"]]["setup_s"] for r in runs]
            record.update({"statuses": sorted({r["status"] for r in runs}),
                           "queue_to_last_finish_s": round(max(r["finished_at"] for r in runs) - queued, 2),
                           "start_up_s_median": round(statistics.median(start_up), 3),
                           "start_up_s_max": round(max(start_up), 3),
                           "setup_s_median": round(statistics.median(setup), 3)})
            store.close()
        records.append(record)
    return records

