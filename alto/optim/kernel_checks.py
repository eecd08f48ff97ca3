"""Checks of the fused ALTO/Lamb kernels and the optimizers' device paths, for `python -m alto.gpu_check`.

Each function returns a JSON-able record with "ok": a positive signal, not merely "it finished"
(the fused runs must have stepped buckets with the kernels, so a silent fallback fails; the
numbers must agree within the spec's tolerance: 1e-5 relative in float32). The correctness checks
take a device and also run on the CPU under TRITON_INTERPRET=1, which the tests do; the speed and
synchronisation checks need CUDA.

Error measure: relative to each tensor's scale (alto.optim._agreement), meaningful where elements
are near zero; telemetry cosines, which can be near zero, are compared by absolute error.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from ._agreement import max_relative_error

STEPS = 100
FP32_TOL, FP64_TOL = 1e-5, 1e-12
TARGET_RATIO_TO_BOUND, TARGET_SPEEDUP_OVER_PER_TENSOR, TARGET_HOST_SHARE = 1.3, 14.0, 0.10

# Odd sizes (one element, empty, a tensor that stays zero) and a bucket of sizes that are all
# multiples of 16: on CUDA the latter takes the vectorised (ALIGNED) kernels, as real models do.
ODD = {"vec7": (7,), "mat": (33, 5), "vec128": (128,), "one": (1,), "empty": (0,), "zero": (4, 4), "tall": (300, 37)}
ALIGNED = {"al1": (1024,), "al2": (64, 48), "al3": (3, 4096)}
STALE = "vec128"  # no gradient on every fourth step: its state must stay untouched then


def _params(device: torch.device, dtype: torch.dtype,
            shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """Named parameters of `shapes` (default: ODD and ALIGNED); "zero" stays zero."""
    gen = torch.Generator(device=device).manual_seed(0)
    shapes = {**ODD, **ALIGNED} if shapes is None else shapes
    params = {k: torch.randn(s, generator=gen, device=device, dtype=dtype) for k, s in shapes.items()}
    params["zero"].zero_()
    return {k: p.requires_grad_() for k, p in params.items()}


def _groups(params: dict[str, torch.Tensor]) -> list[dict]:
    """A decay group, a weight_decay = 0 group, an all-aligned group (if those tensors are there)
    and an empty one."""
    def named(names) -> list[torch.Tensor]:
        return [params[k] for k in names if k in params]
    groups = [{"params": named(("mat", "one", "empty", "zero", "tall")), "weight_decay": 0.01},
              {"params": named(("vec7", "vec128")), "weight_decay": 0.0}]
    if aligned := named(ALIGNED):
        groups.append({"params": aligned, "weight_decay": 0.01})
    return groups + [{"params": []}]


def _set_grads(params: dict[str, torch.Tensor], t: int) -> None:
    device = next(iter(params.values())).device
    gen = torch.Generator(device=device).manual_seed(1000 + t)
    scale = 4.0 if t % 3 else 0.01  # the global clip is active on some steps only
    for k, p in params.items():
        g = torch.randn(p.shape, generator=gen, device=device, dtype=p.dtype) * scale
        p.grad = torch.zeros_like(p) if k == "zero" else g
    if t % 4 == 3:
        params[STALE].grad = None


def _trajectory(make: Callable, fused: bool, device: torch.device, dtype: torch.dtype = torch.float32,
                steps: int = STEPS, stats: bool = False, shapes: dict[str, tuple[int, ...]] | None = None):
    params = _params(device, dtype, shapes)
    opt = make(_groups(params), fused)
    opt.collect_stats = stats
    history = []
    for t in range(steps):
        _set_grads(params, t)
        opt.step()
        if stats:
            history.append({k: v.detach().clone() for k, v in opt.stats.items()})
    return params, opt, history


def _fused_buckets() -> int:
    from . import fused
    return fused.buckets_fused


def _maker(name: str, **hparams) -> Callable:
    from .lamb_family import ALTO, Lamb
    cls = {"alto": ALTO, "lamb": Lamb}[name]
    return lambda groups, fused: cls(groups, lr=0.02, fused=fused, **hparams)


def _compare(make: Callable, device: torch.device, dtype: torch.dtype, steps: int) -> tuple[float, int, dict]:
    """(max relative error fused vs not, buckets the kernels stepped, the fused run's params)."""
    before = _fused_buckets()
    fast, opt_fast, _ = _trajectory(make, True, device, dtype, steps)
    launched = _fused_buckets() - before
    ref, opt_ref, _ = _trajectory(make, False, device, dtype, steps)
    return max_relative_error(list(fast.values()), opt_fast, list(ref.values()), opt_ref), launched, fast


def fused_matches_reference(device: torch.device, name: str, trust_ratio: str, bias_correction: bool,
                            steps: int = STEPS) -> dict:
    """Fused vs the same optimizer without the kernels over `steps` steps, params and state."""
    make = _maker(name, trust_ratio=trust_ratio, bias_correction=bias_correction)
    err, launched, fast = _compare(make, device, torch.float32, steps)
    moved = not torch.equal(fast["mat"], _params(device, torch.float32)["mat"])
    zero_stays = torch.count_nonzero(fast["zero"]).item() == 0
    return {"max_rel_error": err, "tol": FP32_TOL, "fused_buckets": launched, "params_moved": moved,
            "zero_tensor_stays_zero": zero_stays,
            "ok": err <= FP32_TOL and launched > 0 and moved and zero_stays}


def fused_other_branches(device: torch.device, steps: int = 20) -> dict:
    """trust_ratio="none" with beta2 < 0.5 (lerp from the end) in float32, and float64."""
    make = _maker("alto", betas=(0.9, 0.3, 0.99), alpha=0.5, trust_ratio="none")
    err32, launched32, _ = _compare(make, device, torch.float32, steps)
    err64, launched64, _ = _compare(_maker("alto"), device, torch.float64, steps)
    return {"none_lerp_from_end_fp32_error": err32, "fp64_error": err64, "fused_buckets": launched32 + launched64,
            "ok": err32 <= FP32_TOL and err64 <= FP64_TOL and launched32 > 0 and launched64 > 0}


def stat_errors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per statistic: absolute error for cosines (they can be near zero), relative for the rest
    (norms, ratios); NaN/inf must sit at the same places."""
    if got.keys() != want.keys():
        raise AssertionError(f"stat keys differ: {sorted(got)} vs {sorted(want)}")
    errors = {}
    for key in want:
        a, b = got[key].double().cpu(), want[key].double().cpu()
        finite = torch.isfinite(b)
        if not torch.equal(torch.isfinite(a), finite):
            raise AssertionError(f"{key}: NaN/inf pattern differs")
        if finite.any():
            diff = (a[finite] - b[finite]).abs()
            errors[key] = (diff if key.startswith("cos_") else diff / b[finite].abs().clamp_min(1e-30)).max().item()
    return errors


def fused_telemetry(device: torch.device, steps: int = 5) -> dict:
    """Per-step statistics of fused ALTO vs the same optimizer without the kernels."""
    make = _maker("alto")
    before = _fused_buckets()
    _, _, fast = _trajectory(make, True, device, steps=steps, stats=True)
    launched = _fused_buckets() - before
    _, _, ref = _trajectory(make, False, device, steps=steps, stats=True)
    worst: dict[str, float] = {}
    for got, want in zip(fast, ref):
        for key, err in stat_errors(got, want).items():
            worst[key] = max(worst.get(key, 0.0), err)
    return {"max_error_per_stat": worst, "tol": FP32_TOL, "fused_buckets": launched,
            "ok": launched > 0 and all(v <= FP32_TOL for v in worst.values())}


def fused_determinism(device: torch.device, steps: int = 20) -> dict:
    make = _maker("alto")
    first, _, _ = _trajectory(make, True, device, steps=steps)
    second, _, _ = _trajectory(make, True, device, steps=steps)
    same = all(torch.equal(first[k], second[k]) for k in first)
    return {"bit_identical_reruns": same, "ok": same}


def plan_is_cached(device: torch.device, steps: int = 3) -> dict:
    """A step whose tensors sit where they sat reuses its buckets' plans (tables, layout checks):
    none is rebuilt while the gradients are written in place; with gradients reallocated every
    step (zero_grad(set_to_none=True)) the count of rebuilds is reported."""
    from . import fused
    params = _params(device, torch.float32)
    opt = _maker("alto")(_groups(params), True)
    _set_grads(params, 0)
    opt.step()
    grads = {k: p.grad for k, p in params.items()}
    before = fused.plans_built
    for t in (1, 2, 4)[:steps]:  # every parameter has a gradient on these steps (t % 4 != 3)
        _set_grads(params, t)
        for k, p in params.items():
            grads[k].copy_(p.grad)
            p.grad = grads[k]
        opt.step()
    in_place = fused.plans_built - before
    before = fused.plans_built
    for t in (1, 2, 4)[:steps]:
        _set_grads(params, t)
        opt.step()
    return {"plans_built_with_grads_in_place": in_place, "plans_built_with_new_grads": fused.plans_built - before,
            "steps": steps, "ok": in_place == 0}


# ------------------------------------------------------------------------ CUDA only


def no_host_sync(device: torch.device) -> dict:
    """torch.cuda.set_sync_debug_mode("error") around step() for every Lamb-family path, LION and
    E, with and without telemetry."""
    from . import E, Lion
    from .lamb_family import ALTO, Lamb
    makers = {"alto_fused": lambda g: ALTO(g, fused=True), "lamb_fused": lambda g: Lamb(g, fused=True),
              "alto_auto": lambda g: ALTO(g), "alto_multi_tensor": lambda g: ALTO(g, fused=False),
              "lamb_multi_tensor": lambda g: Lamb(g, fused=False), "lion": lambda g: Lion(g),
              "e_adamw": lambda g: E(torch.optim.AdamW(g, foreach=True))}
    outcome = {}
    for name, make in makers.items():
        for stats in (False, True):
            key = f"{name}{'+stats' if stats else ''}"
            params = _params(device, torch.float32)
            opt = make(_groups(params))
            opt.collect_stats = stats
            try:
                for t in range(3):  # state initialisation, plans and compilation happen on the first steps
                    _set_grads(params, t % 3)
                    opt.step()
                _set_grads(params, 4)
                torch.cuda.synchronize(device)
                torch.cuda.set_sync_debug_mode("error")
                try:
                    opt.step()
                    if stats:
                        dict(opt.stats)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
                outcome[key] = "ok"
            except Exception as err:  # noqa: BLE001 - reported per path
                outcome[key] = f"FAILED: {repr(err)[:300]}"
    return {"results": outcome, "ok": all(v == "ok" for v in outcome.values())}


def host_overhead(device: torch.device, shapes: list[tuple[int, ...]] | None = None, steps: int = 10) -> dict:
    """Host time of a fused ALTO step (the call returns before the device is done) against the
    device time of a step (CUDA events over back-to-back steps), at GPT-2-medium shapes."""
    from .bench import gpt2_shapes
    from .lamb_family import ALTO
    params = [torch.randn(s, device=device).requires_grad_() for s in (shapes or gpt2_shapes())]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = ALTO(params, fused=True)
    for _ in range(3):
        opt.step()
    torch.cuda.synchronize(device)
    host = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        host.append(time.perf_counter() - t0)
    end.record()
    torch.cuda.synchronize(device)
    device_ms = start.elapsed_time(end) / steps
    host_ms = statistics.median(host) * 1e3
    share = host_ms / device_ms
    return {"host_ms": round(host_ms, 3), "step_ms": round(device_ms, 3), "host_share": round(share, 3),
            "target": TARGET_HOST_SHARE, "ok": share <= TARGET_HOST_SHARE}


def bench_rows(device: torch.device, emit: Callable[[dict], None], repeats: int = 5) -> dict:
    """The optimizer benchmark at GPT-2-medium shapes (355M parameters): every row with its ratio
    to the bandwidth bound, timed with CUDA events; each row is emitted as it is measured."""
    from .bench import bench_optimizers, gpt2_shapes
    names = ["adamw", "alto_fused", "lamb_fused", "alto", "alto_previous", "alto_per_tensor", "lamb", "lion", "sgd"]
    records = {}
    for record in bench_optimizers(gpt2_shapes(), device, repeats=repeats, names=names, stats=True):
        emit(record)
        records[record.get("optimizer", record.get("what"))] = record
    measured = [k for k, r in records.items() if r.get("ms", 0) > 0]
    errors = {k: r["error"] for k, r in records.items() if "error" in r}
    return {"rows": records, "measured": measured, "errors": errors,
            "ok": not errors and all(n in measured for n in names)}


def bench_targets(rows: dict) -> dict:
    """The fused kernels' targets from the benchmark rows: <= 1.3x the bound, >= 14x the per-tensor loop."""
    fused, per_tensor = rows.get("alto_fused", {}), rows.get("alto_per_tensor", {})
    out: dict = {}
    if "ms" in fused and "ms" in per_tensor:
        out["per_tensor_over_fused_alto"] = round(per_tensor["ms"] / fused["ms"], 2)
    if "ratio_to_bound" in fused:
        out["fused_alto_over_bound"] = fused["ratio_to_bound"]
    if "ms" in rows.get("alto", {}) and "ms" in fused:
        out["multi_tensor_over_fused_alto"] = round(rows["alto"]["ms"] / fused["ms"], 2)
    out["ok"] = (out.get("fused_alto_over_bound", float("inf")) <= TARGET_RATIO_TO_BOUND
                 and out.get("per_tensor_over_fused_alto", 0.0) >= TARGET_SPEEDUP_OVER_PER_TENSOR)
    return out
