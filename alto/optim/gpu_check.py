"""GPU acceptance check for the fused ALTO/Lamb kernels: one prepared script, at most ~5 minutes.

    python -m alto.optim.gpu_check [--budget-s 290] [--skip-compiled]

Prints JSON lines, in order:
  1. info: torch, triton, CUDA and GPU;
  2. correctness: fused vs multi-tensor on CUDA, fp32, 100 steps, mixed shapes (odd sizes, a
     1-element, an empty and an all-zero tensor, a bucket that gets the alignment hints), two
     decay groups, a weight_decay = 0 group and an empty group, a parameter without a gradient on
     some steps; both optimizers x both trust-ratio rules x bias correction on/off (pairwise),
     trust_ratio="none" with beta2 < 0.5, fp64, telemetry, and run-to-run determinism;
  3. no host sync: torch.cuda.set_sync_debug_mode("error") around step() for ALTO, Lamb, LION
     (multi-tensor) and fused ALTO/Lamb, with and without telemetry;
  4. the 355M-parameter bench (GPT-2 medium shapes): ms, bytes/param bound, ratio to the bound and
     to fused AdamW for every optimizer, then the two DESIGN.md section 5 targets
     (per-tensor / fused ALTO >= 14, fused ALTO / its bound <= 1.3), a launch-configuration sweep
     of the fused kernel, and torch.compile'd ALTO in a child process under a deadline.
Every step is wrapped on its own, so one failure does not lose the rest. Exit status: 2 without
a CUDA device, 1 if a correctness or sync check failed or errored, else 0 (speed targets are
reported, not enforced). The last line is a summary.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

STEPS = 100
DEVICE = "cuda"  # the correctness helpers also run on "cpu" under TRITON_INTERPRET=1 (a smoke test)
FP32_TOL, FP64_TOL = 1e-6, 1e-12
TARGET_SPEEDUP_OVER_PER_TENSOR, TARGET_RATIO_TO_BOUND = 14.0, 1.3


def emit(record: dict) -> None:
    print(json.dumps(record, default=str), flush=True)


class Check:
    """Runs named steps, each guarded, and remembers failures and the time budget."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.failures: list[str] = []
        self.results: dict[str, object] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, fn: Callable[[], object], *, critical: bool = True, min_left_s: float = 0.0):
        if self.left() < min_left_s:
            emit({"check": name, "skipped": f"less than {min_left_s:.0f} s of the budget left"})
            return None
        start = time.monotonic()
        try:
            result = fn()
        except Exception as err:  # keep going: report and continue with the next step
            emit({"check": name, "error": repr(err)[:1000], "traceback": traceback.format_exc()[-3000:]})
            if critical:
                self.failures.append(name)
            return None
        finally:
            try:  # after a device fault this raises too; the next step will report it
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
            except Exception:
                pass
        if isinstance(result, dict):
            emit({"check": name, **result, "seconds": round(time.monotonic() - start, 1)})
            if critical and result.get("ok") is False:
                self.failures.append(name)
        self.results[name] = result
        return result


# ------------------------------------------------------------------------------ correctness

ODD = {"vec7": (7,), "mat": (33, 5), "vec128": (128,), "one": (1,), "empty": (0,), "zero": (4, 4),
       "tall": (1000, 37)}
ALIGNED = {"al1": (1024,), "al2": (64, 48), "al3": (3, 4096)}  # every numel a multiple of 16
STALE = "vec128"


def _params(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    shapes = {**ODD, **ALIGNED}
    params = {k: torch.randn(s, generator=gen, device=DEVICE, dtype=dtype) for k, s in shapes.items()}
    params["zero"].zero_()
    return {k: p.requires_grad_() for k, p in params.items()}


def _groups(params: dict[str, torch.Tensor]) -> list[dict]:
    return [{"params": [params[k] for k in ("mat", "one", "empty", "zero", "tall")], "weight_decay": 0.01},
            {"params": [params["vec7"], params["vec128"]], "weight_decay": 0.0},
            {"params": [params[k] for k in ALIGNED], "weight_decay": 0.01},
            {"params": []}]


def _set_grads(params: dict[str, torch.Tensor], t: int) -> None:
    gen = torch.Generator(device=DEVICE).manual_seed(1000 + t)
    scale = 4.0 if t % 3 else 0.01  # the global clip is active on some steps only
    for k, p in params.items():
        g = torch.randn(p.shape, generator=gen, device=DEVICE, dtype=p.dtype) * scale
        p.grad = torch.zeros_like(p) if k == "zero" else g
    if t % 4 == 3:
        params[STALE].grad = None


def _trajectory(make: Callable, fused: bool, dtype=torch.float32, steps=STEPS, stats=False):
    params = _params(dtype)
    opt = make(_groups(params), fused)
    opt.collect_stats = stats
    history = []
    for t in range(steps):
        _set_grads(params, t)
        opt.step()
        if stats:
            history.append({k: v.detach().clone() for k, v in opt.stats.items()})
    return params, opt, history


def _max_error(fast, ref, opt_fast, opt_ref) -> float:
    """Max relative error over params and state; `a` relative to the gradient scale max|prev|."""
    worst = 0.0
    for k in fast:
        pairs = [(fast[k].detach(), ref[k].detach(), ref[k].detach())]
        s, r = opt_fast.state.get(fast[k], {}), opt_ref.state.get(ref[k], {})
        if s.keys() != r.keys():
            raise AssertionError(f"{k}: state keys differ: {sorted(s)} vs {sorted(r)}")
        for name in s:
            if name == "step":
                if s[name].item() != r[name].item():
                    raise AssertionError(f"{k}: step {s[name].item()} vs {r[name].item()}")
            else:
                pairs.append((s[name], r[name], r["prev"] if name == "a" else r[name]))
        for a, b, scale_of in pairs:
            if b.numel():
                scale = scale_of.abs().max().double().clamp_min(1e-30)
                worst = max(worst, ((a.double() - b.double()).abs().max() / scale).item())
    return worst


def _makers():
    from alto.optim import ALTO, Lamb
    return {
        "alto": lambda tr, bc: (lambda g, f: ALTO(g, lr=0.02, trust_ratio=tr, bias_correction=bc, fused=f)),
        "lamb": lambda tr, bc: (lambda g, f: Lamb(g, lr=0.02, trust_ratio=tr, bias_correction=bc, fused=f)),
    }


def check_pairwise(name: str, trust_ratio: str, bias_correction: bool) -> dict:
    make = _makers()[name](trust_ratio, bias_correction)
    fast, opt_fast, _ = _trajectory(make, True)
    ref, opt_ref, _ = _trajectory(make, False)
    err = _max_error(fast, ref, opt_fast, opt_ref)
    moved = not torch.equal(fast["mat"], _params(torch.float32)["mat"])
    zero_ok = torch.count_nonzero(fast["zero"]).item() == 0
    return {"max_rel_error": err, "tol": FP32_TOL, "ok": err <= FP32_TOL and moved and zero_ok,
            "params_moved": moved, "zero_tensor_stays_zero": zero_ok}


def check_other_branches() -> dict:
    from alto.optim import ALTO
    make = lambda g, f: ALTO(g, lr=0.02, betas=(0.9, 0.3, 0.99), alpha=0.5, trust_ratio="none", fused=f)
    fast, opt_fast, _ = _trajectory(make, True)
    ref, opt_ref, _ = _trajectory(make, False)
    err32 = _max_error(fast, ref, opt_fast, opt_ref)
    make64 = _makers()["alto"]("reference", True)
    fast, opt_fast, _ = _trajectory(make64, True, torch.float64, steps=20)
    ref, opt_ref, _ = _trajectory(make64, False, torch.float64, steps=20)
    err64 = _max_error(fast, ref, opt_fast, opt_ref)
    return {"none_lerp_from_end_fp32_error": err32, "fp64_error": err64,
            "ok": err32 <= FP32_TOL and err64 <= FP64_TOL}


def check_telemetry() -> dict:
    make = _makers()["alto"]("reference", True)
    _, _, fast = _trajectory(make, True, steps=5, stats=True)
    _, _, ref = _trajectory(make, False, steps=5, stats=True)
    worst = {}
    for got, want in zip(fast, ref):
        if got.keys() != want.keys():
            raise AssertionError(f"stat keys differ: {sorted(got)} vs {sorted(want)}")
        for key in want:
            a, b = got[key].double(), want[key].double()
            finite = torch.isfinite(b)
            if not torch.equal(torch.isfinite(a), finite):
                raise AssertionError(f"{key}: NaN/inf pattern differs")
            if finite.any():
                err = ((a[finite] - b[finite]).abs() / b[finite].abs().clamp_min(1e-12)).max().item()
                worst[key] = max(worst.get(key, 0.0), err)
    return {"max_rel_error_per_stat": worst, "ok": all(v <= 1e-5 for v in worst.values())}


def check_determinism() -> dict:
    make = _makers()["alto"]("reference", True)
    first, _, _ = _trajectory(make, True, steps=20)
    second, _, _ = _trajectory(make, True, steps=20)
    same = all(torch.equal(first[k], second[k]) for k in first)
    return {"bit_identical_reruns": same, "ok": same}


# ---------------------------------------------------------------------------------- no sync


def check_no_host_sync() -> dict:
    from alto.optim import ALTO, Lamb, Lion
    makers = {"alto": lambda ps: ALTO(ps, foreach=True), "lamb": lambda ps: Lamb(ps, foreach=True),
              "lion": lambda ps: Lion(ps, foreach=True), "alto_fused": lambda ps: ALTO(ps, fused=True),
              "lamb_fused": lambda ps: Lamb(ps, fused=True), "alto_auto": lambda ps: ALTO(ps)}
    outcome = {}
    for name, make in makers.items():
        for stats in (False, True):
            key = f"{name}{'+stats' if stats else ''}"
            params = _params(torch.float32)
            opt = make(_groups(params))
            opt.collect_stats = stats
            try:
                for t in range(3):  # state initialisation and compilation happen on the first steps
                    _set_grads(params, t)
                    opt.step()
                _set_grads(params, 4)
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    opt.step()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
                outcome[key] = "ok"
            except Exception as err:
                outcome[key] = f"FAILED: {repr(err)[:300]}"
    fused_ok = all(v == "ok" for k, v in outcome.items() if "fused" in k or "auto" in k)
    # The multi-tensor paths are reported too; only the fused ones are this change's contract.
    return {"results": outcome, "ok": fused_ok, "all_ok": all(v == "ok" for v in outcome.values())}


# ------------------------------------------------------------------------------------ bench


def bench_rows(names: list[str], repeats: int) -> dict:
    from alto.optim.bench import bench_optimizers, gpt2_medium_shapes
    records = {}
    for record in bench_optimizers(gpt2_medium_shapes(), "cuda", repeats=repeats, names=names):
        emit(record)
        key = record.get("optimizer", record.get("what"))
        records[key] = record
    return records


def bench_targets(records: dict) -> dict:
    fused, per_tensor = records.get("alto_fused", {}), records.get("alto_per_tensor", {})
    out: dict = {}
    if "ms" in fused and "ms" in per_tensor:
        speedup = per_tensor["ms"] / fused["ms"]
        out["per_tensor_over_fused_alto"] = round(speedup, 2)
        out["per_tensor_over_fused_target_met"] = speedup >= TARGET_SPEEDUP_OVER_PER_TENSOR
    if "ratio_to_bound" in fused:
        out["fused_alto_over_bound"] = fused["ratio_to_bound"]
        out["fused_alto_over_bound_target_met"] = fused["ratio_to_bound"] <= TARGET_RATIO_TO_BOUND
    if "ms" in records.get("alto", {}) and "ms" in fused:
        out["multi_tensor_over_fused_alto"] = round(records["alto"]["ms"] / fused["ms"], 2)
    return out


def sweep_launch_configs() -> dict:
    """Fused ALTO at a few (elements per program, warps, alignment hints): data for tuning."""
    from alto.optim import fused
    from alto.optim.bench import bench_optimizers, gpt2_medium_shapes
    saved = fused.CUDA_BLOCK, fused.CUDA_WARPS, fused.ALIGN_HINTS
    results = {}
    try:
        for block, warps, hints in [(1024, 4, True), (2048, 8, True), (4096, 8, True), (4096, 16, True),
                                    (2048, 8, False)]:
            fused.CUDA_BLOCK, fused.CUDA_WARPS, fused.ALIGN_HINTS = block, warps, hints
            key = f"block{block}_warps{warps}{'' if hints else '_nohints'}"
            try:
                rows = list(bench_optimizers(gpt2_medium_shapes(), "cuda", repeats=10, names=["alto_fused"]))
                row = rows[-1]
                results[key] = row.get("ratio_to_bound", row.get("error"))
            except Exception as err:
                results[key] = repr(err)[:300]
    finally:
        fused.CUDA_BLOCK, fused.CUDA_WARPS, fused.ALIGN_HINTS = saved
    return {"fused_alto_ratio_to_bound": results}


def fused_host_overhead() -> dict:
    """Host time of one fused step (launches only) vs the step's device time."""
    from alto.optim import ALTO
    from alto.optim.bench import gpt2_medium_shapes
    params = [torch.randn(s, device="cuda").requires_grad_() for s in gpt2_medium_shapes()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = ALTO(params, fused=True)
    for _ in range(3):
        opt.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    opt.step()
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    total = time.perf_counter() - start
    return {"host_ms": round(host * 1e3, 3), "step_ms": round(total * 1e3, 3)}


def bench_compiled_in_child(timeout_s: float) -> dict:
    """torch.compile'd ALTO in a child process, killed at the deadline (compile time is unknown)."""
    code = ("import json; from alto.optim.bench import bench_optimizers, gpt2_medium_shapes\n"
            "rows = bench_optimizers(gpt2_medium_shapes(), 'cuda', repeats=5, names=['adamw', 'alto_compiled'])\n"
            "for r in rows:\n"
            "    print(json.dumps(r), flush=True)\n")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    # own process group, so that inductor's compile workers go too when the deadline kills it
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return {"error": f"did not finish within {timeout_s:.0f} s (compilation)", "partial": out[-2000:]}
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    row = next((r for r in rows if r.get("optimizer") == "alto_compiled"), None)
    if row is None:
        return {"error": f"exit {proc.returncode}", "stderr": err[-3000:]}
    emit(row)
    return {"alto_compiled_ratio_to_bound": row.get("ratio_to_bound"), "compile_s": row.get("compile_s"),
            "x_adamw": row.get("x_adamw"), "row_error": row.get("error")}


# ------------------------------------------------------------------------------------- main


def info() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import triton
        out["triton"] = triton.__version__
    except Exception as err:
        out["triton"] = f"not importable: {err!r}"
    props = torch.cuda.get_device_properties(0)
    out.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
               memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count,
               devices=torch.cuda.device_count(),
               triton_interpret=os.environ.get("TRITON_INTERPRET"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alto.optim.gpu_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=290.0,
                        help="wall-clock budget for the whole check (seconds)")
    parser.add_argument("--skip-compiled", action="store_true", help="skip the torch.compile row")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available (torch.cuda.is_available() is False); "
              "this check must run on a GPU machine", file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("gpu_check: unset TRITON_INTERPRET (the interpreter cannot run kernels on CUDA tensors)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    check = Check(args.budget_s)
    emit({"check": "info", **info()})

    for name, tr, bc in [("alto", "reference", True), ("alto", "paper", False),
                         ("lamb", "reference", False), ("lamb", "paper", True)]:
        check.run(f"correctness_{name}_{tr}_bc{int(bc)}",
                  lambda name=name, tr=tr, bc=bc: check_pairwise(name, tr, bc))
    check.run("correctness_none_lerp_fp64", check_other_branches)
    check.run("correctness_telemetry", check_telemetry)
    check.run("determinism", check_determinism)
    check.run("no_host_sync", check_no_host_sync)

    records: dict = {}

    def bench() -> dict:
        records.update(bench_rows(["adamw", "alto_fused", "alto", "alto_per_tensor", "lamb_fused", "lamb",
                                   "lion", "sgd"], repeats=5))
        return {"measured": [k for k, r in records.items() if "ms" in r],
                "errors": {k: r["error"] for k, r in records.items() if "error" in r}}

    check.run("bench_gpt2_medium", bench, critical=False, min_left_s=60)
    check.run("targets", lambda: bench_targets(records), critical=False)
    check.run("fused_host_overhead", fused_host_overhead, critical=False, min_left_s=40)
    check.run("launch_config_sweep", sweep_launch_configs, critical=False, min_left_s=60)
    if not args.skip_compiled:
        check.run("alto_compiled", lambda: bench_compiled_in_child(max(10.0, check.left() - 10)),
                  critical=False, min_left_s=45)
    emit({"check": "summary", "ok": not check.failures, "failed": check.failures,
          "targets": check.results.get("targets"), "seconds": round(time.monotonic() - started, 1)})
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
