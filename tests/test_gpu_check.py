"""python -m alto.gpu_check without a GPU: its help, its refusal, its runner, and its kernel checks
on the CPU (Triton's interpreter) in a process that cannot import the dashboard packages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alto import gpu_check
from alto.gpu_check import Check, Context, run_checks

ROOT = Path(__file__).resolve().parents[1]


def script(*args, env=None, code=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "alto.gpu_check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_help_documents_the_checks_and_the_exit_status():
    proc = script("--help")
    assert proc.returncode == 0
    for words in ("python -m alto.gpu_check", "JSON line", "summary", "Exit status", "CHECKS", "--budget-s"):
        assert words in proc.stdout, words


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_exits_non_zero():
    proc = script()
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and proc.stdout == ""


def test_list_and_unknown_names():
    proc = script("--list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == [c.name for c in gpu_check.CHECKS]
    assert "optim.no_host_sync" in names and "optim.bench_gpt2_medium" in names
    proc = script("--only", "no.such.check")
    assert proc.returncode != 0 and "unknown check" in proc.stderr


def test_runner_reports_each_check_then_a_summary():
    lines = []
    ctx = Context(device=torch.device("cpu"), deadline=time.monotonic() + 60, emit=lines.append)

    def boom(ctx):
        raise ValueError("broken")

    checks = [Check("passes", lambda ctx: {"ok": True, "value": 3}, 5),
              Check("says_no", lambda ctx: {"ok": False}, 5),
              Check("finished_is_not_a_signal", lambda ctx: {"done": True}, 5),
              Check("raises", boom, 5),
              Check("sees_earlier_results", lambda ctx: {"ok": ctx.results["passes"]["value"] == 3}, 5),
              Check("too_slow_for_the_budget", lambda ctx: {"ok": True}, 3600),
              Check("slow_target", lambda ctx: {"ok": False, "ratio": 2.0}, 5, kind="target")]
    summary = run_checks(checks, ctx)
    assert [r["check"] for r in lines] == [c.name for c in checks] + ["summary"]
    by_name = {r["check"]: r for r in lines}
    assert by_name["passes"]["ok"] and by_name["passes"]["value"] == 3 and "seconds" in by_name["passes"]
    assert by_name["sees_earlier_results"]["ok"]
    assert "ValueError('broken')" in by_name["raises"]["error"]
    assert "skipped" in by_name["too_slow_for_the_budget"]
    assert summary == lines[-1]
    assert summary["failed"] == ["says_no", "finished_is_not_a_signal", "raises", "too_slow_for_the_budget"]
    assert summary["targets_missed"] == ["slow_target"] and summary["ok"] is False
    assert run_checks(checks[:1], Context(torch.device("cpu"), time.monotonic() + 60, emit=lambda r: None))["ok"]


BLOCK_DASHBOARD = """
import sys, time
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('streamlit', 'plotly', 'sqlite_utils'):
            raise ImportError(f'{name} is not installed on this machine')
sys.meta_path.insert(0, Refuse())
import torch
from alto.gpu_check import CHECKS, Context, run_checks
wanted = ('optim.fused_determinism', 'optim.plan_is_cached')
from alto.optim import kernel_checks
kernel_checks.STEPS = 4
summary = run_checks([c for c in CHECKS if c.name in wanted],
                     Context(device=torch.device('cpu'), deadline=time.monotonic() + 300))
assert not [m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly', 'sqlite_utils')]
"""


@pytest.mark.slow
def test_kernel_checks_run_on_the_cpu_without_the_dashboard_packages():
    """The GPU machine's Python has torch and Triton but no streamlit, plotly or sqlite-utils."""
    proc = script(code=BLOCK_DASHBOARD, env={"TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["check"] for r in lines] == ["optim.fused_determinism", "optim.plan_is_cached", "summary"]
    assert all(r["ok"] for r in lines), lines


@pytest.mark.slow
def test_the_engine_checks_run_through_on_the_cpu():
    """The engine checks are written for CUDA but take their device from the context: on the CPU
    (kernels off, gloo for torchrun, the flatness job on the CPU) they must pass too, so that the
    script's own code is known to work before the first GPU meets it."""
    ctx = Context(device=torch.device("cpu"), deadline=time.monotonic() + 600, emit=lambda record: None)
    for check in (gpu_check._training_runs, gpu_check._supervisor_run, gpu_check._torchrun_world_of_one):
        record = check(ctx)
        assert record["ok"], record
    runs = gpu_check._training_runs(ctx)["runs"]
    assert set(runs) == {f"{o},{p}{f}" for o, f in (("alto", ",fused=False"), ("lamb", ",fused=False"), ("sgd", ""),
                                                    ("lion", "")) for p in ("fp32", "bf16")}
