"""The GPU smoke check of the whole system: one command to run first on any GPU machine.

    python -m alto.gpu_check [--budget-s 230] [--only NAME[,NAME...]] [--list]

Checks, in order: the training engine on CUDA (a short real run per optimizer, ALTO, Lamb, SGD and
LION, in fp32 and bf16 autocast, the fused kernels on and off; CPU and CUDA losses agreeing over 20
steps; the training clock reading device time from CUDA events; at most a few host syncs per flush,
never one a step; a run queued and launched by the supervisor as the app does, then a flatness job
on its weights; a torchrun launch of a world of one through NCCL), then the fused kernels
(correctness against the multi-tensor path at the spec's tolerances, determinism, cached plans, no
host sync in a step), then the optimizer benchmark at GPT-2-medium size with its targets.

It runs the named checks of CHECKS in order and writes one JSON line as each finishes,
{"check": name, "ok": true|false, "seconds": s, ...details}, plus the lines a check emits while it
runs (the benchmark rows), then a summary line {"check": "summary", "ok": ..., "failed": [...]}.
Every check asserts a positive signal, not merely that it finished: fused runs must have stepped
buckets with the Triton kernels (a silent fallback fails), numbers must agree within the spec's
tolerance (1e-5 relative in float32, absolute for cosines), the benchmark must be timed with CUDA
events. Speed targets (fused ALTO <= 1.3x its bandwidth bound and >= 14x the per-tensor loop;
host time <= 10% of a fused step) are checks of kind "target", listed apart in the summary
("targets_missed") from the correctness checks ("failed").

Exit status: 0 only if every check and target passed; 1 if one failed, raised or was skipped
because less than its budget was left; 2 without a CUDA device (or with TRITON_INTERPRET set, which keeps
Triton off the GPU). It needs no network and no file outside the checkout, and its optimizer
checks import nothing beyond torch and Triton. The engine checks need what the training path needs:
torch, numpy, scikit-learn, scipy, pandas and sqlite-utils (not streamlit or plotly). On a machine
whose Python lacks sqlite-utils (a bare GPU image), carry its pure-Python wheels: `make gpu-wheels`
in a checkout with network writes them to .gpu-wheels/ (ignored by git); on the GPU machine,
    pip install --no-index --no-deps --target /tmp/site .gpu-wheels/*.whl && PYTHONPATH=/tmp/site:$PWD python -m alto.gpu_check

To add a check (e.g. a short training run), append a Check to CHECKS: a name, a function
taking the Context and returning a dict with "ok", and the seconds it may take at most. Import
what it needs inside the function, so that one missing package fails that check only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

DEFAULT_BUDGET_S = 230.0  # the whole script, so that it ends within 4 minutes on one GPU


@dataclass
class Context:
    """What a check gets: the device, the records of the checks before it, a way to emit lines."""

    device: torch.device
    deadline: float
    results: dict[str, dict] = field(default_factory=dict)
    emit: Callable[[dict], None] = lambda record: print(json.dumps(record, default=str), flush=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class Check:
    """A named check: run(ctx) returns a JSON-able dict whose "ok" is the positive signal."""

    name: str
    run: Callable[[Context], dict]
    budget_s: float          # the longest it may take; skipped (a failure) when less is left
    kind: str = "check"      # "check" (correctness) or "target" (speed), summarised apart


def run_checks(checks: list[Check], ctx: Context) -> dict:
    """Run `checks` in order, emitting one record each, and return the summary record."""
    started = time.monotonic()
    failed, missed = [], []
    for check in checks:
        if ctx.left() < check.budget_s:
            record = {"check": check.name, "ok": False,
                      "skipped": f"{ctx.left():.0f} s left of the budget, the check needs up to {check.budget_s:.0f} s"}
        else:
            t0 = time.monotonic()
            try:
                record = {"check": check.name, **check.run(ctx)}
            except Exception as err:  # noqa: BLE001 - report and go on with the next check
                record = {"check": check.name, "ok": False, "error": repr(err)[:1000],
                          "traceback": traceback.format_exc()[-3000:]}
            finally:
                _settle(ctx.device)
            record["seconds"] = round(time.monotonic() - t0, 1)
            if record["seconds"] > check.budget_s:
                record["over_budget"] = True
        record["ok"] = record.get("ok") is True
        record["kind"] = check.kind
        ctx.results[check.name] = record
        ctx.emit(record)
        if not record["ok"]:
            (missed if check.kind == "target" else failed).append(check.name)
    summary = {"check": "summary", "ok": not failed and not missed, "failed": failed, "targets_missed": missed,
               "passed": sum(1 for c in checks if ctx.results[c.name]["ok"]), "of": len(checks),
               "seconds": round(time.monotonic() - started, 1)}
    ctx.emit(summary)
    return summary


def _settle(device: torch.device) -> None:
    """Wait for the device and free cached memory between checks (after a fault this raises too:
    the next check reports it)."""
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def info(device: torch.device) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "triton_interpret": os.environ.get("TRITON_INTERPRET")}
    try:
        import triton
        out["triton"] = triton.__version__
    except Exception as err:  # noqa: BLE001
        out["triton"] = f"not importable: {err!r}"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count,
                   devices=torch.cuda.device_count())
    return {**out, "ok": True}


# ----------------------------------------------------------------------------------- checks


def _optim(fn_name: str, *args, **kwargs) -> Callable[[Context], dict]:
    """A check calling alto.optim.kernel_checks.<fn_name>(ctx.device, *args, **kwargs)."""
    def run(ctx: Context) -> dict:
        from alto.optim import kernel_checks
        return getattr(kernel_checks, fn_name)(ctx.device, *args, **kwargs)
    return run


def _bench(ctx: Context) -> dict:
    from alto.optim import kernel_checks
    record = kernel_checks.bench_rows(ctx.device, ctx.emit)
    rows = record.pop("rows")
    ctx.results["_bench_rows"] = rows
    timed = {r.get("timing") for r in rows.values() if "ms" in r}
    record["timing"] = sorted(timed)
    record["ok"] = record["ok"] and timed == {"cuda_events"}
    return record


def _bench_targets(ctx: Context) -> dict:
    from alto.optim import kernel_checks
    return kernel_checks.bench_targets(ctx.results.get("_bench_rows", {}))


# ----------------------------------------------------------------------------------- engine
# The training path end to end on the GPU: the engine, its clock and telemetry, the supervisor,
# torchrun and a flatness job. They need sqlite-utils (the store): see --help for carrying it.

ENGINE_RUN = dict(dataset="digits", model="mlp", batch_size=256, eval_every=10, save_final=False,
                  model_kwargs={"hidden": [64]})


def _engine_config(**fields):
    from alto.train import RunConfig
    return RunConfig(**{**ENGINE_RUN, **fields})


def _training_runs(ctx: Context) -> dict:
    """A short real run per optimizer on CUDA, fp32 and bf16 autocast, with the fused kernels on
    and off for ALTO and Lamb: each finishes with a finite loss on the training clock, and the
    fused runs did step buckets with the kernels (a silent fallback fails)."""
    import math

    from alto.optim import fused
    from alto.train import train

    runs, ok = {}, True
    kernels = (True, False) if ctx.device.type == "cuda" else (False,)  # (the tests run this on the CPU)
    for optimizer, modes in (("alto", kernels), ("lamb", kernels), ("sgd", (None,)), ("lion", (None,))):
        for precision in ("fp32", "bf16"):
            for use_fused in modes:
                before = fused.buckets_fused
                result = train(_engine_config(optimizer=optimizer, precision=precision, max_steps=30,
                                              device=str(ctx.device),
                                              hparams={} if use_fused is None else {"fused": use_fused}))
                launched = fused.buckets_fused - before
                loss = result.final.get("train/loss", math.nan)
                good = (result.status == "finished" and math.isfinite(loss) and result.train_s > 0
                        and (launched > 0 if use_fused else launched == 0))
                ok &= good
                runs[f"{optimizer},{precision}{'' if use_fused is None else f',fused={use_fused}'}"] = {
                    "ok": good, "loss": round(loss, 5), "train_s": round(result.train_s, 3), "fused_buckets": launched}
    return {"ok": ok, "runs": runs}


def _cpu_and_cuda_agree(ctx: Context) -> dict:
    """The same 20 fp32 steps on the CPU and on CUDA (kernels off, then on): every step's loss
    agrees within 1e-4 relative (only summation order differs)."""
    import tempfile
    from pathlib import Path

    from alto.store import Store
    from alto.train import train

    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "agree.db")
        experiment = store.create_experiment("cpu vs cuda")
        for device, use_fused in (("cpu", False), ("cuda", False), ("cuda", True)):
            config = _engine_config(optimizer="alto", device=device, max_steps=20, threads=4,
                                    hparams={"fused": use_fused})
            run_id = store.add_run(experiment, name=device, optimizer="alto", seed=0, lr=config.base_lr,
                                   config=config.to_dict())
            with store.writer(run_id) as writer:
                train(config, writer=writer)
            losses[(device, use_fused)] = store.series(run_id, "train/loss")["value"]
        store.close()
    cpu = losses[("cpu", False)]
    errors = {f"cuda,fused={f}": float(max(abs(losses[("cuda", f)] - cpu) / abs(cpu))) for f in (False, True)}
    return {"ok": len(cpu) == 20 and all(e <= 1e-4 for e in errors.values()), "max_relative_error": errors}


def _clock_is_device_time(ctx: Context) -> dict:
    """The training clock reads CUDA events: a kernel that keeps the GPU busy for a known number of
    cycles shows in the step's time although the host only queued it."""
    from alto.train.telemetry import StepClock

    clock = StepClock(ctx.device)
    clock.begin()
    t0 = time.perf_counter()
    torch.cuda._sleep(50_000_000)  # tens of milliseconds of device time, queued in microseconds
    queued_ms = (time.perf_counter() - t0) * 1e3
    clock.pause()
    clock.resume()
    clock.end()
    torch.cuda.synchronize()
    train_ms, _, _ = clock.resolve()[0]
    return {"ok": clock.cuda and train_ms > 5 * max(queued_ms, 0.1), "device_ms": round(train_ms, 3),
            "host_queue_ms": round(queued_ms, 3)}


class _CountingWriter:
    """A MetricWriter that counts its flushes (one per telemetry flush or evaluation)."""

    def __init__(self, writer):
        self.writer, self.flushes = writer, 0

    def __getattr__(self, name):
        return getattr(self.writer, name)

    def flush(self) -> None:
        self.flushes += 1
        self.writer.flush()


def _host_syncs(ctx: Context) -> dict:
    """A 200-step run with telemetry on syncs the host only when it flushes or evaluates (counted
    by torch.cuda.set_sync_debug_mode("warn")), never once a step."""
    import tempfile
    import warnings
    from pathlib import Path

    from alto.store import Store
    from alto.train import train

    steps = 200
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "syncs.db")
        config = _engine_config(optimizer="alto", device="cuda", max_steps=steps, eval_every=100)
        run_id = store.add_run(store.create_experiment("syncs"), name="syncs", optimizer="alto", seed=0,
                               lr=config.base_lr, config=config.to_dict())
        with store.writer(run_id) as writer, warnings.catch_warnings(record=True) as caught:
            counting = _CountingWriter(writer)
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                result = train(config, writer=counting)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        store.close()
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    allowed = 3 * counting.flushes + 30  # a flush's copy, evaluations, and the set-up's copies
    return {"ok": result.status == "finished" and syncs <= allowed and syncs < steps / 4,
            "syncs": syncs, "flushes": counting.flushes, "steps": steps}


def _queued_run(store, device: torch.device, **fields) -> int:
    from alto.runner import queue_experiment
    from alto.train.presets import expand, parse_preset

    preset = parse_preset({"name": "gpu-check", "optimizers": [fields.pop("optimizer", "alto")],
                           "run": {**ENGINE_RUN, "device": device.type, "max_steps": 30, **fields}})
    experiment = queue_experiment(store, preset, expand(preset))
    return store.list_runs(experiment_id=experiment)[0]["id"]


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _supervisor_run(ctx: Context) -> dict:
    """A run queued as the app queues it, launched by a real Supervisor as its own process on
    the GPU; then a flatness job on its final weights, launched the same way."""
    import tempfile
    from pathlib import Path

    from alto.probes.flatness_job import queue_flatness_job
    from alto.runner import Supervisor
    from alto.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "supervised.db")
        run_id = _queued_run(store, ctx.device, save_final=True)
        supervisor = Supervisor(store)
        supervisor.start()
        try:
            finished = _wait_for(lambda: store.get_run(run_id)["status"] not in ("queued", "running"),
                                 max(10.0, min(90.0, ctx.left() - 40)))
            run = store.get_run(run_id)
            params = store.get_params(run_id)
            job_id = queue_flatness_job(store, run["experiment_id"], batch_size=256, iters=5, trace_samples=4)
            _wait_for(lambda: store.get_job(job_id)["status"] not in ("queued", "running"),
                      max(10.0, min(60.0, ctx.left() - 10)))
            job = store.get_job(job_id)
            artifacts = store.artifacts(kind="flatness", experiment_id=run["experiment_id"])
        finally:
            supervisor.stop()
        store.close()
    measured = artifacts[0]["payload"] if artifacts else {}
    eig = [r["top_eigenvalue"] for r in measured.get("runs", [])]
    on_device = ctx.device.type
    ok = (finished and run["status"] == "finished" and str(params.get("device", "")).startswith(on_device)
          and params.get("train_s", 0) > 0 and job["status"] == "finished"
          and measured.get("device", "").startswith(on_device) and len(eig) == 1 and eig[0] == eig[0])
    return {"ok": ok, "run": run["status"], "device": params.get("device"), "job": job["status"],
            "error": (run.get("error") or job.get("error") or "")[:1500], "top_eigenvalue": eig}


def _torchrun_world_of_one(ctx: Context) -> dict:
    """torchrun with one process on one GPU: the NCCL process-group path launches, trains and
    records (the multi-rank all-reduce is covered by the CPU gloo tests)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from alto.store import Store
    from alto.train.distributed import launch_argv

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "torchrun.db")
        run_id = _queued_run(store, ctx.device)
        argv = launch_argv(run_id, str(store.path), {}, sys.executable, torchrun=True)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=max(10.0, ctx.left() - 5))
        run, params = store.get_run(run_id), store.get_params(run_id)
        store.close()
    ok = (proc.returncode == 0 and run["status"] == "finished" and params.get("process_group") is True
          and str(params.get("device", "")).startswith(ctx.device.type))
    return {"ok": ok, "status": run["status"], "process_group": params.get("process_group"),
            "output": (proc.stdout + proc.stderr)[-1500:] if not ok else ""}


CHECKS: list[Check] = [
    Check("info", lambda ctx: info(ctx.device), 10),
    Check("engine.training_runs", _training_runs, 45),
    Check("engine.cpu_and_cuda_agree", _cpu_and_cuda_agree, 20),
    Check("engine.clock_is_device_time", _clock_is_device_time, 5),
    Check("engine.host_syncs_per_flush", _host_syncs, 20),
    Check("engine.supervisor_run_and_flatness_job", _supervisor_run, 60),
    Check("engine.torchrun_world_of_one", _torchrun_world_of_one, 30),
    *(Check(f"optim.fused_matches_reference[{name},{tr},bc={int(bc)}]",
            _optim("fused_matches_reference", name, tr, bc), 20)
      for name, tr, bc in [("alto", "reference", True), ("alto", "paper", False),
                           ("lamb", "reference", False), ("lamb", "paper", True)]),
    Check("optim.fused_other_branches", _optim("fused_other_branches"), 15),
    Check("optim.fused_telemetry", _optim("fused_telemetry"), 10),
    Check("optim.fused_determinism", _optim("fused_determinism"), 10),
    Check("optim.plan_is_cached", _optim("plan_is_cached"), 10),
    Check("optim.no_host_sync", _optim("no_host_sync"), 30),
    Check("optim.bench_gpt2_medium", _bench, 60),
    Check("optim.fused_targets", _bench_targets, 1, kind="target"),
    Check("optim.host_overhead", _optim("host_overhead"), 20, kind="target"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alto.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help=f"wall-clock budget of the whole run in seconds (default {DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated check names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the checks and their budgets, run nothing")
    args = parser.parse_args(argv)
    checks = CHECKS
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in {c.name for c in CHECKS}]
        if unknown:
            parser.error(f"unknown check(s): {', '.join(unknown)}; see --list")
        checks = [c for c in CHECKS if c.name in wanted]
    if args.list:
        for c in checks:
            print(f"{c.name:60s} {c.kind:7s} {c.budget_s:5.0f} s")
        return 0
    if not torch.cuda.is_available():
        print("alto.gpu_check: no CUDA device is available (torch.cuda.is_available() is False); "
              "run it on a GPU machine", file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET", "0").strip() not in ("", "0"):
        print("alto.gpu_check: unset TRITON_INTERPRET (the interpreter cannot run kernels on CUDA tensors)",
              file=sys.stderr)
        return 2
    ctx = Context(device=torch.device("cuda", torch.cuda.current_device()),
                  deadline=time.monotonic() + args.budget_s)
    return 0 if run_checks(checks, ctx)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
