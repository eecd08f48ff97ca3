"""torchrun data-parallel runs on the CPU (gloo): same losses as one process, one DB writer."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alto.runner import queue_experiment
from alto.store import Store
from alto.train.distributed import launch_argv
from alto.train.presets import expand, parse_preset
from alto.train.run import execute_run

RUN = {"dataset": "digits", "model": "mlp", "device": "cpu", "threads": 1, "data_limit": 512, "epochs": 1000,
       "batch_size": 64, "model_kwargs": {"hidden": [32]}, "save_final": False}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def queue(store: Store, **run) -> int:
    preset = parse_preset({"name": "ddp", "optimizers": ["alto"], "optimizer": {"alto": {"lr": 0.01}},
                           "run": {**RUN, **run}})
    experiment = queue_experiment(store, preset, expand(preset))
    return store.list_runs(experiment_id=experiment)[0]["id"]


def db_holders(db: Path) -> set[int]:
    """Pids of alto.train processes with the database (or its WAL) open right now."""
    names = {str(db), f"{db}-wal", f"{db}-shm"}
    holders = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"alto.train" not in (proc / "cmdline").read_bytes():
                continue
            if any(os.readlink(fd) in names for fd in (proc / "fd").iterdir()):
                holders.add(int(proc.name))
        except OSError:
            continue
    return holders


def test_launch_command():
    assert launch_argv(3, "x.db", {}, "py") == ["py", "-m", "alto.train", "3", "--db", "x.db"]
    two = launch_argv(3, "x.db", {"nproc_per_node": 2}, "py")
    assert two[:6] == ["py", "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    multi = launch_argv(3, "x.db", {"nproc_per_node": 4, "nnodes": 2, "rdzv_endpoint": "head:29400"}, "py")
    assert "--rdzv-endpoint" in multi and "head:29400" in multi and "--standalone" not in multi


def test_config_checks_for_data_parallel_runs():
    from alto.train import RunConfig
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        RunConfig(nnodes=2, nproc_per_node=1)
    with pytest.raises(ValueError, match="nproc_per_node x nnodes x accumulation"):
        RunConfig(batch_size=100, nproc_per_node=3)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_only_rank_0_writes(tmp_path):
    store = Store(tmp_path / "runs.db")
    single = queue(store, max_steps=150)
    assert execute_run(store, single) == "finished"

    ddp = queue(store, max_steps=150, nproc_per_node=2)
    proc = subprocess.Popen(launch_argv(ddp, str(store.path), {"nproc_per_node": 2}, sys.executable), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    holders: set[int] = set()
    ranks: set[int] = set()
    while proc.poll() is None:
        holders |= db_holders(store.path)
        ranks |= {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_rank(p, ddp, store.path)}
        time.sleep(0.1)
    output = proc.stdout.read().decode()
    assert proc.returncode == 0, output
    run = store.get_run(ddp)
    assert run["status"] == "finished"
    params = store.get_params(ddp)
    assert params["world_size"] == 2 and params["per_rank_batch"] == 32 and params["batch_size"] == 64

    one, two = store.series(single, "train/loss")["value"], store.series(ddp, "train/loss")["value"]
    assert len(one) == len(two) == 150
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    assert store.summary([ddp])[ddp]["val/acc"]["last"] == pytest.approx(
        store.summary([single])[single]["val/acc"]["last"], abs=0.01)

    assert len(ranks) >= 2, "two rank processes should have been seen"
    assert holders == {run["pid"]}, f"processes that opened the database: {holders}, rank 0: {run['pid']}"


@pytest.mark.slow
def test_a_world_of_one_under_torchrun_takes_the_process_group_path(tmp_path):
    """What the GPU smoke check does with NCCL on one GPU, here with gloo."""
    store = Store(tmp_path / "runs.db")
    run_id = queue(store, max_steps=20)
    argv = launch_argv(run_id, str(store.path), {}, sys.executable, torchrun=True)
    assert argv[:4] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node"] and "1" in argv
    proc = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    params = store.get_params(run_id)
    assert store.get_run(run_id)["status"] == "finished"
    assert params["process_group"] is True and params["world_size"] == 1
    assert len(store.series(run_id, "train/loss")["step"]) == 20


def _is_rank(proc: Path, run_id: int, db: Path) -> bool:
    """A rank process of this run of this test's database (other tests may run `alto.train 1` too)."""
    try:
        cmd = (proc / "cmdline").read_bytes().split(b"\0")
        return (b"alto.train" in cmd and str(run_id).encode() in cmd and str(db).encode() in cmd
                and b"torch.distributed.run" not in cmd)
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_cancelling_a_two_process_run_from_the_supervisor_leaves_no_process(tmp_path):
    from alto.runner import Supervisor

    store = Store(tmp_path / "runs.db")
    run_id = queue(store, max_steps=100_000, nproc_per_node=2)
    supervisor = Supervisor(store, grace_s=10.0)
    assert supervisor.start()
    try:
        deadline = time.monotonic() + 120
        while (store.get_run(run_id)["last_step"] or 0) < 10:
            assert time.monotonic() < deadline, store.get_run(run_id)
            time.sleep(0.2)
        run = store.get_run(run_id)
        ranks = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_rank(p, run_id, store.path)]
        assert len(ranks) == 2
        assert supervisor.cancel(run_id)
        deadline = time.monotonic() + 60
        while _group_alive(run["pgid"]) or any(Path(f"/proc/{pid}").exists() for pid in ranks):
            assert time.monotonic() < deadline, "processes of the cancelled run are still alive"
            time.sleep(0.2)
        while store.get_run(run_id)["status"] != "cancelled":
            assert time.monotonic() < deadline, store.get_run(run_id)["status"]
            time.sleep(0.2)
        assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_rank(p, run_id, store.path)]
    finally:
        supervisor.stop()
        run = store.get_run(run_id)
        if run["pgid"] and _group_alive(run["pgid"]):
            os.killpg(run["pgid"], 9)
