"""Helpers shared by the reliability tests (imported by name: pytest puts this folder on sys.path).

Deliberately not a conftest.py: tests/conftest.py is imported as the module `conftest` (other tests
do `from conftest import ROOT`), and a second conftest.py without __init__.py would compete for that
module name.
"""
from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# A digits MLP run that takes a few ms per step on one CPU thread (tests/conftest.py TINY_RUN, with
# no final checkpoint: the reliability runs are killed or fail on purpose).
TINY = {"dataset": "digits", "model": "mlp", "device": "cpu", "threads": 1, "data_limit": 512,
        "epochs": 100_000, "max_steps": 100, "batch_size": 32, "model_kwargs": {"hidden": [32]},
        "save_final": False}


def page_file(name: str) -> str:
    """A page file for AppTest: app/sections/<name>.py once the integrator moved them, else app/pages."""
    for folder in ("sections", "pages"):
        path = ROOT / "app" / folder / f"{name}.py"
        if path.exists():
            return str(path)
    raise FileNotFoundError(f"no page {name!r} under app/sections or app/pages")


def app_page(name: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(page_file(name), default_timeout=90)


def stop_app_supervisors(db: str | Path) -> None:
    """Stop the Supervisor threads that AppTest page runs started (cached) for `db` in this process."""
    from alto.runner import Supervisor

    target = Path(db).expanduser().resolve()
    for obj in gc.get_objects():
        if issubclass(type(obj), Supervisor) and obj.db_path == target:
            obj.stop()


def queue_runs(store, runs: list[dict], *, name: str = "reliability") -> list[int]:
    """Queue one experiment with one run per RunConfig dict (through the product's own queueing)."""
    from alto.runner import queue_experiment
    from alto.train import RunConfig
    from alto.train.presets import parse_preset

    preset = parse_preset({"name": name, "title": name, "optimizers": sorted({r["optimizer"] for r in runs}),
                           "run": {k: v for k, v in runs[0].items() if k not in ("optimizer", "lr", "seed")}})
    configs = [RunConfig.from_dict(r) for r in runs]
    experiment_id = queue_experiment(store, preset, configs, name=name)
    return [r["id"] for r in store.list_runs(experiment_id=experiment_id)]


def tiny(**overrides) -> dict:
    return {**TINY, "optimizer": "sgd", "lr": 0.1, "seed": 0, **overrides}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int | None) -> None:
    if not pgid:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_runs_of(store) -> None:
    """SIGKILL the process group of every run of `store` that is still one of ours (db path in argv)."""
    for run in store.list_runs():
        pgid = run["pgid"]
        if pgid and group_alive(pgid) and str(store.path) in cmdline(pgid):
            kill_group(pgid)


def wait_until(check, *, timeout: float, every: float = 0.1, what: str = "condition", tick=None):
    """Call tick() (if given) and check() until check() is truthy; pytest.fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def non_loopback_ipv4() -> str | None:
    """This machine's outward IPv4 address (a UDP 'connect' sends nothing), None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def committed_steps(store, run_id: int, key: str = "train/loss") -> list[int]:
    """Every stored step of one series, read raw (no downsampling)."""
    rows = store.connection().execute(
        "SELECT m.step FROM metrics AS m JOIN metric_keys AS k ON k.id = m.key_id "
        "WHERE m.run_id = ? AND k.key = ? ORDER BY m.step", (run_id, key)).fetchall()
    return [r[0] for r in rows]


def alto_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "alto.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, start_new_session=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]
