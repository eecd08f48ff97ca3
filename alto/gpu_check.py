"""The GPU smoke check of the whole system: one command to run first on any GPU machine.

    python -m alto.gpu_check [--budget-s 230] [--only NAME[,NAME...]] [--list]

Runs the named checks of CHECKS in order and writes one JSON line as each finishes,
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
checks import nothing beyond torch and Triton.

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


CHECKS: list[Check] = [
    Check("info", lambda ctx: info(ctx.device), 10),
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
